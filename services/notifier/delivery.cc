#include "delivery.h"

#include <curl/curl.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>

#include "clock.h"

namespace sopflow::notifier {
namespace {

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Hex(const unsigned char* data, size_t len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < len; ++i) {
    out += kHex[data[i] >> 4];
    out += kHex[data[i] & 15];
  }
  return out;
}

std::string Base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

size_t Discard(char*, size_t size, size_t nmemb, void*) { return size * nmemb; }

struct Upload {
  const std::string* data;
  size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* up = static_cast<Upload*>(userdata);
  size_t n = std::min(size * nitems, up->data->size() - up->offset);
  std::memcpy(buffer, up->data->data() + up->offset, n);
  up->offset += n;
  return n;
}

// Runs the prepared transfer and records its latency, the reply code and a
// transport error; whether the reply is a success is the caller's to say.
CURLcode Perform(CURL* curl, SendResult* result) {
  auto start = std::chrono::steady_clock::now();
  CURLcode rc = curl_easy_perform(curl);
  result->latency_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  result->status_code = static_cast<int>(code);
  if (rc != CURLE_OK) result->error = curl_easy_strerror(rc);
  return rc;
}

}  // namespace

std::string HmacSha256Hex(const std::string& secret, const std::string& body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest, &len);
  return Hex(digest, len);
}

std::string CloudEventJson(const v1::Notification& n) {
  std::string data;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(n, &data, options);
  std::string type = v1::Notification::Kind_Name(n.kind());
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
  nlohmann::json event = {
      {"specversion", "1.0"},
      {"id", n.id()},
      {"source", "sopflow/notifier"},
      {"type", "sopflow.v1.notification." + type},
      {"subject", n.task_id().empty() ? n.run_id() : n.task_id()},
      {"time", FormatRfc3339(FromUnixMillis(google::protobuf::util::TimeUtil::TimestampToMilliseconds(n.time())))},
      {"datacontenttype", "application/json"},
      {"data", nlohmann::json::parse(data)},
  };
  return event.dump();
}

int64_t BackoffMs(int attempt, int64_t base_ms, int64_t max_ms, double random01) {
  int64_t delay = base_ms;
  for (int i = 1; i < attempt && delay < max_ms; ++i) delay *= 2;
  delay = std::min(delay, max_ms);
  return delay / 2 + static_cast<int64_t>(static_cast<double>(delay - delay / 2) * random01);
}

SendResult PostWebhook(const v1::Webhook& hook, const std::string& delivery_id, const std::string& body,
                       int timeout_ms) {
  InitCurlOnce();
  SendResult result;
  CURL* curl = curl_easy_init();
  if (!curl) {
    result.error = "curl_easy_init failed";
    return result;
  }
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/cloudevents+json; charset=utf-8");
  headers = curl_slist_append(headers, ("X-Sopflow-Signature: sha256=" + HmacSha256Hex(hook.secret(), body)).c_str());
  headers = curl_slist_append(headers, ("X-Sopflow-Delivery: " + delivery_id).c_str());
  headers = curl_slist_append(headers, ("X-Sopflow-Webhook: " + hook.id()).c_str());
  curl_easy_setopt(curl, CURLOPT_URL, hook.url().c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode rc = Perform(curl, &result);
  bool success = result.status_code >= 200 && result.status_code < 300;
  if (rc == CURLE_OK && !success) result.error = "HTTP " + std::to_string(result.status_code);
  result.ok = rc == CURLE_OK && success;
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

SendResult SendEmail(const SmtpConfig& smtp, const std::string& to, const std::string& subject,
                     const std::string& body, const std::string& message_id) {
  InitCurlOnce();
  SendResult result;
  CURL* curl = curl_easy_init();
  if (!curl) {
    result.error = "curl_easy_init failed";
    return result;
  }
  time_t now = time(nullptr);
  char date[64];
  std::tm tm{};
  gmtime_r(&now, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  // RFC 5322 with an RFC 2047 subject, so Indonesian and English text pass any relay.
  std::string message = "Date: " + std::string(date) + "\r\nFrom: " + smtp.from + "\r\nTo: " + to +
                        "\r\nMessage-ID: <" + message_id + ">\r\nSubject: =?UTF-8?B?" + Base64(subject) +
                        "?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n\r\n";
  for (char c : body) {
    if (c == '\n') message += "\r\n";
    else message += c;
  }
  Upload upload{&message};
  curl_slist* rcpt = curl_slist_append(nullptr, ("<" + to + ">").c_str());
  curl_easy_setopt(curl, CURLOPT_URL, smtp.url.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, ("<" + smtp.from + ">").c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadUpload);
  curl_easy_setopt(curl, CURLOPT_READDATA, &upload);
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(smtp.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  result.ok = Perform(curl, &result) == CURLE_OK;
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(curl);
  return result;
}

}  // namespace sopflow::notifier

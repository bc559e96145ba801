// Sending: webhooks (CloudEvents JSON, signed with HMAC-SHA256) and e-mail
// (SMTP), both through libcurl, plus the retry schedule.
#pragma once

#include <cstdint>
#include <string>

#include "sopflow/v1/notifier.pb.h"

namespace sopflow::notifier {

// Lowercase hex HMAC-SHA256 of `body` under `secret`.
std::string HmacSha256Hex(const std::string& secret, const std::string& body);

// The CloudEvents structured-mode JSON of a notification.
std::string CloudEventJson(const v1::Notification& n);

// The wait before attempt `attempt` + 1 after `attempt` failed: exponential
// from base_ms, capped at max_ms, with "equal jitter" (half fixed, half
// random; `random01` in [0, 1)).
int64_t BackoffMs(int attempt, int64_t base_ms, int64_t max_ms, double random01);

struct SendResult {
  bool ok = false;
  int status_code = 0;  // HTTP status or SMTP reply; 0 if none came
  int64_t latency_ms = 0;
  std::string error;
};

SendResult PostWebhook(const v1::Webhook& hook, const std::string& delivery_id, const std::string& body,
                       int timeout_ms);

struct SmtpConfig {
  std::string url;   // smtp://host:port; empty: no e-mail
  std::string from = "sopflow@localhost";
  int timeout_ms = 10000;
};

SendResult SendEmail(const SmtpConfig& smtp, const std::string& to, const std::string& subject,
                     const std::string& body, const std::string& message_id);

}  // namespace sopflow::notifier

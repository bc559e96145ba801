#include "redis.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string_view>
#include <sstream>

#include "error.h"

namespace sopflow {

void ReplyDeleter::operator()(redisReply* r) const {
  if (r) freeReplyObject(r);
}

std::optional<std::string> ReplyString(const redisReply* r) {
  if (!r) return std::nullopt;
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) return std::string(r->str, r->len);
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  return std::nullopt;
}

long long ReplyInteger(const redisReply* r) {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  if (r->type == REDIS_REPLY_STRING) return std::atoll(r->str);
  return 0;
}

bool ReplyIsError(const redisReply* r) { return r && r->type == REDIS_REPLY_ERROR; }

std::string ReplyErrorText(const redisReply* r) {
  return ReplyIsError(r) ? std::string(r->str, r->len) : std::string();
}

std::vector<std::string> ReplyStrings(const redisReply* r) {
  std::vector<std::string> out;
  if (!r || r->type != REDIS_REPLY_ARRAY) return out;
  out.reserve(r->elements);
  for (size_t i = 0; i < r->elements; ++i) out.push_back(ReplyString(r->element[i]).value_or(""));
  return out;
}

void ThrowCorrupt() { throw DomainError(ErrorCode::kInternal, "corrupt record in Redis"); }

bool IsServerUnavailableError(std::string_view error) {
  // The error code is the reply's first word: "BUSY" is a running script,
  // "BUSYGROUP" an existing consumer group (the caller's mistake).
  static constexpr std::string_view kCodes[] = {
      "LOADING",     // restarted, still loading its files
      "BUSY",        // a script or function runs past its time limit
      "MASTERDOWN",  // a replica that lost its primary
      "READONLY",    // a replica: after a failover, the address names the old primary
      "MISCONF",     // cannot persist (a full disk): writes refused until it can
      "OOM",         // at maxmemory: writes refused until memory is freed
      "NOREPLICAS",  // fewer replicas than min-replicas-to-write
      "TRYAGAIN", "CLUSTERDOWN"};
  std::string_view code = error.substr(0, error.find(' '));
  return std::find(std::begin(kCodes), std::end(kCodes), code) != std::end(kCodes);
}

void ThrowIfError(const redisReply* r) {
  if (!ReplyIsError(r)) return;
  std::string text = ReplyErrorText(r);
  throw DomainError(IsServerUnavailableError(text) ? ErrorCode::kUnavailable : ErrorCode::kInternal, "redis: " + text);
}

RedisAddress RedisAddress::Parse(const std::string& text) {
  std::string rest = text;
  if (rest.rfind("redis://", 0) == 0) rest = rest.substr(8);
  RedisAddress a;
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    if (!rest.empty()) a.host = rest;
    return a;
  }
  a.host = rest.substr(0, colon);
  a.port = std::atoi(rest.c_str() + colon + 1);
  if (a.port <= 0 || a.port > 65535) ThrowInvalid("redis", "bad address '" + text + "'");
  return a;
}

RedisConnection::RedisConnection(RedisAddress address, int timeout_ms)
    : address_(std::move(address)), timeout_ms_(timeout_ms) {}

RedisConnection::~RedisConnection() { Drop(); }

void RedisConnection::Drop() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

void RedisConnection::EnsureConnected() {
  if (ctx_) return;
  timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  ctx_ = redisConnectWithTimeout(address_.host.c_str(), address_.port, tv);
  if (!ctx_ || ctx_->err) {
    std::string why = ctx_ ? ctx_->errstr : "out of memory";
    Drop();
    ThrowUnavailable("redis " + address_.host + ":" + std::to_string(address_.port) + ": " + why);
  }
  redisSetTimeout(ctx_, tv);
}

void RedisConnection::SetReadTimeout(int timeout_ms) {
  EnsureConnected();
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  redisSetTimeout(ctx_, tv);
}

namespace {
// Formats the command in RESP here rather than with redisAppendCommandArgv:
// hiredis builds each argument's "$<len>" header with sdscatfmt and grows
// its buffer piecemeal, ~11% of the router's instructions (callgrind) for
// the long argument lists of a commit. One sized buffer, one copy.
void AppendArgv(redisContext* ctx, const std::vector<std::string>& argv) {
  size_t size = 16;
  for (const auto& a : argv) size += a.size() + 16;
  std::string resp;
  resp.reserve(size);
  resp += '*';
  resp += std::to_string(argv.size());
  resp += "\r\n";
  for (const auto& a : argv) {
    resp += '$';
    resp += std::to_string(a.size());
    resp += "\r\n";
    resp += a;
    resp += "\r\n";
  }
  if (redisAppendFormattedCommand(ctx, resp.data(), resp.size()) != REDIS_OK)
    ThrowUnavailable(std::string("redis: ") + ctx->errstr);
}
}  // namespace

Reply RedisConnection::Command(const std::vector<std::string>& argv) {
  auto replies = Pipeline({argv});
  return std::move(replies.front());
}

std::vector<Reply> RedisConnection::Pipeline(const std::vector<std::vector<std::string>>& commands) {
  std::vector<const std::vector<std::string>*> pointers;
  pointers.reserve(commands.size());
  for (const auto& c : commands) pointers.push_back(&c);
  return Pipeline(pointers);
}

std::vector<Reply> RedisConnection::Pipeline(const std::vector<const std::vector<std::string>*>& commands) {
  EnsureConnected();
  for (const auto* c : commands) AppendArgv(ctx_, *c);
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
      std::string why = ctx_->errstr;
      Drop();  // the connection is gone or out of step: open a new one next time
      ThrowUnavailable("redis: " + why);
    }
    replies.emplace_back(static_cast<redisReply*>(raw));
  }
  // A server that cannot serve now answers with an error reply instead of
  // data. Returned, it would read as a nil (a task "not found", an empty
  // inbox) or end an event as if it were bad; it is Redis away, as a
  // refused connection is. The connection is dropped, so a WATCH or MULTI
  // it may hold goes with it, and after a failover the next one goes to
  // whatever the address names now.
  for (const auto& reply : replies) {
    if (!ReplyIsError(reply.get())) continue;
    std::string why = ReplyErrorText(reply.get());
    if (!IsServerUnavailableError(why)) continue;
    Drop();
    ThrowUnavailable("redis: " + why);
  }
  return replies;
}

Reply RedisConnection::EvalScript(RedisScript& script, const std::vector<std::string>& args) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string sha1 = script.sha1();
    if (sha1.empty()) {
      Reply r = Command({"SCRIPT", "LOAD", script.source()});
      if (ReplyIsError(r.get())) throw DomainError(ErrorCode::kInternal, "SCRIPT LOAD: " + ReplyErrorText(r.get()));
      sha1 = *ReplyString(r.get());
      script.set_sha1(sha1);
    }
    std::vector<std::string> argv;
    argv.reserve(args.size() + 3);
    argv.insert(argv.end(), {"EVALSHA", sha1, "0"});
    argv.insert(argv.end(), args.begin(), args.end());
    Reply r = Command(argv);
    if (ReplyIsError(r.get()) && ReplyErrorText(r.get()).rfind("NOSCRIPT", 0) == 0) {
      script.set_sha1("");
      continue;
    }
    return r;
  }
  throw DomainError(ErrorCode::kInternal, "script could not be loaded");
}

RedisPool::RedisPool(RedisAddress address, size_t size) : address_(std::move(address)), size_(size) {}

RedisPool::Lease RedisPool::Acquire() {
  std::unique_lock lock(mu_);
  while (true) {
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(conn));
    }
    if (created_ < size_) {
      ++created_;
      return Lease(this, std::make_unique<RedisConnection>(address_));
    }
    cv_.wait(lock);
  }
}

void RedisPool::Release(std::unique_ptr<RedisConnection> conn) {
  {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

RedisPool::Lease::~Lease() {
  if (conn_) pool_->Release(std::move(conn_));
}

std::map<std::string, int64_t> CommandCalls(RedisConnection& conn) {
  Reply r = conn.Command({"INFO", "commandstats"});
  ThrowIfError(r.get());
  std::map<std::string, int64_t> calls;
  std::istringstream info(ReplyString(r.get()).value_or(""));
  for (std::string line; std::getline(info, line);) {
    // cmdstat_<name>:calls=<n>,usec=...
    auto colon = line.find(':'), at = line.find("calls=");
    if (line.rfind("cmdstat_", 0) != 0 || colon == std::string::npos || at == std::string::npos) continue;
    calls[line.substr(8, colon - 8)] = std::stoll(line.substr(at + 6));
  }
  return calls;
}

}  // namespace sopflow

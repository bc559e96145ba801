// A small blocking Redis client over hiredis 0.14 with reconnects, pipelining
// and script caching, plus a connection pool for threads that share it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;
struct redisReply;

namespace sopflow {

struct ReplyDeleter {
  void operator()(redisReply* r) const;
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Accessors that tolerate nil replies.
std::optional<std::string> ReplyString(const redisReply* r);
long long ReplyInteger(const redisReply* r);
bool ReplyIsError(const redisReply* r);
std::string ReplyErrorText(const redisReply* r);
// The elements of an array reply as strings (nil elements as "").
std::vector<std::string> ReplyStrings(const redisReply* r);
// True for the error replies of a server that cannot serve now, whatever
// the command (LOADING after a restart, READONLY after a failover, BUSY,
// OOM, MISCONF, ...): retry later. Other errors are the command's fault.
bool IsServerUnavailableError(std::string_view error);
// Throws for an error reply: DomainError(kUnavailable) if the server cannot
// serve now (IsServerUnavailableError), else DomainError(kInternal).
void ThrowIfError(const redisReply* r);
[[noreturn]] void ThrowCorrupt();
// A protobuf message stored as a string reply; nullopt for nil. Throws
// DomainError(kInternal) if the bytes do not parse.
template <class Message>
std::optional<Message> ReplyMessage(const redisReply* r) {
  auto s = ReplyString(r);
  if (!s) return std::nullopt;
  Message m;
  if (!m.ParseFromString(*s)) ThrowCorrupt();
  return m;
}

// A Lua script, loaded by its SHA-1 and re-loaded on NOSCRIPT (after a
// Redis restart or SCRIPT FLUSH). Safe to share between threads.
class RedisScript {
 public:
  explicit RedisScript(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }
  std::string sha1() const {
    std::lock_guard lock(mu_);
    return sha1_;
  }
  void set_sha1(std::string sha1) {
    std::lock_guard lock(mu_);
    sha1_ = std::move(sha1);
  }

 private:
  const std::string source_;
  mutable std::mutex mu_;
  std::string sha1_;  // filled on first use
};

struct RedisAddress {
  std::string host = "127.0.0.1";
  int port = 6379;
  static RedisAddress Parse(const std::string& text);  // "host:port" or "redis://host:port"
};

class RedisConnection {
 public:
  explicit RedisConnection(RedisAddress address, int timeout_ms = 5000);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Runs one command. Throws DomainError(kUnavailable) if Redis cannot be
  // reached or answers that it cannot serve now (IsServerUnavailableError:
  // loading, a replica, out of memory...); the connection is re-opened on
  // the next call. Other error replies (the command's fault) are returned.
  Reply Command(const std::vector<std::string>& argv);
  // Sends all commands at once and reads every reply (one round trip).
  std::vector<Reply> Pipeline(const std::vector<std::vector<std::string>>& commands);
  // The same, for commands held elsewhere (no copy of their arguments).
  std::vector<Reply> Pipeline(const std::vector<const std::vector<std::string>*>& commands);
  // EVALSHA with zero KEYS (its keys are in ARGV: sopflow targets one Redis
  // primary, not Redis Cluster), loading the script on NOSCRIPT.
  Reply EvalScript(RedisScript& script, const std::vector<std::string>& args);  // thread-safe on `script`
  // Sets the read timeout, e.g. for a blocking XREAD.
  void SetReadTimeout(int timeout_ms);

 private:
  void EnsureConnected();
  void Drop();
  RedisAddress address_;
  int timeout_ms_;
  redisContext* ctx_ = nullptr;
};

class RedisPool {
 public:
  RedisPool(RedisAddress address, size_t size);

  class Lease {
   public:
    Lease(RedisPool* pool, std::unique_ptr<RedisConnection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&&) = default;
    ~Lease();
    RedisConnection* operator->() { return conn_.get(); }
    RedisConnection& operator*() { return *conn_; }

   private:
    RedisPool* pool_;
    std::unique_ptr<RedisConnection> conn_;
  };

  Lease Acquire();
  const RedisAddress& address() const { return address_; }

 private:
  friend class Lease;
  void Release(std::unique_ptr<RedisConnection> conn);
  RedisAddress address_;
  size_t size_;
  size_t created_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<RedisConnection>> idle_;
};

// How often Redis ran each command since its start or CONFIG RESETSTAT, by
// lower-case name (INFO commandstats: a script's own commands count as well
// as the script call). For measurements (tests, sopbench), not the services.
std::map<std::string, int64_t> CommandCalls(RedisConnection& conn);

}  // namespace sopflow

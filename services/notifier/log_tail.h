// One reader of the notification log per notifier process, shared by every
// Subscribe stream. Without it each stream ran its own XREAD of the whole log
// and parsed every entry: S subscribers cost S Redis reads and S parses per
// notification. The tail reads and parses each entry once and keeps the
// newest in memory; streams filter those, and only a stream resuming from
// further back than memory reaches reads Redis itself until it catches up.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "redis.h"
#include "sopflow/v1/notifier.pb.h"

namespace sopflow::notifier {

// A Redis stream id, comparable as (milliseconds, sequence).
using StreamId = std::pair<uint64_t, uint64_t>;
StreamId ParseStreamId(const std::string& id);

struct LogEntry {
  std::string id;  // the stream id: a subscriber's cursor
  StreamId order;  // the same, parsed once
  std::shared_ptr<const v1::Notification> notification;
};

// Parses an XREAD / XRANGE reply of the log into entries.
std::vector<LogEntry> ParseLogEntries(const redisReply* entries);

class LogTail {
 public:
  LogTail(RedisAddress redis, size_t capacity = 20000);
  ~LogTail();
  void Start();  // throws if Redis cannot be reached
  void Stop();   // wakes every waiting stream

  // Which notifications a waiting stream would send.
  using Wants = std::function<bool(const v1::Notification&)>;
  // Up to `max` entries after `cursor`, waiting up to wait_ms for one that
  // `wants` accepts (any entry if `wants` is empty). A waiting stream is
  // woken only by a notification it will send: with S streams, a
  // notification wakes the streams it concerns, not all S. It may still
  // return entries `wants` refuses (those before the one that woke it, or
  // all of them when the wait runs out); the caller filters.
  // nullopt: `cursor` is older than memory holds; read Redis after it.
  std::optional<std::vector<LogEntry>> After(const std::string& cursor, size_t max, int wait_ms, const Wants& wants = {});
  // The id memory starts after (entries after it are all in memory).
  std::string floor() const;

 private:
  // A stream waiting for what it wants. Shared, so the tail can test its
  // filter outside the lock while the stream may give up waiting.
  struct Waiter {
    Wants wants;  // empty: any entry
    bool woken = false;
    std::condition_variable cv;
  };

  void Loop();
  std::optional<std::vector<LogEntry>> Collect(const StreamId& after, size_t max) const;
  // Wakes the waiters that want one of `fresh` (just appended; null where
  // an entry was unreadable).
  void WakeWaitersFor(const std::vector<std::shared_ptr<const v1::Notification>>& fresh);

  RedisAddress redis_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Waiter>> waiters_;
  std::deque<LogEntry> entries_;
  std::string floor_ = "0-0";
  StreamId floor_order_{0, 0};
  std::string read_from_;
  bool running_ = false;
  std::thread thread_;
};

}  // namespace sopflow::notifier

// One reader of the notification log per notifier process, shared by every
// Subscribe stream. Without it each stream ran its own XREAD of the whole log
// and parsed every entry: S subscribers cost S Redis reads and S parses per
// notification. The tail reads and parses each entry once and keeps the
// newest in memory; it hands each stream what its filter accepts, and only a
// stream resuming from further back than memory reaches reads Redis itself
// until it catches up.
#pragma once

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
  void Stop();   // tells every listener, once
  bool running() const;

  // Which notifications a stream sends.
  using Wants = std::function<bool(const v1::Notification&)>;

  // A stream waiting for what it wants. `wakeup` runs on the tail's thread,
  // outside the tail's lock, when an entry `wants` accepts is appended (with
  // S streams a notification wakes the streams it concerns, not all S); when
  // the tail has dropped half of what memory holds since it last woke
  // everyone (so an idle stream moves its cursor past what it does not want
  // before that leaves memory, rather than reading it all back from Redis);
  // and when the tail stops. A stream holds no thread while it waits.
  struct Listener {
    Wants wants;  // empty: any entry
    std::function<void()> wakeup;
  };
  std::shared_ptr<const Listener> Listen(Wants wants, std::function<void()> wakeup);
  // After this no new wakeup starts; one already started may still be
  // running, so `wakeup` must stay safe to call until the stream is gone.
  void Unlisten(const std::shared_ptr<const Listener>& listener);

  struct Batch {
    std::vector<LogEntry> wanted;  // up to `max` entries `wants` accepts, in order
    std::string cursor;            // the last entry looked at: the stream resumes after it
  };
  // What follows `cursor` in memory, filtered here: a stream skipping what it
  // does not want copies nothing of it. nullopt: `cursor` is older than
  // memory holds; read Redis after it.
  std::optional<Batch> Next(const std::string& cursor, size_t max, const Wants& wants = {}) const;
  // The id memory starts after (entries after it are all in memory).
  std::string floor() const;

 private:
  void Loop();
  // Wakes the listeners that want one of `fresh` (just appended; null where
  // an entry was unreadable), or all of them.
  void WakeListenersFor(const std::vector<std::shared_ptr<const v1::Notification>>& fresh, bool everyone);

  RedisAddress redis_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const Listener>> listeners_;
  std::deque<LogEntry> entries_;
  std::string floor_ = "0-0";
  StreamId floor_order_{0, 0};
  size_t dropped_since_wakeup_ = 0;  // entries that left memory since everyone was last woken
  std::string read_from_;
  bool running_ = false;
  std::thread thread_;
};

// Whether a stream sends `entry`: a readable notification `wants` accepts
// (any, when `wants` is empty).
bool Wanted(const LogEntry& entry, const LogTail::Wants& wants);

}  // namespace sopflow::notifier

// One reader of the notification log per notifier process, shared by every
// Subscribe stream. Without it each stream ran its own XREAD of the whole log
// and parsed every entry: S subscribers cost S Redis reads and S parses per
// notification. The tail reads and parses each entry once and keeps the
// newest in memory. A stream that has caught up is "live": the tail hands
// it what it wants of each new entry, found by looking its interest up (a
// user, a unit, a role in a unit), so a notification costs the streams it
// concerns, not every open stream. A stream resuming from further back
// reads memory, or Redis if memory does not reach back so far, until it
// catches up.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
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

  // Where a stream's interest lies, for the tail to look up: every
  // notification is looked up under each key InterestsOf gives it, and a
  // listener under one key sees only those; `wants` is then asked of them.
  static std::string UserInterest(const std::string& user_id);
  static std::string UnitInterest(const std::string& unit_or_member);
  static std::string RoleInterest(const std::string& role, const std::string& unit_or_member);
  static constexpr char kEverything[] = "*";
  static std::vector<std::string> InterestsOf(const v1::Notification& n);

  // A stream listening for what it wants. `deliver` runs on the tail's
  // thread, outside the tail's lock: while the listener is live, with the
  // entries just appended that its interest and `wants` accept (in log
  // order; only when there are some); and once with none when the tail
  // stops. A stream holds no thread while it waits.
  struct Listener {
    std::string interest;
    Wants wants;  // empty: any entry of its interest
    std::function<void(std::vector<LogEntry>)> deliver;
  };
  std::shared_ptr<const Listener> Listen(std::string interest, Wants wants,
                                         std::function<void(std::vector<LogEntry>)> deliver);
  // After this no new delivery starts; one already started may still be
  // running, so `deliver` must stay safe to call until the stream is gone.
  void Unlisten(const std::shared_ptr<const Listener>& listener);

  struct Batch {
    std::vector<LogEntry> wanted;  // up to `max` entries `wants` accepts, in order
    std::string cursor;            // the last entry looked at: the stream resumes after it
    bool live = false;             // went live: what follows comes by delivery
  };
  // What follows `cursor` in memory, filtered here: a stream skipping what it
  // does not want copies nothing of it. nullopt: `cursor` is older than
  // memory holds; read Redis after it. With `go_live`, when the batch
  // reaches the newest entry in memory, that listener is live from then on
  // (in the same lock: nothing appended after is missed; something may be
  // both in the batch and delivered, so a stream skips what is not after
  // its cursor).
  std::optional<Batch> Next(const std::string& cursor, size_t max, const Wants& wants = {},
                            const std::shared_ptr<const Listener>& go_live = nullptr) const;
  // The listener is no longer live (its stream fell behind what it can
  // hold): it catches up through Next again.
  void Pause(const std::shared_ptr<const Listener>& listener);
  // The id memory starts after (entries after it are all in memory).
  std::string floor() const;

 private:
  void Loop();
  // Hands each live listener what it wants of `fresh` (just appended).
  void Deliver(const std::vector<LogEntry>& fresh);

  RedisAddress redis_;
  size_t capacity_;
  mutable std::mutex mu_;
  // By interest; the live ones are also in live_.
  std::map<std::string, std::vector<std::shared_ptr<const Listener>>> listeners_;
  mutable std::set<const Listener*> live_;
  std::deque<LogEntry> entries_;
  std::string floor_ = "0-0";
  StreamId floor_order_{0, 0};
  std::string read_from_;
  bool running_ = false;
  std::thread thread_;
};

// Whether a stream sends `entry`: a readable notification `wants` accepts
// (any, when `wants` is empty).
bool Wanted(const LogEntry& entry, const LogTail::Wants& wants);

}  // namespace sopflow::notifier

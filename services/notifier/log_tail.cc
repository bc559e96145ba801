#include "log_tail.h"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "store.h"
#include "thread_name.h"

namespace sopflow::notifier {

namespace {
constexpr int kBlockMs = 500;
}

StreamId ParseStreamId(const std::string& id) {
  auto dash = id.find('-');
  return {std::stoull(id.substr(0, dash)), dash == std::string::npos ? 0 : std::stoull(id.substr(dash + 1))};
}

std::vector<LogEntry> ParseLogEntries(const redisReply* entries) {
  std::vector<LogEntry> out;
  if (!entries || entries->type != REDIS_REPLY_ARRAY) return out;
  out.reserve(entries->elements);
  for (size_t i = 0; i < entries->elements; ++i) {
    const redisReply* entry = entries->element[i];
    const redisReply* fields = entry->element[1];
    auto n = std::make_shared<v1::Notification>();
    // An unreadable entry still moves the cursor on; it is delivered as nothing.
    if (!fields || fields->elements < 2 || !n->ParseFromString(ReplyString(fields->element[1]).value_or(""))) n.reset();
    std::string id = ReplyString(entry->element[0]).value_or("0-0");
    StreamId order = ParseStreamId(id);
    out.push_back({std::move(id), order, std::move(n)});
  }
  return out;
}

bool Wanted(const LogEntry& entry, const LogTail::Wants& wants) {
  return entry.notification && (!wants || wants(*entry.notification));
}

LogTail::LogTail(RedisAddress redis, size_t capacity) : redis_(std::move(redis)), capacity_(capacity) {}

LogTail::~LogTail() { Stop(); }

void LogTail::Start() {
  RedisConnection redis(redis_);
  Reply last = redis.Command({"XREVRANGE", keys::kLog, "+", "-", "COUNT", "1"});
  std::lock_guard lock(mu_);
  if (last && last->type == REDIS_REPLY_ARRAY && last->elements == 1)
    floor_ = ReplyString(last->element[0]->element[0]).value_or("0-0");
  floor_order_ = ParseStreamId(floor_);
  read_from_ = floor_;
  running_ = true;
  thread_ = NamedThread("sf-log-tail", [this] { Loop(); });
}

void LogTail::Stop() {
  std::vector<std::shared_ptr<const Listener>> listening;
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    running_ = false;
    listening = listeners_;
  }
  // Each finds the tail stopped and ends its stream: now, not after the
  // tail's read in progress returns.
  for (const auto& l : listening) l->wakeup();
  if (thread_.joinable()) thread_.join();
}

bool LogTail::running() const {
  std::lock_guard lock(mu_);
  return running_;
}

std::shared_ptr<const LogTail::Listener> LogTail::Listen(Wants wants, std::function<void()> wakeup) {
  auto listener = std::make_shared<const Listener>(Listener{std::move(wants), std::move(wakeup)});
  std::lock_guard lock(mu_);
  listeners_.push_back(listener);
  return listener;
}

void LogTail::Unlisten(const std::shared_ptr<const Listener>& listener) {
  std::lock_guard lock(mu_);
  auto it = std::find(listeners_.begin(), listeners_.end(), listener);
  if (it != listeners_.end()) listeners_.erase(it);
}

void LogTail::Loop() {
  std::unique_ptr<RedisConnection> redis;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (!running_) return;
    }
    try {
      if (!redis) redis = std::make_unique<RedisConnection>(redis_, kBlockMs + 5000);
      Reply r = redis->Command({"XREAD", "COUNT", "500", "BLOCK", std::to_string(kBlockMs), "STREAMS", keys::kLog,
                                read_from_});
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) continue;
      auto fresh = ParseLogEntries(r->element[0]->element[1]);
      if (fresh.empty()) continue;
      read_from_ = fresh.back().id;
      std::vector<std::shared_ptr<const v1::Notification>> notifications;  // null: unreadable
      notifications.reserve(fresh.size());
      for (const auto& e : fresh) notifications.push_back(e.notification);
      bool everyone = false;
      {
        std::lock_guard lock(mu_);
        for (auto& e : fresh) entries_.push_back(std::move(e));
        while (entries_.size() > capacity_) {
          floor_ = entries_.front().id;
          floor_order_ = entries_.front().order;
          entries_.pop_front();
          ++dropped_since_wakeup_;
        }
        if (dropped_since_wakeup_ >= capacity_ / 2 && dropped_since_wakeup_ > 0) {
          everyone = true;
          dropped_since_wakeup_ = 0;
        }
      }
      WakeListenersFor(notifications, everyone);
    } catch (const std::exception& e) {
      spdlog::warn("notification log tail: {}", e.what());
      redis.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

void LogTail::WakeListenersFor(const std::vector<std::shared_ptr<const v1::Notification>>& fresh, bool everyone) {
  std::vector<std::shared_ptr<const Listener>> listening;
  {
    std::lock_guard lock(mu_);
    listening = listeners_;
  }
  // Filters and wakeups run outside the lock: the entries are already in
  // memory, so a stream that looks meanwhile finds them, and a wakeup may
  // take the stream's own lock and then read the tail.
  for (const auto& l : listening)
    if (everyone || !l->wants ||
        std::any_of(fresh.begin(), fresh.end(), [&](const auto& n) { return n && l->wants(*n); }))
      l->wakeup();
}

std::optional<LogTail::Batch> LogTail::Next(const std::string& cursor, size_t max, const Wants& wants) const {
  StreamId after = ParseStreamId(cursor);
  std::lock_guard lock(mu_);
  if (after < floor_order_) return std::nullopt;
  auto it = std::partition_point(entries_.begin(), entries_.end(),
                                 [&](const LogEntry& e) { return !(after < e.order); });
  Batch batch{{}, cursor};
  for (; it != entries_.end() && batch.wanted.size() < max; ++it) {
    batch.cursor = it->id;
    if (Wanted(*it, wants)) batch.wanted.push_back(*it);
  }
  return batch;
}

std::string LogTail::floor() const {
  std::lock_guard lock(mu_);
  return floor_;
}

}  // namespace sopflow::notifier

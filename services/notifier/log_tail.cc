#include "log_tail.h"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "store.h"

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
  thread_ = std::thread([this] { Loop(); });
}

void LogTail::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    running_ = false;
    for (const auto& w : waiters_) w->cv.notify_one();
  }
  if (thread_.joinable()) thread_.join();
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
      {
        std::lock_guard lock(mu_);
        for (auto& e : fresh) entries_.push_back(std::move(e));
        while (entries_.size() > capacity_) {
          floor_ = entries_.front().id;
          floor_order_ = entries_.front().order;
          entries_.pop_front();
        }
      }
      WakeWaitersFor(notifications);
    } catch (const std::exception& e) {
      spdlog::warn("notification log tail: {}", e.what());
      redis.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

std::optional<std::vector<LogEntry>> LogTail::Collect(const StreamId& after, size_t max) const {
  if (after < floor_order_) return std::nullopt;
  auto first = std::partition_point(entries_.begin(), entries_.end(),
                                    [&](const LogEntry& e) { return !(after < e.order); });
  std::vector<LogEntry> out;
  for (auto it = first; it != entries_.end() && out.size() < max; ++it) out.push_back(*it);
  return out;
}

void LogTail::WakeWaitersFor(const std::vector<std::shared_ptr<const v1::Notification>>& fresh) {
  std::vector<std::shared_ptr<Waiter>> waiting;
  {
    std::lock_guard lock(mu_);
    waiting = waiters_;
  }
  // Filters run here, outside the lock: the entries are already in memory,
  // so a stream that starts waiting meanwhile finds them without a wake-up.
  std::vector<std::shared_ptr<Waiter>> wanting;
  for (const auto& w : waiting)
    if (!w->wants || std::any_of(fresh.begin(), fresh.end(), [&](const auto& n) { return n && w->wants(*n); }))
      wanting.push_back(w);
  if (wanting.empty()) return;
  std::lock_guard lock(mu_);
  for (const auto& w : wanting) {
    w->woken = true;
    w->cv.notify_one();
  }
}

std::optional<std::vector<LogEntry>> LogTail::After(const std::string& cursor, size_t max, int wait_ms,
                                                    const Wants& wants) {
  StreamId after = ParseStreamId(cursor);
  std::unique_lock lock(mu_);
  auto found = Collect(after, max);
  if (!found || !found->empty() || !running_) return found;
  auto waiter = std::make_shared<Waiter>();
  waiter->wants = wants;  // copied only when it waits: most calls find entries
  waiters_.push_back(waiter);
  waiter->cv.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return waiter->woken || !running_; });
  waiters_.erase(std::find(waiters_.begin(), waiters_.end(), waiter));
  return Collect(after, max);
}

std::string LogTail::floor() const {
  std::lock_guard lock(mu_);
  return floor_;
}

}  // namespace sopflow::notifier

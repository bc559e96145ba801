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
    for (const auto& [interest, list] : listeners_) listening.insert(listening.end(), list.begin(), list.end());
  }
  // Each finds the tail stopped and ends its stream: now, not after the
  // tail's read in progress returns.
  for (const auto& l : listening) l->deliver({});
  if (thread_.joinable()) thread_.join();
}

bool LogTail::running() const {
  std::lock_guard lock(mu_);
  return running_;
}

std::string LogTail::UserInterest(const std::string& user_id) { return "user\x1f" + user_id; }
std::string LogTail::UnitInterest(const std::string& unit_or_member) { return "unit\x1f" + unit_or_member; }
std::string LogTail::RoleInterest(const std::string& role, const std::string& unit_or_member) {
  return "role\x1f" + role + "\x1f" + unit_or_member;
}

std::vector<std::string> LogTail::InterestsOf(const v1::Notification& n) {
  std::vector<std::string> keys{kEverything, UnitInterest(n.unit())};
  if (!n.member().empty() && n.member() != n.unit()) keys.push_back(UnitInterest(n.member()));
  keys.push_back(RoleInterest(n.role(), n.member().empty() ? n.unit() : n.member()));
  for (const auto& user : n.users()) keys.push_back(UserInterest(user));
  return keys;
}

std::shared_ptr<const LogTail::Listener> LogTail::Listen(std::string interest, Wants wants,
                                                         std::function<void(std::vector<LogEntry>)> deliver) {
  auto listener = std::make_shared<const Listener>(Listener{std::move(interest), std::move(wants), std::move(deliver)});
  std::lock_guard lock(mu_);
  listeners_[listener->interest].push_back(listener);
  return listener;
}

void LogTail::Unlisten(const std::shared_ptr<const Listener>& listener) {
  std::lock_guard lock(mu_);
  live_.erase(listener.get());
  auto found = listeners_.find(listener->interest);
  if (found == listeners_.end()) return;
  auto& list = found->second;
  list.erase(std::remove(list.begin(), list.end(), listener), list.end());
  if (list.empty()) listeners_.erase(found);
}

void LogTail::Pause(const std::shared_ptr<const Listener>& listener) {
  std::lock_guard lock(mu_);
  live_.erase(listener.get());
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
      {
        std::lock_guard lock(mu_);
        entries_.insert(entries_.end(), fresh.begin(), fresh.end());
        while (entries_.size() > capacity_) {
          floor_ = entries_.front().id;
          floor_order_ = entries_.front().order;
          entries_.pop_front();
        }
      }
      Deliver(fresh);
    } catch (const std::exception& e) {
      spdlog::warn("notification log tail: {}", e.what());
      redis.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

void LogTail::Deliver(const std::vector<LogEntry>& fresh) {
  // Looked up and filtered under the lock (a listener's interest is a map
  // lookup per entry and key; `wants` is asked only of those found);
  // delivered outside it, since a delivery takes the stream's own lock and
  // may read the tail.
  struct Out {
    std::shared_ptr<const Listener> listener;
    std::vector<LogEntry> entries;
  };
  std::vector<Out> outs;
  std::map<const Listener*, size_t> out_of;
  {
    std::lock_guard lock(mu_);
    if (live_.empty()) return;
    for (const auto& e : fresh) {
      if (!e.notification) continue;  // unreadable: nobody's
      for (const auto& key : InterestsOf(*e.notification)) {
        auto found = listeners_.find(key);
        if (found == listeners_.end()) continue;
        for (const auto& l : found->second) {
          if (!live_.count(l.get()) || (l->wants && !l->wants(*e.notification))) continue;
          auto [at, added] = out_of.emplace(l.get(), outs.size());
          if (added) outs.push_back({l, {}});
          auto& entries = outs[at->second].entries;
          if (entries.empty() || entries.back().order < e.order) entries.push_back(e);  // once, under two keys
        }
      }
    }
  }
  for (auto& out : outs) out.listener->deliver(std::move(out.entries));
}

std::optional<LogTail::Batch> LogTail::Next(const std::string& cursor, size_t max, const Wants& wants,
                                           const std::shared_ptr<const Listener>& go_live) const {
  StreamId after = ParseStreamId(cursor);
  std::lock_guard lock(mu_);
  if (after < floor_order_) return std::nullopt;
  auto it = std::partition_point(entries_.begin(), entries_.end(),
                                 [&](const LogEntry& e) { return !(after < e.order); });
  Batch batch{{}, cursor, false};
  for (; it != entries_.end() && batch.wanted.size() < max; ++it) {
    batch.cursor = it->id;
    if (Wanted(*it, wants)) batch.wanted.push_back(*it);
  }
  if (go_live && it == entries_.end() && running_) {
    live_.insert(go_live.get());
    batch.live = true;
  }
  return batch;
}

std::string LogTail::floor() const {
  std::lock_guard lock(mu_);
  return floor_;
}

}  // namespace sopflow::notifier

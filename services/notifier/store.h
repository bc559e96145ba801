// The notifier's state in Redis. A notification is recorded in one atomic
// batch with everything it is owed: its line in the log (which Subscribe
// streams), each recipient's inbox, and one pending delivery per e-mail and
// webhook. Deliveries and timers are claimed with a lease, so replicas
// share them and one that dies leaves its work to the others.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "redis.h"
#include "leased_queue.h"
#include "paging.h"
#include "redis_batch.h"
#include "sopflow/v1/notifier.pb.h"

namespace sopflow::notifier {

// How long items and deliveries are kept: 90 days.
inline constexpr int64_t kKeepSeconds = 7776000;
inline const std::string kKeepSecondsArg = std::to_string(kKeepSeconds);  // as a command's argument

namespace keys {
inline constexpr char kLog[] = "sf:n:log";            // stream: field n -> Notification
std::string Item(const std::string& id);              // Notification by id
std::string Inbox(const std::string& user);           // zset id by time
std::string Unread(const std::string& user);          // set of ids
inline constexpr char kHooks[] = "sf:n:hooks";        // hash id -> Webhook
inline constexpr char kHooksMeta[] = "sf:n:hooks:meta";  // hash: version, bumped by every change of kHooks
std::string Delivery(const std::string& id);          // hash: status, attempt, pb
inline constexpr char kDue[] = "sf:n:due";            // zset delivery id by next attempt
std::string DeliveriesOf(const std::string& target);  // zset delivery id by creation
inline constexpr char kDead[] = "sf:n:dead";          // zset delivery id by death
std::string DeadOf(const std::string& target);        // zset delivery id by death, of one target
// string: the newest death (ms) put in DeadOf by IndexDeadLetters, for
// dead letters of notifiers before 2026-11-22, which wrote kDead alone.
inline constexpr char kDeadIndexed[] = "sf:n:dead-indexed";
inline constexpr char kTimers[] = "sf:n:timers";      // zset "<task>|reminder" / "<task>|due" by fire time
inline constexpr char kSweep[] = "sf:n:sweep";        // string: the replica sweeping this interval (Store::TakeSweep)
// Retired: "sf:n:task:<id>", the notifier's copy of each task (notifiers
// before 2026-11-22); left to expire, read by nothing.
}  // namespace keys

using Claimed = ClaimedItem;

class Store {
 public:
  Store(RedisPool* pool, size_t log_max_len) : pool_(pool), log_max_len_(log_max_len) {}

  // Adds to `batch` the writes that record `n` with its deliveries. With
  // `marks_cause`, the notification's item is written by the batch's last
  // guard (RedisBatch::ClaimAbsent): its id is made from the cause, so the
  // batch applies only if that cause was not recorded before.
  void Record(RedisBatch& batch, const v1::Notification& n, const std::vector<v1::Webhook>& hooks,
              const std::vector<std::pair<std::string, std::string>>& emails, int64_t now_ms,
              bool marks_cause) const;
  int Commit(const RedisBatch& batch) { return sopflow::Commit(*pool_, batch); }
  std::vector<int> CommitAll(const std::vector<const RedisBatch*>& batches) { return sopflow::CommitAll(*pool_, batches); }

  // Every webhook, with the version of the set it was read at. The version
  // is read first, so a change in between pairs the new set with the old
  // version (a commit guarded on it fails and reads again), never the old
  // set with the new version.
  struct WebhookSet {
    std::string version;  // "" before the first change
    std::vector<v1::Webhook> hooks;
    // Positions in `hooks` by unit: each notification looks its unit (and
    // member) up instead of reading every hook of the province.
    std::map<std::string, std::vector<size_t>> by_unit;

    static WebhookSet Of(std::string version, std::vector<v1::Webhook> hooks);
    // The hooks `n` goes to: of its unit or its member, of its role (or of
    // every role), of its kind (or of every kind); in the set's order.
    std::vector<v1::Webhook> For(const v1::Notification& n) const;
  };
  WebhookSet Webhooks();
  // Every change of the webhooks goes through these, so each bumps the
  // version the replicas' cached sets are checked against.
  static void PutWebhook(RedisBatch& batch, const v1::Webhook& hook);
  static void RemoveWebhook(RedisBatch& batch, const std::string& id);
  std::optional<v1::Webhook> Webhook(const std::string& id);
  std::optional<v1::Notification> Item(const std::string& id);
  std::optional<v1::Delivery> Delivery(const std::string& id, int64_t* attempt = nullptr);

  // Up to `limit` due entries of a lease zset, each pushed `lease_ms` into
  // the future; deliveries also count the attempt.
  std::vector<Claimed> ClaimDeliveries(int64_t now_ms, int64_t lease_ms, int limit);
  std::vector<std::string> ClaimTimers(int64_t now_ms, int64_t lease_ms, int limit);

  // A page of the user's notifications (or only the unread ones), newest
  // first, after `after` (a previous page's `last`; none: the newest).
  struct InboxPage {
    std::vector<v1::Notification> notifications;
    std::optional<Ranked> last;  // where the next page starts; none: no more
  };
  InboxPage InboxOf(const std::string& user, size_t limit, bool unread_only,
                    const std::optional<Ranked>& after = std::nullopt);
  size_t UnreadCount(const std::string& user);
  size_t MarkRead(const std::string& user, const std::vector<std::string>& ids);
  // A page of a target's deliveries (newest first by creation) or of its
  // dead letters (newest first by death), after `page_token`.
  Page<v1::Delivery> DeliveriesFor(const std::string& target, bool dead_only, size_t limit,
                                   const std::string& page_token = "");
  // Adds to DeadOf the dead letters of kDead: all of them the first time;
  // then those of the last `recent`, which a notifier of the earlier
  // version may have written during a rolling update. Returns how many.
  size_t IndexDeadLetters(int64_t recent_ms);

  // Items and deliveries expire after kKeepSeconds, but the lists that name
  // them (each user's inbox and unread set, each target's deliveries, the
  // dead letters) would keep their ids forever: UnreadCount would count
  // notifications long gone and a user's lists would only grow. This
  // forgets the ids recorded before `cutoff_ms` in one SCAN page of those
  // lists; `next_cursor` is "0" once a pass over every key is complete.
  struct SweptPage {
    std::string next_cursor;
    size_t lists = 0;      // lists looked at
    size_t forgotten = 0;  // ids removed from them
  };
  SweptPage ForgetExpired(const std::string& cursor, int64_t cutoff_ms, int page_size);
  // True for the one replica that sweeps in this `interval_ms`.
  bool TakeSweep(const std::string& replica, int64_t interval_ms);

  RedisPool* pool() { return pool_; }

 private:
  RedisPool* pool_;
  size_t log_max_len_;
};

}  // namespace sopflow::notifier

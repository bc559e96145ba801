// The notifier's operations: events in, notifications out. Every change is
// one atomic RedisBatch. One that records notifications is guarded by the
// first one's item (its id is made from the cause: an event, a timer), so a
// redelivered event or a timer fired by two replicas records nothing twice;
// one without notifications only writes what may be written again (timers
// set or removed).
//
// The notifier keeps no copy of the tasks: a timer asks the router, when it
// fires, whether its task is still open and who holds it. So no event order
// (two replicas sharing the consumer) or backlog (a notifier that was down)
// can make it remind of a task that is done, and a task costs the notifier
// one timer entry in Redis instead of a second copy of the task.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "clock.h"
#include "compose.h"
#include "delivery.h"
#include "sopflow/v1/event.pb.h"
#include "sopflow/v1/notifier.pb.h"
#include "store.h"
#include "users.h"

namespace sopflow::notifier {

struct Options {
  double reminder_share = 0.8;      // of the time from creation to due
  double time_factor = 1;           // > 1: SOP time runs faster (demos)
  int max_attempts = 8;             // then the delivery is dead-lettered
  int64_t backoff_base_ms = 1000;
  int64_t backoff_max_ms = 300000;
  int http_timeout_ms = 5000;
  int64_t delivery_lease_ms = 60000;  // a claimed delivery returns to the queue after this
  int64_t timer_lease_ms = 30000;
  SmtpConfig smtp;
};

// The task as the router has it now (Router.GetTask); nullopt when the
// router knows no such task. Throws when the router cannot be asked: the
// timer then stays claimed, and fires when its lease runs out.
using TaskLookup = std::function<std::optional<v1::Task>(const std::string& task_id)>;

class Engine {
 public:
  Engine(Store* store, const Clock* clock, std::shared_ptr<const Composer> composer, TaskLookup tasks,
         Options options);

  // Events fetched together (one alone is a batch of one): the same result
  // as recording each on its own in order, with all records committed in
  // one round trip.
  void OnEvents(const std::vector<v1::Event>& events);
  // One pass over up to `limit` due timers; returns notifications recorded,
  // and in *taken the timers it claimed (all `limit`: more may be due).
  // Stops at the first timer whose task the router cannot be asked about,
  // and throws; that timer and those after it fire once their lease runs
  // out.
  static constexpr int kTimersPerPass = 100;
  size_t FireDueTimers(int limit = kTimersPerPass, size_t* taken = nullptr);
  // One pass over due deliveries; returns attempts made.
  size_t DeliverDue(int limit = 16);
  // Forgets, in every list that names them, the ids of notifications and
  // deliveries older than kKeepSeconds (Store::ForgetExpired), page by page
  // while `go_on` holds, if `replica` takes this `interval_ms`'s sweep.
  // `go_on` is asked between pages; the notifier's pauses there, so that
  // the sweep leaves Redis to the chain (docs/performance.md, session 20).
  // Returns the ids forgotten; nullopt if another replica has the sweep.
  std::optional<size_t> SweepExpired(const std::string& replica, int64_t interval_ms,
                                     const std::function<bool()>& go_on);

  v1::Webhook RegisterWebhook(const User& user, const v1::RegisterWebhookRequest& req);
  // Webhooks from the ops team's file (declared_webhooks.h), written as
  // given: every replica declaring the same file leaves the same state.
  void DeclareWebhooks(const std::vector<v1::Webhook>& hooks);
  std::vector<v1::Webhook> ListWebhooks(const User& user, const std::string& unit);
  void RemoveWebhook(const User& user, const std::string& id);
  v1::Delivery TestWebhook(const User& user, const std::string& id);
  v1::ListDeliveriesResponse ListDeliveries(const User& user, const v1::ListDeliveriesRequest& req);

  // Checks the caller may subscribe so; returns the matching rule: where
  // the log tail looks the stream up (LogTail::InterestsOf) and the exact
  // test.
  struct Subscription {
    std::string interest;
    std::function<bool(const v1::Notification&)> wants;
  };
  Subscription SubscriptionFilter(const User& user, const v1::SubscribeRequest& req);

  // Called after a commit that scheduled deliveries, so idle delivery
  // workers start at once rather than at their next poll.
  void OnDeliveriesScheduled(std::function<void()> wake) { deliveries_scheduled_ = std::move(wake); }

  Store& store() { return *store_; }
  const Composer& composer() const { return *composer_; }

 private:
  // What one cause (an event, a timer) leaves to record: notifications
  // (with their deliveries) and other writes. With notifications it is
  // applied once per cause (their ids are made from it); without, its
  // writes must be idempotent.
  struct Record {
    std::vector<v1::Notification> notifications;
    RedisBatch extra;
  };
  // The record an event makes; nullopt for events that concern others.
  std::optional<Record> RecordFor(const v1::Event& event);
  Record TaskCreated(const v1::Event& event);
  Record RunCancelled(const v1::Event& event);  // reads the run's tasks
  // The batch that writes `record`. With notifications it is guarded to
  // apply once per cause and on `hooks` still being the current webhooks
  // (hooks_guard: that guard's index, 0 if none).
  struct Sealed {
    RedisBatch batch;
    int hooks_guard = 0;
    bool schedules_deliveries = false;  // webhook or e-mail deliveries
  };
  Sealed Seal(const Record& record, const Store::WebhookSet* hooks) const;
  // Commits the records in one round trip (more only if the webhooks
  // changed meanwhile); true for each one applied, false for each whose
  // cause was handled before (or whose own guard refused it).
  std::vector<bool> CommitRecords(const std::vector<Record>& records);
  bool RecordOnce(Record record) { return CommitRecords({std::move(record)}).front(); }
  // The webhooks as last read by this replica, read again if `reread`. Not
  // read per event: every commit that used them is guarded on their
  // version, so a change made through any replica fails that commit, which
  // then reads them again. No delivery goes to a removed webhook or misses
  // a new one.
  std::shared_ptr<const Store::WebhookSet> Hooks(bool reread);
  void Attempt(const Claimed& claim);
  bool MayManageUnit(const User& user, const std::string& unit) const { return user.admin || user.unit == unit; }

  Store* store_;
  const Clock* clock_;
  std::shared_ptr<const Composer> composer_;
  TaskLookup tasks_;
  Options options_;
  std::mutex random_mu_;
  std::mt19937_64 random_;
  std::mutex hooks_mu_;
  std::shared_ptr<const Store::WebhookSet> hooks_;
  std::function<void()> deliveries_scheduled_;
};

}  // namespace sopflow::notifier

#include "engine.h"

#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <set>

#include "error.h"
#include "ids.h"
#include "log_tail.h"
#include "metrics.h"

namespace sopflow::notifier {

using google::protobuf::util::TimeUtil;

namespace {

const std::string kReminder = "reminder";
const std::string kDue = "due";

int64_t Millis(TimePoint t) { return UnixMillis(t); }
google::protobuf::Timestamp Stamp(int64_t ms) { return TimeUtil::MillisecondsToTimestamp(ms); }

std::string TimerId(const std::string& task_id, const std::string& which) { return task_id + "|" + which; }

void ForgetTimers(RedisBatch& b, const std::string& task_id) {
  b.Write({"ZREM", keys::kTimers, TimerId(task_id, kReminder), TimerId(task_id, kDue)});
}

// What firing timers learnt from the router: "open" (a reminder or an
// escalation follows), "closed" (done, cancelled or gone: the timer goes
// quietly), "unanswered" (the router could not be asked; the timer fires
// again after its lease).
void CountTimerCheck(const char* result) {
  Metrics::Global().Count("sopflow_timer_checks_total", std::string("result=\"") + result + "\"");
}

void CountRecorded(const std::vector<v1::Notification>& notifications) {
  for (const auto& n : notifications)
    Metrics::Global().Count("sopflow_notifications_total", "kind=\"" + v1::Notification::Kind_Name(n.kind()) + "\"");
}

}  // namespace

Engine::Engine(Store* store, const Clock* clock, std::shared_ptr<const Composer> composer, TaskLookup tasks,
               Options options)
    : store_(store),
      clock_(clock),
      composer_(std::move(composer)),
      tasks_(std::move(tasks)),
      options_(std::move(options)),
      random_(std::random_device{}()) {}

Engine::Sealed Engine::Seal(const Record& record, const Store::WebhookSet* hooks) const {
  Sealed sealed{record.extra};
  RedisBatch& b = sealed.batch;
  if (!record.notifications.empty()) {
    b.ExpectField(keys::kHooksMeta, "version", hooks->version);
    sealed.hooks_guard = static_cast<int>(b.guard_count());
  }
  int64_t now = Millis(clock_->Now());
  for (const auto& n : record.notifications) {
    std::vector<std::pair<std::string, std::string>> emails;
    if (!options_.smtp.url.empty())
      for (const auto& id : n.users())
        if (const User* u = composer_->users().ById(id); u && !u->email.empty()) emails.emplace_back(u->id, u->email);
    auto n_hooks = hooks->For(n);
    sealed.schedules_deliveries |= !n_hooks.empty() || !emails.empty();
    // The first notification's item (its id is made from the cause) marks
    // the cause handled: no marker key of its own per event, and written
    // by the batch's last guard, so a repeat of the cause records nothing.
    store_->Record(b, n, n_hooks, emails, now, /*marks_cause=*/&n == &record.notifications.front());
  }
  return sealed;
}

std::shared_ptr<const Store::WebhookSet> Engine::Hooks(bool reread) {
  {
    std::lock_guard lock(hooks_mu_);
    if (hooks_ && !reread) return hooks_;
  }
  auto fresh = std::make_shared<const Store::WebhookSet>(store_->Webhooks());
  std::lock_guard lock(hooks_mu_);
  hooks_ = fresh;
  return fresh;
}

std::vector<bool> Engine::CommitRecords(const std::vector<Record>& records) {
  constexpr int kMaxAttempts = 8;  // webhook changes racing this commit
  std::vector<bool> recorded(records.size(), false);
  std::vector<size_t> todo(records.size());
  for (size_t i = 0; i < todo.size(); ++i) todo[i] = i;
  for (int attempt = 0; !todo.empty(); ++attempt) {
    if (attempt == kMaxAttempts) throw DomainError(ErrorCode::kUnavailable, "webhooks kept changing; retry");
    bool any_notifications =
        std::any_of(todo.begin(), todo.end(), [&](size_t i) { return !records[i].notifications.empty(); });
    auto hooks = any_notifications ? Hooks(attempt > 0) : nullptr;
    std::vector<Sealed> sealed;
    sealed.reserve(todo.size());
    for (size_t i : todo) sealed.push_back(Seal(records[i], hooks.get()));
    std::vector<const RedisBatch*> pointers;
    pointers.reserve(sealed.size());
    for (const auto& s : sealed) pointers.push_back(&s.batch);
    auto results = store_->CommitAll(pointers);
    std::vector<size_t> again;
    bool deliveries = false;
    for (size_t k = 0; k < todo.size(); ++k) {
      if (results[k] == 0) {
        recorded[todo[k]] = true;
        deliveries |= sealed[k].schedules_deliveries;
        CountRecorded(records[todo[k]].notifications);
      } else if (sealed[k].hooks_guard != 0 && results[k] == sealed[k].hooks_guard) {
        again.push_back(todo[k]);  // the webhooks changed: read them and seal it again
      }
    }
    if (deliveries && deliveries_scheduled_) deliveries_scheduled_();
    todo = std::move(again);
  }
  return recorded;
}

void Engine::OnEvents(const std::vector<v1::Event>& events) {
  // Records commit in order, each on its own, so a batch ends as handling
  // its events one by one would; none reads state another may change.
  std::vector<Record> records;
  for (const auto& event : events)
    if (auto record = RecordFor(event)) records.push_back(std::move(*record));
  if (!records.empty()) CommitRecords(records);
}

std::optional<Engine::Record> Engine::RecordFor(const v1::Event& event) {
  TimePoint now = clock_->Now();
  switch (event.payload_case()) {
    case v1::Event::kTaskCreated:
      return TaskCreated(event);
    case v1::Event::kTaskCompleted: {
      // Done (or returned): its timers go. Were they still to come (this
      // replica ahead of the one with task.created), they fire as no-ops:
      // the router says the task is done.
      Record r;
      ForgetTimers(r.extra, event.task_completed().task().id());
      return r;
    }
    case v1::Event::kRunCompleted: {
      const auto& run = event.run_completed().run();
      return Record{{composer_->ForRun(v1::Notification::RUN_COMPLETED, run, event.id(), {run.started_by()}, now)}};
    }
    case v1::Event::kRunCancelled:
      return RunCancelled(event);
    case v1::Event::kSubmissionsLate:
      return Record{composer_->ForLateSubmissions(event, now)};
    default:
      // Step completions and run starts are the router's business; a claim
      // changes whom a reminder goes to, which the router says when it fires.
      return std::nullopt;
  }
}

Engine::Record Engine::TaskCreated(const v1::Event& event) {
  const v1::Task& task = event.task_created().task();
  Record r;
  RedisBatch& b = r.extra;
  if (task.kind() != v1::Step::SYSTEM) {
    r.notifications.push_back(composer_->ForTask(v1::Notification::TASK_ASSIGNED, task, event.id(), clock_->Now()));
    TaskTimers timers = TimersFor(task, options_.reminder_share, options_.time_factor);
    if (timers.has_due) {
      b.Write({"ZADD", keys::kTimers, std::to_string(Millis(timers.reminder)), TimerId(task.id(), kReminder),
               std::to_string(Millis(timers.due)), TimerId(task.id(), kDue)});
    }
  }
  return r;
}

Engine::Record Engine::RunCancelled(const v1::Event& event) {
  const auto& run = event.run_cancelled().run();
  Record r;
  std::set<std::string> users{run.started_by()};
  // The router says which tasks it closed; their timers go. Should their
  // task.created come later (another replica, a redelivery), the timers it
  // sets fire as no-ops: the router says the tasks are cancelled.
  for (const auto& task : event.run_cancelled().cancelled_tasks()) {
    ForgetTimers(r.extra, task.id());
    for (const auto& u : Audience(composer_->users(), task.pelaksana(), task.unit(), task.member())) users.insert(u->id);
  }
  std::vector<std::string> list(users.begin(), users.end());
  r.notifications.push_back(composer_->ForRun(v1::Notification::RUN_CANCELLED, run, event.id(), list, clock_->Now()));
  return r;
}

std::optional<size_t> Engine::SweepExpired(const std::string& replica, int64_t interval_ms,
                                           const std::function<bool()>& go_on) {
  // Small pages: each SCAN page holds Redis for the keys it looks at, and
  // a page of 1,000 keys (about a millisecond) stalled the chain's
  // commands behind it. A keyspace of millions of keys is some tens of
  // thousands of pages; the bound only stops a pass that would never end.
  constexpr int kPageSize = 100, kMaxPages = 10000000;
  if (!store_->TakeSweep(replica, interval_ms)) return std::nullopt;
  const int64_t cutoff = Millis(clock_->Now()) - kKeepSeconds * 1000;
  size_t forgotten = 0, lists = 0;
  std::string cursor = "0";
  for (int page = 0; page < kMaxPages && go_on(); ++page) {
    auto swept = store_->ForgetExpired(cursor, cutoff, kPageSize);
    forgotten += swept.forgotten;
    lists += swept.lists;
    cursor = std::move(swept.next_cursor);
    if (cursor == "0") break;
  }
  Metrics::Global().Count("sopflow_notifier_expired_ids_forgotten_total", "", static_cast<double>(forgotten));
  spdlog::info("sweep: {} lists looked at, {} expired ids forgotten", lists, forgotten);
  return forgotten;
}

size_t Engine::FireDueTimers(int limit, size_t* taken) {
  TimePoint now = clock_->Now();
  size_t recorded = 0;
  const auto timers = store_->ClaimTimers(Millis(now), options_.timer_lease_ms, limit);
  if (taken) *taken = timers.size();
  for (const auto& timer : timers) {
    auto bar = timer.rfind('|');
    std::string task_id = timer.substr(0, bar), which = timer.substr(bar + 1);
    std::optional<v1::Task> task;
    try {
      task = tasks_(task_id);
    } catch (...) {
      CountTimerCheck("unanswered");  // the timer's lease brings it back
      throw;
    }
    RedisBatch b;
    b.Write({"ZREM", keys::kTimers, timer});
    std::vector<v1::Notification> notifications;
    // As the router has it now: open or claimed (a claimed task's reminder
    // goes to whoever holds it), or neither and the timer goes quietly.
    bool open = task && (task->status() == v1::Task::OPEN || task->status() == v1::Task::CLAIMED);
    CountTimerCheck(open ? "open" : "closed");
    if (open) {
      if (which == kReminder) {
        notifications.push_back(composer_->ForTask(v1::Notification::TASK_REMINDER, *task, timer, now));
      } else {
        notifications.push_back(composer_->ForTask(v1::Notification::TASK_OVERDUE, *task, timer, now));
        if (!task->supervisor().empty())
          notifications.push_back(
              composer_->ForTask(v1::Notification::TASK_ESCALATED, *task, timer, now, task->supervisor()));
      }
    }
    size_t count = notifications.size();
    if (RecordOnce(Record{std::move(notifications), std::move(b)})) recorded += count;
  }
  return recorded;
}

size_t Engine::DeliverDue(int limit) {
  auto claims = store_->ClaimDeliveries(Millis(clock_->Now()), options_.delivery_lease_ms, limit);
  for (const auto& claim : claims) {
    try {
      Attempt(claim);
    } catch (const std::exception& e) {
      spdlog::warn("delivery {}: {}", claim.id, e.what());  // the lease brings it back
    }
  }
  return claims.size();
}

void Engine::Attempt(const Claimed& claim) {
  int64_t attempt = 0;
  auto delivery = store_->Delivery(claim.id, &attempt);
  if (!delivery || attempt != claim.attempt) return;  // gone, or another replica took it over
  RedisBatch b;
  b.ExpectField(keys::Delivery(claim.id), "attempt", std::to_string(claim.attempt));
  if (delivery->status() != v1::Delivery::PENDING) {
    b.Write({"ZREM", keys::kDue, claim.id});
    store_->Commit(b);
    return;
  }
  SendResult result;
  auto n = store_->Item(delivery->notification_id());
  if (!n) {
    result.error = "notification expired";
  } else if (delivery->channel() == v1::Delivery::WEBHOOK) {
    auto hook = store_->Webhook(delivery->target());
    if (hook) result = PostWebhook(*hook, delivery->id(), CloudEventJson(*n), options_.http_timeout_ms);
    else result.error = "webhook removed";
  } else {
    const User* user = composer_->users().ById(delivery->user());
    if (user) {
      Rendered mail = composer_->RenderFor(*n, *user);
      result = SendEmail(options_.smtp, delivery->target(), mail.subject, mail.body, delivery->id() + "@sopflow");
    } else {
      result.error = "user " + delivery->user() + " no longer exists";
    }
  }
  int64_t now = Millis(clock_->Now());
  auto* a = delivery->add_attempts();
  *a->mutable_time() = Stamp(now);
  a->set_status_code(result.status_code);
  a->set_latency_ms(result.latency_ms);
  a->set_error(result.error);
  bool give_up = !result.ok && (delivery->attempts_size() >= options_.max_attempts || !n);
  if (result.ok || give_up) {
    delivery->set_status(result.ok ? v1::Delivery::DELIVERED : v1::Delivery::DEAD);
    delivery->clear_next_attempt_at();
    b.Write({"ZREM", keys::kDue, claim.id});
    if (give_up) {
      b.Write({"ZADD", keys::kDead, std::to_string(now), claim.id});
      b.Write({"ZADD", keys::DeadOf(delivery->target()), std::to_string(now), claim.id});
    }
  } else {
    double r;
    {
      std::lock_guard lock(random_mu_);
      r = std::uniform_real_distribution<double>(0, 1)(random_);
    }
    int64_t next = now + BackoffMs(delivery->attempts_size(), options_.backoff_base_ms, options_.backoff_max_ms, r);
    *delivery->mutable_next_attempt_at() = Stamp(next);
    b.Write({"ZADD", keys::kDue, std::to_string(next), claim.id});
  }
  b.Write({"HSET", keys::Delivery(claim.id), "status", v1::Delivery::Status_Name(delivery->status()), "pb",
           delivery->SerializeAsString()});
  if (store_->Commit(b) != 0) {
    spdlog::warn("delivery {}: taken over while sending; its attempt is not recorded", claim.id);
    return;
  }
  Metrics::Global().Count("sopflow_delivery_attempts_total",
                          "channel=\"" + v1::Delivery::Channel_Name(delivery->channel()) + "\",ok=\"" +
                              (result.ok ? "true" : "false") + "\"");
}

// ---------------------------------------------------------------- webhooks

v1::Webhook Engine::RegisterWebhook(const User& user, const v1::RegisterWebhookRequest& req) {
  if (req.url().rfind("http://", 0) != 0 && req.url().rfind("https://", 0) != 0)
    ThrowInvalid("url", "must start with http:// or https://");
  if (req.url().size() > 2000) ThrowInvalid("url", "too long");
  std::string unit = req.unit().empty() ? user.unit : req.unit();
  if (unit.empty()) ThrowInvalid("unit", "is required");
  if (!MayManageUnit(user, unit)) ThrowDenied("webhooks of unit '" + unit + "' are managed by its users or an admin");
  for (int k : req.kinds())
    if (!v1::Notification::Kind_IsValid(k) || k == v1::Notification::KIND_UNSPECIFIED)
      ThrowInvalid("kinds", "unknown kind " + std::to_string(k));
  v1::Webhook hook;
  hook.set_id("wh-" + RandomHex(8));
  hook.set_url(req.url());
  hook.set_unit(unit);
  hook.set_role(req.role());
  *hook.mutable_kinds() = req.kinds();
  hook.set_secret(req.secret().empty() ? RandomHex(32) : req.secret());
  hook.set_created_by(user.id);
  *hook.mutable_created_at() = Stamp(Millis(clock_->Now()));
  RedisBatch b;
  Store::PutWebhook(b, hook);
  store_->Commit(b);
  return hook;
}

void Engine::DeclareWebhooks(const std::vector<v1::Webhook>& hooks) {
  if (hooks.empty()) return;
  RedisBatch b;
  for (const auto& hook : hooks) Store::PutWebhook(b, hook);
  store_->Commit(b);
}

std::vector<v1::Webhook> Engine::ListWebhooks(const User& user, const std::string& unit) {
  std::string want = unit.empty() && !user.admin ? user.unit : unit;
  if (!want.empty() && !MayManageUnit(user, want)) ThrowDenied("webhooks of unit '" + want + "' are not yours to see");
  std::vector<v1::Webhook> out;
  for (auto& h : store_->Webhooks().hooks) {
    if (!want.empty() && h.unit() != want) continue;
    h.clear_secret();
    out.push_back(std::move(h));
  }
  return out;
}

void Engine::RemoveWebhook(const User& user, const std::string& id) {
  auto hook = store_->Webhook(id);
  if (!hook) ThrowNotFound("no webhook '" + id + "'");
  if (!MayManageUnit(user, hook->unit())) ThrowDenied("webhook " + id + " belongs to unit '" + hook->unit() + "'");
  RedisBatch b;
  Store::RemoveWebhook(b, id);
  store_->Commit(b);
}

v1::Delivery Engine::TestWebhook(const User& user, const std::string& id) {
  auto hook = store_->Webhook(id);
  if (!hook) ThrowNotFound("no webhook '" + id + "'");
  if (!MayManageUnit(user, hook->unit())) ThrowDenied("webhook " + id + " belongs to unit '" + hook->unit() + "'");
  int64_t now = Millis(clock_->Now());
  v1::Notification n;
  n.set_id("test-" + RandomHex(6));
  n.set_kind(v1::Notification::TEST);
  *n.mutable_time() = Stamp(now);
  n.set_unit(hook->unit());
  n.set_title("Uji webhook sopflow");
  n.set_title_en("sopflow webhook test");
  v1::Delivery d;
  d.set_id(n.id() + "|" + id);
  d.set_notification_id(n.id());
  d.set_channel(v1::Delivery::WEBHOOK);
  d.set_target(id);
  SendResult result = PostWebhook(*hook, d.id(), CloudEventJson(n), options_.http_timeout_ms);
  auto* a = d.add_attempts();
  *a->mutable_time() = Stamp(now);
  a->set_status_code(result.status_code);
  a->set_latency_ms(result.latency_ms);
  a->set_error(result.error);
  d.set_status(result.ok ? v1::Delivery::DELIVERED : v1::Delivery::DEAD);
  RedisBatch b;
  b.Write({"HSET", keys::Delivery(d.id()), "status", v1::Delivery::Status_Name(d.status()), "attempt", "1", "pb",
           d.SerializeAsString()});
  b.Write({"EXPIRE", keys::Delivery(d.id()), kKeepSecondsArg});
  b.Write({"ZADD", keys::DeliveriesOf(id), std::to_string(now), d.id()});
  store_->Commit(b);
  return d;
}

v1::ListDeliveriesResponse Engine::ListDeliveries(const User& user, const v1::ListDeliveriesRequest& req) {
  std::string target = user.email;
  if (!req.webhook_id().empty()) {
    auto hook = store_->Webhook(req.webhook_id());
    if (!hook) ThrowNotFound("no webhook '" + req.webhook_id() + "'");
    if (!MayManageUnit(user, hook->unit())) ThrowDenied("webhook " + hook->id() + " belongs to unit '" + hook->unit() + "'");
    target = hook->id();
  }
  v1::ListDeliveriesResponse out;
  if (target.empty()) {  // a user without an e-mail address has no e-mail deliveries
    FromPageToken(req.page_token());  // a bad token is still refused
    return out;
  }
  auto page = store_->DeliveriesFor(target, req.dead_only(), PageLimit(req.page_size()), req.page_token());
  for (auto& d : page.items) *out.add_deliveries() = std::move(d);
  out.set_next_page_token(std::move(page.next_page_token));
  return out;
}

Engine::Subscription Engine::SubscriptionFilter(const User& user, const v1::SubscribeRequest& req) {
  if (req.role().empty() && req.unit().empty()) {
    std::string me = user.id;
    return {LogTail::UserInterest(me), [me](const v1::Notification& n) {
              return std::find(n.users().begin(), n.users().end(), me) != n.users().end();
            }};
  }
  if (req.unit() == "*") {  // everything: operators and demos
    if (!user.admin) ThrowDenied("only an admin subscribes to every unit");
    return {LogTail::kEverything, [](const v1::Notification&) { return true; }};
  }
  std::string unit = req.unit().empty() ? user.unit : req.unit();
  if (!user.admin && unit != user.unit) ThrowDenied("you may subscribe only to your own unit '" + user.unit + "'");
  if (req.role().empty())
    return {LogTail::UnitInterest(unit), [unit](const v1::Notification& n) { return n.unit() == unit || n.member() == unit; }};
  if (!user.admin && !user.HasRole(req.role())) ThrowDenied("you do not hold role '" + req.role() + "'");
  const std::string& role = req.role();
  return {LogTail::RoleInterest(role, unit), [unit, role](const v1::Notification& n) {
            return n.role() == role && (n.member().empty() ? n.unit() == unit : n.member() == unit);
          }};
}

}  // namespace sopflow::notifier

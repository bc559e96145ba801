// Reminders and escalations on a controlled clock with two notifier
// replicas, and a notifier killed and restarted.
#include <hiredis/hiredis.h>

#include <set>

#include "notifier_fixture.h"
#include "redis.h"

namespace sopflow::testing {
namespace {

// Notifications of `kind` about `task_id` recorded in the notification log:
// a duplicate would appear here twice.
std::vector<v1::Notification> Logged(const std::string& redis, const std::string& task_id, v1::Notification::Kind kind,
                                     const std::set<std::string>& run_ids = {}) {
  RedisConnection conn(RedisAddress::Parse(redis));
  Reply r = conn.Command({"XRANGE", "sf:n:log", "-", "+"});
  std::vector<v1::Notification> out;
  for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; ++i) {
    v1::Notification n;
    if (!n.ParseFromString(ReplyString(r->element[i]->element[1]->element[1]).value_or(""))) continue;
    bool task_ok = task_id.empty() || n.task_id() == task_id;
    bool run_ok = run_ids.empty() || run_ids.count(n.run_id());
    if (n.kind() == kind && task_ok && run_ok) out.push_back(n);
  }
  return out;
}

bool Addressed(const v1::Notification& n, const std::string& user) {
  return std::find(n.users().begin(), n.users().end(), user) != n.users().end();
}

class NotifierTimersTest : public RouterTest {
 protected:
  static void SetUpTestSuite() {
    RouterTest::SetUpTestSuite();
    clock_for_notifiers_ = new ManualClock(SystemClock().Now());
    for (int i = 0; i < 2; ++i) {
      auto config = NotifierConfigFor(*backends_, "", router_->port());
      config.replica_id = "notifier-" + std::to_string(i);
      config.sweep_interval_ms = 1000;  // a sweep each second between the two, not each hour
      replicas_[i] = new notifier::NotifierProcess(config, clock_for_notifiers_);
      replicas_[i]->Start();
    }
  }
  static void TearDownTestSuite() {
    for (auto*& r : replicas_) {
      delete r;
      r = nullptr;
    }
    delete clock_for_notifiers_;
    RouterTest::TearDownTestSuite();
  }
  void SetUp() override { clock_for_notifiers_->Set(SystemClock().Now()); }
  std::string redis() { return backends_->redis->address(); }

  static ManualClock* clock_for_notifiers_;
  static notifier::NotifierProcess* replicas_[2];
};

ManualClock* NotifierTimersTest::clock_for_notifiers_ = nullptr;
notifier::NotifierProcess* NotifierTimersTest::replicas_[2] = {nullptr, nullptr};

TEST_F(NotifierTimersTest, AReminderAndAnOverdueEscalationFireOnceWithTwoReplicas) {
  v1::Run run = Start003();
  v1::Task task = AdvanceTo(run.id(), 4);  // "30 menit", supervisor: the Sekretaris
  ASSERT_EQ(task.supervisor(), "sekretaris");
  ASSERT_TRUE(WaitUntil([&] { return Logged(redis(), task.id(), v1::Notification::TASK_ASSIGNED).size() == 1; }));
  EXPECT_TRUE(Logged(redis(), task.id(), v1::Notification::TASK_REMINDER).empty());

  clock_for_notifiers_->Advance(std::chrono::minutes(25));  // past 80% of 30 minutes
  ASSERT_TRUE(WaitUntil([&] { return !Logged(redis(), task.id(), v1::Notification::TASK_REMINDER).empty(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // both replicas had many passes
  auto reminders = Logged(redis(), task.id(), v1::Notification::TASK_REMINDER);
  ASSERT_EQ(reminders.size(), 1u);
  EXPECT_TRUE(Addressed(reminders[0], "staf-blg"));
  EXPECT_TRUE(Logged(redis(), task.id(), v1::Notification::TASK_OVERDUE).empty());

  clock_for_notifiers_->Advance(std::chrono::minutes(10));  // past the due time
  ASSERT_TRUE(WaitUntil([&] {
    return !Logged(redis(), task.id(), v1::Notification::TASK_OVERDUE).empty() &&
           !Logged(redis(), task.id(), v1::Notification::TASK_ESCALATED).empty();
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto overdue = Logged(redis(), task.id(), v1::Notification::TASK_OVERDUE);
  auto escalated = Logged(redis(), task.id(), v1::Notification::TASK_ESCALATED);
  ASSERT_EQ(overdue.size(), 1u);
  ASSERT_EQ(escalated.size(), 1u);
  EXPECT_EQ(Logged(redis(), task.id(), v1::Notification::TASK_REMINDER).size(), 1u);
  EXPECT_TRUE(Addressed(overdue[0], "staf-blg"));
  EXPECT_EQ(escalated[0].role(), "sekretaris");
  EXPECT_TRUE(Addressed(escalated[0], "sekretaris-blg"));
  EXPECT_NE(escalated[0].title().find("Eskalasi"), std::string::npos);
}

// The replicas sweep on their own: 91 days on, the sekretaris's inbox and
// unread set no longer name a notification whose item has expired.
TEST_F(NotifierTimersTest, TheReplicasForgetExpiredNotificationsOnTheirOwn) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  std::vector<v1::Notification> assigned;
  ASSERT_TRUE(WaitUntil([&] {
    assigned = Logged(redis(), first.id(), v1::Notification::TASK_ASSIGNED);
    return assigned.size() == 1;
  }));
  ASSERT_TRUE(Addressed(assigned[0], "sekretaris-blg"));
  RedisConnection conn(RedisAddress::Parse(redis()));
  auto named = [&] {
    bool in_inbox = conn.Command({"ZSCORE", "sf:n:inbox:sekretaris-blg", assigned[0].id()})->type == REDIS_REPLY_STRING;
    bool unread = ReplyInteger(conn.Command({"SISMEMBER", "sf:n:unread:sekretaris-blg", assigned[0].id()}).get()) == 1;
    return in_inbox || unread;
  };
  ASSERT_TRUE(named());
  clock_for_notifiers_->Advance(std::chrono::hours(24 * 91));
  EXPECT_TRUE(WaitUntil([&] { return !named(); })) << "still in the inbox or unread 91 days on";
}

TEST_F(NotifierTimersTest, ATaskDoneBeforeItsReminderGetsNone) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);  // "15 menit"
  ASSERT_TRUE(Complete(kSekretarisBlg, first.id(), "").ok());
  v1::Task second = WaitForOpenTask(run.id(), 2);
  ASSERT_TRUE(WaitUntil([&] { return !Logged(redis(), second.id(), v1::Notification::TASK_ASSIGNED).empty(); }));
  clock_for_notifiers_->Advance(std::chrono::minutes(25));  // past step 1's due, step 2's 80%
  // Step 2 ("30 menit") gets its reminder; step 1, done, gets nothing.
  ASSERT_TRUE(WaitUntil([&] { return !Logged(redis(), second.id(), v1::Notification::TASK_REMINDER).empty(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(Logged(redis(), first.id(), v1::Notification::TASK_REMINDER).empty());
  EXPECT_TRUE(Logged(redis(), first.id(), v1::Notification::TASK_OVERDUE).empty());
  EXPECT_TRUE(Logged(redis(), first.id(), v1::Notification::TASK_ESCALATED).empty());
}

TEST(NotifierCrashTest, KilledAndRestartedItLosesNothingAndRepeatsNothing) {
  OwnRouter own;
  auto config = NotifierConfigFor(own.backends, "", own.router.port());
  auto start_notifier = [&](ChildProcess& p) {
    int port = 0;
    ASSERT_TRUE(StartOnOwnPort(p,
                               {SOPFLOW_NOTIFIER_BIN, "--redis", config.redis, "--nats", config.nats, "--tokens",
                                config.tokens_file, "--calendar", config.calendar_file, "--templates",
                                config.templates_dir, "--router", config.router, "--service-token",
                                config.service_token, "--ack-wait-ms", "1000"},
                               {}, own.backends.dir + "/notifier.log", &port));
  };
  std::set<std::string> runs;
  auto start_runs = [&](int n) {
    for (int i = 0; i < n; ++i) {
      v1::StartRunRequest req = Run003Request("2026-Q" + std::to_string(i % 4 + 1));
      v1::Run run;
      ASSERT_TRUE(own.stub->StartRun(AuthedContext(kSekretarisBlg).get(), req, &run).ok());
      runs.insert(run.id());
    }
  };
  ChildProcess first;
  start_notifier(first);
  start_runs(5);
  ASSERT_TRUE(WaitUntil([&] { return !Logged(config.redis, "", v1::Notification::TASK_ASSIGNED, runs).empty(); }));
  first.Kill();  // SIGKILL, possibly in the middle of a batch
  start_runs(5);  // while no notifier runs
  ChildProcess second;
  start_notifier(second);
  ASSERT_TRUE(WaitUntil([&] { return Logged(config.redis, "", v1::Notification::TASK_ASSIGNED, runs).size() >= 10; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto assigned = Logged(config.redis, "", v1::Notification::TASK_ASSIGNED, runs);
  std::set<std::string> ids, runs_told;
  for (const auto& n : assigned) {
    EXPECT_TRUE(ids.insert(n.id()).second) << "recorded twice: " << n.id();
    runs_told.insert(n.run_id());
  }
  EXPECT_EQ(assigned.size(), 10u);
  EXPECT_EQ(runs_told, runs);
  second.Stop();
  own.router.Shutdown();
}

// At quarter's end many tasks fall due together. A notifier takes due
// timers a hundred at a time, and after a full pass looks again at once:
// 120 reminders due together all go out in the first look, not a hundred
// now and twenty after the pause between looks (a minute here).
TEST(NotifierTimerBurstTest, MoreDueTimersThanOnePassTakesAllGoOutWithoutWaitingForTheNextLook) {
  OwnRouter own;
  ManualClock notifier_clock(own.clock.Now());
  auto config = NotifierConfigFor(own.backends, "", own.router.port());
  config.timer_interval_ms = 60000;
  constexpr int kTasks = notifier::Engine::kTimersPerPass + 20;
  std::set<std::string> runs;
  {
    // This one records the assignments and sets the timers; its one look
    // at the timers was at its start, before any.
    notifier::NotifierProcess recorder(config, &notifier_clock);
    recorder.Start();
    for (int i = 0; i < kTasks; ++i) {
      v1::Run run;
      v1::StartRunRequest req = Run003Request("2026-Q" + std::to_string(i % 4 + 1));
      ASSERT_TRUE(own.stub->StartRun(AuthedContext(kSekretarisBlg).get(), req, &run).ok());
      runs.insert(run.id());
    }
    ASSERT_TRUE(WaitUntil([&] {
      return Logged(config.redis, "", v1::Notification::TASK_ASSIGNED, runs).size() == static_cast<size_t>(kTasks);
    }, 60000));
    recorder.Shutdown();
  }
  notifier_clock.Advance(std::chrono::minutes(13));  // past 80% of step 1's "15 menit"
  notifier::NotifierProcess reminder(config, &notifier_clock);  // looks at the timers as it starts
  reminder.Start();
  EXPECT_TRUE(WaitUntil([&] {
    return Logged(config.redis, "", v1::Notification::TASK_REMINDER, runs).size() == static_cast<size_t>(kTasks);
  }, 30000)) << Logged(config.redis, "", v1::Notification::TASK_REMINDER, runs).size() << " of " << kTasks
             << " reminders within 30 s: the rest wait for the next look, a minute later";
  reminder.Shutdown();
  own.router.Shutdown();
}

}  // namespace
}  // namespace sopflow::testing

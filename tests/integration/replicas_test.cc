// Replicas as separate processes: several routers and notifiers share one
// Redis and one stream; SIGKILL one of each mid-way; SIGKILL Redis and NATS
// under them; and SIGTERM drains.
#include <hiredis/hiredis.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "notifier_fixture.h"
#include "redis.h"

namespace sopflow::testing {
namespace {

struct Replica {
  std::unique_ptr<ChildProcess> process;
  int port = 0;
};

Replica StartRouter(const Backends& b, const std::string& log) {
  auto c = b.RouterConfigFor();
  Replica r{std::make_unique<ChildProcess>()};
  EXPECT_TRUE(StartOnOwnPort(*r.process,
                             {SOPFLOW_ROUTER_BIN, "--redis", c.redis, "--nats", c.nats, "--tokens", c.tokens_file,
                              "--definitions", c.definitions_dir, "--relay-reclaim-idle-ms", "300", "--drain-ms",
                              "2000", "--log-level", "warn"},
                             {}, b.dir + "/" + log, &r.port));
  return r;
}

Replica StartNotifier(const Backends& b, const std::string& log, int router_port) {
  auto c = NotifierConfigFor(b, "", router_port);
  Replica r{std::make_unique<ChildProcess>()};
  EXPECT_TRUE(StartOnOwnPort(*r.process,
                             {SOPFLOW_NOTIFIER_BIN, "--redis", c.redis, "--nats", c.nats, "--tokens", c.tokens_file,
                              "--calendar", c.calendar_file, "--templates", c.templates_dir, "--router", c.router,
                              "--service-token", c.service_token, "--ack-wait-ms", "1000",
                              "--log-level", "warn"},
                             {}, b.dir + "/" + log, &r.port));
  return r;
}

// Starts `count` runs of seed 003, each with a request id, so a start
// retried on another router starts nothing twice; their ids.
std::set<std::string> StartRuns(const std::vector<std::unique_ptr<v1::Router::Stub>>& stubs, int count,
                                const std::string& request_prefix) {
  std::set<std::string> runs;
  for (int i = 0; i < count; ++i) {
    v1::StartRunRequest req = Run003Request("2026-Q" + std::to_string(i % 4 + 1));
    req.set_request_id(request_prefix + std::to_string(i));
    v1::Run run;
    grpc::Status st;
    for (size_t attempt = 0; attempt < 3; ++attempt)
      if ((st = stubs[(i + attempt) % stubs.size()]->StartRun(AuthedContext(kSekretarisBlg).get(), req, &run)).ok())
        break;
    EXPECT_TRUE(st.ok()) << st.error_message();
    runs.insert(run.id());
  }
  return runs;
}

// Two threads doing seed 003's steps for its Balangan actors: each lists an
// actor's inbox and completes what it holds, through the routers in turn
// (`usable` says which may be asked), until stopped or 180 s have passed.
// What the routers refused is kept by status code.
class InboxWorkers {
 public:
  InboxWorkers(const std::vector<std::unique_ptr<v1::Router::Stub>>& stubs,
               std::function<bool(size_t router)> usable = [](size_t) { return true; })
      : stubs_(stubs), usable_(std::move(usable)) {
    for (const auto& a : AllActors())
      if (a.user_id.find("-blg") != std::string::npos) actors_.push_back(a);
    for (size_t first = 0; first < 2; ++first) threads_.emplace_back([this, first] { Work(first); });
  }
  ~InboxWorkers() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  int completed() const { return completed_; }
  std::map<grpc::StatusCode, int> refused() {
    std::lock_guard lock(mu_);
    return refused_;
  }

 private:
  void Work(size_t first) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    for (size_t turn = first; !stop_ && std::chrono::steady_clock::now() < deadline; ++turn) {
      size_t r = turn % stubs_.size();
      for (size_t k = 0; !usable_(r) && k < stubs_.size(); ++k) r = (r + 1) % stubs_.size();
      for (const auto& a : actors_) {
        v1::ListInboxRequest lreq;
        lreq.set_page_size(1000);
        v1::ListInboxResponse inbox;
        if (!Count(stubs_[r]->ListInbox(AuthedContext(a.token).get(), lreq, &inbox))) continue;
        for (const auto& t : inbox.tasks()) {
          v1::CompleteTaskRequest req;
          req.set_task_id(t.id());
          // Each worker's own: the other's completion of a task both saw is
          // a conflict, not this one sent again.
          req.mutable_output()->set_note("worker " + std::to_string(first));
          v1::Task out;
          if (Count(stubs_[r]->CompleteTask(AuthedContext(a.token).get(), req, &out))) ++completed_;
        }
      }
    }
  }
  bool Count(const grpc::Status& st) {
    if (st.ok()) return true;
    std::lock_guard lock(mu_);
    ++refused_[st.error_code()];
    return false;
  }

  const std::vector<std::unique_ptr<v1::Router::Stub>>& stubs_;
  std::function<bool(size_t)> usable_;
  std::vector<demo::Actor> actors_;
  std::atomic<bool> stop_{false};
  std::atomic<int> completed_{0};
  std::mutex mu_;
  std::map<grpc::StatusCode, int> refused_;
  std::vector<std::thread> threads_;
};

// Every run of `runs` is COMPLETED (ListRuns of seed 003, as the admin).
bool AllCompleted(v1::Router::Stub& stub, const std::set<std::string>& runs) {
  v1::ListRunsRequest req;
  req.set_sop_id(kSop003);
  req.set_page_size(1000);
  v1::ListRunsResponse listed;
  if (!stub.ListRuns(AuthedContext(kAdmin).get(), req, &listed).ok()) return false;
  size_t done = 0;
  for (const auto& r : listed.runs()) done += runs.count(r.id()) && r.status() == v1::Run::COMPLETED;
  return done == runs.size();
}

// No task created twice: every run has its nine tasks, each created once.
void ExpectEachTaskCreatedOnce(v1::Router::Stub& stub, const std::set<std::string>& runs) {
  for (const auto& id : runs) {
    v1::GetRunRequest req;
    req.set_run_id(id);
    v1::GetRunResponse r;
    ASSERT_TRUE(stub.GetRun(AuthedContext(kAdmin).get(), req, &r).ok());
    ASSERT_EQ(r.tasks_size(), 9) << id;
    int created = 0;
    for (const auto& h : r.history()) created += h.kind() == v1::HistoryEntry::TASK_CREATED;
    ASSERT_EQ(created, 9) << id;
  }
}

// No notification lost or twice: the notifiers' log comes to hold each
// task's assignment and each run's completion once (bounded wait).
void ExpectEachNotificationOnce(const std::string& redis_address, const std::set<std::string>& runs) {
  const auto want = static_cast<int64_t>(runs.size()) * 10;  // 9 assignments and 1 completion per run
  std::map<std::string, int> seen;
  int assigned = 0;
  auto read_log = [&] {
    RedisConnection redis(RedisAddress::Parse(redis_address));
    Reply r = redis.Command({"XRANGE", "sf:n:log", "-", "+"});
    seen.clear();
    assigned = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; ++i) {
      v1::Notification n;
      n.ParseFromString(ReplyString(r->element[i]->element[1]->element[1]).value_or(""));
      if (!runs.count(n.run_id())) continue;
      ++seen[n.id()];
      assigned += n.kind() == v1::Notification::TASK_ASSIGNED;
    }
    return static_cast<int64_t>(seen.size()) >= want;
  };
  EXPECT_TRUE(WaitUntil(read_log, 60000)) << seen.size() << " distinct notifications of the " << want << " due";
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
  EXPECT_EQ(assigned, static_cast<int>(runs.size()) * 9);
}

TEST(ReplicasTest, ThreeRoutersAndTwoNotifiersLoseOneOfEachAndEveryRunFinishesOnce) {
  Backends backends;
  std::vector<Replica> routers, notifiers;
  for (int i = 0; i < 3; ++i) routers.push_back(StartRouter(backends, "router-" + std::to_string(i) + ".log"));
  for (int i = 0; i < 2; ++i)  // on the routers that stay up (router 0 is killed)
    notifiers.push_back(StartNotifier(backends, "notifier-" + std::to_string(i) + ".log", routers[1 + i].port));
  std::vector<std::unique_ptr<v1::Router::Stub>> stubs;
  for (auto& r : routers) stubs.push_back(RouterStub(r.port));
  std::atomic<bool> router0_alive{true};

  constexpr int kRuns = 500;
  std::set<std::string> runs = StartRuns(stubs, kRuns, "replicas-");
  ASSERT_EQ(runs.size(), static_cast<size_t>(kRuns));
  InboxWorkers workers(stubs, [&](size_t r) { return r != 0 || router0_alive; });
  // Mid-way, one router and one notifier die without a word.
  ASSERT_TRUE(WaitUntil([&] { return workers.completed() >= kRuns * 9 / 2; }, 120000));
  router0_alive = false;
  routers[0].process->Kill();
  notifiers[0].process->Kill();
  bool finished = WaitUntil([&] { return AllCompleted(*stubs[1], runs); }, 180000);
  workers.Stop();
  ASSERT_TRUE(finished) << "completions: " << workers.completed();
  EXPECT_EQ(workers.completed(), kRuns * 9);
  ExpectEachTaskCreatedOnce(*stubs[1], runs);
  ExpectEachNotificationOnce(backends.redis->address(), runs);
}

// Redis and NATS killed and restarted under the chain, as Kubernetes
// reschedules their pods with their volumes. Redis is held loading its
// append-only file for 2 s or more (--key-load-delay over 20,000 keys),
// answering every command with LOADING meanwhile; the notifier is paused
// across the kill, so it meets the restarted Redis with events in hand.
// Every run finishes, each task is created once and each notification is
// logged once, and callers are told UNAVAILABLE while Redis is away: never
// INTERNAL, nor an empty inbox or NOT_FOUND as if a task were not there.
TEST(ReplicasTest, RedisAndNatsKilledAndRestartedUnderTheChainLoseNothing) {
  Backends backends;
  Replica router = StartRouter(backends, "router.log");
  Replica notifier = StartNotifier(backends, "notifier.log", router.port);
  std::vector<std::unique_ptr<v1::Router::Stub>> stubs;
  stubs.push_back(RouterStub(router.port));
  backends.FillRedisToLoadSlowly();
  constexpr int kRuns = 150;
  std::set<std::string> runs = StartRuns(stubs, kRuns, "restarts-");
  ASSERT_EQ(runs.size(), static_cast<size_t>(kRuns));
  InboxWorkers workers(stubs);
  ASSERT_TRUE(WaitUntil([&] { return workers.completed() >= kRuns * 9 / 3; }, 120000));

  // Events pile up for the paused notifier; then Redis dies under the chain.
  ASSERT_EQ(kill(notifier.process->pid(), SIGSTOP), 0);
  std::shared_ptr<void> resume(nullptr, [pid = notifier.process->pid()](void*) { kill(pid, SIGCONT); });
  int before = workers.completed();
  ASSERT_TRUE(WaitUntil([&] { return workers.completed() >= before + 20; }, 60000));
  backends.redis->KillAndRestart({"--key-load-delay", "100"});
  // Loading: a read is UNAVAILABLE, not an answer made of the error reply.
  v1::GetTaskRequest get;
  get.set_task_id(*runs.begin() + ".1");
  v1::Task task;
  grpc::Status during = stubs[0]->GetTask(AuthedContext(kAdmin).get(), get, &task);
  EXPECT_EQ(during.error_code(), grpc::StatusCode::UNAVAILABLE) << during.error_message();
  v1::ListInboxResponse inbox;
  during = stubs[0]->ListInbox(AuthedContext(kSekretarisBlg).get(), {}, &inbox);
  EXPECT_EQ(during.error_code(), grpc::StatusCode::UNAVAILABLE) << during.error_message();
  ASSERT_EQ(kill(notifier.process->pid(), SIGCONT), 0);

  // Later NATS dies and comes back with its store.
  ASSERT_TRUE(WaitUntil([&] { return workers.completed() >= kRuns * 9 * 2 / 3; }, 120000));
  backends.nats->KillAndRestart();

  bool finished = WaitUntil([&] { return AllCompleted(*stubs[0], runs); }, 180000);
  workers.Stop();
  ASSERT_TRUE(finished) << "completions: " << workers.completed();
  ExpectEachTaskCreatedOnce(*stubs[0], runs);
  ExpectEachNotificationOnce(backends.redis->address(), runs);
  // What a caller was told while Redis or NATS was away.
  for (const auto& [code, count] : workers.refused())
    EXPECT_TRUE(code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::FAILED_PRECONDITION)
        << count << " calls refused with " << StatusCodeName(code);
}

TEST(ReplicasTest, SigtermDrainsAndExitsInBoundedTimeWithEveryEventPublished) {
  Backends backends;
  Replica router = StartRouter(backends, "router.log");
  auto stub = RouterStub(router.port);
  v1::Run run = StartRun003(*stub);
  ASSERT_FALSE(run.id().empty());
  v1::Task first;
  ASSERT_TRUE(WaitUntil([&] {
    v1::ListInboxResponse inbox;
    stub->ListInbox(AuthedContext(kSekretarisBlg).get(), {}, &inbox);
    for (const auto& t : inbox.tasks())
      if (t.run_id() == run.id()) first = t;
    return !first.id().empty();
  }));
  v1::CompleteTaskRequest complete;
  complete.set_task_id(first.id());
  v1::Task out;
  ASSERT_TRUE(stub->CompleteTask(AuthedContext(kSekretarisBlg).get(), complete, &out).ok());
  auto t0 = std::chrono::steady_clock::now();
  kill(router.process->pid(), SIGTERM);
  int code = router.process->WaitExit(15000);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(code, 0) << "a drained router exits cleanly";
  EXPECT_LT(took, std::chrono::seconds(10)) << "drain-ms is 2000";
  // What it accepted went out before it left: nothing waits in the outbox.
  RedisConnection redis(RedisAddress::Parse(backends.redis->address()));
  Reply pending = redis.Command({"XLEN", "sf:outbox"});
  EXPECT_EQ(ReplyInteger(pending.get()), 0);
  // A new replica carries on.
  Replica next = StartRouter(backends, "router-2.log");
  auto stub2 = RouterStub(next.port);
  EXPECT_EQ(demo::DriveRun(*stub2, AllActors(), run.id(), kAdmin, {}).run().status(), v1::Run::COMPLETED);
}

}  // namespace
}  // namespace sopflow::testing

// Replicas as separate processes: several routers and notifiers share one
// Redis and one stream; SIGKILL one of each mid-way; and SIGTERM drains.
#include <hiredis/hiredis.h>

#include <atomic>
#include <map>
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
  std::set<std::string> runs;
  for (int i = 0; i < kRuns; ++i) {
    v1::StartRunRequest req = Run003Request("2026-Q" + std::to_string(i % 4 + 1));
    req.set_request_id("replicas-" + std::to_string(i));  // a retried start starts nothing twice
    v1::Run run;
    grpc::Status st;
    for (int attempt = 0; attempt < 3; ++attempt)
      if ((st = stubs[(i + attempt) % 3]->StartRun(AuthedContext(kSekretarisBlg).get(), req, &run)).ok()) break;
    ASSERT_TRUE(st.ok()) << st.error_message();
    runs.insert(run.id());
  }
  std::vector<demo::Actor> actors;
  for (const auto& a : AllActors())
    if (a.user_id.find("-blg") != std::string::npos) actors.push_back(a);
  std::atomic<int> completed{0};
  std::atomic<bool> stop{false};
  auto worker = [&](size_t first) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    for (size_t turn = first; !stop && std::chrono::steady_clock::now() < deadline; ++turn) {
      size_t r = turn % 3;
      if (r == 0 && !router0_alive) r = 1 + turn % 2;
      for (const auto& a : actors) {
        v1::ListInboxRequest lreq;
        lreq.set_page_size(1000);
        v1::ListInboxResponse inbox;
        if (!stubs[r]->ListInbox(AuthedContext(a.token).get(), lreq, &inbox).ok()) continue;
        for (const auto& t : inbox.tasks()) {
          v1::CompleteTaskRequest req;
          req.set_task_id(t.id());
          v1::Task out;
          if (stubs[r]->CompleteTask(AuthedContext(a.token).get(), req, &out).ok()) ++completed;
        }
      }
    }
  };
  std::thread w0(worker, 0), w1(worker, 1);
  // Mid-way, one router and one notifier die without a word.
  ASSERT_TRUE(WaitUntil([&] { return completed >= kRuns * 9 / 2; }, 120000));
  router0_alive = false;
  routers[0].process->Kill();
  notifiers[0].process->Kill();
  auto all_done = [&] {
    v1::ListRunsRequest req;
    req.set_sop_id(kSop003);
    req.set_page_size(1000);
    v1::ListRunsResponse listed;
    if (!stubs[1]->ListRuns(AuthedContext(kAdmin).get(), req, &listed).ok()) return false;
    int done = 0;
    for (const auto& r : listed.runs()) done += runs.count(r.id()) && r.status() == v1::Run::COMPLETED;
    return done == kRuns;
  };
  bool finished = WaitUntil(all_done, 180000);
  stop = true;
  w0.join();
  w1.join();
  ASSERT_TRUE(finished) << "completions: " << completed.load();
  EXPECT_EQ(completed.load(), kRuns * 9);

  // No task created twice: every run has its nine tasks, each created once.
  for (const auto& id : runs) {
    v1::GetRunRequest req;
    req.set_run_id(id);
    v1::GetRunResponse r;
    ASSERT_TRUE(stubs[1]->GetRun(AuthedContext(kAdmin).get(), req, &r).ok());
    ASSERT_EQ(r.tasks_size(), 9) << id;
    int created = 0;
    for (const auto& h : r.history()) created += h.kind() == v1::HistoryEntry::TASK_CREATED;
    ASSERT_EQ(created, 9) << id;
  }
  // No notification twice: the notifiers' log holds each task's assignment once.
  ASSERT_TRUE(WaitUntil([&] {
    RedisConnection redis(RedisAddress::Parse(backends.redis->address()));
    Reply len = redis.Command({"XLEN", "sf:n:log"});
    return ReplyInteger(len.get()) >= kRuns * 9 + kRuns;  // 9 assignments and 1 completion per run
  }, 60000));
  RedisConnection redis(RedisAddress::Parse(backends.redis->address()));
  Reply r = redis.Command({"XRANGE", "sf:n:log", "-", "+"});
  std::map<std::string, int> seen;
  int assigned = 0;
  for (size_t i = 0; i < r->elements; ++i) {
    v1::Notification n;
    n.ParseFromString(ReplyString(r->element[i]->element[1]->element[1]).value_or(""));
    if (!runs.count(n.run_id())) continue;
    ++seen[n.id()];
    assigned += n.kind() == v1::Notification::TASK_ASSIGNED;
  }
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
  EXPECT_EQ(assigned, kRuns * 9);
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

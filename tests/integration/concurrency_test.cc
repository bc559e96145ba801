// Races, replicas, routing in the completing transaction, and a crash between
// the Redis write and the publish: no step applied twice, no task lost or
// created twice.
#include <nats/nats.h>

#include <atomic>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "error.h"
#include "event_consumer.h"
#include "nats.h"
#include "sopflow/v1/event.pb.h"
#include "redis.h"
#include "router_fixture.h"

namespace sopflow::testing {
namespace {

class ConcurrencyTest : public RouterTest {};

TEST_F(ConcurrencyTest, TwoClientsCompletingOneTaskExactlyOneWins) {
  auto other = RouterStub(router_->port());
  for (int round = 0; round < 20; ++round) {
    v1::Run run = Start003();
    v1::Task task = WaitForOpenTask(run.id(), 1);
    grpc::Status results[2];
    std::atomic<int> ready{0};
    auto racer = [&](int i, v1::Router::Stub* s) {
      v1::CompleteTaskRequest req;
      req.set_task_id(task.id());
      req.mutable_output()->set_note("client " + std::to_string(i));  // two completions, not one sent twice
      v1::Task out;
      ++ready;
      while (ready < 2) std::this_thread::yield();
      results[i] = s->CompleteTask(AuthedContext(kSekretarisBlg).get(), req, &out);
    };
    std::thread a(racer, 0, &stub());
    std::thread b(racer, 1, other.get());
    a.join();
    b.join();
    int wins = results[0].ok() + results[1].ok();
    ASSERT_EQ(wins, 1) << "round " << round << ": " << results[0].error_message() << " / " << results[1].error_message();
    const grpc::Status& loser = results[0].ok() ? results[1] : results[0];
    EXPECT_EQ(loser.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << loser.error_message();
    WaitForOpenTask(run.id(), 2);
    auto state = GetRun(run.id());
    int completions = 0, step2 = 0;
    for (const auto& h : state.history()) completions += h.kind() == v1::HistoryEntry::TASK_COMPLETED;
    for (const auto& t : state.tasks()) step2 += t.step() == 2;
    EXPECT_EQ(completions, 1);
    EXPECT_EQ(step2, 1);
  }
}

TEST_F(ConcurrencyTest, TwoReplicasRun100RunsWithNoTaskLostOrDuplicated) {
  RouterProcess second(backends_->RouterConfigFor(), &clock_);
  second.Start();
  std::vector<std::unique_ptr<v1::Router::Stub>> stubs;
  stubs.push_back(RouterStub(router_->port()));
  stubs.push_back(RouterStub(second.port()));

  constexpr int kRuns = 100;
  std::set<std::string> runs;
  for (int i = 0; i < kRuns; ++i) {
    v1::StartRunRequest req = Run003Request("2026-Q" + std::to_string(i % 4 + 1));
    v1::Run run;
    ASSERT_TRUE(stubs[i % 2]->StartRun(AuthedContext(kSekretarisBlg).get(), req, &run).ok());
    runs.insert(run.id());
  }
  // The Balangan actors work every task they see, alternating replicas.
  std::vector<demo::Actor> actors;
  for (const auto& a : AllActors())
    if (a.user_id.find("-blg") != std::string::npos) actors.push_back(a);
  std::atomic<int> completed_calls{0};
  auto worker = [&](size_t replica) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      bool any = false;
      for (const auto& a : actors) {
        v1::ListInboxRequest lreq;
        lreq.set_page_size(1000);
        v1::ListInboxResponse inbox;
        if (!stubs[replica]->ListInbox(AuthedContext(a.token).get(), lreq, &inbox).ok()) continue;
        for (const auto& t : inbox.tasks()) {
          if (!runs.count(t.run_id())) continue;
          any = true;
          v1::CompleteTaskRequest req;
          req.set_task_id(t.id());
          req.mutable_output()->set_note("replica " + std::to_string(replica));
          v1::Task out;
          // Both workers see the same inbox: the loser of each race gets
          // FAILED_PRECONDITION, which is the point. (Their outputs differ:
          // the same completion sent twice would be answered OK twice.)
          if (stubs[replica]->CompleteTask(AuthedContext(a.token).get(), req, &out).ok()) ++completed_calls;
        }
      }
      v1::ListRunsRequest rreq;
      rreq.set_sop_id(kSop003);
      rreq.set_page_size(1000);
      v1::ListRunsResponse listed;
      if (stubs[replica]->ListRuns(AuthedContext(kAdmin).get(), rreq, &listed).ok()) {
        int active = 0;
        for (const auto& r : listed.runs()) active += runs.count(r.id()) && r.status() == v1::Run::ACTIVE;
        if (active == 0) return;
      }
      if (!any) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };
  std::thread w0(worker, 0), w1(worker, 1);
  w0.join();
  w1.join();
  EXPECT_EQ(completed_calls.load(), kRuns * 9);
  for (const auto& id : runs) {
    auto r = GetRun(id);
    ASSERT_EQ(r.run().status(), v1::Run::COMPLETED) << id;
    ASSERT_EQ(r.tasks_size(), 9) << id;
    std::set<uint32_t> steps;
    for (const auto& t : r.tasks()) {
      EXPECT_EQ(t.status(), v1::Task::DONE);
      steps.insert(t.step());
    }
    EXPECT_EQ(steps.size(), 9u) << id;
    int created = 0, done = 0;
    for (const auto& h : r.history()) {
      created += h.kind() == v1::HistoryEntry::TASK_CREATED;
      done += h.kind() == v1::HistoryEntry::TASK_COMPLETED;
    }
    EXPECT_EQ(created, 9) << id;
    EXPECT_EQ(done, 9) << id;
  }
  second.Shutdown();
}

// A router completes a task it created from what it remembers of it, with
// no read (RecentRecords). Another replica may have changed the task since:
// the commit is guarded on the task's revision, so the change is kept, and
// the completion goes through from a fresh read.
TEST_F(ConcurrencyTest, ADocumentAttachedThroughAnotherReplicaSurvivesTheCompletion) {
  RouterProcess second(backends_->RouterConfigFor(), &clock_);
  second.Start();
  auto other = RouterStub(second.port());
  auto attach = [&](const v1::Task& task) {
    v1::AttachDocumentRequest req;
    req.set_task_id(task.id());
    req.mutable_document()->set_name("Lampiran " + task.id());
    req.mutable_document()->set_uri("sopflow://test/lampiran/" + task.id());
    v1::Task attached;
    grpc::Status s = other->AttachDocument(AuthedContext("demo-aggregator").get(), req, &attached);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(attached.revision(), task.revision() + 1);
  };

  auto hgets = [&] {
    RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
    return CommandCalls(conn)["hget"];
  };

  // A task this router created and nobody changed: completed with no read.
  v1::Run quiet = Start003();
  v1::Task quiet_task = WaitForOpenTask(quiet.id(), 1);
  const int64_t hgets_before = hgets();
  ASSERT_TRUE(Complete(kSekretarisBlg, quiet_task.id(), "").ok());
  EXPECT_EQ(hgets(), hgets_before) << "the task and its run come from what the router remembers";

  // One CompleteTask call.
  v1::Run run = Start003();
  v1::Task task = WaitForOpenTask(run.id(), 1);
  EXPECT_EQ(task.revision(), 1u);
  attach(task);
  v1::Task done;
  ASSERT_TRUE(Complete(kSekretarisBlg, task.id(), "", &done).ok());
  EXPECT_EQ(done.status(), v1::Task::DONE);
  EXPECT_EQ(done.revision(), 3u);
  ASSERT_EQ(done.attachments_size(), 1);
  EXPECT_EQ(done.attachments(0).uri(), "sopflow://test/lampiran/" + task.id());

  // A group of a CompleteTasks stream.
  v1::Run streamed = Start003();
  v1::Task streamed_task = WaitForOpenTask(streamed.id(), 1);
  attach(streamed_task);
  auto ctx = AuthedContext(kSekretarisBlg, std::chrono::seconds(30));
  auto stream = stub().CompleteTasks(ctx.get());
  v1::CompleteTaskRequest req;
  req.set_task_id(streamed_task.id());
  ASSERT_TRUE(stream->Write(req));
  v1::CompleteTasksResponse answer;
  ASSERT_TRUE(stream->Read(&answer));
  EXPECT_EQ(answer.code(), grpc::StatusCode::OK) << answer.message();
  EXPECT_EQ(answer.task().attachments_size(), 1);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());

  // As stored, and once.
  for (const auto& [run_id, task_id] : {std::pair{run.id(), task.id()}, std::pair{streamed.id(), streamed_task.id()}}) {
    int completions = 0;
    const auto state = GetRun(run_id);
    for (const auto& t : state.tasks()) {
      if (t.id() != task_id) continue;
      EXPECT_EQ(t.status(), v1::Task::DONE);
      EXPECT_EQ(t.attachments_size(), 1) << task_id;
    }
    for (const auto& h : state.history()) completions += h.kind() == v1::HistoryEntry::TASK_COMPLETED;
    EXPECT_EQ(completions, 1) << run_id;
  }
  second.Shutdown();
}

// What a router remembers of a task may also be why it would refuse a
// call: a job it saw activated by one worker, failed and activated by
// another through another replica, is completed by the new worker.
TEST_F(ConcurrencyTest, AJobsNewWorkerIsJudgedOnAFreshReadNotOnWhatTheRouterRemembers) {
  RouterProcess second(backends_->RouterConfigFor(), &clock_);
  second.Start();
  auto other = RouterStub(second.port());
  v1::Run gowa = Start004();
  v1::Task job = AdvanceTo(gowa.id(), 9);
  ASSERT_EQ(job.kind(), v1::Step::SYSTEM);
  auto activate = [&](v1::Router::Stub& via, const std::string& worker) {
    v1::ActivateJobsRequest act;
    act.set_job_type(job.job_type());
    act.set_worker(worker);
    act.set_max_jobs(100);
    v1::ActivateJobsResponse got;
    EXPECT_TRUE(via.ActivateJobs(AuthedContext(kEsakipWorker).get(), act, &got).ok());
    bool mine = false;
    for (const auto& j : got.jobs()) mine |= j.id() == job.id();
    return mine;
  };
  ASSERT_TRUE(activate(stub(), "w1"));  // this router now remembers it activated by w1
  v1::FailJobRequest fail;
  fail.set_task_id(job.id());
  fail.set_worker("w1");
  fail.set_error("e-SAKIP tidak dapat dihubungi");
  v1::Task failed;
  ASSERT_TRUE(other->FailJob(AuthedContext(kEsakipWorker).get(), fail, &failed).ok());
  ASSERT_TRUE(activate(*other, "w2"));

  v1::CompleteJobRequest done;
  done.set_task_id(job.id());
  done.set_worker("w2");
  v1::Task completed;
  grpc::Status s = stub().CompleteJob(AuthedContext(kEsakipWorker).get(), done, &completed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(completed.status(), v1::Task::DONE);
  EXPECT_EQ(completed.worker(), "w2");
  // And the old worker, from what the router now remembers, is refused.
  done.set_worker("w1");
  EXPECT_EQ(stub().CompleteJob(AuthedContext(kEsakipWorker).get(), done, &completed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  second.Shutdown();
}

// Routing happens in the transaction that completes the step: when
// StartRun or CompleteTask returns, the next task is already stored and in
// its actor's inbox, with no event handled in between.
TEST_F(ConcurrencyTest, TheNextTaskExistsWhenTheCallThatCausesItReturns) {
  v1::Run run = Start003();
  auto started = GetRun(run.id());
  ASSERT_EQ(started.tasks_size(), 1) << "the first task is created with the run";
  EXPECT_EQ(started.tasks(0).status(), v1::Task::OPEN);
  EXPECT_EQ(started.tasks(0).step(), 1u);
  ASSERT_EQ(InboxOf(kSekretarisBlg, run.id()).size(), 1u);

  v1::Task done;
  ASSERT_TRUE(Complete(kSekretarisBlg, started.tasks(0).id(), "", &done).ok());
  auto after = GetRun(run.id());
  ASSERT_EQ(after.tasks_size(), 2);
  EXPECT_EQ(after.tasks(1).step(), 2u);
  EXPECT_EQ(after.tasks(1).gen(), 2u);
  EXPECT_EQ(after.tasks(1).status(), v1::Task::OPEN);
  // One transaction wrote the completion, the step's end and the creation.
  std::vector<v1::HistoryEntry::Kind> kinds;
  for (const auto& h : after.history()) kinds.push_back(h.kind());
  EXPECT_EQ(kinds, (std::vector<v1::HistoryEntry::Kind>{
                       v1::HistoryEntry::RUN_STARTED, v1::HistoryEntry::TASK_CREATED,
                       v1::HistoryEntry::TASK_COMPLETED, v1::HistoryEntry::STEP_COMPLETED,
                       v1::HistoryEntry::TASK_CREATED}));

  // The same completion again is answered as before; another is refused.
  // Neither creates anything.
  EXPECT_TRUE(Complete(kSekretarisBlg, started.tasks(0).id(), "").ok());
  v1::CompleteTaskRequest otherwise;
  otherwise.set_task_id(started.tasks(0).id());
  otherwise.mutable_output()->set_note("lain");
  v1::Task refused;
  EXPECT_EQ(stub().CompleteTask(AuthedContext(kSekretarisBlg).get(), otherwise, &refused).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(GetRun(run.id()).history_size(), after.history_size());
}

TEST(RouterCrashTest, KilledBetweenRedisWriteAndPublishTheRunStillFinishes) {
  Backends backends;
  auto base = backends.RouterConfigFor();
  const std::vector<std::string> args{SOPFLOW_ROUTER_BIN, "--redis", base.redis, "--nats", base.nats,
                                      "--tokens", base.tokens_file, "--definitions", base.definitions_dir,
                                      "--relay-reclaim-idle-ms", "300"};
  // Replica A dies right after its first commit, before publishing its
  // events: the commit is in Redis, NATS has nothing.
  int port_a = 0;
  ChildProcess a;
  ASSERT_TRUE(StartOnOwnPort(a, args, {{"SOPFLOW_FAILPOINT", "relay_crash_before_publish"}},
                             backends.dir + "/router-a.log", &port_a));
  auto stub_a = RouterStub(port_a);
  v1::StartRunRequest req = Run003Request();
  req.set_request_id("balangan-2026-Q3");
  v1::Run first_answer;
  // A may die before its reply leaves: the client sees OK or UNAVAILABLE.
  auto st = stub_a->StartRun(AuthedContext(kSekretarisBlg).get(), req, &first_answer);
  EXPECT_TRUE(st.ok() || st.error_code() == grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_EQ(a.WaitExit(15000), 86) << "replica A should die at the failpoint";
  {
    RedisConnection redis(RedisAddress::Parse(base.redis));
    Reply pending = redis.Command({"XLEN", "sf:outbox"});
    EXPECT_GE(ReplyInteger(pending.get()), 1) << "the event must still be in the outbox";
  }
  // Replica B comes up, takes over A's unpublished event, and the run goes on.
  int port_b = 0;
  ChildProcess b;
  ASSERT_TRUE(StartOnOwnPort(b, args, {}, backends.dir + "/router-b.log", &port_b));
  auto stub_b = RouterStub(port_b);
  // The client retries with the same request_id and gets the run A started.
  v1::Run run;
  ASSERT_TRUE(stub_b->StartRun(AuthedContext(kSekretarisBlg).get(), req, &run).ok());
  if (st.ok()) {
    EXPECT_EQ(run.id(), first_answer.id());
  }
  v1::ListRunsResponse listed;
  ASSERT_TRUE(stub_b->ListRuns(AuthedContext(kAdmin).get(), {}, &listed).ok());
  EXPECT_EQ(listed.runs_size(), 1) << "the retry must not start a second run";
  auto result = demo::DriveRun(*stub_b, AllActors(), run.id(), kAdmin, {});
  EXPECT_EQ(result.run().status(), v1::Run::COMPLETED);
  EXPECT_EQ(result.tasks_size(), 9);
  b.Stop();
}

// A pod may start before NATS does (or while it recovers its streams): a
// service waits for it within its bound instead of exiting, and without
// time to wait it fails at once, as unavailable.
TEST(NatsStartupTest, AServiceWaitsForANatsServerThatIsStillStarting) {
  std::string dir = MakeTempDir("sopflow-nats-late");
  const int port = FreePort();
  const std::string url = "nats://127.0.0.1:" + std::to_string(port);
  try {
    NatsClient hasty(NatsOptions{url, "hasty", false, 0});
    ADD_FAILURE() << "connected to a port where nothing listens";
  } catch (const DomainError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
  }
  // The client waits on its own thread; the server starts from this one
  // (PR_SET_PDEATHSIG kills a child when the thread that forked it ends).
  auto connected = std::async(std::launch::async, [&] {
    NatsClient patient(NatsOptions{url, "patient", false, 30000});
    patient.EnsureEventStream();
    ConsumerOptions options;
    options.durable = "late-start";
    options.filter_subject = "sopflow.v1.>";
    PullConsumer consumer(patient, options);
    return consumer.Fetch(1, 50).empty();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ChildProcess server;
  server.Start({"nats-server", "-js", "-a", "127.0.0.1", "-p", std::to_string(port), "-sd", dir + "/jetstream"}, {},
               dir + "/nats.log");
  EXPECT_NO_THROW(EXPECT_TRUE(connected.get()));
  server.Stop();
  RemoveTree(dir);
}

// All services create the event stream at start, often at the same moment
// (the demo starts four at once). The losers of that race must find the
// stream made, not fail: nats-server answers one of them "subjects overlap
// with an existing stream" (10065), as the demo once showed on CI.
TEST(NatsStartupTest, ServicesCreatingTheStreamAtOnceAllSucceed) {
  Backends backends;
  constexpr int kServices = 12;
  for (int round = 0; round < 40; ++round) {
    std::vector<std::unique_ptr<NatsClient>> clients;
    for (int i = 0; i < kServices; ++i)
      clients.push_back(std::make_unique<NatsClient>(NatsOptions{backends.nats->url(), "racer-" + std::to_string(i)}));
    std::vector<std::future<std::string>> created;
    for (auto& c : clients)
      created.push_back(std::async(std::launch::async, [&c]() -> std::string {
        try {
          c->EnsureEventStream();
          return "";
        } catch (const std::exception& e) {
          return e.what();
        }
      }));
    for (auto& f : created) EXPECT_EQ(f.get(), "") << "round " << round;
    ASSERT_EQ(js_DeleteStream(clients[0]->jetstream(), kEventStream, nullptr, nullptr), NATS_OK);
  }
}

}  // namespace
}  // namespace sopflow::testing

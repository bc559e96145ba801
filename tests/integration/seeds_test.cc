// The three seed SOPs, run end to end through the gRPC API by scripted
// actors, with each review loop taken once, a fan-out of three members and
// seed 004's system step done by a job worker.
#include <nats/nats.h>

#include <atomic>
#include <set>
#include <thread>

#include "nats.h"
#include "router_fixture.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow::testing {
namespace {

// The steps of completed (or returned) tasks, in history order.
std::vector<uint32_t> CompletedSteps(const v1::GetRunResponse& run) {
  std::vector<uint32_t> steps;
  for (const auto& h : run.history())
    if (h.kind() == v1::HistoryEntry::TASK_COMPLETED || h.kind() == v1::HistoryEntry::TASK_RETURNED)
      steps.push_back(h.step());
  return steps;
}

int CountKind(const v1::GetRunResponse& run, v1::HistoryEntry::Kind kind) {
  int n = 0;
  for (const auto& h : run.history()) n += h.kind() == kind;
  return n;
}

void ExpectEveryTaskDoneOnce(const v1::GetRunResponse& run) {
  std::set<std::string> ids;
  for (const auto& t : run.tasks()) {
    EXPECT_TRUE(ids.insert(t.id()).second) << "task listed twice: " << t.id();
    EXPECT_EQ(t.status(), v1::Task::DONE) << t.id();
  }
  EXPECT_EQ(CountKind(run, v1::HistoryEntry::TASK_CREATED), run.tasks_size());
  EXPECT_EQ(CountKind(run, v1::HistoryEntry::TASK_COMPLETED) + CountKind(run, v1::HistoryEntry::TASK_RETURNED),
            run.tasks_size());
  EXPECT_EQ(CountKind(run, v1::HistoryEntry::RUN_COMPLETED), 1);
}

class SeedRunTest : public RouterTest {};

TEST_F(SeedRunTest, Seed001RunsEndToEndWithFanOutAndBothReviewLoops) {
  v1::Run run = Start001();
  demo::DriveOptions options;
  auto result = demo::DriveRun(stub(), AllActors(), run.id(), kAdmin, options);
  ASSERT_EQ(result.run().status(), v1::Run::COMPLETED);
  // 6 perbaikan -> 5; 6 sesuai -> 7; 7 perbaikan -> 6; 6 sesuai; 7 sesuai.
  std::vector<uint32_t> want{1, 2, 2, 2, 3, 4, 5, 6, 5, 6, 7, 6, 7, 8, 9, 10};
  EXPECT_EQ(CompletedSteps(result), want);
  ExpectEveryTaskDoneOnce(result);
  std::set<std::string> members;
  for (const auto& t : result.tasks())
    if (t.step() == 2) members.insert(t.assignee() + "@" + t.member());
  EXPECT_EQ(members, (std::set<std::string>{"bagian-tl@bagian-tatalaksana", "bagian-kl@bagian-kelembagaan",
                                            "bagian-rb@bagian-reformasi-birokrasi"}));
  int returned = 0;
  for (const auto& h : result.history())
    if (h.kind() == v1::HistoryEntry::TASK_RETURNED) {
      ++returned;
      EXPECT_EQ(h.outcome(), "perbaikan");
      EXPECT_FALSE(h.reason().empty());
    }
  EXPECT_EQ(returned, 2);
  EXPECT_EQ(result.run().sop_version(), 1u);
}

TEST_F(SeedRunTest, Seed003RunsEndToEnd) {
  v1::Run run = Start003();
  auto result = demo::DriveRun(stub(), AllActors(), run.id(), kAdmin, {});
  ASSERT_EQ(result.run().status(), v1::Run::COMPLETED);
  EXPECT_EQ(CompletedSteps(result), (std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  ExpectEveryTaskDoneOnce(result);
  // Who did what, with the time standard recorded against each step.
  for (const auto& h : result.history())
    if (h.kind() == v1::HistoryEntry::TASK_COMPLETED) {
      EXPECT_FALSE(h.user().empty());
      EXPECT_GT(h.standard_seconds(), 0) << "step " << h.step();
      EXPECT_TRUE(h.within_standard());
    }
}

TEST_F(SeedRunTest, Seed004RunsEndToEndWithAJobWorkerForESakip) {
  std::atomic<bool> stop{false};
  int jobs_done = 0;
  auto worker_stub = RouterStub(router_->port());
  std::thread worker([&] { jobs_done = demo::RunJobWorker(*worker_stub, kEsakipWorker, "esakip.input", "esakip-test", stop); });
  v1::Run run = Start004();
  auto result = demo::DriveRun(stub(), AllActors(), run.id(), kAdmin, {});
  stop = true;
  worker.join();
  ASSERT_EQ(result.run().status(), v1::Run::COMPLETED);
  EXPECT_EQ(CompletedSteps(result), (std::vector<uint32_t>{1, 2, 3, 4, 4, 4, 5, 6, 7, 8, 6, 7, 8, 9, 10}));
  ExpectEveryTaskDoneOnce(result);
  EXPECT_EQ(jobs_done, 1);
  for (const auto& t : result.tasks())
    if (t.step() == 9) {
      EXPECT_EQ(t.kind(), v1::Step::SYSTEM);
      EXPECT_EQ(t.worker(), "esakip-test");
      EXPECT_EQ(t.output().data().fields().at("esakip_receipt").string_value().rfind("ESAKIP-", 0), 0u);
    }
}

TEST_F(SeedRunTest, FanOutTasksGoToTheirMembersAndJoinWhenAllAreDone) {
  v1::Run run = Start001();
  Complete(kKaro, WaitForOpenTask(run.id(), 1).id(), "");
  ASSERT_TRUE(WaitUntil([&] { return GetRun(run.id()).tasks_size() == 4; }));
  // Each Bagian sees only its own member task.
  auto inbox = InboxOf(kBagianTl, run.id());
  ASSERT_EQ(inbox.size(), 1u);
  EXPECT_EQ(inbox[0].member(), "bagian-tatalaksana");
  // Two of three done: the step is not complete yet.
  EXPECT_TRUE(Complete(kBagianTl, inbox[0].id(), "").ok());
  inbox = InboxOf(kBagianKl, run.id());
  ASSERT_EQ(inbox.size(), 1u);
  EXPECT_TRUE(Complete(kBagianKl, inbox[0].id(), "").ok());
  auto mid = GetRun(run.id());
  for (const auto& h : mid.history())
    EXPECT_FALSE(h.kind() == v1::HistoryEntry::STEP_COMPLETED && h.step() == 2) << "fan-out step done early";
  // The last member completes the step; the next actor gets exactly one task.
  inbox = InboxOf("demo-bagian-rb", run.id());
  ASSERT_EQ(inbox.size(), 1u);
  EXPECT_TRUE(Complete("demo-bagian-rb", inbox[0].id(), "").ok());
  v1::Task step3 = WaitForOpenTask(run.id(), 3);
  EXPECT_EQ(step3.pelaksana(), "pelaksana_staf");
  auto after = GetRun(run.id());
  int step3_tasks = 0;
  for (const auto& t : after.tasks()) step3_tasks += t.step() == 3;
  EXPECT_EQ(step3_tasks, 1);
}

TEST_F(SeedRunTest, ReturnSendsTheWorkBackWithItsReason) {
  v1::Run run = Start001();
  v1::Task review = AdvanceTo(run.id(), 6);
  v1::ReturnTaskRequest req;
  req.set_task_id(review.id());
  req.set_reason("tabel capaian triwulan III belum lengkap");
  v1::Task returned;
  ASSERT_TRUE(stub().ReturnTask(AuthedContext(kKabagTl).get(), req, &returned).ok());
  EXPECT_EQ(returned.outcome(), "perbaikan");
  EXPECT_EQ(returned.return_reason(), "tabel capaian triwulan III belum lengkap");
  v1::Task again = WaitForOpenTask(run.id(), 5);
  EXPECT_EQ(again.gen(), review.gen() + 1);
  EXPECT_EQ(again.pelaksana(), "kasubbag_tu");
  auto inbox = InboxOf(kKasubbagTu, run.id());
  ASSERT_EQ(inbox.size(), 1u);
  EXPECT_EQ(inbox[0].id(), again.id());
  // Sent again (its answer lost), the same return is answered as it was
  // and sends nothing back twice; with another reason it is refused.
  v1::Task repeated;
  grpc::Status st = stub().ReturnTask(AuthedContext(kKabagTl).get(), req, &repeated);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(repeated.SerializeAsString(), returned.SerializeAsString());
  req.set_reason("yang lain");
  EXPECT_EQ(stub().ReturnTask(AuthedContext(kKabagTl).get(), req, &repeated).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  int fives = 0;
  auto after = GetRun(run.id());
  for (const auto& t : after.tasks()) fives += t.step() == 5;
  EXPECT_EQ(fives, 2) << "step 5 the first time and once again after the return";
}

TEST_F(SeedRunTest, ClaimedTasksStayWithTheirClaimer) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  v1::ClaimTaskRequest claim;
  claim.set_task_id(first.id());
  v1::Task claimed;
  ASSERT_TRUE(stub().ClaimTask(AuthedContext(kSekretarisBlg).get(), claim, &claimed).ok());
  EXPECT_EQ(claimed.status(), v1::Task::CLAIMED);
  EXPECT_EQ(claimed.assignee(), "sekretaris-blg");
  ASSERT_TRUE(stub().ClaimTask(AuthedContext(kSekretarisBlg).get(), claim, &claimed).ok());  // harmless twice
  auto inbox = InboxOf(kSekretarisBlg, run.id());
  ASSERT_EQ(inbox.size(), 1u);
  EXPECT_EQ(inbox[0].status(), v1::Task::CLAIMED);
  EXPECT_TRUE(Complete(kSekretarisBlg, first.id(), "").ok());
}

std::string Header(natsMsg* msg, const char* key) {
  const char* value = nullptr;
  return natsMsgHeader_Get(msg, key, &value) == NATS_OK && value ? value : "";
}

TEST_F(SeedRunTest, EventsCarryCloudEventsHeadersAndTheirIdAsNatsMsgId) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  // Read the task.created events of the stream from the start.
  NatsClient nats(NatsOptions{backends_->nats->url(), "header-test", true});
  natsSubscription* sub = nullptr;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.DeliverPolicy = js_DeliverAll;
  ASSERT_EQ(js_SubscribeSync(&sub, nats.jetstream(), "sopflow.v1.task.created", nullptr, &so, nullptr), NATS_OK);
  bool found = false;
  for (int i = 0; i < 1000 && !found; ++i) {
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, sub, 5000) != NATS_OK) break;
    v1::Event event;
    ASSERT_TRUE(event.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg)));
    if (event.subject() == first.id()) {
      found = true;
      EXPECT_EQ(event.id(), first.id() + "/created");
      EXPECT_EQ(Header(msg, "Nats-Msg-Id"), event.id());
      EXPECT_EQ(Header(msg, "ce-id"), event.id());
      EXPECT_EQ(Header(msg, "ce-specversion"), "1.0");
      EXPECT_EQ(Header(msg, "ce-type"), "sopflow.v1.task.created");
      EXPECT_EQ(Header(msg, "ce-subject"), first.id());
      EXPECT_EQ(Header(msg, "ce-source").rfind("sopflow/router/", 0), 0u);
      EXPECT_EQ(Header(msg, "ce-time").size(), 24u);  // 2026-11-21T06:04:05.123Z
      EXPECT_EQ(Header(msg, "content-type"), "application/protobuf");
      EXPECT_EQ(event.task_created().task().pelaksana(), "sekretaris");
      EXPECT_EQ(event.run_id(), run.id());
    }
    natsMsg_Destroy(msg);
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace sopflow::testing

// Every auth failure and bad argument gets the right status code and
// changes nothing; definitions are versioned.
#include <google/protobuf/util/time_util.h>

#include "redis.h"
#include "router_fixture.h"

namespace sopflow::testing {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::StatusCode;

class ErrorsTest : public RouterTest {
 protected:
  // The task as stored, to check that a refused call changed nothing.
  std::string Snapshot(const std::string& task_id) {
    v1::GetTaskRequest req;
    req.set_task_id(task_id);
    v1::Task t;
    EXPECT_TRUE(stub().GetTask(AuthedContext(kAdmin).get(), req, &t).ok());
    return t.SerializeAsString();
  }
};

#define EXPECT_CODE(status_expr, code, text)                                          \
  do {                                                                                \
    grpc::Status s_ = (status_expr);                                                  \
    EXPECT_EQ(s_.error_code(), code) << s_.error_message();                          \
    EXPECT_NE(s_.error_message().find(text), std::string::npos) << s_.error_message(); \
  } while (0)

TEST_F(ErrorsTest, CallsWithoutAValidTokenAreUnauthenticated) {
  v1::ListInboxResponse inbox;
  EXPECT_CODE(stub().ListInbox(AuthedContext("").get(), {}, &inbox), StatusCode::UNAUTHENTICATED, "missing");
  EXPECT_CODE(stub().ListInbox(AuthedContext("not-a-token").get(), {}, &inbox), StatusCode::UNAUTHENTICATED, "unknown token");
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Basic abc");
  EXPECT_CODE(stub().ListInbox(&ctx, {}, &inbox), StatusCode::UNAUTHENTICATED, "Bearer");
}

TEST_F(ErrorsTest, WrongRoleUnitOrMemberIsPermissionDeniedAndChangesNothing) {
  v1::Run run = Start001();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  std::string before = Snapshot(first.id());
  v1::ClaimTaskRequest claim;
  claim.set_task_id(first.id());
  v1::Task out;
  EXPECT_CODE(stub().ClaimTask(AuthedContext(kKasubbagTu).get(), claim, &out), StatusCode::PERMISSION_DENIED, "karo_organisasi");
  EXPECT_CODE(Complete(kOutsider, first.id(), ""), StatusCode::PERMISSION_DENIED, "role");
  // Reading a task: not for an outsider; for a read_runs service account
  // (the notifier's), which may read it but not act on it.
  v1::GetTaskRequest get_task;
  get_task.set_task_id(first.id());
  EXPECT_CODE(stub().GetTask(AuthedContext(kOutsider).get(), get_task, &out), StatusCode::PERMISSION_DENIED, "role");
  ASSERT_TRUE(stub().GetTask(AuthedContext(kNotifierService).get(), get_task, &out).ok());
  EXPECT_EQ(out.id(), first.id());
  EXPECT_CODE(Complete(kNotifierService, first.id(), ""), StatusCode::PERMISSION_DENIED, "role");
  EXPECT_EQ(Snapshot(first.id()), before);

  Complete(kKaro, first.id(), "");
  ASSERT_TRUE(WaitUntil([&] { return GetRun(run.id()).tasks_size() == 4; }));
  auto tl_tasks = InboxOf(kBagianTl, run.id());
  ASSERT_EQ(tl_tasks.size(), 1u);
  std::string member_before = Snapshot(tl_tasks[0].id());
  EXPECT_CODE(Complete(kBagianKl, tl_tasks[0].id(), ""), StatusCode::PERMISSION_DENIED, "role");
  EXPECT_CODE(Complete(kOutsider, tl_tasks[0].id(), ""), StatusCode::PERMISSION_DENIED, "role");
  EXPECT_EQ(Snapshot(tl_tasks[0].id()), member_before);
  EXPECT_TRUE(InboxOf(kOutsider, run.id()).empty());

  v1::GetRunRequest get;
  get.set_run_id(run.id());
  v1::GetRunResponse got;
  EXPECT_CODE(stub().GetRun(AuthedContext(kOutsider).get(), get, &got), StatusCode::PERMISSION_DENIED, "unit");
  EXPECT_TRUE(stub().GetRun(AuthedContext(kBagianTl).get(), get, &got).ok());  // members may read

  v1::DeployDefinitionRequest deploy;
  deploy.set_yaml(ReadText(SourcePath("deploy/base/definitions/003-balangan-satpol-pp.yaml")));
  v1::DeployDefinitionResponse deployed;
  EXPECT_CODE(stub().DeployDefinition(AuthedContext(kKaro).get(), deploy, &deployed), StatusCode::PERMISSION_DENIED, "admin");

  v1::StartRunRequest start;
  start.set_sop_id(kSop003);
  start.set_period("2026-Q3");
  start.set_unit("balangan-satpolpp");
  v1::Run started;
  EXPECT_CODE(stub().StartRun(AuthedContext(kKasubbagTu).get(), start, &started), StatusCode::PERMISSION_DENIED, "sekretaris");

  v1::ActivateJobsRequest jobs;
  jobs.set_job_type("esakip.input");
  jobs.set_worker("w");
  jobs.set_max_jobs(1);
  v1::ActivateJobsResponse activated;
  EXPECT_CODE(stub().ActivateJobs(AuthedContext(kKasubagPp).get(), jobs, &activated), StatusCode::PERMISSION_DENIED, "esakip.input");

  v1::CancelRunRequest cancel;
  cancel.set_run_id(run.id());
  v1::Run cancelled;
  EXPECT_CODE(stub().CancelRun(AuthedContext(kKasubbagTu).get(), cancel, &cancelled), StatusCode::PERMISSION_DENIED, "cancel");
}

TEST_F(ErrorsTest, BadArgumentsAreInvalidAndNameTheField) {
  v1::StartRunRequest start;
  start.set_sop_id(kSop001);
  start.set_unit("kalbar-biro-organisasi");
  v1::Run run;
  EXPECT_CODE(stub().StartRun(AuthedContext(kKaro).get(), start, &run), StatusCode::INVALID_ARGUMENT, "period:");
  start.set_period("2026-Q3");
  EXPECT_CODE(stub().StartRun(AuthedContext(kKaro).get(), start, &run), StatusCode::INVALID_ARGUMENT, "members[bagian]:");
  (*start.mutable_members())["bagian"].add_members("bagian-tatalaksana");
  EXPECT_CODE(stub().StartRun(AuthedContext(kKaro).get(), start, &run), StatusCode::INVALID_ARGUMENT, "deadlines[2]:");
  start.clear_sop_id();
  EXPECT_CODE(stub().StartRun(AuthedContext(kKaro).get(), start, &run), StatusCode::INVALID_ARGUMENT, "sop_id:");
  v1::ListRunsRequest list;
  list.set_page_token("halaman-2");
  v1::ListRunsResponse listed;
  EXPECT_CODE(stub().ListRuns(AuthedContext(kKaro).get(), list, &listed), StatusCode::INVALID_ARGUMENT, "page_token:");
  v1::ListInboxRequest inbox;
  inbox.set_page_token("12:");
  v1::ListInboxResponse tasks;
  EXPECT_CODE(stub().ListInbox(AuthedContext(kKaro).get(), inbox, &tasks), StatusCode::INVALID_ARGUMENT, "page_token:");

  v1::DeployDefinitionRequest deploy;
  deploy.set_file_name("rusak.yaml");
  deploy.set_yaml("id: rusak\nnama: Rusak\npelaksana:\n  - {id: a}\nlangkah:\n  - no: 1\n    pelaksana: b\n"
                  "    aktivitas: x\n    waktu: sebentar\n");
  v1::DeployDefinitionResponse deployed;
  grpc::Status s = stub().DeployDefinition(AuthedContext(kAdmin).get(), deploy, &deployed);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("rusak.yaml:7: langkah 1.pelaksana: unknown pelaksana 'b'"), std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("rusak.yaml:9: langkah 1.waktu"), std::string::npos) << s.error_message();
  v1::GetDefinitionRequest get_def;
  get_def.set_id("rusak");
  v1::Definition def;
  EXPECT_CODE(stub().GetDefinition(AuthedContext(kAdmin).get(), get_def, &def), StatusCode::NOT_FOUND, "rusak");

  v1::Run real = Start001();
  v1::Task review = AdvanceTo(real.id(), 6);
  EXPECT_CODE(Complete(kKabagTl, review.id(), "setuju"), StatusCode::INVALID_ARGUMENT, "outcome:");
  EXPECT_CODE(Complete(kKabagTl, review.id(), ""), StatusCode::INVALID_ARGUMENT, "sesuai, perbaikan");
  v1::ReturnTaskRequest ret;
  ret.set_task_id(review.id());
  v1::Task out;
  EXPECT_CODE(stub().ReturnTask(AuthedContext(kKabagTl).get(), ret, &out), StatusCode::INVALID_ARGUMENT, "reason:");
  EXPECT_EQ(GetRun(real.id()).tasks(GetRun(real.id()).tasks_size() - 1).status(), v1::Task::OPEN);

  v1::ActivateJobsRequest jobs;
  jobs.set_job_type("esakip.input");
  jobs.set_worker("w");
  v1::ActivateJobsResponse activated;
  EXPECT_CODE(stub().ActivateJobs(AuthedContext(kEsakipWorker).get(), jobs, &activated), StatusCode::INVALID_ARGUMENT, "max_jobs:");
  v1::GetRunRequest get;
  v1::GetRunResponse got;
  EXPECT_CODE(stub().GetRun(AuthedContext(kAdmin).get(), get, &got), StatusCode::INVALID_ARGUMENT, "run_id:");
}

// An output the event stream could not take (its server's max_payload, 1 MB
// by default) is refused at the call: committed, its event would never be
// published and the run would stop there. One that fits goes through.
TEST_F(ErrorsTest, AnOutputTooLargeForTheEventStreamIsRefusedBeforeAnythingIsWritten) {
  v1::Run run = Start003();
  v1::Task task = WaitForOpenTask(run.id(), 1);
  const std::string before = Snapshot(task.id());
  v1::CompleteTaskRequest req;
  req.set_task_id(task.id());
  req.mutable_output()->set_note(std::string(1045000, 'x'));  // under the 1 MiB output limit, over 1 MB less header room
  v1::Task out;
  EXPECT_CODE(stub().CompleteTask(AuthedContext(kSekretarisBlg).get(), req, &out), StatusCode::INVALID_ARGUMENT,
              "output: with it the task's completion event is");
  EXPECT_EQ(Snapshot(task.id()), before);
  EXPECT_EQ(GetRun(run.id()).tasks_size(), 1);

  req.mutable_output()->set_note(std::string(500000, 'x'));
  ASSERT_TRUE(stub().CompleteTask(AuthedContext(kSekretarisBlg).get(), req, &out).ok());
  RedisConnection redis(RedisAddress::Parse(backends_->redis->address()));
  EXPECT_TRUE(WaitUntil([&] { return ReplyInteger(redis.Command({"XLEN", "sf:outbox"}).get()) == 0; }))
      << "the completion's events were published";
}

TEST_F(ErrorsTest, UnknownThingsAreNotFound) {
  v1::StartRunRequest start;
  start.set_sop_id("tidak-ada");
  start.set_period("2026-Q3");
  start.set_unit("x");
  v1::Run run;
  EXPECT_CODE(stub().StartRun(AuthedContext(kAdmin).get(), start, &run), StatusCode::NOT_FOUND, "tidak-ada");
  v1::GetRunRequest get;
  get.set_run_id("01NOPE");
  v1::GetRunResponse got;
  EXPECT_CODE(stub().GetRun(AuthedContext(kAdmin).get(), get, &got), StatusCode::NOT_FOUND, "01NOPE");
  EXPECT_CODE(Complete(kKaro, "01NOPE.1", ""), StatusCode::NOT_FOUND, "01NOPE.1");
  v1::GetDefinitionRequest def_req;
  def_req.set_id(kSop001);
  def_req.set_version(99);
  v1::Definition def;
  EXPECT_CODE(stub().GetDefinition(AuthedContext(kKaro).get(), def_req, &def), StatusCode::NOT_FOUND, "version 99");
}

TEST_F(ErrorsTest, TasksNoLongerOpenAreFailedPrecondition) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  v1::Task done;
  EXPECT_TRUE(Complete(kSekretarisBlg, first.id(), "", &done).ok());
  // The same completion again (a retry whose first answer was lost) is
  // answered as the first was and applies nothing; another completion of
  // the finished task, even by its actor, is a conflict.
  v1::Task again;
  grpc::Status repeat = Complete(kSekretarisBlg, first.id(), "", &again);
  EXPECT_TRUE(repeat.ok()) << repeat.error_message();
  EXPECT_EQ(again.SerializeAsString(), done.SerializeAsString());
  v1::CompleteTaskRequest other;
  other.set_task_id(first.id());
  other.mutable_output()->set_note("a different note");
  v1::Task refused;
  EXPECT_CODE(stub().CompleteTask(AuthedContext(kSekretarisBlg).get(), other, &refused),
              StatusCode::FAILED_PRECONDITION, "no longer open (DONE by sekretaris-blg)");
  int completions = 0, second_steps = 0;
  auto after = GetRun(run.id());
  for (const auto& h : after.history())
    completions += h.kind() == v1::HistoryEntry::TASK_COMPLETED && h.task_id() == first.id();
  for (const auto& t : after.tasks()) second_steps += t.step() == 2;
  EXPECT_EQ(completions, 1);
  EXPECT_EQ(second_steps, 1);
  v1::ReturnTaskRequest ret;
  ret.set_task_id(WaitForOpenTask(run.id(), 2).id());
  ret.set_reason("x");
  v1::Task out;
  EXPECT_CODE(stub().ReturnTask(AuthedContext("demo-kabid-blg").get(), ret, &out), StatusCode::FAILED_PRECONDITION,
              "not a review");

  // A cancelled run: its open task is cancelled and leaves the inbox.
  v1::Task second = WaitForOpenTask(run.id(), 2);
  v1::CancelRunRequest cancel;
  cancel.set_run_id(run.id());
  cancel.set_reason("salah periode");
  v1::Run cancelled;
  ASSERT_TRUE(stub().CancelRun(AuthedContext(kSekretarisBlg).get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.status(), v1::Run::CANCELLED);
  EXPECT_CODE(Complete("demo-kabid-blg", second.id(), ""), StatusCode::FAILED_PRECONDITION, "");
  EXPECT_TRUE(InboxOf("demo-kabid-blg", run.id()).empty());
  EXPECT_CODE(stub().CancelRun(AuthedContext(kSekretarisBlg).get(), cancel, &cancelled), StatusCode::FAILED_PRECONDITION,
              "CANCELLED");
  auto snapshot = GetRun(run.id());
  for (const auto& t : snapshot.tasks())
    EXPECT_TRUE(t.status() == v1::Task::DONE || t.status() == v1::Task::CANCELLED);

  // A system job is not completed as a person's task.
  v1::Run gowa = Start004();
  v1::Task job = AdvanceTo(gowa.id(), 9);
  EXPECT_EQ(job.kind(), v1::Step::SYSTEM);
  EXPECT_CODE(Complete(kKasubagPp, job.id(), ""), StatusCode::FAILED_PRECONDITION, "system job");
  v1::CompleteJobRequest cj;
  cj.set_task_id(job.id());
  cj.set_worker("w1");
  EXPECT_CODE(stub().CompleteJob(AuthedContext(kEsakipWorker).get(), cj, &out), StatusCode::FAILED_PRECONDITION,
              "not activated by worker 'w1'");
}

TEST_F(ErrorsTest, JobLocksExpireAndFailedJobsReopen) {
  v1::Run gowa = Start004();
  v1::Task job = AdvanceTo(gowa.id(), 9);
  v1::ActivateJobsRequest act;
  act.set_job_type("esakip.input");
  act.set_worker("w1");
  act.set_max_jobs(100);
  v1::ActivateJobsResponse got;
  ASSERT_TRUE(stub().ActivateJobs(AuthedContext(kEsakipWorker).get(), act, &got).ok());
  ASSERT_GE(got.jobs_size(), 1);
  // Locked: another worker gets nothing of this run.
  act.set_worker("w2");
  v1::ActivateJobsResponse none;
  ASSERT_TRUE(stub().ActivateJobs(AuthedContext(kEsakipWorker).get(), act, &none).ok());
  for (const auto& j : none.jobs()) EXPECT_NE(j.id(), job.id());
  // w1 fails it: open again, with the failure in the history.
  v1::FailJobRequest fail;
  fail.set_task_id(job.id());
  fail.set_worker("w1");
  fail.set_error("e-SAKIP tidak dapat dihubungi");
  v1::Task failed;
  ASSERT_TRUE(stub().FailJob(AuthedContext(kEsakipWorker).get(), fail, &failed).ok());
  EXPECT_EQ(failed.status(), v1::Task::OPEN);
  EXPECT_EQ(failed.job_retries(), 1u);
  v1::ActivateJobsResponse retry;
  ASSERT_TRUE(stub().ActivateJobs(AuthedContext(kEsakipWorker).get(), act, &retry).ok());
  bool mine = false;
  for (const auto& j : retry.jobs()) mine |= j.id() == job.id() && j.worker() == "w2";
  EXPECT_TRUE(mine);
  v1::CompleteJobRequest done;
  done.set_task_id(job.id());
  done.set_worker("w2");
  v1::Task completed;
  ASSERT_TRUE(stub().CompleteJob(AuthedContext(kEsakipWorker).get(), done, &completed).ok());
  EXPECT_EQ(completed.status(), v1::Task::DONE);
  bool failure_logged = false;
  auto snapshot = GetRun(gowa.id());
  for (const auto& h : snapshot.history())
    failure_logged |= h.kind() == v1::HistoryEntry::JOB_FAILED && h.reason() == "e-SAKIP tidak dapat dihubungi";
  EXPECT_TRUE(failure_logged);
}

TEST_F(ErrorsTest, DefinitionsAreVersionedAndRunsKeepTheirVersion) {
  std::string text = ReadText(SourcePath("deploy/base/definitions/003-balangan-satpol-pp.yaml"));
  v1::DeployDefinitionRequest deploy;
  deploy.set_yaml(text);
  deploy.set_file_name("003.yaml");
  v1::DeployDefinitionResponse same;
  ASSERT_TRUE(stub().DeployDefinition(AuthedContext(kAdmin).get(), deploy, &same).ok());
  EXPECT_FALSE(same.created());
  EXPECT_EQ(same.definition().version(), 1u);

  v1::Run old_run = Start003();
  std::string changed = text;
  changed.replace(changed.find("waktu: 2 menit"), 14, "waktu: 10 menit");
  deploy.set_yaml(changed);
  v1::DeployDefinitionResponse v2;
  ASSERT_TRUE(stub().DeployDefinition(AuthedContext(kAdmin).get(), deploy, &v2).ok());
  EXPECT_TRUE(v2.created());
  EXPECT_EQ(v2.definition().version(), 2u);
  EXPECT_EQ(v2.definition().steps(2).waktu().amount(), 10u);

  v1::Run new_run = Start003();
  EXPECT_EQ(new_run.sop_version(), 2u);
  EXPECT_EQ(AdvanceTo(old_run.id(), 3).waktu().amount(), 2u);
  EXPECT_EQ(AdvanceTo(new_run.id(), 3).waktu().amount(), 10u);
  v1::ListDefinitionsResponse list;
  ASSERT_TRUE(stub().ListDefinitions(AuthedContext(kKaro).get(), {}, &list).ok());
  EXPECT_EQ(list.definitions_size(), 3);
}

TEST_F(ErrorsTest, StartRunWithTheSameRequestIdReturnsTheSameRun) {
  v1::Run first = Start001("kalbar-2026-Q3");
  v1::Run second = Start001("kalbar-2026-Q3");
  EXPECT_EQ(first.id(), second.id());
  v1::ListRunsRequest req;
  req.set_sop_id(kSop001);
  v1::ListRunsResponse runs;
  ASSERT_TRUE(stub().ListRuns(AuthedContext(kKaro).get(), req, &runs).ok());
  int with_id = 0;
  for (const auto& r : runs.runs()) with_id += r.request_id() == "kalbar-2026-Q3";
  EXPECT_EQ(with_id, 1);
}

}  // namespace
}  // namespace sopflow::testing

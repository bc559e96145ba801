// CompleteTasks: completions over one stream, against a real Redis and
// NATS. Each request is answered as CompleteTask would answer it, a failing
// one does not end the stream, many in flight commit once each, and a
// draining router ends its streams instead of holding the drain.
#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <thread>

#include "metrics.h"
#include "router_fixture.h"

namespace sopflow::testing {
namespace {

using Stream = grpc::ClientReaderWriter<v1::CompleteTaskRequest, v1::CompleteTasksResponse>;

class CompletionStreamTest : public RouterTest {
 protected:
  static v1::CompleteTaskRequest Completion(const std::string& task_id) {
    v1::CompleteTaskRequest req;
    req.set_task_id(task_id);
    req.mutable_output()->set_note("dikerjakan lewat stream");
    return req;
  }

  // Reads up to `n` answers, in the order they came (bounded by the
  // stream's deadline, which ends the stream).
  static std::vector<v1::CompleteTasksResponse> ReadAnswers(Stream& stream, size_t n) {
    std::vector<v1::CompleteTasksResponse> answers;
    v1::CompleteTasksResponse a;
    while (answers.size() < n && stream.Read(&a)) answers.push_back(a);
    return answers;
  }

  int StepTasks(const std::string& run_id, uint32_t step) {
    int n = 0;
    auto state = GetRun(run_id);
    for (const auto& t : state.tasks()) n += t.step() == step;
    return n;
  }
};

TEST_F(CompletionStreamTest, EachRequestIsAnsweredAsCompleteTaskWouldWithoutEndingTheStream) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  v1::Run other = Start003();
  v1::Task others_first = WaitForOpenTask(other.id(), 1);

  auto answered = [](const char* code) {
    return Metrics::Global().CounterValue("sopflow_streamed_completions_total", std::string("code=\"") + code + "\"");
  };
  auto timed = [](const char* code) {
    return Metrics::Global().HistogramCount("sopflow_streamed_completion_duration_seconds",
                                            std::string("code=\"") + code + "\"");
  };
  const double ok_before = answered("OK"), not_found_before = answered("NOT_FOUND");
  const uint64_t ok_timed_before = timed("OK"), not_found_timed_before = timed("NOT_FOUND");
  auto ctx = AuthedContext(kSekretarisBlg, std::chrono::seconds(30));
  auto stream = stub().CompleteTasks(ctx.get());
  ASSERT_TRUE(stream->Write(Completion(first.id())));
  ASSERT_TRUE(stream->Write(Completion("no-such-task")));
  auto answers = ReadAnswers(*stream, 2);
  ASSERT_EQ(answers.size(), 2u);
  std::map<std::string, v1::CompleteTasksResponse> by_task;
  for (const auto& a : answers) by_task[a.task_id()] = a;
  EXPECT_EQ(by_task[first.id()].code(), grpc::StatusCode::OK) << by_task[first.id()].message();
  EXPECT_EQ(by_task[first.id()].task().status(), v1::Task::DONE);
  EXPECT_EQ(by_task[first.id()].task().id(), first.id());
  EXPECT_EQ(by_task["no-such-task"].code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(by_task["no-such-task"].message().empty());

  // The same task, completed otherwise: refused as a second CompleteTask
  // would be; the stream still serves the next request.
  v1::CompleteTaskRequest otherwise = Completion(first.id());
  otherwise.mutable_output()->set_note("lain");
  ASSERT_TRUE(stream->Write(otherwise));
  ASSERT_TRUE(stream->Write(Completion(others_first.id())));
  answers = ReadAnswers(*stream, 2);
  ASSERT_EQ(answers.size(), 2u);
  by_task.clear();
  for (const auto& a : answers) by_task[a.task_id()] = a;
  EXPECT_EQ(by_task[first.id()].code(), grpc::StatusCode::FAILED_PRECONDITION) << by_task[first.id()].message();
  EXPECT_FALSE(by_task[first.id()].has_task());
  EXPECT_EQ(by_task[others_first.id()].code(), grpc::StatusCode::OK) << by_task[others_first.id()].message();

  ASSERT_TRUE(stream->WritesDone());
  v1::CompleteTasksResponse extra;
  EXPECT_FALSE(stream->Read(&extra)) << "an answer nobody asked for: " << extra.task_id();
  grpc::Status end = stream->Finish();
  EXPECT_TRUE(end.ok()) << end.error_code() << ": " << end.error_message();
  // Operators see the answers, not only the one call the stream is.
  EXPECT_EQ(answered("OK") - ok_before, 2);
  EXPECT_EQ(answered("NOT_FOUND") - not_found_before, 1);
  EXPECT_EQ(timed("OK") - ok_timed_before, 2u);  // and each answer's duration
  EXPECT_EQ(timed("NOT_FOUND") - not_found_timed_before, 1u);

  // Applied once each: one completion in the history, one next task.
  for (const auto* r : {&run, &other}) {
    auto state = GetRun(r->id());
    int completed = 0;
    for (const auto& h : state.history()) completed += h.kind() == v1::HistoryEntry::TASK_COMPLETED;
    EXPECT_EQ(completed, 1) << r->id();
    EXPECT_EQ(StepTasks(r->id(), 2), 1) << r->id();
  }
}

TEST_F(CompletionStreamTest, AUserWithoutTheRoleIsRefusedPerRequestAndNothingChanges) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  // The kabid holds step 2's role, not step 1's (the sekretaris').
  auto ctx = AuthedContext("demo-kabid-blg", std::chrono::seconds(30));
  auto stream = stub().CompleteTasks(ctx.get());
  ASSERT_TRUE(stream->Write(Completion(first.id())));
  auto answers = ReadAnswers(*stream, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].code(), grpc::StatusCode::PERMISSION_DENIED) << answers[0].message();
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
  auto state = GetRun(run.id());
  ASSERT_EQ(state.tasks_size(), 1);
  EXPECT_EQ(state.tasks(0).status(), v1::Task::OPEN);
}

TEST_F(CompletionStreamTest, ABadTokenEndsTheStreamBeforeAnythingIsRead) {
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);
  auto ctx = AuthedContext("not-a-token", std::chrono::seconds(30));
  auto stream = stub().CompleteTasks(ctx.get());
  stream->Write(Completion(first.id()));  // may fail: the router has ended the stream
  stream->WritesDone();
  v1::CompleteTasksResponse a;
  EXPECT_FALSE(stream->Read(&a));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetRun(run.id()).tasks(0).status(), v1::Task::OPEN);
}

// Requests are sent without waiting for answers, each task twice: the
// router commits what is in flight together, and each task exactly once.
// The second request is the first one repeated (as a worker retrying after
// a lost answer would send it): it is answered as the first, with the task
// it completed.
TEST_F(CompletionStreamTest, ManyInFlightOnOneStreamCommitOnceEach) {
  constexpr int kRuns = 40;
  std::vector<std::pair<std::string, std::string>> tasks;  // run, first task
  for (int i = 0; i < kRuns; ++i) {
    v1::Run run = Start003();
    tasks.emplace_back(run.id(), WaitForOpenTask(run.id(), 1).id());
  }
  auto ctx = AuthedContext(kSekretarisBlg, std::chrono::seconds(60));
  auto stream = stub().CompleteTasks(ctx.get());
  auto sent = std::async(std::launch::async, [&] {
    for (int pass = 0; pass < 2; ++pass)
      for (const auto& [run, task] : tasks)
        if (!stream->Write(Completion(task))) return false;
    return stream->WritesDone();
  });
  auto answers = ReadAnswers(*stream, 2 * kRuns);
  ASSERT_TRUE(sent.get());
  ASSERT_EQ(answers.size(), 2u * kRuns);
  std::map<std::string, std::vector<std::string>> completed;  // task -> the tasks answered
  for (const auto& a : answers) {
    EXPECT_EQ(a.code(), grpc::StatusCode::OK) << a.task_id() << ": " << a.message();
    completed[a.task_id()].push_back(a.task().SerializeAsString());
  }
  ASSERT_EQ(completed.size(), static_cast<size_t>(kRuns));
  for (const auto& [task, answered] : completed) {
    ASSERT_EQ(answered.size(), 2u) << task;
    EXPECT_EQ(answered[0], answered[1]) << task;
  }
  EXPECT_TRUE(stream->Finish().ok());
  for (const auto& [run, task] : tasks) EXPECT_EQ(StepTasks(run, 2), 1) << run;
}

// A draining router answers what its streams read, then ends them with
// UNAVAILABLE at once: a worker's idle stream must not hold the drain to
// its deadline (and then be cut off without a word).
TEST_F(CompletionStreamTest, ADrainingRouterEndsItsStreamsAfterAnsweringWhatTheyRead) {
  auto config = backends_->RouterConfigFor();
  config.drain_ms = 30000;
  RouterProcess draining(config, &clock_);
  draining.Start();
  auto replica = RouterStub(draining.port());
  v1::Run run = Start003();
  v1::Task first = WaitForOpenTask(run.id(), 1);

  auto ctx = AuthedContext(kSekretarisBlg, std::chrono::seconds(60));
  auto stream = replica->CompleteTasks(ctx.get());
  ASSERT_TRUE(stream->Write(Completion(first.id())));
  auto answers = ReadAnswers(*stream, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].code(), grpc::StatusCode::OK) << answers[0].message();

  // The stream is open and idle when the drain begins.
  auto began = std::chrono::steady_clock::now();
  auto drained = std::async(std::launch::async, [&] { draining.Shutdown(); });
  v1::CompleteTasksResponse a;
  EXPECT_FALSE(stream->Read(&a));
  grpc::Status end = stream->Finish();
  drained.get();
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE) << end.error_message();
  EXPECT_NE(end.error_message().find("draining"), std::string::npos) << end.error_message();
  // Not held to the 30 s deadline (the bound is the deadline, not speed).
  EXPECT_LT(took, std::chrono::milliseconds(config.drain_ms / 2));
  EXPECT_EQ(StepTasks(run.id(), 2), 1);
}

}  // namespace
}  // namespace sopflow::testing

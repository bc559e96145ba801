#include "completion_stream.h"

#include <atomic>
#include <exception>
#include <utility>

#include "grpc_client.h"
#include "grpc_server.h"
#include "metrics.h"

namespace sopflow {

namespace {
// Open streams in this process, for operators: sopflow_completion_streams.
std::atomic<int64_t> open_streams{0};
void CountStream(int delta) {
  Metrics::Global().Set("sopflow_completion_streams", "", static_cast<double>(open_streams += delta));
}
}  // namespace

void CompletionStreams::Drain() {
  std::lock_guard lock(mu_);
  draining_ = true;
  // A stream ending meanwhile waits in Remove for this lock, so each is
  // alive. (gRPC never runs OnDone inline from Finish, so a stream that
  // StopReading finishes does not reach Remove on this thread.)
  for (auto* stream : open_) stream->StopReading();
}

bool CompletionStreams::Add(CompletionStream* stream) {
  std::lock_guard lock(mu_);
  if (draining_) return false;
  open_.insert(stream);
  return true;
}

void CompletionStreams::Remove(CompletionStream* stream) {
  std::lock_guard lock(mu_);
  open_.erase(stream);
}

CompletionStream::CompletionStream(CompletionGroups& groups, CompletionStreams& streams, User caller)
    : groups_(groups), streams_(streams), caller_(std::move(caller)) {
  CountStream(+1);
  std::unique_lock lock(mu_);
  // Registered before anything starts, so a drain from now on reaches it.
  if (!streams_.Add(this)) stop_reading_ = true;
  Pump(lock);
}

void CompletionStream::OnReadDone(bool ok) {
  std::unique_lock lock(mu_);
  read_pending_ = false;
  if (!ok) reads_done_ = true;  // the worker closed its side (or left)
  if (!ok || finished_) return Pump(lock);
  Engine::CompleteCall call;
  call.user = caller_;
  call.task_id = std::move(*request_.mutable_task_id());
  call.outcome = std::move(*request_.mutable_outcome());
  call.output = std::move(*request_.mutable_output());
  ++in_flight_;  // keeps the stream from finishing until Answer: `this` stays alive
  // The next read starts before this one commits: what arrives meanwhile
  // joins the next group instead of waiting for this one.
  Pump(lock);
  groups_.Submit(std::move(call), [this, read_at = std::chrono::steady_clock::now()](Engine::CompleteCall& done) {
    Answer(done, read_at);
  });
}

void CompletionStream::Answer(Engine::CompleteCall& done, std::chrono::steady_clock::time_point read_at) {
  v1::CompleteTasksResponse answer;
  answer.set_task_id(done.task_id);
  grpc::Status status = GuardedCall([&] {
    if (done.error) std::rethrow_exception(done.error);
    *answer.mutable_task() = std::move(*done.task);
  });
  answer.set_code(status.error_code());
  answer.set_message(status.error_message());
  // The stream is one call to the request metrics; its answers are counted
  // and timed here (from the request read to its answer queued: what a
  // CompleteTask call's duration would be, less the call itself).
  const std::string code = "code=\"" + StatusCodeName(status.error_code()) + "\"";
  Metrics::Global().Count("sopflow_streamed_completions_total", code);
  Metrics::Global().Observe("sopflow_streamed_completion_duration_seconds", code,
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - read_at).count());
  std::unique_lock lock(mu_);
  --in_flight_;
  answers_.push_back(std::move(answer));
  Pump(lock);
}

void CompletionStream::OnWriteDone(bool ok) {
  std::unique_lock lock(mu_);
  write_pending_ = false;
  wrote_ = true;
  if (!ok) cancelled_ = true;  // the worker is gone: nothing more can reach it
  Pump(lock);
}

void CompletionStream::OnCancel() {
  std::unique_lock lock(mu_);
  cancelled_ = true;
  Pump(lock);
}

void CompletionStream::StopReading() {
  std::unique_lock lock(mu_);
  stop_reading_ = true;
  Pump(lock);
}

void CompletionStream::OnDone() {
  streams_.Remove(this);
  CountStream(-1);
  delete this;
}

void CompletionStream::Pump(std::unique_lock<std::mutex>& lock) {
  if (finished_) return;
  const bool start_read =
      !read_pending_ && !reads_done_ && !stop_reading_ && !cancelled_ && in_flight_ < kMaxInFlight;
  if (start_read) read_pending_ = true;
  const bool start_write = !write_pending_ && !cancelled_ && !answers_.empty();
  grpc::WriteOptions write_options;
  if (start_write) {
    writing_ = std::move(answers_.front());
    answers_.pop_front();
    write_pending_ = true;
    write_options = QueuedWriteOptions(!answers_.empty(), wrote_);
  }
  // Done when nothing read is left unanswered: the worker closed its side,
  // or the router drains (answers written first), or the worker left.
  const bool settled = in_flight_ == 0 && !write_pending_;
  grpc::Status end;
  bool finish = false;
  if (settled && cancelled_) {
    finish = true;
    end = grpc::Status::CANCELLED;
  } else if (settled && answers_.empty() && (reads_done_ || stop_reading_)) {
    finish = true;
    if (!reads_done_) end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "router draining: send the unanswered requests again");
  }
  finished_ = finish;
  // gRPC may run a reaction inline or on another thread the moment an
  // operation starts, and the last one may end the stream: release the
  // lock first, start the read before the write (a started write keeps
  // the stream alive until its OnWriteDone), and touch nothing after.
  lock.unlock();
  if (start_read) StartRead(&request_);
  if (start_write) StartWrite(&writing_, write_options);
  if (finish) Finish(end);
}

}  // namespace sopflow

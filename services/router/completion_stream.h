// One CompleteTasks stream on gRPC's callback API: an automated worker's
// completions, one request per task. Each request read joins the router's
// completion groups at once (the next read starts before it commits), so
// what a stream has in flight commits together, with the unary calls of the
// moment; answers are written one at a time, in the order they commit.
// The stream holds no thread while it waits.
#pragma once

#include <cstddef>
#include <chrono>
#include <deque>
#include <mutex>
#include <set>

#include <grpcpp/grpcpp.h>

#include "call_groups.h"
#include "sopflow/v1/router.pb.h"
#include "users.h"

namespace sopflow {

class CompletionStream;

// The open CompleteTasks streams of a router, so a draining router can end
// them (a stream whose worker sends nothing would otherwise stay open until
// the drain deadline cancels it).
class CompletionStreams {
 public:
  // Ends every open stream: each stops reading, answers what it has read,
  // and ends with UNAVAILABLE. Streams opened afterwards end at once.
  void Drain();

 private:
  friend class CompletionStream;
  // False when draining: the stream must not start.
  bool Add(CompletionStream* stream);
  void Remove(CompletionStream* stream);

  std::mutex mu_;
  std::set<CompletionStream*> open_;
  bool draining_ = false;
};

class CompletionStream final : public grpc::ServerBidiReactor<v1::CompleteTaskRequest, v1::CompleteTasksResponse> {
 public:
  // Requests read but not yet answered, at most: past it the stream stops
  // reading until answers go out, so a worker that sends faster than tasks
  // commit is held back by HTTP/2 flow control, not by the router's memory.
  static constexpr size_t kMaxInFlight = 256;

  // `caller` is the stream's authenticated user; `streams` outlives it.
  CompletionStream(CompletionGroups& groups, CompletionStreams& streams, User caller);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // Stops reading and ends the stream with UNAVAILABLE once what was read
  // is answered (CompletionStreams::Drain).
  void StopReading();

 private:
  // A completion's outcome, on whichever thread committed its group.
  void Answer(Engine::CompleteCall& done, std::chrono::steady_clock::time_point read_at);
  // Writes the next answer, resumes reading, or finishes: whatever the
  // state allows. Called with mu_ held; may release it, and touches nothing
  // of the stream after a write started or Finish was called.
  void Pump(std::unique_lock<std::mutex>& lock);

  CompletionGroups& groups_;
  CompletionStreams& streams_;
  const User caller_;
  v1::CompleteTaskRequest request_;  // the read under way fills it

  std::mutex mu_;
  // Guarded by mu_:
  std::deque<v1::CompleteTasksResponse> answers_;  // committed, not yet written
  v1::CompleteTasksResponse writing_;             // the answer gRPC is sending
  size_t in_flight_ = 0;                           // read, not yet answered
  bool read_pending_ = false;
  bool write_pending_ = false;
  bool wrote_ = false;  // a write completed: the initial metadata went out
  bool reads_done_ = false;   // the worker closed its side
  bool stop_reading_ = false; // draining
  bool cancelled_ = false;
  bool finished_ = false;
};

}  // namespace sopflow

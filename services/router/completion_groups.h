// CompleteTask calls served in groups. A gRPC thread queues its call and
// returns at once; the thread that finds no group in progress becomes the
// committer and completes everything queued (Engine::CompleteAll: one read
// round trip and one commit for the group) until the queue is empty,
// finishing each call as its group ends. Under load the calls that arrive
// while one group is in Redis form the next, so a hand-off costs a share of
// two round trips instead of two; alone, a call is committed at once by
// the thread that brought it, as before.
#pragma once

#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

#include "engine.h"

namespace sopflow {

class CompletionGroups {
 public:
  using Done = std::function<void(Engine::CompleteCall&)>;
  explicit CompletionGroups(Engine* engine, size_t max_group = 256) : engine_(engine), max_group_(max_group) {}

  // Queues `call`; `done` runs once with its outcome, on whichever thread
  // commits its group (perhaps this one, before Submit returns).
  void Submit(Engine::CompleteCall call, Done done);

 private:
  struct Pending {
    Engine::CompleteCall call;
    Done done;
  };
  void CommitGroups();

  Engine* engine_;
  size_t max_group_;
  std::mutex mu_;
  std::vector<Pending> queue_;
  bool committing_ = false;
};

}  // namespace sopflow

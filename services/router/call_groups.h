// Calls served in groups: CompleteTask (and CompleteTasks streams) and
// StartRun. A gRPC thread queues its call and returns at once; the thread
// that finds no group in progress becomes the committer and commits
// everything queued (Engine::CompleteAll, Engine::StartAll: one commit for
// the group) until the queue is empty, finishing each call as its group
// ends. Under load the calls that arrive while one group is in Redis form
// the next, so a call costs a share of the group's round trips instead of
// all of them; alone, a call is committed at once by the thread that
// brought it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <mutex>
#include <utility>
#include <vector>

#include "engine.h"

namespace sopflow {

// `Call` says whether it was decided (`decided()`: an outcome or an error),
// and has an `error` a failed group sets on those that were not.
template <class Call>
class CallGroups {
 public:
  using Done = std::function<void(Call&)>;
  using CommitAll = std::function<void(std::vector<Call>&)>;
  CallGroups(CommitAll commit_all, size_t max_group) : commit_all_(std::move(commit_all)), max_group_(max_group) {}

  // Queues `call`; `done` runs once with its outcome, on whichever thread
  // commits its group (perhaps this one, before Submit returns).
  void Submit(Call call, Done done) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back({std::move(call), std::move(done)});
      if (committing_) return;  // the committer takes it with its next group
      committing_ = true;
    }
    CommitGroups();
  }

 private:
  struct Pending {
    Call call;
    Done done;
  };

  void CommitGroups() {
    for (;;) {
      std::vector<Pending> group;
      {
        std::lock_guard lock(mu_);
        // Leaving only under the lock, with the queue empty: a call queued
        // after this sees committing_ false and commits itself.
        if (queue_.empty()) {
          committing_ = false;
          return;
        }
        auto n = static_cast<std::ptrdiff_t>(std::min(queue_.size(), max_group_));
        group.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
        queue_.erase(queue_.begin(), queue_.begin() + n);
      }
      std::vector<Call> calls;
      calls.reserve(group.size());
      for (auto& p : group) calls.push_back(std::move(p.call));
      try {
        commit_all_(calls);
      } catch (...) {
        // The group's read or commit failed as a whole (Redis away): every
        // call not decided yet fails with it.
        for (auto& c : calls)
          if (!c.decided()) c.error = std::current_exception();
      }
      for (size_t i = 0; i < group.size(); ++i) group[i].done(calls[i]);
    }
  }

  CommitAll commit_all_;
  size_t max_group_;
  std::mutex mu_;
  std::vector<Pending> queue_;
  bool committing_ = false;
};

class CompletionGroups : public CallGroups<Engine::CompleteCall> {
 public:
  explicit CompletionGroups(Engine* engine, size_t max_group = 256)
      : CallGroups([engine](std::vector<Engine::CompleteCall>& calls) { engine->CompleteAll(calls); }, max_group) {}
};

class StartGroups : public CallGroups<Engine::StartCall> {
 public:
  explicit StartGroups(Engine* engine, size_t max_group = 256)
      : CallGroups([engine](std::vector<Engine::StartCall>& calls) { engine->StartAll(calls); }, max_group) {}
};

}  // namespace sopflow

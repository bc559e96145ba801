#include "completion_groups.h"

#include <algorithm>
#include <cstddef>
#include <exception>
#include <iterator>
#include <utility>

namespace sopflow {

void CompletionGroups::Submit(Engine::CompleteCall call, Done done) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back({std::move(call), std::move(done)});
    if (committing_) return;  // the committer takes it with its next group
    committing_ = true;
  }
  CommitGroups();
}

void CompletionGroups::CommitGroups() {
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
    std::vector<Engine::CompleteCall> calls;
    calls.reserve(group.size());
    for (auto& p : group) calls.push_back(std::move(p.call));
    try {
      engine_->CompleteAll(calls);
    } catch (...) {
      // The group's read or commit failed as a whole (Redis away): every
      // call not decided yet fails with it.
      for (auto& c : calls)
        if (!c.task && !c.error) c.error = std::current_exception();
    }
    for (size_t i = 0; i < group.size(); ++i) group[i].done(calls[i]);
  }
}

}  // namespace sopflow

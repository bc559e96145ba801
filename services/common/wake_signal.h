// For polling loops that should cost nothing when idle yet start at once
// when their own process makes work for them (the notifier's delivery
// workers): they wait on a WakeSignal for an IdleBackoff interval.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace sopflow {

class WakeSignal {
 public:
  // What one waiting loop has seen; each loop keeps its own, so one Notify
  // wakes every loop and each sees it once.
  struct Cursor {
    uint64_t seen = 0;
  };
  // Wakes every waiter. A Notify while a loop is not waiting is kept for
  // its next WaitFor, so work made between two polls is not slept through.
  void Notify();
  // Waits up to `timeout`; true when a Notify came since this cursor last
  // returned, false when the time ran out.
  bool WaitFor(Cursor& cursor, std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;  // Notify count
};

// The pause before the next poll: `min` after a poll that found work,
// doubling with each poll that found none, up to `max`.
class IdleBackoff {
 public:
  IdleBackoff(std::chrono::milliseconds min, std::chrono::milliseconds max) : min_(min), max_(max), next_(min) {}
  std::chrono::milliseconds After(bool found_work);
  void Reset() { next_ = min_; }

 private:
  std::chrono::milliseconds min_, max_, next_;
};

}  // namespace sopflow

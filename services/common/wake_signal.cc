#include "wake_signal.h"

#include <algorithm>

namespace sopflow {

void WakeSignal::Notify() {
  {
    std::lock_guard lock(mu_);
    ++generation_;
  }
  cv_.notify_all();
}

bool WakeSignal::WaitFor(Cursor& cursor, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  bool woken = cv_.wait_for(lock, timeout, [&] { return generation_ != cursor.seen; });
  cursor.seen = generation_;
  return woken;
}

std::chrono::milliseconds IdleBackoff::After(bool found_work) {
  if (found_work) {
    next_ = min_;
    return min_;
  }
  auto pause = next_;
  next_ = std::min(next_ * 2, max_);
  return pause;
}

}  // namespace sopflow

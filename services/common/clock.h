// Time is injected so tests and accelerated demos control it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace sopflow {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};

// A clock that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start) : micros_(ToMicros(start)) {}
  TimePoint Now() const override { return TimePoint(std::chrono::microseconds(micros_.load())); }
  void Advance(std::chrono::microseconds d) { micros_ += d.count(); }
  void Set(TimePoint t) { micros_ = ToMicros(t); }

 private:
  static int64_t ToMicros(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  }
  std::atomic<int64_t> micros_;
};

// Sleeps `total`, in short slices so a loop whose `running` turns false
// (a drain) ends within ~50 ms rather than after a whole long interval.
void SleepWhileRunning(const std::atomic<bool>& running, std::chrono::milliseconds total);

int64_t UnixMillis(TimePoint t);
TimePoint FromUnixMillis(int64_t ms);
// RFC 3339 in UTC with milliseconds, e.g. "2026-07-01T02:03:04.005Z".
std::string FormatRfc3339(TimePoint t);
// Parses "2026-07-01T09:00:00Z" or with an offset "+07:00"; false if malformed.
bool ParseRfc3339(const std::string& text, TimePoint* out);

}  // namespace sopflow

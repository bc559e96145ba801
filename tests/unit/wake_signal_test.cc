#include "wake_signal.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sopflow {
namespace {

using std::chrono::milliseconds;

TEST(IdleBackoffTest, DoublesWhileIdleUpToItsMaximumAndStartsOverAfterWork) {
  IdleBackoff b(milliseconds(20), milliseconds(1000));
  std::vector<int64_t> pauses;
  for (int i = 0; i < 8; ++i) pauses.push_back(b.After(false).count());
  EXPECT_EQ(pauses, (std::vector<int64_t>{20, 40, 80, 160, 320, 640, 1000, 1000}));
  EXPECT_EQ(b.After(true).count(), 20);
  EXPECT_EQ(b.After(false).count(), 20);
  EXPECT_EQ(b.After(false).count(), 40);
  b.Reset();
  EXPECT_EQ(b.After(false).count(), 20);
}

TEST(WakeSignalTest, ANotifyBeforeTheWaitIsNotLost) {
  WakeSignal s;
  WakeSignal::Cursor c;
  s.Notify();
  EXPECT_TRUE(s.WaitFor(c, milliseconds(0)));
  EXPECT_FALSE(s.WaitFor(c, milliseconds(0))) << "seen once";
}

TEST(WakeSignalTest, OneNotifyWakesEveryWaitingLoop) {
  WakeSignal s;
  constexpr int kLoops = 3;
  std::vector<int> woken(kLoops, -1);
  std::atomic<int> waiting{0};
  std::vector<std::thread> loops;
  for (int i = 0; i < kLoops; ++i)
    loops.emplace_back([&, i] {
      WakeSignal::Cursor c;
      ++waiting;
      woken[i] = s.WaitFor(c, std::chrono::minutes(1)) ? 1 : 0;  // a lost wake-up fails, after a minute
    });
  for (int i = 0; i < 2000 && waiting < kLoops; ++i) std::this_thread::sleep_for(milliseconds(1));
  s.Notify();
  for (auto& t : loops) t.join();
  EXPECT_EQ(woken, std::vector<int>(kLoops, 1));
}

TEST(WakeSignalTest, WithoutANotifyTheWaitRunsOut) {
  WakeSignal s;
  WakeSignal::Cursor c;
  EXPECT_FALSE(s.WaitFor(c, milliseconds(5)));
}

}  // namespace
}  // namespace sopflow

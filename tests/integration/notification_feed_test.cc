// NotificationFeed against notifiers that misbehave in ways a real one
// only does when broken: one that takes every stream and ends it at once,
// one that ends every stream after a notification. A fake Notifier on a
// loopback port plays them; the feed's tests against the real notifier
// (drains, restarts, resuming) are in notifier_test.cc.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "notification_feed.h"
#include "sopflow/v1/notifier.grpc.pb.h"

namespace sopflow::testing {
namespace {

using namespace std::chrono_literals;

// Takes each Subscribe: sends its headers with a cursor, then, if
// `notify`, one notification with the next cursor, and ends the stream
// with OK. After `refuse_after` streams it refuses with PERMISSION_DENIED.
class FlappingNotifier final : public v1::Notifier::Service {
 public:
  FlappingNotifier(bool notify, int refuse_after) : notify_(notify), refuse_after_(refuse_after) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FlappingNotifier() override { server_->Shutdown(std::chrono::system_clock::now() + 5s); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> cursors_asked() const {
    std::lock_guard lock(mu_);
    return cursors_asked_;
  }

  grpc::Status Subscribe(grpc::ServerContext* context, const v1::SubscribeRequest* request,
                         grpc::ServerWriter<v1::Notification>* writer) override {
    int stream;
    {
      std::lock_guard lock(mu_);
      cursors_asked_.push_back(request->cursor());
      stream = static_cast<int>(cursors_asked_.size());
    }
    if (stream > refuse_after_) return {grpc::StatusCode::PERMISSION_DENIED, "no more"};
    context->AddInitialMetadata(kSubscribeCursorHeader, "0-" + std::to_string(stream * 10));
    writer->SendInitialMetadata();
    if (notify_) {
      v1::Notification n;
      n.set_id("n" + std::to_string(stream));
      n.set_cursor("0-" + std::to_string(stream * 10 + 1));
      writer->Write(n);
    }
    return grpc::Status::OK;
  }

 private:
  const bool notify_;
  const int refuse_after_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  std::vector<std::string> cursors_asked_;
};

NotificationFeed::Options FastOptions(const std::string& address) {
  NotificationFeed::Options options;
  options.addresses = {address};
  options.token = "t";
  options.max_failed_attempts = 5;
  options.retry_pause = 1ms;
  options.max_retry_pause = 8ms;
  options.connect_timeout = 5s;
  return options;  // healthy_after stays 10 s: no stream of these lasts that long
}

struct Outcome {
  grpc::Status status;
  int lives = 0;
  std::vector<std::string> notified;
};

// Runs the feed on its own thread, bounded: a feed that never returns
// fails the test instead of hanging it.
Outcome RunBounded(NotificationFeed& feed) {
  Outcome out;
  auto run = std::async(std::launch::async, [&] {
    return feed.Run([&](const std::string&) { ++out.lives; },
                    [&](const v1::Notification& n) { out.notified.push_back(n.id()); });
  });
  if (run.wait_for(30s) != std::future_status::ready) {
    feed.Stop();
    run.wait();
    ADD_FAILURE() << "the feed was still retrying after 30 s";
    return out;
  }
  out.status = run.get();
  return out;
}

// A notifier that takes every stream and ends it at once is not a
// notifier that works: the feed counts those tries as failed and gives up
// after max_failed_attempts of them, instead of resubscribing forever.
TEST(NotificationFeedTest, GivesUpOnANotifierThatEndsEveryStreamAtOnce) {
  FlappingNotifier notifier(/*notify=*/false, /*refuse_after=*/1000);
  int retries = 0;
  auto options = FastOptions(notifier.address());
  options.on_retry = [&](const grpc::Status& st) {
    EXPECT_TRUE(st.ok()) << st.error_message();
    ++retries;
  };
  NotificationFeed feed(options);
  Outcome out = RunBounded(feed);

  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(out.status.error_message().find("5 attempts in a row"), std::string::npos) << out.status.error_message();
  EXPECT_NE(out.status.error_message().find("ended at once"), std::string::npos) << out.status.error_message();
  EXPECT_EQ(notifier.cursors_asked().size(), 5u);
  EXPECT_EQ(out.lives, 5) << "each stream got its headers";
  EXPECT_EQ(retries, 4) << "told of each retry, not of the give-up";
  // Each retry resumed where the headers of the stream before it started.
  EXPECT_EQ(notifier.cursors_asked(), (std::vector<std::string>{"", "0-10", "0-20", "0-30", "0-40"}));
}

// A stream that brought a notification worked, however short: the count
// starts again, so a feed outlasts many more breaks than
// max_failed_attempts as long as each one moves it on, and resumes after
// the last notification each time.
TEST(NotificationFeedTest, AStreamThatBroughtANotificationResetsTheCount) {
  FlappingNotifier notifier(/*notify=*/true, /*refuse_after=*/12);
  NotificationFeed feed(FastOptions(notifier.address()));
  Outcome out = RunBounded(feed);

  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << "a refusal ends it at once";
  EXPECT_EQ(out.notified.size(), 12u) << "12 streams, more than max_failed_attempts (5)";
  auto asked = notifier.cursors_asked();
  ASSERT_EQ(asked.size(), 13u);
  EXPECT_EQ(asked[0], "");
  for (size_t i = 1; i < asked.size(); ++i) EXPECT_EQ(asked[i], "0-" + std::to_string(i * 10 + 1));
}

// The pauses between failed tries double from retry_pause to
// max_retry_pause, each within +-20%.
TEST(NotificationFeedTest, PausesDoubleUpToTheirBoundWithinTwentyPercent) {
  NotificationFeed::Options options;  // 100 ms, at most 5 s
  std::vector<int64_t> middle, low, high;
  for (int failed = 1; failed <= 10; ++failed) {
    middle.push_back(NotificationFeed::PauseAfter(failed, options, 0).count());
    low.push_back(NotificationFeed::PauseAfter(failed, options, -1).count());
    high.push_back(NotificationFeed::PauseAfter(failed, options, 1).count());
  }
  EXPECT_EQ(middle, (std::vector<int64_t>{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000}));
  EXPECT_EQ(low[0], 80);
  EXPECT_EQ(high[0], 120);
  EXPECT_EQ(low[9], 4000);
  EXPECT_EQ(high[9], 6000);
  EXPECT_EQ(NotificationFeed::PauseAfter(1000, options, 0).count(), 5000) << "no overflow after many failures";
}

// Stop() ends a feed in the middle of a long pause, not after it.
TEST(NotificationFeedTest, StopEndsAPauseAtOnce) {
  FlappingNotifier notifier(/*notify=*/false, /*refuse_after=*/1000);
  auto options = FastOptions(notifier.address());
  options.retry_pause = std::chrono::minutes(10);
  options.max_retry_pause = std::chrono::minutes(10);
  std::atomic<bool> pausing{false};
  options.on_retry = [&](const grpc::Status&) { pausing = true; };  // told just before the pause
  NotificationFeed feed(options);
  auto run = std::async(std::launch::async, [&] {
    return feed.Run([](const std::string&) {}, [](const v1::Notification&) {});
  });
  for (int i = 0; i < 3000 && !pausing; ++i) std::this_thread::sleep_for(10ms);  // 30 s at most
  ASSERT_TRUE(pausing) << "the first stream ended, and the feed is into its ten-minute pause";
  ASSERT_EQ(notifier.cursors_asked().size(), 1u);
  std::this_thread::sleep_for(100ms);  // well into the pause, though nothing depends on how far
  feed.Stop();
  ASSERT_EQ(run.wait_for(30s), std::future_status::ready) << "Stop() waited for the pause";
  EXPECT_TRUE(run.get().ok());
  EXPECT_EQ(notifier.cursors_asked().size(), 1u);
}

}  // namespace
}  // namespace sopflow::testing

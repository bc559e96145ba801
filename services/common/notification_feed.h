// A Notifier.Subscribe stream kept the way a client should keep it, for
// sopctl watch, sopbench's workers and anyone copying them:
// - it waits, a bounded time, for a notifier to be reachable instead of
//   failing at a connection's first hiccup (gRPC fails a call at once on a
//   channel whose connecting failed, and retries the connection later);
// - it knows it is subscribed when the response headers arrive, carrying
//   the log position the stream starts after (kSubscribeCursorHeader);
// - when the stream breaks (a notifier restarted, drained or unreachable)
//   it subscribes again from the last position it saw, at the next of its
//   notifier addresses: nothing after that position is missed or repeated;
// - it backs off while its tries fail, so that a notifier that is down, or
//   one that takes streams and ends them at once, is not hammered by every
//   client, and it gives up on one that never keeps a stream.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sopflow/v1/notifier.grpc.pb.h"

namespace sopflow {

// The response header of a Subscribe stream: the cursor it starts after.
inline constexpr char kSubscribeCursorHeader[] = "sopflow-cursor";

// The cursor a Subscribe stream's headers carry, "" without one (a
// notifier older than the header). Call after the headers arrived.
std::string SubscribeCursorOf(const grpc::ClientContext& context);

class NotificationFeed {
 public:
  struct Options {
    std::vector<std::string> addresses;  // notifier replicas; the first is tried first
    std::string ca_file;                 // TLS when set
    std::string token;
    v1::SubscribeRequest request;        // where to start: its cursor, from_start, or now
    // Failed tries in a row before the feed gives up. A try fails unless
    // its stream got its headers and then either brought a notification or
    // stayed open for `healthy_after`; a stream that did resets the count.
    int max_failed_attempts = 20;
    std::chrono::milliseconds healthy_after{10000};
    std::chrono::milliseconds connect_timeout{5000};  // per attempt, then the next address
    // The pause after a failed try: retry_pause after the first, doubling
    // with each further one up to max_retry_pause, each within +-20% so
    // that the clients of a restarted notifier do not come back at once.
    std::chrono::milliseconds retry_pause{100};
    std::chrono::milliseconds max_retry_pause{5000};
    std::chrono::hours stream_deadline{24};           // then it subscribes again
    // Told of each stream that ended or could not start, before the feed
    // tries again (sopctl watch prints it); may be empty.
    std::function<void(const grpc::Status&)> on_retry;
  };
  // Called once per stream that got its headers, with its start cursor.
  using OnLive = std::function<void(const std::string& cursor)>;
  using OnNotification = std::function<void(const v1::Notification&)>;

  explicit NotificationFeed(Options options);

  // Reads until Stop() (then OK) or a failure worth no retry: a refusal
  // (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, OUT_OF_RANGE for
  // a cursor older than the kept log) or max_failed_attempts in a row.
  grpc::Status Run(const OnLive& on_live, const OnNotification& on_notification);
  // From any thread: the current stream is cancelled and Run returns.
  void Stop();

  // The position to resume after: the last notification's, or the start
  // the headers gave.
  std::string cursor() const;

  // The pause after `failed` failed tries in a row (1 or more); `jitter` in
  // [-1, 1] places it within +-20% of the doubled pause.
  static std::chrono::milliseconds PauseAfter(int failed, const Options& options, double jitter);

 private:
  // One stream from subscribing to its end; true if it worked: its headers
  // arrived, and it brought a notification or lasted healthy_after.
  bool RunOnce(size_t channel_index, const OnLive& on_live, const OnNotification& on_notification,
               grpc::Status* status);
  // Waits up to connect_timeout for `channel` to be connected, less if
  // Stop() comes.
  bool Connect(grpc::Channel& channel);
  void Pause(std::chrono::milliseconds pause);
  bool Stopped() const;
  static bool WorthRetrying(const grpc::Status& status);

  Options options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;  // one per address
  mutable std::mutex mu_;
  std::condition_variable stop_signal_;  // Stop() ends a pause
  std::unique_ptr<grpc::ClientContext> context_;  // the current stream's
  std::string cursor_;
  bool stopped_ = false;
};

}  // namespace sopflow

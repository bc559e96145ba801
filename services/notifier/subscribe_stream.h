// One Subscribe stream on gRPC's callback API. It holds no thread: while
// it waits it is only a listener on the log tail, handed the notifications
// it wants as the tail reads them; it writes one notification at a time,
// the next when gRPC says the last is sent. (On the synchronous API each stream held a thread that
// woke twice a second to see whether its subscriber had left: 200 idle
// subscribers cost a fifth of the notifier's throughput.)
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "log_tail.h"
#include "redis.h"
#include "sopflow/v1/notifier.pb.h"

namespace sopflow::notifier {

class SubscribeStream final : public grpc::ServerWriteReactor<v1::Notification> {
 public:
  // Starts sending what follows `cursor` that `wants` accepts (`interest`:
  // where the tail looks it up, LogTail::InterestsOf); entries older than
  // the tail's memory are read from Redis at `redis` first.
  SubscribeStream(LogTail& tail, RedisAddress redis, std::string interest, LogTail::Wants wants, std::string cursor);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // What the tail's wakeup reaches: this stream until it is done, then
  // nothing (a wakeup may still be on its way when the stream ends).
  struct Link {
    std::mutex mu;
    SubscribeStream* stream = nullptr;
  };

  // Starts writing the next wanted notification, or finishes, or returns
  // to wait for the tail's wakeup. Called with link_->mu held; it may
  // release it, and once it has started a write or finished, touches
  // nothing of this stream again (gRPC may end it on another thread at once).
  void Pump(std::unique_lock<std::mutex>& lock);
  // What the tail delivered while this stream is live: queued after what
  // is, skipping what the stream already has (its cursor is not before
  // it). Then Pump.
  void Accept(std::vector<LogEntry> entries, std::unique_lock<std::mutex>& lock);
  // Marks the stream finished, releases `lock`, then finishes it: the last
  // thing Pump does.
  void FinishUnlocked(std::unique_lock<std::mutex>& lock, const grpc::Status& status);
  // The next page from Redis after `cursor`, when it is older than the
  // tail's memory.
  std::vector<LogEntry> ReadRedisAfter(const std::string& cursor) const;

  LogTail& tail_;
  RedisAddress redis_;
  LogTail::Wants wants_;
  std::shared_ptr<Link> link_;
  std::shared_ptr<const LogTail::Listener> listener_;
  // Guarded by link_->mu:
  std::string cursor_;            // the last entry looked at or queued
  std::deque<LogEntry> pending_;  // wanted, not yet written
  bool live_ = false;             // the tail delivers what follows cursor_
  v1::Notification writing_;      // the message gRPC is sending
  // A write or a Redis read is under way: whoever started it carries on,
  // and nothing ends the stream meanwhile.
  bool write_in_flight_ = false;
  bool wrote_ = false;  // a write completed: the initial metadata went out
  bool reading_redis_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
};

}  // namespace sopflow::notifier

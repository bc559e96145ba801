#include "subscribe_stream.h"

#include <hiredis/hiredis.h>

#include <atomic>

#include "grpc_server.h"
#include "metrics.h"
#include "store.h"

namespace sopflow::notifier {

namespace {
constexpr size_t kBatch = 200;
// A live stream whose subscriber reads slower than notifications come
// stops being live past this many queued, and catches up from its cursor
// as a resuming stream does: memory holds no more per stream than this.
constexpr size_t kMaxPending = 2000;

// Open streams in this process, for operators: sopflow_subscribe_streams.
std::atomic<int64_t> open_streams{0};
void CountStream(int delta) {
  Metrics::Global().Set("sopflow_subscribe_streams", "", static_cast<double>(open_streams += delta));
}
}  // namespace

SubscribeStream::SubscribeStream(LogTail& tail, RedisAddress redis, std::string interest, LogTail::Wants wants,
                                 std::string cursor)
    : tail_(tail),
      redis_(std::move(redis)),
      wants_(std::move(wants)),
      link_(std::make_shared<Link>()),
      cursor_(std::move(cursor)) {
  CountStream(+1);
  // The headers (with the start cursor) now, not with the first write:
  // they tell the subscriber it is subscribed.
  StartSendInitialMetadata();
  link_->stream = this;
  listener_ = tail_.Listen(std::move(interest), wants_, [link = link_](std::vector<LogEntry> entries) {
    std::unique_lock lock(link->mu);
    if (link->stream) link->stream->Accept(std::move(entries), lock);
  });
  std::unique_lock lock(link_->mu);
  Pump(lock);
}

void SubscribeStream::Accept(std::vector<LogEntry> entries, std::unique_lock<std::mutex>& lock) {
  // Empty: the tail stopped; Pump finds it so.
  if (live_ && !entries.empty()) {
    StreamId after = ParseStreamId(cursor_);
    for (auto& e : entries) {
      if (!(after < e.order)) continue;  // in the batch that went live too
      cursor_ = e.id;
      after = e.order;
      pending_.push_back(std::move(e));
    }
    if (pending_.size() > kMaxPending) {
      // Nothing is lost: the tail stops delivering before its next entry,
      // and Next goes on from cursor_, the last one queued.
      tail_.Pause(listener_);
      live_ = false;
      Metrics::Global().Count("sopflow_subscribe_streams_behind_total", "");
    }
  }
  Pump(lock);
}

void SubscribeStream::Pump(std::unique_lock<std::mutex>& lock) {
  // Bounded: each pass writes, finishes, waits, or moves the cursor on.
  while (!write_in_flight_ && !reading_redis_ && !finished_) {
    if (cancelled_) return FinishUnlocked(lock, grpc::Status::CANCELLED);
    // Draining: the subscriber resumes elsewhere from its cursor.
    if (!tail_.running()) return FinishUnlocked(lock, grpc::Status::OK);
    if (!pending_.empty()) {
      writing_ = *pending_.front().notification;
      writing_.set_cursor(pending_.front().id);
      pending_.pop_front();
      write_in_flight_ = true;
      grpc::WriteOptions options = QueuedWriteOptions(!pending_.empty(), wrote_);
      lock.unlock();  // gRPC may run OnWriteDone inline, on this thread
      return StartWrite(&writing_, options);
    }
    if (live_) return;  // the tail delivers what comes
    if (auto batch = tail_.Next(cursor_, kBatch, wants_, listener_)) {
      cursor_ = batch->cursor;
      live_ = batch->live;
      for (auto& e : batch->wanted) pending_.push_back(std::move(e));
      continue;
    }
    // Resuming from before what the tail holds: catch up from Redis a page
    // at a time, outside the lock (the tail's wakeups must not wait on it).
    reading_redis_ = true;
    std::string from = cursor_;
    lock.unlock();
    std::vector<LogEntry> page;
    grpc::Status read = GuardedCall([&] { page = ReadRedisAfter(from); });
    lock.lock();
    reading_redis_ = false;
    if (!read.ok()) return FinishUnlocked(lock, read);
    if (page.empty()) {
      cursor_ = tail_.floor();  // nothing in between: the tail takes over
      continue;
    }
    cursor_ = page.back().id;
    for (auto& e : page)
      if (Wanted(e, wants_)) pending_.push_back(std::move(e));
  }
}

void SubscribeStream::FinishUnlocked(std::unique_lock<std::mutex>& lock, const grpc::Status& status) {
  finished_ = true;
  lock.unlock();  // gRPC may end the stream at once, on another thread
  Finish(status);
}

std::vector<LogEntry> SubscribeStream::ReadRedisAfter(const std::string& cursor) const {
  RedisConnection redis(redis_, 5000);  // held only while catching up: an idle stream holds none
  Reply r = redis.Command({"XREAD", "COUNT", std::to_string(kBatch), "STREAMS", keys::kLog, cursor});
  if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0) return ParseLogEntries(r->element[0]->element[1]);
  return {};
}

void SubscribeStream::OnWriteDone(bool ok) {
  std::unique_lock lock(link_->mu);
  write_in_flight_ = false;
  wrote_ = true;
  if (!ok) cancelled_ = true;  // the subscriber left
  Pump(lock);
}

void SubscribeStream::OnCancel() {
  std::unique_lock lock(link_->mu);
  cancelled_ = true;
  Pump(lock);
}

void SubscribeStream::OnDone() {
  tail_.Unlisten(listener_);
  {
    std::lock_guard lock(link_->mu);
    link_->stream = nullptr;  // a wakeup already on its way finds nothing
  }
  CountStream(-1);
  delete this;
}

}  // namespace sopflow::notifier

// The outbox relay: gets the events that transitions queued in a Redis
// stream (RedisBatch::Emit) to JetStream, then deletes them from it.
//
// The committer publishes: right after its commit, the thread that
// committed hands the events to Publish, which sends them without waiting
// (no Redis read, no other thread woken on the way to NATS); the stream's
// acks arrive on a nats.c thread, and an entry whose events were all
// stored is deleted by the relay's own thread with others, at the latest
// at its next sweep. What a committer could not get stored (its process
// died, NATS refused or timed out) stays in the outbox: the relay of every
// replica sweeps it up once it is `orphan_after_ms` old, by Redis's clock,
// and publishes it again. A re-published event carries the same
// Nats-Msg-Id and is dropped by the stream, so "at least once" here
// becomes "once" there.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "metrics_http.h"
#include "nats.h"
#include "redis.h"
#include "redis_batch.h"

typedef struct __jsCtx jsCtx;
typedef struct __natsMsg natsMsg;
struct jsPubAck;
struct jsPubAckErr;

namespace sopflow {

class OutboxRelay {
 public:
  struct Options {
    std::string stream = "sf:outbox";  // the outbox this relay drains
    int batch = 256;                // entries one sweep reads at most
    // An entry still in the outbox this long after it was queued is taken
    // for left behind and published by a sweep.
    int orphan_after_ms = 5000;
    int sweep_interval_ms = 1000;
    // While sweeps keep meeting events the stream refuses (larger than its
    // max_payload, say), the pause between sweeps doubles up to this.
    int sweep_pause_max_ms = 30000;
    // Stored entries are deleted when this many wait, or at the next sweep
    // (the sweep skips them meanwhile): one XDEL for many hand-offs, and
    // no wake-up of the relay's thread per hand-off at light load.
    int delete_batch = 256;
    // How long an ack may take before the event counts as not stored.
    int ack_wait_ms = 5000;
    // Up to this many events at once go out on a send-asap sibling
    // connection, each message written at once: no wait for nats.c's
    // flusher thread (about 1 ms per hop at light load). More use the
    // buffered connection given, where they leave in few writes (send-asap
    // there would cost nats-server a read per message).
    int prompt_batch_max = 8;
  };
  // `nats` is buffered (not send-asap); the relay opens its prompt sibling.
  OutboxRelay(RedisAddress redis, NatsClient* nats, Options options);
  ~OutboxRelay();

  void Start();
  // Stops the relay's thread after deleting what is stored.
  void Stop();
  // Stop(), after waiting (up to ack_wait_ms) for the acks of what was
  // published: what the last calls committed is stored and deleted, or
  // left for another replica's sweep.
  void Drain();

  // Publishes the events of committed batches (`entries[i]` the outbox
  // entry CommitAll gave batches[i]; "" for none) without waiting for the
  // stream's acks. Thread-safe; called by the committing thread.
  void Publish(const std::vector<const RedisBatch*>& batches, const std::vector<std::string>& entries);

  // One pass of the relay's thread: delete the stored entries; when a
  // sweep is due, publish entries left behind. Returns the events the
  // sweep published.
  size_t RunOnce();
  // Entries in the outbox not yet published and deleted, by any replica
  // (XLEN, on a connection of its own: safe beside the relay's thread).
  int64_t Backlog();

 private:
  struct Entry {
    std::string id;
    std::vector<RedisBatch::EmittedEvent> events;
  };
  // An entry whose acks are awaited.
  struct InFlight {
    int unacked = 0;
    bool failed = false;
    int64_t sent_ms = 0;
  };
  void PublishEntries(const std::vector<Entry>& entries);
  // Sends again, once NATS is back, what a lost server never acked.
  void ResendAfterReconnect();
  // A message js_PublishMsgAsync did not take counts as refused.
  void NotSent(natsMsg* msg, int status);
  static void OnAck(jsCtx* js, natsMsg* msg, ::jsPubAck* ack, ::jsPubAckErr* err, void* closure);
  void Acked(natsMsg* msg, const ::jsPubAckErr* err);
  size_t Sweep();
  // Entries whose acks are overdue are left to the sweep.
  void ForgetOverdue();
  void DeleteStored();
  void AwaitAcks(int timeout_ms);
  void Loop();

  RedisConnection redis_;
  std::mutex backlog_mu_;
  RedisConnection backlog_redis_;  // for Backlog(): connects at the first scrape
  std::unique_ptr<NatsClient> prompt_;  // send-asap sibling of the connection given, for few events
  // A JetStream context reporting every ack to OnAck, and whether anything
  // was sent on it: nats.c 3.4 makes a context's map of awaited messages
  // at its first publish, and js_PublishAsyncGetPendingList crashes on a
  // context without one.
  struct AckingContext {
    jsCtx* js = nullptr;
    std::atomic<bool> sent{false};
  };
  AckingContext buffered_js_;
  AckingContext prompt_js_;
  Options options_;
  // This relay's listeners on the connections' reconnects.
  std::vector<std::pair<NatsClient*, int>> reconnect_listeners_;

  std::mutex mu_;  // guards what follows, shared with the ack threads
  std::condition_variable wake_;
  bool running_ = false;
  bool delete_due_ = false;  // delete_batch stored entries wait
  bool resend_due_ = false;  // a connection came back: send again what is awaited
  std::unordered_map<std::string, InFlight> in_flight_;  // by entry id
  std::unordered_map<natsMsg*, std::string> entry_of_;   // published message -> entry id
  std::vector<std::string> stored_;  // entries all of whose events were stored, to delete
  int64_t refused_ = 0;              // events not stored so far
  std::string first_refusal_;        // the first since the last sweep, for its warning

  std::thread thread_;
  int64_t next_sweep_ms_ = 0;
  int64_t sweep_pause_ms_ = 0;
  int64_t refused_at_last_sweep_ = 0;
  std::string sweep_from_ = "-";  // where the next sweep reads from: past a full batch, on
};

// sopflow_outbox_backlog: the relay's Backlog().
ScrapedGauge OutboxBacklogGauge(OutboxRelay* relay);

// Commits batches (CommitAll) and hands the events of those applied to
// `relay` at once (none if relay is null: a sweep publishes them later).
std::vector<int> CommitAndPublish(RedisPool& pool, const std::vector<const RedisBatch*>& batches,
                                  OutboxRelay* relay);

// What the CloudEvents headers of a published event carry besides its id
// and type, read from a serialized sopflow.v1.Event without parsing its
// payload (a completed task with its output): the relay forwards the bytes
// as they are and needs only these. False (attributes empty) if the bytes
// are not a well-formed message.
struct CloudEventAttributes {
  std::string source;
  std::string subject;
  int64_t time_ms = 0;
};
bool ReadCloudEventAttributes(std::string_view event, CloudEventAttributes* out);

}  // namespace sopflow

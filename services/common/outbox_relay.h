// The outbox relay: publishes the events that transitions queued in a
// Redis stream (RedisBatch::Emit) to JetStream, then deletes them. Entries are read
// through a consumer group, so replicas share the work; an entry read by a
// replica that died before publishing is claimed by another after
// `reclaim_idle_ms`. A re-published event carries the same Nats-Msg-Id and
// is dropped by the stream, so "at least once" here becomes "once" there.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "metrics_http.h"
#include "nats.h"
#include "redis.h"

namespace sopflow {

class OutboxRelay {
 public:
  struct Options {
    std::string stream = "sf:outbox";  // the outbox this relay drains
    std::string consumer_name;      // unique per replica
    int batch = 256;
    int block_ms = 200;             // how long one read waits for new entries
    int reclaim_idle_ms = 5000;     // entries pending this long are taken over
    // Batches up to this size go out on a send-asap sibling connection,
    // each message written at once: no wait for nats.c's flusher thread
    // (about 1 ms per hop at light load), and no flusher or flush round
    // trip waking threads for one or two events. Larger batches use the
    // buffered connection given, where they leave in few writes (send-asap
    // there would cost nats-server a read per message).
    int prompt_batch_max = 8;
  };
  // `nats` is buffered (not send-asap); the relay opens its prompt sibling.
  OutboxRelay(RedisAddress redis, NatsClient* nats, Options options);
  ~OutboxRelay();

  void Start();
  // Finishes the batch in hand, then returns.
  void Stop();
  // Stop(), then one last pass for what the final calls queued. If that
  // fails (Redis or NATS already gone) it is logged: the entries stay in the
  // outbox and another replica relays them.
  void Drain();
  // One pass: delete what the last pass published, reclaim, read, publish.
  // Returns events published. The deletion rides in the same round trip as
  // the next read (one Redis round trip per batch, not two); Stop sends it.
  size_t RunOnce();
  // Entries in the outbox not yet published and deleted, by any replica
  // (XLEN, on a connection of its own: safe beside the relay's thread).
  int64_t Backlog();

 private:
  void Loop();
  // XACK and XDEL of the entries published and not yet deleted (none: empty).
  std::vector<std::vector<std::string>> DoneCommands() const;
  // Sends those, then `command`, in one round trip; `command`'s reply.
  Reply CommandAfterDone(const std::vector<std::string>& command);
  void FlushDone();
  RedisConnection redis_;
  std::mutex backlog_mu_;
  RedisConnection backlog_redis_;  // for Backlog(): connects at the first scrape
  NatsClient* nats_;
  std::unique_ptr<NatsClient> prompt_;  // send-asap sibling of nats_, for small batches
  Options options_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  // When to read this relay's own pending entries again (read before, not
  // yet stored by JetStream): at start (0), after a failed publish once its
  // pause is over; -1: none to read. New entries are read meanwhile, so an
  // event the stream keeps refusing does not hold up the others.
  int64_t own_pending_at_ms_ = 0;
  int64_t own_pending_pause_ms_ = kOwnPendingPauseMinMs;
  static constexpr int64_t kOwnPendingPauseMinMs = 200;
  static constexpr int64_t kOwnPendingPauseMaxMs = 30000;
  std::vector<std::string> done_;    // stream ids published, to XACK and XDEL
  int64_t last_reclaim_ms_ = 0;
};

// sopflow_outbox_backlog: the relay's Backlog().
ScrapedGauge OutboxBacklogGauge(OutboxRelay* relay);

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
bool ReadCloudEventAttributes(const std::string& event, CloudEventAttributes* out);

}  // namespace sopflow

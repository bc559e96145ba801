// Feeds events from a durable JetStream pull consumer to a handler. The
// consumer is shared by all replicas of a service, so each event goes to one
// of them; an event redelivered (a replica died before acking) must be
// harmless to the handler, which is why every handler applies events
// idempotently. A handler that throws DomainError(kUnavailable) gets the
// event again shortly; other exceptions end it (logged, terminated).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "metrics_http.h"
#include "nats.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow {

class EventConsumer {
 public:
  struct Options {
    std::string durable;          // e.g. "router", "notifier"
    std::string filter_subject;   // e.g. "sopflow.v1.run.>"
    int batch = 64;
    int fetch_timeout_ms = 250;
    // An event a dead replica held comes back after this. Handlers are
    // idempotent, so a shorter wait only costs a harmless re-run.
    int64_t ack_wait_ms = 10000;
    // Subjects the filter lets through but the handler has no use for: acked
    // unread. nats-server 2.9 takes one filter per consumer, so the notifier
    // is sent every event and leaves the router's step completions (one per
    // hand-off) unparsed.
    std::vector<std::string> ignored_subjects;
  };
  using Handler = std::function<void(const v1::Event&)>;
  // Applies the events of one fetch together (e.g. one pipelined Redis round
  // trip for all of them). It must give the same result as applying them
  // one by one in order. If it throws, the consumer applies the events one
  // at a time through it, so one bad event costs only itself.
  using BatchHandler = std::function<void(const std::vector<v1::Event>&)>;
  EventConsumer(NatsClient* nats, Options options, Handler handler);
  EventConsumer(NatsClient* nats, Options options, BatchHandler handler);
  ~EventConsumer();

  void Start();
  void Stop();  // finishes and acks what it holds, then returns
  // One fetch and its processing; returns messages handled.
  size_t RunOnce();
  // Messages not yet delivered or not yet acknowledged (all replicas).
  int64_t Backlog();
  const std::string& durable() const { return options_.durable; }

 private:
  void Loop();
  // Applies one event, then acks, naks or terminates its message by how
  // that ended.
  void ApplyAlone(IncomingMessage& msg, const v1::Event& event);
  NatsClient* nats_;
  Options options_;
  BatchHandler handler_;
  PullConsumer consumer_;
  std::unique_ptr<NatsClient> acks_;  // buffered: a batch's acks in one write
  std::atomic<bool> running_{false};
  std::thread thread_;
};

// Messages of a durable consumer of the event stream not yet delivered or
// not yet acknowledged (all replicas); -1 if NATS does not answer.
int64_t ConsumerBacklog(NatsClient& nats, const std::string& durable);

// sopflow_consumer_backlog{consumer="<durable>"}: events not yet handled.
ScrapedGauge ConsumerBacklogGauge(EventConsumer* consumer);
// Serves /metrics on `listen` (nothing when empty), with that gauge.
std::unique_ptr<MetricsEndpoint> ServeMetrics(const std::string& listen, EventConsumer* consumer);

}  // namespace sopflow

// Feeds run events from JetStream into the engine. The durable consumer is
// shared by all router replicas, so each event goes to one of them; one
// that is redelivered (a replica died before acking) is applied once
// because the engine records applied event ids atomically with the change.
#pragma once

#include <atomic>
#include <thread>

#include "engine.h"
#include "nats.h"

namespace sopflow {

class EventConsumer {
 public:
  struct Options {
    std::string durable = "router";
    int batch = 64;
    int fetch_timeout_ms = 250;
    int64_t ack_wait_ms = 30000;
  };
  EventConsumer(NatsClient* nats, Engine* engine, Options options);
  ~EventConsumer();

  void Start();
  void Stop();  // acks what it holds, then returns
  // One fetch and its processing; returns messages handled.
  size_t RunOnce();

 private:
  void Loop();
  Engine* engine_;
  Options options_;
  PullConsumer consumer_;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace sopflow

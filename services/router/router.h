// A router replica: gRPC server, engine, outbox relay and event consumer,
// wired from one config. Tests run replicas in-process through this class;
// main.cc runs one per process.
#pragma once

#include <memory>
#include <string>

#include "clock.h"

namespace sopflow {

struct RouterConfig {
  std::string listen = "127.0.0.1:7301";
  std::string redis = "127.0.0.1:6379";
  std::string nats = "nats://127.0.0.1:4222";
  std::string tokens_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string definitions_dir;  // *.yaml deployed at start (e.g. a ConfigMap)
  std::string calendar_file;    // work calendar; empty: Mon-Fri, no holidays
  std::string replica_id;       // default: host-pid-random
  int redis_pool = 16;
  int relay_reclaim_idle_ms = 5000;
  int drain_ms = 10000;
  int64_t ack_wait_ms = 10000;  // events a dead replica held return after this
};

class RouterProcess {
 public:
  RouterProcess(RouterConfig config, const Clock* clock);
  ~RouterProcess();
  void Start();
  int port() const;
  // Graceful drain: NOT_SERVING, stop taking calls, finish the consumer's
  // and relay's batches, then stop.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sopflow

// An aggregator replica: gRPC server, the event consumer (durable
// "aggregator"), the deadline loop, and the relay of its outbox.
#pragma once

#include <memory>
#include <string>

#include "clock.h"

namespace sopflow::aggregator {

struct Config {
  std::string listen = "127.0.0.1:7303";
  std::string redis = "127.0.0.1:6379";
  std::string nats = "nats://127.0.0.1:4222";
  std::string tokens_file;
  std::string catalogues_dir;     // *.yaml loaded at start (e.g. a ConfigMap)
  std::string router;             // where reports are attached to the next task
  std::string router_token;       // a user with the attach_documents permission
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string replica_id;
  int redis_pool = 8;
  int loop_interval_ms = 50;
  int drain_ms = 10000;
  int64_t ack_wait_ms = 10000;
};

class AggregatorProcess {
 public:
  AggregatorProcess(Config config, const Clock* clock);
  ~AggregatorProcess();
  void Start();
  int port() const;
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sopflow::aggregator

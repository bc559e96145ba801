// A notifier replica: gRPC server, the event consumer (durable "notifier",
// shared by replicas), the timer loop and the delivery workers.
#pragma once

#include <memory>
#include <string>

#include "clock.h"
#include "engine.h"

namespace sopflow::notifier {

struct Config {
  std::string listen = "127.0.0.1:7302";
  std::string redis = "127.0.0.1:6379";
  std::string nats = "nats://127.0.0.1:4222";
  std::string tokens_file;
  std::string calendar_file;
  std::string templates_dir = "deploy/notifier/templates";
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string replica_id;
  Options options;
  size_t log_max_len = 1000000;   // notifications kept for Subscribe resumes
  int delivery_workers = 2;
  int loop_interval_ms = 20;      // timer and delivery polling when idle
  int redis_pool = 8;
  int drain_ms = 10000;
  int64_t ack_wait_ms = 10000;    // events a dead replica held return after this
};

class NotifierProcess {
 public:
  NotifierProcess(Config config, const Clock* clock);
  ~NotifierProcess();
  void Start();
  int port() const;
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sopflow::notifier

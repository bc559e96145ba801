// An aggregator replica: gRPC server, the event consumer (durable
// "aggregator"), the deadline loop, and the relay of its outbox.
#pragma once

#include <memory>
#include <string>

#include "clock.h"
#include "service_config.h"

namespace sopflow::aggregator {

struct Config : ServiceConfig {
  Config() { listen = "127.0.0.1:7303"; }
  std::string catalogues_dir;     // *.yaml loaded at start (e.g. a ConfigMap)
  std::string router;             // where reports are attached to the next task
  std::string router_token;       // a user with the attach_documents permission
  // How often deadlines (late units) are looked for; each look asks
  // JetStream for the consumer's backlog first. Deadlines are days apart.
  int deadline_interval_ms = 1000;
};

class AggregatorProcess {
 public:
  AggregatorProcess(Config config, const Clock* clock);
  ~AggregatorProcess();
  void Start();
  int port() const;
  int health_port() const;  // 0 without --health-listen
  int metrics_port() const;  // 0 when metrics are off
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sopflow::aggregator

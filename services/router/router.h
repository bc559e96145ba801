// A router replica: gRPC server, engine and outbox relay (it consumes no
// events: it routes in the transaction that ends a step),
// wired from one config. Tests run replicas in-process through this class;
// main.cc runs one per process.
#pragma once

#include <memory>
#include <string>

#include "clock.h"
#include "service_config.h"

namespace sopflow {

struct RouterConfig : ServiceConfig {
  RouterConfig() {
    listen = "127.0.0.1:7301";
    redis_pool = 16;
  }
  std::string definitions_dir;  // *.yaml deployed at start (e.g. a ConfigMap)
  std::string calendar_file;    // work calendar; empty: Mon-Fri, no holidays
  int relay_reclaim_idle_ms = 5000;
  // Open tasks (and their runs) this replica keeps as it last wrote them,
  // so that completing them needs no read (Engine's RecentRecords); 0: none.
  int recent_tasks = 16384;
};

class RouterProcess {
 public:
  RouterProcess(RouterConfig config, const Clock* clock);
  ~RouterProcess();
  void Start();
  int port() const;
  int health_port() const;  // 0 without --health-listen
  int metrics_port() const;  // 0 when metrics are off
  // Graceful drain: NOT_SERVING, stop taking calls, finish the consumer's
  // and relay's batches, then stop.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sopflow

// sopflow-router: one router replica. Configuration from flags or the
// environment (SOPFLOW_*), 12-factor style.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <thread>

#include "router.h"

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void OnSignal(int) { stop_requested = 1; }
}  // namespace

int main(int argc, char** argv) {
  sopflow::RouterConfig config;
  CLI::App app{"sopflow router: routes each SOP step's task to its pelaksana"};
  app.add_option("--listen", config.listen, "gRPC address")->envname("SOPFLOW_LISTEN")->capture_default_str();
  app.add_option("--redis", config.redis, "Redis host:port")->envname("SOPFLOW_REDIS")->capture_default_str();
  app.add_option("--nats", config.nats, "NATS URL")->envname("SOPFLOW_NATS")->capture_default_str();
  app.add_option("--tokens", config.tokens_file, "token file (users, roles)")->envname("SOPFLOW_TOKENS")->required();
  app.add_option("--tls-cert", config.tls_cert_file, "TLS certificate (PEM)")->envname("SOPFLOW_TLS_CERT");
  app.add_option("--tls-key", config.tls_key_file, "TLS key (PEM)")->envname("SOPFLOW_TLS_KEY");
  app.add_option("--definitions", config.definitions_dir, "deploy *.yaml from this folder at start")
      ->envname("SOPFLOW_DEFINITIONS");
  app.add_option("--calendar", config.calendar_file, "work calendar (deploy/calendar/calendar.yaml)")
      ->envname("SOPFLOW_CALENDAR");
  app.add_option("--replica-id", config.replica_id, "unique replica name")->envname("SOPFLOW_REPLICA_ID");
  app.add_option("--redis-pool", config.redis_pool, "Redis connections")->envname("SOPFLOW_REDIS_POOL")->capture_default_str();
  app.add_option("--drain-ms", config.drain_ms, "grace for running calls on SIGTERM")->envname("SOPFLOW_DRAIN_MS")->capture_default_str();
  app.add_option("--relay-reclaim-idle-ms", config.relay_reclaim_idle_ms,
                 "take over outbox entries a dead replica left this long")
      ->envname("SOPFLOW_RELAY_RECLAIM_IDLE_MS")->capture_default_str();
  app.add_option("--ack-wait-ms", config.ack_wait_ms, "events a dead replica held return after this")
      ->envname("SOPFLOW_ACK_WAIT_MS")->capture_default_str();
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->envname("SOPFLOW_LOG_LEVEL");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  sopflow::SystemClock clock;
  try {
    sopflow::RouterProcess router(config, &clock);
    router.Start();
    while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spdlog::info("draining");
    router.Shutdown();
  } catch (const std::exception& e) {
    spdlog::critical("router: {}", e.what());
    return 1;
  }
  return 0;
}

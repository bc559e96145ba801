// What every service's main.cc shares: the flags each one has (with their
// SOPFLOW_* environment twins) and running until SIGTERM, then draining.
#pragma once

#include <CLI/CLI.hpp>
#include <absl/synchronization/mutex.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "clock.h"

namespace sopflow {

inline volatile std::sig_atomic_t stop_requested = 0;

// For any service Config with the common members.
template <class Config>
void AddCommonOptions(CLI::App& app, Config& c, std::string& log_level) {
  app.add_option("--listen", c.listen, "gRPC address")->envname("SOPFLOW_LISTEN")->capture_default_str();
  app.add_option("--redis", c.redis, "Redis host:port")->envname("SOPFLOW_REDIS")->capture_default_str();
  app.add_option("--nats", c.nats, "NATS URL")->envname("SOPFLOW_NATS")->capture_default_str();
  app.add_option("--stream-replicas", c.stream_replicas, "copies of the event stream (JetStream cluster: 3)")
      ->envname("SOPFLOW_STREAM_REPLICAS")->capture_default_str();
  app.add_option("--tokens", c.tokens_file, "token file (users, roles)")->envname("SOPFLOW_TOKENS")->required();
  app.add_option("--tls-cert", c.tls_cert_file, "TLS certificate (PEM)")->envname("SOPFLOW_TLS_CERT");
  app.add_option("--tls-key", c.tls_key_file, "TLS key (PEM)")->envname("SOPFLOW_TLS_KEY");
  app.add_option("--tls-reload-s", c.tls_reload_s,
                 "check the certificate and key files for a renewal this often (seconds); served without a restart")
      ->envname("SOPFLOW_TLS_RELOAD_S")->capture_default_str()->check(CLI::Range(1, 86400));
  app.add_option("--tls-ca", c.tls_ca_file, "CA (PEM) for calls to other sopflow services")->envname("SOPFLOW_TLS_CA");
  app.add_option("--health-listen", c.health_listen, "plaintext grpc.health.v1 only, for kubelet probes")
      ->envname("SOPFLOW_HEALTH_LISTEN");
  app.add_option("--not-serving-delay-ms", c.not_serving_delay_ms,
                 "on SIGTERM, report NOT_SERVING and keep serving this long so load balancers let go first")
      ->envname("SOPFLOW_NOT_SERVING_DELAY_MS")->capture_default_str();
  app.add_option("--replica-id", c.replica_id, "unique replica name")->envname("SOPFLOW_REPLICA_ID");
  app.add_option("--drain-ms", c.drain_ms, "grace for running calls on SIGTERM")
      ->envname("SOPFLOW_DRAIN_MS")->capture_default_str();
  app.add_option("--metrics-listen", c.metrics_listen, "serve Prometheus metrics at http://<this>/metrics")
      ->envname("SOPFLOW_METRICS_LISTEN");
  app.add_option("--port-file", c.port_file,
                 "once listening, write the gRPC port here (with --listen host:0: the port the system chose), "
                 "and 'health <port>' on a second line with --health-listen");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->envname("SOPFLOW_LOG_LEVEL");
}

// Writes `port` to `path` whole or not at all (a reader polling for the
// file never sees it half written), and on a second line "health <port>"
// when the service has a health port (--health-listen, port 0 too).
inline void WritePortFile(const std::string& path, int port, int health_port) {
  const std::string partial = path + ".partial";
  {
    std::ofstream out(partial);
    out << port << "\n";
    if (health_port > 0) out << "health " << health_port << "\n";
    if (!out) throw std::runtime_error("cannot write " + partial);
  }
  if (std::rename(partial.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
}

// For the services that consume events (notifier, aggregator, archiver);
// the router consumes none since it routes in the completing transaction,
// so it has no such option (the shared ConfigMap's variable is ignored there).
template <class Config>
void AddConsumerOptions(CLI::App& app, Config& c) {
  app.add_option("--ack-wait-ms", c.ack_wait_ms, "events a dead replica held return after this")
      ->envname("SOPFLOW_ACK_WAIT_MS")->capture_default_str();
}

// Runs a service process until SIGTERM or SIGINT, then drains it.
template <class Process, class Config>
int ServeUntilSignal(const char* name, const Config& config, const std::string& log_level) {
  spdlog::set_level(spdlog::level::from_str(log_level));
  // Debian builds Abseil without NDEBUG, so every absl::Mutex (all of
  // gRPC's locks) keeps a lock-order graph for deadlock detection: ~1.6%
  // of the router's samples under load, for a check meant for tests.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  SystemClock clock;
  try {
    Process process(config, &clock);
    process.Start();
    if (!config.port_file.empty()) WritePortFile(config.port_file, process.port(), process.health_port());
    while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spdlog::info("{}: draining", name);
    process.Shutdown();
  } catch (const std::exception& e) {
    spdlog::critical("{}: {}", name, e.what());
    return 1;
  }
  return 0;
}

}  // namespace sopflow

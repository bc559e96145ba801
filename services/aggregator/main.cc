// sopflow-aggregator: one aggregator replica. Flags or SOPFLOW_* environment.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <thread>

#include "aggregator.h"

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void OnSignal(int) { stop_requested = 1; }
}  // namespace

int main(int argc, char** argv) {
  sopflow::aggregator::Config c;
  CLI::App app{"sopflow aggregator: data kinerja, capaian, reports and process metrics"};
  app.add_option("--listen", c.listen, "gRPC address")->envname("SOPFLOW_LISTEN")->capture_default_str();
  app.add_option("--redis", c.redis)->envname("SOPFLOW_REDIS")->capture_default_str();
  app.add_option("--nats", c.nats)->envname("SOPFLOW_NATS")->capture_default_str();
  app.add_option("--tokens", c.tokens_file, "token file")->envname("SOPFLOW_TOKENS")->required();
  app.add_option("--catalogues", c.catalogues_dir, "load indicator catalogues (*.yaml) from here")
      ->envname("SOPFLOW_CATALOGUES");
  app.add_option("--router", c.router, "router address, for attaching reports")->envname("SOPFLOW_ROUTER")->required();
  app.add_option("--router-token", c.router_token, "token with attach_documents")
      ->envname("SOPFLOW_ROUTER_TOKEN")->required();
  app.add_option("--tls-cert", c.tls_cert_file)->envname("SOPFLOW_TLS_CERT");
  app.add_option("--tls-key", c.tls_key_file)->envname("SOPFLOW_TLS_KEY");
  app.add_option("--replica-id", c.replica_id)->envname("SOPFLOW_REPLICA_ID");
  app.add_option("--ack-wait-ms", c.ack_wait_ms)->envname("SOPFLOW_ACK_WAIT_MS")->capture_default_str();
  app.add_option("--drain-ms", c.drain_ms)->envname("SOPFLOW_DRAIN_MS")->capture_default_str();
  std::string log_level = "info";
  app.add_option("--log-level", log_level)->envname("SOPFLOW_LOG_LEVEL");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  sopflow::SystemClock clock;
  try {
    sopflow::aggregator::AggregatorProcess aggregator(c, &clock);
    aggregator.Start();
    while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spdlog::info("draining");
    aggregator.Shutdown();
  } catch (const std::exception& e) {
    spdlog::critical("aggregator: {}", e.what());
    return 1;
  }
  return 0;
}

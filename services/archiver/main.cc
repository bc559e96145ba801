// sopflow-archiver: one archiver replica. Flags or SOPFLOW_* environment.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <thread>

#include "archiver.h"

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void OnSignal(int) { stop_requested = 1; }
}  // namespace

int main(int argc, char** argv) {
  sopflow::archiver::Config c;
  CLI::App app{"sopflow archiver: tamper-evident records with classification and retention"};
  app.add_option("--listen", c.listen)->envname("SOPFLOW_LISTEN")->capture_default_str();
  app.add_option("--redis", c.redis)->envname("SOPFLOW_REDIS")->capture_default_str();
  app.add_option("--nats", c.nats)->envname("SOPFLOW_NATS")->capture_default_str();
  app.add_option("--tokens", c.tokens_file)->envname("SOPFLOW_TOKENS")->required();
  app.add_option("--blobs", c.blob_dir, "blob store folder")->envname("SOPFLOW_BLOBS")->capture_default_str();
  app.add_option("--rules", c.rules_dir, "klasifikasi.yaml, jra.yaml, berkas.yaml")->envname("SOPFLOW_ARCHIVE_RULES")->capture_default_str();
  app.add_option("--router", c.router)->envname("SOPFLOW_ROUTER")->required();
  app.add_option("--aggregator", c.aggregator)->envname("SOPFLOW_AGGREGATOR");
  app.add_option("--service-token", c.service_token, "token with read_runs")->envname("SOPFLOW_SERVICE_TOKEN")->required();
  app.add_option("--tls-cert", c.tls_cert_file)->envname("SOPFLOW_TLS_CERT");
  app.add_option("--tls-key", c.tls_key_file)->envname("SOPFLOW_TLS_KEY");
  app.add_option("--replica-id", c.replica_id)->envname("SOPFLOW_REPLICA_ID");
  app.add_option("--ack-wait-ms", c.ack_wait_ms)->envname("SOPFLOW_ACK_WAIT_MS")->capture_default_str();
  std::string log_level = "info";
  app.add_option("--log-level", log_level)->envname("SOPFLOW_LOG_LEVEL");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  sopflow::SystemClock clock;
  try {
    sopflow::archiver::ArchiverProcess archiver(c, &clock);
    archiver.Start();
    while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spdlog::info("draining");
    archiver.Shutdown();
  } catch (const std::exception& e) {
    spdlog::critical("archiver: {}", e.what());
    return 1;
  }
  return 0;
}

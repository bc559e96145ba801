// sopflow-notifier: one notifier replica. Flags or SOPFLOW_* environment.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <thread>

#include "notifier.h"

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void OnSignal(int) { stop_requested = 1; }
}  // namespace

int main(int argc, char** argv) {
  sopflow::notifier::Config c;
  auto& o = c.options;
  CLI::App app{"sopflow notifier: tells actors of their tasks, reminds them, escalates overdue work"};
  app.add_option("--listen", c.listen, "gRPC address")->envname("SOPFLOW_LISTEN")->capture_default_str();
  app.add_option("--redis", c.redis, "Redis host:port")->envname("SOPFLOW_REDIS")->capture_default_str();
  app.add_option("--nats", c.nats, "NATS URL")->envname("SOPFLOW_NATS")->capture_default_str();
  app.add_option("--tokens", c.tokens_file, "token file (users, roles, e-mail)")->envname("SOPFLOW_TOKENS")->required();
  app.add_option("--calendar", c.calendar_file, "work calendar")->envname("SOPFLOW_CALENDAR");
  app.add_option("--templates", c.templates_dir, "message templates")->envname("SOPFLOW_TEMPLATES")->capture_default_str();
  app.add_option("--tls-cert", c.tls_cert_file)->envname("SOPFLOW_TLS_CERT");
  app.add_option("--tls-key", c.tls_key_file)->envname("SOPFLOW_TLS_KEY");
  app.add_option("--smtp-url", o.smtp.url, "smtp://host:port; empty: no e-mail")->envname("SOPFLOW_SMTP_URL");
  app.add_option("--smtp-from", o.smtp.from)->envname("SOPFLOW_SMTP_FROM")->capture_default_str();
  app.add_option("--reminder-share", o.reminder_share, "remind at this share of the time")
      ->envname("SOPFLOW_REMINDER_SHARE")->capture_default_str()->check(CLI::Range(0.05, 0.99));
  app.add_option("--time-factor", o.time_factor, "run SOP time this much faster (demos)")
      ->envname("SOPFLOW_TIME_FACTOR")->capture_default_str()->check(CLI::Range(1.0, 1e7));
  app.add_option("--max-attempts", o.max_attempts, "deliveries before dead-lettering")
      ->envname("SOPFLOW_MAX_ATTEMPTS")->capture_default_str()->check(CLI::Range(1, 100));
  app.add_option("--backoff-base-ms", o.backoff_base_ms)->envname("SOPFLOW_BACKOFF_BASE_MS")->capture_default_str();
  app.add_option("--backoff-max-ms", o.backoff_max_ms)->envname("SOPFLOW_BACKOFF_MAX_MS")->capture_default_str();
  app.add_option("--http-timeout-ms", o.http_timeout_ms)->envname("SOPFLOW_HTTP_TIMEOUT_MS")->capture_default_str();
  app.add_option("--log-max-len", c.log_max_len, "notifications kept for resumes")->envname("SOPFLOW_LOG_MAX_LEN")->capture_default_str();
  app.add_option("--delivery-workers", c.delivery_workers)->envname("SOPFLOW_DELIVERY_WORKERS")->capture_default_str();
  app.add_option("--replica-id", c.replica_id)->envname("SOPFLOW_REPLICA_ID");
  app.add_option("--ack-wait-ms", c.ack_wait_ms, "events a dead replica held return after this")
      ->envname("SOPFLOW_ACK_WAIT_MS")->capture_default_str();
  app.add_option("--drain-ms", c.drain_ms)->envname("SOPFLOW_DRAIN_MS")->capture_default_str();
  std::string log_level = "info";
  app.add_option("--log-level", log_level)->envname("SOPFLOW_LOG_LEVEL");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  sopflow::SystemClock clock;
  try {
    sopflow::notifier::NotifierProcess notifier(c, &clock);
    notifier.Start();
    while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spdlog::info("draining");
    notifier.Shutdown();
  } catch (const std::exception& e) {
    spdlog::critical("notifier: {}", e.what());
    return 1;
  }
  return 0;
}

// sopflow-notifier: one notifier replica. Flags or SOPFLOW_* environment.
#include "notifier.h"
#include "service_main.h"

int main(int argc, char** argv) {
  sopflow::notifier::Config c;
  auto& o = c.options;
  std::string log_level = "info";
  CLI::App app{"sopflow notifier: tells actors of their tasks, reminds them, escalates overdue work"};
  sopflow::AddCommonOptions(app, c, log_level);
  sopflow::AddConsumerOptions(app, c);
  app.add_option("--router", c.router, "router a reminder asks whether its task is still open")
      ->envname("SOPFLOW_ROUTER")->required();
  app.add_option("--service-token", c.service_token, "token with read_runs, for --router")
      ->envname("SOPFLOW_SERVICE_TOKEN")->required();
  app.add_option("--calendar", c.calendar_file, "work calendar")->envname("SOPFLOW_CALENDAR");
  app.add_option("--templates", c.templates_dir, "message templates")->envname("SOPFLOW_TEMPLATES")->capture_default_str();
  app.add_option("--webhooks", c.webhooks_file, "declared webhooks (secrets from the environment)")
      ->envname("SOPFLOW_WEBHOOKS");
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
  app.add_option("--log-max-len", c.log_max_len, "notifications kept for resumes")
      ->envname("SOPFLOW_LOG_MAX_LEN")->capture_default_str();
  app.add_option("--timer-interval-ms", c.timer_interval_ms, "how often due reminders and escalations are looked for")
      ->envname("SOPFLOW_TIMER_INTERVAL_MS")->capture_default_str()->check(CLI::Range(1, 60000));
  app.add_option("--sweep-interval-ms", c.sweep_interval_ms,
                 "how often expired notifications' ids are forgotten from inboxes and delivery lists")
      ->envname("SOPFLOW_SWEEP_INTERVAL_MS")->capture_default_str()->check(CLI::Range(int64_t{1000}, int64_t{604800000}));
  app.add_option("--delivery-workers", c.delivery_workers)->envname("SOPFLOW_DELIVERY_WORKERS")->capture_default_str();
  app.add_option("--delivery-idle-max-ms", c.delivery_idle_max_ms,
                 "longest pause between looks for due deliveries (retries, other replicas' left-overs)")
      ->envname("SOPFLOW_DELIVERY_IDLE_MAX_MS")->capture_default_str()->check(CLI::Range(1, 60000));
  CLI11_PARSE(app, argc, argv);
  return sopflow::ServeUntilSignal<sopflow::notifier::NotifierProcess>("notifier", c, log_level);
}

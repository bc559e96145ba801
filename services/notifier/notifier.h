// A notifier replica: gRPC server, the event consumer (durable "notifier",
// shared by replicas), the timer loop and the delivery workers.
#pragma once

#include <memory>
#include <string>

#include "clock.h"
#include "engine.h"
#include "service_config.h"

namespace sopflow::notifier {

struct Config : ServiceConfig {
  Config() { listen = "127.0.0.1:7302"; }
  std::string calendar_file;
  std::string templates_dir = "deploy/base/notifier/templates";
  std::string webhooks_file;      // declared webhooks (declared_webhooks.h); empty: none
  // The router a firing timer asks whether its task is still open, and a
  // token of a user with read_runs for it. Required.
  std::string router;
  std::string service_token;
  Options options;
  size_t log_max_len = 1000000;   // notifications kept for Subscribe resumes
  int delivery_workers = 2;
  // Delivery polling: every loop_interval_ms while deliveries are due,
  // backing off to delivery_idle_max_ms while none are; a delivery this
  // replica schedules starts at once whatever the pause.
  int loop_interval_ms = 20;
  int delivery_idle_max_ms = 1000;
  // How often due reminders and escalations are looked for; SOP times are
  // minutes to days, so once a second is plenty (it was every 20 ms: half
  // the idle CPU of the notifier and of nats-server). A look that finds a
  // full pass of due timers (Engine::kTimersPerPass) looks again at once.
  int timer_interval_ms = 1000;
  // How often the ids of expired notifications are forgotten from inboxes,
  // unread sets and delivery lists (Engine::SweepExpired): one replica per
  // interval sweeps, each looks whether it is its turn at least once a minute.
  int64_t sweep_interval_ms = 3600000;
};

class NotifierProcess {
 public:
  NotifierProcess(Config config, const Clock* clock);
  ~NotifierProcess();
  void Start();
  int port() const;
  int health_port() const;  // 0 without --health-listen
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sopflow::notifier

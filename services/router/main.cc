// sopflow-router: one router replica. Configuration from flags or the
// environment (SOPFLOW_*), 12-factor style.
#include "router.h"
#include "service_main.h"

int main(int argc, char** argv) {
  sopflow::RouterConfig c;
  std::string log_level = "info";
  CLI::App app{"sopflow router: routes each SOP step's task to its pelaksana"};
  sopflow::AddCommonOptions(app, c, log_level);
  app.add_option("--definitions", c.definitions_dir, "deploy *.yaml from this folder at start")
      ->envname("SOPFLOW_DEFINITIONS");
  app.add_option("--calendar", c.calendar_file, "work calendar (deploy/base/calendar/calendar.yaml)")
      ->envname("SOPFLOW_CALENDAR");
  app.add_option("--redis-pool", c.redis_pool, "Redis connections")->envname("SOPFLOW_REDIS_POOL")->capture_default_str();
  app.add_option("--relay-reclaim-idle-ms", c.relay_reclaim_idle_ms,
                 "publish outbox entries still there this long after their commit (left by a replica that died, or refused)")
      ->envname("SOPFLOW_RELAY_RECLAIM_IDLE_MS")->capture_default_str();
  app.add_option("--recent-tasks", c.recent_tasks,
                 "open tasks kept in memory as this replica last wrote them, so completing them needs no read (0: none)")
      ->envname("SOPFLOW_RECENT_TASKS")->check(CLI::NonNegativeNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return sopflow::ServeUntilSignal<sopflow::RouterProcess>("router", c, log_level);
}

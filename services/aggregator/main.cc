// sopflow-aggregator: one aggregator replica. Flags or SOPFLOW_* environment.
#include "aggregator.h"
#include "service_main.h"

int main(int argc, char** argv) {
  sopflow::aggregator::Config c;
  std::string log_level = "info";
  CLI::App app{"sopflow aggregator: data kinerja, capaian, reports and process metrics"};
  sopflow::AddCommonOptions(app, c, log_level);
  sopflow::AddConsumerOptions(app, c);
  app.add_option("--catalogues", c.catalogues_dir, "load indicator catalogues (*.yaml) from here")
      ->envname("SOPFLOW_CATALOGUES");
  app.add_option("--deadline-interval-ms", c.deadline_interval_ms, "how often late units are looked for")
      ->envname("SOPFLOW_DEADLINE_INTERVAL_MS")->capture_default_str()->check(CLI::Range(1, 60000));
  app.add_option("--router", c.router, "router address, for attaching reports")->envname("SOPFLOW_ROUTER")->required();
  app.add_option("--router-token", c.router_token, "token with attach_documents")
      ->envname("SOPFLOW_ROUTER_TOKEN")->required();
  CLI11_PARSE(app, argc, argv);
  return sopflow::ServeUntilSignal<sopflow::aggregator::AggregatorProcess>("aggregator", c, log_level);
}

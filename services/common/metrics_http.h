// Serves the metrics registry for Prometheus at GET /metrics (text format
// 0.0.4), on its own port so that scrapes never touch the gRPC server.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace sopflow {

class MetricsEndpoint {
 public:
  // listen: "host:port" (port 0: any free one). `refresh` runs before each
  // scrape, to update gauges such as consumer backlog.
  MetricsEndpoint(const std::string& listen, std::function<void()> refresh);
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// A gauge read from its source at each scrape (a backlog in NATS or Redis).
struct ScrapedGauge {
  std::string name;
  std::string labels;  // e.g. consumer="notifier"; may be empty
  std::function<double()> value;
};

// Serves /metrics on `listen` (nothing when empty), setting each gauge to
// its `value()` before each scrape; -1 when `value` throws (its source did
// not answer), so a scrape never fails for one gauge.
std::unique_ptr<MetricsEndpoint> ServeMetricsWithGauges(const std::string& listen, std::vector<ScrapedGauge> gauges);

}  // namespace sopflow

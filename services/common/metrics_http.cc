#include "metrics_http.h"

#include <httplib.h>

#include <stdexcept>

#include "metrics.h"
#include "thread_name.h"

namespace sopflow {

MetricsEndpoint::MetricsEndpoint(const std::string& listen, std::function<void()> refresh)
    : server_(std::make_unique<httplib::Server>()) {
  server_->Get("/metrics", [refresh](const httplib::Request&, httplib::Response& res) {
    if (refresh) refresh();
    res.set_content(Metrics::Global().Render(), "text/plain; version=0.0.4");
  });
  auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "127.0.0.1" : listen.substr(0, colon);
  int port = colon == std::string::npos ? 0 : std::stoi(listen.substr(colon + 1));
  port_ = port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (port_ <= 0) throw std::runtime_error("metrics: cannot listen on " + listen);
  thread_ = NamedThread("sf-metrics", [this] { server_->listen_after_bind(); });
}

MetricsEndpoint::~MetricsEndpoint() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::unique_ptr<MetricsEndpoint> ServeMetricsWithGauges(const std::string& listen, std::vector<ScrapedGauge> gauges) {
  if (listen.empty()) return nullptr;
  return std::make_unique<MetricsEndpoint>(listen, [gauges = std::move(gauges)] {
    for (const auto& g : gauges) {
      double v = -1;
      try {
        v = g.value();
      } catch (const std::exception&) {
      }
      Metrics::Global().Set(g.name, g.labels, v);
    }
  });
}

}  // namespace sopflow

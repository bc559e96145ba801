// A small in-process metrics registry with Prometheus text exposition.
// Counters and histograms are keyed by name and a label string; recording
// takes one short lock. MetricsEndpoint (metrics_http.h) serves Render()
// over HTTP.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace sopflow {

class Metrics {
 public:
  static Metrics& Global();

  // labels: Prometheus label text without braces, e.g. method="/x",code="OK"
  void Count(const std::string& name, const std::string& labels, double delta = 1);
  void Observe(const std::string& name, const std::string& labels, double seconds);
  void Set(const std::string& name, const std::string& labels, double value);  // a gauge
  double CounterValue(const std::string& name, const std::string& labels) const;
  uint64_t HistogramCount(const std::string& name, const std::string& labels) const;  // observations so far
  std::string Render() const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // cumulative counts per bound
    uint64_t count = 0;
    double sum = 0;
  };
  static const std::vector<double>& Bounds();
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, double> counters_;
  std::map<std::pair<std::string, std::string>, double> gauges_;
  std::map<std::pair<std::string, std::string>, Histogram> histograms_;
};

}  // namespace sopflow

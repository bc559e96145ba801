#include "metrics.h"

#include <cstdio>

namespace sopflow {

Metrics& Metrics::Global() {
  static Metrics* metrics = new Metrics();  // never destroyed: threads may record at exit
  return *metrics;
}

const std::vector<double>& Metrics::Bounds() {
  static const std::vector<double> bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
  return bounds;
}

void Metrics::Count(const std::string& name, const std::string& labels, double delta) {
  std::lock_guard lock(mu_);
  counters_[{name, labels}] += delta;
}

void Metrics::Observe(const std::string& name, const std::string& labels, double seconds) {
  std::lock_guard lock(mu_);
  auto& h = histograms_[{name, labels}];
  if (h.buckets.empty()) h.buckets.assign(Bounds().size(), 0);
  for (size_t i = 0; i < Bounds().size(); ++i)
    if (seconds <= Bounds()[i]) ++h.buckets[i];
  ++h.count;
  h.sum += seconds;
}

void Metrics::Set(const std::string& name, const std::string& labels, double value) {
  std::lock_guard lock(mu_);
  gauges_[{name, labels}] = value;
}

double Metrics::CounterValue(const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mu_);
  auto it = counters_.find({name, labels});
  return it == counters_.end() ? 0 : it->second;
}

uint64_t Metrics::HistogramCount(const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mu_);
  auto it = histograms_.find({name, labels});
  return it == histograms_.end() ? 0 : it->second.count;
}

std::string Metrics::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  char num[64];
  auto series = [](const std::string& name, const std::string& labels) {
    return labels.empty() ? name : name + "{" + labels + "}";
  };
  std::string last;
  for (const auto* family : {&counters_, &gauges_}) {
    const char* type = family == &counters_ ? "counter" : "gauge";
    last.clear();
    for (const auto& [key, value] : *family) {
      if (key.first != last) out += "# TYPE " + key.first + " " + type + "\n";
      last = key.first;
      std::snprintf(num, sizeof num, "%.17g", value);
      out += series(key.first, key.second) + " " + num + "\n";
    }
  }
  last.clear();
  for (const auto& [key, h] : histograms_) {
    if (key.first != last) out += "# TYPE " + key.first + " histogram\n";
    last = key.first;
    std::string sep = key.second.empty() ? "" : ",";
    for (size_t i = 0; i < Bounds().size(); ++i) {
      std::snprintf(num, sizeof num, "%g", Bounds()[i]);
      out += key.first + "_bucket{" + key.second + sep + "le=\"" + num + "\"} " + std::to_string(h.buckets[i]) + "\n";
    }
    out += key.first + "_bucket{" + key.second + sep + "le=\"+Inf\"} " + std::to_string(h.count) + "\n";
    std::snprintf(num, sizeof num, "%.9g", h.sum);
    out += key.first + "_sum{" + key.second + "} " + num + "\n";
    out += key.first + "_count{" + key.second + "} " + std::to_string(h.count) + "\n";
  }
  return out;
}

}  // namespace sopflow

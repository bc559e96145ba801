// The aggregator's operations. Events are applied once each (a "done"
// marker guards every batch); submissions, reports and metrics live in
// Redis under sf:a:* (docs/aggregator.md lists the keys).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "clock.h"
#include "kinerja.h"
#include "outbox_relay.h"
#include "redis.h"
#include "redis_batch.h"
#include "sopflow/v1/aggregator.pb.h"
#include "sopflow/v1/event.pb.h"
#include "users.h"

namespace sopflow::aggregator {

inline constexpr char kOutbox[] = "sf:a:outbox";

// Attaches a document to a router task; throws DomainError(kUnavailable)
// when the router cannot be reached or does not know the task (the event
// comes back and it is tried again).
using AttachFn = std::function<void(const std::string& task_id, const v1::DocumentRef& document)>;

class Engine {
 public:
  Engine(RedisPool* pool, const Clock* clock, AttachFn attach, std::string source);
  // The events of every commit go to `relay` at once, from the committing
  // thread (without: a relay's sweep finds them later). Set before use.
  void PublishThrough(OutboxRelay* relay) { relay_ = relay; }

  std::vector<v1::Catalogue> LoadCatalogue(const User& user, const std::string& yaml, const std::string& file_name);
  void LoadCatalogueTrusted(const std::string& yaml, const std::string& file_name);
  v1::Catalogue GetCatalogue(const std::string& unit, int year);

  v1::Submission Submit(const User& user, const v1::SubmitRealisasiRequest& req);
  std::vector<v1::Submission> ListSubmissions(const User& user, const std::string& run_id, const std::string& unit);
  v1::PerformanceReport GetReport(const User& user, const std::string& run_id);
  v1::ReportFile Export(const User& user, const std::string& run_id, v1::ExportReportRequest::Format format);
  v1::UnitReport Rollup(const User& user, const std::string& unit, const std::string& period);
  v1::ProcessMetrics ProcessMetrics(const User& user, const v1::GetProcessMetricsRequest& req);

  void OnEvent(const v1::Event& event);
  // Fan-out steps whose due time passed: units that did not submit are
  // published (sopflow.v1.aggregator.submissions_late) for the notifier.
  size_t FireDeadlines(int limit = 50);

 private:
  struct RunInfo {
    v1::Run run;
    uint32_t collect_step = 0, collect_gen = 0;
    std::string collect_role, collect_group;
    bool closed = false;
  };
  std::optional<RunInfo> LoadRun(const std::string& run_id);
  std::optional<v1::Catalogue> Catalogue(const std::string& unit, int year);
  // Stores an accepted submission (new version) with its quarter values.
  v1::Submission Store(v1::Submission s, const RunInfo& run, const std::string& cause);
  void StoreRejected(v1::Submission s, const std::string& cause);
  v1::PerformanceReport BuildReport(const RunInfo& run, TimePoint at);
  std::map<std::string, v1::Submission> Current(const std::string& run_id);
  bool MayRead(const User& user, const RunInfo& run) const;
  void OnTaskCompleted(const v1::Event& event);
  void OnCollectingStepClosed(const v1::Event& event, const RunInfo& run);
  int Commit(const RedisBatch& b) { return CommitAndPublish(*pool_, {&b}, relay_).front(); }

  RedisPool* pool_;
  OutboxRelay* relay_ = nullptr;
  const Clock* clock_;
  AttachFn attach_;
  std::string source_;
};

}  // namespace sopflow::aggregator

// Scripted actors: people (and an e-SAKIP job worker) who work an SOP run
// through the router's gRPC API only, as real clients would. The demo and
// the integration tests use the same code.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "sopflow/v1/router.grpc.pb.h"

namespace sopflow::demo {

struct Actor {
  std::string user_id;
  std::string token;
};

struct DriveOptions {
  int timeout_ms = 60000;
  int poll_ms = 5;
  // Each review step's first visit is returned for revision ("perbaikan");
  // later visits pass ("sesuai"). False: every review passes at once.
  bool revise_each_review_once = true;
  std::function<void(const std::string&)> log;  // one line per action
  // Steps whose actor takes this long (ms) before completing: lets the
  // demo show reminders and escalations.
  std::map<uint32_t, int> slow_steps;
  // Adds to a task's output before completing it, e.g. a fan-out member's
  // realisasi for the aggregator.
  std::function<void(const v1::Task&, v1::TaskOutput*)> fill_output;
};

// Works the run until it leaves ACTIVE or timeout_ms passes; returns the
// run as the observer sees it at the end.
v1::GetRunResponse DriveRun(v1::Router::Stub& stub, const std::vector<Actor>& actors, const std::string& run_id,
                            const std::string& observer_token, const DriveOptions& options);

// A job worker: activates jobs of `job_type`, "enters" them (here: builds a
// receipt), and completes them, until `stop` is set. Returns jobs done.
int RunJobWorker(v1::Router::Stub& stub, const std::string& token, const std::string& job_type,
                 const std::string& worker, const std::atomic<bool>& stop,
                 const std::function<void(const std::string&)>& log = {});

// The run's timeline as a readable table.
std::string FormatTimeline(const v1::GetRunResponse& run, const v1::Definition& def);

}  // namespace sopflow::demo

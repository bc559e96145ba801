#include "actors.h"

#include <google/protobuf/util/time_util.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include "clock.h"
#include "grpc_client.h"

namespace sopflow::demo {

using google::protobuf::util::TimeUtil;

namespace {

v1::TaskOutput OutputFor(const v1::Task& task, const std::string& user) {
  v1::TaskOutput out;
  auto& fields = *out.mutable_data()->mutable_fields();
  fields["langkah"].set_number_value(task.step());
  fields["oleh"].set_string_value(user);
  if (!task.member().empty()) fields["anggota"].set_string_value(task.member());
  if (!task.output_name().empty()) {
    auto* doc = out.add_documents();
    doc->set_name(task.output_name() + " — " + task.period());
    doc->set_uri("dms://" + task.unit() + "/" + task.run_id() + "/" + std::to_string(task.gen()));
  }
  return out;
}

std::string Hhmmss(const google::protobuf::Timestamp& t) {
  std::string s = FormatRfc3339(FromUnixMillis(TimeUtil::TimestampToMilliseconds(t)));
  return s.substr(11, 12);
}

std::string Duration(int64_t seconds) {
  char buf[32];
  if (seconds < 60) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(seconds));
  else if (seconds < 3600) std::snprintf(buf, sizeof buf, "%lldm", static_cast<long long>(seconds / 60));
  else if (seconds < 86400) std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(seconds / 3600), static_cast<long long>(seconds % 3600 / 60));
  else std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(seconds / 86400), static_cast<long long>(seconds % 86400 / 3600));
  return buf;
}

}  // namespace

v1::GetRunResponse DriveRun(v1::Router::Stub& stub, const std::vector<Actor>& actors, const std::string& run_id,
                            const std::string& observer_token, const DriveOptions& options) {
  std::map<uint32_t, int> review_visits;  // step -> review tasks handled
  std::set<std::string> handled;
  std::map<std::string, std::chrono::steady_clock::time_point> first_seen;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
  v1::GetRunResponse run;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& actor : actors) {
      v1::ListInboxRequest lreq;
      v1::ListInboxResponse inbox;
      if (!stub.ListInbox(AuthedContext(actor.token).get(), lreq, &inbox).ok()) continue;
      for (const auto& task : inbox.tasks()) {
        if (task.run_id() != run_id || handled.count(task.id())) continue;
        if (auto slow = options.slow_steps.find(task.step()); slow != options.slow_steps.end()) {
          auto seen = first_seen.emplace(task.id(), std::chrono::steady_clock::now()).first->second;
          if (std::chrono::steady_clock::now() - seen < std::chrono::milliseconds(slow->second)) continue;
        }
        v1::Task result;
        grpc::Status st;
        if (task.kind() == v1::Step::REVIEW && options.revise_each_review_once && review_visits[task.step()]++ == 0) {
          v1::ReturnTaskRequest req;
          req.set_task_id(task.id());
          req.set_reason("perbaikan: angka realisasi triwulan belum sesuai lampiran");
          *req.mutable_output() = OutputFor(task, actor.user_id);
          st = stub.ReturnTask(AuthedContext(actor.token).get(), req, &result);
        } else {
          v1::CompleteTaskRequest req;
          req.set_task_id(task.id());
          if (task.kind() == v1::Step::REVIEW) req.set_outcome("sesuai");
          *req.mutable_output() = OutputFor(task, actor.user_id);
          if (options.fill_output) options.fill_output(task, req.mutable_output());
          st = stub.CompleteTask(AuthedContext(actor.token).get(), req, &result);
        }
        if (st.ok()) {
          handled.insert(task.id());
          if (options.log)
            options.log("  " + actor.user_id + " " + (result.return_reason().empty() ? "completed" : "returned") +
                        " step " + std::to_string(task.step()) + (task.member().empty() ? "" : " (" + task.member() + ")") +
                        " -> " + result.outcome());
        }
      }
    }
    v1::GetRunRequest greq;
    greq.set_run_id(run_id);
    run.Clear();
    if (stub.GetRun(AuthedContext(observer_token).get(), greq, &run).ok() && run.run().status() != v1::Run::ACTIVE)
      return run;
    std::this_thread::sleep_for(std::chrono::milliseconds(options.poll_ms));
  }
  return run;
}

int RunJobWorker(v1::Router::Stub& stub, const std::string& token, const std::string& job_type,
                 const std::string& worker, const std::atomic<bool>& stop,
                 const std::function<void(const std::string&)>& log) {
  int done = 0;
  while (!stop) {
    v1::ActivateJobsRequest req;
    req.set_job_type(job_type);
    req.set_worker(worker);
    req.set_max_jobs(10);
    req.set_lock_seconds(60);
    v1::ActivateJobsResponse resp;
    if (!stub.ActivateJobs(AuthedContext(token).get(), req, &resp).ok() || resp.jobs_size() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    for (const auto& job : resp.jobs()) {
      // Here a real worker would call e-SAKIP; the receipt stands for its answer.
      v1::CompleteJobRequest creq;
      creq.set_task_id(job.id());
      creq.set_worker(worker);
      auto& fields = *creq.mutable_output()->mutable_data()->mutable_fields();
      fields["esakip_receipt"].set_string_value("ESAKIP-" + job.run_id() + "-" + std::to_string(job.gen()));
      creq.mutable_output()->set_note("entered into e-SAKIP by " + worker);
      v1::Task result;
      if (stub.CompleteJob(AuthedContext(token).get(), creq, &result).ok()) {
        ++done;
        if (log) log("  job worker " + worker + " completed step " + std::to_string(job.step()) + " (" + job_type + ")");
      }
    }
  }
  return done;
}

std::string FormatTimeline(const v1::GetRunResponse& run, const v1::Definition& def) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "Run %s — %s (%s v%u), periode %s, unit %s: %s\n", run.run().id().c_str(),
                def.nama().c_str(), def.id().c_str(), run.run().sop_version(), run.run().period().c_str(),
                run.run().unit().c_str(), v1::Run::Status_Name(run.run().status()).c_str());
  out += line;
  std::snprintf(line, sizeof line, "  %-12s %-4s %-22s %-22s %-10s %-8s %-9s %s\n", "time (UTC)", "step", "pelaksana",
                "by", "outcome", "took", "waktu", "mutu baku");
  out += line;
  for (const auto& h : run.history()) {
    if (h.kind() != v1::HistoryEntry::TASK_COMPLETED && h.kind() != v1::HistoryEntry::TASK_RETURNED) continue;
    std::string pelaksana = h.pelaksana();
    for (const auto& p : def.pelaksana())
      if (p.id() == h.pelaksana()) pelaksana = p.nama();
    if (!h.member().empty()) pelaksana += " [" + h.member() + "]";
    std::snprintf(line, sizeof line, "  %-12s %-4u %-22.22s %-22.22s %-10s %-8s %-9s %s%s\n", Hhmmss(h.time()).c_str(),
                  h.step(), pelaksana.c_str(), h.user().c_str(), h.outcome().c_str(), Duration(h.elapsed_seconds()).c_str(),
                  h.standard_seconds() ? Duration(h.standard_seconds()).c_str() : "-",
                  h.within_standard() ? "ok" : "LATE", h.reason().empty() ? "" : ("  « " + h.reason() + " »").c_str());
    out += line;
  }
  return out;
}

}  // namespace sopflow::demo

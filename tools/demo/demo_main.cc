// sopflow-demo: starts one run of each seed SOP and plays every actor
// through the router's gRPC API — each review loop taken once, the fan-outs
// with three members — then prints each run's timeline. The e-SAKIP step
// of seed 004 is left to the external job worker (sopflow-esakip-worker).
#include <CLI/CLI.hpp>
#include <google/protobuf/util/time_util.h>
#include <yaml-cpp/yaml.h>

#include <iostream>
#include <mutex>
#include <thread>

#include <filesystem>
#include <fstream>

#include "actors.h"
#include "realisasi.h"
#include "sopflow/v1/aggregator.grpc.pb.h"
#include "clock.h"
#include "grpc_client.h"

using namespace sopflow;
using google::protobuf::util::TimeUtil;

namespace {

std::mutex print_mu;
void Say(const std::string& line) {
  std::lock_guard lock(print_mu);
  std::cout << line << std::endl;
}

struct Plan {
  std::string label;
  v1::StartRunRequest request;
  std::string starter_token;
};

std::vector<Plan> Plans() {
  std::vector<Plan> plans;
  {
    Plan p{"001 Biro Organisasi Kalbar", {}, "demo-karo"};
    p.request.set_sop_id("kalbar-biro-organisasi-data-kinerja");
    p.request.set_period("2026-Q3");
    p.request.set_unit("kalbar-biro-organisasi");
    p.request.set_request_id("demo-kalbar-2026-Q3");
    auto& m = (*p.request.mutable_members())["bagian"];
    for (const char* b : {"bagian-tatalaksana", "bagian-kelembagaan", "bagian-reformasi-birokrasi"}) m.add_members(b);
    (*p.request.mutable_deadlines())[2] =
        TimeUtil::MillisecondsToTimestamp(UnixMillis(SystemClock().Now()) + 3 * 86400000LL);
    plans.push_back(p);
  }
  {
    Plan p{"003 Satpol PP Balangan", {}, "demo-sekretaris-blg"};
    p.request.set_sop_id("balangan-satpolpp-data-kinerja");
    p.request.set_period("2026-Q3");
    p.request.set_unit("balangan-satpolpp");
    p.request.set_request_id("demo-balangan-2026-Q3");
    plans.push_back(p);
  }
  {
    Plan p{"004 Perencanaan & Pelaporan Gowa", {}, "demo-kepala-skpd"};
    p.request.set_sop_id("gowa-perencanaan-pelaporan-data-kinerja");
    p.request.set_period("2026");
    p.request.set_unit("gowa-perencanaan");
    p.request.set_request_id("demo-gowa-2026");
    auto& m = (*p.request.mutable_members())["fungsional"];
    for (const char* f : {"fungsional-1", "fungsional-2", "fungsional-3"}) m.add_members(f);
    plans.push_back(p);
  }
  return plans;
}

}  // namespace

int main(int argc, char** argv) {
  std::string router = "127.0.0.1:7301", tokens_file = "deploy/overlays/dev/tokens.yaml";
  int timeout_s = 120;
  int slow_ms = 0;
  std::string aggregator, reports_dir;
  CLI::App app{"sopflow demo: the three seed SOPs, end to end"};
  app.add_option("--router", router)->envname("SOPFLOW_ROUTER")->capture_default_str();
  app.add_option("--tokens", tokens_file, "demo users (plain tokens)")->capture_default_str();
  app.add_option("--timeout", timeout_s, "seconds per run")->capture_default_str();
  app.add_option("--slow-ms", slow_ms, "seed 003's staff take this long on step 3 (to show reminders)");
  app.add_option("--aggregator", aggregator, "aggregator address: print the reports")->envname("SOPFLOW_AGGREGATOR");
  app.add_option("--reports-dir", reports_dir, "write the reports as CSV, XLSX and HTML here");
  CLI11_PARSE(app, argc, argv);

  std::vector<demo::Actor> actors;
  for (const auto& u : YAML::LoadFile(tokens_file)["users"])
    if (u["token"] && !u["admin"].as<bool>(false) && !u["job_types"])
      actors.push_back({u["id"].as<std::string>(), u["token"].as<std::string>()});

  auto channel = OpenChannel(router);
  auto stub = v1::Router::NewStub(channel);
  std::vector<std::pair<Plan, v1::Run>> started;
  for (const auto& plan : Plans()) {
    v1::Run run;
    auto st = stub->StartRun(AuthedContext(plan.starter_token).get(), plan.request, &run);
    if (!st.ok()) {
      std::cerr << "start " << plan.label << ": " << st.error_message() << "\n";
      return 1;
    }
    Say("started " + plan.label + ": run " + run.id() + " (" + run.sop_id() + " v" + std::to_string(run.sop_version()) + ")");
    started.emplace_back(plan, run);
  }

  std::vector<v1::GetRunResponse> results(started.size());
  std::vector<std::thread> players;
  for (size_t i = 0; i < started.size(); ++i)
    players.emplace_back([&, i] {
      auto own = v1::Router::NewStub(channel);
      demo::DriveOptions options;
      options.timeout_ms = timeout_s * 1000;
      options.poll_ms = 20;
      std::string tag = "[" + started[i].first.label.substr(0, 3) + "]";
      options.log = [tag](const std::string& line) { Say(tag + line); };
      if (slow_ms > 0 && started[i].second.sop_id() == "balangan-satpolpp-data-kinerja") options.slow_steps[3] = slow_ms;
      options.fill_output = demo::FillRealisasi;  // the Bagian and Fungsional report their realisasi
      results[i] = demo::DriveRun(*own, actors, started[i].second.id(), "demo-admin", options);
    });
  for (auto& t : players) t.join();

  bool all_done = true;
  for (size_t i = 0; i < started.size(); ++i) {
    v1::GetDefinitionRequest dreq;
    dreq.set_id(started[i].second.sop_id());
    dreq.set_version(started[i].second.sop_version());
    v1::Definition def;
    stub->GetDefinition(AuthedContext("demo-admin").get(), dreq, &def);
    Say("");
    Say(demo::FormatTimeline(results[i], def));
    all_done &= results[i].run().status() == v1::Run::COMPLETED;
  }
  if (!aggregator.empty()) {
    auto agg = v1::Aggregator::NewStub(OpenChannel(aggregator));
    for (const auto& [plan, run] : started) {
      v1::GetReportRequest req;
      req.set_run_id(run.id());
      v1::PerformanceReport report;
      if (!agg->GetReport(AuthedContext("demo-admin").get(), req, &report).ok()) continue;  // no fan-out
      char line[256];
      std::snprintf(line, sizeof line, "Draft Data Kinerja %s — %s, periode %s: rata-rata capaian %.1f%% (%s)",
                    plan.label.c_str(), report.organisasi().c_str(), report.period().c_str(),
                    report.rata_rata_capaian(), report.predikat().c_str());
      Say("");
      Say(line);
      for (const auto& u : report.units())
        for (const auto& c : u.indikator()) {
          std::snprintf(line, sizeof line, "  %-28s %-6s target %8.2f realisasi %8.2f capaian %6.1f%% %-12s %s",
                        u.unit().c_str(), c.kode().c_str(), c.target(), c.realisasi(), c.capaian(), c.predikat().c_str(),
                        c.rumus().c_str());
          Say(line);
        }
      for (const auto& c : report.organisasi_indikator()) {
        std::snprintf(line, sizeof line, "  organisasi %-17s capaian %6.1f%% (%s)", c.kode().c_str(), c.capaian(), c.rumus().c_str());
        Say(line);
      }
      for (const auto& u : report.units())
        if (u.pagu() > 0) {
          std::snprintf(line, sizeof line, "  serapan anggaran %-28s %5.1f%% of Rp %.0f", u.unit().c_str(), u.serapan(), u.pagu());
          Say(line);
        }
      if (!reports_dir.empty()) {
        std::filesystem::create_directories(reports_dir);
        for (auto format : {v1::ExportReportRequest::CSV, v1::ExportReportRequest::XLSX, v1::ExportReportRequest::HTML}) {
          v1::ExportReportRequest ex;
          ex.set_run_id(run.id());
          ex.set_format(format);
          v1::ReportFile file;
          if (!agg->ExportReport(AuthedContext("demo-admin").get(), ex, &file).ok()) continue;
          std::ofstream(reports_dir + "/" + file.filename(), std::ios::binary) << file.content();
          Say("  wrote " + reports_dir + "/" + file.filename());
        }
      }
      v1::GetProcessMetricsRequest pm;
      pm.set_run_id(run.id());
      v1::ProcessMetrics metrics;
      if (agg->GetProcessMetrics(AuthedContext("demo-admin").get(), pm, &metrics).ok()) {
        for (const auto& s : metrics.steps())
          if (s.revisions() > 0) {
            std::snprintf(line, sizeof line, "  proses: langkah %u (%s) dikembalikan %u kali", s.step(), s.pelaksana().c_str(),
                          s.revisions());
            Say(line);
          }
      }
    }
  }
  Say(all_done ? "all three seed SOPs ran to completion" : "SOME RUNS DID NOT COMPLETE");
  return all_done ? 0 : 1;
}

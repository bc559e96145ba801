// sopctl: drives sopflow from the command line — deploy, start, inbox,
// claim, complete, return, run timelines, cancel.
//
//   export SOPFLOW_ROUTER=127.0.0.1:7301 SOPFLOW_TOKEN=demo-karo
//   sopctl start kalbar-biro-organisasi-data-kinerja --period 2026-Q3
//       --unit kalbar-biro-organisasi --member bagian=bagian-tatalaksana,bagian-kelembagaan
//       --deadline 2=2026-10-10T16:00:00+07:00
#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "actors.h"
#include "clock.h"
#include "grpc_client.h"
#include "sopflow/v1/aggregator.grpc.pb.h"
#include "sopflow/v1/archive.grpc.pb.h"
#include "notification_feed.h"
#include "sopflow/v1/notifier.grpc.pb.h"
#include "sopflow/v1/router.grpc.pb.h"

namespace {

using namespace sopflow;
using google::protobuf::util::TimeUtil;

struct Globals {
  std::string router = "127.0.0.1:7301";
  std::string notifier = "127.0.0.1:7302";
  std::string aggregator = "127.0.0.1:7303";
  std::string archiver = "127.0.0.1:7304";
  std::string token;
  std::string ca_file;
  bool json = false;
};

class Failed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void Check(const grpc::Status& s) {
  if (!s.ok()) throw Failed(StatusCodeName(s.error_code()) + ": " + s.error_message());
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::cout << out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Failed("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::pair<std::string, std::string> SplitPair(const std::string& text, const char* what) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw Failed(std::string(what) + " must be KEY=VALUE, got '" + text + "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

// "2026-10-10T16:00:00+07:00", or "+3d", "+4h", "+30m" from now.
google::protobuf::Timestamp ParseWhen(const std::string& text) {
  TimePoint t;
  if (!text.empty() && text[0] == '+') {
    char unit = text.back();
    long n = std::strtol(text.c_str() + 1, nullptr, 10);
    std::chrono::seconds d = unit == 'd' ? std::chrono::hours(24 * n) : unit == 'h' ? std::chrono::hours(n)
                                                                                    : std::chrono::minutes(n);
    t = SystemClock().Now() + d;
  } else if (!ParseRfc3339(text, &t)) {
    throw Failed("cannot read time '" + text + "' (RFC 3339, or +3d / +4h / +30m)");
  }
  return TimeUtil::MillisecondsToTimestamp(UnixMillis(t));
}

// --page-size and --page-token for a List command; `sizes` as its proto has them.
void AddPaging(CLI::App* sub, const char* what, uint32_t& page_size, std::string& page_token,
               const char* sizes = "default 100, at most 1000") {
  sub->add_option("--page-size", page_size, std::string(what) + " per page (" + sizes + ")");
  sub->add_option("--page-token", page_token, "the page after the one that printed it");
}

// One page of a List call: as JSON, or as `print_items` prints it and
// then, on stderr so that a page piped elsewhere stays only the page, the
// command for the next one.
template <class Response, class PrintItems>
void PrintPage(const Response& resp, const char* command, bool json, PrintItems print_items) {
  if (json) return PrintJson(resp);
  print_items();
  if (!resp.next_page_token().empty())
    std::fprintf(stderr, "more: sopctl %s --page-token '%s'\n", command, resp.next_page_token().c_str());
}

std::string When(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0) return "-";
  return FormatRfc3339(FromUnixMillis(TimeUtil::TimestampToMilliseconds(t))).substr(0, 16) + "Z";
}

// Berkas, two lines each.
void PrintRecords(const google::protobuf::RepeatedPtrField<v1::FiledRecord>& records) {
  for (const auto& f : records) {
    const auto& r = f.record();
    std::printf("%-26s %-4s %-17s %-9s %-8s boks %-7s folder %-3s %s/%s %s%s\n", r.id().c_str(),
                r.kode_klasifikasi().c_str(), r.klasifikasi().substr(0, 17).c_str(),
                v1::ArchiveRecord::Security_Name(r.keamanan()).c_str(), r.kurun_waktu().c_str(), r.nomor_boks().c_str(),
                r.nomor_folder().c_str(), r.lokasi_ruang().c_str(), r.lokasi_rak().c_str(),
                v1::RetentionRule::Disposition_Name(r.retensi().keterangan()).c_str(), f.disposed() ? " (disposed)" : "");
    std::printf("    %s; aktif s.d. %s, inaktif s.d. %s; %u item(s); hash %s\n", r.uraian().c_str(),
                When(r.aktif_sampai()).substr(0, 10).c_str(), When(r.inaktif_sampai()).substr(0, 10).c_str(), r.jumlah(),
                f.hash().substr(0, 16).c_str());
  }
}

void PrintTasks(const google::protobuf::RepeatedPtrField<v1::Task>& tasks) {
  std::printf("%-26s %-4s %-20s %-8s %-17s %s\n", "TASK", "STEP", "PELAKSANA", "STATUS", "DUE (UTC)", "AKTIVITAS");
  for (const auto& t : tasks) {
    std::string who = t.pelaksana() + (t.member().empty() ? "" : "[" + t.member() + "]");
    std::string act = t.aktivitas().size() > 60 ? t.aktivitas().substr(0, 57) + "..." : t.aktivitas();
    std::printf("%-26s %-4u %-20.20s %-8.8s %-17s %s\n", t.id().c_str(), t.step(), who.c_str(),
                v1::Task::Status_Name(t.status()).c_str(), When(t.due_at()).c_str(), act.c_str());
  }
}

v1::TaskOutput BuildOutput(const std::vector<std::string>& data, const std::vector<std::string>& docs,
                           const std::string& note) {
  v1::TaskOutput out;
  for (const auto& d : data) {
    auto [k, v] = SplitPair(d, "--data");
    auto& field = (*out.mutable_data()->mutable_fields())[k];
    char* end = nullptr;
    double num = std::strtod(v.c_str(), &end);
    if (!v.empty() && end && *end == '\0') field.set_number_value(num);
    else field.set_string_value(v);
  }
  for (const auto& d : docs) {
    auto [name, uri] = SplitPair(d, "--doc");
    auto* doc = out.add_documents();
    doc->set_name(name);
    doc->set_uri(uri);
  }
  out.set_note(note);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Globals g;
  CLI::App app{"sopctl: run SOPs on sopflow"};
  app.require_subcommand(1);
  app.add_option("--router", g.router, "router address")->envname("SOPFLOW_ROUTER")->capture_default_str();
  app.add_option("--notifier", g.notifier, "notifier address")->envname("SOPFLOW_NOTIFIER")->capture_default_str();
  app.add_option("--aggregator", g.aggregator, "aggregator address")->envname("SOPFLOW_AGGREGATOR")->capture_default_str();
  app.add_option("--archiver", g.archiver, "archiver address")->envname("SOPFLOW_ARCHIVER")->capture_default_str();
  app.add_option("--token", g.token, "bearer token")->envname("SOPFLOW_TOKEN");
  app.add_option("--ca", g.ca_file, "CA certificate for TLS")->envname("SOPFLOW_CA");
  app.add_flag("--json", g.json, "print JSON");

  std::vector<std::string> files, members, deadlines, params, data, docs;
  std::string id, sop, period, unit, request_id, outcome, reason, note;
  uint32_t version = 0;

  auto* deploy = app.add_subcommand("deploy", "deploy definition files (admin)");
  deploy->add_option("files", files, "YAML files")->required()->check(CLI::ExistingFile);
  app.add_subcommand("defs", "list definitions");
  auto* def = app.add_subcommand("def", "show a definition");
  def->add_option("id", id)->required();
  def->add_option("--version", version, "0: latest");
  auto* start = app.add_subcommand("start", "start a run");
  start->add_option("sop", sop, "SOP id")->required();
  start->add_option("--period", period, "e.g. 2026-Q3")->required();
  start->add_option("--unit", unit, "the unit running it")->required();
  start->add_option("--member", members, "GROUP=m1,m2,... for a fan-out step");
  start->add_option("--deadline", deadlines, "STEP=TIME for 'ditentukan saat mulai' steps");
  start->add_option("--param", params, "KEY=VALUE");
  start->add_option("--request-id", request_id, "idempotency key");
  auto* runs = app.add_subcommand("runs", "list runs");
  runs->add_option("--sop", sop);
  uint32_t page_size = 0;
  std::string page_token;
  AddPaging(runs, "runs", page_size, page_token);
  auto* run = app.add_subcommand("run", "a run's timeline");
  run->add_option("id", id)->required();
  auto* inbox = app.add_subcommand("inbox", "your open and claimed tasks, oldest first");
  AddPaging(inbox, "tasks", page_size, page_token);
  auto* claim = app.add_subcommand("claim", "claim a task");
  claim->add_option("task", id)->required();
  auto* complete = app.add_subcommand("complete", "complete a task");
  complete->add_option("task", id)->required();
  complete->add_option("--outcome", outcome, "review outcome, e.g. sesuai");
  auto* ret = app.add_subcommand("return", "return a review task for revision");
  ret->add_option("task", id)->required();
  ret->add_option("--reason", reason, "what needs fixing")->required();
  for (auto* sub : {complete, ret}) {
    sub->add_option("--data", data, "KEY=VALUE output data");
    sub->add_option("--doc", docs, "NAME=URI output document");
    sub->add_option("--note", note);
  }
  auto* cancel = app.add_subcommand("cancel", "cancel a run");
  cancel->add_option("run", id)->required();
  cancel->add_option("--reason", reason);
  std::string role, cursor, url, webhook;
  bool from_start = false, unread = false, dead = false;
  auto* watch = app.add_subcommand("watch", "print notifications as they come (Ctrl-C to stop)");
  watch->add_option("--role", role, "a role you hold, in your unit");
  watch->add_option("--unit", unit, "your unit (admins: any, or '*')");
  watch->add_option("--cursor", cursor, "resume after this cursor");
  watch->add_flag("--from-start", from_start, "from the oldest kept");
  auto* notes = app.add_subcommand("notifications", "your notification inbox");
  notes->add_flag("--unread", unread, "only unread");
  AddPaging(notes, "notifications", page_size, page_token, "default 50, at most 500");
  auto* hook_add = app.add_subcommand("webhook-add", "register a webhook for a unit");
  hook_add->add_option("url", url)->required();
  hook_add->add_option("--unit", unit);
  hook_add->add_option("--role", role);
  app.add_subcommand("webhooks", "list webhooks");
  auto* deliveries = app.add_subcommand("deliveries", "a webhook's (or your e-mail's) delivery log");
  deliveries->add_option("--webhook", webhook);
  deliveries->add_flag("--dead", dead, "only the dead-letter list");
  AddPaging(deliveries, "deliveries", page_size, page_token);
  std::string format = "html", out_file;
  auto* report_cmd = app.add_subcommand("report", "a run's aggregated Draft Data Kinerja");
  report_cmd->add_option("run", id)->required();
  report_cmd->add_option("--format", format, "csv, xlsx or html (with --out)")->check(CLI::IsMember({"csv", "xlsx", "html"}));
  report_cmd->add_option("--out", out_file, "write the export to this file");
  auto* metrics_cmd = app.add_subcommand("metrics", "the SOP's own performance: per step and actor");
  metrics_cmd->add_option("--run", id);
  metrics_cmd->add_option("--sop", sop);
  metrics_cmd->add_option("--period", period);
  std::string text;
  auto* records_cmd = app.add_subcommand("records", "archived records (berkas) you may read");
  records_cmd->add_option("--sop", sop);
  records_cmd->add_option("--text", text, "words in the uraian");
  AddPaging(records_cmd, "records", page_size, page_token);
  bool disposition = false;
  std::string date;
  auto* due_cmd = app.add_subcommand("due", "berkas due for transfer to the inactive archive (or for disposition)");
  due_cmd->add_flag("--disposition", disposition, "due for final disposition instead");
  due_cmd->add_option("--date", date, "YYYY-MM-DD; default today");
  AddPaging(due_cmd, "records", page_size, page_token);
  auto* access_cmd = app.add_subcommand("access-log", "admins: who read a terbatas or rahasia record");
  access_cmd->add_option("--record", id)->required();
  AddPaging(access_cmd, "entries", page_size, page_token);
  auto* verify_cmd = app.add_subcommand("verify", "check the archive's hash chain and blobs");
  verify_cmd->add_option("--record", id);
  CLI11_PARSE(app, argc, argv);

  try {
    auto stub = v1::Router::NewStub(OpenChannel(g.router, g.ca_file));
    auto notifier = v1::Notifier::NewStub(OpenChannel(g.notifier, g.ca_file));
    auto aggregator = v1::Aggregator::NewStub(OpenChannel(g.aggregator, g.ca_file));
    auto archiver = v1::Archiver::NewStub(OpenChannel(g.archiver, g.ca_file));
    auto ctx = [&] { return AuthedContext(g.token); };
    if (deploy->parsed()) {
      for (const auto& f : files) {
        v1::DeployDefinitionRequest req;
        req.set_yaml(ReadFile(f));
        req.set_file_name(f);
        v1::DeployDefinitionResponse resp;
        Check(stub->DeployDefinition(ctx().get(), req, &resp));
        std::printf("%s: %s v%u (%d steps)%s\n", f.c_str(), resp.definition().id().c_str(), resp.definition().version(),
                    resp.definition().steps_size(), resp.created() ? "" : " — unchanged");
      }
    } else if (app.got_subcommand("defs")) {
      v1::ListDefinitionsResponse resp;
      Check(stub->ListDefinitions(ctx().get(), {}, &resp));
      if (g.json) PrintJson(resp);
      else
        for (const auto& d : resp.definitions())
          std::printf("%-45s v%-3u %-20s %s\n", d.id().c_str(), d.version(), d.nomor().c_str(), d.nama().c_str());
    } else if (def->parsed()) {
      v1::GetDefinitionRequest req;
      req.set_id(id);
      req.set_version(version);
      v1::Definition resp;
      Check(stub->GetDefinition(ctx().get(), req, &resp));
      if (g.json) PrintJson(resp);
      else std::cout << resp.source_yaml();
    } else if (start->parsed()) {
      v1::StartRunRequest req;
      req.set_sop_id(sop);
      req.set_period(period);
      req.set_unit(unit);
      req.set_request_id(request_id);
      for (const auto& m : members) {
        auto [group, list] = SplitPair(m, "--member");
        auto& out = (*req.mutable_members())[group];
        std::stringstream ss(list);
        for (std::string one; std::getline(ss, one, ',');) out.add_members(one);
      }
      for (const auto& d : deadlines) {
        auto [step, when] = SplitPair(d, "--deadline");
        (*req.mutable_deadlines())[static_cast<uint32_t>(std::stoul(step))] = ParseWhen(when);
      }
      for (const auto& p : params) {
        auto [k, v] = SplitPair(p, "--param");
        (*req.mutable_params())[k] = v;
      }
      v1::Run resp;
      Check(stub->StartRun(ctx().get(), req, &resp));
      if (g.json) PrintJson(resp);
      else std::cout << resp.id() << "\n";
    } else if (runs->parsed()) {
      v1::ListRunsRequest req;
      req.set_sop_id(sop);
      req.set_page_size(page_size);
      req.set_page_token(page_token);
      v1::ListRunsResponse resp;
      Check(stub->ListRuns(ctx().get(), req, &resp));
      PrintPage(resp, "runs", g.json, [&] {
        for (const auto& r : resp.runs())
          std::printf("%-22s %-10s %-42s %-8s %s\n", r.id().c_str(), v1::Run::Status_Name(r.status()).c_str(),
                      r.sop_id().c_str(), r.period().c_str(), r.unit().c_str());
      });
    } else if (run->parsed()) {
      v1::GetRunRequest req;
      req.set_run_id(id);
      v1::GetRunResponse resp;
      Check(stub->GetRun(ctx().get(), req, &resp));
      if (g.json) {
        PrintJson(resp);
      } else {
        v1::GetDefinitionRequest dreq;
        dreq.set_id(resp.run().sop_id());
        dreq.set_version(resp.run().sop_version());
        v1::Definition d;
        Check(stub->GetDefinition(ctx().get(), dreq, &d));
        std::cout << demo::FormatTimeline(resp, d);
        int open = 0;
        for (const auto& t : resp.tasks()) open += t.status() == v1::Task::OPEN || t.status() == v1::Task::CLAIMED;
        if (open) {
          std::cout << "open tasks:\n";
          google::protobuf::RepeatedPtrField<v1::Task> open_tasks;
          for (const auto& t : resp.tasks())
            if (t.status() == v1::Task::OPEN || t.status() == v1::Task::CLAIMED) *open_tasks.Add() = t;
          PrintTasks(open_tasks);
        }
      }
    } else if (inbox->parsed()) {
      v1::ListInboxRequest req;
      req.set_page_size(page_size);
      req.set_page_token(page_token);
      v1::ListInboxResponse resp;
      Check(stub->ListInbox(ctx().get(), req, &resp));
      PrintPage(resp, "inbox", g.json, [&] { PrintTasks(resp.tasks()); });
    } else if (claim->parsed()) {
      v1::ClaimTaskRequest req;
      req.set_task_id(id);
      v1::Task resp;
      Check(stub->ClaimTask(ctx().get(), req, &resp));
      std::printf("%s claimed by %s\n", resp.id().c_str(), resp.assignee().c_str());
    } else if (complete->parsed()) {
      v1::CompleteTaskRequest req;
      req.set_task_id(id);
      req.set_outcome(outcome);
      *req.mutable_output() = BuildOutput(data, docs, note);
      v1::Task resp;
      Check(stub->CompleteTask(ctx().get(), req, &resp));
      std::printf("%s completed: %s\n", resp.id().c_str(), resp.outcome().c_str());
    } else if (ret->parsed()) {
      v1::ReturnTaskRequest req;
      req.set_task_id(id);
      req.set_reason(reason);
      *req.mutable_output() = BuildOutput(data, docs, note);
      v1::Task resp;
      Check(stub->ReturnTask(ctx().get(), req, &resp));
      std::printf("%s returned for revision (%s)\n", resp.id().c_str(), resp.outcome().c_str());
    } else if (watch->parsed()) {
      v1::SubscribeRequest req;
      req.set_role(role);
      req.set_unit(unit);
      req.set_cursor(cursor);
      req.set_from_start(from_start);
      // Kept open across a notifier's restart or drain, resumed from the
      // last cursor it saw; it backs off while tries fail and gives up
      // after 20 in a row (a notifier down for about three minutes).
      NotificationFeed::Options options{{g.notifier}, g.ca_file, g.token, req};
      options.on_retry = [](const grpc::Status& st) {
        std::fprintf(stderr, "[watch] %s: %s; subscribing again\n", StatusCodeName(st.error_code()).c_str(),
                     st.error_message().c_str());
      };
      NotificationFeed feed(options);
      Check(feed.Run(
          [](const std::string& start) {
            std::fprintf(stderr, "[watch] subscribed after cursor %s\n", start.c_str());
          },
          [](const v1::Notification& n) {
            std::string to;
            for (const auto& u : n.users()) to += (to.empty() ? "" : ",") + u;
            std::printf("[notify %s] %-15s -> %-28s %s\n", When(n.time()).substr(11, 5).c_str(),
                        v1::Notification::Kind_Name(n.kind()).c_str(), to.c_str(), n.title().c_str());
            std::fflush(stdout);
          }));
    } else if (notes->parsed()) {
      v1::ListNotificationsRequest req;
      req.set_unread_only(unread);
      req.set_page_size(page_size);
      req.set_page_token(page_token);
      v1::ListNotificationsResponse resp;
      Check(notifier->ListNotifications(ctx().get(), req, &resp));
      PrintPage(resp, "notifications", g.json, [&] {
        for (const auto& n : resp.notifications())
          std::printf("%s %s %-15s %s\n", n.read() ? " " : "*", When(n.time()).c_str(),
                      v1::Notification::Kind_Name(n.kind()).c_str(), n.title().c_str());
      });
    } else if (hook_add->parsed()) {
      v1::RegisterWebhookRequest req;
      req.set_url(url);
      req.set_unit(unit);
      req.set_role(role);
      v1::Webhook resp;
      Check(notifier->RegisterWebhook(ctx().get(), req, &resp));
      std::printf("%s for unit %s; signing secret (shown once): %s\n", resp.id().c_str(), resp.unit().c_str(),
                  resp.secret().c_str());
    } else if (app.got_subcommand("webhooks")) {
      v1::ListWebhooksResponse resp;
      Check(notifier->ListWebhooks(ctx().get(), {}, &resp));
      if (g.json) PrintJson(resp);
      else
        for (const auto& h : resp.webhooks())
          std::printf("%-20s %-26s %-20s %s\n", h.id().c_str(), h.unit().c_str(), h.role().c_str(), h.url().c_str());
    } else if (deliveries->parsed()) {
      v1::ListDeliveriesRequest req;
      req.set_webhook_id(webhook);
      req.set_dead_only(dead);
      req.set_page_size(page_size);
      req.set_page_token(page_token);
      v1::ListDeliveriesResponse resp;
      Check(notifier->ListDeliveries(ctx().get(), req, &resp));
      PrintPage(resp, "deliveries", g.json, [&] {
        for (const auto& d : resp.deliveries()) {
          std::string codes;
          for (const auto& a : d.attempts()) codes += (codes.empty() ? "" : ",") + std::to_string(a.status_code());
          std::printf("%-10s attempts=%d [%s] %s\n", v1::Delivery::Status_Name(d.status()).c_str(), d.attempts_size(),
                      codes.c_str(), d.id().c_str());
        }
      });
    } else if (report_cmd->parsed()) {
      if (!out_file.empty()) {
        v1::ExportReportRequest req;
        req.set_run_id(id);
        req.set_format(format == "csv" ? v1::ExportReportRequest::CSV
                       : format == "xlsx" ? v1::ExportReportRequest::XLSX : v1::ExportReportRequest::HTML);
        v1::ReportFile file;
        Check(aggregator->ExportReport(ctx().get(), req, &file));
        std::ofstream(out_file, std::ios::binary) << file.content();
        std::printf("wrote %s (%zu bytes, %s)\n", out_file.c_str(), file.content().size(), file.media_type().c_str());
      } else {
        v1::GetReportRequest req;
        req.set_run_id(id);
        v1::PerformanceReport r;
        Check(aggregator->GetReport(ctx().get(), req, &r));
        if (g.json) {
          PrintJson(r);
        } else {
          std::printf("%s %s: rata-rata capaian %.1f%% (%s)\n", r.organisasi().c_str(), r.period().c_str(),
                      r.rata_rata_capaian(), r.predikat().c_str());
          for (const auto& u : r.units())
            for (const auto& c : u.indikator())
              std::printf("  %-28s %-6s target %8.2f realisasi %8.2f capaian %6.1f%% %s\n", u.unit().c_str(),
                          c.kode().c_str(), c.target(), c.realisasi(), c.capaian(), c.predikat().c_str());
          for (const auto& u : r.not_submitted()) std::printf("  belum menyampaikan: %s\n", u.c_str());
        }
      }
    } else if (metrics_cmd->parsed()) {
      v1::GetProcessMetricsRequest req;
      req.set_run_id(id);
      req.set_sop_id(sop);
      req.set_period(period);
      v1::ProcessMetrics m;
      Check(aggregator->GetProcessMetrics(ctx().get(), req, &m));
      if (g.json) {
        PrintJson(m);
      } else {
        std::printf("%u run(s)\n%-5s %-22s %6s %10s %10s %10s %8s %9s\n", m.runs(), "step", "pelaksana", "count",
                    "median_s", "p90_s", "waktu_s", "within", "revisions");
        for (const auto& s : m.steps())
          std::printf("%-5u %-22s %6u %10.0f %10.0f %10.0f %7.0f%% %9u\n", s.step(), s.pelaksana().c_str(), s.count(),
                      s.median_seconds(), s.p90_seconds(), s.standard_seconds(), s.within_standard_share() * 100,
                      s.revisions());
        for (const auto& a : m.bottlenecks())
          std::printf("bottleneck %-22s overrun %8.0f s, median taken/waktu %.2f\n", a.pelaksana().c_str(),
                      a.overrun_seconds(), a.median_ratio());
      }
    } else if (records_cmd->parsed()) {
      v1::SearchRecordsRequest req;
      req.set_sop_id(sop);
      req.set_text(text);
      req.set_page_size(page_size);
      req.set_page_token(page_token);
      v1::SearchRecordsResponse resp;
      Check(archiver->SearchRecords(ctx().get(), req, &resp));
      PrintPage(resp, "records", g.json, [&] { PrintRecords(resp.records()); });
    } else if (due_cmd->parsed()) {
      v1::ListDueRequest req;
      req.set_due(disposition ? v1::ListDueRequest::DISPOSITION : v1::ListDueRequest::TRANSFER);
      req.set_date(date);
      req.set_page_size(page_size);
      req.set_page_token(page_token);
      v1::SearchRecordsResponse resp;
      Check(archiver->ListDue(ctx().get(), req, &resp));
      PrintPage(resp, "due", g.json, [&] { PrintRecords(resp.records()); });
    } else if (access_cmd->parsed()) {
      v1::ListAccessLogRequest req;
      req.set_record_id(id);
      req.set_page_size(page_size);
      req.set_page_token(page_token);
      v1::ListAccessLogResponse resp;
      Check(archiver->ListAccessLog(ctx().get(), req, &resp));
      PrintPage(resp, "access-log", g.json, [&] {
        for (const auto& e : resp.entries())
          std::printf("%s %-20s %s\n", When(e.time()).c_str(), e.user().c_str(), e.action().c_str());
      });
    } else if (verify_cmd->parsed()) {
      v1::VerifyRequest req;
      req.set_record_id(id);
      v1::VerifyResponse resp;
      Check(archiver->Verify(ctx().get(), req, &resp));
      std::printf("%s: %u record(s) and %u blob(s) checked\n", resp.ok() ? "archive intact" : "ARCHIVE DAMAGED",
                  resp.records_checked(), resp.blobs_checked());
      for (const auto& p : resp.problems()) std::printf("  %s: %s\n", p.record_id().c_str(), p.what().c_str());
      if (!resp.ok()) return 2;
    } else if (cancel->parsed()) {
      v1::CancelRunRequest req;
      req.set_run_id(id);
      req.set_reason(reason);
      v1::Run resp;
      Check(stub->CancelRun(ctx().get(), req, &resp));
      std::printf("%s %s\n", resp.id().c_str(), v1::Run::Status_Name(resp.status()).c_str());
    }
  } catch (const std::exception& e) {
    std::cerr << "sopctl: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

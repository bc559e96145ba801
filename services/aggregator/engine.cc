#include "engine.h"

#include <google/protobuf/util/time_util.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "error.h"
#include "export.h"
#include "ids.h"
#include "leased_queue.h"

namespace sopflow::aggregator {

using google::protobuf::util::TimeUtil;

namespace keys {
std::string Catalogue(const std::string& unit, int year) { return "sf:a:cat:" + unit + ":" + std::to_string(year); }
// The units whose catalogues roll up into an organisation in a year.
std::string Organisation(const std::string& org, int year) { return "sf:a:org:" + org + ":" + std::to_string(year); }
std::string Run(const std::string& run) { return "sf:a:run:" + run; }
std::string Submissions(const std::string& run) { return "sf:a:subs:" + run; }
std::string Current(const std::string& run) { return "sf:a:cur:" + run; }
std::string Values(const std::string& unit, int year) { return "sf:a:q:" + unit + ":" + std::to_string(year); }
std::string Report(const std::string& run) { return "sf:a:report:" + run; }
std::string MetricsOf(const std::string& sop, const std::string& period) { return "sf:a:pm:" + sop + ":" + period; }
std::string MetricsOfRun(const std::string& run) { return "sf:a:pm:run:" + run; }
std::string Done(const std::string& cause) { return "sf:a:done:" + cause; }
inline constexpr char kDeadlines[] = "sf:a:deadlines";
}  // namespace keys

namespace {

constexpr char kKeep[] = "63072000";  // two years
constexpr int kMaxAttempts = 16;

google::protobuf::Timestamp Stamp(TimePoint t) { return TimeUtil::MillisecondsToTimestamp(UnixMillis(t)); }

std::string RunOfTask(const std::string& task_id) { return task_id.substr(0, task_id.find('.')); }


// Quarter key: 1-4, or 0 for a value given for the whole year.
int QuarterOf(const kinerja::Period& p) { return p.scope == kinerja::Period::kQuarter ? p.index : 0; }

std::string Problems(const std::vector<v1::FieldProblem>& problems) {
  std::string out;
  for (const auto& p : problems) out += (out.empty() ? "" : "\n") + p.field() + ": " + p.message();
  return out;
}

}  // namespace

Engine::Engine(RedisPool* pool, const Clock* clock, AttachFn attach, std::string source)
    : pool_(pool), clock_(clock), attach_(std::move(attach)), source_(std::move(source)) {}

// ------------------------------------------------------------- catalogues

std::vector<v1::Catalogue> Engine::LoadCatalogue(const User& user, const std::string& yaml, const std::string& file) {
  if (!user.admin) ThrowDenied("only an admin loads indicator catalogues");
  auto cats = kinerja::ParseCatalogues(yaml, file.empty() ? "catalogue.yaml" : file);
  RedisBatch b;
  for (const auto& c : cats) {
    b.Write({"SET", keys::Catalogue(c.unit(), c.tahun()), c.SerializeAsString()});
    b.Write({"SADD", keys::Organisation(c.organisasi(), c.tahun()), c.unit()});
  }
  Commit(b);
  return cats;
}

void Engine::LoadCatalogueTrusted(const std::string& yaml, const std::string& file) {
  User system;
  system.id = "system";
  system.admin = true;
  for (const auto& c : LoadCatalogue(system, yaml, file))
    spdlog::info("catalogue {} {}: {} indicator(s)", c.unit(), c.tahun(), c.indikator_size());
}

std::optional<v1::Catalogue> Engine::Catalogue(const std::string& unit, int year) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"GET", keys::Catalogue(unit, year)});
  auto s = ReplyString(r.get());
  if (!s) return std::nullopt;
  v1::Catalogue c;
  c.ParseFromString(*s);
  return c;
}

v1::Catalogue Engine::GetCatalogue(const std::string& unit, int year) {
  auto c = Catalogue(unit, year);
  if (!c) ThrowNotFound("no catalogue for unit '" + unit + "' in " + std::to_string(year));
  return *c;
}

// ------------------------------------------------------------------- runs

std::optional<Engine::RunInfo> Engine::LoadRun(const std::string& run_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HMGET", keys::Run(run_id), "pb", "collect_step", "collect_gen", "collect_role", "collect_group",
                          "closed"});
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 6) return std::nullopt;
  auto pb = ReplyString(r->element[0]);
  if (!pb) return std::nullopt;
  RunInfo info;
  info.run.ParseFromString(*pb);
  info.collect_step = static_cast<uint32_t>(ReplyInteger(r->element[1]));
  info.collect_gen = static_cast<uint32_t>(ReplyInteger(r->element[2]));
  info.collect_role = ReplyString(r->element[3]).value_or("");
  info.collect_group = ReplyString(r->element[4]).value_or("");
  info.closed = ReplyString(r->element[5]).value_or("") == "1";
  return info;
}

bool Engine::MayRead(const User& user, const RunInfo& info) const {
  if (user.Has("read_runs") || user.unit == info.run.unit() || user.Has("attach_documents")) return true;
  for (const auto& [group, list] : info.run.members())
    for (const auto& m : list.members())
      if (m == user.unit || m == user.id) return true;
  return false;
}

std::map<std::string, v1::Submission> Engine::Current(const std::string& run_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HGETALL", keys::Current(run_id)});
  std::map<std::string, v1::Submission> out;
  auto flat = ReplyStrings(r.get());
  for (size_t i = 0; i + 1 < flat.size(); i += 2) {
    if (flat[i].rfind("v:", 0) == 0) continue;  // version counters
    v1::Submission s;
    if (s.ParseFromString(flat[i + 1])) out[flat[i]] = s;
  }
  return out;
}

// ------------------------------------------------------------ submissions

v1::Submission Engine::Submit(const User& user, const v1::SubmitRealisasiRequest& req) {
  if (req.run_id().empty()) ThrowInvalid("run_id", "is required");
  if (req.unit().empty()) ThrowInvalid("unit", "is required");
  auto info = LoadRun(req.run_id());
  if (!info) ThrowNotFound("no run '" + req.run_id() + "' (or not seen yet)");
  if (!user.admin && user.unit != req.unit() && user.id != req.unit())
    ThrowDenied("you submit for your own unit '" + user.unit + "', not '" + req.unit() + "'");
  bool member = false;
  for (const auto& [group, list] : info->run.members())
    for (const auto& m : list.members()) member |= m == req.unit();
  if (!member) ThrowInvalid("unit", "'" + req.unit() + "' is not a member of run " + req.run_id());
  if (info->closed) ThrowPrecondition("the collecting step of run " + req.run_id() + " is closed");
  kinerja::Period period;
  kinerja::ParsePeriod(req.period(), &period);
  auto cat = Catalogue(req.unit(), period.year);
  auto problems = kinerja::Validate(cat ? &*cat : nullptr, info->run.period(), req);
  if (!problems.empty()) throw DomainError(ErrorCode::kInvalidArgument, Problems(problems), problems[0].field());
  v1::Submission s;
  s.set_run_id(req.run_id());
  s.set_unit(req.unit());
  s.set_period(req.period());
  *s.mutable_items() = req.items();
  s.set_catatan(req.catatan());
  s.set_submitted_by(user.id);
  s.set_source("grpc");
  return Store(std::move(s), *info, "");
}

v1::Submission Engine::Store(v1::Submission s, const RunInfo& run, const std::string& cause) {
  kinerja::Period period;
  kinerja::ParsePeriod(s.period(), &period);
  int q = QuarterOf(period);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto conn = pool_->Acquire();
    Reply v = conn->Command({"HGET", keys::Current(s.run_id()), "v:" + s.unit()});
    long long version = ReplyInteger(v.get());
    s.set_version(static_cast<uint32_t>(version + 1));
    s.set_id(s.run_id() + "/" + s.unit() + "/" + std::to_string(s.version()));
    s.set_status(v1::Submission::ACCEPTED);
    *s.mutable_submitted_at() = Stamp(clock_->Now());
    RedisBatch b;
    if (!cause.empty()) {
      b.ExpectAbsent(keys::Done(cause));
      b.Write({"SET", keys::Done(cause), "1", "EX", kKeep});
    }
    b.ExpectField(keys::Current(s.run_id()), "v:" + s.unit(), version ? std::to_string(version) : "");
    b.ExpectField(keys::Run(s.run_id()), "closed", "");
    b.Write({"HSET", keys::Current(s.run_id()), "v:" + s.unit(), std::to_string(s.version()), s.unit(),
             s.SerializeAsString()});
    b.Write({"RPUSH", keys::Submissions(s.run_id()), s.SerializeAsString()});
    std::vector<std::string> values{"HSET", keys::Values(s.unit(), period.year)};
    for (const auto& item : s.items()) {
      values.insert(values.end(), {item.kode() + "|" + std::to_string(q), std::to_string(item.realisasi())});
      values.insert(values.end(), {"b|" + item.kode() + "|" + std::to_string(q), std::to_string(item.anggaran())});
    }
    if (values.size() > 2) b.Write(values);
    int failed = Commit(b);
    if (failed == 0) return s;
    if (!cause.empty() && failed == 1) return s;  // this event was applied before
    int closed_guard = cause.empty() ? 2 : 3;
    if (failed == closed_guard) ThrowPrecondition("the collecting step of run " + s.run_id() + " is closed");
    // Another submission of the same unit won the version: go again.
  }
  throw DomainError(ErrorCode::kUnavailable, "submissions of " + s.unit() + " kept racing; retry");
}

void Engine::StoreRejected(v1::Submission s, const std::string& cause) {
  s.set_status(v1::Submission::REJECTED);
  s.set_id(cause + "/rejected");
  *s.mutable_submitted_at() = Stamp(clock_->Now());
  RedisBatch b;
  b.ExpectAbsent(keys::Done(cause));
  b.Write({"SET", keys::Done(cause), "1", "EX", kKeep});
  b.Write({"RPUSH", keys::Submissions(s.run_id()), s.SerializeAsString()});
  Commit(b);
}

std::vector<v1::Submission> Engine::ListSubmissions(const User& user, const std::string& run_id, const std::string& unit) {
  auto info = LoadRun(run_id);
  if (!info) ThrowNotFound("no run '" + run_id + "'");
  if (!MayRead(user, *info)) ThrowDenied("run " + run_id + " belongs to unit '" + info->run.unit() + "'");
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"LRANGE", keys::Submissions(run_id), "0", "-1"});
  auto current = Current(run_id);
  std::vector<v1::Submission> out;
  for (const auto& bytes : ReplyStrings(r.get())) {
    v1::Submission s;
    if (!s.ParseFromString(bytes) || (!unit.empty() && s.unit() != unit)) continue;
    if (s.status() == v1::Submission::ACCEPTED && current[s.unit()].version() != s.version())
      s.set_status(v1::Submission::SUPERSEDED);  // a resubmission replaced it; it stays in the history
    out.push_back(std::move(s));
  }
  return out;
}

// ---------------------------------------------------------------- reports

v1::PerformanceReport Engine::BuildReport(const RunInfo& info, TimePoint at) {
  kinerja::Period period;
  kinerja::ParsePeriod(info.run.period(), &period);
  v1::PerformanceReport report;
  report.set_id(info.run.id() + "/" + std::to_string(info.collect_gen));
  report.set_run_id(info.run.id());
  report.set_sop_id(info.run.sop_id());
  report.set_period(info.run.period());
  *report.mutable_generated_at() = Stamp(at);
  report.set_uri("sopflow://aggregator/reports/" + info.run.id());
  auto current = Current(info.run.id());
  std::vector<std::string> members;
  if (auto it = info.run.members().find(info.collect_group); it != info.run.members().end())
    members.assign(it->second.members().begin(), it->second.members().end());
  std::vector<v1::RatingBand> bands = kinerja::DefaultBands();
  std::map<std::string, std::pair<double, int>> parents;  // parent kode -> (sum, n)
  std::map<std::string, v1::Indicator> parent_defs;
  double sum = 0;
  int submitted_units = 0;
  for (const auto& unit : members) {
    auto cat = Catalogue(unit, period.year);
    bool submitted = current.count(unit) > 0;
    if (!submitted) report.add_not_submitted(unit);
    if (!cat) {
      auto* u = report.add_units();
      u->set_unit(unit);
      u->set_period(period.ToString());
      u->set_submitted(submitted);
      continue;
    }
    report.set_organisasi(cat->organisasi());
    if (cat->bands_size()) bands.assign(cat->bands().begin(), cat->bands().end());
    auto conn = pool_->Acquire();
    Reply r = conn->Command({"HGETALL", keys::Values(unit, period.year)});
    std::map<std::string, std::map<int, double>> values, budget;
    auto flat = ReplyStrings(r.get());
    for (size_t i = 0; i + 1 < flat.size(); i += 2) {
      const std::string& field = flat[i];
      bool is_budget = field.rfind("b|", 0) == 0;
      std::string rest = is_budget ? field.substr(2) : field;
      auto bar = rest.rfind('|');
      (is_budget ? budget : values)[rest.substr(0, bar)][std::stoi(rest.substr(bar + 1))] = std::stod(flat[i + 1]);
    }
    v1::UnitReport u = kinerja::UnitReportFor(*cat, period, values, budget);
    u.set_submitted(submitted);
    if (submitted) u.set_submission_version(current[unit].version());
    if (submitted && u.rata_rata_capaian() > 0) {
      sum += u.rata_rata_capaian();
      ++submitted_units;
    }
    for (const auto& parent : cat->organisasi_indikator()) parent_defs[parent.kode()] = parent;
    for (int i = 0; i < cat->indikator_size(); ++i)
      if (!cat->indikator(i).induk().empty() && u.indikator(i).reported()) {
        auto& acc = parents[cat->indikator(i).induk()];
        acc.first += u.indikator(i).capaian();
        ++acc.second;
      }
    *report.add_units() = std::move(u);
  }
  if (submitted_units > 0) {
    report.set_rata_rata_capaian(sum / submitted_units);
    report.set_predikat(kinerja::Predikat(bands, report.rata_rata_capaian()));
  }
  for (const auto& [kode, acc] : parents) {
    auto* c = report.add_organisasi_indikator();
    c->set_kode(kode);
    c->set_nama(parent_defs[kode].nama());
    c->set_satuan(parent_defs[kode].satuan());
    c->set_capaian(acc.first / acc.second);
    c->set_rumus("cascading: mean capaian of " + std::to_string(acc.second) + " child indicator(s)");
    c->set_predikat(kinerja::Predikat(bands, c->capaian()));
    c->set_reported(true);
  }
  return report;
}

v1::PerformanceReport Engine::GetReport(const User& user, const std::string& run_id) {
  auto info = LoadRun(run_id);
  if (!info) ThrowNotFound("no run '" + run_id + "'");
  if (!MayRead(user, *info)) ThrowDenied("run " + run_id + " belongs to unit '" + info->run.unit() + "'");
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"GET", keys::Report(run_id)});
  if (auto bytes = ReplyString(r.get())) {
    v1::PerformanceReport report;
    report.ParseFromString(*bytes);
    return report;
  }
  if (info->collect_gen == 0) ThrowPrecondition("run " + run_id + " has not reached its collecting step");
  return BuildReport(*info, clock_->Now());  // a preview while the step is open
}

v1::ReportFile Engine::Export(const User& user, const std::string& run_id, v1::ExportReportRequest::Format format) {
  v1::PerformanceReport report = GetReport(user, run_id);
  v1::ReportFile file;
  std::string base = "data-kinerja-" + report.period() + "-" + run_id;
  switch (format) {
    case v1::ExportReportRequest::CSV:
      file.set_filename(base + ".csv");
      file.set_media_type("text/csv; charset=utf-8");
      file.set_content(kinerja::ToCsv(report));
      break;
    case v1::ExportReportRequest::XLSX:
      file.set_filename(base + ".xlsx");
      file.set_media_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
      file.set_content(kinerja::ToXlsx(report));
      break;
    case v1::ExportReportRequest::HTML:
      file.set_filename(base + ".html");
      file.set_media_type("text/html; charset=utf-8");
      file.set_content(kinerja::ToHtml(report));
      break;
    default: ThrowInvalid("format", "CSV, XLSX or HTML");
  }
  return file;
}

v1::UnitReport Engine::Rollup(const User& user, const std::string& unit, const std::string& period_text) {
  kinerja::Period period;
  if (!kinerja::ParsePeriod(period_text, &period)) ThrowInvalid("period", "not a period (2026-Q3, 2026-S1, 2026)");
  auto cat = Catalogue(unit, period.year);
  if (!cat) {
    // The whole organisation: every unit's indicators, rated together.
    std::vector<std::string> units;
    {
      auto conn = pool_->Acquire();
      Reply r = conn->Command({"SMEMBERS", keys::Organisation(unit, period.year)});
      units = ReplyStrings(r.get());
    }
    if (units.empty()) ThrowNotFound("no catalogue for unit or organisation '" + unit + "' in " + std::to_string(period.year));
    if (!user.admin && user.unit != unit) ThrowDenied("the roll-up of '" + unit + "' is for its own users");
    std::sort(units.begin(), units.end());
    User reader = user;
    reader.admin = true;  // checked above for the organisation as a whole
    v1::UnitReport org;
    org.set_unit(unit);
    org.set_period(period.ToString());
    double sum = 0;
    int rated = 0;
    std::vector<v1::RatingBand> bands = kinerja::DefaultBands();
    for (const auto& u : units) {
      v1::UnitReport part = Rollup(reader, u, period_text);
      if (auto c = Catalogue(u, period.year); c && c->bands_size()) bands.assign(c->bands().begin(), c->bands().end());
      for (const auto& c : part.indikator()) *org.add_indikator() = c;
      org.set_pagu(org.pagu() + part.pagu());
      org.set_realisasi_anggaran(org.realisasi_anggaran() + part.realisasi_anggaran());
      if (part.rata_rata_capaian() > 0) {
        sum += part.rata_rata_capaian();
        ++rated;
      }
    }
    if (rated > 0) {
      org.set_rata_rata_capaian(sum / rated);
      org.set_predikat(kinerja::Predikat(bands, org.rata_rata_capaian()));
    }
    org.set_serapan(org.pagu() > 0 ? org.realisasi_anggaran() / org.pagu() * 100 : 0);
    return org;
  }
  if (!user.admin && user.unit != unit && user.id != unit && user.unit != cat->organisasi())
    ThrowDenied("unit " + unit + " reports to '" + cat->organisasi() + "'");
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HGETALL", keys::Values(unit, period.year)});
  std::map<std::string, std::map<int, double>> values, budget;
  auto flat = ReplyStrings(r.get());
  for (size_t i = 0; i + 1 < flat.size(); i += 2) {
    bool is_budget = flat[i].rfind("b|", 0) == 0;
    std::string rest = is_budget ? flat[i].substr(2) : flat[i];
    auto bar = rest.rfind('|');
    int q = std::stoi(rest.substr(bar + 1));
    if (q == 0) continue;  // whole-year values have no quarters to roll up
    (is_budget ? budget : values)[rest.substr(0, bar)][q] = std::stod(flat[i + 1]);
  }
  return kinerja::UnitReportFor(*cat, period, values, budget);
}

v1::ProcessMetrics Engine::ProcessMetrics(const User& user, const v1::GetProcessMetricsRequest& req) {
  std::string key;
  if (!req.run_id().empty()) key = keys::MetricsOfRun(req.run_id());
  else if (!req.sop_id().empty() && !req.period().empty()) key = keys::MetricsOf(req.sop_id(), req.period());
  else ThrowInvalid("run_id", "give a run_id, or a sop_id with a period");
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"LRANGE", key, "0", "-1"});
  std::vector<kinerja::TaskRecord> records;
  for (const auto& bytes : ReplyStrings(r.get())) {
    kinerja::TaskRecord rec;
    if (!rec.entry.ParseFromString(bytes)) continue;
    rec.run_id = RunOfTask(rec.entry.task_id());
    records.push_back(std::move(rec));
  }
  v1::ProcessMetrics m = kinerja::ComputeProcessMetrics(records);
  m.set_sop_id(req.sop_id());
  m.set_period(req.period());
  m.set_run_id(req.run_id());
  return m;
}

// ----------------------------------------------------------------- events

void Engine::OnEvent(const v1::Event& event) {
  switch (event.payload_case()) {
    case v1::Event::kRunStarted: {
      RedisBatch b;
      b.ExpectAbsent(keys::Done(event.id()));
      b.Write({"SET", keys::Done(event.id()), "1", "EX", kKeep});
      b.Write({"HSET", keys::Run(event.run_id()), "pb", event.run_started().run().SerializeAsString()});
      b.Write({"EXPIRE", keys::Run(event.run_id()), kKeep});
      Commit(b);
      return;
    }
    case v1::Event::kTaskCreated: {
      const auto& task = event.task_created().task();
      if (task.kind() != v1::Step::FAN_OUT) return;
      auto info = LoadRun(task.run_id());
      std::string group;
      if (info)
        for (const auto& [name, list] : info->run.members())
          for (const auto& m : list.members())
            if (m == task.member()) group = name;
      RedisBatch b;  // every member task writes the same: idempotent without a marker
      b.Write({"HSET", keys::Run(task.run_id()), "collect_step", std::to_string(task.step()), "collect_gen",
               std::to_string(task.gen()), "collect_role", task.pelaksana(), "collect_group", group});
      if (task.has_due_at())
        b.Write({"ZADD", keys::kDeadlines, "NX", std::to_string(TimeUtil::TimestampToMilliseconds(task.due_at())),
                 task.run_id() + "|" + std::to_string(task.gen())});
      Commit(b);
      return;
    }
    case v1::Event::kTaskCompleted:
      OnTaskCompleted(event);
      return;
    case v1::Event::kStepCompleted: {
      auto info = LoadRun(event.run_id());
      if (info && info->collect_gen != 0 && event.step_completed().gen() == info->collect_gen)
        OnCollectingStepClosed(event, *info);
      return;
    }
    default:
      return;
  }
}

void Engine::OnTaskCompleted(const v1::Event& event) {
  const auto& task = event.task_completed().task();
  const auto& entry = event.task_completed().entry();
  // Process metrics: one line per completed task, by SOP and period and by run.
  RedisBatch b;
  b.ExpectAbsent(keys::Done(event.id() + "/metrics"));
  b.Write({"SET", keys::Done(event.id() + "/metrics"), "1", "EX", kKeep});
  b.Write({"RPUSH", keys::MetricsOf(event.sop_id(), event.period()), entry.SerializeAsString()});
  b.Write({"RPUSH", keys::MetricsOfRun(event.run_id()), entry.SerializeAsString()});
  Commit(b);
  // A fan-out member's output carrying realisasi is its submission.
  if (task.kind() != v1::Step::FAN_OUT || !task.output().data().fields().count("realisasi")) return;
  auto info = LoadRun(task.run_id());
  if (!info) throw DomainError(ErrorCode::kUnavailable, "run " + task.run_id() + " not seen yet");
  std::vector<v1::FieldProblem> problems;
  v1::SubmitRealisasiRequest req = kinerja::FromTaskOutput(task, &problems);
  kinerja::Period period;
  kinerja::ParsePeriod(req.period(), &period);
  auto cat = Catalogue(req.unit(), period.year);
  if (problems.empty()) problems = kinerja::Validate(cat ? &*cat : nullptr, info->run.period(), req);
  v1::Submission s;
  s.set_run_id(req.run_id());
  s.set_unit(req.unit());
  s.set_period(req.period());
  *s.mutable_items() = req.items();
  s.set_catatan(req.catatan());
  s.set_submitted_by(task.assignee());
  s.set_source(task.id());
  if (!problems.empty()) {
    *s.mutable_problems() = {problems.begin(), problems.end()};
    spdlog::warn("submission of {} from task {} rejected: {}", s.unit(), task.id(), Problems(problems));
    StoreRejected(std::move(s), event.id());
    return;
  }
  try {
    Store(std::move(s), *info, event.id());
  } catch (const DomainError& e) {
    if (e.code() != ErrorCode::kFailedPrecondition) throw;  // closed meanwhile: nothing to add
  }
}

void Engine::OnCollectingStepClosed(const v1::Event& event, const RunInfo& info) {
  RedisBatch b;
  b.ExpectAbsent(keys::Done(event.id()));
  b.Write({"SET", keys::Done(event.id()), "1", "EX", kKeep});
  b.Write({"HSET", keys::Run(info.run.id()), "closed", "1"});
  b.Write({"ZREM", keys::kDeadlines, info.run.id() + "|" + std::to_string(info.collect_gen)});
  v1::PerformanceReport report;
  {
    auto conn = pool_->Acquire();
    Reply r = conn->Command({"GET", keys::Report(info.run.id())});
    auto bytes = ReplyString(r.get());
    if (bytes) report.ParseFromString(*bytes);
  }
  if (report.id().empty()) {
    report = BuildReport(info, FromUnixMillis(TimeUtil::TimestampToMilliseconds(event.time())));
    b.Write({"SET", keys::Report(info.run.id()), report.SerializeAsString(), "EX", kKeep});
    Commit(b);  // a redelivery finds the report stored and only attaches
  }
  v1::DocumentRef doc;
  doc.set_name("Draft Data Kinerja " + report.period() + " (agregat)");
  doc.set_uri(report.uri());
  doc.set_sha256(Sha256Hex(report.SerializeAsString()));
  doc.set_media_type("application/vnd.sopflow.performance-report");
  attach_(info.run.id() + "." + std::to_string(info.collect_gen + 1), doc);
}

size_t Engine::FireDeadlines(int limit) {
  size_t fired = 0;
  for (const auto& item : ClaimDue(*pool_, keys::kDeadlines, UnixMillis(clock_->Now()), 30000, limit)) {
    auto bar = item.id.find('|');
    std::string run_id = item.id.substr(0, bar);
    auto info = LoadRun(run_id);
    RedisBatch b;
    b.ExpectAbsent(keys::Done(item.id));
    b.Write({"SET", keys::Done(item.id), "1", "EX", kKeep});
    b.Write({"ZREM", keys::kDeadlines, item.id});
    if (info && !info->closed) {
      auto current = Current(run_id);
      v1::Event e;
      e.set_id(item.id + "/submissions_late");
      e.set_type("sopflow.v1.aggregator.submissions_late");
      e.set_source(source_);
      *e.mutable_time() = Stamp(clock_->Now());
      e.set_subject(run_id);
      e.set_run_id(run_id);
      e.set_sop_id(info->run.sop_id());
      e.set_sop_version(info->run.sop_version());
      e.set_unit(info->run.unit());
      e.set_period(info->run.period());
      auto* late = e.mutable_submissions_late();
      late->set_step(info->collect_step);
      late->set_role(info->collect_role);
      if (auto it = info->run.members().find(info->collect_group); it != info->run.members().end())
        for (const auto& m : it->second.members())
          if (!current.count(m)) late->add_units(m);
      if (late->units_size() > 0) {
        b.Emit(e, kOutbox);
        ++fired;
      }
    }
    Commit(b);
  }
  return fired;
}

}  // namespace sopflow::aggregator

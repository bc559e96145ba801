#include "kinerja.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

#include "error.h"

namespace sopflow::kinerja {

std::string Period::ToString() const {
  std::string y = std::to_string(year);
  if (scope == kQuarter) return y + "-Q" + std::to_string(index);
  if (scope == kSemester) return y + "-S" + std::to_string(index);
  return y;
}

bool ParsePeriod(const std::string& text, Period* out) {
  static const std::regex kRe(R"((\d{4})(?:-(Q|TW|S)([1-4]))?)");
  std::smatch m;
  if (!std::regex_match(text, m, kRe)) return false;
  out->year = std::stoi(m[1]);
  if (!m[2].matched) {
    out->scope = Period::kYear;
    out->index = 0;
    return true;
  }
  out->index = std::stoi(m[3]);
  out->scope = m[2] == "S" ? Period::kSemester : Period::kQuarter;
  return out->scope == Period::kQuarter || out->index <= 2;
}

namespace {

struct Problems {
  std::string file;
  std::vector<std::string> lines;
  void Add(const YAML::Node& at, const std::string& field, const std::string& message) {
    lines.push_back(file + ":" + std::to_string(at.Mark().line + 1) + ": " + field + ": " + message);
  }
};

std::string Text(const YAML::Node& n, const char* key) { return n[key] ? n[key].as<std::string>("") : ""; }

bool Number(const YAML::Node& n, double* out) {
  try {
    *out = n.as<double>();
    return std::isfinite(*out);
  } catch (const YAML::Exception&) {
    return false;
  }
}

v1::Indicator ReadIndicator(const YAML::Node& n, const std::string& where, Problems& p) {
  static const std::set<std::string> kKeys{"kode",  "nama",  "sasaran",  "satuan", "arah", "rentang", "aspek", "induk",
                                           "target", "target_tahun", "agregasi", "pagu", "batas"};
  v1::Indicator ind;
  for (const auto& kv : n)
    if (!kKeys.count(kv.first.as<std::string>())) p.Add(kv.first, where + "." + kv.first.as<std::string>(), "unknown field");
  ind.set_kode(Text(n, "kode"));
  if (ind.kode().empty()) p.Add(n, where + ".kode", "is required");
  ind.set_nama(Text(n, "nama"));
  ind.set_sasaran(Text(n, "sasaran"));
  ind.set_satuan(Text(n, "satuan"));
  ind.set_aspek(Text(n, "aspek"));
  ind.set_induk(Text(n, "induk"));
  std::string arah = n["arah"] ? Text(n, "arah") : "naik";
  if (arah == "naik") ind.set_arah(v1::Indicator::HIGHER_IS_BETTER);
  else if (arah == "turun") ind.set_arah(v1::Indicator::LOWER_IS_BETTER);
  else if (arah == "rentang") ind.set_arah(v1::Indicator::RANGE);
  else p.Add(n["arah"], where + ".arah", "must be naik, turun or rentang");
  if (ind.arah() == v1::Indicator::RANGE) {
    double lo = 0, hi = 0;
    YAML::Node r = n["rentang"];
    if (!r || !Number(r["min"], &lo) || !Number(r["max"], &hi) || lo <= 0 || lo > hi)
      p.Add(r ? r : n, where + ".rentang", "a rentang indicator needs {min, max} with 0 < min <= max");
    ind.set_range_min(lo);
    ind.set_range_max(hi);
  }
  YAML::Node t = n["target"];
  if (!t || !t.IsSequence() || t.size() != 4) {
    p.Add(t ? t : n, where + ".target", "needs the four quarterly targets [TW I, TW II, TW III, TW IV]");
  } else {
    for (size_t q = 0; q < 4; ++q) {
      double v;
      if (!Number(t[q], &v)) p.Add(t[q], where + ".target[" + std::to_string(q) + "]", "must be a number");
      ind.add_target_tw(v);
    }
  }
  std::string rule = n["agregasi"] ? Text(n, "agregasi") : "kumulatif";
  if (rule == "kumulatif") ind.set_agregasi(v1::Indicator::CUMULATIVE);
  else if (rule == "terakhir") ind.set_agregasi(v1::Indicator::LAST_VALUE);
  else if (rule == "rata-rata") ind.set_agregasi(v1::Indicator::AVERAGE);
  else p.Add(n["agregasi"], where + ".agregasi", "must be kumulatif, terakhir or rata-rata");
  double v;
  if (n["target_tahun"]) {
    if (!Number(n["target_tahun"], &v)) p.Add(n["target_tahun"], where + ".target_tahun", "must be a number");
    else ind.set_target_tahun(v);
  }
  if (n["pagu"]) {
    if (!Number(n["pagu"], &v) || v < 0) p.Add(n["pagu"], where + ".pagu", "must be a number >= 0");
    else ind.set_pagu(v);
  }
  if (YAML::Node b = n["batas"]) {
    if (b["min"]) {
      if (Number(b["min"], &v)) {
        ind.set_has_min(true);
        ind.set_min_value(v);
      } else {
        p.Add(b["min"], where + ".batas.min", "must be a number");
      }
    }
    if (b["max"]) {
      if (Number(b["max"], &v)) {
        ind.set_has_max(true);
        ind.set_max_value(v);
      } else {
        p.Add(b["max"], where + ".batas.max", "must be a number");
      }
    }
  }
  return ind;
}

}  // namespace

std::vector<v1::Catalogue> ParseCatalogues(const std::string& yaml, const std::string& file_name) {
  Problems p{file_name, {}};
  std::vector<v1::Catalogue> out;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw DomainError(ErrorCode::kInvalidArgument, file_name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg, "yaml");
  }
  try {
    int year = root["tahun"] ? root["tahun"].as<int>(0) : 0;
    if (year < 2000 || year > 2100) p.Add(root, "tahun", "is required: the year, e.g. 2026");
    std::string org = Text(root, "organisasi");
    if (org.empty()) p.Add(root, "organisasi", "is required");
    std::vector<v1::RatingBand> bands;
    if (YAML::Node b = root["predikat"]) {
      for (const auto& band : b) {
        v1::RatingBand rb;
        double min;
        if (!Number(band["min"], &min)) p.Add(band, "predikat.min", "must be a number");
        rb.set_min(min);
        rb.set_predikat(Text(band, "nama"));
        bands.push_back(rb);
      }
      std::sort(bands.begin(), bands.end(), [](const auto& a, const auto& b) { return a.min() > b.min(); });
    } else {
      bands = DefaultBands();
    }
    std::vector<v1::Indicator> parents;
    std::set<std::string> parent_codes;
    if (YAML::Node list = root["organisasi_indikator"])
      for (size_t i = 0; i < list.size(); ++i) {
        v1::Indicator ind;
        ind.set_kode(Text(list[i], "kode"));
        ind.set_nama(Text(list[i], "nama"));
        ind.set_satuan(Text(list[i], "satuan"));
        parent_codes.insert(ind.kode());
        parents.push_back(ind);
      }
    YAML::Node units = root["unit"];
    if (!units || !units.IsMap() || units.size() == 0) p.Add(root, "unit", "is required: a map of unit -> indikator");
    for (const auto& kv : units) {
      v1::Catalogue c;
      c.set_unit(kv.first.as<std::string>());
      c.set_tahun(year);
      c.set_organisasi(org);
      for (const auto& band : bands) *c.add_bands() = band;
      for (const auto& parent : parents) *c.add_organisasi_indikator() = parent;
      YAML::Node list = kv.second["indikator"];
      std::string where = "unit." + c.unit() + ".indikator";
      if (!list || !list.IsSequence() || list.size() == 0) p.Add(kv.second, where, "needs at least one indicator");
      std::set<std::string> codes;
      for (size_t i = 0; list && i < list.size(); ++i) {
        v1::Indicator ind = ReadIndicator(list[i], where + "[" + std::to_string(i) + "]", p);
        if (!ind.kode().empty() && !codes.insert(ind.kode()).second)
          p.Add(list[i], where + "[" + std::to_string(i) + "].kode", "duplicate kode " + ind.kode());
        if (!ind.induk().empty() && !parent_codes.count(ind.induk()))
          p.Add(list[i]["induk"], where + "[" + std::to_string(i) + "].induk", "no organisasi_indikator " + ind.induk());
        *c.add_indikator() = std::move(ind);
      }
      out.push_back(std::move(c));
    }
  } catch (const YAML::Exception& e) {
    p.lines.push_back(file_name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!p.lines.empty()) {
    std::string message = std::to_string(p.lines.size()) + " problem(s) in the catalogue:";
    for (const auto& l : p.lines) message += "\n  " + l;
    throw DomainError(ErrorCode::kInvalidArgument, message, "yaml");
  }
  return out;
}

std::optional<double> Rollup(const std::map<int, double>& quarters, v1::Indicator::YearRule rule, const Period& period) {
  std::vector<double> values;
  for (int q = period.FirstQuarter(); q <= period.LastQuarter(); ++q)
    if (auto it = quarters.find(q); it != quarters.end()) values.push_back(it->second);
  if (values.empty()) return std::nullopt;
  switch (rule) {
    case v1::Indicator::LAST_VALUE: return values.back();
    case v1::Indicator::AVERAGE: {
      double sum = 0;
      for (double v : values) sum += v;
      return sum / static_cast<double>(values.size());
    }
    default: {
      double sum = 0;
      for (double v : values) sum += v;
      return sum;
    }
  }
}

std::optional<double> TargetFor(const v1::Indicator& ind, const Period& period) {
  if (period.scope == Period::kYear && ind.target_tahun() != 0) return ind.target_tahun();
  std::map<int, double> targets;
  for (int q = 0; q < ind.target_tw_size(); ++q) targets[q + 1] = ind.target_tw(q);
  return Rollup(targets, ind.agregasi(), period);
}

Achievement ComputeCapaian(const v1::Indicator& ind, double target, double r) {
  switch (ind.arah()) {
    case v1::Indicator::LOWER_IS_BETTER:
      if (target <= 0) return {0, "lower_is_better: target 0, undefined"};
      return {std::max(0.0, (2 * target - r) / target * 100), "lower_is_better: (2t-r)/t*100"};
    case v1::Indicator::RANGE: {
      double lo = ind.range_min(), hi = ind.range_max();
      if (r >= lo && r <= hi) return {100, "range: 100 within [min,max]"};
      if (r < lo) return {r / lo * 100, "range: r/min*100 below the range"};
      return {std::max(0.0, (2 * hi - r) / hi * 100), "range: (2max-r)/max*100 above the range"};
    }
    default:
      if (target == 0) return {0, "higher_is_better: target 0, undefined"};
      return {r / target * 100, "higher_is_better: r/t*100"};
  }
}

std::vector<v1::RatingBand> DefaultBands() {
  std::vector<v1::RatingBand> bands;
  for (auto [min, name] : std::vector<std::pair<double, const char*>>{
           {90, "sangat baik"}, {75, "baik"}, {60, "cukup"}, {0, "kurang"}}) {
    v1::RatingBand b;
    b.set_min(min);
    b.set_predikat(name);
    bands.push_back(b);
  }
  return bands;
}

std::string Predikat(const std::vector<v1::RatingBand>& bands, double capaian) {
  for (const auto& b : bands)
    if (capaian >= b.min()) return b.predikat();
  return bands.empty() ? "" : bands.back().predikat();
}

std::vector<v1::FieldProblem> Validate(const v1::Catalogue* catalogue, const std::string& expected_period,
                                       const v1::SubmitRealisasiRequest& req) {
  std::vector<v1::FieldProblem> problems;
  auto add = [&](const std::string& field, const std::string& message) {
    v1::FieldProblem p;
    p.set_field(field);
    p.set_message(message);
    problems.push_back(p);
  };
  Period period;
  if (!ParsePeriod(req.period(), &period)) add("period", "not a period (2026-Q3, 2026-S1, 2026)");
  else if (!expected_period.empty() && req.period() != expected_period)
    add("period", "the run is for " + expected_period + ", not " + req.period());
  if (!catalogue) {
    add("unit", "no indicator catalogue for unit '" + req.unit() + "' in " + std::to_string(period.year));
    return problems;
  }
  if (req.items_size() == 0) add("items", "at least one indicator");
  std::set<std::string> seen;
  for (int i = 0; i < req.items_size(); ++i) {
    const auto& item = req.items(i);
    std::string f = "items[" + std::to_string(i) + "]";
    const v1::Indicator* ind = nullptr;
    for (const auto& c : catalogue->indikator())
      if (c.kode() == item.kode()) ind = &c;
    if (!ind) {
      add(f + ".kode", "unknown indicator '" + item.kode() + "' for unit " + req.unit());
      continue;
    }
    if (!seen.insert(item.kode()).second) add(f + ".kode", "indicator " + item.kode() + " given twice");
    if (!std::isfinite(item.realisasi())) add(f + ".realisasi", "not a number");
    else if (ind->has_min() && item.realisasi() < ind->min_value())
      add(f + ".realisasi", "below the indicator's minimum " + std::to_string(ind->min_value()));
    else if (ind->has_max() && item.realisasi() > ind->max_value())
      add(f + ".realisasi", "above the indicator's maximum " + std::to_string(ind->max_value()));
    if (!std::isfinite(item.anggaran()) || item.anggaran() < 0) add(f + ".anggaran", "must be a number >= 0");
    else if (item.anggaran() > 0 && ind->pagu() == 0) add(f + ".anggaran", "indicator " + item.kode() + " has no pagu");
  }
  return problems;
}

v1::SubmitRealisasiRequest FromTaskOutput(const v1::Task& task, std::vector<v1::FieldProblem>* problems) {
  v1::SubmitRealisasiRequest req;
  req.set_run_id(task.run_id());
  req.set_unit(task.member());
  req.set_period(task.period());
  const auto& fields = task.output().data().fields();
  auto add = [&](const std::string& field, const std::string& message) {
    v1::FieldProblem p;
    p.set_field(field);
    p.set_message(message);
    problems->push_back(p);
  };
  if (auto c = fields.find("catatan"); c != fields.end()) req.set_catatan(c->second.string_value());
  auto r = fields.find("realisasi");
  if (r == fields.end() || !r->second.has_struct_value()) {
    add("output.data.realisasi", "a map of indicator code -> number is required");
    return req;
  }
  const google::protobuf::Struct* budget = nullptr;
  if (auto a = fields.find("anggaran"); a != fields.end() && a->second.has_struct_value()) budget = &a->second.struct_value();
  std::vector<std::string> codes;
  for (const auto& [kode, value] : r->second.struct_value().fields()) codes.push_back(kode);
  std::sort(codes.begin(), codes.end());  // map order is unspecified; keep items stable
  for (const auto& kode : codes) {
    const auto& value = r->second.struct_value().fields().at(kode);
    auto* item = req.add_items();
    item->set_kode(kode);
    if (value.kind_case() != google::protobuf::Value::kNumberValue) add("output.data.realisasi." + kode, "not a number");
    else item->set_realisasi(value.number_value());
    if (budget)
      if (auto b = budget->fields().find(kode); b != budget->fields().end()) {
        if (b->second.kind_case() != google::protobuf::Value::kNumberValue) add("output.data.anggaran." + kode, "not a number");
        else item->set_anggaran(b->second.number_value());
      }
    for (const auto& doc : task.output().documents()) *item->add_bukti() = doc;
  }
  return req;
}

v1::UnitReport UnitReportFor(const v1::Catalogue& cat, const Period& period,
                             const std::map<std::string, std::map<int, double>>& values,
                             const std::map<std::string, std::map<int, double>>& budget) {
  v1::UnitReport u;
  u.set_unit(cat.unit());
  u.set_period(period.ToString());
  std::vector<v1::RatingBand> bands(cat.bands().begin(), cat.bands().end());
  if (bands.empty()) bands = DefaultBands();
  double sum = 0, pagu = 0, spent = 0;
  int reported = 0;
  for (const auto& ind : cat.indikator()) {
    v1::Capaian c;
    c.set_unit(cat.unit());
    c.set_kode(ind.kode());
    c.set_nama(ind.nama());
    c.set_satuan(ind.satuan());
    auto target = TargetFor(ind, period);
    c.set_target(target.value_or(0));
    std::optional<double> r;
    if (auto it = values.find(ind.kode()); it != values.end()) {
      // A value given for the whole year (key 0) stands for the year.
      if (period.scope == Period::kYear && it->second.count(0)) r = it->second.at(0);
      else r = Rollup(it->second, ind.agregasi(), period);
    }
    if (r && target) {
      auto a = ComputeCapaian(ind, *target, *r);
      c.set_realisasi(*r);
      c.set_capaian(a.capaian);
      c.set_rumus(a.rumus);
      c.set_predikat(Predikat(bands, a.capaian));
      c.set_reported(true);
      sum += a.capaian;
      ++reported;
    }
    pagu += ind.pagu();
    if (auto it = budget.find(ind.kode()); it != budget.end())
      for (const auto& [q, amount] : it->second)  // budget: from TW I to the period's end
        if (q <= period.LastQuarter()) spent += amount;
    *u.add_indikator() = std::move(c);
  }
  if (reported > 0) {
    u.set_rata_rata_capaian(sum / reported);
    u.set_predikat(Predikat(bands, u.rata_rata_capaian()));
  }
  u.set_pagu(pagu);
  u.set_realisasi_anggaran(spent);
  u.set_serapan(pagu > 0 ? spent / pagu * 100 : 0);
  return u;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::min(values.size(), std::max<size_t>(rank, 1)) - 1];
}

v1::ProcessMetrics ComputeProcessMetrics(const std::vector<TaskRecord>& records) {
  struct StepAcc {
    std::string pelaksana;
    std::vector<double> taken, standard;
    int within = 0, revisions = 0;
    double overrun = 0;
  };
  struct ActorAcc {
    std::vector<double> ratios;
    double overrun = 0;
    int tasks = 0;
  };
  std::map<uint32_t, StepAcc> steps;
  std::map<std::string, ActorAcc> actors;
  std::set<std::string> runs;
  for (const auto& rec : records) {
    const auto& e = rec.entry;
    runs.insert(rec.run_id);
    auto& s = steps[e.step()];
    s.pelaksana = e.pelaksana();
    double taken = static_cast<double>(e.elapsed_seconds()), standard = static_cast<double>(e.standard_seconds());
    s.taken.push_back(taken);
    if (standard > 0) s.standard.push_back(standard);
    s.within += e.within_standard();
    if (e.kind() == v1::HistoryEntry::TASK_RETURNED) ++s.revisions;
    double over = standard > 0 ? std::max(0.0, taken - standard) : 0;
    s.overrun += over;
    auto& a = actors[e.pelaksana()];
    ++a.tasks;
    a.overrun += over;
    if (standard > 0) a.ratios.push_back(taken / standard);
  }
  v1::ProcessMetrics m;
  m.set_runs(static_cast<uint32_t>(runs.size()));
  for (const auto& [step, s] : steps) {
    auto* out = m.add_steps();
    out->set_step(step);
    out->set_pelaksana(s.pelaksana);
    out->set_count(static_cast<uint32_t>(s.taken.size()));
    out->set_median_seconds(Percentile(s.taken, 50));
    out->set_p90_seconds(Percentile(s.taken, 90));
    out->set_standard_seconds(Percentile(s.standard, 50));
    out->set_within_standard_share(s.taken.empty() ? 0 : static_cast<double>(s.within) / static_cast<double>(s.taken.size()));
    out->set_revisions(static_cast<uint32_t>(s.revisions));
    out->set_revisions_per_run(runs.empty() ? 0 : static_cast<double>(s.revisions) / static_cast<double>(runs.size()));
    out->set_overrun_seconds(s.overrun);
  }
  for (const auto& [pelaksana, a] : actors) {
    auto* out = m.add_bottlenecks();
    out->set_pelaksana(pelaksana);
    out->set_tasks(static_cast<uint32_t>(a.tasks));
    out->set_overrun_seconds(a.overrun);
    out->set_median_ratio(Percentile(a.ratios, 50));
  }
  std::sort(m.mutable_bottlenecks()->begin(), m.mutable_bottlenecks()->end(), [](const auto& x, const auto& y) {
    return x.overrun_seconds() != y.overrun_seconds() ? x.overrun_seconds() > y.overrun_seconds()
                                                      : x.median_ratio() > y.median_ratio();
  });
  return m;
}

}  // namespace sopflow::kinerja

#include "definition.h"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <regex>
#include <set>

#include "error.h"
#include "ids.h"
#include "waktu.h"

namespace sopflow {

std::string Problem::ToString() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!field.empty()) out += field + ": ";
  return out + message;
}

int FindStep(const v1::Definition& def, uint32_t number) {
  for (int i = 0; i < def.steps_size(); ++i)
    if (def.steps(i).number() == number) return i;
  return -1;
}

const v1::Pelaksana* FindPelaksana(const v1::Definition& def, const std::string& id) {
  for (const auto& p : def.pelaksana())
    if (p.id() == id) return &p;
  return nullptr;
}

namespace {

constexpr char kEnd[] = "selesai";  // "the run ends here"

// Collects problems while reading one file.
class Reader {
 public:
  Reader(std::string file, std::vector<Problem>* problems) : file_(std::move(file)), problems_(problems) {}

  void Report(const YAML::Node& at, const std::string& field, const std::string& message) {
    int line = at.IsDefined() ? static_cast<int>(at.Mark().line) + 1 : 0;
    if (line <= 0) line = 0;
    problems_->push_back({file_, line, field, message});
  }
  void ReportLine(int line, const std::string& field, const std::string& message) {
    problems_->push_back({file_, line, field, message});
  }

  // Fails on keys the format does not know: a typo must not pass silently.
  void CheckKeys(const YAML::Node& map, const std::string& where, const std::set<std::string>& known) {
    for (const auto& kv : map) {
      std::string key = kv.first.Scalar();
      if (!known.count(key)) Report(kv.first, Join(where, key), "unknown field");
    }
  }

  std::string String(const YAML::Node& map, const char* key, const std::string& where, bool required) {
    YAML::Node n = map[key];
    if (!n || n.IsNull()) {
      if (required) Report(map, Join(where, key), "is required");
      return {};
    }
    if (!n.IsScalar()) {
      Report(n, Join(where, key), "must be text");
      return {};
    }
    return n.Scalar();
  }

  // A list of texts; a single text is taken as a list of one.
  void StringList(const YAML::Node& map, const char* key, const std::string& where,
                  google::protobuf::RepeatedPtrField<std::string>* out) {
    YAML::Node n = map[key];
    if (!n || n.IsNull()) return;
    if (n.IsScalar()) {
      out->Add(std::string(n.Scalar()));
      return;
    }
    if (!n.IsSequence()) {
      Report(n, Join(where, key), "must be a list of texts");
      return;
    }
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        Report(n[i], Join(where, key) + "[" + std::to_string(i) + "]", "must be text");
        continue;
      }
      out->Add(std::string(n[i].Scalar()));
    }
  }

  // A positive whole number, or 0 after reporting.
  uint32_t Number(const YAML::Node& n, const std::string& field) {
    if (!n.IsScalar()) {
      Report(n, field, "must be a whole number");
      return 0;
    }
    const std::string& s = n.Scalar();
    char* end = nullptr;
    long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || v <= 0 || v > 100000) {
      Report(n, field, "must be a whole number from 1, got '" + s + "'");
      return 0;
    }
    return static_cast<uint32_t>(v);
  }

  static std::string Join(const std::string& where, const std::string& key) {
    return where.empty() ? key : where + "." + key;
  }

 private:
  std::string file_;
  std::vector<Problem>* problems_;
};

const std::set<std::string> kTopKeys = {
    "id", "nomor", "nama", "unit", "instansi", "tanggal_pembuatan", "tanggal_revisi", "tanggal_efektif",
    "disahkan_oleh", "dasar_hukum", "kualifikasi_pelaksana", "keterkaitan", "peralatan", "peringatan",
    "pencatatan", "pelaksana", "langkah"};
const std::set<std::string> kStepKeys = {"no",     "jenis", "pelaksana", "aktivitas", "kelengkapan", "waktu",
                                         "output", "keterangan", "lanjut", "hasil", "anggota", "pekerjaan",
                                         "atasan"};

bool IsDate(const std::string& s) {
  static const std::regex kDate(R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))");
  return std::regex_match(s, kDate);
}

bool IsIdentifier(const std::string& s) {
  static const std::regex kId(R"([a-z0-9][a-z0-9_.\-]{0,127})");
  return std::regex_match(s, kId);
}

// A step target: a step number or "selesai". Returns false if unreadable.
bool ReadTarget(Reader& r, const YAML::Node& n, const std::string& field, uint32_t* step, bool* ends) {
  *step = 0;
  *ends = false;
  if (n.IsScalar() && n.Scalar() == kEnd) {
    *ends = true;
    return true;
  }
  *step = r.Number(n, field);
  return *step != 0;
}

struct StepLines {
  std::map<uint32_t, int> target_line;  // step index -> line of its routing
};

void ReadHeader(Reader& r, const YAML::Node& root, v1::Definition* d) {
  d->set_id(r.String(root, "id", "", true));
  if (!d->id().empty() && !IsIdentifier(d->id()))
    r.Report(root["id"], "id", "must be lowercase letters, digits, '-', '_' or '.' (at most 128)");
  d->set_nomor(r.String(root, "nomor", "", false));
  d->set_nama(r.String(root, "nama", "", true));
  d->set_unit(r.String(root, "unit", "", false));
  d->set_instansi(r.String(root, "instansi", "", false));
  struct DateField {
    const char* key;
    void (v1::Definition::*set)(const std::string&);
  };
  for (auto [key, setter] : {DateField{"tanggal_pembuatan", &v1::Definition::set_tanggal_pembuatan},
                             DateField{"tanggal_revisi", &v1::Definition::set_tanggal_revisi},
                             DateField{"tanggal_efektif", &v1::Definition::set_tanggal_efektif}}) {
    std::string v = r.String(root, key, "", false);
    if (!v.empty() && !IsDate(v)) r.Report(root[key], key, "must be a date YYYY-MM-DD, got '" + v + "'");
    (d->*setter)(v);
  }
  if (YAML::Node s = root["disahkan_oleh"]) {
    if (!s.IsMap()) {
      r.Report(s, "disahkan_oleh", "must be a map with jabatan, nama, nip");
    } else {
      r.CheckKeys(s, "disahkan_oleh", {"jabatan", "nama", "nip"});
      auto* p = d->mutable_disahkan_oleh();
      p->set_jabatan(r.String(s, "jabatan", "disahkan_oleh", false));
      p->set_nama(r.String(s, "nama", "disahkan_oleh", false));
      p->set_nip(r.String(s, "nip", "disahkan_oleh", false));
    }
  }
  r.StringList(root, "dasar_hukum", "", d->mutable_dasar_hukum());
  r.StringList(root, "kualifikasi_pelaksana", "", d->mutable_kualifikasi_pelaksana());
  r.StringList(root, "keterkaitan", "", d->mutable_keterkaitan());
  r.StringList(root, "peralatan", "", d->mutable_peralatan());
  r.StringList(root, "peringatan", "", d->mutable_peringatan());
  r.StringList(root, "pencatatan", "", d->mutable_pencatatan());
}

void ReadPelaksana(Reader& r, const YAML::Node& root, v1::Definition* d) {
  YAML::Node list = root["pelaksana"];
  if (!list || !list.IsSequence() || list.size() == 0) {
    r.Report(list ? list : root, "pelaksana", "must be a non-empty list of actors (id, nama)");
    return;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string where = "pelaksana[" + std::to_string(i) + "]";
    const YAML::Node& n = list[i];
    if (!n.IsMap()) {
      r.Report(n, where, "must be a map with id and nama");
      continue;
    }
    r.CheckKeys(n, where, {"id", "nama"});
    v1::Pelaksana p;
    p.set_id(r.String(n, "id", where, true));
    p.set_nama(r.String(n, "nama", where, false));
    if (p.nama().empty()) p.set_nama(p.id());
    if (p.id().empty()) continue;
    if (!IsIdentifier(p.id())) r.Report(n["id"], where + ".id", "must be lowercase letters, digits, '-', '_' or '.'");
    if (!seen.insert(p.id()).second) r.Report(n["id"], where + ".id", "duplicate pelaksana '" + p.id() + "'");
    *d->add_pelaksana() = std::move(p);
  }
}

v1::Step::Kind ReadKind(Reader& r, const YAML::Node& n, const std::string& where) {
  YAML::Node k = n["jenis"];
  if (!k) return v1::Step::TASK;
  std::string s = k.IsScalar() ? k.Scalar() : "";
  if (s == "tugas") return v1::Step::TASK;
  if (s == "reviu") return v1::Step::REVIEW;
  if (s == "fanout") return v1::Step::FAN_OUT;
  if (s == "sistem") return v1::Step::SYSTEM;
  r.Report(k, where + ".jenis", "must be tugas, reviu, fanout or sistem, got '" + s + "'");
  return v1::Step::TASK;
}

void ReadOutcomes(Reader& r, const YAML::Node& n, const std::string& where, v1::Step* step) {
  YAML::Node hasil = n["hasil"];
  if (!hasil || !hasil.IsMap() || hasil.size() < 2) {
    r.Report(hasil ? hasil : n, where + ".hasil", "a reviu needs at least two outcomes, e.g. sesuai: 7 and perbaikan: {ke: 5, revisi: true}");
    return;
  }
  for (const auto& kv : hasil) {
    std::string name = kv.first.Scalar();
    std::string field = where + ".hasil." + name;
    if (!IsIdentifier(name)) r.Report(kv.first, field, "outcome names are lowercase words");
    v1::Outcome o;
    o.set_name(name);
    o.set_revision(name == "perbaikan");
    // Chosen once: assigning to a YAML::Node writes into the node it refers to.
    const YAML::Node target = kv.second.IsMap() ? kv.second["ke"] : kv.second;
    if (kv.second.IsMap()) {
      r.CheckKeys(kv.second, field, {"ke", "revisi"});
      if (!target) {
        r.Report(kv.second, field + ".ke", "is required");
        continue;
      }
      if (YAML::Node rev = kv.second["revisi"]) {
        try {
          o.set_revision(rev.as<bool>());
        } catch (const YAML::Exception&) {
          r.Report(rev, field + ".revisi", "must be true or false");
        }
      }
    }
    uint32_t to;
    bool ends;
    if (!ReadTarget(r, target, field, &to, &ends)) continue;
    o.set_next_step(to);
    o.set_ends_run(ends);
    *step->add_outcomes() = std::move(o);
  }
}

void ReadSteps(Reader& r, const YAML::Node& root, v1::Definition* d) {
  YAML::Node list = root["langkah"];
  if (!list || !list.IsSequence() || list.size() == 0) {
    r.Report(list ? list : root, "langkah", "must be a non-empty list of steps");
    return;
  }
  std::set<std::string> actors;
  for (const auto& p : d->pelaksana()) actors.insert(p.id());
  std::map<uint32_t, int> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& n = list[i];
    std::string where = "langkah[" + std::to_string(i) + "]";
    if (!n.IsMap()) {
      r.Report(n, where, "must be a map (no, pelaksana, aktivitas, waktu, ...)");
      continue;
    }
    v1::Step step;
    step.set_line(static_cast<int>(n.Mark().line) + 1);
    if (YAML::Node no = n["no"]) {
      step.set_number(r.Number(no, where + ".no"));
      if (step.number()) where = "langkah " + std::to_string(step.number());
      if (step.number() && seen.count(step.number()))
        r.Report(no, where + ".no", "duplicate step number (also on line " + std::to_string(seen[step.number()]) + ")");
      else if (step.number())
        seen[step.number()] = step.line();
    } else {
      r.Report(n, where + ".no", "is required");
    }
    r.CheckKeys(n, where, kStepKeys);
    step.set_kind(ReadKind(r, n, where));
    step.set_pelaksana(r.String(n, "pelaksana", where, true));
    if (!step.pelaksana().empty() && !actors.count(step.pelaksana()))
      r.Report(n["pelaksana"], where + ".pelaksana", "unknown pelaksana '" + step.pelaksana() + "' (not in the pelaksana list)");
    step.set_aktivitas(r.String(n, "aktivitas", where, true));
    step.set_atasan(r.String(n, "atasan", where, false));
    if (!step.atasan().empty() && !actors.count(step.atasan()))
      r.Report(n["atasan"], where + ".atasan", "unknown pelaksana '" + step.atasan() + "' (not in the pelaksana list)");
    r.StringList(n, "kelengkapan", where, step.mutable_kelengkapan());
    std::string waktu = r.String(n, "waktu", where, true);
    if (!waktu.empty()) {
      std::string error;
      if (!ParseWaktu(waktu, step.mutable_waktu(), &error)) r.Report(n["waktu"], where + ".waktu", error);
    }
    step.set_output(r.String(n, "output", where, false));
    step.set_keterangan(r.String(n, "keterangan", where, false));

    if (step.kind() == v1::Step::REVIEW) {
      ReadOutcomes(r, n, where, &step);
      if (n["lanjut"]) r.Report(n["lanjut"], where + ".lanjut", "a reviu routes by hasil, not lanjut");
    } else {
      if (n["hasil"]) r.Report(n["hasil"], where + ".hasil", "only a reviu step has hasil");
      if (YAML::Node next = n["lanjut"]) {
        uint32_t to;
        bool ends;
        if (ReadTarget(r, next, where + ".lanjut", &to, &ends)) {
          step.set_next_step(to);
          step.set_ends_run(ends);
        }
      }
    }
    if (step.kind() == v1::Step::FAN_OUT) {
      step.set_member_group(r.String(n, "anggota", where, true));
      if (!step.member_group().empty() && !IsIdentifier(step.member_group()))
        r.Report(n["anggota"], where + ".anggota", "group names are lowercase words");
    } else if (n["anggota"]) {
      r.Report(n["anggota"], where + ".anggota", "only a fanout step has anggota");
    }
    if (step.kind() == v1::Step::SYSTEM) {
      step.set_job_type(r.String(n, "pekerjaan", where, true));
    } else if (n["pekerjaan"]) {
      r.Report(n["pekerjaan"], where + ".pekerjaan", "only a sistem step has pekerjaan");
    }
    *d->add_steps() = std::move(step);
  }
}

// Fills default routing: a step without `lanjut` goes to the next step in
// file order, the last one ends the run.
void ApplyDefaultRouting(v1::Definition* d) {
  for (int i = 0; i < d->steps_size(); ++i) {
    auto* s = d->mutable_steps(i);
    if (s->kind() == v1::Step::REVIEW || s->next_step() != 0 || s->ends_run()) continue;
    if (i + 1 < d->steps_size()) s->set_next_step(d->steps(i + 1).number());
    else s->set_ends_run(true);
  }
}

std::vector<int> Successors(const v1::Definition& d, const v1::Step& s) {
  std::vector<int> out;
  auto add = [&](uint32_t n, bool ends) {
    if (ends) out.push_back(-1);
    else if (int j = FindStep(d, n); j >= 0) out.push_back(j);
  };
  if (s.kind() == v1::Step::REVIEW)
    for (const auto& o : s.outcomes()) add(o.next_step(), o.ends_run());
  else
    add(s.next_step(), s.ends_run());
  return out;
}

void CheckGraph(Reader& r, const v1::Definition& d) {
  // Every target must name a step.
  bool targets_ok = true;
  for (const auto& s : d.steps()) {
    std::string where = "langkah " + std::to_string(s.number());
    if (s.kind() == v1::Step::REVIEW) {
      for (const auto& o : s.outcomes())
        if (!o.ends_run() && FindStep(d, o.next_step()) < 0) {
          r.ReportLine(s.line(), where + ".hasil." + o.name(), "goes to step " + std::to_string(o.next_step()) + ", which does not exist");
          targets_ok = false;
        }
    } else if (!s.ends_run() && FindStep(d, s.next_step()) < 0) {
      r.ReportLine(s.line(), where + ".lanjut", "goes to step " + std::to_string(s.next_step()) + ", which does not exist");
      targets_ok = false;
    }
  }
  if (!targets_ok || d.steps_size() == 0) return;

  const int n = d.steps_size();
  // Reachable from the first step.
  std::vector<bool> reached(n, false);
  std::vector<int> stack{0};
  reached[0] = true;
  while (!stack.empty()) {
    int i = stack.back();
    stack.pop_back();
    for (int j : Successors(d, d.steps(i)))
      if (j >= 0 && !reached[j]) {
        reached[j] = true;
        stack.push_back(j);
      }
  }
  // Able to reach the end: fixed point over "some successor can".
  std::vector<bool> can_end(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (int i = 0; i < n; ++i) {
      if (can_end[i]) continue;
      for (int j : Successors(d, d.steps(i)))
        if (j < 0 || can_end[j]) {
          can_end[i] = changed = true;
          break;
        }
    }
  }
  for (int i = 0; i < n; ++i) {
    const auto& s = d.steps(i);
    std::string where = "langkah " + std::to_string(s.number());
    if (!reached[i]) r.ReportLine(s.line(), where, "no path from the first step reaches this step");
    else if (!can_end[i]) r.ReportLine(s.line(), where, "no path from this step reaches the end (a loop with no way out)");
  }
}

}  // namespace

ParsedDefinition ParseDefinition(const std::string& yaml, const std::string& file_name) {
  ParsedDefinition out;
  Reader r(file_name, &out.problems);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    out.problems.push_back({file_name, e.mark.line + 1, "", "YAML syntax: " + e.msg});
    return out;
  }
  if (!root.IsMap()) {
    out.problems.push_back({file_name, 1, "", "a definition file is a map (id, nama, pelaksana, langkah, ...)"});
    return out;
  }
  auto* d = &out.definition;
  try {
    r.CheckKeys(root, "", kTopKeys);
    ReadHeader(r, root, d);
    ReadPelaksana(r, root, d);
    ReadSteps(r, root, d);
    ApplyDefaultRouting(d);
    CheckGraph(r, *d);
  } catch (const YAML::Exception& e) {
    // A shape the readers did not expect (a list where a map belongs...).
    out.problems.push_back({file_name, e.mark.line + 1, "", e.msg});
  }
  d->set_source_yaml(yaml);
  d->set_source_sha256(Sha256Hex(yaml));
  return out;
}

v1::Definition ParseDefinitionOrThrow(const std::string& yaml, const std::string& file_name) {
  auto parsed = ParseDefinition(yaml, file_name);
  if (parsed.ok()) return std::move(parsed.definition);
  std::string message = std::to_string(parsed.problems.size()) + " problem(s) in the definition:";
  for (const auto& p : parsed.problems) message += "\n  " + p.ToString();
  throw DomainError(ErrorCode::kInvalidArgument, message, "yaml");
}

}  // namespace sopflow

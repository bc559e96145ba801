#include "rules.h"

#include <google/protobuf/util/time_util.h>
#include <yaml-cpp/yaml.h>

#include <ctime>
#include <stdexcept>

namespace sopflow::archiver {

using google::protobuf::util::TimeUtil;

namespace {

[[noreturn]] void Fail(const std::string& file, const YAML::Node& at, const std::string& message) {
  throw std::runtime_error(file + ":" + std::to_string(at.Mark().line + 1) + ": " + message);
}

v1::ArchiveRecord::Security SecurityOf(const std::string& text, const std::string& file, const YAML::Node& at) {
  if (text == "biasa") return v1::ArchiveRecord::BIASA;
  if (text == "terbatas") return v1::ArchiveRecord::TERBATAS;
  if (text == "rahasia") return v1::ArchiveRecord::RAHASIA;
  Fail(file, at, "keamanan must be biasa, terbatas or rahasia");
}

YAML::Node LoadYaml(const std::string& file) {
  try {
    return YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

}  // namespace

std::shared_ptr<const Rules> Rules::Load(const std::string& klasifikasi_file, const std::string& jra_file,
                                         const std::string& berkas_file) {
  auto r = std::make_shared<Rules>();
  YAML::Node k = LoadYaml(klasifikasi_file);
  r->klasifikasi_versi_ = k["versi"].as<std::string>("");
  for (const auto& kv : k["kode"]) r->klasifikasi_[kv.first.as<std::string>()] = kv.second.as<std::string>();
  YAML::Node j = LoadYaml(jra_file);
  std::string jadwal = j["jadwal"].as<std::string>("");
  for (const auto& a : j["aturan"]) {
    v1::RetentionRule rule;
    rule.set_kode(a["kode"].as<std::string>(""));
    rule.set_uraian(a["uraian"].as<std::string>(""));
    rule.set_aktif_tahun(a["aktif"].as<int>(-1));
    rule.set_inaktif_tahun(a["inaktif"].as<int>(-1));
    rule.set_jadwal(jadwal);
    if (rule.kode().empty() || rule.aktif_tahun() < 0 || rule.inaktif_tahun() < 0)
      Fail(jra_file, a, "each rule needs kode, aktif and inaktif (years)");
    std::string ket = a["keterangan"].as<std::string>("");
    if (ket == "musnah") rule.set_keterangan(v1::RetentionRule::MUSNAH);
    else if (ket == "permanen") rule.set_keterangan(v1::RetentionRule::PERMANEN);
    else if (ket == "dinilai kembali") rule.set_keterangan(v1::RetentionRule::DINILAI_KEMBALI);
    else Fail(jra_file, a, "keterangan must be musnah, permanen or dinilai kembali");
    r->retention_.push_back(rule);
  }
  YAML::Node b = LoadYaml(berkas_file);
  if (auto d = b["bawaan"]) {
    if (d["keamanan"]) r->default_settings_.keamanan = SecurityOf(d["keamanan"].as<std::string>(), berkas_file, d["keamanan"]);
    r->default_settings_.tingkat_perkembangan = d["tingkat_perkembangan"].as<std::string>("asli");
    r->folders_per_box_ = d["folder_per_boks"].as<int>(20);
  }
  for (const auto& kv : b["sop"]) {
    SopSettings s = r->default_settings_;
    if (kv.second["kode_klasifikasi"]) s.kode_klasifikasi = kv.second["kode_klasifikasi"].as<std::string>();
    if (kv.second["keamanan"])
      s.keamanan = SecurityOf(kv.second["keamanan"].as<std::string>(), berkas_file, kv.second["keamanan"]);
    if (kv.second["peran_rahasia"])
      for (const auto& p : kv.second["peran_rahasia"]) s.peran_rahasia.push_back(p.as<std::string>());
    if (!s.kode_klasifikasi.empty() && !r->klasifikasi_.count(s.kode_klasifikasi))
      Fail(berkas_file, kv.second, "kode_klasifikasi " + s.kode_klasifikasi + " is not in the classification table");
    r->settings_[kv.first.as<std::string>()] = s;
  }
  for (const auto& kv : b["lokasi"])
    r->locations_[kv.first.as<std::string>()] = {kv.second["ruang"].as<std::string>(""), kv.second["rak"].as<std::string>("")};
  return r;
}

std::string Rules::ClassifyRun(const v1::Definition& def) const {
  const auto& s = SettingsFor(def.id());
  if (!s.kode_klasifikasi.empty()) return s.kode_klasifikasi;
  std::string first = def.nomor().substr(0, def.nomor().find('/'));
  while (!first.empty() && first.back() == ' ') first.pop_back();
  if (klasifikasi_.count(first)) return first;
  return "000";
}

std::string Rules::ClassificationName(const std::string& kode) const {
  auto it = klasifikasi_.find(kode);
  return it == klasifikasi_.end() ? "" : it->second;
}

v1::RetentionRule Rules::RetentionFor(const std::string& kode) const {
  // Decimal classification: 800 covers 8xx, 860 covers 86x, 000 everything.
  auto stem = [](std::string k) {
    while (!k.empty() && k.back() == '0') k.pop_back();
    return k;
  };
  const v1::RetentionRule* best = nullptr;
  size_t best_len = 0;
  for (const auto& r : retention_) {
    std::string s = stem(r.kode());
    if (kode.rfind(s, 0) == 0 && (!best || s.size() > best_len)) {
      best = &r;
      best_len = s.size();
    }
  }
  if (best) return *best;
  v1::RetentionRule keep;  // unknown codes are kept until someone decides
  keep.set_kode(kode);
  keep.set_uraian("tanpa aturan JRA");
  keep.set_aktif_tahun(1);
  keep.set_inaktif_tahun(1);
  keep.set_keterangan(v1::RetentionRule::DINILAI_KEMBALI);
  return keep;
}

const SopSettings& Rules::SettingsFor(const std::string& sop_id) const {
  auto it = settings_.find(sop_id);
  return it == settings_.end() ? default_settings_ : it->second;
}

std::pair<std::string, std::string> Rules::LocationOf(const std::string& unit) const {
  auto it = locations_.find(unit);
  return it == locations_.end() ? std::pair<std::string, std::string>{"", ""} : it->second;
}

void SetRetentionDates(v1::ArchiveRecord* record, const std::string& period) {
  int year = std::atoi(period.substr(0, 4).c_str());
  auto jan1 = [](int y) {
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mday = 1;
    return TimeUtil::SecondsToTimestamp(timegm(&tm));
  };
  int active_end = year + 1 + record->retensi().aktif_tahun();
  *record->mutable_aktif_sampai() = jan1(active_end);
  *record->mutable_inaktif_sampai() = jan1(active_end + record->retensi().inaktif_tahun());
}

v1::ArchiveRecord BerkasFor(const Rules& rules, const v1::GetRunResponse& run, const v1::Definition& def) {
  v1::ArchiveRecord r;
  r.set_kind(v1::ArchiveRecord::BERKAS);
  r.set_id("BRK-" + run.run().id());
  r.set_run_id(run.run().id());
  r.set_sop_id(def.id());
  r.set_sop_version(def.version());
  r.set_sop_nomor(def.nomor());
  r.set_sop_nama(def.nama());
  r.set_kode_klasifikasi(rules.ClassifyRun(def));
  r.set_klasifikasi(rules.ClassificationName(r.kode_klasifikasi()));
  r.set_klasifikasi_versi(rules.classification_version());
  r.set_uraian(def.nama() + " periode " + run.run().period() + ", " + run.run().unit() + " (SOP " +
               (def.nomor().empty() ? def.id() : def.nomor()) + ")");
  r.set_kurun_waktu(run.run().period());
  r.set_unit_pengolah(run.run().unit());
  const auto& settings = rules.SettingsFor(def.id());
  r.set_tingkat_perkembangan(settings.tingkat_perkembangan);
  r.set_keamanan(settings.keamanan);
  for (const auto& p : settings.peran_rahasia) r.add_peran_rahasia(p);
  auto [ruang, rak] = rules.LocationOf(run.run().unit());
  r.set_lokasi_ruang(ruang);
  r.set_lokasi_rak(rak);
  *r.mutable_retensi() = rules.RetentionFor(r.kode_klasifikasi());
  SetRetentionDates(&r, run.run().period());
  for (const auto& t : run.tasks()) {
    for (const auto& d : t.output().documents()) *r.add_documents() = d;
    for (const auto& d : t.attachments()) *r.add_documents() = d;
    if (t.kind() == v1::Step::REVIEW && t.status() == v1::Task::DONE) {
      auto* k = r.add_keputusan();
      k->set_step(t.step());
      k->set_pelaksana(t.pelaksana());
      k->set_user(t.assignee());
      k->set_outcome(t.outcome());
      *k->mutable_time() = t.completed_at();
      k->set_reason(t.return_reason());
    }
  }
  return r;
}

}  // namespace sopflow::archiver

// How runs become archive records, without I/O: the classification table,
// the retention schedule (JRA), per-SOP filing settings, and the record's
// metadata and retention dates.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "clock.h"
#include "sopflow/v1/archive.pb.h"
#include "sopflow/v1/router.pb.h"

namespace sopflow::archiver {

struct SopSettings {
  std::string kode_klasifikasi;  // empty: from the SOP's nomor
  v1::ArchiveRecord::Security keamanan = v1::ArchiveRecord::BIASA;
  std::string tingkat_perkembangan = "asli";
  std::vector<std::string> peran_rahasia;
};

class Rules {
 public:
  // The three data files of deploy/base/archiver; throws naming file:line.
  static std::shared_ptr<const Rules> Load(const std::string& klasifikasi_file, const std::string& jra_file,
                                           const std::string& berkas_file);

  // The classification of a run of `def`: the SOP's setting, else the
  // nomor's first part when the table knows it, else "000".
  std::string ClassifyRun(const v1::Definition& def) const;
  std::string ClassificationName(const std::string& kode) const;
  const std::string& classification_version() const { return klasifikasi_versi_; }
  // The most specific rule for `kode` in the decimal scheme: a rule's code
  // without its trailing zeros is a prefix (800 covers 8xx, 860 86x).
  v1::RetentionRule RetentionFor(const std::string& kode) const;
  const SopSettings& SettingsFor(const std::string& sop_id) const;
  std::pair<std::string, std::string> LocationOf(const std::string& unit) const;  // ruang, rak
  int folders_per_box() const { return folders_per_box_; }

 private:
  std::string klasifikasi_versi_;
  std::map<std::string, std::string> klasifikasi_;
  std::vector<v1::RetentionRule> retention_;
  SopSettings default_settings_;
  std::map<std::string, SopSettings> settings_;
  std::map<std::string, std::pair<std::string, std::string>> locations_;
  int folders_per_box_ = 20;
};

// Retention counts from 1 January after the year of the record's period
// (the file is closed at the end of its year): active until + aktif
// years, inactive until that + inaktif years.
void SetRetentionDates(v1::ArchiveRecord* record, const std::string& period);

// The berkas for a completed run: metadata, review decisions, every output
// document by reference. Blobs, seq, chain and box are added by the engine.
v1::ArchiveRecord BerkasFor(const Rules& rules, const v1::GetRunResponse& run, const v1::Definition& def);

}  // namespace sopflow::archiver

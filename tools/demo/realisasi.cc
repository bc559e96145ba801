#include "realisasi.h"

#include <map>
#include <string>

namespace sopflow::demo {

void FillRealisasi(const v1::Task& task, v1::TaskOutput* output) {
  if (task.kind() != v1::Step::FAN_OUT) return;
  // member -> {kode -> {realisasi, anggaran}}
  static const std::map<std::string, std::map<std::string, std::pair<double, double>>> kData{
      {"bagian-tatalaksana", {{"TL-1", {70, 95e6}}, {"TL-2", {4.5, 0}}}},
      {"bagian-kelembagaan", {{"KL-1", {4, 80e6}}, {"KL-2", {83, 0}}}},
      {"bagian-reformasi-birokrasi", {{"RB-1", {66, 60e6}}}},
      {"fungsional-1", {{"SKP-1", {4, 0}}}},
      {"fungsional-2", {{"SKP-1", {6, 0}}}},
      {"fungsional-3", {{"SKP-1", {98.5, 0}}}},
  };
  auto it = kData.find(task.member());
  if (it == kData.end()) return;
  auto& fields = *output->mutable_data()->mutable_fields();
  auto& realisasi = *fields["realisasi"].mutable_struct_value()->mutable_fields();
  auto& anggaran = *fields["anggaran"].mutable_struct_value()->mutable_fields();
  for (const auto& [kode, values] : it->second) {
    realisasi[kode].set_number_value(values.first);
    if (values.second > 0) anggaran[kode].set_number_value(values.second);
  }
  fields["catatan"].set_string_value("data " + task.period() + " dari " + task.member());
}

}  // namespace sopflow::demo

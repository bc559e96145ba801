// The "Draft Data Kinerja" report as files offices use: CSV, XLSX (Excel,
// through libxlsxwriter) and a self-contained HTML page with a chart of
// capaian per indicator (inline SVG: no network fetches).
#pragma once

#include <string>

#include "sopflow/v1/aggregator.pb.h"

namespace sopflow::kinerja {

std::string ToCsv(const v1::PerformanceReport& report);
std::string ToHtml(const v1::PerformanceReport& report);
// Throws std::runtime_error if libxlsxwriter fails.
std::string ToXlsx(const v1::PerformanceReport& report);

}  // namespace sopflow::kinerja

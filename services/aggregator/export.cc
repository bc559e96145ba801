#include "export.h"

#include <xlsxwriter.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ids.h"

namespace sopflow::kinerja {
namespace {

std::string Num(double v, int decimals = 2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string Html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* BandColour(double capaian) {
  if (capaian >= 90) return "#1a7f37";
  if (capaian >= 75) return "#4c9a2a";
  if (capaian >= 60) return "#d4a017";
  return "#c0392b";
}

}  // namespace

std::string ToCsv(const v1::PerformanceReport& r) {
  std::string out = "unit,kode,indikator,satuan,target,realisasi,capaian_persen,predikat,rumus\n";
  for (const auto& u : r.units())
    for (const auto& c : u.indikator())
      out += CsvField(u.unit()) + "," + CsvField(c.kode()) + "," + CsvField(c.nama()) + "," + CsvField(c.satuan()) + "," +
             Num(c.target()) + "," + (c.reported() ? Num(c.realisasi()) : "") + "," +
             (c.reported() ? Num(c.capaian()) : "") + "," + CsvField(c.predikat()) + "," + CsvField(c.rumus()) + "\n";
  return out;
}

std::string ToHtml(const v1::PerformanceReport& r) {
  std::ostringstream h;
  h << "<!doctype html><html lang=\"id\"><head><meta charset=\"utf-8\"><title>Draft Data Kinerja " << Html(r.period())
    << "</title><style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
       "td,th{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eef}td.n{text-align:right}"
       ".late{color:#c0392b}</style></head><body>\n";
  h << "<h1>Draft Data Kinerja</h1><p>Organisasi <b>" << Html(r.organisasi()) << "</b>, periode <b>" << Html(r.period())
    << "</b>, SOP " << Html(r.sop_id()) << ", pelaksanaan " << Html(r.run_id()) << ".</p>\n";
  h << "<p>Rata-rata capaian: <b>" << Num(r.rata_rata_capaian()) << "%</b> (" << Html(r.predikat()) << ")</p>\n";
  if (r.not_submitted_size() > 0) {
    h << "<p class=\"late\">Belum menyampaikan data:";
    for (const auto& u : r.not_submitted()) h << " " << Html(u);
    h << "</p>\n";
  }
  // The chart: one bar per reported indicator, 0-150%.
  std::vector<const v1::Capaian*> bars;
  for (const auto& u : r.units())
    for (const auto& c : u.indikator())
      if (c.reported()) bars.push_back(&c);
  const int row = 26, label = 260, width = 420;
  int height = static_cast<int>(bars.size()) * row + 30;
  h << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << label + width + 80 << "\" height=\"" << height
    << "\" role=\"img\" aria-label=\"Capaian per indikator\">\n";
  double x100 = label + width * 100.0 / 150.0;
  h << "<line x1=\"" << x100 << "\" y1=\"0\" x2=\"" << x100 << "\" y2=\"" << height - 20
    << "\" stroke=\"#888\" stroke-dasharray=\"4\"/><text x=\"" << x100 - 14 << "\" y=\"" << height - 6
    << "\" font-size=\"11\">100%</text>\n";
  for (size_t i = 0; i < bars.size(); ++i) {
    const auto& c = *bars[i];
    double w = std::min(150.0, std::max(0.0, c.capaian())) / 150.0 * width;
    int y = static_cast<int>(i) * row;
    h << "<text x=\"0\" y=\"" << y + 17 << "\" font-size=\"12\">" << Html(c.unit() + " " + c.kode()) << "</text>"
      << "<rect x=\"" << label << "\" y=\"" << y + 4 << "\" width=\"" << Num(w, 1) << "\" height=\"18\" fill=\""
      << BandColour(c.capaian()) << "\"/><text x=\"" << label + w + 6 << "\" y=\"" << y + 17 << "\" font-size=\"12\">"
      << Num(c.capaian(), 1) << "%</text>\n";
  }
  h << "</svg>\n";
  for (const auto& u : r.units()) {
    h << "<h2>" << Html(u.unit()) << "</h2><p>Rata-rata capaian " << Num(u.rata_rata_capaian()) << "% ("
      << Html(u.predikat()) << "); serapan anggaran " << Num(u.serapan()) << "% dari pagu " << Num(u.pagu(), 0)
      << (u.submitted() ? "" : " — <span class=\"late\">belum menyampaikan data</span>") << "</p>\n";
    h << "<table><tr><th>Kode</th><th>Indikator</th><th>Satuan</th><th>Target</th><th>Realisasi</th><th>Capaian</th>"
         "<th>Predikat</th><th>Rumus</th></tr>\n";
    for (const auto& c : u.indikator())
      h << "<tr><td>" << Html(c.kode()) << "</td><td>" << Html(c.nama()) << "</td><td>" << Html(c.satuan())
        << "</td><td class=\"n\">" << Num(c.target()) << "</td><td class=\"n\">" << (c.reported() ? Num(c.realisasi()) : "-")
        << "</td><td class=\"n\">" << (c.reported() ? Num(c.capaian()) + "%" : "-") << "</td><td>" << Html(c.predikat())
        << "</td><td>" << Html(c.rumus()) << "</td></tr>\n";
    h << "</table>\n";
  }
  h << "</body></html>\n";
  return h.str();
}

std::string ToXlsx(const v1::PerformanceReport& r) {
  // libxlsxwriter writes a file; the bytes are read back and the file removed.
  std::string path = (std::filesystem::temp_directory_path() / ("sopflow-report-" + RandomHex(8) + ".xlsx")).string();
  lxw_workbook* wb = workbook_new(path.c_str());
  if (!wb) throw std::runtime_error("cannot create " + path);
  lxw_format* bold = workbook_add_format(wb);
  format_set_bold(bold);
  lxw_format* pct = workbook_add_format(wb);
  format_set_num_format(pct, "0.00");
  lxw_worksheet* sheet = workbook_add_worksheet(wb, "Data Kinerja");
  const char* headers[] = {"Unit", "Kode", "Indikator", "Satuan", "Target", "Realisasi", "Capaian (%)", "Predikat", "Rumus"};
  for (int c = 0; c < 9; ++c) worksheet_write_string(sheet, 0, static_cast<lxw_col_t>(c), headers[c], bold);
  lxw_row_t row = 1;
  for (const auto& u : r.units())
    for (const auto& c : u.indikator()) {
      worksheet_write_string(sheet, row, 0, u.unit().c_str(), nullptr);
      worksheet_write_string(sheet, row, 1, c.kode().c_str(), nullptr);
      worksheet_write_string(sheet, row, 2, c.nama().c_str(), nullptr);
      worksheet_write_string(sheet, row, 3, c.satuan().c_str(), nullptr);
      worksheet_write_number(sheet, row, 4, c.target(), nullptr);
      if (c.reported()) {
        worksheet_write_number(sheet, row, 5, c.realisasi(), nullptr);
        worksheet_write_number(sheet, row, 6, c.capaian(), pct);
      }
      worksheet_write_string(sheet, row, 7, c.predikat().c_str(), nullptr);
      worksheet_write_string(sheet, row, 8, c.rumus().c_str(), nullptr);
      ++row;
    }
  worksheet_set_column(sheet, 0, 0, 26, nullptr);
  worksheet_set_column(sheet, 2, 2, 44, nullptr);
  lxw_worksheet* summary = workbook_add_worksheet(wb, "Ringkasan");
  const char* sheads[] = {"Unit", "Rata-rata capaian (%)", "Predikat", "Pagu", "Realisasi anggaran", "Serapan (%)", "Menyampaikan"};
  for (int c = 0; c < 7; ++c) worksheet_write_string(summary, 0, static_cast<lxw_col_t>(c), sheads[c], bold);
  row = 1;
  for (const auto& u : r.units()) {
    worksheet_write_string(summary, row, 0, u.unit().c_str(), nullptr);
    worksheet_write_number(summary, row, 1, u.rata_rata_capaian(), pct);
    worksheet_write_string(summary, row, 2, u.predikat().c_str(), nullptr);
    worksheet_write_number(summary, row, 3, u.pagu(), nullptr);
    worksheet_write_number(summary, row, 4, u.realisasi_anggaran(), nullptr);
    worksheet_write_number(summary, row, 5, u.serapan(), pct);
    worksheet_write_string(summary, row, 6, u.submitted() ? "ya" : "belum", nullptr);
    ++row;
  }
  worksheet_set_column(summary, 0, 0, 26, nullptr);
  lxw_error err = workbook_close(wb);
  if (err != LXW_NO_ERROR) throw std::runtime_error(std::string("xlsx: ") + lxw_strerror(err));
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(path);
  return bytes;
}

}  // namespace sopflow::kinerja

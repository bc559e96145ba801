#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "error.h"
#include "export.h"
#include "kinerja.h"

namespace sopflow::kinerja {
namespace {

v1::Indicator Ind(v1::Indicator::Direction arah, v1::Indicator::YearRule rule = v1::Indicator::CUMULATIVE) {
  v1::Indicator i;
  i.set_kode("X");
  i.set_arah(arah);
  i.set_agregasi(rule);
  return i;
}

std::vector<v1::Catalogue> Kalbar() {
  std::ifstream in(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/aggregator/catalogues/kalbar-biro-organisasi-2026.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseCatalogues(ss.str(), "kalbar.yaml");
}

Period P(const char* text) {
  Period p;
  EXPECT_TRUE(ParsePeriod(text, &p)) << text;
  return p;
}

TEST(Capaian, HigherIsBetter) {
  auto a = ComputeCapaian(Ind(v1::Indicator::HIGHER_IS_BETTER), 80, 72);
  EXPECT_DOUBLE_EQ(a.capaian, 90);
  EXPECT_EQ(a.rumus, "higher_is_better: r/t*100");
  EXPECT_DOUBLE_EQ(ComputeCapaian(Ind(v1::Indicator::HIGHER_IS_BETTER), 80, 96).capaian, 120);
}

TEST(Capaian, LowerIsBetter) {
  // Target 5 days: 4 days is better than planned (120%), 6 days worse (80%).
  EXPECT_DOUBLE_EQ(ComputeCapaian(Ind(v1::Indicator::LOWER_IS_BETTER), 5, 4).capaian, 120);
  EXPECT_DOUBLE_EQ(ComputeCapaian(Ind(v1::Indicator::LOWER_IS_BETTER), 5, 6).capaian, 80);
  EXPECT_DOUBLE_EQ(ComputeCapaian(Ind(v1::Indicator::LOWER_IS_BETTER), 5, 12).capaian, 0);  // never negative
  EXPECT_EQ(ComputeCapaian(Ind(v1::Indicator::LOWER_IS_BETTER), 5, 4).rumus, "lower_is_better: (2t-r)/t*100");
}

TEST(Capaian, Range) {
  auto ind = Ind(v1::Indicator::RANGE);
  ind.set_range_min(70);
  ind.set_range_max(80);
  EXPECT_DOUBLE_EQ(ComputeCapaian(ind, 75, 75).capaian, 100);
  EXPECT_DOUBLE_EQ(ComputeCapaian(ind, 75, 80).capaian, 100);
  EXPECT_DOUBLE_EQ(ComputeCapaian(ind, 75, 63).capaian, 90);  // 63/70
  EXPECT_DOUBLE_EQ(ComputeCapaian(ind, 75, 88).capaian, 90);  // (160-88)/80
  EXPECT_EQ(ComputeCapaian(ind, 75, 63).rumus, "range: r/min*100 below the range");
}

TEST(Rollup, FourQuartersByEachRule) {
  std::map<int, double> q{{1, 10}, {2, 20}, {3, 30}, {4, 40}};
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::CUMULATIVE, P("2026-S1")), 30);
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::CUMULATIVE, P("2026-S2")), 70);
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::CUMULATIVE, P("2026")), 100);
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::LAST_VALUE, P("2026-S1")), 20);
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::LAST_VALUE, P("2026")), 40);
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::AVERAGE, P("2026-S1")), 15);
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::AVERAGE, P("2026")), 25);
  EXPECT_DOUBLE_EQ(*Rollup(q, v1::Indicator::AVERAGE, P("2026-Q3")), 30);
  std::map<int, double> half{{1, 10}, {2, 20}};  // only the first semester reported
  EXPECT_DOUBLE_EQ(*Rollup(half, v1::Indicator::LAST_VALUE, P("2026")), 20);
  EXPECT_FALSE(Rollup(half, v1::Indicator::CUMULATIVE, P("2026-S2")).has_value());
}

TEST(Rollup, TargetsFollowTheRuleUnlessAnAnnualTargetIsGiven) {
  auto ind = Ind(v1::Indicator::HIGHER_IS_BETTER, v1::Indicator::CUMULATIVE);
  for (double t : {3, 3, 3, 3}) ind.add_target_tw(t);
  EXPECT_DOUBLE_EQ(*TargetFor(ind, P("2026-Q2")), 3);
  EXPECT_DOUBLE_EQ(*TargetFor(ind, P("2026-S1")), 6);
  EXPECT_DOUBLE_EQ(*TargetFor(ind, P("2026")), 12);
  ind.set_target_tahun(10);
  EXPECT_DOUBLE_EQ(*TargetFor(ind, P("2026")), 10);
}

TEST(Periods, ParseAndReject) {
  EXPECT_EQ(P("2026-Q3").LastQuarter(), 3);
  EXPECT_EQ(P("2026-TW2").ToString(), "2026-Q2");
  EXPECT_EQ(P("2026-S2").FirstQuarter(), 3);
  Period p;
  EXPECT_FALSE(ParsePeriod("2026-Q5", &p));
  EXPECT_FALSE(ParsePeriod("2026-S3", &p));
  EXPECT_FALSE(ParsePeriod("Q3-2026", &p));
}

TEST(UnitReport, CapaianBudgetAndRatingOverFourQuarters) {
  auto cats = Kalbar();
  const v1::Catalogue& kl = cats[1];  // bagian-kelembagaan: KL-1 cumulative, KL-2 range
  ASSERT_EQ(kl.unit(), "bagian-kelembagaan");
  std::map<std::string, std::map<int, double>> values{{"KL-1", {{1, 3}, {2, 2}, {3, 4}, {4, 3}}},
                                                      {"KL-2", {{1, 68}, {2, 72}, {3, 83}, {4, 79}}}};
  std::map<std::string, std::map<int, double>> budget{{"KL-1", {{1, 60e6}, {2, 75e6}, {3, 90e6}, {4, 60e6}}}};
  auto s1 = UnitReportFor(kl, P("2026-S1"), values, budget);
  EXPECT_DOUBLE_EQ(s1.indikator(0).target(), 6);
  EXPECT_DOUBLE_EQ(s1.indikator(0).realisasi(), 5);
  EXPECT_NEAR(s1.indikator(0).capaian(), 83.333, 0.001);
  EXPECT_EQ(s1.indikator(0).predikat(), "baik");
  EXPECT_DOUBLE_EQ(s1.indikator(1).capaian(), 100);  // 72 in [70, 80]
  EXPECT_NEAR(s1.rata_rata_capaian(), 91.667, 0.001);
  EXPECT_EQ(s1.predikat(), "sangat baik");
  EXPECT_DOUBLE_EQ(s1.realisasi_anggaran(), 135e6);
  EXPECT_DOUBLE_EQ(s1.serapan(), 45);
  auto q3 = UnitReportFor(kl, P("2026-Q3"), values, budget);
  EXPECT_NEAR(q3.indikator(1).capaian(), (160.0 - 83) / 80 * 100, 1e-9);  // above the range
  EXPECT_DOUBLE_EQ(q3.serapan(), 75);  // year to date: 225 of 300 million
  auto year = UnitReportFor(kl, P("2026"), values, budget);
  EXPECT_DOUBLE_EQ(year.indikator(0).realisasi(), 12);
  EXPECT_DOUBLE_EQ(year.indikator(0).capaian(), 100);
  EXPECT_DOUBLE_EQ(year.indikator(1).realisasi(), 79);
}

v1::SubmitRealisasiRequest Req(const std::string& kode, double value) {
  v1::SubmitRealisasiRequest r;
  r.set_unit("bagian-tatalaksana");
  r.set_period("2026-Q3");
  auto* item = r.add_items();
  item->set_kode(kode);
  item->set_realisasi(value);
  return r;
}

std::string Fields(const std::vector<v1::FieldProblem>& problems) {
  std::string out;
  for (const auto& p : problems) out += p.field() + "=" + p.message() + ";";
  return out;
}

TEST(Validate, EveryProblemWithItsField) {
  auto cats = Kalbar();
  const v1::Catalogue* tl = &cats[0];
  EXPECT_TRUE(Validate(tl, "2026-Q3", Req("TL-1", 70)).empty());
  auto r = Req("TL-9", 70);
  auto* nan = r.add_items();
  nan->set_kode("TL-2");
  nan->set_realisasi(std::nan(""));
  auto* high = r.add_items();
  high->set_kode("TL-1");
  high->set_realisasi(140);  // a percentage above its batas
  auto* twice = r.add_items();
  twice->set_kode("TL-1");
  twice->set_realisasi(50);
  twice->set_anggaran(-5);
  auto problems = Validate(tl, "2026-Q3", r);
  std::string f = Fields(problems);
  EXPECT_NE(f.find("items[0].kode=unknown indicator 'TL-9'"), std::string::npos) << f;
  EXPECT_NE(f.find("items[1].realisasi=not a number"), std::string::npos) << f;
  EXPECT_NE(f.find("items[2].realisasi=above the indicator's maximum"), std::string::npos) << f;
  EXPECT_NE(f.find("items[3].kode=indicator TL-1 given twice"), std::string::npos) << f;
  EXPECT_NE(f.find("items[3].anggaran=must be a number >= 0"), std::string::npos) << f;
  EXPECT_NE(Fields(Validate(tl, "2026-Q2", Req("TL-1", 70))).find("period=the run is for 2026-Q2"), std::string::npos);
  EXPECT_NE(Fields(Validate(nullptr, "2026-Q3", Req("TL-1", 70))).find("unit=no indicator catalogue"), std::string::npos);
}

TEST(Validate, TaskOutputsMustCarryNumbers) {
  v1::Task task;
  task.set_run_id("R");
  task.set_member("bagian-tatalaksana");
  task.set_period("2026-Q3");
  auto& fields = *task.mutable_output()->mutable_data()->mutable_fields();
  auto& realisasi = *fields["realisasi"].mutable_struct_value()->mutable_fields();
  realisasi["TL-1"].set_number_value(80);
  realisasi["TL-2"].set_string_value("empat");
  task.mutable_output()->add_documents()->set_uri("dms://bukti/1");
  std::vector<v1::FieldProblem> problems;
  auto req = FromTaskOutput(task, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].field(), "output.data.realisasi.TL-2");
  ASSERT_EQ(req.items_size(), 2);
  EXPECT_EQ(req.items(0).kode(), "TL-1");
  EXPECT_EQ(req.items(0).bukti(0).uri(), "dms://bukti/1");
}

TEST(Catalogue, ShippedLoadsAndBadFilesNameTheLine) {
  auto cats = Kalbar();
  ASSERT_EQ(cats.size(), 3u);
  EXPECT_EQ(cats[0].indikator(1).arah(), v1::Indicator::LOWER_IS_BETTER);
  EXPECT_EQ(cats[1].indikator(1).range_max(), 80);
  EXPECT_EQ(cats[0].organisasi_indikator_size(), 2);
  try {
    ParseCatalogues("tahun: 2026\norganisasi: x\nunit:\n  a:\n    indikator:\n      - {kode: A, arah: naikk, target: [1,2,3]}\n",
                    "bad.yaml");
    FAIL();
  } catch (const DomainError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("bad.yaml:6: unit.a.indikator[0].arah: must be naik, turun or rentang"), std::string::npos) << m;
    EXPECT_NE(m.find("unit.a.indikator[0].target: needs the four quarterly targets"), std::string::npos) << m;
  }
}

TEST(ProcessMetrics, FromRunsWithKnownTimings) {
  auto rec = [](const char* run, uint32_t step, const char* role, int64_t taken, int64_t standard, bool returned) {
    TaskRecord r;
    r.run_id = run;
    r.entry.set_kind(returned ? v1::HistoryEntry::TASK_RETURNED : v1::HistoryEntry::TASK_COMPLETED);
    r.entry.set_step(step);
    r.entry.set_pelaksana(role);
    r.entry.set_elapsed_seconds(taken);
    r.entry.set_standard_seconds(standard);
    r.entry.set_within_standard(taken <= standard);
    return r;
  };
  std::vector<TaskRecord> records{
      rec("R1", 5, "kasubbag_tu", 3600, 7200, false), rec("R1", 6, "kabag", 900, 1800, true),
      rec("R1", 5, "kasubbag_tu", 9000, 7200, false), rec("R1", 6, "kabag", 1200, 1800, false),
      rec("R2", 5, "kasubbag_tu", 5400, 7200, false), rec("R2", 6, "kabag", 2400, 1800, false),
  };
  auto m = ComputeProcessMetrics(records);
  EXPECT_EQ(m.runs(), 2u);
  ASSERT_EQ(m.steps_size(), 2);
  const auto& s5 = m.steps(0);
  EXPECT_EQ(s5.count(), 3u);
  EXPECT_DOUBLE_EQ(s5.median_seconds(), 5400);
  EXPECT_DOUBLE_EQ(s5.p90_seconds(), 9000);
  EXPECT_DOUBLE_EQ(s5.standard_seconds(), 7200);
  EXPECT_NEAR(s5.within_standard_share(), 2.0 / 3, 1e-9);
  EXPECT_DOUBLE_EQ(s5.overrun_seconds(), 1800);
  const auto& s6 = m.steps(1);
  EXPECT_EQ(s6.revisions(), 1u);
  EXPECT_DOUBLE_EQ(s6.revisions_per_run(), 0.5);
  EXPECT_DOUBLE_EQ(s6.overrun_seconds(), 600);
  ASSERT_EQ(m.bottlenecks_size(), 2);
  EXPECT_EQ(m.bottlenecks(0).pelaksana(), "kasubbag_tu");  // 1800 s over the waktu
  EXPECT_DOUBLE_EQ(m.bottlenecks(0).overrun_seconds(), 1800);
}

TEST(Export, CsvXlsxAndAnOfflineHtmlChart) {
  auto cats = Kalbar();
  v1::PerformanceReport report;
  report.set_run_id("R1");
  report.set_period("2026-Q3");
  report.set_organisasi("kalbar-biro-organisasi");
  *report.add_units() = UnitReportFor(cats[0], P("2026-Q3"), {{"TL-1", {{3, 70}}}, {"TL-2", {{3, 4}}}}, {});
  std::string csv = ToCsv(report);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "unit,kode,indikator,satuan,target,realisasi,capaian_persen,predikat,rumus");
  EXPECT_NE(csv.find("bagian-tatalaksana,TL-1,Persentase perangkat daerah yang menerapkan SOP AP,%,75.00,70.00,93.33,sangat baik"),
            std::string::npos)
      << csv;
  std::string html = ToHtml(report);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("93.3%"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);  // nothing fetched
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));
  std::string xlsx = ToXlsx(report);
  ASSERT_GT(xlsx.size(), 1000u);
  EXPECT_EQ(xlsx.substr(0, 2), "PK");  // a zip: the XLSX container
}

}  // namespace
}  // namespace sopflow::kinerja

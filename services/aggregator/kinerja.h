// Data kinerja without I/O: periods, the indicator catalogue, achievement
// (capaian) by each indicator's strategy, roll-ups from quarters to
// semesters and years, ratings, validation of submissions, and the SOP's
// process statistics.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sopflow/v1/aggregator.pb.h"

namespace sopflow::kinerja {

struct Period {
  enum Scope { kQuarter, kSemester, kYear };
  int year = 0;
  Scope scope = kYear;
  int index = 0;  // quarter 1-4 or semester 1-2
  // The last quarter the period covers (Q3 -> 3, S1 -> 2, year -> 4).
  int LastQuarter() const { return scope == kQuarter ? index : scope == kSemester ? index * 2 : 4; }
  int FirstQuarter() const { return scope == kQuarter ? index : scope == kSemester ? index * 2 - 1 : 1; }
  std::string ToString() const;
};

// "2026-Q3" (or "2026-TW3"), "2026-S1", "2026". False if not one.
bool ParsePeriod(const std::string& text, Period* out);

// A catalogue file (docs/aggregator.md) -> one Catalogue per unit. Throws
// DomainError(kInvalidArgument) listing every problem as file:line: field.
std::vector<v1::Catalogue> ParseCatalogues(const std::string& yaml, const std::string& file_name);

// Quarterly values (quarter 1-4 -> value) rolled up over the period by the
// indicator's rule; nullopt when no quarter of the period has a value.
std::optional<double> Rollup(const std::map<int, double>& quarters, v1::Indicator::YearRule rule, const Period& period);
// The indicator's target for the period (the annual target for a year).
std::optional<double> TargetFor(const v1::Indicator& indicator, const Period& period);

struct Achievement {
  double capaian = 0;
  std::string rumus;  // which strategy, written out
};
Achievement ComputeCapaian(const v1::Indicator& indicator, double target, double realisasi);
std::string Predikat(const std::vector<v1::RatingBand>& bands, double capaian);
std::vector<v1::RatingBand> DefaultBands();

// Every problem of a submission against the unit's catalogue; empty if none.
std::vector<v1::FieldProblem> Validate(const v1::Catalogue* catalogue, const std::string& expected_period,
                                       const v1::SubmitRealisasiRequest& req);

// A submission read from a fan-out task's output data:
//   {"realisasi": {"<kode>": <number>, ...}, "anggaran": {"<kode>": <number>}, "catatan": "..."}
// with the output's documents as evidence. Problems for what is not numbers.
v1::SubmitRealisasiRequest FromTaskOutput(const v1::Task& task, std::vector<v1::FieldProblem>* problems);

// One unit's report for a period from its quarterly values:
// values["<kode>"][q], budget["<kode>"][q].
v1::UnitReport UnitReportFor(const v1::Catalogue& catalogue, const Period& period,
                             const std::map<std::string, std::map<int, double>>& values,
                             const std::map<std::string, std::map<int, double>>& budget);

// Process statistics from completed-task history lines (of one SOP).
struct TaskRecord {
  std::string run_id;
  v1::HistoryEntry entry;  // TASK_COMPLETED or TASK_RETURNED
};
v1::ProcessMetrics ComputeProcessMetrics(const std::vector<TaskRecord>& records);
// Nearest-rank percentile (0 < p <= 100) of unsorted values; 0 if empty.
double Percentile(std::vector<double> values, double p);

}  // namespace sopflow::kinerja

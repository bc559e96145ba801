// The work calendar (kalender kerja): per unit, the time zone (WIB, WITA,
// WIT), working days and hours, and the holidays (libur nasional, cuti
// bersama) from data files. Waktu in days counts working days on it.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "clock.h"
#include "sopflow/v1/definition.pb.h"

namespace sopflow {

struct UnitCalendar {
  std::string zone = "WIB";
  int utc_offset_minutes = 7 * 60;
  std::array<bool, 7> working_day{false, true, true, true, true, true, false};  // Sunday first
  int start_minute = 7 * 60 + 30;  // 07:30 local
  int end_minute = 16 * 60;        // 16:00 local
};

class WorkCalendar {
 public:
  // Monday to Friday, 07:30-16:00 WIB, no holidays.
  static std::shared_ptr<const WorkCalendar> Default();
  // Throws std::runtime_error naming file:line for a malformed file.
  static std::shared_ptr<const WorkCalendar> LoadFile(const std::string& path);

  const UnitCalendar& ForUnit(const std::string& unit) const;
  // Is this local date (days since 1970-01-01) a working day for the unit?
  bool IsWorkingDay(const UnitCalendar& unit, int64_t local_day) const;
  bool IsHoliday(int64_t local_day) const { return holidays_.count(local_day) > 0; }
  std::string HolidayName(int64_t local_day) const;

  // When a task started at `start` in `unit` is due by `waktu`: minutes and
  // hours count on the clock; working days end at the close of the n-th
  // working day after the start day; calendar days add 24 h each.
  TimePoint DueAt(TimePoint start, const v1::Waktu& waktu, const std::string& unit) const;

  size_t holiday_count() const { return holidays_.size(); }

 private:
  UnitCalendar default_;
  std::map<std::string, UnitCalendar> units_;
  std::map<int64_t, std::string> holidays_;  // local day -> name
};

// Days since 1970-01-01 for "2026-03-20"; false if malformed.
bool ParseDate(const std::string& text, int64_t* day);

}  // namespace sopflow

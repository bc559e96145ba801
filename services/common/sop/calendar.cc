#include "calendar.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <stdexcept>

namespace sopflow {
namespace {

constexpr int64_t kDayMillis = 86400000;

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

int Weekday(int64_t day) { return static_cast<int>(((day % 7) + 11) % 7); }  // 1970-01-01 was a Thursday

[[noreturn]] void Fail(const std::string& file, const YAML::Node& at, const std::string& message) {
  throw std::runtime_error(file + ":" + std::to_string(at.Mark().line + 1) + ": " + message);
}

int ParseClock(const std::string& text, bool* ok) {
  int h = 0, m = 0;
  *ok = std::sscanf(text.c_str(), "%d:%d", &h, &m) == 2 && h >= 0 && h <= 24 && m >= 0 && m < 60;
  return h * 60 + m;
}

UnitCalendar ReadUnit(const YAML::Node& n, const UnitCalendar& base, const std::string& file) {
  UnitCalendar u = base;
  if (!n.IsMap()) Fail(file, n, "a unit calendar is a map (zona, hari_kerja, jam_kerja)");
  if (auto z = n["zona"]) {
    std::string zone = z.as<std::string>();
    static const std::map<std::string, int> kZones{{"WIB", 7 * 60}, {"WITA", 8 * 60}, {"WIT", 9 * 60}};
    auto it = kZones.find(zone);
    if (it == kZones.end()) Fail(file, z, "zona must be WIB, WITA or WIT, got '" + zone + "'");
    u.zone = zone;
    u.utc_offset_minutes = it->second;
  }
  if (auto days = n["hari_kerja"]) {
    static const std::map<std::string, int> kDays{{"minggu", 0}, {"senin", 1}, {"selasa", 2}, {"rabu", 3},
                                                  {"kamis", 4},  {"jumat", 5}, {"sabtu", 6}};
    u.working_day.fill(false);
    for (const auto& d : days) {
      auto it = kDays.find(d.as<std::string>());
      if (it == kDays.end()) Fail(file, d, "unknown day '" + d.as<std::string>() + "' (senin ... minggu)");
      u.working_day[it->second] = true;
    }
  }
  if (auto hours = n["jam_kerja"]) {
    std::string text = hours.as<std::string>();
    auto dash = text.find('-');
    bool ok1 = false, ok2 = false;
    if (dash != std::string::npos) {
      u.start_minute = ParseClock(text.substr(0, dash), &ok1);
      u.end_minute = ParseClock(text.substr(dash + 1), &ok2);
    }
    if (!ok1 || !ok2 || u.start_minute >= u.end_minute) Fail(file, hours, "jam_kerja must be HH:MM-HH:MM, got '" + text + "'");
  }
  return u;
}

}  // namespace

bool ParseDate(const std::string& text, int64_t* day) {
  int y, m, d;
  char extra;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
    return false;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  time_t t = timegm(&tm);
  *day = t / 86400;
  std::tm back{};
  gmtime_r(&t, &back);
  return back.tm_mday == d;  // rejects 2026-02-30
}

std::shared_ptr<const WorkCalendar> WorkCalendar::Default() {
  static auto calendar = std::make_shared<const WorkCalendar>();
  return calendar;
}

std::shared_ptr<const WorkCalendar> WorkCalendar::LoadFile(const std::string& path) {
  auto cal = std::make_shared<WorkCalendar>();
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  try {
    if (auto d = root["bawaan"]) cal->default_ = ReadUnit(d, cal->default_, path);
    if (auto units = root["unit"])
      for (const auto& kv : units) cal->units_[kv.first.as<std::string>()] = ReadUnit(kv.second, cal->default_, path);
    auto dir = std::filesystem::path(path).parent_path();
    for (const auto& f : root["libur"]) {
      std::string file = (dir / f.as<std::string>()).string();
      YAML::Node list = YAML::LoadFile(file);
      for (const char* section : {"libur_nasional", "cuti_bersama"})
        for (const auto& h : list[section]) {
          int64_t day;
          std::string date = h["tanggal"].as<std::string>("");
          if (!ParseDate(date, &day)) Fail(file, h, "tanggal must be YYYY-MM-DD, got '" + date + "'");
          cal->holidays_[day] = h["nama"].as<std::string>("libur");
        }
    }
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return cal;
}

const UnitCalendar& WorkCalendar::ForUnit(const std::string& unit) const {
  auto it = units_.find(unit);
  return it == units_.end() ? default_ : it->second;
}

bool WorkCalendar::IsWorkingDay(const UnitCalendar& unit, int64_t local_day) const {
  return unit.working_day[Weekday(local_day)] && !IsHoliday(local_day);
}

std::string WorkCalendar::HolidayName(int64_t local_day) const {
  auto it = holidays_.find(local_day);
  return it == holidays_.end() ? "" : it->second;
}

TimePoint WorkCalendar::DueAt(TimePoint start, const v1::Waktu& waktu, const std::string& unit_id) const {
  using namespace std::chrono;
  switch (waktu.unit()) {
    case v1::Waktu::MINUTES: return start + minutes(waktu.amount());
    case v1::Waktu::HOURS: return start + hours(waktu.amount());
    case v1::Waktu::CALENDAR_DAYS: return start + hours(24) * waktu.amount();
    case v1::Waktu::WORKING_DAYS: {
      const UnitCalendar& unit = ForUnit(unit_id);
      int64_t offset_ms = static_cast<int64_t>(unit.utc_offset_minutes) * 60000;
      int64_t day = FloorDiv(UnixMillis(start) + offset_ms, kDayMillis);
      uint32_t left = waktu.amount();
      for (int guard = 0; left > 0 && guard < 100000; ++guard) {
        ++day;
        if (IsWorkingDay(unit, day)) --left;
      }
      return FromUnixMillis(day * kDayMillis + static_cast<int64_t>(unit.end_minute) * 60000 - offset_ms);
    }
    default: return start;
  }
}

}  // namespace sopflow

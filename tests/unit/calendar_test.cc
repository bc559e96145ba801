#include "calendar.h"

#include <gtest/gtest.h>

#include "waktu.h"

namespace sopflow {
namespace {

TimePoint At(const char* rfc3339) {
  TimePoint t;
  EXPECT_TRUE(ParseRfc3339(rfc3339, &t)) << rfc3339;
  return t;
}

v1::Waktu W(const char* text) {
  v1::Waktu w;
  std::string error;
  EXPECT_TRUE(ParseWaktu(text, &w, &error)) << error;
  return w;
}

std::shared_ptr<const WorkCalendar> Shipped() {
  return WorkCalendar::LoadFile(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/calendar/calendar.yaml");
}

TEST(Calendar, ShipsThe2026HolidaysOfTheSkb) {
  auto cal = Shipped();
  EXPECT_EQ(cal->holiday_count(), 25u);  // 17 libur nasional + 8 cuti bersama
  int64_t day;
  ASSERT_TRUE(ParseDate("2026-08-17", &day));
  EXPECT_EQ(cal->HolidayName(day), "Proklamasi Kemerdekaan");
  ASSERT_TRUE(ParseDate("2026-03-23", &day));
  EXPECT_EQ(cal->HolidayName(day), "Cuti Bersama Idul Fitri");
  EXPECT_EQ(cal->ForUnit("gowa-perencanaan").zone, "WITA");
  EXPECT_EQ(cal->ForUnit("unknown-unit").zone, "WIB");
}

TEST(Calendar, ClockUnitsCountOnTheClock) {
  auto cal = Shipped();
  // Saturday night: minutes and hours do not wait for Monday.
  EXPECT_EQ(cal->DueAt(At("2026-07-04T22:00:00+08:00"), W("20 menit"), "gowa-perencanaan"), At("2026-07-04T22:20:00+08:00"));
  EXPECT_EQ(cal->DueAt(At("2026-07-04T22:00:00+08:00"), W("3 jam"), "gowa-perencanaan"), At("2026-07-05T01:00:00+08:00"));
  EXPECT_EQ(cal->DueAt(At("2026-07-03T10:00:00+08:00"), W("2 hari kalender"), "gowa-perencanaan"),
            At("2026-07-05T10:00:00+08:00"));
}

TEST(Calendar, WorkingDaysSkipAWeekendAndAHolidayInWita) {
  auto cal = Shipped();
  // Friday 14 Aug 2026, 10:00 WITA + 2 hari: Mon 17 Aug is Proklamasi, so
  // Tue 18 (1) and Wed 19 (2); due at the close of work, 16:00 WITA.
  EXPECT_EQ(cal->DueAt(At("2026-08-14T10:00:00+08:00"), W("2 hari"), "gowa-perencanaan"), At("2026-08-19T16:00:00+08:00"));
  // The same moment in a WIB unit is 09:00 WIB; due 16:00 WIB.
  EXPECT_EQ(cal->DueAt(At("2026-08-14T10:00:00+08:00"), W("2 hari"), "kalbar-biro-organisasi"),
            At("2026-08-19T16:00:00+07:00"));
  // Idul Fitri: Thu 19 Mar (Nyepi) ... Tue 24 Mar are all off; from Wed 18 Mar
  // (cuti bersama, itself off) one working day is Wed 25 Mar.
  EXPECT_EQ(cal->DueAt(At("2026-03-18T09:00:00+08:00"), W("1 hari"), "gowa-perencanaan"), At("2026-03-25T16:00:00+08:00"));
  // Late Friday UTC is already Saturday in WITA: the count starts from Saturday.
  EXPECT_EQ(cal->DueAt(At("2026-07-03T17:00:00Z"), W("1 hari"), "gowa-perencanaan"), At("2026-07-06T16:00:00+08:00"));
}

TEST(Calendar, DefaultHasNoHolidays) {
  auto cal = WorkCalendar::Default();
  EXPECT_EQ(cal->DueAt(At("2026-08-14T10:00:00+07:00"), W("2 hari"), "x"), At("2026-08-18T16:00:00+07:00"));
}

TEST(Calendar, MalformedFilesNameTheLine) {
  std::string dir = ::testing::TempDir();
  std::string path = dir + "/bad-calendar.yaml";
  FILE* f = fopen(path.c_str(), "w");
  fputs("bawaan:\n  zona: WITA\nunit:\n  x:\n    zona: CET\n", f);
  fclose(f);
  try {
    WorkCalendar::LoadFile(path);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad-calendar.yaml:5: zona must be WIB, WITA or WIT"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sopflow

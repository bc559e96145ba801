#include "waktu.h"

#include <gtest/gtest.h>

namespace sopflow {
namespace {

v1::Waktu Parse(const std::string& text) {
  v1::Waktu w;
  std::string error;
  EXPECT_TRUE(ParseWaktu(text, &w, &error)) << text << ": " << error;
  return w;
}

TEST(Waktu, ReadsTheSeedForms) {
  EXPECT_EQ(Parse("20 Menit").unit(), v1::Waktu::MINUTES);
  EXPECT_EQ(Parse("20 Menit").amount(), 20u);
  EXPECT_EQ(Parse("2 Jam").unit(), v1::Waktu::HOURS);
  EXPECT_EQ(Parse("2 Hari").unit(), v1::Waktu::WORKING_DAYS);
  EXPECT_EQ(Parse("2 hari kerja").unit(), v1::Waktu::WORKING_DAYS);
  EXPECT_EQ(Parse("3 hari kalender").unit(), v1::Waktu::CALENDAR_DAYS);
  EXPECT_EQ(Parse("Sesuai dengan waktu yang ditentukan").unit(), v1::Waktu::SET_AT_START);
  EXPECT_EQ(Parse("ditentukan_saat_mulai").unit(), v1::Waktu::SET_AT_START);
  EXPECT_EQ(Parse("45 minutes").unit(), v1::Waktu::MINUTES);
}

TEST(Waktu, RejectsWhatItCannotRead) {
  v1::Waktu w;
  std::string error;
  for (const char* bad : {"", "menit", "0 menit", "-3 jam", "2 minggu", "2.5 jam", "2 hari libur"}) {
    EXPECT_FALSE(ParseWaktu(bad, &w, &error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

TimePoint At(const char* rfc3339) {
  TimePoint t;
  EXPECT_TRUE(ParseRfc3339(rfc3339, &t)) << rfc3339;
  return t;
}

TEST(Waktu, DueTimes) {
  EXPECT_EQ(DueAt(At("2026-07-01T09:00:00+07:00"), Parse("20 menit")), At("2026-07-01T09:20:00+07:00"));
  EXPECT_EQ(DueAt(At("2026-07-01T09:00:00+07:00"), Parse("2 jam")), At("2026-07-01T11:00:00+07:00"));
  // Friday + 2 working days = Tuesday (WIB).
  EXPECT_EQ(DueAt(At("2026-07-03T10:00:00+07:00"), Parse("2 hari")), At("2026-07-07T10:00:00+07:00"));
  EXPECT_EQ(DueAt(At("2026-07-03T10:00:00+07:00"), Parse("2 hari kalender")), At("2026-07-05T10:00:00+07:00"));
  // 23:30 UTC Friday is Saturday 06:30 WIB: the next working day is Monday.
  EXPECT_EQ(DueAt(At("2026-07-03T23:30:00Z"), Parse("1 hari")), At("2026-07-06T06:30:00+07:00"));
}

TEST(Clock, Rfc3339RoundTrip) {
  TimePoint t = At("2026-11-21T06:04:05.123+07:00");
  EXPECT_EQ(FormatRfc3339(t), "2026-11-20T23:04:05.123Z");
  TimePoint u;
  EXPECT_FALSE(ParseRfc3339("2026-11-21 06:04", &u));
  EXPECT_FALSE(ParseRfc3339("2026-13-21T06:04:05Z", &u));
}

}  // namespace
}  // namespace sopflow

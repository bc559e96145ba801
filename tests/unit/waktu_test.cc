#include "waktu.h"

#include <gtest/gtest.h>

#include "clock.h"

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

TEST(Clock, Rfc3339RoundTrip) {
  TimePoint t = At("2026-11-21T06:04:05.123+07:00");
  EXPECT_EQ(FormatRfc3339(t), "2026-11-20T23:04:05.123Z");
  TimePoint u;
  EXPECT_FALSE(ParseRfc3339("2026-11-21 06:04", &u));
  EXPECT_FALSE(ParseRfc3339("2026-13-21T06:04:05Z", &u));
}

}  // namespace
}  // namespace sopflow

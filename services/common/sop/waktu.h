// Waktu (time standard) text and due times.
#pragma once

#include <string>

#include "clock.h"
#include "sopflow/v1/definition.pb.h"

namespace sopflow {

// Parses "20 menit", "2 jam", "2 hari" (working days), "2 hari kalender",
// "ditentukan saat mulai" (set when the run starts); English unit names are
// accepted too. Returns false with *error set when the text is not one.
bool ParseWaktu(const std::string& text, v1::Waktu* out, std::string* error);

// When a task created at `start` is due by its waktu. Minutes and hours
// count on the clock; working days skip Saturdays and Sundays in the
// office's time zone (UTC offset in minutes; WIB = +420). Holidays and
// working hours per unit are the notifier's work calendar (issue 3).
TimePoint DueAt(TimePoint start, const v1::Waktu& waktu, int utc_offset_minutes = 420);

// "20 menit", "2 hari kerja": a short human form.
std::string DescribeWaktu(const v1::Waktu& waktu);

}  // namespace sopflow

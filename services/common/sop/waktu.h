// Waktu (time standard) text and due times.
#pragma once

#include <string>

#include "sopflow/v1/definition.pb.h"

namespace sopflow {

// Parses "20 menit", "2 jam", "2 hari" (working days), "2 hari kalender",
// "ditentukan saat mulai" (set when the run starts); English unit names are
// accepted too. Returns false with *error set when the text is not one.
bool ParseWaktu(const std::string& text, v1::Waktu* out, std::string* error);

// "20 menit", "2 hari kerja": a short human form.
std::string DescribeWaktu(const v1::Waktu& waktu);

}  // namespace sopflow

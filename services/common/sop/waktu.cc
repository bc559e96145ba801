#include "waktu.h"

#include <algorithm>
#include <cctype>
#include <sstream>
#include <vector>

namespace sopflow {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

bool IsOneOf(const std::string& w, std::initializer_list<const char*> options) {
  for (const char* o : options)
    if (w == o) return true;
  return false;
}

}  // namespace

bool ParseWaktu(const std::string& text, v1::Waktu* out, std::string* error) {
  out->Clear();
  out->set_text(text);
  std::string t = Lower(text);
  std::replace(t.begin(), t.end(), '_', ' ');
  auto words = Words(t);
  if (words.empty()) {
    *error = "waktu is empty";
    return false;
  }
  std::string joined;
  for (const auto& w : words) joined += (joined.empty() ? "" : " ") + w;
  if (joined == "ditentukan saat mulai" || joined == "sesuai dengan waktu yang ditentukan" ||
      joined == "set at start") {
    out->set_unit(v1::Waktu::SET_AT_START);
    return true;
  }
  char* end = nullptr;
  long amount = std::strtol(words[0].c_str(), &end, 10);
  if (end == words[0].c_str() || *end != '\0' || words.size() < 2) {
    *error = "cannot read waktu '" + text + "': expected '<number> menit|jam|hari [kalender]' or 'ditentukan saat mulai'";
    return false;
  }
  if (amount <= 0 || amount > 100000) {
    *error = "waktu amount must be between 1 and 100000, got " + words[0];
    return false;
  }
  out->set_amount(static_cast<uint32_t>(amount));
  const std::string& unit = words[1];
  std::string qualifier = words.size() > 2 ? words[2] : "";
  if (words.size() > 3) qualifier = "?";
  if (IsOneOf(unit, {"menit", "minute", "minutes", "min"}) && qualifier.empty()) {
    out->set_unit(v1::Waktu::MINUTES);
  } else if (IsOneOf(unit, {"jam", "hour", "hours"}) && qualifier.empty()) {
    out->set_unit(v1::Waktu::HOURS);
  } else if (IsOneOf(unit, {"hari", "day", "days"}) && (qualifier.empty() || qualifier == "kerja")) {
    out->set_unit(v1::Waktu::WORKING_DAYS);
  } else if (IsOneOf(unit, {"working"}) && IsOneOf(qualifier, {"day", "days"})) {
    out->set_unit(v1::Waktu::WORKING_DAYS);
  } else if ((IsOneOf(unit, {"hari"}) && qualifier == "kalender") ||
             (unit == "calendar" && IsOneOf(qualifier, {"day", "days"}))) {
    out->set_unit(v1::Waktu::CALENDAR_DAYS);
  } else {
    *error = "cannot read waktu '" + text + "': unknown unit (menit, jam, hari, hari kalender)";
    return false;
  }
  return true;
}

std::string DescribeWaktu(const v1::Waktu& waktu) {
  std::string n = std::to_string(waktu.amount());
  switch (waktu.unit()) {
    case v1::Waktu::MINUTES: return n + " menit";
    case v1::Waktu::HOURS: return n + " jam";
    case v1::Waktu::WORKING_DAYS: return n + " hari kerja";
    case v1::Waktu::CALENDAR_DAYS: return n + " hari kalender";
    case v1::Waktu::SET_AT_START: return "ditentukan saat mulai";
    default: return "?";
  }
}

}  // namespace sopflow

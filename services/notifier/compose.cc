#include "compose.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sopflow::notifier {

using google::protobuf::util::TimeUtil;

namespace {

TimePoint FromProto(const google::protobuf::Timestamp& t) { return FromUnixMillis(TimeUtil::TimestampToMilliseconds(t)); }
google::protobuf::Timestamp ToProto(TimePoint t) { return TimeUtil::MillisecondsToTimestamp(UnixMillis(t)); }

const v1::Notification::Kind kAllKinds[] = {
    v1::Notification::TASK_ASSIGNED, v1::Notification::TASK_REMINDER, v1::Notification::TASK_OVERDUE,
    v1::Notification::TASK_ESCALATED, v1::Notification::RUN_COMPLETED, v1::Notification::RUN_CANCELLED,
    v1::Notification::SUBMISSION_LATE, v1::Notification::TEST};

}  // namespace

std::shared_ptr<const Templates> Templates::Load(const std::string& dir) {
  auto t = std::make_shared<Templates>();
  for (const char* lang : {"id", "en"})
    for (auto kind : kAllKinds) {
      std::string path = dir + "/" + lang + "/" + v1::Notification::Kind_Name(kind) + ".txt";
      std::ifstream in(path);
      if (!in) throw std::runtime_error("missing template " + path);
      std::string first;
      std::getline(in, first);
      if (first.rfind("Subject: ", 0) != 0) throw std::runtime_error(path + ":1: must start with 'Subject: '");
      std::stringstream rest;
      rest << in.rdbuf();
      std::string body = rest.str();
      if (!body.empty() && body[0] == '\n') body.erase(0, 1);
      t->templates_[{lang, kind}] = {Compile(first.substr(9)), Compile(body)};
    }
  return t;
}

Rendered Templates::Render(v1::Notification::Kind kind, const std::string& language, const Vars& vars) const {
  auto it = templates_.find({language == "en" ? "en" : "id", kind});
  if (it == templates_.end()) return {v1::Notification::Kind_Name(kind), ""};
  return {Fill(it->second.subject, vars), Fill(it->second.body, vars)};
}

Templates::Compiled Templates::Compile(const std::string& text) {
  Compiled out;
  auto literal = [&out](std::string_view s) {
    if (s.empty()) return;
    if (!out.empty() && !out.back().placeholder) out.back().text += s;
    else out.push_back({std::string(s), false});
  };
  std::string_view rest = text;
  for (;;) {
    size_t open = rest.find("{{");
    size_t close = open == std::string_view::npos ? open : rest.find("}}", open + 2);
    if (close == std::string_view::npos) break;
    // "{{a {{b}}": the placeholder is the innermost, the rest literal.
    size_t inner = rest.rfind("{{", close);
    literal(rest.substr(0, inner));
    out.push_back({std::string(rest.substr(inner + 2, close - inner - 2)), true});
    rest.remove_prefix(close + 2);
  }
  literal(rest);
  return out;
}

std::string Templates::Fill(const Compiled& pieces, const Vars& vars) {
  std::string out;
  for (const auto& piece : pieces) {
    if (!piece.placeholder) {
      out += piece.text;
      continue;
    }
    auto it = vars.find(piece.text);
    if (it != vars.end()) out += it->second;
    else out.append("{{").append(piece.text).append("}}");
  }
  return out;
}

std::vector<const User*> Audience(const UserDirectory& users, const std::string& role, const std::string& unit,
                                 const std::string& member) {
  if (member.empty()) return users.InRole(role, unit);
  // A member is a user or a unit: the role's holders in the unit named, and
  // the user named if they hold the role, in the file's order.
  std::vector<const User*> out = users.InRole(role, member);
  const User* named = users.ById(member);
  if (named && named->HasRole(role) && named->unit != member) {
    auto at = std::lower_bound(out.begin(), out.end(), named);  // pointers into one vector: file order
    out.insert(at, named);
  }
  return out;
}

std::string FormatLocal(TimePoint t, const UnitCalendar& unit, const std::string& language) {
  static const char* kDaysId[] = {"Minggu", "Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu"};
  static const char* kDaysEn[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
  static const char* kMonthsId[] = {"Januari", "Februari", "Maret",     "April",   "Mei",      "Juni",
                                    "Juli",    "Agustus",  "September", "Oktober", "November", "Desember"};
  static const char* kMonthsEn[] = {"January", "February", "March",     "April",   "May",      "June",
                                    "July",    "August",   "September", "October", "November", "December"};
  time_t local = static_cast<time_t>(UnixMillis(t) / 1000) + unit.utc_offset_minutes * 60;
  std::tm tm{};
  gmtime_r(&local, &tm);
  bool en = language == "en";
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s%s %d %s %d %02d:%02d %s", en ? kDaysEn[tm.tm_wday] : kDaysId[tm.tm_wday],
                en ? "" : ",", tm.tm_mday, en ? kMonthsEn[tm.tm_mon] : kMonthsId[tm.tm_mon], tm.tm_year + 1900,
                tm.tm_hour, tm.tm_min, unit.zone.c_str());
  return buf;
}

TaskTimers TimersFor(const v1::Task& task, double reminder_share, double time_factor) {
  TaskTimers timers;
  if (!task.has_due_at()) return timers;
  TimePoint created = FromProto(task.created_at());
  auto span = FromProto(task.due_at()) - created;
  if (time_factor > 1) span = std::chrono::duration_cast<std::chrono::microseconds>(span / time_factor);
  timers.has_due = true;
  timers.due = created + span;
  timers.reminder = created + std::chrono::duration_cast<std::chrono::microseconds>(span * reminder_share);
  return timers;
}

v1::Notification Composer::ForTask(v1::Notification::Kind kind, const v1::Task& task, const std::string& cause,
                                   TimePoint now, const std::string& role) const {
  v1::Notification n;
  n.set_id(cause + "/" + v1::Notification::Kind_Name(kind));
  n.set_kind(kind);
  *n.mutable_time() = ToProto(now);
  n.set_unit(task.unit());
  n.set_role(role.empty() ? task.pelaksana() : role);
  if (role.empty()) n.set_member(task.member());
  n.set_run_id(task.run_id());
  n.set_task_id(task.id());
  n.set_sop_id(task.sop_id());
  n.set_step(task.step());
  n.set_period(task.period());
  if (task.has_due_at()) *n.mutable_due_at() = task.due_at();
  bool claimed = task.status() == v1::Task::CLAIMED && !task.assignee().empty();
  if (claimed && role.empty() && kind != v1::Notification::TASK_ASSIGNED) {
    n.add_users(task.assignee());  // a claimed task's reminders go to whoever holds it
  } else {
    for (const auto& u : Audience(*users_, n.role(), task.unit(), n.member())) n.add_users(u->id);
  }
  n.set_reason(task.return_reason());
  SetTexts(&n, TaskVars(n, task));
  return n;
}

Vars Composer::TaskVars(const v1::Notification& n, const v1::Task& task) const {
  Vars vars = VarsOf(n);
  vars["aktivitas"] = task.aktivitas();
  vars["sop"] = task.sop_nama().empty() ? task.sop_id() : task.sop_nama();
  vars["pelaksana"] = task.pelaksana();
  vars["anggota"] = task.member().empty() ? "" : " (" + task.member() + ")";
  std::string kelengkapan;
  for (const auto& k : task.kelengkapan()) kelengkapan += (kelengkapan.empty() ? "" : ", ") + k;
  vars["kelengkapan"] = kelengkapan.empty() ? "-" : kelengkapan;
  vars["output"] = task.output_name().empty() ? "-" : task.output_name();
  vars["waktu"] = task.waktu().text().empty() ? "-" : task.waktu().text();
  vars["penerima"] = n.role() + (n.member().empty() ? "" : " " + n.member());
  return vars;
}

void Composer::SetTexts(v1::Notification* n, Vars vars) const {
  // Only the due date reads differently per language.
  auto tenggat = [&](const std::string& language) {
    return n->has_due_at() ? FormatLocal(FromProto(n->due_at()), calendar_->ForUnit(n->unit()), language) : "-";
  };
  vars["tenggat"] = tenggat("id");
  auto id = templates_->Render(n->kind(), "id", vars);
  vars["tenggat"] = tenggat("en");
  auto en = templates_->Render(n->kind(), "en", vars);
  n->set_title(id.subject);
  n->set_body(id.body);
  n->set_title_en(en.subject);
  n->set_body_en(en.body);
}

v1::Notification Composer::ForRun(v1::Notification::Kind kind, const v1::Run& run, const std::string& cause,
                                  const std::vector<std::string>& user_ids, TimePoint now) const {
  v1::Notification n;
  n.set_id(cause + "/" + v1::Notification::Kind_Name(kind));
  n.set_kind(kind);
  *n.mutable_time() = ToProto(now);
  n.set_unit(run.unit());
  n.set_run_id(run.id());
  n.set_sop_id(run.sop_id());
  n.set_period(run.period());
  n.set_reason(run.cancel_reason());
  for (const auto& u : user_ids) n.add_users(u);
  Vars vars = VarsOf(n);
  vars["sop"] = run.sop_nama().empty() ? run.sop_id() : run.sop_nama();
  vars["penerima"] = user_ids.size() == 1 ? user_ids[0] : run.unit();
  SetTexts(&n, std::move(vars));
  return n;
}

std::vector<v1::Notification> Composer::ForLateSubmissions(const v1::Event& event, TimePoint now) const {
  std::vector<v1::Notification> out;
  const auto& late = event.submissions_late();
  for (const auto& unit : late.units()) {
    v1::Notification n;
    n.set_id(event.id() + "/" + unit + "/SUBMISSION_LATE");
    n.set_kind(v1::Notification::SUBMISSION_LATE);
    *n.mutable_time() = ToProto(now);
    n.set_unit(event.unit());
    n.set_role(late.role());
    n.set_member(unit);
    n.set_run_id(event.run_id());
    n.set_sop_id(event.sop_id());
    n.set_step(late.step());
    n.set_period(event.period());
    if (late.has_due_at()) *n.mutable_due_at() = late.due_at();
    for (const auto& u : Audience(*users_, late.role(), event.unit(), unit)) n.add_users(u->id);
    SetTexts(&n, VarsOf(n));
    out.push_back(std::move(n));
  }
  return out;
}

Vars Composer::VarsOf(const v1::Notification& n) const {
  Vars v;
  v["sop"] = n.sop_id();
  v["sop_id"] = n.sop_id();
  v["langkah"] = std::to_string(n.step());
  v["periode"] = n.period();
  v["unit"] = n.unit();
  v["run"] = n.run_id();
  v["tugas"] = n.task_id();
  v["alasan"] = n.reason().empty() ? "-" : n.reason();
  v["pelaksana"] = n.role();
  v["anggota"] = n.member().empty() ? "" : " (" + n.member() + ")";
  v["anggota_unit"] = n.member();
  v["penerima"] = n.role().empty() ? n.unit() : n.role();
  return v;
}

Rendered Composer::RenderFor(const v1::Notification& n, const User& recipient) const {
  // The stored texts were rendered for the audience; address this person.
  const std::string& lang = recipient.language;
  std::string subject = lang == "en" ? n.title_en() : n.title();
  std::string body = lang == "en" ? n.body_en() : n.body();
  std::string generic = lang == "en" ? "Dear " : "Yth. ";
  auto line_end = body.find('\n');
  if (body.rfind(generic, 0) == 0 && line_end != std::string::npos)
    body = generic + recipient.name + "," + body.substr(line_end);
  return {subject, body};
}

}  // namespace sopflow::notifier

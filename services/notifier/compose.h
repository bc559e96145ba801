// From events to notifications, without I/O: who the audience is, what the
// message says (templates in Bahasa Indonesia and English), and when the
// reminder and the due-time timers of a task fire.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "calendar.h"
#include "clock.h"
#include "sopflow/v1/event.pb.h"
#include "sopflow/v1/notifier.pb.h"
#include "users.h"

namespace sopflow::notifier {

using Vars = std::map<std::string, std::string>;

struct Rendered {
  std::string subject;
  std::string body;
};

// Templates: <dir>/<language>/<KIND>.txt, a "Subject: ..." line, a blank
// line, then the body; {{name}} placeholders. A placeholder without a var
// stays as written; a var's value is not searched for placeholders.
class Templates {
 public:
  static std::shared_ptr<const Templates> Load(const std::string& dir);  // throws naming the missing file
  Rendered Render(v1::Notification::Kind kind, const std::string& language, const Vars& vars) const;

  // Literal text and placeholders, split once at load: rendering a
  // notification then appends pieces instead of searching the text for
  // each var (every task's notification is rendered twice, per language).
  struct Piece {
    std::string text;  // the literal, or the placeholder's name
    bool placeholder = false;
  };
  using Compiled = std::vector<Piece>;
  static Compiled Compile(const std::string& text);
  static std::string Fill(const Compiled& pieces, const Vars& vars);

 private:
  struct Template {
    Compiled subject, body;
  };
  std::map<std::pair<std::string, int>, Template> templates_;
};

// The users a role in a unit (or a fan-out member) resolves to.
std::vector<const User*> Audience(const UserDirectory& users, const std::string& role, const std::string& unit,
                                 const std::string& member);

// "Senin, 17 Agustus 2026 16:00 WITA" / "Monday 17 August 2026 16:00 WITA".
std::string FormatLocal(TimePoint t, const UnitCalendar& unit, const std::string& language);

struct TaskTimers {
  TimePoint reminder;  // share of the time from creation to due
  TimePoint due;
  bool has_due = false;
};
// time_factor > 1 runs SOP time faster (demos): the waits are divided by it.
TaskTimers TimersFor(const v1::Task& task, double reminder_share, double time_factor);

class Composer {
 public:
  Composer(std::shared_ptr<const UserDirectory> users, std::shared_ptr<const Templates> templates,
           std::shared_ptr<const WorkCalendar> calendar)
      : users_(std::move(users)), templates_(std::move(templates)), calendar_(std::move(calendar)) {}

  // A notification about `task` to `role` (the task's own audience when
  // empty), with id "<cause>/<KIND>".
  v1::Notification ForTask(v1::Notification::Kind kind, const v1::Task& task, const std::string& cause,
                           TimePoint now, const std::string& role = "") const;
  v1::Notification ForRun(v1::Notification::Kind kind, const v1::Run& run, const std::string& cause,
                          const std::vector<std::string>& user_ids, TimePoint now) const;
  std::vector<v1::Notification> ForLateSubmissions(const v1::Event& event, TimePoint now) const;

  // The message in `language` for one recipient (e-mail).
  Rendered RenderFor(const v1::Notification& n, const User& recipient) const;
  const UserDirectory& users() const { return *users_; }

 private:
  // The vars of a notification, but for "tenggat" (the due date), which
  // SetTexts writes per language.
  Vars VarsOf(const v1::Notification& n) const;
  Vars TaskVars(const v1::Notification& n, const v1::Task& task) const;
  // Title and body in both languages from `vars`, with the due date
  // ("tenggat") written for each.
  void SetTexts(v1::Notification* n, Vars vars) const;
  std::shared_ptr<const UserDirectory> users_;
  std::shared_ptr<const Templates> templates_;
  std::shared_ptr<const WorkCalendar> calendar_;
};

}  // namespace sopflow::notifier

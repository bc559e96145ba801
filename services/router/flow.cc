#include "flow.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <set>

#include "definition.h"
#include "error.h"
#include "waktu.h"

namespace sopflow::flow {

using google::protobuf::util::TimeUtil;

namespace {
google::protobuf::Timestamp ToProto(TimePoint t) { return TimeUtil::MillisecondsToTimestamp(UnixMillis(t)); }
TimePoint FromProto(const google::protobuf::Timestamp& t) { return FromUnixMillis(TimeUtil::TimestampToMilliseconds(t)); }
}  // namespace

const v1::Step& StepOf(const v1::Definition& def, uint32_t number) {
  int i = FindStep(def, number);
  if (i < 0)
    throw DomainError(ErrorCode::kInternal, "definition " + def.id() + " v" + std::to_string(def.version()) +
                                                " has no step " + std::to_string(number));
  return def.steps(i);
}

Next NextAfter(const v1::Definition& def, uint32_t step_number, const std::string& outcome) {
  const v1::Step& step = StepOf(def, step_number);
  if (step.kind() != v1::Step::REVIEW) return {step.ends_run(), step.next_step()};
  for (const auto& o : step.outcomes())
    if (o.name() == outcome) return {o.ends_run(), o.next_step()};
  throw DomainError(ErrorCode::kInternal, "step " + std::to_string(step_number) + " has no outcome '" + outcome + "'");
}

std::string CheckOutcome(const v1::Step& step, const std::string& outcome) {
  if (step.kind() != v1::Step::REVIEW) {
    if (outcome.empty() || outcome == kDefaultOutcome) return kDefaultOutcome;
    ThrowInvalid("outcome", "step " + std::to_string(step.number()) + " is not a review; leave outcome empty or '" +
                                kDefaultOutcome + "'");
  }
  std::string allowed;
  for (const auto& o : step.outcomes()) {
    if (o.name() == outcome) return outcome;
    allowed += (allowed.empty() ? "" : ", ") + o.name();
  }
  ThrowInvalid("outcome", "step " + std::to_string(step.number()) + " is a review; choose one of: " + allowed);
}

std::string RevisionOutcome(const v1::Step& step) {
  for (const auto& o : step.outcomes())
    if (o.revision()) return o.name();
  ThrowPrecondition("step " + std::to_string(step.number()) + " cannot be returned: it is not a review with a revision outcome");
}

std::string TaskId(const std::string& run_id, uint32_t gen, int member_index) {
  std::string id = run_id + "." + std::to_string(gen);
  if (member_index >= 0) id += "." + std::to_string(member_index + 1);
  return id;
}

std::string SupervisorOf(const v1::Definition& def, uint32_t number) {
  const v1::Step& step = StepOf(def, number);
  if (!step.atasan().empty()) return step.atasan();
  int i = FindStep(def, number);
  for (int j = i + 1; j < def.steps_size(); ++j)
    if (def.steps(j).kind() == v1::Step::REVIEW && def.steps(j).pelaksana() != step.pelaksana())
      return def.steps(j).pelaksana();
  const std::string& first = def.steps(0).pelaksana();
  return first == step.pelaksana() ? "" : first;
}

std::vector<v1::Task> PlanTasks(const v1::Definition& def, const v1::Run& run, uint32_t step_number, uint32_t gen,
                                TimePoint now, const WorkCalendar& calendar) {
  const v1::Step& step = StepOf(def, step_number);
  v1::Task base;
  base.set_run_id(run.id());
  base.set_sop_id(def.id());
  base.set_sop_version(def.version());
  base.set_sop_nama(def.nama());
  base.set_step(step.number());
  base.set_gen(gen);
  base.set_kind(step.kind());
  base.set_pelaksana(step.pelaksana());
  base.set_unit(run.unit());
  base.set_period(run.period());
  base.set_status(v1::Task::OPEN);
  *base.mutable_created_at() = ToProto(now);
  base.set_aktivitas(step.aktivitas());
  *base.mutable_kelengkapan() = step.kelengkapan();
  *base.mutable_waktu() = step.waktu();
  base.set_output_name(step.output());
  base.set_job_type(step.job_type());
  base.set_supervisor(SupervisorOf(def, step_number));
  for (const auto& o : step.outcomes()) base.add_outcomes(o.name());
  if (step.waktu().unit() == v1::Waktu::SET_AT_START) {
    auto it = run.deadlines().find(step.number());
    if (it != run.deadlines().end()) *base.mutable_due_at() = it->second;
  } else {
    *base.mutable_due_at() = ToProto(calendar.DueAt(now, step.waktu(), run.unit()));
  }

  std::vector<v1::Task> tasks;
  if (step.kind() != v1::Step::FAN_OUT) {
    base.set_id(TaskId(run.id(), gen));
    tasks.push_back(std::move(base));
    return tasks;
  }
  auto members = run.members().find(step.member_group());
  if (members == run.members().end()) return tasks;
  for (int i = 0; i < members->second.members_size(); ++i) {
    v1::Task t = base;
    t.set_id(TaskId(run.id(), gen, i));
    t.set_member(members->second.members(i));
    tasks.push_back(std::move(t));
  }
  return tasks;
}

bool MayActOn(const User& user, const v1::Task& task) {
  if (!user.HasRole(task.pelaksana())) return false;
  if (!task.member().empty()) return task.member() == user.id || task.member() == user.unit;
  return task.unit() == user.unit;
}

bool MayStart(const User& user, const v1::Definition& def, const std::string& unit) {
  if (user.admin) return true;
  return def.steps_size() > 0 && user.unit == unit && user.HasRole(def.steps(0).pelaksana());
}

bool MayRead(const User& user, const v1::Run& run) {
  if (user.Has("read_runs") || user.unit == run.unit()) return true;
  for (const auto& [group, list] : run.members())
    for (const auto& m : list.members())
      if (m == user.id || m == user.unit) return true;
  return false;
}

std::vector<std::string> ReadersOf(const v1::Run& run) {
  std::set<std::string> names{run.unit()};
  for (const auto& [group, list] : run.members())
    for (const auto& m : list.members()) names.insert(m);
  names.erase("");
  return {names.begin(), names.end()};
}

void CheckStartRequest(const v1::Definition& def, const v1::StartRunRequest& req, TimePoint now) {
  if (req.period().empty()) ThrowInvalid("period", "is required, e.g. 2026-Q3");
  if (req.period().size() > 64) ThrowInvalid("period", "at most 64 characters");
  if (req.unit().empty()) ThrowInvalid("unit", "is required");
  if (req.request_id().size() > 128) ThrowInvalid("request_id", "at most 128 characters");
  std::set<std::string> groups;
  for (const auto& s : def.steps()) {
    if (s.kind() == v1::Step::FAN_OUT) {
      groups.insert(s.member_group());
      auto it = req.members().find(s.member_group());
      std::string field = "members[" + s.member_group() + "]";
      if (it == req.members().end() || it->second.members_size() == 0)
        ThrowInvalid(field, "step " + std::to_string(s.number()) + " makes one task per member; name at least one");
      std::set<std::string> seen;
      for (const auto& m : it->second.members()) {
        if (m.empty()) ThrowInvalid(field, "a member id is empty");
        if (!seen.insert(m).second) ThrowInvalid(field, "member '" + m + "' is listed twice");
      }
      if (it->second.members_size() > kMaxFanOutMembers)
        ThrowInvalid(field, "at most " + std::to_string(kMaxFanOutMembers) + " members");
    }
    if (s.waktu().unit() == v1::Waktu::SET_AT_START) {
      std::string field = "deadlines[" + std::to_string(s.number()) + "]";
      auto it = req.deadlines().find(s.number());
      if (it == req.deadlines().end())
        ThrowInvalid(field, "step " + std::to_string(s.number()) + "'s waktu is set when the run starts; give its deadline");
      if (FromProto(it->second) <= now) ThrowInvalid(field, "the deadline must be in the future");
    }
  }
  for (const auto& [group, list] : req.members())
    if (!groups.count(group)) ThrowInvalid("members[" + group + "]", "no fan-out step of " + def.id() + " uses this group");
  for (const auto& [step, when] : req.deadlines()) {
    int i = FindStep(def, step);
    if (i < 0 || def.steps(i).waktu().unit() != v1::Waktu::SET_AT_START)
      ThrowInvalid("deadlines[" + std::to_string(step) + "]", "only steps whose waktu is set at start take a deadline");
  }
}

v1::HistoryEntry CompletionEntry(const v1::Task& task, const std::string& user, const std::string& outcome,
                                 bool returned, const std::string& reason, TimePoint now) {
  v1::HistoryEntry e;
  *e.mutable_time() = ToProto(now);
  e.set_kind(returned ? v1::HistoryEntry::TASK_RETURNED : v1::HistoryEntry::TASK_COMPLETED);
  e.set_step(task.step());
  e.set_gen(task.gen());
  e.set_task_id(task.id());
  e.set_user(user);
  e.set_pelaksana(task.pelaksana());
  e.set_member(task.member());
  e.set_outcome(outcome);
  e.set_reason(reason);
  int64_t created = TimeUtil::TimestampToMilliseconds(task.created_at());
  e.set_elapsed_seconds((UnixMillis(now) - created) / 1000);
  if (task.has_due_at()) {
    int64_t due = TimeUtil::TimestampToMilliseconds(task.due_at());
    e.set_standard_seconds(std::max<int64_t>(0, (due - created) / 1000));
    e.set_within_standard(UnixMillis(now) <= due);
  }
  return e;
}

}  // namespace sopflow::flow

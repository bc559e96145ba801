// The router's rules, free of I/O: where a step leads, which tasks a step
// makes, who may act on a task, and what an outcome must be.
#pragma once

#include <string>
#include <vector>

#include "calendar.h"
#include "clock.h"
#include "sopflow/v1/definition.pb.h"
#include "sopflow/v1/router.pb.h"
#include "sopflow/v1/run.pb.h"
#include "users.h"

namespace sopflow::flow {

inline constexpr char kDefaultOutcome[] = "selesai";
// A StartRun names at most this many members for a fan-out step.
inline constexpr int kMaxFanOutMembers = 1000;

struct Next {
  bool ends_run = false;
  uint32_t step = 0;
};

// The step after `step` completed with `outcome`. Throws DomainError
// (kInternal) if the definition has no such route: validated definitions
// and validated outcomes never get there.
Next NextAfter(const v1::Definition& def, uint32_t step, const std::string& outcome);

const v1::Step& StepOf(const v1::Definition& def, uint32_t number);

// The outcome a completion records: a REVIEW needs one of its outcomes;
// other steps take "" or "selesai". Throws kInvalidArgument on "outcome".
std::string CheckOutcome(const v1::Step& step, const std::string& outcome);
// The outcome that sends a review's work back; throws kFailedPrecondition
// when the step has none (not a review).
std::string RevisionOutcome(const v1::Step& step);

// The tasks a step makes when the run reaches it: one, or one per member of
// a FAN_OUT group.
// Due times come from the step's waktu on `calendar` for the run's unit.
std::vector<v1::Task> PlanTasks(const v1::Definition& def, const v1::Run& run, uint32_t step, uint32_t gen,
                                TimePoint now, const WorkCalendar& calendar);
// Who hears when a task of `step` is overdue: Step.atasan; else the next
// review step's pelaksana; else the first step's; never the step's own role.
std::string SupervisorOf(const v1::Definition& def, uint32_t step);
std::string TaskId(const std::string& run_id, uint32_t gen, int member_index = -1);

// May `user` see, claim and complete `task`? The role must match; a member
// task belongs to the member (a user id or a unit id), any other task to
// the run's unit.
bool MayActOn(const User& user, const v1::Task& task);
// May `user` start a run of `def` in `unit`? Admins, or users of that unit
// holding the first step's role.
bool MayStart(const User& user, const v1::Definition& def, const std::string& unit);
// May `user` read `run`? Admins and services with "read_runs", users of its
// unit, and its fan-out members.
bool MayRead(const User& user, const v1::Run& run);
// The names that let users read `run` without read_runs, as MayRead has
// it: its unit (the users of that unit) and each fan-out member (the users
// of that unit, or that user); sorted, each once. ListRuns indexes runs
// under these (keys::RunsReadableBy) and still asks MayRead of each.
std::vector<std::string> ReadersOf(const v1::Run& run);

// Checks a StartRun request against the definition (members of every
// fan-out group, deadlines of every SET_AT_START step). Throws
// kInvalidArgument naming the field.
void CheckStartRequest(const v1::Definition& def, const v1::StartRunRequest& req, TimePoint now);

// The history line of a completed task, with its time against the waktu.
v1::HistoryEntry CompletionEntry(const v1::Task& task, const std::string& user, const std::string& outcome,
                                 bool returned, const std::string& reason, TimePoint now);

}  // namespace sopflow::flow

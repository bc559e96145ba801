#include "engine.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <map>
#include <set>

#include "definition.h"
#include "error.h"
#include "flow.h"
#include "ids.h"
#include "metrics.h"

namespace sopflow {

using google::protobuf::util::TimeUtil;

namespace {

constexpr int kMaxAttempts = 16;          // optimistic retries on benign conflicts
constexpr size_t kMaxOutputBytes = 1 << 20;
constexpr size_t kMaxDefinitionBytes = 1 << 20;

google::protobuf::Timestamp Stamp(TimePoint t) { return TimeUtil::MillisecondsToTimestamp(UnixMillis(t)); }

v1::HistoryEntry Entry(v1::HistoryEntry::Kind kind, TimePoint now, const v1::Task* task = nullptr,
                       const std::string& user = "") {
  v1::HistoryEntry e;
  e.set_kind(kind);
  *e.mutable_time() = Stamp(now);
  e.set_user(user);
  if (task) {
    e.set_step(task->step());
    e.set_gen(task->gen());
    e.set_task_id(task->id());
    e.set_pelaksana(task->pelaksana());
    e.set_member(task->member());
  }
  return e;
}

void RequireId(const std::string& value, const char* field) {
  if (value.empty()) ThrowInvalid(field, "is required");
  if (value.size() > 200) ThrowInvalid(field, "too long");
}

void CheckOutput(const v1::TaskOutput& output) {
  if (output.ByteSizeLong() > kMaxOutputBytes) ThrowInvalid("output", "at most 1 MiB; keep documents by reference");
  for (int i = 0; i < output.documents_size(); ++i)
    if (output.documents(i).name().empty() && output.documents(i).uri().empty())
      ThrowInvalid("output.documents[" + std::to_string(i) + "]", "needs a name or a uri");
}

// Removes a task from every index it may be listed in.
void Unlist(Batch& b, const v1::Task& t) {
  if (t.kind() == v1::Step::SYSTEM) {
    b.Write({"ZREM", keys::Jobs(t.job_type()), t.id()});
    b.Write({"ZREM", keys::JobsLocked(t.job_type()), t.id()});
  } else {
    b.Write({"ZREM", keys::Inbox(t), t.id()});
    if (!t.assignee().empty()) b.Write({"ZREM", keys::Claimed(t.assignee()), t.id()});
  }
}

}  // namespace

Engine::Engine(Store* store, const Clock* clock, std::string source, std::shared_ptr<const WorkCalendar> calendar)
    : store_(store), clock_(clock), source_(std::move(source)), calendar_(std::move(calendar)) {}

v1::Event Engine::NewEvent(const std::string& id, const std::string& type, const std::string& subject,
                           const v1::Run& run) const {
  v1::Event e;
  e.set_id(id);
  e.set_type(type);
  e.set_source(source_);
  *e.mutable_time() = Stamp(clock_->Now());
  e.set_subject(subject);
  e.set_run_id(run.id());
  e.set_sop_id(run.sop_id());
  e.set_sop_version(run.sop_version());
  e.set_unit(run.unit());
  e.set_period(run.period());
  return e;
}

// ---------------------------------------------------------------- definitions

v1::DeployDefinitionResponse Engine::Deploy(const User& user, const std::string& yaml, const std::string& file_name) {
  if (!user.admin) ThrowDenied("only an admin deploys definitions");
  return DeployTrusted(yaml, file_name, user.id);
}

v1::DeployDefinitionResponse Engine::DeployTrusted(const std::string& yaml, const std::string& file_name,
                                                   const std::string& by) {
  if (yaml.empty()) ThrowInvalid("yaml", "is empty");
  if (yaml.size() > kMaxDefinitionBytes) ThrowInvalid("yaml", "at most 1 MiB");
  v1::Definition def = ParseDefinitionOrThrow(yaml, file_name.empty() ? "definition.yaml" : file_name);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto deployed = LatestVersions({def.id()});
    uint32_t latest = deployed.empty() ? 0 : deployed.begin()->second;
    if (latest > 0) {
      auto current = Definition(def.id(), latest);
      if (current->source_sha256() == def.source_sha256()) {
        v1::DeployDefinitionResponse out;
        *out.mutable_definition() = *current;
        out.set_created(false);
        return out;
      }
    }
    def.set_version(latest + 1);
    *def.mutable_deployed_at() = Stamp(clock_->Now());
    def.set_deployed_by(by);
    Batch b;
    b.ExpectField(keys::Definition(def.id()), "latest", latest ? std::to_string(latest) : "");
    b.Write({"HSET", keys::Definition(def.id()), "v" + std::to_string(def.version()), def.SerializeAsString(),
             "latest", std::to_string(def.version())});
    b.Write({"SADD", keys::kDefinitions, def.id()});
    if (Commit(b) == 0) {
      v1::DeployDefinitionResponse out;
      *out.mutable_definition() = def;
      out.set_created(true);
      return out;
    }
  }
  throw DomainError(ErrorCode::kUnavailable, "definition " + def.id() + " is being deployed concurrently; retry");
}

std::shared_ptr<const v1::Definition> Engine::Definition(const std::string& id, uint32_t version) {
  if (version == 0) {
    auto latest = LatestVersions({id});
    if (latest.empty()) ThrowNotFound("no definition '" + id + "'");
    version = latest.begin()->second;
  }
  {
    std::lock_guard lock(defs_mu_);
    if (auto it = defs_.find({id, version}); it != defs_.end()) return it->second;
  }
  auto bytes = store_->HashField(keys::Definition(id), "v" + std::to_string(version));
  if (!bytes) ThrowNotFound("no definition '" + id + "' version " + std::to_string(version));
  auto def = std::make_shared<v1::Definition>();
  if (!def->ParseFromString(*bytes)) throw DomainError(ErrorCode::kInternal, "corrupt definition " + id);
  std::lock_guard lock(defs_mu_);
  defs_[{id, version}] = def;  // versions never change once written
  return def;
}

v1::Definition Engine::GetDefinition(const std::string& id, uint32_t version) {
  RequireId(id, "id");
  return *Definition(id, version);
}

std::map<std::string, uint32_t> Engine::LatestVersions(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<std::string> def_keys;
  for (const auto& id : ids) def_keys.push_back(keys::Definition(id));
  auto versions = store_->HashFieldOfEach(def_keys, "latest");
  std::map<std::string, uint32_t> out;
  for (size_t i = 0; i < ids.size(); ++i)
    if (versions[i]) out[ids[i]] = static_cast<uint32_t>(std::stoul(*versions[i]));
  return out;
}

std::vector<v1::Definition> Engine::ListDefinitions() {
  auto ids = store_->SetMembers(keys::kDefinitions);
  std::sort(ids.begin(), ids.end());
  std::vector<v1::Definition> out;
  for (const auto& id : ids) {
    v1::Definition d = *Definition(id, 0);
    d.clear_source_yaml();  // the list stays small; GetDefinition has it
    out.push_back(std::move(d));
  }
  return out;
}

// ----------------------------------------------------------------------- runs

v1::Run Engine::StartRun(const User& user, const v1::StartRunRequest& req) {
  std::vector<StartCall> calls{{user, req, std::nullopt, nullptr}};
  StartAll(calls);
  if (calls[0].error) std::rethrow_exception(calls[0].error);
  return *calls[0].run;
}

void Engine::StartAll(std::vector<StartCall>& calls) {
  // The latest version of each SOP a call names without one, read for the
  // whole group in one round trip rather than one per call. The batch is
  // not guarded on it: a version deployed meanwhile is as if deployed just
  // after this start, as with one call. If the read fails, each call reads
  // its own (Definition) and fails alone.
  std::map<std::string, uint32_t> latest;
  {
    std::vector<std::string> ids;
    for (const auto& c : calls)
      if (c.request.sop_version() == 0) ids.push_back(c.request.sop_id());
    try {
      latest = LatestVersions(std::move(ids));
    } catch (const std::exception&) {
      // left empty: each call reads its own
    }
  }
  TimePoint now = clock_->Now();
  std::vector<Batch> batches;
  std::vector<size_t> batch_of, created;
  batches.reserve(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    try {
      Batch b;
      size_t tasks = 0;
      const auto& req = calls[i].request;
      auto found = latest.find(req.sop_id());
      uint32_t version = req.sop_version() == 0 && found != latest.end() ? found->second : req.sop_version();
      calls[i].run = PrepareStart(calls[i].user, req, version, now, b, &tasks);
      batches.push_back(std::move(b));
      batch_of.push_back(i);
      created.push_back(tasks);
    } catch (...) {
      calls[i].error = std::current_exception();
    }
  }
  std::vector<Batch*> pointers;
  pointers.reserve(batches.size());
  for (auto& b : batches) pointers.push_back(&b);
  std::vector<int> results;
  try {
    results = CommitAll(pointers);
  } catch (...) {
    // Nothing of the group was written: no call has a run.
    for (size_t i : batch_of) calls[i].run.reset();
    throw;
  }
  size_t tasks_created = 0;
  for (size_t j = 0; j < results.size(); ++j) {
    StartCall& call = calls[batch_of[j]];
    if (results[j] == 0) {
      tasks_created += created[j];
      continue;
    }
    try {
      call.run = StartedBefore(call.request.request_id());
    } catch (...) {
      call.run.reset();
      call.error = std::current_exception();
    }
  }
  CountHandoffs(tasks_created);
}

v1::Run Engine::PrepareStart(const User& user, const v1::StartRunRequest& req, uint32_t version, TimePoint now,
                             Batch& b, size_t* created) {
  RequireId(req.sop_id(), "sop_id");
  auto def = Definition(req.sop_id(), version);
  flow::CheckStartRequest(*def, req, now);
  if (!flow::MayStart(user, *def, req.unit()))
    ThrowDenied("starting " + def->id() + " in unit '" + req.unit() + "' needs role '" + def->steps(0).pelaksana() +
                "' in that unit, or admin");

  v1::Run run;
  run.set_id(NewRunId(now));
  run.set_sop_id(def->id());
  run.set_sop_version(def->version());
  run.set_sop_nama(def->nama());
  run.set_period(req.period());
  run.set_unit(req.unit());
  run.set_status(v1::Run::ACTIVE);
  run.set_started_by(user.id);
  *run.mutable_started_at() = Stamp(now);
  *run.mutable_members() = req.members();
  *run.mutable_deadlines() = req.deadlines();
  *run.mutable_params() = req.params();
  run.set_request_id(req.request_id());

  if (!req.request_id().empty()) {
    b.ExpectAbsent(keys::Request(req.request_id()));
    b.Write({"SET", keys::Request(req.request_id()), run.id()});
  }
  b.PutRun(run);
  b.Write({"HSET", keys::Run(run.id()), "rev", "0"});
  b.Write({"ZADD", keys::kRuns, std::to_string(UnixMillis(now)), run.id()});
  b.Write({"ZADD", keys::RunsOf(def->id()), std::to_string(UnixMillis(now)), run.id()});
  IndexForReaders(b, run, UnixMillis(now));
  b.AppendHistory(run.id(), Entry(v1::HistoryEntry::RUN_STARTED, now, nullptr, user.id));
  v1::Event e = NewEvent(run.id() + "/started", events::kRunStarted, run.id(), run);
  *e.mutable_run_started()->mutable_run() = run;
  b.Emit(e);
  *created = AddStepTasks(b, *def, run, def->steps(0).number(), 1, now);
  return run;
}

v1::Run Engine::StartedBefore(const std::string& request_id) {
  auto id = store_->GetString(keys::Request(request_id));
  if (!id) throw DomainError(ErrorCode::kUnavailable, "request_id race; retry");
  auto prior = store_->GetRun(*id);
  if (!prior) throw DomainError(ErrorCode::kUnavailable, "request_id race; retry");
  return *prior;
}

v1::GetRunResponse Engine::GetRun(const User& user, const std::string& run_id) {
  RequireId(run_id, "run_id");
  auto run = store_->GetRun(run_id);
  if (!run) ThrowNotFound("no run '" + run_id + "'");
  if (!flow::MayRead(user, *run)) ThrowDenied("run " + run_id + " belongs to unit '" + run->unit() + "'");
  v1::GetRunResponse out;
  *out.mutable_run() = *run;
  for (auto& t : store_->GetTasks(store_->RunTaskIds(run_id))) *out.add_tasks() = std::move(t);
  for (auto& h : store_->GetHistory(run_id)) *out.add_history() = std::move(h);
  return out;
}

void Engine::IndexForReaders(Batch& b, const v1::Run& run, int64_t started_ms) {
  for (const auto& reader : flow::ReadersOf(run))
    b.Write({"ZADD", keys::RunsReadableBy(reader), std::to_string(started_ms), run.id()});
}

v1::ListRunsResponse Engine::ListRuns(const User& user, const v1::ListRunsRequest& req) {
  PageSources<v1::Run> from{store_->pool(), Order::kNewestFirst, [this](const auto& ids) { return store_->GetRuns(ids); }};
  if (user.Has("read_runs")) {  // admins too
    from.zsets.push_back(req.sop_id().empty() ? keys::kRuns : keys::RunsOf(req.sop_id()));
  } else {
    for (const auto& name : std::set<std::string>{user.unit, user.id})
      if (!name.empty()) from.zsets.push_back(keys::RunsReadableBy(name));
  }
  // Runs of another SOP are filtered here for non-admins.
  auto page = PageAcross<v1::Run>(from, req.page_token(), PageLimit(req.page_size()), [&](const v1::Run& run) {
    return (req.sop_id().empty() || run.sop_id() == req.sop_id()) && flow::MayRead(user, run);
  });
  v1::ListRunsResponse out;
  for (auto& run : page.items) *out.add_runs() = std::move(run);
  out.set_next_page_token(std::move(page.next_page_token));
  return out;
}

size_t Engine::IndexReadableRuns(std::chrono::milliseconds recent) {
  return IndexSinceMarker(*store_->pool(), keys::kRuns, keys::kRunsReadableIndexed, recent.count(),
                          [this](const std::vector<Ranked>& entries) {
                            std::vector<std::string> ids;
                            std::map<std::string, int64_t> started_ms;
                            for (const auto& e : entries) {
                              ids.push_back(e.id);
                              started_ms[e.id] = e.score;
                            }
                            Batch b;
                            size_t count = 0;
                            for (const auto& run : store_->GetRuns(ids)) {
                              IndexForReaders(b, run, started_ms[run.id()]);
                              ++count;
                            }
                            if (!b.empty()) store_->CommitAll({&b});
                            return count;
                          });
}

v1::Run Engine::CancelRun(const User& user, const std::string& run_id, const std::string& reason) {
  RequireId(run_id, "run_id");
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    int64_t rev = 0;
    auto run = store_->GetRun(run_id, &rev);
    if (!run) ThrowNotFound("no run '" + run_id + "'");
    if (!user.admin && user.id != run->started_by()) ThrowDenied("only an admin or the user who started it cancels a run");
    if (run->status() != v1::Run::ACTIVE)
      ThrowPrecondition("run " + run_id + " is " + v1::Run::Status_Name(run->status()));
    TimePoint now = clock_->Now();
    Batch b;
    b.ExpectField(keys::Run(run_id), "status", "ACTIVE");
    b.ExpectField(keys::Run(run_id), "rev", std::to_string(rev));
    v1::Event e = NewEvent(run_id + "/cancelled", events::kRunCancelled, run_id, *run);
    for (auto t : store_->GetTasks(store_->RunTaskIds(run_id))) {
      if (t.status() == v1::Task::DONE || t.status() == v1::Task::CANCELLED) continue;
      b.ExpectUnchanged(t);
      Unlist(b, t);
      t.set_status(v1::Task::CANCELLED);
      b.PutTask(t);
      *e.mutable_run_cancelled()->add_cancelled_tasks() = std::move(t);
    }
    run->set_status(v1::Run::CANCELLED);
    run->set_cancel_reason(reason);
    *run->mutable_ended_at() = Stamp(now);
    b.PutRun(*run);
    b.Write({"HINCRBY", keys::Run(run_id), "rev", "1"});
    auto entry = Entry(v1::HistoryEntry::RUN_CANCELLED, now, nullptr, user.id);
    entry.set_reason(reason);
    b.AppendHistory(run_id, entry);
    *e.mutable_run_cancelled()->mutable_run() = *run;
    b.Emit(e);
    if (Commit(b) == 0) return *run;
  }
  throw DomainError(ErrorCode::kUnavailable, "run " + run_id + " kept changing; retry");
}

// ---------------------------------------------------------------------- tasks

v1::Task Engine::LoadTask(const std::string& task_id) {
  RequireId(task_id, "task_id");
  auto task = store_->GetTask(task_id);
  if (!task) ThrowNotFound("no task '" + task_id + "'");
  return *task;
}

int Engine::Commit(Batch& batch) { return CommitAll({&batch}).front(); }

std::vector<int> Engine::CommitAll(const std::vector<Batch*>& batches) {
  auto results = store_->CommitAll(std::vector<const Batch*>(batches.begin(), batches.end()));
  for (size_t i = 0; i < results.size(); ++i)
    if (results[i] == 0) recent_.Remember(*batches[i]);
  return results;
}

Engine::TaskAndRun Engine::LoadTaskAndRun(const std::string& task_id, Source source) {
  RequireId(task_id, "task_id");
  auto found = LoadTasksAndRuns({task_id}, source).front();
  if (!found) ThrowNotFound("no task '" + task_id + "'");
  return std::move(*found);
}

std::vector<std::optional<Engine::TaskAndRun>> Engine::LoadTasksAndRuns(const std::vector<std::string>& task_ids,
                                                                        Source source) {
  std::vector<std::optional<TaskAndRun>> out(task_ids.size());
  // Task ids start with their run's id (flow::TaskId), so tasks and runs are
  // read in one round trip; a run is read again only if the guess was wrong.
  std::vector<std::pair<std::string, std::string>> wanted;
  std::vector<size_t> wanted_at;
  for (size_t i = 0; i < task_ids.size(); ++i) {
    if (source == Source::kRecentFirst) {
      auto task = recent_.TakeTask(task_ids[i]);
      auto run = task ? recent_.Run(task->run_id()) : nullptr;
      if (run) {
        out[i] = TaskAndRun{std::move(*task), std::move(run), true};
        continue;
      }
    }
    wanted.emplace_back(task_ids[i], task_ids[i].substr(0, task_ids[i].find('.')));
    wanted_at.push_back(i);
  }
  auto read = store_->GetTasksAndRuns(wanted);
  for (size_t k = 0; k < read.size(); ++k) {
    auto& [task, run] = read[k];
    if (!task) continue;
    if (task->run_id() != wanted[k].second) run = store_->GetRun(task->run_id());
    std::shared_ptr<const v1::Run> shared = run ? std::make_shared<const v1::Run>(std::move(*run)) : nullptr;
    if (shared) recent_.RememberRun(shared);
    out[wanted_at[k]] = TaskAndRun{std::move(*task), std::move(shared)};
  }
  return out;
}

void Engine::RequireActiveRun(const v1::Task& t, const std::shared_ptr<const v1::Run>& run) {
  if (!run) ThrowNotFound("no run '" + t.run_id() + "'");
  if (run->status() != v1::Run::ACTIVE) ThrowPrecondition("run " + t.run_id() + " is " + v1::Run::Status_Name(run->status()));
}

void Engine::ReportRunEnded(const v1::Task& t) { ThrowPrecondition("run " + t.run_id() + " is no longer active"); }

void Engine::ReportTaskConflict(const std::string& task_id) {
  v1::Task now = LoadTask(task_id);
  std::string state = v1::Task::Status_Name(now.status());
  if (!now.assignee().empty()) state += " by " + now.assignee();
  ThrowPrecondition("task " + task_id + " is no longer open (" + state + ")");
}

v1::ListInboxResponse Engine::Inbox(const User& user, const v1::ListInboxRequest& req) {
  // Open tasks wait in queues by role (of the unit, of a fan-out member);
  // tasks the user claimed wait in its own. Merged, oldest first.
  PageSources<v1::Task> from{store_->pool(), Order::kOldestFirst, [this](const auto& ids) { return store_->GetTasks(ids); }};
  from.zsets.push_back(keys::Claimed(user.id));
  for (const auto& role : user.roles) {
    from.zsets.push_back(keys::InboxOfUnit(user.unit, role));
    from.zsets.push_back(keys::InboxOfMember(user.id, role));
    if (!user.unit.empty()) from.zsets.push_back(keys::InboxOfMember(user.unit, role));
  }
  // A queue may still name a task that moved on since it was read.
  auto page = PageAcross<v1::Task>(from, req.page_token(), PageLimit(req.page_size()), [&](const v1::Task& t) {
    bool open = t.status() == v1::Task::OPEN;
    bool mine = t.status() == v1::Task::CLAIMED && t.assignee() == user.id;
    return (open || mine) && flow::MayActOn(user, t);
  });
  v1::ListInboxResponse out;
  for (auto& t : page.items) *out.add_tasks() = std::move(t);
  out.set_next_page_token(std::move(page.next_page_token));
  return out;
}

v1::Task Engine::GetTask(const User& user, const std::string& task_id) {
  v1::Task t = LoadTask(task_id);
  // read_runs (admins hold it too): services that read every run (the
  // archiver; the notifier, which asks at a reminder's time whether the
  // task is still open).
  if (!user.Has("read_runs") && !flow::MayActOn(user, t) && t.assignee() != user.id)
    ThrowDenied("task " + task_id + " is for role '" + t.pelaksana() + "'");
  return t;
}

v1::Task Engine::Claim(const User& user, const std::string& task_id) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    v1::Task t = LoadTask(task_id);
    if (!flow::MayActOn(user, t)) ThrowDenied("task " + task_id + " is for role '" + t.pelaksana() + "'" +
                                              (t.member().empty() ? " in unit '" + t.unit() + "'" : " of member '" + t.member() + "'"));
    if (t.kind() == v1::Step::SYSTEM) ThrowPrecondition("task " + task_id + " is a system job; workers use ActivateJobs");
    if (t.status() == v1::Task::CLAIMED && t.assignee() == user.id) return t;  // claiming twice is harmless
    if (t.status() != v1::Task::OPEN) ReportTaskConflict(task_id);
    TimePoint now = clock_->Now();
    Batch b;
    b.ExpectUnchanged(t);
    b.ExpectField(keys::Run(t.run_id()), "status", "ACTIVE");
    Unlist(b, t);
    t.set_status(v1::Task::CLAIMED);
    t.set_assignee(user.id);
    *t.mutable_claimed_at() = Stamp(now);
    b.PutTask(t);
    b.Write({"ZADD", keys::Claimed(user.id), std::to_string(TimeUtil::TimestampToMilliseconds(t.created_at())), t.id()});
    b.AppendHistory(t.run_id(), Entry(v1::HistoryEntry::TASK_CLAIMED, now, &t, user.id));
    auto run = store_->GetRun(t.run_id());
    if (!run) ThrowNotFound("no run '" + t.run_id() + "'");
    v1::Event e = NewEvent(t.id() + "/claimed", events::kTaskClaimed, t.id(), *run);
    *e.mutable_task_claimed()->mutable_task() = t;
    b.Emit(e);
    int failed = Commit(b);
    if (failed == 0) return t;
    if (failed == 2) ThrowPrecondition("run " + t.run_id() + " is no longer active");
    // 1: the task changed since it was read: read it again (claimed by
    // someone else is then a conflict; a document attached is not).
  }
  throw DomainError(ErrorCode::kUnavailable, "task " + task_id + " kept changing; retry");
}

v1::Task Engine::Complete(const User& user, const std::string& task_id, const std::string& outcome,
                          const v1::TaskOutput& output) {
  TaskAndRun first = LoadTaskAndRun(task_id);
  auto def = Definition(first.task.sop_id(), first.task.sop_version());
  std::string chosen = flow::CheckOutcome(flow::StepOf(*def, first.task.step()), outcome);
  Finish finish{chosen, false, "", user.id};
  return FinishTask(std::move(first), [&](const v1::Task& t) { CheckMayComplete(user, t); }, finish, output);
}

void Engine::CheckMayComplete(const User& user, const v1::Task& t) {
  if (!flow::MayActOn(user, t)) ThrowDenied("task " + t.id() + " is for role '" + t.pelaksana() + "'");
  if (t.kind() == v1::Step::SYSTEM) ThrowPrecondition("task " + t.id() + " is a system job; workers use CompleteJob");
  bool mine = t.status() == v1::Task::CLAIMED && t.assignee() == user.id;
  if (t.status() != v1::Task::OPEN && !mine) ReportTaskConflict(t.id());
}

void Engine::CompleteAll(std::vector<CompleteCall>& calls) {
  // Read every task with its run in one round trip.
  std::vector<std::string> wanted;
  std::vector<size_t> wanted_at;
  for (size_t i = 0; i < calls.size(); ++i) {
    try {
      RequireId(calls[i].task_id, "task_id");
      wanted.push_back(calls[i].task_id);
      wanted_at.push_back(i);
    } catch (...) {
      calls[i].error = std::current_exception();
    }
  }
  auto read = LoadTasksAndRuns(wanted);

  // Decide each on its own; fan-out members go the one-by-one way (their
  // shared counter makes members of one group conflict).
  TimePoint now = clock_->Now();
  std::vector<Batch> batches;
  std::vector<size_t> batch_of;
  std::vector<size_t> created;  // tasks each batch creates
  std::vector<v1::Task> finished;
  std::vector<size_t> alone;
  for (size_t k = 0; k < wanted_at.size(); ++k) {
    CompleteCall& call = calls[wanted_at[k]];
    try {
      if (!read[k]) ThrowNotFound("no task '" + call.task_id + "'");
      auto& [task, run, remembered] = *read[k];
      if (task.kind() == v1::Step::FAN_OUT) {
        alone.push_back(wanted_at[k]);
        continue;
      }
      auto def = Definition(task.sop_id(), task.sop_version());
      // Checked in the order Complete checks them, so a call gets the same
      // error whichever way it went.
      Finish finish{flow::CheckOutcome(flow::StepOf(*def, task.step()), call.outcome), false, "", call.user.id};
      CheckOutput(call.output);
      if (Repeats(task, finish, call.output)) {
        call.task = std::move(task);
        continue;
      }
      CheckMayComplete(call.user, task);
      RequireActiveRun(task, run);
      Batch b;
      GuardCompletion(b, task);
      created.push_back(WriteCompletion(b, task, *run, finish, call.output, now, true));
      batches.push_back(std::move(b));
      batch_of.push_back(wanted_at[k]);
      finished.push_back(std::move(task));
    } catch (...) {
      if (read[k] && read[k]->remembered) {
        // What this router remembered may be stale: refuse only on a fresh
        // read (reading took it out of recent_, so Complete reads Redis).
        alone.push_back(wanted_at[k]);
      } else {
        call.error = std::current_exception();
      }
    }
  }

  std::vector<Batch*> pointers;
  pointers.reserve(batches.size());
  for (auto& b : batches) pointers.push_back(&b);
  auto results = CommitAll(pointers);
  for (size_t j = 0; j < results.size(); ++j) {
    CompleteCall& call = calls[batch_of[j]];
    try {
      if (results[j] == 0) {
        CountHandoffs(created[j]);
        call.task = std::move(finished[j]);
        continue;
      }
      if (results[j] == 2) ReportRunEnded(finished[j]);
      // The task changed since it was read (perhaps by a call of this same
      // group): one by one, as Complete would, from a fresh read (reading
      // took it out of recent_).
      alone.push_back(batch_of[j]);
    } catch (...) {
      call.error = std::current_exception();
    }
  }
  for (size_t i : alone) {
    try {
      calls[i].task = Complete(calls[i].user, calls[i].task_id, calls[i].outcome, calls[i].output);
    } catch (...) {
      calls[i].error = std::current_exception();
    }
  }
}

v1::Task Engine::Return(const User& user, const std::string& task_id, const std::string& reason,
                        const v1::TaskOutput& output) {
  if (reason.empty()) ThrowInvalid("reason", "say what needs fixing");
  TaskAndRun first = LoadTaskAndRun(task_id);
  if (!flow::MayActOn(user, first.task)) ThrowDenied("task " + task_id + " is for role '" + first.task.pelaksana() + "'");
  auto def = Definition(first.task.sop_id(), first.task.sop_version());
  Finish finish{flow::RevisionOutcome(flow::StepOf(*def, first.task.step())), true, reason, user.id};
  return FinishTask(std::move(first), [&](const v1::Task& t) {
    bool mine = t.status() == v1::Task::CLAIMED && t.assignee() == user.id;
    if (t.status() != v1::Task::OPEN && !mine) ReportTaskConflict(task_id);
  }, finish, output);
}

v1::Task Engine::FinishTask(TaskAndRun first, const std::function<void(const v1::Task&)>& check, const Finish& finish,
                            const v1::TaskOutput& output) {
  CheckOutput(output);
  const std::string task_id = first.task.id();
  TaskAndRun current = std::move(first);
  // A fan-out member losing the race on its step's counter lost to another
  // member that finished: that is progress, so it does not use up an
  // attempt (at most one loss per other member). Members finishing at once
  // on several replicas would otherwise run out of attempts and answer
  // UNAVAILABLE though nothing was wrong.
  int counter_losses = 0;
  for (int attempt = 0; attempt < kMaxAttempts + counter_losses; ++attempt) {
    if (attempt > 0) current = LoadTaskAndRun(task_id, Source::kRedis);
    auto& [t, run, remembered] = current;
    if (Repeats(t, finish, output)) return t;
    try {
      check(t);
      RequireActiveRun(t, run);
    } catch (const DomainError&) {
      if (!remembered) throw;
      continue;  // what this router remembered may be stale: refuse only on a fresh read
    }
    TimePoint now = clock_->Now();

    Batch b;
    GuardCompletion(b, t);
    // A fan-out step completes with its last member task. Members finishing
    // at once race on the counter: the loser retries with the new count.
    bool step_done = true;
    if (t.kind() == v1::Step::FAN_OUT) {
      auto left_text = store_->HashField(keys::FanOut(t.run_id(), t.gen()), "left");
      long left = left_text ? std::stol(*left_text) : 0;
      if (left <= 0) throw DomainError(ErrorCode::kInternal, "fan-out counter missing for " + task_id);
      b.ExpectField(keys::FanOut(t.run_id(), t.gen()), "left", std::to_string(left));
      b.Write({"HSET", keys::FanOut(t.run_id(), t.gen()), "left", std::to_string(left - 1)});
      step_done = left == 1;
    }
    size_t created = WriteCompletion(b, t, *run, finish, output, now, step_done);
    int failed = Commit(b);
    if (failed == 0) {
      CountHandoffs(created);
      return t;
    }
    if (failed == 2) ReportRunEnded(t);
    // 1: the task changed since it was read (completed or claimed by someone
    // else, a document attached, or what this router remembered was stale):
    // read it again, and `check` says whether it may still be completed.
    // 3: another member task of the fan-out finished first.
    if (failed == 3 && counter_losses < flow::kMaxFanOutMembers) ++counter_losses;
  }
  throw DomainError(ErrorCode::kUnavailable, "task " + task_id + " kept conflicting; retry");
}

// A caller told UNAVAILABLE or DEADLINE_EXCEEDED cannot know whether its
// completion was applied (its answer may have been lost after the commit),
// so it sends it again. Finding the task finished by that very call (the
// same actor, outcome, reason and output), the router answers as it would
// have then, and applies nothing: "safe to retry" holds for the answer
// too, not only for the records. Anything else finished is a conflict.
bool Engine::Repeats(const v1::Task& t, const Finish& finish, const v1::TaskOutput& output) {
  if (t.status() != v1::Task::DONE || t.kind() == v1::Step::SYSTEM) return false;
  return t.assignee() == finish.actor && t.outcome() == finish.outcome &&
         t.return_reason() == (finish.returned ? finish.reason : "") &&
         t.output().SerializeAsString() == output.SerializeAsString();
}

void Engine::GuardCompletion(Batch& b, const v1::Task& t) {
  b.ExpectUnchanged(t);
  b.ExpectField(keys::Run(t.run_id()), "status", "ACTIVE");
}

size_t Engine::WriteCompletion(Batch& b, v1::Task& t, const v1::Run& run, const Finish& finish,
                               const v1::TaskOutput& output, TimePoint now, bool step_done) {
  Unlist(b, t);
  t.set_status(v1::Task::DONE);
  if (t.kind() != v1::Step::SYSTEM) t.set_assignee(finish.actor);
  t.set_outcome(finish.outcome);
  *t.mutable_output() = output;
  *t.mutable_completed_at() = Stamp(now);
  if (finish.returned) t.set_return_reason(finish.reason);
  b.PutTask(t);

  auto entry = flow::CompletionEntry(t, finish.actor, finish.outcome, finish.returned, finish.reason, now);
  b.AppendHistory(t.run_id(), entry);
  v1::Event done = NewEvent(t.id() + "/completed", finish.returned ? events::kTaskReturned : events::kTaskCompleted,
                            t.id(), run);
  *done.mutable_task_completed()->mutable_task() = t;
  *done.mutable_task_completed()->mutable_entry() = entry;
  // The completion event carries the output; the other events of the
  // transition are small.
  if (max_event_bytes_ && done.ByteSizeLong() > max_event_bytes_)
    ThrowInvalid("output", "with it the task's completion event is " + std::to_string(done.ByteSizeLong()) +
                               " bytes, more than the event stream takes (" + std::to_string(max_event_bytes_) +
                               "); keep documents by reference");
  b.Emit(done);
  if (!step_done) return 0;
  auto step_entry = Entry(v1::HistoryEntry::STEP_COMPLETED, now, &t, finish.actor);
  step_entry.set_outcome(finish.outcome);
  step_entry.set_task_id("");
  step_entry.set_member("");
  b.AppendHistory(t.run_id(), step_entry);
  v1::Event e = NewEvent(t.run_id() + "/" + std::to_string(t.gen()) + "/step_completed", events::kStepCompleted,
                         t.run_id(), run);
  auto* sc = e.mutable_step_completed();
  sc->set_step(t.step());
  sc->set_gen(t.gen());
  sc->set_outcome(finish.outcome);
  b.Emit(e);
  return RouteAfterStep(b, run, t.step(), t.gen(), finish.outcome, now);
}

// ----------------------------------------------------------------------- jobs

std::vector<v1::Task> Engine::ActivateJobs(const User& user, const v1::ActivateJobsRequest& req) {
  RequireId(req.job_type(), "job_type");
  RequireId(req.worker(), "worker");
  if (req.max_jobs() < 1 || req.max_jobs() > 100) ThrowInvalid("max_jobs", "must be 1 to 100");
  if (req.lock_seconds() > 86400) ThrowInvalid("lock_seconds", "at most 86400");
  if (!user.MayWorkJob(req.job_type())) ThrowDenied("user " + user.id + " may not work jobs of type '" + req.job_type() + "'");
  TimePoint now = clock_->Now();
  uint32_t lock_seconds = req.lock_seconds() ? req.lock_seconds() : 300;

  // Jobs whose worker's lock ran out are open again.
  for (const auto& id : store_->ZRangeByScore(keys::JobsLocked(req.job_type()), UnixMillis(now), 100)) {
    auto t = store_->GetTask(id);
    if (!t || t->status() != v1::Task::ACTIVATED) continue;
    Batch b;
    b.ExpectUnchanged(*t);
    b.Write({"ZREM", keys::JobsLocked(t->job_type()), t->id()});
    b.Write({"ZADD", keys::Jobs(t->job_type()), std::to_string(TimeUtil::TimestampToMilliseconds(t->created_at())), t->id()});
    t->set_status(v1::Task::OPEN);
    t->set_worker("");
    t->clear_lock_until();
    b.PutTask(*t);
    Commit(b);  // a conflict means someone else already did it
  }

  std::vector<v1::Task> out;
  for (const auto& id : store_->ZMembers({keys::Jobs(req.job_type())}, req.max_jobs())) {
    auto t = store_->GetTask(id);
    if (!t || t->status() != v1::Task::OPEN) continue;
    TimePoint until = now + std::chrono::seconds(lock_seconds);
    Batch b;
    b.ExpectUnchanged(*t);
    b.ExpectField(keys::Run(t->run_id()), "status", "ACTIVE");
    b.Write({"ZREM", keys::Jobs(t->job_type()), t->id()});
    b.Write({"ZADD", keys::JobsLocked(t->job_type()), std::to_string(UnixMillis(until)), t->id()});
    t->set_status(v1::Task::ACTIVATED);
    t->set_worker(req.worker());
    *t->mutable_lock_until() = Stamp(until);
    b.PutTask(*t);
    auto entry = Entry(v1::HistoryEntry::JOB_ACTIVATED, now, &*t, "job:" + req.worker());
    b.AppendHistory(t->run_id(), entry);
    if (Commit(b) == 0) out.push_back(std::move(*t));
  }
  return out;
}

v1::Task Engine::CompleteJob(const User& user, const v1::CompleteJobRequest& req) {
  RequireId(req.worker(), "worker");
  TaskAndRun first = LoadTaskAndRun(req.task_id());
  if (first.task.kind() != v1::Step::SYSTEM) ThrowPrecondition("task " + req.task_id() + " is not a system job");
  if (!user.MayWorkJob(first.task.job_type()))
    ThrowDenied("user " + user.id + " may not work jobs of type '" + first.task.job_type() + "'");
  Finish finish{flow::kDefaultOutcome, false, "", "job:" + req.worker()};
  return FinishTask(std::move(first), [&](const v1::Task& t) {
    if (t.status() != v1::Task::ACTIVATED || t.worker() != req.worker())
      ThrowPrecondition("job " + req.task_id() + " is not activated by worker '" + req.worker() + "' (" +
                        v1::Task::Status_Name(t.status()) + (t.worker().empty() ? "" : " by " + t.worker()) + ")");
  }, finish, req.output());
}

v1::Task Engine::FailJob(const User& user, const v1::FailJobRequest& req) {
  RequireId(req.worker(), "worker");
  v1::Task t = LoadTask(req.task_id());
  if (t.kind() != v1::Step::SYSTEM) ThrowPrecondition("task " + req.task_id() + " is not a system job");
  if (!user.MayWorkJob(t.job_type())) ThrowDenied("user " + user.id + " may not work jobs of type '" + t.job_type() + "'");
  if (t.status() != v1::Task::ACTIVATED || t.worker() != req.worker())
    ThrowPrecondition("job " + req.task_id() + " is not activated by worker '" + req.worker() + "'");
  TimePoint now = clock_->Now();
  Batch b;
  b.ExpectUnchanged(t);  // same worker, same lock
  b.Write({"ZREM", keys::JobsLocked(t.job_type()), t.id()});
  b.Write({"ZADD", keys::Jobs(t.job_type()), std::to_string(TimeUtil::TimestampToMilliseconds(t.created_at())), t.id()});
  t.set_status(v1::Task::OPEN);
  t.set_worker("");
  t.clear_lock_until();
  t.set_job_retries(t.job_retries() + 1);
  b.PutTask(t);
  auto entry = Entry(v1::HistoryEntry::JOB_FAILED, now, &t, "job:" + req.worker());
  entry.set_reason(req.error());
  b.AppendHistory(t.run_id(), entry);
  if (Commit(b) != 0) ReportTaskConflict(req.task_id());
  return t;
}

v1::Task Engine::AttachDocument(const User& user, const v1::AttachDocumentRequest& req) {
  if (!user.Has("attach_documents")) ThrowDenied("attaching documents needs the attach_documents permission");
  if (req.document().uri().empty()) ThrowInvalid("document.uri", "is required");
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    v1::Task t = LoadTask(req.task_id());
    for (const auto& d : t.attachments())
      if (d.uri() == req.document().uri()) return t;  // attached before
    Batch b;
    b.ExpectUnchanged(t);
    *t.add_attachments() = req.document();
    b.PutTask(t);
    if (Commit(b) == 0) return t;
  }
  throw DomainError(ErrorCode::kUnavailable, "task " + req.task_id() + " kept changing; retry");
}

// -------------------------------------------------------------------- routing

size_t Engine::RouteAfterStep(Batch& b, const v1::Run& run, uint32_t step, uint32_t gen, const std::string& outcome,
                              TimePoint now) {
  auto def = Definition(run.sop_id(), run.sop_version());
  flow::Next next = flow::NextAfter(*def, step, outcome);
  if (next.ends_run) {
    AddRunCompletion(b, run, now);
    return 0;
  }
  return AddStepTasks(b, *def, run, next.step, gen + 1, now);
}

size_t Engine::AddStepTasks(Batch& b, const v1::Definition& def, const v1::Run& run, uint32_t step, uint32_t gen,
                            TimePoint now) {
  auto tasks = flow::PlanTasks(def, run, step, gen, now, *calendar_);
  if (flow::StepOf(def, step).kind() == v1::Step::FAN_OUT)
    b.Write({"HSET", keys::FanOut(run.id(), gen), "left", std::to_string(tasks.size())});
  const std::string score = std::to_string(UnixMillis(now));
  for (auto& t : tasks) {
    b.PutTask(t);
    b.Push(keys::RunTasks(run.id()), t.id());
    if (t.kind() == v1::Step::SYSTEM) b.Write({"ZADD", keys::Jobs(t.job_type()), score, t.id()});
    else b.Write({"ZADD", keys::Inbox(t), score, t.id()});
    b.AppendHistory(run.id(), Entry(v1::HistoryEntry::TASK_CREATED, now, &t));
    v1::Event e = NewEvent(t.id() + "/created", events::kTaskCreated, t.id(), run);
    *e.mutable_task_created()->mutable_task() = t;
    b.Emit(e);
  }
  // A run's set of tasks changed: CancelRun, guarded on `rev`, sees it.
  b.Write({"HINCRBY", keys::Run(run.id()), "rev", "1"});
  return tasks.size();
}

void Engine::AddRunCompletion(Batch& b, const v1::Run& run_in, TimePoint now) {
  v1::Run run = run_in;
  run.set_status(v1::Run::COMPLETED);
  *run.mutable_ended_at() = Stamp(now);
  b.PutRun(run);
  b.Write({"HINCRBY", keys::Run(run.id()), "rev", "1"});
  b.AppendHistory(run.id(), Entry(v1::HistoryEntry::RUN_COMPLETED, now));
  v1::Event e = NewEvent(run.id() + "/completed", events::kRunCompleted, run.id(), run);
  *e.mutable_run_completed()->mutable_run() = run;
  b.Emit(e);
}

void Engine::CountHandoffs(size_t tasks_created) {
  if (tasks_created) Metrics::Global().Count("sopflow_handoffs_total", "", static_cast<double>(tasks_created));
}

}  // namespace sopflow

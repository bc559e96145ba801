// The router's operations. Each reads what it needs, decides with the rules
// in flow.h, and commits one atomic Batch that also queues its events in
// the outbox. Nothing here talks to NATS: the relay publishes the outbox.
//
// Routing happens in the transaction that ends a step: the batch that
// marks a task done also creates the next step's task(s), or completes the
// run, and queues task.completed, run.step_completed and task.created (or
// run.completed) together — as Zeebe's stream processor writes a command's
// follow-up records in one batch. The task's guards make that transaction
// happen once, so each next task is created exactly once without a marker
// per event, and the next actor is told by the notifier consuming
// task.created.
#pragma once

#include <algorithm>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "calendar.h"
#include "clock.h"
#include "event_types.h"
#include "recent_records.h"
#include "sopflow/v1/event.pb.h"
#include "sopflow/v1/router.pb.h"
#include "store.h"
#include "users.h"

namespace sopflow {

class Engine {
 public:
  Engine(Store* store, const Clock* clock, std::string source,
         std::shared_ptr<const WorkCalendar> calendar = WorkCalendar::Default());

  v1::DeployDefinitionResponse Deploy(const User& user, const std::string& yaml, const std::string& file_name);
  // Deploys without a user check: definitions shipped with the service.
  v1::DeployDefinitionResponse DeployTrusted(const std::string& yaml, const std::string& file_name,
                                             const std::string& by);
  v1::Definition GetDefinition(const std::string& id, uint32_t version);  // 0: latest
  std::vector<v1::Definition> ListDefinitions();

  v1::Run StartRun(const User& user, const v1::StartRunRequest& req);
  // One StartRun call of a group started together.
  struct StartCall {
    User user;
    v1::StartRunRequest request;
    std::optional<v1::Run> run;  // set when started (or started before, by its request_id)
    std::exception_ptr error;    // set when not, as StartRun would throw it
    bool decided() const { return run || error; }
  };
  // Starts each call as StartRun would, all committed together: a
  // quarter-end burst of starts shares round trips instead of paying two
  // each. Two calls with one request_id resolve as one after the other
  // would: both answer the run the first started.
  void StartAll(std::vector<StartCall>& calls);
  v1::GetRunResponse GetRun(const User& user, const std::string& run_id);
  // The runs `user` may read, newest first, a page at a time (the
  // request's page_token). Admins and read_runs page through every run (of
  // the SOP); others through RunsReadableBy their unit and their id.
  v1::ListRunsResponse ListRuns(const User& user, const v1::ListRunsRequest& req);
  // Puts runs started before this version wrote RunsReadableBy into it (all
  // of them the first time; then those of the last `recent`, which a router
  // of the earlier version may have started during a rolling update).
  // Returns the runs indexed.
  size_t IndexReadableRuns(std::chrono::milliseconds recent = std::chrono::hours(1));
  v1::Run CancelRun(const User& user, const std::string& run_id, const std::string& reason);

  // The open tasks `user` may take and those it claimed, oldest first, a
  // page at a time (the request's page_token).
  v1::ListInboxResponse Inbox(const User& user, const v1::ListInboxRequest& req);
  v1::Task GetTask(const User& user, const std::string& task_id);
  v1::Task Claim(const User& user, const std::string& task_id);
  v1::Task Complete(const User& user, const std::string& task_id, const std::string& outcome,
                    const v1::TaskOutput& output);
  // One CompleteTask call of a group completed together.
  struct CompleteCall {
    User user;
    std::string task_id;
    std::string outcome;
    v1::TaskOutput output;
    std::optional<v1::Task> task;  // set when completed
    std::exception_ptr error;      // set when not, as Complete would throw it
    bool decided() const { return task || error; }
  };
  // Completes each call as Complete would, with the tasks (and runs) of all
  // read in one round trip and committed in one transaction: concurrent
  // completions cost three round trips in all instead of three each. Calls on
  // the same task resolve as one after the other would: the first wins.
  // Fan-out members are completed one by one (their shared counter).
  void CompleteAll(std::vector<CompleteCall>& calls);
  v1::Task Return(const User& user, const std::string& task_id, const std::string& reason,
                  const v1::TaskOutput& output);

  // The largest event the stream takes (its server's max_payload less room
  // for headers); 0: no limit. A completion whose event would be larger is
  // refused (INVALID_ARGUMENT on `output`), before anything is written: an
  // event committed but never publishable would hold up its run forever.
  void LimitEventBytes(size_t max_bytes) { max_event_bytes_ = max_bytes; }
  // At most this many open tasks (and a quarter as many runs) are kept as
  // this engine last wrote them (RecentRecords); 0: none. Set before use.
  void RememberRecent(size_t max_tasks) { recent_.Limit(max_tasks, std::max<size_t>(max_tasks / 4, 1)); }

  std::vector<v1::Task> ActivateJobs(const User& user, const v1::ActivateJobsRequest& req);
  v1::Task CompleteJob(const User& user, const v1::CompleteJobRequest& req);
  v1::Task FailJob(const User& user, const v1::FailJobRequest& req);
  v1::Task AttachDocument(const User& user, const v1::AttachDocumentRequest& req);

 private:
  // Lists `run`, started at `started_ms`, under each of flow::ReadersOf.
  static void IndexForReaders(Batch& b, const v1::Run& run, int64_t started_ms);
  struct Finish {
    std::string outcome;
    bool returned = false;
    std::string reason;
    std::string actor;  // user id, or "job:<worker>" for SYSTEM steps
  };
  // The task was finished by this same call before (a retry whose first
  // answer was lost): answered as then, nothing applied again.
  static bool Repeats(const v1::Task& t, const Finish& finish, const v1::TaskOutput& output);
  // A task with its run, as read (re-read only on retry: the commit is
  // guarded on the task being unchanged and the run ACTIVE).
  struct TaskAndRun {
    v1::Task task;
    std::shared_ptr<const v1::Run> run;  // null if the run is gone
    bool remembered = false;             // from recent_, perhaps stale
  };
  enum class Source { kRecentFirst, kRedis };
  // A task and its run: what this router committed last (recent_), else
  // one round trip to Redis. NOT_FOUND without the task.
  TaskAndRun LoadTaskAndRun(const std::string& task_id, Source source = Source::kRecentFirst);
  // The same for many, the ones not remembered in one round trip; nullopt
  // where the task is missing.
  std::vector<std::optional<TaskAndRun>> LoadTasksAndRuns(const std::vector<std::string>& task_ids,
                                                          Source source = Source::kRecentFirst);
  // NOT_FOUND without the run, FAILED_PRECONDITION unless it is ACTIVE.
  static void RequireActiveRun(const v1::Task& t, const std::shared_ptr<const v1::Run>& run);
  // A completion refused by its guard 2 (GuardCompletion): the run ended.
  [[noreturn]] static void ReportRunEnded(const v1::Task& t);
  // The run StartRun would start and the batch that starts it, with the
  // number of tasks the batch creates; `version` of the SOP (0: read the
  // latest).
  v1::Run PrepareStart(const User& user, const v1::StartRunRequest& req, uint32_t version, TimePoint now, Batch& b,
                       size_t* created);
  // The run an earlier StartRun with this request_id started (its batch's
  // guard found the request_id taken).
  v1::Run StartedBefore(const std::string& request_id);
  // Commits, then moves what the applied batches wrote to recent_.
  int Commit(Batch& batch);
  std::vector<int> CommitAll(const std::vector<Batch*>& batches);
  v1::Task FinishTask(TaskAndRun first, const std::function<void(const v1::Task&)>& check, const Finish& finish,
                      const v1::TaskOutput& output);
  // Who may complete `t` (a user's task, open or claimed by them).
  void CheckMayComplete(const User& user, const v1::Task& t);
  // The guards of every completion: the task as read (guard 1), its run
  // ACTIVE (guard 2).
  static void GuardCompletion(Batch& b, const v1::Task& t);
  // Marks `t` finished and adds its record, history and events to `b`; when
  // that ends the step, also where the run goes next (RouteAfterStep).
  // Returns the number of tasks the batch creates.
  size_t WriteCompletion(Batch& b, v1::Task& t, const v1::Run& run, const Finish& finish,
                         const v1::TaskOutput& output, TimePoint now, bool step_done);
  // Adds to `b` what follows step `step` (visit `gen`) ending with
  // `outcome`: the next step's task(s), or the run's completion. Returns the
  // number of tasks created. The caller's guards (task unchanged, run
  // ACTIVE) make it happen once.
  size_t RouteAfterStep(Batch& b, const v1::Run& run, uint32_t step, uint32_t gen, const std::string& outcome,
                        TimePoint now);
  // Adds the task(s) of step `step` of `def` (the run's definition) as
  // visit `gen` of the run.
  size_t AddStepTasks(Batch& b, const v1::Definition& def, const v1::Run& run, uint32_t step, uint32_t gen,
                      TimePoint now);
  void AddRunCompletion(Batch& b, const v1::Run& run, TimePoint now);
  // Counts committed hand-offs (sopflow_handoffs_total).
  static void CountHandoffs(size_t tasks_created);
  v1::Task LoadTask(const std::string& task_id);
  v1::Event NewEvent(const std::string& id, const std::string& type, const std::string& subject,
                     const v1::Run& run) const;
  [[noreturn]] void ReportTaskConflict(const std::string& task_id);

  Store* store_;
  const Clock* clock_;
  std::string source_;
  std::shared_ptr<const WorkCalendar> calendar_;
  size_t max_event_bytes_ = 0;
  RecentRecords recent_;
  std::mutex defs_mu_;
  std::map<std::pair<std::string, uint32_t>, std::shared_ptr<const v1::Definition>> defs_;  // immutable versions
  std::shared_ptr<const v1::Definition> Definition(const std::string& id, uint32_t version);
  // The latest deployed version of each of `ids` that has one, in one round trip.
  std::map<std::string, uint32_t> LatestVersions(std::vector<std::string> ids);
};

}  // namespace sopflow

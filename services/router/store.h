// The router's state in Redis: keys (listed in docs/architecture.md),
// reads, and transitions committed as one atomic Batch each.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "paging.h"
#include "redis.h"
#include "redis_batch.h"
#include "sopflow/v1/event.pb.h"
#include "sopflow/v1/run.pb.h"

namespace sopflow {

namespace keys {
std::string Definition(const std::string& sop_id);   // hash: latest, v<N> -> Definition
inline constexpr char kDefinitions[] = "sf:defs";     // set of SOP ids
std::string Run(const std::string& run_id);           // hash: status, rev, pb
std::string RunTasks(const std::string& run_id);      // list of task ids
std::string RunHistory(const std::string& run_id);    // list of HistoryEntry
inline constexpr char kRuns[] = "sf:runs";            // zset run id by start ms
std::string RunsOf(const std::string& sop_id);        // zset run id by start ms
// zset run id by start ms: runs whose unit is `name` or whose fan-out
// members name it (a unit or a user), i.e. the runs a unit's users may read
// (flow::MayRead) without read_runs.
std::string RunsReadableBy(const std::string& name);
inline constexpr char kRunsReadableIndexed[] = "sf:runs-readable-indexed";  // start ms up to which every run is in RunsReadableBy
std::string Request(const std::string& request_id);   // run id of a StartRun request_id
std::string Task(const std::string& task_id);         // hash: status, assignee, rev, pb
std::string FanOut(const std::string& run_id, uint32_t gen);  // hash: left
std::string Inbox(const v1::Task& task);              // zset of open tasks for the task's audience
std::string InboxOfUnit(const std::string& unit, const std::string& role);
std::string InboxOfMember(const std::string& member, const std::string& role);
std::string Claimed(const std::string& user_id);      // zset of tasks the user claimed
std::string Jobs(const std::string& job_type);        // zset of open SYSTEM jobs
std::string JobsLocked(const std::string& job_type);  // zset of activated jobs by lock deadline
}  // namespace keys

// A transition of the router's records (see RedisBatch).
class Batch : public RedisBatch {
 public:
  // Guards that the task is still the revision `task` was read at
  // (whatever changed since: status, assignee, an attached document).
  void ExpectUnchanged(const v1::Task& task);
  // Writes `task` as its next revision (bumping `task.revision()`).
  void PutTask(v1::Task& task);
  // A run's record is written when it starts and when it ends, never
  // while it is ACTIVE: routers keep an ACTIVE run as read (Engine's
  // RecentRecords) and guard on its status alone.
  void PutRun(const v1::Run& run);
  void AppendHistory(const std::string& run_id, const v1::HistoryEntry& entry);

  // What this batch writes, for the committer to remember: the open tasks
  // as written (moved out once committed), the ids of those it finishes,
  // and the runs.
  std::vector<v1::Task>& tasks_put() { return tasks_put_; }
  const std::vector<std::string>& finished_tasks() const { return finished_tasks_; }
  std::vector<v1::Run>& runs_put() { return runs_put_; }

 private:
  std::vector<v1::Task> tasks_put_;
  std::vector<std::string> finished_tasks_;
  std::vector<v1::Run> runs_put_;
};

// OPEN, CLAIMED or ACTIVATED: someone may still act on it.
bool IsOpen(const v1::Task& task);

class OutboxRelay;

class Store {
 public:
  explicit Store(RedisPool* pool) : pool_(pool) {}
  // From now on the events of every commit are handed to `relay` by the
  // committing thread, at once (without: a relay's sweep finds them
  // later). Set before the store is shared.
  void PublishThrough(OutboxRelay* relay) { relay_ = relay; }
  // Independent batches in one round trip. One result each: 0 when
  // applied; otherwise the 1-based index of the batch's first guard that
  // failed (nothing of it was written).
  std::vector<int> CommitAll(const std::vector<const Batch*>& batches);

  std::optional<v1::Task> GetTask(const std::string& task_id);
  std::vector<v1::Task> GetTasks(const std::vector<std::string>& task_ids);  // skips missing
  std::optional<v1::Run> GetRun(const std::string& run_id, int64_t* rev = nullptr);
  // For each (task id, run id) pair the task and the run (nullopt where
  // missing), all in one round trip.
  std::vector<std::pair<std::optional<v1::Task>, std::optional<v1::Run>>> GetTasksAndRuns(
      const std::vector<std::pair<std::string, std::string>>& task_and_run_ids);
  std::vector<v1::Run> GetRuns(const std::vector<std::string>& run_ids);
  std::vector<v1::HistoryEntry> GetHistory(const std::string& run_id);
  std::vector<std::string> RunTaskIds(const std::string& run_id);
  std::optional<std::string> GetString(const std::string& key);
  std::optional<std::string> HashField(const std::string& key, const std::string& field);
  // The same field of several hashes, in one round trip; nullopt where missing.
  std::vector<std::optional<std::string>> HashFieldOfEach(const std::vector<std::string>& keys,
                                                          const std::string& field);
  // Members of several sorted sets, in one round trip.
  std::vector<std::string> ZMembers(const std::vector<std::string>& zset_keys, size_t limit_each);
  std::vector<std::string> ZRangeByScore(const std::string& key, int64_t max_score, size_t limit);
  std::vector<std::string> SetMembers(const std::string& key);

  RedisPool* pool() { return pool_; }

 private:
  RedisPool* pool_;
  OutboxRelay* relay_ = nullptr;
};

}  // namespace sopflow

// The tasks and runs this router committed last, as it committed them, so
// that completing a task it created itself needs no read of Redis: on the
// hand-off path the completion is one commit, not a read and a commit.
//
// An entry may be stale: another replica may have changed the record since.
// Nothing stale is ever written, because every commit is guarded on what it
// read: a task on its revision (Batch::ExpectUnchanged), a run on its
// status ACTIVE (a run's record does not change while it is ACTIVE:
// Batch::PutRun). A refused commit reads Redis and tries again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "sopflow/v1/run.pb.h"

namespace sopflow {

class Batch;

class RecentRecords {
 public:
  // At most this many of each are kept; the oldest remembered go first.
  // 0 tasks: nothing is kept.
  explicit RecentRecords(size_t max_tasks = 16384, size_t max_runs = 4096);

  // Set before use.
  void Limit(size_t max_tasks, size_t max_runs);

  // After `batch` committed: its tasks still open (OPEN, CLAIMED, ACTIVATED)
  // and its ACTIVE runs are kept as written (moved out of the batch); those
  // it finished are dropped.
  void Remember(Batch& batch);
  // A run read from Redis: kept while ACTIVE.
  void RememberRun(const std::shared_ptr<const v1::Run>& run);
  // The task as last written, taken out (the caller is about to write it,
  // and its commit remembers it again): no copy on the hand-off path, and
  // a refused commit's retry finds it gone and reads Redis.
  std::optional<v1::Task> TakeTask(const std::string& task_id);
  std::optional<v1::Task> Task(const std::string& task_id) const;
  std::shared_ptr<const v1::Run> Run(const std::string& run_id) const;

 private:
  // A map whose oldest inserted entries go once it holds more than `max`.
  // `order` lists insertions (a key re-inserted or erased leaves a dead
  // entry there, recognised by its sequence number); past twice `max` its
  // dead entries are dropped, so both stay bounded and a key rewritten
  // often does not push the others out.
  template <class Value>
  struct Bounded {
    explicit Bounded(size_t max) : max(max) {}
    void Put(const std::string& key, Value value);
    void Erase(const std::string& key) { entries.erase(key); }
    size_t max;
    uint64_t next_seq = 0;
    std::unordered_map<std::string, std::pair<Value, uint64_t>> entries;
    std::deque<std::pair<std::string, uint64_t>> order;
  };

  void RememberRunLocked(std::shared_ptr<const v1::Run> run);

  mutable std::mutex mu_;
  Bounded<v1::Task> tasks_;
  Bounded<std::shared_ptr<const v1::Run>> runs_;
};

}  // namespace sopflow

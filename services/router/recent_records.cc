#include "recent_records.h"

#include "store.h"

namespace sopflow {

template <class Value>
void RecentRecords::Bounded<Value>::Put(const std::string& key, Value value) {
  if (max == 0) return;
  const uint64_t seq = next_seq++;
  entries.insert_or_assign(key, std::make_pair(std::move(value), seq));
  order.emplace_back(key, seq);
  auto live = [this](const std::pair<std::string, uint64_t>& listed) {
    auto it = entries.find(listed.first);
    return it != entries.end() && it->second.second == listed.second;
  };
  if (order.size() > 2 * max) {
    // Mostly dead entries (rewritten or erased keys): drop them, in order.
    std::deque<std::pair<std::string, uint64_t>> kept;
    for (auto& listed : order)
      if (live(listed)) kept.push_back(std::move(listed));
    order.swap(kept);
  }
  while (entries.size() > max) {
    if (live(order.front())) entries.erase(order.front().first);
    order.pop_front();
  }
}

RecentRecords::RecentRecords(size_t max_tasks, size_t max_runs)
    : tasks_(max_tasks), runs_(max_tasks == 0 ? 0 : max_runs) {}

void RecentRecords::Limit(size_t max_tasks, size_t max_runs) {
  std::lock_guard lock(mu_);
  tasks_.max = max_tasks;
  runs_.max = max_tasks == 0 ? 0 : max_runs;
}

void RecentRecords::Remember(Batch& batch) {
  if (tasks_.max == 0) return;
  std::lock_guard lock(mu_);
  for (auto& task : batch.tasks_put()) {
    const std::string id = task.id();
    tasks_.Put(id, std::move(task));
  }
  for (const auto& id : batch.finished_tasks()) tasks_.Erase(id);
  for (auto& run : batch.runs_put()) RememberRunLocked(std::make_shared<const v1::Run>(std::move(run)));
  batch.tasks_put().clear();
  batch.runs_put().clear();
}

void RecentRecords::RememberRun(const std::shared_ptr<const v1::Run>& run) {
  if (tasks_.max == 0) return;
  std::lock_guard lock(mu_);
  RememberRunLocked(run);
}

void RecentRecords::RememberRunLocked(std::shared_ptr<const v1::Run> run) {
  const std::string id = run->id();  // Put's arguments are evaluated in no set order
  if (run->status() == v1::Run::ACTIVE) runs_.Put(id, std::move(run));
  else runs_.Erase(id);
}

std::optional<v1::Task> RecentRecords::TakeTask(const std::string& task_id) {
  std::lock_guard lock(mu_);
  auto it = tasks_.entries.find(task_id);
  if (it == tasks_.entries.end()) return std::nullopt;
  v1::Task task = std::move(it->second.first);
  tasks_.entries.erase(it);
  return task;
}

std::optional<v1::Task> RecentRecords::Task(const std::string& task_id) const {
  std::lock_guard lock(mu_);
  auto it = tasks_.entries.find(task_id);
  if (it == tasks_.entries.end()) return std::nullopt;
  return it->second.first;
}

std::shared_ptr<const v1::Run> RecentRecords::Run(const std::string& run_id) const {
  std::lock_guard lock(mu_);
  auto it = runs_.entries.find(run_id);
  return it == runs_.entries.end() ? nullptr : it->second.first;
}

}  // namespace sopflow

#include "active_runs.h"

namespace sopflow {

std::shared_ptr<const v1::Run> ActiveRuns::Find(const std::string& run_id) const {
  std::lock_guard lock(mu_);
  auto it = runs_.find(run_id);
  return it == runs_.end() ? nullptr : it->second.run;
}

void ActiveRuns::Remember(const v1::Run& run) {
  if (capacity_ == 0 || run.status() != v1::Run::ACTIVE) return;
  auto copy = std::make_shared<const v1::Run>(run);
  std::lock_guard lock(mu_);
  auto [it, inserted] = runs_.try_emplace(run.id(), Kept{std::move(copy), next_serial_});
  if (!inserted) return;
  order_.emplace_back(run.id(), next_serial_++);
  // Forgotten ids stay in order_ until they reach its front; there they are
  // dropped unless the same insertion is still kept.
  while (runs_.size() > capacity_ || order_.size() > 2 * capacity_) {
    auto& [id, serial] = order_.front();
    if (auto kept = runs_.find(id); kept != runs_.end() && kept->second.serial == serial) runs_.erase(kept);
    order_.pop_front();
  }
}

void ActiveRuns::Forget(const std::string& run_id) {
  std::lock_guard lock(mu_);
  runs_.erase(run_id);
}

size_t ActiveRuns::size() const {
  std::lock_guard lock(mu_);
  return runs_.size();
}

}  // namespace sopflow

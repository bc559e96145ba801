// The runs a router replica has seen while they were ACTIVE, so routing an
// event does not read its run from Redis again.
//
// Why a copy may be trusted: a run's record is written when it starts and
// again only when it ends (cancelled or completed). Every transition the
// router commits is guarded on the run still being ACTIVE, so a copy that
// missed the end is refused by that guard, exactly as a fresh read would
// have been refused one step earlier.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "sopflow/v1/router.pb.h"

namespace sopflow {

class ActiveRuns {
 public:
  explicit ActiveRuns(size_t capacity) : capacity_(capacity) {}

  // nullptr when not known here.
  std::shared_ptr<const v1::Run> Find(const std::string& run_id) const;
  // Keeps an ACTIVE run (others are ignored); the oldest go first when full.
  void Remember(const v1::Run& run);
  void Forget(const std::string& run_id);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  size_t capacity_;
  struct Kept {
    std::shared_ptr<const v1::Run> run;
    uint64_t serial;  // which insertion of this id: order_ may list older ones
  };
  std::unordered_map<std::string, Kept> runs_;
  std::deque<std::pair<std::string, uint64_t>> order_;  // insertion order, for eviction
  uint64_t next_serial_ = 0;
};

}  // namespace sopflow

// Work in a sorted set scored by due time, claimed with a lease: claiming
// pushes the member's score `lease_ms` into the future, so one replica
// works on it and, if that replica dies, the member is due again when the
// lease runs out. Used for deliveries and timers.
#pragma once

#include <string>
#include <vector>

#include "redis.h"

namespace sopflow {

struct ClaimedItem {
  std::string id;
  int64_t attempt = 0;  // with an attempt counter: this claim's number
};

// Claims up to `limit` members of `zset` due at `now_ms`. With
// `attempt_hash_prefix`, HINCRBY <prefix><id> attempt 1 counts the claim,
// so a worker that finishes late can tell it was overtaken.
std::vector<ClaimedItem> ClaimDue(RedisPool& pool, const std::string& zset, int64_t now_ms, int64_t lease_ms, int limit,
                                  const std::string& attempt_hash_prefix = "");

}  // namespace sopflow

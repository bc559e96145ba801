// Page tokens for List calls over sorted sets scored by time: a page ends
// at an entry (score, id), and the next page is the entries after it,
// newest first. Entries of one score (runs started in one group share a
// millisecond) come by id, highest first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "redis.h"

namespace sopflow {

struct Ranked {
  std::string id;
  int64_t score = 0;
};

// A WITHSCORES reply: id, score, id, score...
std::vector<Ranked> RankedOf(const redisReply* r);

// Entries of zset `key` newest first after `after` (the last entry a
// previous page gave; none: from the newest), at most `limit`.
std::vector<Ranked> NewestAfter(RedisConnection& conn, const std::string& key, const std::optional<Ranked>& after,
                                size_t limit);

// "<score>:<id>"; the empty token is the first page. A token that is not
// one throws DomainError(kInvalidArgument) on field page_token.
std::string PageToken(const Ranked& last);
std::optional<Ranked> FromPageToken(const std::string& token);

}  // namespace sopflow

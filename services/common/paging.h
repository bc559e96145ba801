// Page tokens for List calls over sorted sets scored by time: a page ends
// at an entry (score, id), and the next page is the entries after it, in
// the list's order (newest first, or oldest first for work queues).
// Entries of one score (runs started in one group share a millisecond)
// come by id: highest first when newest first, lowest first otherwise.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "redis.h"

namespace sopflow {

struct Ranked {
  std::string id;
  int64_t score = 0;
};

enum class Order { kNewestFirst, kOldestFirst };

// True when `a` is listed before `b` in `order`.
bool ListedBefore(const Ranked& a, const Ranked& b, Order order);

// A WITHSCORES reply: id, score, id, score...
std::vector<Ranked> RankedOf(const redisReply* r);

// Entries of zset `key` in `order` after `after` (the last entry a previous
// page gave; none: from the start), at most `limit`.
std::vector<Ranked> RankedAfter(RedisConnection& conn, const std::string& key, const std::optional<Ranked>& after,
                                size_t limit, Order order);
// The same for several zsets, their first reads in one round trip.
std::vector<std::vector<Ranked>> RankedAfterEach(RedisConnection& conn, const std::vector<std::string>& keys,
                                                 const std::optional<Ranked>& after, size_t limit, Order order);
inline std::vector<Ranked> NewestAfter(RedisConnection& conn, const std::string& key,
                                       const std::optional<Ranked>& after, size_t limit) {
  return RankedAfter(conn, key, after, limit, Order::kNewestFirst);
}

// "<score>:<id>"; the empty token is the first page. A token that is not
// one throws DomainError(kInvalidArgument) on field page_token.
std::string PageToken(const Ranked& last);
std::optional<Ranked> FromPageToken(const std::string& token);

// page_size as the List calls take it: 0 is `default_size`, at most
// `max_size` (each call's proto says its two).
size_t PageLimit(uint32_t page_size, uint32_t default_size = 100, uint32_t max_size = 1000);

// For an index a version added (who may read a run, a target's dead
// letters): walks zset `key` oldest first from the score `marker_key`
// holds less `recent_ms` (all of it when there is no marker yet), a
// thousand entries at a time; `index` writes the index of each page and
// says how many it indexed. The marker then holds the newest score walked.
// Looking `recent_ms` back covers what a process of the earlier version
// wrote meanwhile, during a rolling update. Returns the count indexed.
size_t IndexSinceMarker(RedisPool& pool, const std::string& key, const std::string& marker_key, int64_t recent_ms,
                        const std::function<size_t(const std::vector<Ranked>& page)>& index);

template <typename Item>
struct Page {
  std::vector<Item> items;
  std::string next_page_token;  // empty: nothing follows
};

// What PageAcross reads: the zsets (in `pool`'s Redis, each read after
// the cursor by RankedAfterEach), and the items of some ids (those gone
// are left out; each item's id() names it).
template <typename Item>
struct PageSources {
  RedisPool* pool = nullptr;
  Order order = Order::kNewestFirst;
  std::function<std::vector<Item>(const std::vector<std::string>& ids)> load;
  std::vector<std::string> zsets;  // the caller adds them
};

// One page of the items named in several zsets (a caller's unit and own
// indexes; a role's inboxes), merged in the sources' order, each id once,
// keeping those `keep` admits. Items left out make a page read further, up
// to kMaxReads, after which it is short and its token goes on from there.
template <typename Item>
Page<Item> PageAcross(const PageSources<Item>& from, const std::string& page_token, size_t limit,
                      const std::function<bool(const Item&)>& keep) {
  constexpr int kMaxReads = 20;
  std::optional<Ranked> cursor = FromPageToken(page_token);
  Page<Item> page;
  bool exhausted = false;
  for (int read = 0; read < kMaxReads && page.items.size() < limit && !exhausted; ++read) {
    std::vector<Ranked> candidates;
    exhausted = true;
    std::vector<std::vector<Ranked>> read_each;
    {
      auto conn = from.pool->Acquire();
      read_each = RankedAfterEach(*conn, from.zsets, cursor, limit, from.order);
    }
    for (auto& next : read_each) {
      exhausted = exhausted && next.size() < limit;
      candidates.insert(candidates.end(), std::make_move_iterator(next.begin()), std::make_move_iterator(next.end()));
    }
    std::sort(candidates.begin(), candidates.end(),
              [&](const Ranked& a, const Ranked& b) { return ListedBefore(a, b, from.order); });
    candidates.erase(std::unique(candidates.begin(), candidates.end(),
                                 [](const Ranked& a, const Ranked& b) { return a.id == b.id; }),
                     candidates.end());
    // Beyond `limit` the sources' orders were not merged: later reads get them.
    if (candidates.size() > limit) {
      candidates.resize(limit);
      exhausted = false;
    }
    std::vector<std::string> ids;
    for (const auto& c : candidates) ids.push_back(c.id);
    std::map<std::string, Item> by_id;
    for (auto& item : from.load(ids)) {
      std::string id = item.id();
      by_id.emplace(std::move(id), std::move(item));
    }
    size_t used = 0;
    for (const auto& c : candidates) {
      if (page.items.size() >= limit) break;
      ++used;
      cursor = c;
      auto found = by_id.find(c.id);
      if (found != by_id.end() && keep(found->second)) page.items.push_back(std::move(found->second));
    }
    if (used < candidates.size()) exhausted = false;
  }
  if (!exhausted && cursor) page.next_page_token = PageToken(*cursor);
  return page;
}

}  // namespace sopflow

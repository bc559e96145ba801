#include "paging.h"

#include <algorithm>
#include <cmath>

#include "error.h"

namespace sopflow {

std::vector<Ranked> RankedOf(const redisReply* r) {
  auto flat = ReplyStrings(r);
  std::vector<Ranked> out;
  for (size_t i = 0; i + 1 < flat.size(); i += 2)
    out.push_back({std::move(flat[i]), static_cast<int64_t>(std::llround(std::stod(flat[i + 1])))});
  return out;
}

bool ListedBefore(const Ranked& a, const Ranked& b, Order order) {
  if (order == Order::kNewestFirst) return a.score != b.score ? a.score > b.score : a.id > b.id;
  return a.score != b.score ? a.score < b.score : a.id < b.id;
}

namespace {
// A read after a cursor starts at the cursor's own score; entries at that
// score up to the cursor's id were given before. It asks for at least
// kMinRead, so that a run of such entries rarely needs a second read.
constexpr size_t kMinRead = 256;

size_t FirstWant(size_t limit, const std::optional<Ranked>& after) {
  return std::max(limit, after ? kMinRead : size_t{1});
}

std::vector<std::string> RangeAfter(const std::string& key, const std::optional<Ranked>& after, Order order,
                                    size_t offset, size_t count) {
  const bool newest_first = order == Order::kNewestFirst;
  const std::string from = after ? std::to_string(after->score) : newest_first ? "+inf" : "-inf";
  std::vector<std::string> cmd{"ZRANGE", key, from, newest_first ? "-inf" : "+inf", "BYSCORE"};
  if (newest_first) cmd.push_back("REV");
  cmd.insert(cmd.end(), {"LIMIT", std::to_string(offset), std::to_string(count), "WITHSCORES"});
  return cmd;
}

// Adds to `out` (up to `limit`) the entries not given before the cursor.
void KeepAfter(std::vector<Ranked>& entries, const std::optional<Ranked>& after, Order order, size_t limit,
               std::vector<Ranked>& out) {
  for (auto& e : entries) {
    if (after && e.score == after->score && !ListedBefore(*after, e, order)) continue;
    if (out.size() < limit) out.push_back(std::move(e));
  }
}
}  // namespace

std::vector<Ranked> RankedAfter(RedisConnection& conn, const std::string& key, const std::optional<Ranked>& after,
                                size_t limit, Order order) {
  constexpr size_t kMaxReads = 1000;
  std::vector<Ranked> out;
  size_t offset = 0;
  for (size_t reads = 0; out.size() < limit && reads < kMaxReads; ++reads) {
    const size_t want = reads == 0 ? FirstWant(limit, after) : std::max(limit - out.size(), kMinRead);
    Reply r = conn.Command(RangeAfter(key, after, order, offset, want));
    ThrowIfError(r.get());
    auto entries = RankedOf(r.get());
    offset += entries.size();
    KeepAfter(entries, after, order, limit, out);
    if (entries.size() < want) break;
  }
  return out;
}

std::vector<std::vector<Ranked>> RankedAfterEach(RedisConnection& conn, const std::vector<std::string>& keys,
                                                 const std::optional<Ranked>& after, size_t limit, Order order) {
  const size_t want = FirstWant(limit, after);
  std::vector<std::vector<std::string>> reads;
  for (const auto& key : keys) reads.push_back(RangeAfter(key, after, order, 0, want));
  std::vector<std::vector<Ranked>> out(keys.size());
  auto replies = conn.Pipeline(reads);
  for (size_t i = 0; i < keys.size(); ++i) {
    ThrowIfError(replies[i].get());
    auto entries = RankedOf(replies[i].get());
    const bool more = entries.size() == want;
    KeepAfter(entries, after, order, limit, out[i]);
    // Rare: the cursor's ties took so much of the read that it is short.
    if (more && out[i].size() < limit) out[i] = RankedAfter(conn, keys[i], after, limit, order);
  }
  return out;
}

size_t IndexSinceMarker(RedisPool& pool, const std::string& key, const std::string& marker_key, int64_t recent_ms,
                        const std::function<size_t(const std::vector<Ranked>& page)>& index) {
  constexpr size_t kPage = 1000;
  std::optional<std::string> marker;
  {
    auto conn = pool.Acquire();
    Reply r = conn->Command({"GET", marker_key});
    ThrowIfError(r.get());
    marker = ReplyString(r.get());
  }
  int64_t newest = marker ? std::stoll(*marker) : 0;
  // After ("", score): every entry of that score and later, ids being non-empty.
  std::optional<Ranked> after;
  if (marker) after = Ranked{"", newest - recent_ms};
  size_t count = 0;
  for (;;) {
    std::vector<Ranked> entries;
    {
      auto conn = pool.Acquire();
      entries = RankedAfter(*conn, key, after, kPage, Order::kOldestFirst);
    }
    if (entries.empty()) break;
    newest = std::max(newest, entries.back().score);
    count += index(entries);
    if (entries.size() < kPage) break;
    after = entries.back();
  }
  auto conn = pool.Acquire();
  Reply done = conn->Command({"SET", marker_key, std::to_string(newest)});
  ThrowIfError(done.get());
  return count;
}

std::string PageToken(const Ranked& last) { return std::to_string(last.score) + ":" + last.id; }

size_t PageLimit(uint32_t page_size, uint32_t default_size, uint32_t max_size) {
  return page_size == 0 ? default_size : std::min(page_size, max_size);
}

std::optional<Ranked> FromPageToken(const std::string& token) {
  if (token.empty()) return std::nullopt;
  auto colon = token.find(':');
  bool digits = colon != std::string::npos && colon > 0 && colon <= 18 &&
                std::all_of(token.begin(), token.begin() + colon, [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || colon + 1 == token.size() || token.size() > 256)
    ThrowInvalid("page_token", "is not a next_page_token this call gave");
  return Ranked{token.substr(colon + 1), std::stoll(token.substr(0, colon))};
}

}  // namespace sopflow

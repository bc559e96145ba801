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

std::vector<Ranked> RankedAfter(RedisConnection& conn, const std::string& key, const std::optional<Ranked>& after,
                                size_t limit, Order order) {
  // From the cursor's own score on. Entries at that score come in id order
  // (Redis orders equal scores so), and those up to the cursor's id were
  // given before: skipped, in as many reads as a run of equal scores takes.
  constexpr size_t kMinRead = 256, kMaxReads = 1000;
  const bool newest_first = order == Order::kNewestFirst;
  const std::string from = after ? std::to_string(after->score) : newest_first ? "+inf" : "-inf";
  const std::string to = newest_first ? "-inf" : "+inf";
  std::vector<Ranked> out;
  size_t offset = 0;
  for (size_t reads = 0; out.size() < limit && reads < kMaxReads; ++reads) {
    const size_t want = std::max(limit - out.size(), after ? kMinRead : size_t{1});
    std::vector<std::string> cmd{"ZRANGE", key, from, to, "BYSCORE"};
    if (newest_first) cmd.push_back("REV");
    cmd.insert(cmd.end(), {"LIMIT", std::to_string(offset), std::to_string(want), "WITHSCORES"});
    Reply r = conn.Command(cmd);
    ThrowIfError(r.get());
    auto entries = RankedOf(r.get());
    offset += entries.size();
    for (auto& e : entries) {
      if (after && e.score == after->score && !ListedBefore(*after, e, order)) continue;
      if (out.size() < limit) out.push_back(std::move(e));
    }
    if (entries.size() < want) break;
  }
  return out;
}

std::string PageToken(const Ranked& last) { return std::to_string(last.score) + ":" + last.id; }

size_t PageLimit(uint32_t page_size) { return page_size == 0 ? 100 : std::min<uint32_t>(page_size, 1000); }

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

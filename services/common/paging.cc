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

std::vector<Ranked> NewestAfter(RedisConnection& conn, const std::string& key, const std::optional<Ranked>& after,
                                size_t limit) {
  // From the cursor's own score down. Entries at that score come highest id
  // first, and those down to the cursor's id were given before: skipped, in
  // as many reads as a run of equal scores takes.
  constexpr size_t kMinRead = 256, kMaxReads = 1000;
  const std::string max = after ? std::to_string(after->score) : "+inf";
  std::vector<Ranked> out;
  size_t offset = 0;
  for (size_t reads = 0; out.size() < limit && reads < kMaxReads; ++reads) {
    const size_t want = std::max(limit - out.size(), after ? kMinRead : size_t{1});
    Reply r = conn.Command({"ZRANGE", key, max, "-inf", "BYSCORE", "REV", "LIMIT", std::to_string(offset),
                            std::to_string(want), "WITHSCORES"});
    ThrowIfError(r.get());
    auto entries = RankedOf(r.get());
    offset += entries.size();
    for (auto& e : entries) {
      if (after && e.score == after->score && e.id >= after->id) continue;
      if (out.size() < limit) out.push_back(std::move(e));
    }
    if (entries.size() < want) break;
  }
  return out;
}

std::string PageToken(const Ranked& last) { return std::to_string(last.score) + ":" + last.id; }

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

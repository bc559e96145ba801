#include "leased_queue.h"

#include <hiredis/hiredis.h>

#include "error.h"

namespace sopflow {
namespace {

RedisScript claim_script{R"lua(
local zset, now, lease_until, limit, prefix = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local ids = redis.call('ZRANGE', zset, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', zset, lease_until, id)
  out[#out + 1] = id
  if prefix ~= '' then
    out[#out + 1] = tostring(redis.call('HINCRBY', prefix .. id, 'attempt', 1))
  else
    out[#out + 1] = '0'
  end
end
return out
)lua"};

}  // namespace

std::vector<ClaimedItem> ClaimDue(RedisPool& pool, const std::string& zset, int64_t now_ms, int64_t lease_ms, int limit,
                                  const std::string& attempt_hash_prefix) {
  auto conn = pool.Acquire();
  Reply r = conn->EvalScript(claim_script, {zset, std::to_string(now_ms), std::to_string(now_ms + lease_ms),
                                            std::to_string(limit), attempt_hash_prefix});
  ThrowIfError(r.get());
  std::vector<ClaimedItem> out;
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
    out.push_back({ReplyString(r->element[i]).value_or(""), std::stoll(ReplyString(r->element[i + 1]).value_or("0"))});
  return out;
}

}  // namespace sopflow

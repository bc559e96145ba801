#include "redis_batch.h"

#include "error.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow {
namespace {

// Guards first (nothing written if one fails), then the writes. The script
// names its keys in ARGV rather than KEYS: sopflow targets a single Redis
// (or a replicated primary), not Redis Cluster, where every key of a
// transition would have to share a hash slot.
RedisScript commit_script{R"lua(
local n = tonumber(ARGV[1])
local i = 2
local adds = {}
for g = 1, n do
  local kind, key, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  if kind == 'eq' then
    local v = redis.call('HGET', key, field)
    if not v then v = '' end
    if v ~= value then return g end
  elseif kind == 'absent' then
    if redis.call('EXISTS', key) == 1 then return g end
  else
    if redis.call('SISMEMBER', key, field) == 1 then return g end
    adds[#adds + 1] = {key, field}
  end
end
for _, a in ipairs(adds) do redis.call('SADD', a[1], a[2]) end
local writes = tonumber(ARGV[i])
i = i + 1
for w = 1, writes do
  local c = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + c))
  i = i + c + 1
end
return 0
)lua"};


}  // namespace

void RedisBatch::ExpectField(const std::string& key, const std::string& field, const std::string& value) {
  guards_.insert(guards_.end(), {"eq", key, field, value});
  ++guard_count_;
}

void RedisBatch::ExpectAbsent(const std::string& key) {
  guards_.insert(guards_.end(), {"absent", key, "", ""});
  ++guard_count_;
}

void RedisBatch::AddOnce(const std::string& set_key, const std::string& member) {
  guards_.insert(guards_.end(), {"once", set_key, member, ""});
  ++guard_count_;
}

void RedisBatch::Write(std::vector<std::string> argv) { writes_.push_back(std::move(argv)); }

void RedisBatch::Emit(const v1::Event& event, const std::string& outbox) {
  Write({"XADD", outbox, "*", "i", event.id(), "s", event.type(), "e", event.SerializeAsString()});
}

std::vector<std::string> RedisBatch::Args() const {
  std::vector<std::string> args;
  args.reserve(2 + guards_.size() + writes_.size() * 8);
  args.push_back(std::to_string(guard_count_));
  args.insert(args.end(), guards_.begin(), guards_.end());
  args.push_back(std::to_string(writes_.size()));
  for (const auto& w : writes_) {
    args.push_back(std::to_string(w.size()));
    args.insert(args.end(), w.begin(), w.end());
  }
  return args;
}

int Commit(RedisPool& pool, const RedisBatch& batch) {
  auto conn = pool.Acquire();
  Reply r = conn->EvalScript(commit_script, batch.Args());
  ThrowIfError(r.get());
  return static_cast<int>(ReplyInteger(r.get()));
}

std::vector<int> CommitAll(RedisPool& pool, const std::vector<const RedisBatch*>& batches) {
  std::vector<int> results;
  if (batches.empty()) return results;
  std::vector<std::vector<std::string>> arg_lists;
  arg_lists.reserve(batches.size());
  for (const auto* b : batches) arg_lists.push_back(b->Args());
  auto conn = pool.Acquire();
  for (const auto& r : conn->EvalScripts(commit_script, arg_lists)) {
    ThrowIfError(r.get());
    results.push_back(static_cast<int>(ReplyInteger(r.get())));
  }
  return results;
}

}  // namespace sopflow

#include "redis_batch.h"

#include <hiredis/hiredis.h>

#include <stdexcept>

#include "error.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow {
namespace {

// Several batches in order, each as its own transition: its guards first
// (nothing of it written if one fails), then its writes; the result of each
// is 0 or the index of its first failed guard. One call for many batches
// matters: a script call costs Redis about as much as the commands in it.
// The script names its keys in ARGV rather than KEYS: sopflow targets a
// single Redis (or a replicated primary), not Redis Cluster, where every
// key of a transition would have to share a hash slot.
RedisScript commit_script{R"lua(
local results = {}
-- Hash fields the guards of this call read, by key: a guard of a later
-- batch on the same field (the notifier's webhooks version, in every
-- record) reads it from here until a write touches the key. Writes by
-- commands named here touch only the key after the name; any other
-- command forgets everything read.
local read = {}
local one_key = {HSET = true, HSETNX = true, HINCRBY = true, HDEL = true, SET = true, EXPIRE = true,
                 RPUSH = true, SADD = true, SREM = true, ZADD = true, ZREM = true, XADD = true}
local i = 2
for b = 1, tonumber(ARGV[1]) do
  local failed = 0
  local n = tonumber(ARGV[i])
  i = i + 1
  local g = 1
  while g <= n do
    local kind, key = ARGV[i], ARGV[i + 1]
    -- Consecutive field guards on one key (a task's status and assignee)
    -- are read with one HMGET, and a field read before is not read again:
    -- each command run from a script costs more than the command itself.
    local field_guard = kind == 'eq' or kind == 'in'
    local run = 1
    if field_guard then
      while g + run <= n and ARGV[i + 4 * run + 1] == key and
            (ARGV[i + 4 * run] == 'eq' or ARGV[i + 4 * run] == 'in') do run = run + 1 end
    end
    if failed == 0 then
      if field_guard then
        local known = read[key]
        if not known then
          known = {}
          read[key] = known
        end
        local fields = {}
        for k = 0, run - 1 do
          local f = ARGV[i + 4 * k + 2]
          if known[f] == nil then fields[#fields + 1] = f end
        end
        if #fields > 0 then
          local values = redis.call('HMGET', key, unpack(fields))
          for m = 1, #fields do known[fields[m]] = values[m] or '' end
        end
        for k = 0, run - 1 do
          local v = known[ARGV[i + 4 * k + 2]]
          local want = ARGV[i + 4 * k + 3]
          local holds
          if ARGV[i + 4 * k] == 'eq' then
            holds = v == want
          else  -- 'in': want is the allowed values, each followed by a newline
            holds = string.find('\n' .. want, '\n' .. v .. '\n', 1, true) ~= nil
          end
          if not holds then
            failed = g + k
            break
          end
        end
      elseif kind == 'absent' then
        if redis.call('EXISTS', key) == 1 then failed = g end
      else  -- 'claim', the last guard: every other one has held
        if not redis.call('SET', key, ARGV[i + 2], 'NX', 'EX', ARGV[i + 3]) then failed = g end
        if read[key] then read[key] = nil end
      end
    end
    i = i + 4 * run
    g = g + run
  end
  local writes = tonumber(ARGV[i])
  -- The write that queues the batch's events in its outbox (0: none): an
  -- applied batch answers with that entry's id, for the committer to
  -- publish the events at once.
  local outbox_write = tonumber(ARGV[i + 1])
  local entry = false
  i = i + 2
  for w = 1, writes do
    local c = tonumber(ARGV[i])
    if failed == 0 then
      -- Assigned only if present: in Lua 5.1, setting a missing key to nil
      -- adds it, and the table would grow by every key written.
      if not one_key[ARGV[i + 1]] then
        read = {}
      elseif read[ARGV[i + 2]] then
        read[ARGV[i + 2]] = nil
      end
      local reply = redis.call(unpack(ARGV, i + 1, i + c))
      if w == outbox_write then entry = reply end
    end
    i = i + c + 1
  end
  if failed == 0 and entry then results[b] = entry else results[b] = failed end
end
return results
)lua"};


}  // namespace

void RedisBatch::AddGuard(std::initializer_list<std::string> guard) {
  if (claims_) throw std::logic_error("RedisBatch: a guard after ClaimAbsent, which must be the last");
  guards_.insert(guards_.end(), guard);
  ++guard_count_;
}

void RedisBatch::ExpectField(const std::string& key, const std::string& field, const std::string& value) {
  AddGuard({"eq", key, field, value});
}

void RedisBatch::ExpectFieldIn(const std::string& key, const std::string& field,
                               const std::vector<std::string>& values) {
  std::string joined;
  for (const auto& v : values) {
    if (v.find('\n') != std::string::npos) throw std::logic_error("RedisBatch::ExpectFieldIn: a value with a newline");
    joined += v + '\n';
  }
  AddGuard({"in", key, field, joined});
}

void RedisBatch::ExpectAbsent(const std::string& key) { AddGuard({"absent", key, "", ""}); }

void RedisBatch::ClaimAbsent(const std::string& key, std::string value, int64_t ttl_seconds) {
  AddGuard({"claim", key, std::move(value), std::to_string(ttl_seconds)});
  claims_ = true;
}

void RedisBatch::Write(std::vector<std::string> argv) { writes_.push_back(std::move(argv)); }

std::vector<std::string>& RedisBatch::Joinable(const std::string& command, const std::string& key,
                                               std::vector<std::string> head) {
  const std::string name = command + " " + key;
  for (const auto& [joined, at] : joinable_)
    if (joined == name) return writes_[at];
  joinable_.emplace_back(name, writes_.size());
  writes_.push_back(std::move(head));
  return writes_.back();
}

void RedisBatch::Push(const std::string& key, std::string value) {
  Joinable("RPUSH", key, {"RPUSH", key}).push_back(std::move(value));
}

void RedisBatch::Emit(const v1::Event& event, const std::string& outbox) {
  if (outbox_write_ < 0) {
    outbox_write_ = static_cast<int>(writes_.size());
    writes_.push_back({"XADD", outbox, "*"});
  } else if (writes_[outbox_write_][1] != outbox) {
    throw std::logic_error("RedisBatch::Emit: a batch queues its events in one outbox");
  }
  auto& xadd = writes_[outbox_write_];
  xadd.insert(xadd.end(), {"i", event.id(), "s", event.type(), "e", event.SerializeAsString()});
}

std::vector<RedisBatch::EmittedEvent> RedisBatch::Emitted() const {
  std::vector<EmittedEvent> out;
  if (outbox_write_ < 0) return out;
  const auto& xadd = writes_[outbox_write_];
  for (size_t f = 3; f + 5 < xadd.size(); f += 6) out.push_back({xadd[f + 1], xadd[f + 3], xadd[f + 5]});
  return out;
}

void RedisBatch::AppendArgs(std::vector<std::string>& args) const {
  args.push_back(std::to_string(guard_count_));
  args.insert(args.end(), guards_.begin(), guards_.end());
  args.push_back(std::to_string(writes_.size()));
  args.push_back(std::to_string(outbox_write_ + 1));
  for (const auto& w : writes_) {
    args.push_back(std::to_string(w.size()));
    args.insert(args.end(), w.begin(), w.end());
  }
}

int Commit(RedisPool& pool, const RedisBatch& batch) { return CommitAll(pool, {&batch}).front(); }

std::vector<int> CommitAll(RedisPool& pool, const std::vector<const RedisBatch*>& batches,
                           std::vector<std::string>* outbox_entries) {
  std::vector<int> results;
  if (outbox_entries) outbox_entries->assign(batches.size(), "");
  if (batches.empty()) return results;
  std::vector<std::string> args{std::to_string(batches.size())};
  for (const auto* b : batches) b->AppendArgs(args);
  auto conn = pool.Acquire();
  Reply r = conn->EvalScript(commit_script, args);
  ThrowIfError(r.get());
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != batches.size())
    throw DomainError(ErrorCode::kInternal, "commit script: unexpected reply");
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    // An applied batch that queued events answers with its outbox entry.
    bool entry = e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS;
    if (entry && outbox_entries) (*outbox_entries)[i] = ReplyString(e).value_or("");
    results.push_back(entry ? 0 : static_cast<int>(ReplyInteger(e)));
  }
  return results;
}

}  // namespace sopflow

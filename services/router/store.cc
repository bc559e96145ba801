#include "store.h"

#include <hiredis/hiredis.h>

#include "error.h"

namespace sopflow {

namespace keys {
std::string Definition(const std::string& id) { return "sf:def:" + id; }
std::string Run(const std::string& id) { return "sf:run:" + id; }
std::string RunTasks(const std::string& id) { return "sf:run:" + id + ":tasks"; }
std::string RunHistory(const std::string& id) { return "sf:run:" + id + ":history"; }
std::string RunApplied(const std::string& id) { return "sf:run:" + id + ":applied"; }
std::string RunsOf(const std::string& sop) { return "sf:runs:" + sop; }
std::string Request(const std::string& id) { return "sf:req:" + id; }
std::string Task(const std::string& id) { return "sf:task:" + id; }
std::string FanOut(const std::string& run, uint32_t gen) { return "sf:fan:" + run + ":" + std::to_string(gen); }
std::string InboxOfUnit(const std::string& unit, const std::string& role) { return "sf:inbox:u:" + unit + ":" + role; }
std::string InboxOfMember(const std::string& m, const std::string& role) { return "sf:inbox:m:" + m + ":" + role; }
std::string Inbox(const v1::Task& t) {
  return t.member().empty() ? InboxOfUnit(t.unit(), t.pelaksana()) : InboxOfMember(t.member(), t.pelaksana());
}
std::string Claimed(const std::string& user) { return "sf:claimed:" + user; }
std::string Jobs(const std::string& type) { return "sf:jobs:" + type; }
std::string JobsLocked(const std::string& type) { return "sf:jobs:locked:" + type; }
}  // namespace keys

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
)lua", ""};

std::mutex script_mu;  // guards commit_script.sha1 across pool threads

template <class Message>
std::optional<Message> Decode(const redisReply* r) {
  auto s = ReplyString(r);
  if (!s) return std::nullopt;
  Message m;
  if (!m.ParseFromString(*s)) throw DomainError(ErrorCode::kInternal, "corrupt record in Redis");
  return m;
}

void CheckReply(const redisReply* r) {
  if (ReplyIsError(r)) throw DomainError(ErrorCode::kInternal, "redis: " + ReplyErrorText(r));
}

}  // namespace

void Batch::ExpectField(const std::string& key, const std::string& field, const std::string& value) {
  guards_.insert(guards_.end(), {"eq", key, field, value});
  ++guard_count_;
}

void Batch::ExpectAbsent(const std::string& key) {
  guards_.insert(guards_.end(), {"absent", key, "", ""});
  ++guard_count_;
}

void Batch::AddOnce(const std::string& set_key, const std::string& member) {
  guards_.insert(guards_.end(), {"once", set_key, member, ""});
  ++guard_count_;
}

void Batch::Write(std::vector<std::string> argv) { writes_.push_back(std::move(argv)); }

void Batch::Emit(const v1::Event& event) {
  Write({"XADD", keys::kOutbox, "*", "i", event.id(), "s", event.type(), "e", event.SerializeAsString()});
}

void Batch::PutTask(const v1::Task& task) {
  Write({"HSET", keys::Task(task.id()), "status", v1::Task::Status_Name(task.status()), "assignee", task.assignee(),
         "pb", task.SerializeAsString()});
}

void Batch::PutRun(const v1::Run& run) {
  Write({"HSET", keys::Run(run.id()), "status", v1::Run::Status_Name(run.status()), "pb", run.SerializeAsString()});
}

void Batch::AppendHistory(const std::string& run_id, const v1::HistoryEntry& entry) {
  Write({"RPUSH", keys::RunHistory(run_id), entry.SerializeAsString()});
}

std::vector<std::string> Batch::Args() const {
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

int Store::Commit(const Batch& batch) {
  auto conn = pool_->Acquire();
  RedisScript script;
  {
    std::lock_guard lock(script_mu);
    script = commit_script;
  }
  Reply r = conn->EvalScript(script, batch.Args());
  {
    std::lock_guard lock(script_mu);
    commit_script.sha1 = script.sha1;
  }
  CheckReply(r.get());
  return static_cast<int>(ReplyInteger(r.get()));
}

std::optional<v1::Task> Store::GetTask(const std::string& task_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HGET", keys::Task(task_id), "pb"});
  CheckReply(r.get());
  return Decode<v1::Task>(r.get());
}

std::vector<v1::Task> Store::GetTasks(const std::vector<std::string>& ids) {
  std::vector<v1::Task> out;
  if (ids.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& id : ids) cmds.push_back({"HGET", keys::Task(id), "pb"});
  auto conn = pool_->Acquire();
  for (auto& r : conn->Pipeline(cmds)) {
    CheckReply(r.get());
    if (auto t = Decode<v1::Task>(r.get())) out.push_back(std::move(*t));
  }
  return out;
}

std::optional<v1::Run> Store::GetRun(const std::string& run_id, int64_t* rev) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HMGET", keys::Run(run_id), "pb", "rev"});
  CheckReply(r.get());
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return std::nullopt;
  if (rev) *rev = ReplyInteger(r->element[1]);
  return Decode<v1::Run>(r->element[0]);
}

std::vector<v1::Run> Store::GetRuns(const std::vector<std::string>& ids) {
  std::vector<v1::Run> out;
  if (ids.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& id : ids) cmds.push_back({"HGET", keys::Run(id), "pb"});
  auto conn = pool_->Acquire();
  for (auto& r : conn->Pipeline(cmds)) {
    CheckReply(r.get());
    if (auto run = Decode<v1::Run>(r.get())) out.push_back(std::move(*run));
  }
  return out;
}

namespace {
std::vector<std::string> StringArray(const redisReply* r) {
  std::vector<std::string> out;
  if (!r || r->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i < r->elements; ++i)
    if (auto s = ReplyString(r->element[i])) out.push_back(std::move(*s));
  return out;
}
}  // namespace

std::vector<v1::HistoryEntry> Store::GetHistory(const std::string& run_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"LRANGE", keys::RunHistory(run_id), "0", "-1"});
  CheckReply(r.get());
  std::vector<v1::HistoryEntry> out;
  for (const auto& s : StringArray(r.get())) {
    v1::HistoryEntry e;
    if (!e.ParseFromString(s)) throw DomainError(ErrorCode::kInternal, "corrupt history entry");
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> Store::RunTaskIds(const std::string& run_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"LRANGE", keys::RunTasks(run_id), "0", "-1"});
  CheckReply(r.get());
  return StringArray(r.get());
}

std::optional<std::string> Store::GetString(const std::string& key) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"GET", key});
  CheckReply(r.get());
  return ReplyString(r.get());
}

std::optional<std::string> Store::HashField(const std::string& key, const std::string& field) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HGET", key, field});
  CheckReply(r.get());
  return ReplyString(r.get());
}

std::vector<std::string> Store::ZMembers(const std::vector<std::string>& zset_keys, size_t limit_each) {
  std::vector<std::string> out;
  if (zset_keys.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& k : zset_keys) cmds.push_back({"ZRANGE", k, "0", std::to_string(limit_each - 1)});
  auto conn = pool_->Acquire();
  for (auto& r : conn->Pipeline(cmds)) {
    CheckReply(r.get());
    for (auto& s : StringArray(r.get())) out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> Store::ZRangeByScore(const std::string& key, int64_t max_score, size_t limit) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"ZRANGE", key, "-inf", std::to_string(max_score), "BYSCORE", "LIMIT", "0", std::to_string(limit)});
  CheckReply(r.get());
  return StringArray(r.get());
}

std::vector<std::string> Store::ZRevRange(const std::string& key, size_t limit) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"ZRANGE", key, "0", std::to_string(limit - 1), "REV"});
  CheckReply(r.get());
  return StringArray(r.get());
}

std::vector<std::string> Store::SetMembers(const std::string& key) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"SMEMBERS", key});
  CheckReply(r.get());
  return StringArray(r.get());
}

}  // namespace sopflow

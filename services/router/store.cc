#include "store.h"

#include <hiredis/hiredis.h>

#include "error.h"
#include "outbox_relay.h"

namespace sopflow {

namespace keys {
std::string Definition(const std::string& id) { return "sf:def:" + id; }
std::string Run(const std::string& id) { return "sf:run:" + id; }
std::string RunTasks(const std::string& id) { return "sf:run:" + id + ":tasks"; }
std::string RunHistory(const std::string& id) { return "sf:run:" + id + ":history"; }
std::string RunsOf(const std::string& sop) { return "sf:runs:" + sop; }
std::string RunsReadableBy(const std::string& name) { return "sf:runs-readable:" + name; }
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

// `field` of each key's hash as `convert` reads its reply, in one round trip.
template <class Value>
std::vector<Value> FieldOfEach(RedisPool& pool, const std::vector<std::string>& keys, const std::string& field,
                               Value (*convert)(const redisReply*)) {
  std::vector<Value> out;
  if (keys.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& key : keys) cmds.push_back({"HGET", key, field});
  auto conn = pool.Acquire();
  for (auto& r : conn->Pipeline(cmds)) {
    ThrowIfError(r.get());
    out.push_back(convert(r.get()));
  }
  return out;
}

// The `pb` field of each id's hash, parsed; nullopt where it is missing.
// One round trip for all.
template <class Message>
std::vector<std::optional<Message>> ReadMessages(RedisPool& pool, const std::vector<std::string>& ids,
                                                 std::string (*key_of)(const std::string&)) {
  std::vector<std::string> keys;
  for (const auto& id : ids) keys.push_back(key_of(id));
  return FieldOfEach(pool, keys, "pb", &ReplyMessage<Message>);
}

template <class Message>
std::vector<Message> Present(std::vector<std::optional<Message>> all) {
  std::vector<Message> out;
  for (auto& m : all)
    if (m) out.push_back(std::move(*m));
  return out;
}

// A task's revision as its hash holds it: tasks written before revisions
// existed have no `rev` field, and read as revision 0.
std::string RevisionField(uint64_t revision) { return revision == 0 ? "" : std::to_string(revision); }

}  // namespace

bool IsOpen(const v1::Task& task) {
  return task.status() == v1::Task::OPEN || task.status() == v1::Task::CLAIMED ||
         task.status() == v1::Task::ACTIVATED;
}

void Batch::ExpectUnchanged(const v1::Task& task) {
  ExpectField(keys::Task(task.id()), "rev", RevisionField(task.revision()));
}

void Batch::PutTask(v1::Task& task) {
  task.set_revision(task.revision() + 1);
  Write({"HSET", keys::Task(task.id()), "status", v1::Task::Status_Name(task.status()), "assignee", task.assignee(),
         "rev", RevisionField(task.revision()), "pb", task.SerializeAsString()});
  if (IsOpen(task)) tasks_put_.push_back(task);
  else finished_tasks_.push_back(task.id());
}

void Batch::PutRun(const v1::Run& run) {
  Write({"HSET", keys::Run(run.id()), "status", v1::Run::Status_Name(run.status()), "pb", run.SerializeAsString()});
  runs_put_.push_back(run);
}

void Batch::AppendHistory(const std::string& run_id, const v1::HistoryEntry& entry) {
  Push(keys::RunHistory(run_id), entry.SerializeAsString());
}


std::vector<int> Store::CommitAll(const std::vector<const Batch*>& batches) {
  return CommitAndPublish(*pool_, std::vector<const RedisBatch*>(batches.begin(), batches.end()), relay_);
}

std::optional<v1::Task> Store::GetTask(const std::string& task_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HGET", keys::Task(task_id), "pb"});
  ThrowIfError(r.get());
  return ReplyMessage<v1::Task>(r.get());
}

std::vector<std::pair<std::optional<v1::Task>, std::optional<v1::Run>>> Store::GetTasksAndRuns(
    const std::vector<std::pair<std::string, std::string>>& task_and_run_ids) {
  std::vector<std::pair<std::optional<v1::Task>, std::optional<v1::Run>>> out;
  if (task_and_run_ids.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& [task_id, run_id] : task_and_run_ids) {
    cmds.push_back({"HGET", keys::Task(task_id), "pb"});
    cmds.push_back({"HGET", keys::Run(run_id), "pb"});
  }
  auto conn = pool_->Acquire();
  auto replies = conn->Pipeline(cmds);
  for (const auto& r : replies) ThrowIfError(r.get());
  for (size_t i = 0; i + 1 < replies.size(); i += 2)
    out.emplace_back(ReplyMessage<v1::Task>(replies[i].get()), ReplyMessage<v1::Run>(replies[i + 1].get()));
  return out;
}

std::vector<v1::Task> Store::GetTasks(const std::vector<std::string>& ids) {
  return Present(ReadMessages<v1::Task>(*pool_, ids, keys::Task));
}

std::optional<v1::Run> Store::GetRun(const std::string& run_id, int64_t* rev) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HMGET", keys::Run(run_id), "pb", "rev"});
  ThrowIfError(r.get());
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return std::nullopt;
  if (rev) *rev = ReplyInteger(r->element[1]);
  return ReplyMessage<v1::Run>(r->element[0]);
}

std::vector<v1::Run> Store::GetRuns(const std::vector<std::string>& ids) {
  return Present(ReadMessages<v1::Run>(*pool_, ids, keys::Run));
}


std::vector<v1::HistoryEntry> Store::GetHistory(const std::string& run_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"LRANGE", keys::RunHistory(run_id), "0", "-1"});
  ThrowIfError(r.get());
  std::vector<v1::HistoryEntry> out;
  for (const auto& s : ReplyStrings(r.get())) {
    v1::HistoryEntry e;
    if (!e.ParseFromString(s)) throw DomainError(ErrorCode::kInternal, "corrupt history entry");
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> Store::RunTaskIds(const std::string& run_id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"LRANGE", keys::RunTasks(run_id), "0", "-1"});
  ThrowIfError(r.get());
  return ReplyStrings(r.get());
}

std::optional<std::string> Store::GetString(const std::string& key) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"GET", key});
  ThrowIfError(r.get());
  return ReplyString(r.get());
}

std::optional<std::string> Store::HashField(const std::string& key, const std::string& field) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HGET", key, field});
  ThrowIfError(r.get());
  return ReplyString(r.get());
}

std::vector<std::optional<std::string>> Store::HashFieldOfEach(const std::vector<std::string>& keys,
                                                               const std::string& field) {
  return FieldOfEach(*pool_, keys, field, &ReplyString);
}

std::vector<std::string> Store::ZMembers(const std::vector<std::string>& zset_keys, size_t limit_each) {
  std::vector<std::string> out;
  if (zset_keys.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& k : zset_keys) cmds.push_back({"ZRANGE", k, "0", std::to_string(limit_each - 1)});
  auto conn = pool_->Acquire();
  for (auto& r : conn->Pipeline(cmds)) {
    ThrowIfError(r.get());
    for (auto& s : ReplyStrings(r.get())) out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> Store::ZRangeByScore(const std::string& key, int64_t max_score, size_t limit) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"ZRANGE", key, "-inf", std::to_string(max_score), "BYSCORE", "LIMIT", "0", std::to_string(limit)});
  ThrowIfError(r.get());
  return ReplyStrings(r.get());
}

std::vector<std::string> Store::SetMembers(const std::string& key) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"SMEMBERS", key});
  ThrowIfError(r.get());
  return ReplyStrings(r.get());
}

}  // namespace sopflow

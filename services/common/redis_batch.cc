#include "redis_batch.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <list>
#include <map>
#include <set>
#include <stdexcept>

#include "error.h"
#include "metrics.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow {
namespace {

// Commands a batch writes with that change only the key right after their
// name. Any other command (DEL of several keys, say) may change any key.
bool ChangesOnlyItsKey(const std::string& command) {
  static const char* const kOneKey[] = {"HSET", "HSETNX", "HINCRBY", "HDEL", "SET",  "EXPIRE",
                                        "RPUSH", "SADD",  "SREM",    "ZADD", "ZREM", "XADD"};
  for (const char* name : kOneKey)
    if (command == name) return true;
  return false;
}

// How many times a round is tried again after another client changed a key
// it read: each retry reads the guards afresh, and the changes that trip
// it (another replica's commit on the same task or run) take microseconds.
constexpr int kMaxRoundAttempts = 16;

}  // namespace

// Batches in order, each as its own transition: its guards first (nothing
// of it written if one fails), then its writes; the result of each is 0 or
// the index of its first failed guard.
//
// A round is WATCH on every key the batches' guards read and one pipelined
// read of those fields, the guards judged here, then MULTI, the writes of
// the batches whose guards held, EXEC: two round trips. If another client
// changed a watched key in between, EXEC does nothing and the round is
// tried again. Why not a Lua script, which needs one round trip: inside a
// script each command costs Redis about as much again as its work (its
// arguments copied into Lua and back, its reply converted); at saturation
// that machinery was 57% of the commit script's time and 43% of Redis's
// CPU. The same writes in MULTI cost Redis 30-45% less, and a hand-off 25%
// less Redis CPU (docs/performance.md, fifteenth session).
//
// A batch sees what earlier batches of the call wrote: a round ends before
// the first batch that guards a key an earlier batch of the round writes,
// and the next round reads it again.
class CommitRound {
 public:
  CommitRound(const std::vector<const RedisBatch*>& batches, size_t from) : batches_(batches), from_(from) {
    end_ = FindEnd();
  }
  size_t end() const { return end_; }

  // Fills results[from, end) (and outbox entries). False if another client
  // changed a watched key before EXEC: nothing was written.
  bool Run(RedisConnection& conn, std::vector<int>& results, std::vector<std::string>* entries,
           const std::function<void()>& after_read) {
    ReadGuards(conn);
    if (after_read) after_read();
    Transaction t;
    for (size_t i = from_; i < end_; ++i) {
      results[i] = FirstFailedGuard(*batches_[i]);
      if (results[i] == 0) t.Add(i, *batches_[i]);
    }
    if (t.commands.size() == 1) {  // nothing to write
      static const std::vector<std::string> kUnwatch{"UNWATCH"};
      if (!reads_.empty()) ThrowIfError(conn.Command(kUnwatch).get());  // some key is watched
      return true;
    }
    return t.Exec(conn, entries);
  }

 private:
  // Guards are kept flat, four strings each: kind, key, then field and
  // wanted value ("eq", "in") or value and TTL ("claim").
  static constexpr size_t kGuardSize = 4;

  // MULTI, the writes of the batches whose guards held, EXEC.
  struct Transaction {
    Transaction() {
      static const std::vector<std::string> kMulti{"MULTI"};
      commands.push_back(&kMulti);
    }
    void Add(size_t batch, const RedisBatch& b) {
      if (b.claims_) {
        const std::string* claim = &b.guards_[b.guards_.size() - kGuardSize];
        claims.push_back({"SET", claim[1], claim[2], "NX", "EX", claim[3]});
        commands.push_back(&claims.back());
      }
      // EXEC's replies are those of the commands after MULTI.
      if (b.outbox_write_ >= 0) outbox_at.emplace_back(batch, commands.size() - 1 + b.outbox_write_);
      for (const auto& w : b.writes_) commands.push_back(&w);
    }
    bool Exec(RedisConnection& conn, std::vector<std::string>* entries) {
      static const std::vector<std::string> kExec{"EXEC"};
      commands.push_back(&kExec);
      auto replies = conn.Pipeline(commands);
      const redisReply* exec = replies.back().get();
      if (exec->type == REDIS_REPLY_NIL) return false;  // a watched key changed
      ThrowIfError(exec);  // EXECABORT: a command was refused when queued
      if (exec->type != REDIS_REPLY_ARRAY || exec->elements != commands.size() - 2)
        throw DomainError(ErrorCode::kInternal, "commit: unexpected EXEC reply");
      for (size_t k = 0; k < exec->elements; ++k) ThrowIfError(exec->element[k]);
      if (entries)
        for (const auto& [batch, at] : outbox_at) (*entries)[batch] = ReplyString(exec->element[at]).value_or("");
      return true;
    }
    std::vector<const std::vector<std::string>*> commands;
    std::list<std::vector<std::string>> claims;  // SET NX EX of the claims; a list: commands point into it
    std::vector<std::pair<size_t, size_t>> outbox_at;  // batch -> its XADD's place among EXEC's replies
  };

  size_t FindEnd() const {
    std::set<std::string_view> written;
    bool any_written = false;  // a command that may change any key
    for (size_t i = from_; i < batches_.size(); ++i) {
      const RedisBatch& b = *batches_[i];
      if (i > from_)
        for (size_t g = 0; g < b.guards_.size(); g += kGuardSize)
          if (any_written || written.count(b.guards_[g + 1])) return i;
      if (b.claims_) written.insert(b.guards_[b.guards_.size() - kGuardSize + 1]);
      for (const auto& w : b.writes_) {
        if (w.size() > 1 && ChangesOnlyItsKey(w[0])) written.insert(w[1]);
        else any_written = true;
      }
    }
    return batches_.size();
  }

  struct KeyRead {
    std::vector<std::string_view> fields;  // read with one HMGET
    std::vector<std::string> values;
    bool exists_wanted = false;  // read with EXISTS
    bool exists = false;
  };

  void ReadGuards(RedisConnection& conn) {
    reads_.clear();
    std::vector<std::string_view> order;
    for (size_t i = from_; i < end_; ++i) {
      const auto& guards = batches_[i]->guards_;
      for (size_t g = 0; g < guards.size(); g += kGuardSize) {
        auto [it, fresh] = reads_.try_emplace(guards[g + 1]);
        if (fresh) order.push_back(guards[g + 1]);
        KeyRead& read = it->second;
        const std::string& kind = guards[g];
        if (kind == "eq" || kind == "in") {
          if (std::find(read.fields.begin(), read.fields.end(), guards[g + 2]) == read.fields.end())
            read.fields.push_back(guards[g + 2]);
        } else {
          read.exists_wanted = true;
        }
      }
    }
    if (order.empty()) return;  // no guard: nothing to watch or read
    std::vector<std::vector<std::string>> commands{{"WATCH"}};
    for (auto key : order) commands[0].emplace_back(key);
    for (auto key : order) {
      const KeyRead& read = reads_[key];
      if (!read.fields.empty()) {
        commands.push_back({"HMGET", std::string(key)});
        commands.back().insert(commands.back().end(), read.fields.begin(), read.fields.end());
      }
      if (read.exists_wanted) commands.push_back({"EXISTS", std::string(key)});
    }
    auto replies = conn.Pipeline(commands);
    size_t r = 1;
    try {
      ThrowIfError(replies[0].get());
      for (auto key : order) {
        KeyRead& read = reads_[key];
        if (!read.fields.empty()) {
          ThrowIfError(replies[r].get());
          read.values = ReplyStrings(replies[r++].get());
          if (read.values.size() != read.fields.size()) throw DomainError(ErrorCode::kInternal, "commit: bad HMGET reply");
        }
        if (read.exists_wanted) {
          ThrowIfError(replies[r].get());
          read.exists = ReplyInteger(replies[r++].get()) != 0;
        }
      }
    } catch (...) {
      try {
        conn.Command({"UNWATCH"});  // the connection goes back to the pool clean
      } catch (...) {
        // Unreachable: the connection is dropped, and its watches with it.
      }
      throw;
    }
  }

  // 0, or the 1-based index of the batch's first guard that fails.
  int FirstFailedGuard(const RedisBatch& b) const {
    for (size_t g = 0; g < b.guards_.size(); g += kGuardSize) {
      const KeyRead& read = reads_.at(b.guards_[g + 1]);
      const std::string& kind = b.guards_[g];
      bool holds;
      if (kind == "eq" || kind == "in") {
        size_t f = std::find(read.fields.begin(), read.fields.end(), b.guards_[g + 2]) - read.fields.begin();
        const std::string& value = read.values[f];  // "" for a missing field
        const std::string& want = b.guards_[g + 3];
        if (kind == "eq") holds = value == want;
        else holds = ("\n" + want).find("\n" + value + "\n") != std::string::npos;  // want: values, each ending in \n
      } else {  // "absent", "claim"
        holds = !read.exists;
      }
      if (!holds) return static_cast<int>(g / kGuardSize) + 1;
    }
    return 0;
  }

  const std::vector<const RedisBatch*>& batches_;
  size_t from_, end_;
  std::map<std::string_view, KeyRead> reads_;  // by key: every key watched
};

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

int Commit(RedisPool& pool, const RedisBatch& batch) { return CommitAll(pool, {&batch}).front(); }

std::vector<int> CommitAll(RedisPool& pool, const std::vector<const RedisBatch*>& batches,
                           std::vector<std::string>* outbox_entries, const std::function<void()>& after_read) {
  std::vector<int> results(batches.size(), 0);
  if (outbox_entries) outbox_entries->assign(batches.size(), "");
  if (batches.empty()) return results;
  auto conn = pool.Acquire();
  for (size_t from = 0; from < batches.size();) {
    CommitRound round(batches, from);
    int attempt = 0;
    while (!round.Run(*conn, results, outbox_entries, after_read)) {
      // Replicas (or users) writing the same records at once: rising, it
      // says how often a commit had to read and judge again.
      Metrics::Global().Count("sopflow_commit_conflicts_total", "");
      if (++attempt == kMaxRoundAttempts)
        throw DomainError(ErrorCode::kUnavailable, "the records kept changing under this commit; retry");
    }
    from = round.end();
  }
  return results;
}

}  // namespace sopflow

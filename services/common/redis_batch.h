// One atomic Redis transition: guards checked, then writes applied in one
// MULTI/EXEC under WATCH of every key a guard read, so it happens entirely
// or not at all. Two replicas (or two users) racing on the same record
// cannot both win: the second's EXEC finds a watched key changed, and its
// guards are read and judged again. Services build a batch, then Commit it.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "redis.h"

namespace sopflow {
namespace v1 {
class Event;
}

// The stream events wait in until the outbox relay publishes them.
inline constexpr char kDefaultOutbox[] = "sf:outbox";

class RedisBatch {
 public:
  // The hash field must equal `value` ("" matches a missing field).
  void ExpectField(const std::string& key, const std::string& field, const std::string& value);
  // The hash field must hold one of `values` ("" matches a missing field).
  // No value may contain a newline: they are kept joined by it.
  void ExpectFieldIn(const std::string& key, const std::string& field, const std::vector<std::string>& values);
  void ExpectAbsent(const std::string& key);
  // A guard and a write: the batch applies only if `key` does not exist,
  // and then `key` holds `value` for ttl_seconds (SET NX EX, first in the
  // batch's writes), for a record that marks its cause handled. It must be
  // the batch's last guard; a guard added after it is a logic_error.
  void ClaimAbsent(const std::string& key, std::string value, int64_t ttl_seconds);
  void Write(std::vector<std::string> argv);
  // Appends `value` to the list at `key`. The pushes of a batch to one list
  // become one RPUSH, in order: a transition appends several history lines,
  // and each command has its cost in Redis beyond its work. Use it only for
  // lists the batch does nothing else to.
  void Push(const std::string& key, std::string value);
  // Queues `event` in an outbox stream, in the same transaction as the state
  // it describes; the OutboxRelay publishes it to JetStream. The events of a
  // batch share one stream entry (fields i, s, e repeated per event, in
  // order), written by one XADD.
  void Emit(const v1::Event& event, const std::string& outbox = kDefaultOutbox);
  // The events Emit queued, in order, as views into this batch.
  struct EmittedEvent {
    std::string_view id, subject, data;  // data: the serialized sopflow.v1.Event
  };
  std::vector<EmittedEvent> Emitted() const;

  size_t guard_count() const { return guard_count_; }
  bool empty() const { return writes_.empty(); }

 private:
  friend class CommitRound;  // redis_batch.cc: applies batches
  void AddGuard(std::initializer_list<std::string> guard);
  std::vector<std::string> guards_;
  size_t guard_count_ = 0;
  bool claims_ = false;  // ClaimAbsent was called: no guard may follow
  std::vector<std::vector<std::string>> writes_;
  int outbox_write_ = -1;  // the XADD of Emit in writes_; -1: none
  // Where the command that later values for (command, key) join is.
  std::vector<std::pair<std::string, size_t>> joinable_;  // "<command> <key>" -> writes_ index
  std::vector<std::string>& Joinable(const std::string& command, const std::string& key,
                                     std::vector<std::string> head);
};

// 0 when applied; otherwise the 1-based index of the first guard that
// failed (nothing was written).
int Commit(RedisPool& pool, const RedisBatch& batch);
// Commits batches in order, in as few transactions as their keys allow
// (usually one: two round trips); one result per batch as Commit gives it.
// Each applies or not on its own, and sees what the batches before it
// wrote. Throws DomainError(kUnavailable) if other clients kept changing
// the keys it reads. With
// `outbox_entries`, also the id of each batch's outbox entry ("" when the
// batch emitted nothing or did not apply), for OutboxRelay::Publish.
// `after_read`, when given, runs in each attempt after the guards are read
// and before the writes: a test's way to change a key in between.
std::vector<int> CommitAll(RedisPool& pool, const std::vector<const RedisBatch*>& batches,
                           std::vector<std::string>* outbox_entries = nullptr,
                           const std::function<void()>& after_read = {});

}  // namespace sopflow

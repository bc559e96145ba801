// Work done in groups must end exactly as one at a time would: the
// notifier's events applied as a fetched batch (Engine::OnEvents, repeats
// included), completions committed as a group, the relay's and consumers'
// batches. The engines run here against a real redis-server with no relay
// or consumer, so the test decides what each batch holds; the events are the
// ones the engines themselves queued in the outbox. With no consumer here,
// these tests also show that the router routes in the transaction that ends
// a step, not from the events.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <signal.h>

#include "../../services/archiver/engine.h"
#include "../../services/notifier/engine.h"
#include "../../services/notifier/log_tail.h"
#include "../../services/router/call_groups.h"
#include "../../services/router/engine.h"
#include "clock.h"
#include "error.h"
#include "event_consumer.h"
#include "metrics.h"
#include "nats.h"
#include "outbox_relay.h"
#include "redis.h"
#include "router_fixture.h"
#include "sopflow/v1/event.pb.h"
#include "users.h"

namespace sopflow::testing {
namespace {

// A List call paged from its first page to its last, following
// next_page_token (at most 100 pages): `page(token, ids)` fetches the page
// after `token`, appends its ids and returns its next_page_token.
struct PagedThrough {
  std::vector<std::string> ids;
  int pages = 0;  // fetched
};
PagedThrough PageThrough(const std::function<std::string(const std::string& token, std::vector<std::string>& ids)>& page) {
  PagedThrough out;
  std::string token;
  do {
    token = page(token, out.ids);
    ++out.pages;
  } while (!token.empty() && out.pages < 100);
  return out;
}

// `call` with each of `tokens` is refused: INVALID_ARGUMENT naming page_token.
void ExpectTokensRefused(std::initializer_list<const char*> tokens, const std::function<void(const std::string&)>& call) {
  for (const char* bad : tokens) {
    try {
      call(bad);
      ADD_FAILURE() << bad << " was taken";
    } catch (const DomainError& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("page_token"), std::string::npos) << e.what();
    }
  }
}

class BatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backends_ = std::make_unique<Backends>();
    users_ = UserDirectory::LoadFile(SourcePath("deploy/overlays/dev/tokens.yaml"));
    pool_ = std::make_unique<RedisPool>(RedisAddress::Parse(backends_->redis->address()), 2);
    store_ = std::make_unique<Store>(pool_.get());
    engine_ = std::make_unique<Engine>(store_.get(), &clock_, "test/router");
    engine_->DeployTrusted(ReadText(SourcePath("deploy/base/definitions/003-balangan-satpol-pp.yaml")),
                           "003-balangan-satpol-pp.yaml", "test");
  }

  User UserOf(const std::string& token) { return *users_->FindByToken(token); }

  v1::Run StartRun() {
    return engine_->StartRun(UserOf(kSekretarisBlg), Run003Request());
  }

  // Every event queued in the outbox so far, in the order queued.
  std::vector<v1::Event> OutboxEvents() {
    RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
    Reply r = conn.Command({"XRANGE", "sf:outbox", "-", "+"});
    std::vector<v1::Event> out;
    for (size_t i = 0; r && i < r->elements; ++i) {
      auto fields = ReplyStrings(r->element[i]->element[1]);
      for (size_t f = 0; f + 1 < fields.size(); f += 2)
        if (fields[f] == "e") {
          EXPECT_TRUE(out.emplace_back().ParseFromString(fields[f + 1]));
        }
    }
    return out;
  }

  // The same by id.
  std::map<std::string, v1::Event> Outbox() {
    std::map<std::string, v1::Event> out;
    for (auto& e : OutboxEvents()) out[e.id()] = std::move(e);
    return out;
  }

  // Their ids, in the order queued.
  std::vector<std::string> OutboxIds() {
    std::vector<std::string> out;
    for (const auto& e : OutboxEvents()) out.push_back(e.id());
    return out;
  }

  // How often Redis ran `command` so far (INFO commandstats), scripts' own
  // commands included.
  int64_t CommandCalls(const std::string& command) {
    RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
    auto calls = sopflow::CommandCalls(conn);
    auto it = calls.find(command);
    return it == calls.end() ? 0 : it->second;
  }

  std::vector<v1::Task> TasksOf(const v1::Run& run) { return store_->GetTasks(store_->RunTaskIds(run.id())); }

  // Completes each newest task by whichever actor may, until the run ends
  // (at most 20 steps).
  void CompleteToTheEnd(const v1::Run& run) {
    auto actors = AllActors();
    for (int step = 0; step < 20 && store_->GetRun(run.id())->status() == v1::Run::ACTIVE; ++step) {
      const v1::Task open = TasksOf(run).back();
      for (const auto& a : actors) {
        try {
          engine_->Complete(UserOf(a.token), open.id(), "", v1::TaskOutput());
          break;
        } catch (const DomainError&) {
        }
      }
    }
  }

  // What a notifier's timer is told of a task: the router's answer, as
  // Router.GetTask gives it to the notifier's read_runs account. Counts
  // the questions; while `router_down_`, it cannot be asked.
  notifier::TaskLookup RouterTasks() {
    return [this](const std::string& id) -> std::optional<v1::Task> {
      ++task_lookups_;
      if (router_down_) throw DomainError(ErrorCode::kUnavailable, "router GetTask: UNAVAILABLE (test)");
      try {
        return engine_->GetTask(UserOf(kNotifierService), id);
      } catch (const DomainError& e) {
        if (e.code() == ErrorCode::kNotFound) return std::nullopt;
        throw;
      }
    };
  }
  int task_lookups_ = 0;
  bool router_down_ = false;

  // The notifier's timers of `task_id` still set (0, 1 or 2).
  int TimersOf(const std::string& task_id) {
    RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
    int n = 0;
    for (const char* which : {"|reminder", "|due"})
      n += conn.Command({"ZSCORE", notifier::keys::kTimers, task_id + which})->type == REDIS_REPLY_STRING;
    return n;
  }

  // The user's inbox notifications of `kind`.
  static std::vector<v1::Notification> InboxKinds(notifier::Store& store, const std::string& user,
                                                  v1::Notification::Kind kind) {
    std::vector<v1::Notification> out;
    for (auto& n : store.InboxOf(user, 100, false).notifications)
      if (n.kind() == kind) out.push_back(std::move(n));
    return out;
  }

  std::shared_ptr<const notifier::Composer> Composer() const {
    return std::make_shared<notifier::Composer>(
        users_, notifier::Templates::Load(SourcePath("deploy/base/notifier/templates")), WorkCalendar::Default());
  }

  // Publishes one event of `type` per id to the event stream.
  static void PublishTestEvents(NatsClient& nats, const std::string& type, const std::vector<std::string>& ids) {
    nats.EnsureEventStream();
    std::vector<NatsClient::OutgoingMessage> messages;
    for (const auto& id : ids) {
      v1::Event e;
      e.set_id(id);
      e.set_type(type);
      messages.push_back({e.type(), e.id(), e.SerializeAsString(), {}});
    }
    ASSERT_TRUE(nats.PublishAll(messages).empty());
  }

  // Commits one transition queuing an event of `type` per (id, bytes of
  // output note): one outbox entry, as the services' transitions make.
  void QueueTransition(const std::string& type, const std::vector<std::pair<std::string, size_t>>& events) {
    ASSERT_EQ(Commit(*pool_, *Transition(type, events)), 0);
  }

  // The batch of such a transition, not committed.
  static std::unique_ptr<RedisBatch> Transition(const std::string& type,
                                                const std::vector<std::pair<std::string, size_t>>& events) {
    auto b = std::make_unique<RedisBatch>();
    for (const auto& [id, note_bytes] : events) {
      v1::Event e;
      e.set_id(id);
      e.set_type(type);
      if (note_bytes) e.mutable_task_completed()->mutable_task()->mutable_output()->set_note(std::string(note_bytes, 'x'));
      b->Emit(e);
    }
    return b;
  }

  // The same with `n` events of no output, "<prefix>0" to "<prefix><n-1>";
  // their ids are added to `ids`.
  static std::unique_ptr<RedisBatch> NumberedTransition(const std::string& type, const std::string& prefix, int n,
                                                        std::multiset<std::string>& ids) {
    std::vector<std::pair<std::string, size_t>> events;
    for (int i = 0; i < n; ++i) {
      events.emplace_back(prefix + std::to_string(i), 0);
      ids.insert(events.back().first);
    }
    return Transition(type, events);
  }

  // A relay on a NATS connection of its own named `name`, not started:
  // the test runs its passes.
  struct RelayRig {
    std::unique_ptr<NatsClient> nats;
    std::unique_ptr<OutboxRelay> relay;
  };
  RelayRig Relay(const std::string& name, const OutboxRelay::Options& options) {
    RelayRig rig;
    rig.nats = std::make_unique<NatsClient>(NatsOptions{backends_->nats->url(), name, false});
    rig.nats->EnsureEventStream();
    rig.relay = std::make_unique<OutboxRelay>(RedisAddress::Parse(backends_->redis->address()), rig.nats.get(), options);
    return rig;
  }
  // Options of a relay that sweeps at every pass (once past a refusal's
  // pause) entries `orphan_after_ms` old.
  static OutboxRelay::Options SweepingEveryPass(int orphan_after_ms) {
    OutboxRelay::Options options;
    options.orphan_after_ms = orphan_after_ms;
    options.sweep_interval_ms = 0;
    return options;
  }

  // A consumer (durable `name`, filter `subject`) that adds each event id
  // it is handed to `ids`.
  static std::unique_ptr<EventConsumer> CollectingConsumer(NatsClient& nats, const std::string& name,
                                                           const std::string& subject, std::multiset<std::string>& ids) {
    EventConsumer::Options options;
    options.durable = name;
    options.filter_subject = subject;
    return std::make_unique<EventConsumer>(&nats, options, EventConsumer::BatchHandler([&ids](const std::vector<v1::Event>& events) {
      for (const auto& e : events) ids.insert(e.id());
    }));
  }

  std::unique_ptr<Backends> backends_;
  std::shared_ptr<const UserDirectory> users_;
  SystemClock clock_;
  std::unique_ptr<RedisPool> pool_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(BatchTest, CommitAllAppliesEachBatchOnItsOwnInOrder) {
  RedisBatch first, refused, second;
  first.ExpectAbsent("t:a");
  first.Write({"HSET", "t:a", "v", "1"});
  // Refused by its second guard (its first holds): none of its writes may
  // appear.
  refused.ExpectAbsent("t:other");
  refused.ExpectField("t:a", "v", "2");
  refused.Write({"SET", "t:refused", "x"});
  refused.Write({"HSET", "t:a", "v", "refused"});
  // Sees what the first batch wrote.
  second.ExpectField("t:a", "v", "1");
  second.Write({"HSET", "t:a", "v", "3"});
  EXPECT_EQ(CommitAll(*pool_, {&first, &refused, &second}), (std::vector<int>{0, 2, 0}));

  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  EXPECT_EQ(ReplyString(conn.Command({"HGET", "t:a", "v"}).get()), "3");
  EXPECT_EQ(ReplyInteger(conn.Command({"EXISTS", "t:refused"}).get()), 0);
  EXPECT_EQ(Commit(*pool_, first), 1) << "its guard refuses it now: applied once only";

  // Guards on one key's fields are read together; the result still names
  // the first that fails, and a missing field reads as "".
  ASSERT_EQ(ReplyInteger(conn.Command({"HSET", "t:b", "status", "OPEN", "assignee", "u1"}).get()), 2);
  auto guarded = [](std::vector<std::array<std::string, 3>> fields) {
    RedisBatch b;
    for (const auto& [key, field, value] : fields) b.ExpectField(key, field, value);
    b.Write({"HINCRBY", "t:b", "applied", "1"});
    return b;
  };
  RedisBatch holds = guarded({{"t:b", "status", "OPEN"}, {"t:b", "assignee", "u1"}, {"t:b", "gone", ""}});
  RedisBatch second_fails = guarded({{"t:b", "status", "OPEN"}, {"t:b", "assignee", "u2"}, {"t:b", "gone", ""}});
  RedisBatch third_fails = guarded({{"t:a", "v", "3"}, {"t:b", "status", "OPEN"}, {"t:b", "gone", "x"}});
  RedisBatch first_fails = guarded({{"t:b", "status", "DONE"}, {"t:b", "assignee", "u2"}});
  EXPECT_EQ(CommitAll(*pool_, {&holds, &second_fails, &third_fails, &first_fails, &holds}),
            (std::vector<int>{0, 2, 3, 1, 0}));
  EXPECT_EQ(ReplyString(conn.Command({"HGET", "t:b", "applied"}).get()), "2");
}

TEST_F(BatchTest, AClaimIsTheLastGuardAndAFieldMayHoldOneOfSeveralValues) {
  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  // A claim after a guard that fails writes nothing, its key included.
  RedisBatch refused;
  refused.ExpectField("c:h", "status", "DONE");
  refused.ClaimAbsent("c:mark", "first", 60);
  refused.Write({"SET", "c:written", "x"});
  EXPECT_EQ(Commit(*pool_, refused), 1);
  EXPECT_EQ(ReplyInteger(conn.Command({"EXISTS", "c:mark"}).get()), 0);
  EXPECT_EQ(ReplyInteger(conn.Command({"EXISTS", "c:written"}).get()), 0);

  // Applied: the claimed key holds its value, with its TTL. A repeat fails
  // at the claim's index and writes nothing: the key keeps the first value.
  auto claiming = [](const std::string& value) {
    RedisBatch b;
    b.ExpectField("c:h", "status", "");
    b.ClaimAbsent("c:mark", value, 60);
    b.Write({"HINCRBY", "c:h", "applied", "1"});
    return b;
  };
  RedisBatch first = claiming("first"), repeat = claiming("repeat");
  const int64_t execs_before = CommandCalls("exec");
  EXPECT_EQ(CommitAll(*pool_, {&first, &repeat}), (std::vector<int>{0, 2}));
  EXPECT_EQ(ReplyString(conn.Command({"GET", "c:mark"}).get()), "first");
  EXPECT_GT(ReplyInteger(conn.Command({"TTL", "c:mark"}).get()), 0);
  EXPECT_EQ(ReplyString(conn.Command({"HGET", "c:h", "applied"}).get()), "1");
  EXPECT_EQ(CommandCalls("exec") - execs_before, 1) << "the repeat, refused, opens no transaction";

  // One of several values; "" for a missing field. Field guards on one key
  // are still read together, whatever their kind, and the result names the
  // first that fails.
  auto open_task = [](const std::string& assignee) {
    RedisBatch b;
    b.ExpectFieldIn("c:t", "status", {"", "OPEN"});
    b.ExpectField("c:t", "assignee", assignee);
    b.Write({"HINCRBY", "c:t", "applied", "1"});
    return b;
  };
  RedisBatch missing = open_task(""), wrong_assignee = open_task("u1");
  const int64_t hmgets_before = CommandCalls("hmget");
  EXPECT_EQ(CommitAll(*pool_, {&missing, &wrong_assignee}), (std::vector<int>{0, 2}));
  ASSERT_EQ(ReplyInteger(conn.Command({"HSET", "c:t", "status", "OPEN"}).get()), 1);
  EXPECT_EQ(Commit(*pool_, missing), 0);
  ASSERT_EQ(ReplyInteger(conn.Command({"HSET", "c:t", "status", "OPENED"}).get()), 0);
  EXPECT_EQ(Commit(*pool_, missing), 1) << "a value that only begins like an allowed one";
  ASSERT_EQ(ReplyInteger(conn.Command({"HSET", "c:t", "status", "DONE"}).get()), 0);
  EXPECT_EQ(Commit(*pool_, missing), 1);
  EXPECT_EQ(ReplyString(conn.Command({"HGET", "c:t", "applied"}).get()), "2");
  EXPECT_EQ(CommandCalls("hmget") - hmgets_before, 5) << "one HMGET per batch's run of field guards";

  RedisBatch misuse;
  misuse.ClaimAbsent("c:other", "x", 60);
  EXPECT_THROW(misuse.ExpectAbsent("c:else"), std::logic_error);
  EXPECT_THROW(misuse.ExpectFieldIn("c:t", "status", {"A\nB"}), std::logic_error);
}

TEST_F(BatchTest, AFieldReadByOneBatchOfACallIsReadAgainOnlyAfterAWriteToItsKey) {
  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  ASSERT_EQ(ReplyInteger(conn.Command({"HSET", "m:meta", "version", "7"}).get()), 1);
  auto on_version = [](const std::string& version, std::vector<std::string> write) {
    RedisBatch b;
    b.ExpectField("m:meta", "version", version);
    b.Write({"HINCRBY", "m:applied", version, "1"});
    if (!write.empty()) b.Write(std::move(write));
    return b;
  };
  // Three records guarded on one version: read once.
  RedisBatch a = on_version("7", {}), b = on_version("7", {}), c = on_version("7", {});
  int64_t hmgets = CommandCalls("hmget");
  EXPECT_EQ(CommitAll(*pool_, {&a, &b, &c}), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(CommandCalls("hmget") - hmgets, 1);

  // A write to the key in between: the batches after it read it again and
  // see the new value, whether the write names the key first (HINCRBY) or
  // elsewhere (a command not known to touch one key forgets every read).
  RedisBatch bump = on_version("7", {"HINCRBY", "m:meta", "version", "1"});
  RedisBatch stale = on_version("7", {}), fresh = on_version("8", {});
  RedisBatch cleared = on_version("8", {"DEL", "m:unrelated", "m:meta"});
  RedisBatch after_del = on_version("8", {}), missing = on_version("", {});
  hmgets = CommandCalls("hmget");
  EXPECT_EQ(CommitAll(*pool_, {&bump, &stale, &fresh, &cleared, &after_del, &missing}),
            (std::vector<int>{0, 1, 0, 0, 1, 0}));
  EXPECT_EQ(CommandCalls("hmget") - hmgets, 3) << "read at bump, after it, after the DEL";
  EXPECT_EQ(ReplyString(conn.Command({"HGET", "m:applied", "7"}).get()), "4");
  EXPECT_EQ(ReplyString(conn.Command({"HGET", "m:applied", "8"}).get()), "2");
  EXPECT_EQ(ReplyString(conn.Command({"HGET", "m:applied", ""}).get()), "1");
}

// A key a round read, changed by another client before the round's EXEC:
// the EXEC writes nothing and the guards are read and judged again, on the
// new value; each such retry is counted for operators.
TEST_F(BatchTest, ACommitWhoseGuardedKeyChangesBeforeItsWritesIsJudgedAgain) {
  RedisConnection other(RedisAddress::Parse(backends_->redis->address()));
  ASSERT_EQ(ReplyInteger(other.Command({"HSET", "w:k", "v", "1"}).get()), 1);
  auto conflicts = [] { return Metrics::Global().CounterValue("sopflow_commit_conflicts_total", ""); };
  const double conflicts_before = conflicts();

  // Commits `batch`, running `change` by another client after the first
  // reading of its guards; gives the results and how often they were read.
  auto commit_changed_once = [&](const RedisBatch& batch, const std::vector<std::string>& change) {
    int reads = 0;
    auto results = CommitAll(*pool_, {&batch}, nullptr, [&] {
      if (reads++ == 0) ThrowIfError(other.Command(change).get());
    });
    return std::make_pair(results, reads);
  };

  // Changed to a value the guard refuses: refused on the second reading.
  RedisBatch refused;
  refused.ExpectField("w:k", "v", "1");
  refused.Write({"HSET", "w:k", "refused", "written"});
  EXPECT_EQ(commit_changed_once(refused, {"HSET", "w:k", "v", "2"}), std::make_pair(std::vector<int>{1}, 2));
  EXPECT_EQ(ReplyString(other.Command({"HGET", "w:k", "refused"}).get()), std::nullopt) << "the first EXEC wrote nothing";
  EXPECT_EQ(conflicts() - conflicts_before, 1);

  // Another field of the key written: the guard still holds when read
  // again, and the batch applies then, once.
  RedisBatch applied;
  applied.ExpectField("w:k", "v", "2");
  applied.Write({"HINCRBY", "w:k", "applied", "1"});
  EXPECT_EQ(commit_changed_once(applied, {"HSET", "w:k", "x", "y"}), std::make_pair(std::vector<int>{0}, 2));
  EXPECT_EQ(ReplyString(other.Command({"HGET", "w:k", "applied"}).get()), "1");
  EXPECT_EQ(conflicts() - conflicts_before, 2);

  // Changed at every attempt: UNAVAILABLE after a bounded number, nothing written.
  int reads = 0;
  try {
    CommitAll(*pool_, {&applied}, nullptr, [&] { other.Command({"HINCRBY", "w:k", "x2", "1"}); ++reads; });
    ADD_FAILURE() << "a commit whose key changes at every attempt must give up";
  } catch (const DomainError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
  EXPECT_EQ(reads, 16);
  EXPECT_EQ(ReplyString(other.Command({"HGET", "w:k", "applied"}).get()), "1");
}

// Guards are read, judged here, and the writes applied by MULTI/EXEC: a
// write by another client in between must refuse the commit (WATCH), not
// let two committers both apply on the same value read.
TEST_F(BatchTest, CommittersRacingOnOneKeyNeverBothApplyOnTheSameValue) {
  constexpr int kThreads = 4, kIncrements = 150, kMaxTries = 100000;
  RedisConnection setup(RedisAddress::Parse(backends_->redis->address()));
  ASSERT_EQ(ReplyInteger(setup.Command({"HSET", "race:counter", "v", "0"}).get()), 1);
  std::atomic<int> refused{0}, gave_up{0};
  auto racer = [&](int id) {
    RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
    int done = 0;
    for (int tries = 0; done < kIncrements && tries < kMaxTries; ++tries) {
      std::string seen = ReplyString(conn.Command({"HGET", "race:counter", "v"}).get()).value_or("");
      RedisBatch b;
      b.ExpectField("race:counter", "v", seen);
      b.Write({"HSET", "race:counter", "v", std::to_string(std::stoi(seen) + 1)});
      b.Write({"RPUSH", "race:log", std::to_string(id) + "/" + std::to_string(done)});
      if (Commit(*pool_, b) == 0) ++done;
      else ++refused;
    }
    if (done < kIncrements) ++gave_up;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(racer, i);
  for (auto& t : threads) t.join();
  ASSERT_EQ(gave_up.load(), 0);
  EXPECT_EQ(ReplyString(setup.Command({"HGET", "race:counter", "v"}).get()), std::to_string(kThreads * kIncrements));
  EXPECT_EQ(ReplyInteger(setup.Command({"LLEN", "race:log"}).get()), kThreads * kIncrements)
      << "each applied commit moved the counter by one: none applied on a value another had changed";
  RecordProperty("refused", refused.load());
}

TEST_F(BatchTest, TheTransactionThatEndsAStepCreatesTheNextTaskOrCompletesTheRun) {
  // No consumer routes anything here: each call's own commit does.
  v1::Run run = StartRun();
  ASSERT_EQ(TasksOf(run).size(), 1u);
  EXPECT_EQ(OutboxIds(), (std::vector<std::string>{run.id() + "/started", run.id() + ".1/created"}));

  const v1::Task first = TasksOf(run).at(0);
  const int64_t xadds = CommandCalls("xadd"), rpushes = CommandCalls("rpush");
  engine_->Complete(UserOf(kSekretarisBlg), first.id(), "", v1::TaskOutput());
  // Its three events share one outbox entry; its three history lines are
  // one push, the run's new task another.
  EXPECT_EQ(CommandCalls("xadd") - xadds, 1);
  EXPECT_EQ(CommandCalls("rpush") - rpushes, 2);
  auto tasks = TasksOf(run);
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[1].step(), 2u);
  EXPECT_EQ(tasks[1].gen(), 2u);
  EXPECT_EQ(tasks[1].status(), v1::Task::OPEN);
  // The completion's events in the order their consumers need them.
  EXPECT_EQ(OutboxIds(), (std::vector<std::string>{run.id() + "/started", run.id() + ".1/created",
                                                   first.id() + "/completed", run.id() + "/1/step_completed",
                                                   run.id() + ".2/created"}));

  // The same completion repeated is answered with the task as completed;
  // another is refused. Neither writes anything.
  const int64_t execs = CommandCalls("exec");
  EXPECT_EQ(engine_->Complete(UserOf(kSekretarisBlg), first.id(), "", v1::TaskOutput()).status(), v1::Task::DONE);
  v1::TaskOutput otherwise;
  otherwise.set_note("lain");
  EXPECT_THROW(engine_->Complete(UserOf(kSekretarisBlg), first.id(), "", otherwise), DomainError);
  EXPECT_EQ(CommandCalls("exec"), execs);
  EXPECT_EQ(TasksOf(run).size(), 2u);
  EXPECT_EQ(OutboxIds().size(), 5u);

  // To the end: the last step's completion completes the run.
  CompleteToTheEnd(run);
  EXPECT_EQ(store_->GetRun(run.id())->status(), v1::Run::COMPLETED);
  tasks = TasksOf(run);
  EXPECT_EQ(tasks.size(), 9u);
  for (const auto& t : tasks) EXPECT_EQ(t.status(), v1::Task::DONE) << t.id();
  auto ids = OutboxIds();
  EXPECT_EQ(ids.back(), run.id() + "/completed");
  EXPECT_EQ(ids.end()[-2], run.id() + "/9/step_completed");
  EXPECT_EQ(std::count_if(ids.begin(), ids.end(), [](const std::string& id) { return id.ends_with("/created"); }), 9);
}

TEST_F(BatchTest, ACompletionOnARunCancelledMeanwhileCreatesNothing) {
  // The run is read with the task; cancelled between that read and the
  // commit, the commit's guard on the run refuses the whole transition.
  v1::Run run = StartRun();
  const v1::Task first = TasksOf(run).at(0);
  Engine other(store_.get(), &clock_, "test/router-2");
  other.CancelRun(UserOf(kSekretarisBlg), run.id(), "salah periode");
  try {
    engine_->Complete(UserOf(kSekretarisBlg), first.id(), "", v1::TaskOutput());
    ADD_FAILURE() << "completed on a cancelled run";
  } catch (const DomainError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition) << e.what();
  }
  EXPECT_EQ(TasksOf(run).size(), 1u) << "no task after the cancellation";
  EXPECT_EQ(TasksOf(run).at(0).status(), v1::Task::CANCELLED);
  EXPECT_EQ(store_->GetRun(run.id())->status(), v1::Run::CANCELLED);
}

TEST_F(BatchTest, NotifierReplicasDeliverToTheWebhooksCurrentWhenTheyRecord) {
  notifier::Store notifier_store(pool_.get(), 1000);
  auto composer = Composer();
  notifier::Engine one(&notifier_store, &clock_, composer, RouterTasks(), notifier::Options());
  notifier::Engine two(&notifier_store, &clock_, composer, RouterTasks(), notifier::Options());
  auto task_created = [&] {
    v1::Run run = StartRun();
    return Outbox().at(TasksOf(run).at(0).id() + "/created");
  };
  auto deliveries_to = [&](const std::string& hook_id) {
    return notifier_store.DeliveriesFor(hook_id, false, 100).items.size();
  };

  // Replica one records with no webhooks and keeps that set.
  one.OnEvents({task_created()});
  // A webhook registered through replica two: the next record of replica
  // one delivers to it.
  v1::RegisterWebhookRequest req;
  req.set_url("http://127.0.0.1:9/hook");
  v1::Webhook hook = two.RegisterWebhook(UserOf(kSekretarisBlg), req);
  one.OnEvents({task_created()});
  EXPECT_EQ(deliveries_to(hook.id()), 1u);
  one.OnEvents({task_created()});
  EXPECT_EQ(deliveries_to(hook.id()), 2u);
  // Removed through replica two: replica one delivers to it no more.
  two.RemoveWebhook(UserOf(kSekretarisBlg), hook.id());
  one.OnEvents({task_created(), task_created()});
  EXPECT_EQ(deliveries_to(hook.id()), 2u);
  // Every task's assignment was recorded once, whatever was retried.
  EXPECT_EQ(InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::TASK_ASSIGNED).size(), 5u);
}

// A notification's item and deliveries expire after 90 days; the lists
// naming them (inbox, unread set, a webhook's deliveries, the dead
// letters) forget them in the sweep, so CountUnread counts only what is
// left. Scores are the notifier's clock, which the test moves; the items
// themselves are not needed for that.
TEST_F(BatchTest, AfterNinetyDaysTheNotifierForgetsExpiredIdsAndCountsOnlyWhatIsLeft) {
  notifier::Store notifier_store(pool_.get(), 1000);
  ManualClock notifier_clock(clock_.Now());
  notifier::Engine notifier(&notifier_store, &notifier_clock, Composer(), RouterTasks(), notifier::Options());
  v1::RegisterWebhookRequest req;
  req.set_url("http://127.0.0.1:9/hook");
  const v1::Webhook hook = notifier.RegisterWebhook(UserOf(kSekretarisBlg), req);
  auto task_created = [&] {
    v1::Run run = StartRun();
    return Outbox().at(TasksOf(run).at(0).id() + "/created");
  };
  const std::string user = UserOf(kSekretarisBlg).id;
  const auto always = [] { return true; };
  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  auto count = [&](const std::vector<std::string>& command) { return ReplyInteger(conn.Command(command).get()); };
  const auto day = std::chrono::hours(24);

  // Day 0: three notifications, one read, and a dead letter.
  notifier.OnEvents({task_created(), task_created(), task_created()});
  auto day0 = notifier_store.InboxOf(user, 10, false).notifications;
  ASSERT_EQ(day0.size(), 3u);
  notifier_store.MarkRead(user, {day0[0].id()});
  const std::string day0_ms = std::to_string(UnixMillis(notifier_clock.Now()));
  conn.Command({"ZADD", notifier::keys::kDead, day0_ms, "n-day0|hook"});
  ASSERT_EQ(notifier_store.UnreadCount(user), 2u);

  // Day 89: nothing has expired, nothing is forgotten.
  notifier_clock.Advance(89 * day);
  auto swept = notifier.SweepExpired("replica-a", 1, always);
  ASSERT_TRUE(swept.has_value());
  EXPECT_EQ(*swept, 0u);
  EXPECT_EQ(notifier_store.UnreadCount(user), 2u);

  // Day 91: a new notification; the sweep forgets day 0's ids everywhere.
  notifier_clock.Advance(2 * day);
  notifier.OnEvents({task_created()});
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the 1 ms lease above has lapsed
  swept = notifier.SweepExpired("replica-a", 60000, always);
  ASSERT_TRUE(swept.has_value());
  EXPECT_EQ(*swept, 3u + 3u + 1u) << "the inbox's ids, the webhook's deliveries, the dead letter";
  EXPECT_EQ(notifier_store.UnreadCount(user), 1u);
  auto left = notifier_store.InboxOf(user, 10, false).notifications;
  ASSERT_EQ(left.size(), 1u);
  for (const auto& old : day0) EXPECT_NE(left[0].id(), old.id());
  EXPECT_EQ(notifier_store.InboxOf(user, 10, true).notifications.size(), 1u);
  EXPECT_EQ(count({"ZCARD", notifier::keys::Inbox(user)}), 1);
  EXPECT_EQ(count({"SCARD", notifier::keys::Unread(user)}), 1);
  EXPECT_EQ(count({"ZCARD", notifier::keys::DeliveriesOf(hook.id())}), 1);
  EXPECT_EQ(count({"ZCARD", notifier::keys::kDead}), 0);
  // The day's sweep was replica-a's: another replica does not repeat it.
  EXPECT_FALSE(notifier.SweepExpired("replica-b", 60000, always).has_value());
}

// A user who reads little holds thousands unread (a role's escalations
// over 90 days). The unread page is the newest unread ones, newest first,
// found without reading every unread notification.
TEST_F(BatchTest, TheUnreadPageOfAUserWithThousandsUnreadIsTheNewestOnes) {
  notifier::Store notifier_store(pool_.get(), 1000);
  const std::string user = "pembaca-lambat";
  constexpr int kNotifications = 3000;
  const int64_t t0 = UnixMillis(clock_.Now());
  for (int i = 0; i < kNotifications; i += 500) {
    RedisBatch b;
    for (int j = i; j < i + 500; ++j) {
      v1::Notification n;
      n.set_id("n-" + std::to_string(j));
      n.add_users(user);
      n.set_title(std::string(600, 'x'));
      *n.mutable_time() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(t0 + j);
      notifier_store.Record(b, n, {}, {}, t0 + j / 10, false);  // ten in each millisecond
    }
    ASSERT_EQ(notifier_store.Commit(b), 0);
  }
  // The newest five are read; the page is the twenty unread after them.
  notifier_store.MarkRead(user, {"n-2999", "n-2998", "n-2997", "n-2996", "n-2995"});
  ASSERT_EQ(notifier_store.UnreadCount(user), static_cast<size_t>(kNotifications - 5));
  const int64_t gets_before = CommandCalls("get");
  auto page = notifier_store.InboxOf(user, 20, true).notifications;
  EXPECT_EQ(CommandCalls("get") - gets_before, 20) << "read every unread notification for a page of twenty";
  ASSERT_EQ(page.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(page[i].id(), "n-" + std::to_string(2994 - i));
    EXPECT_FALSE(page[i].read());
  }
  // Page after page, each notification once and in order, to the end.
  auto page_through = [&](bool unread_only, size_t page_size) {
    std::vector<std::string> ids;
    std::optional<Ranked> after;
    for (int pages = 0; pages < 1000; ++pages) {
      auto got = notifier_store.InboxOf(user, page_size, unread_only, after);
      for (const auto& n : got.notifications) ids.push_back(n.id());
      if (!got.last) break;
      after = got.last;
    }
    return ids;
  };
  auto newest_first = [&](int from) {
    std::vector<std::string> ids;
    for (int j = from; j >= 0; --j) ids.push_back("n-" + std::to_string(j));
    return ids;
  };
  EXPECT_EQ(page_through(true, 100), newest_first(2994));
  EXPECT_EQ(page_through(false, 7), newest_first(2999));
  // Few unread, far back behind read ones: still found, in order.
  std::vector<std::string> read_all_but_three;
  for (int j = 0; j < kNotifications; ++j)
    if (j != 7 && j != 11 && j != 1500) read_all_but_three.push_back("n-" + std::to_string(j));
  notifier_store.MarkRead(user, read_all_but_three);
  page = notifier_store.InboxOf(user, 20, true).notifications;
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].id(), "n-1500");
  EXPECT_EQ(page[1].id(), "n-11");
  EXPECT_EQ(page[2].id(), "n-7");
  // The whole inbox page still marks which are read.
  auto all = notifier_store.InboxOf(user, 5, false).notifications;
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].id(), "n-2999");
  EXPECT_TRUE(all[0].read());
}

TEST_F(BatchTest, NotifierTimersOfATaskDoneFireAsNoOpsWhateverOrderItsEventsCameIn) {
  // Two replicas share the notifier's consumer: one may still be recording
  // task.created when the other has recorded task.completed, so the
  // creation sets timers for a task already done. When they fire, the
  // router says it is done: no reminder, no escalation, and the timers go.
  v1::Run run = StartRun();
  const v1::Task task = TasksOf(run).at(0);  // "15 menit"
  engine_->Claim(UserOf(kSekretarisBlg), task.id());
  engine_->Complete(UserOf(kSekretarisBlg), task.id(), "", v1::TaskOutput());
  auto outbox = Outbox();

  notifier::Store notifier_store(pool_.get(), 1000);
  auto composer = Composer();
  ManualClock notifier_clock(clock_.Now());
  notifier::Engine notifier(&notifier_store, &notifier_clock, composer, RouterTasks(), notifier::Options());
  notifier.OnEvents({outbox.at(task.id() + "/completed")});
  notifier.OnEvents({outbox.at(task.id() + "/created")});
  notifier.OnEvents({outbox.at(task.id() + "/claimed")});    // records nothing: the router says whom at fire time
  notifier.OnEvents({outbox.at(task.id() + "/completed")});  // redelivered: removes the timers again
  EXPECT_EQ(TimersOf(task.id()), 0);
  notifier.OnEvents({outbox.at(task.id() + "/created")});    // redelivered: the assignment is not recorded twice...
  EXPECT_EQ(TimersOf(task.id()), 0) << "...and neither are its timers";

  // The creation first, then the completion handled by a slower replica
  // only after the timers are due: they fire, ask, and go quietly.
  const v1::Task other = TasksOf(StartRun()).at(0);
  engine_->Complete(UserOf(kSekretarisBlg), other.id(), "", v1::TaskOutput());
  notifier.OnEvents({Outbox().at(other.id() + "/created")});
  EXPECT_EQ(TimersOf(other.id()), 2);
  task_lookups_ = 0;
  const double closed_before = Metrics::Global().CounterValue("sopflow_timer_checks_total", "result=\"closed\"");
  notifier_clock.Advance(std::chrono::hours(2));  // past its reminder and due time
  EXPECT_EQ(notifier.FireDueTimers(), 0u);
  EXPECT_EQ(task_lookups_, 2) << "each timer asked the router once";
  EXPECT_EQ(Metrics::Global().CounterValue("sopflow_timer_checks_total", "result=\"closed\""), closed_before + 2);
  EXPECT_EQ(TimersOf(other.id()), 0);
  EXPECT_EQ(notifier.FireDueTimers(), 0u);
  EXPECT_EQ(task_lookups_, 2);

  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  Reply log = conn.Command({"XRANGE", notifier::keys::kLog, "-", "+"});  // a repeat would show here twice
  int assigned = 0;
  for (const auto& entry : notifier::ParseLogEntries(log.get()))
    if (entry.notification && entry.notification->kind() == v1::Notification::TASK_ASSIGNED &&
        entry.notification->task_id() == task.id())
      ++assigned;
  EXPECT_EQ(assigned, 1);
  // No marker key per event (the notification's item marks it), and no
  // copy of the tasks: the router's is the only one.
  EXPECT_TRUE(ReplyStrings(conn.Command({"KEYS", "sf:n:done:*"}).get()).empty());
  EXPECT_TRUE(ReplyStrings(conn.Command({"KEYS", "sf:n:task:*"}).get()).empty());
  EXPECT_TRUE(InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::TASK_REMINDER).empty());
  EXPECT_TRUE(InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::TASK_OVERDUE).empty());
}

TEST_F(BatchTest, NotifierRemindsWhoeverHoldsTheTaskWhenTheTimerFires) {
  // The notifier saw the task created, never its claim: the reminder still
  // goes to who claimed it, because the timer asks the router.
  v1::Run run = StartRun();
  const v1::Task task = TasksOf(run).at(0);  // "15 menit": reminded at 12
  notifier::Store notifier_store(pool_.get(), 1000);
  ManualClock notifier_clock(clock_.Now());
  notifier::Engine notifier(&notifier_store, &notifier_clock, Composer(), RouterTasks(), notifier::Options());
  notifier.OnEvents({Outbox().at(task.id() + "/created")});
  engine_->Claim(UserOf(kSekretarisBlg), task.id());

  notifier_clock.Advance(std::chrono::minutes(13));
  ASSERT_EQ(notifier.FireDueTimers(), 1u);
  auto reminders = InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::TASK_REMINDER);
  ASSERT_EQ(reminders.size(), 1u);
  EXPECT_EQ(std::vector<std::string>(reminders[0].users().begin(), reminders[0].users().end()),
            std::vector<std::string>{"sekretaris-blg"});
  EXPECT_EQ(reminders[0].task_id(), task.id());
  EXPECT_EQ(TimersOf(task.id()), 1) << "the due timer is still to come";
}

TEST_F(BatchTest, NotifierTimerWhoseRouterCannotBeAskedFiresOnceItsLeaseRunsOut) {
  // A router that does not answer is no answer: the timer is neither
  // dropped nor fired blind. It stays claimed, and fires (once, whichever
  // replica) when its lease runs out.
  v1::Run run = StartRun();
  const v1::Task task = TasksOf(run).at(0);
  notifier::Store notifier_store(pool_.get(), 1000);
  ManualClock notifier_clock(clock_.Now());
  notifier::Options options;  // timer_lease_ms: 30 s
  notifier::Engine notifier(&notifier_store, &notifier_clock, Composer(), RouterTasks(), options);
  notifier::Engine other_replica(&notifier_store, &notifier_clock, Composer(), RouterTasks(), options);
  notifier.OnEvents({Outbox().at(task.id() + "/created")});

  notifier_clock.Advance(std::chrono::minutes(13));  // past the reminder, before the due time
  router_down_ = true;
  const std::string unanswered = "result=\"unanswered\"", open = "result=\"open\"";
  const double unanswered_before = Metrics::Global().CounterValue("sopflow_timer_checks_total", unanswered);
  const double open_before = Metrics::Global().CounterValue("sopflow_timer_checks_total", open);
  EXPECT_THROW(notifier.FireDueTimers(), DomainError);
  EXPECT_EQ(Metrics::Global().CounterValue("sopflow_timer_checks_total", unanswered), unanswered_before + 1);
  EXPECT_EQ(TimersOf(task.id()), 2);
  router_down_ = false;
  notifier_clock.Advance(std::chrono::milliseconds(options.timer_lease_ms - 1000));
  EXPECT_EQ(other_replica.FireDueTimers(), 0u) << "still leased";
  EXPECT_TRUE(InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::TASK_REMINDER).empty());
  notifier_clock.Advance(std::chrono::milliseconds(2000));
  EXPECT_EQ(other_replica.FireDueTimers(), 1u);
  EXPECT_EQ(Metrics::Global().CounterValue("sopflow_timer_checks_total", open), open_before + 1);
  EXPECT_EQ(notifier.FireDueTimers(), 0u);
  EXPECT_EQ(InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::TASK_REMINDER).size(), 1u);
}

TEST_F(BatchTest, NotifierCancellationInABatchSeesTheTasksCreatedBeforeIt) {
  v1::Run run = StartRun();
  engine_->CancelRun(UserOf(kSekretarisBlg), run.id(), "salah periode");
  auto outbox = Outbox();
  const v1::Task task = TasksOf(run)[0];
  const v1::Event created = outbox.at(task.id() + "/created"), cancelled = outbox.at(run.id() + "/cancelled");

  notifier::Store notifier_store(pool_.get(), 1000);
  auto composer = Composer();
  notifier::Engine notifier(&notifier_store, &clock_, composer, RouterTasks(), notifier::Options());
  // The creation and the cancellation arrive in one fetch: the cancellation
  // must remove the timers the creation set, as it would one by one. The
  // repeat of the creation is recognised as handled and sets none again.
  notifier.OnEvents({created, cancelled, created});
  EXPECT_EQ(TimersOf(task.id()), 0);
  // The repeated creation recorded nothing again; the cancellation once.
  auto inbox = notifier_store.InboxOf("sekretaris-blg", 100, false).notifications;
  std::map<v1::Notification::Kind, int> kinds;
  for (const auto& n : inbox) ++kinds[n.kind()];
  EXPECT_EQ(kinds[v1::Notification::TASK_ASSIGNED], 1);
  EXPECT_EQ(kinds[v1::Notification::RUN_CANCELLED], 1);
}

TEST_F(BatchTest, NotifierCancellationHandledBeforeTheTasksCreationRemindsOfNothing) {
  // Two replicas share the notifier's consumer: one may handle run.cancelled
  // before the other has handled task.created of the run's open task. The
  // creation then sets timers; they fire as no-ops (the router says the
  // task is cancelled), and the audience is told of the cancellation.
  v1::Run run = StartRun();
  const v1::Task task = TasksOf(run).at(0);  // "15 menit"
  engine_->CancelRun(UserOf(kSekretarisBlg), run.id(), "salah periode");
  auto outbox = Outbox();
  const v1::Event cancelled = outbox.at(run.id() + "/cancelled");
  ASSERT_EQ(cancelled.run_cancelled().cancelled_tasks_size(), 1);
  EXPECT_EQ(cancelled.run_cancelled().cancelled_tasks(0).id(), task.id());
  EXPECT_EQ(cancelled.run_cancelled().cancelled_tasks(0).status(), v1::Task::CANCELLED);

  notifier::Store notifier_store(pool_.get(), 1000);
  ManualClock notifier_clock(clock_.Now());
  notifier::Engine notifier(&notifier_store, &notifier_clock, Composer(), RouterTasks(), notifier::Options());
  notifier.OnEvents({cancelled});
  notifier.OnEvents({outbox.at(task.id() + "/created")});
  EXPECT_EQ(TimersOf(task.id()), 2);
  notifier_clock.Advance(std::chrono::hours(2));  // past its reminder and due time
  EXPECT_EQ(notifier.FireDueTimers(), 0u);
  EXPECT_EQ(TimersOf(task.id()), 0);
  EXPECT_EQ(InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::RUN_CANCELLED).size(), 1u);
  EXPECT_TRUE(InboxKinds(notifier_store, "sekretaris-blg", v1::Notification::TASK_REMINDER).empty());
}

TEST_F(BatchTest, ConsumerFallsBackToOneByOneSoOnlyTheBadEventIsTerminated) {
  NatsClient nats(NatsOptions{backends_->nats->url(), "batch-test", true});
  PublishTestEvents(nats, "sopflow.v1.test.thing", {"e1", "e2", "poison", "e4", "e5"});

  std::vector<size_t> batch_sizes;
  std::multiset<std::string> applied;
  EventConsumer::Options options;
  options.durable = "batch-test";
  options.filter_subject = "sopflow.v1.test.>";
  EventConsumer consumer(&nats, options, EventConsumer::BatchHandler([&](const std::vector<v1::Event>& events) {
    batch_sizes.push_back(events.size());
    for (const auto& e : events)
      if (e.id() == "poison") throw DomainError(ErrorCode::kInvalidArgument, "cannot apply");
    for (const auto& e : events) applied.insert(e.id());
  }));
  size_t handled = 0;
  for (int pass = 0; pass < 50 && handled < 5; ++pass) handled += consumer.RunOnce();
  ASSERT_EQ(handled, 5u);
  // The whole batch first, then each event alone; the poison one is
  // terminated, the others acknowledged: nothing is left to deliver.
  ASSERT_GE(batch_sizes.size(), 2u);
  EXPECT_EQ(applied.count("poison"), 0u);
  for (const char* id : {"e1", "e2", "e4", "e5"}) EXPECT_EQ(applied.count(id), 1u) << id;
  EXPECT_TRUE(WaitUntil([&] { return consumer.Backlog() == 0; }, 5000));
  EXPECT_EQ(consumer.RunOnce(), 0u) << "no redelivery";
}

TEST_F(BatchTest, ConsumerAcksIgnoredSubjectsUnreadAndHandsOnTheRest) {
  NatsClient nats(NatsOptions{backends_->nats->url(), "ignore-test", true});
  PublishTestEvents(nats, "sopflow.v1.ignore.step", {"s1", "s2"});
  PublishTestEvents(nats, "sopflow.v1.ignore.task", {"t1"});
  PublishTestEvents(nats, "sopflow.v1.ignore.task", {"t2"});

  std::multiset<std::string> applied;
  EventConsumer::Options options;
  options.durable = "ignore-test";
  options.filter_subject = "sopflow.v1.ignore.>";
  options.ignored_subjects = {"sopflow.v1.ignore.step"};
  EventConsumer consumer(&nats, options, EventConsumer::BatchHandler([&](const std::vector<v1::Event>& events) {
    for (const auto& e : events) applied.insert(e.id());
  }));
  size_t fetched = 0;
  for (int pass = 0; pass < 50 && fetched < 4; ++pass) fetched += consumer.RunOnce();
  ASSERT_EQ(fetched, 4u);
  EXPECT_EQ(applied, (std::multiset<std::string>{"t1", "t2"}));
  // The ignored ones were acknowledged (their acks buffered): none comes back.
  EXPECT_TRUE(WaitUntil([&] { return consumer.Backlog() == 0; }, 5000));
  EXPECT_EQ(consumer.RunOnce(), 0u) << "no redelivery";
}

// nats-server 2.9 counts a filtered consumer's pending messages by reading
// the stream at each pull request (most of its CPU at saturation), so a
// consumer of the whole stream is made without a filter. A durable made by
// an earlier version, with the filter, loses it and keeps its position:
// nothing it acknowledged comes again, nothing new is skipped. A narrower
// filter is kept.
TEST_F(BatchTest, AConsumerOfTheWholeStreamHasNoFilterAndAnEarlierOneKeepsItsPosition) {
  NatsClient nats(NatsOptions{backends_->nats->url(), "filter-test", true});
  auto filter_of = [&](const std::string& durable) {
    jsConsumerInfo* ci = nullptr;
    EXPECT_EQ(js_GetConsumerInfo(&ci, nats.jetstream(), kEventStream, durable.c_str(), nullptr, nullptr), NATS_OK);
    std::string filter = ci && ci->Config->FilterSubject ? ci->Config->FilterSubject : "";
    if (ci) jsConsumerInfo_Destroy(ci);
    return filter;
  };
  PublishTestEvents(nats, "sopflow.v1.test.old", {"a1", "a2"});
  {  // as the earlier version made and used it
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = kEventStream;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.FilterSubject = kEventSubjects;
    natsSubscription* sub = nullptr;
    ASSERT_EQ(js_PullSubscribe(&sub, nats.jetstream(), kEventSubjects, "upgraded", nullptr, &so, nullptr), NATS_OK);
    natsMsgList list{};
    ASSERT_EQ(natsSubscription_Fetch(&list, sub, 2, 5000, nullptr), NATS_OK);
    ASSERT_EQ(list.Count, 2);
    for (int i = 0; i < list.Count; ++i) EXPECT_EQ(natsMsg_AckSync(list.Msgs[i], nullptr, nullptr), NATS_OK);
    natsMsgList_Destroy(&list);
    natsSubscription_Destroy(sub);
  }
  ASSERT_EQ(filter_of("upgraded"), kEventSubjects);
  PublishTestEvents(nats, "sopflow.v1.test.new", {"b1"});

  std::multiset<std::string> applied;
  EventConsumer::Options options;
  options.durable = "upgraded";
  options.filter_subject = kEventSubjects;
  EventConsumer consumer(&nats, options, EventConsumer::BatchHandler([&](const std::vector<v1::Event>& events) {
    for (const auto& e : events) applied.insert(e.id());
  }));
  EXPECT_EQ(filter_of("upgraded"), "");
  size_t fetched = 0;
  for (int pass = 0; pass < 50 && fetched < 1; ++pass) fetched += consumer.RunOnce();
  EXPECT_EQ(applied, (std::multiset<std::string>{"b1"}));
  EXPECT_TRUE(WaitUntil([&] { return consumer.Backlog() == 0; }, 5000));
  EXPECT_EQ(consumer.RunOnce(), 0u) << "no redelivery";

  EventConsumer::Options narrow;
  narrow.durable = "narrow";
  narrow.filter_subject = "sopflow.v1.test.new";
  EventConsumer narrow_consumer(&nats, narrow, EventConsumer::BatchHandler([](const std::vector<v1::Event>&) {}));
  EXPECT_EQ(filter_of("narrow"), "sopflow.v1.test.new");
}

// A batch that queued events answers with its outbox entry, for the
// committer to publish them at once; one refused, or without events, with
// none.
TEST_F(BatchTest, AnAppliedBatchGivesItsOutboxEntry) {
  auto emitting = [](const std::string& id) {
    RedisBatch b;
    b.ExpectAbsent("t:" + id);
    b.Write({"SET", "t:" + id, "1"});
    v1::Event e;
    e.set_id(id);
    e.set_type("sopflow.v1.test.entry");
    b.Emit(e);
    return b;
  };
  RedisBatch first = emitting("e1"), again = emitting("e1"), quiet;
  quiet.Write({"SET", "t:quiet", "1"});
  std::vector<std::string> entries;
  EXPECT_EQ(CommitAll(*pool_, {&first, &again, &quiet}, &entries), (std::vector<int>{0, 1, 0}));
  ASSERT_EQ(entries.size(), 3u);
  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  Reply r = conn.Command({"XRANGE", "sf:outbox", "-", "+"});
  ASSERT_EQ(r->elements, 1u);
  EXPECT_EQ(entries[0], ReplyString(r->element[0]->element[0]).value_or("?"));
  EXPECT_EQ(entries[1], "") << "refused: no entry";
  EXPECT_EQ(entries[2], "") << "no events: no entry";
  ASSERT_EQ(first.Emitted().size(), 1u);
  EXPECT_EQ(first.Emitted()[0].id, "e1");
  EXPECT_EQ(first.Emitted()[0].subject, "sopflow.v1.test.entry");
  RedisBatch elsewhere = emitting("e2");
  v1::Event e;
  e.set_id("e3");
  EXPECT_THROW(elsewhere.Emit(e, "sf:other"), std::logic_error) << "one outbox per batch";
}

// The committer publishes its events at once: they reach the stream with
// no pass of the relay and no Redis read (few events on the send-asap
// sibling connection, many on the buffered one); the relay's pass then
// deletes the entries, once the stream stored all of each.
TEST_F(BatchTest, CommittersPublishAtOnceAndTheRelayDeletesWhatWasStored) {
  OutboxRelay::Options options;
  options.prompt_batch_max = 4;
  options.orphan_after_ms = 60000;  // no sweep publishes in this test
  RelayRig rig = Relay("relay-test", options);
  OutboxRelay& relay = *rig.relay;
  std::multiset<std::string> expected;
  auto transition = [&expected](const std::string& prefix, int n) {
    return NumberedTransition("sopflow.v1.test.relay", prefix, n, expected);
  };
  std::multiset<std::string> stored;
  auto consumer = CollectingConsumer(*rig.nats, "relay-test", "sopflow.v1.test.relay", stored);
  const int64_t reads_before = CommandCalls("xreadgroup") + CommandCalls("xrange");
  auto small = transition("small-", 3);
  EXPECT_EQ(CommitAndPublish(*pool_, {small.get()}, &relay), (std::vector<int>{0}));
  std::vector<std::unique_ptr<RedisBatch>> group;
  for (int t = 0; t < 4; ++t) group.push_back(transition("large-" + std::to_string(t) + "-", 5));
  EXPECT_EQ(CommitAndPublish(*pool_, {group[0].get(), group[1].get(), group[2].get(), group[3].get()}, &relay),
            (std::vector<int>{0, 0, 0, 0}));
  for (int pass = 0; pass < 50 && stored.size() < 23; ++pass) consumer->RunOnce();
  ASSERT_EQ(expected.size(), 23u);
  EXPECT_EQ(stored, expected) << "each once, before any pass of the relay";
  EXPECT_EQ(CommandCalls("xreadgroup") + CommandCalls("xrange"), reads_before) << "nothing read from the outbox";
  EXPECT_EQ(OutboxIds().size(), 23u) << "entries wait for the relay's pass";

  EXPECT_TRUE(WaitUntil([&] { relay.RunOnce(); return OutboxIds().empty(); }, 5000)) << "the pass deletes them";
  EXPECT_EQ(relay.RunOnce(), 0u) << "nothing left for a sweep";
  consumer->RunOnce();
  EXPECT_EQ(stored, expected) << "nothing published twice";
}

// The relay's thread deletes stored entries by the batch: woken when
// delete_batch of them wait, not once per hand-off (the rest wait for the
// next sweep, here a minute away).
TEST_F(BatchTest, TheRelayDeletesStoredEntriesByTheBatch) {
  OutboxRelay::Options options;
  options.delete_batch = 3;
  options.sweep_interval_ms = 60000;
  RelayRig rig = Relay("delete-test", options);
  const int64_t sweeps = CommandCalls("xrange");
  rig.relay->Start();
  // Its first pass (a delete, then a sweep) is over before the commits:
  // one that came after the first ack would delete that entry alone, and
  // the third stored entry would then be the fourth (seen under ASan).
  ASSERT_TRUE(WaitUntil([&] { return CommandCalls("xrange") > sweeps; }, 30000)) << "the relay's first sweep";
  const int64_t xdels = CommandCalls("xdel");
  for (int i = 0; i < 3; ++i) {
    auto b = Transition("sopflow.v1.test.delete", {{"d-" + std::to_string(i), 0}});
    ASSERT_EQ(CommitAndPublish(*pool_, {b.get()}, rig.relay.get()), (std::vector<int>{0}));
  }
  EXPECT_TRUE(WaitUntil([&] { return OutboxIds().empty(); }, 5000)) << "the third stored entry wakes the relay";
  EXPECT_EQ(CommandCalls("xdel") - xdels, 1) << "one XDEL for the three";
  auto b = Transition("sopflow.v1.test.delete", {{"d-3", 0}});
  ASSERT_EQ(CommitAndPublish(*pool_, {b.get()}, rig.relay.get()), (std::vector<int>{0}));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(OutboxIds(), std::vector<std::string>{"d-3"}) << "one alone waits for the batch or the sweep";
  rig.relay->Drain();
  EXPECT_TRUE(OutboxIds().empty()) << "Drain waits for the acks and deletes what is stored";
}

// Every thread of `pid` is stopped (SIGSTOP has taken effect).
bool AllThreadsStopped(pid_t pid) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');  // the state follows the command name, which may hold spaces
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') return false;
    ++threads;
  }
  return threads > 0;
}

// An ack that does not come in time (nats-server paused) leaves the entry
// to the sweep; the late ack changes nothing, and the stream drops the
// sweep's second copy.
TEST_F(BatchTest, AnEntryWhoseAckIsOverdueIsLeftToTheSweep) {
  OutboxRelay::Options options = SweepingEveryPass(0);
  options.ack_wait_ms = 300;
  RelayRig rig = Relay("overdue-test", options);
  std::multiset<std::string> stored;
  auto consumer = CollectingConsumer(*rig.nats, "overdue-test", "sopflow.v1.test.overdue", stored);
  const pid_t nats_pid = backends_->nats->pid();
  ASSERT_EQ(kill(nats_pid, SIGSTOP), 0);
  // kill() returns before every thread has stopped: a nats-server still
  // running for a moment acked the publish below (once in a CI run).
  ASSERT_TRUE(WaitUntil([&] { return AllThreadsStopped(nats_pid); }, 5000));
  std::shared_ptr<void> resume(nullptr, [nats_pid](void*) { kill(nats_pid, SIGCONT); });
  auto b = Transition("sopflow.v1.test.overdue", {{"late-0", 0}});
  ASSERT_EQ(CommitAndPublish(*pool_, {b.get()}, rig.relay.get()), (std::vector<int>{0}));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(rig.relay->RunOnce(), 1u) << "overdue: the sweep publishes it again";
  resume.reset();
  EXPECT_TRUE(WaitUntil([&] { rig.relay->RunOnce(); return OutboxIds().empty(); }, 10000));
  for (int pass = 0; pass < 20 && stored.empty(); ++pass) consumer->RunOnce();
  consumer->RunOnce();
  EXPECT_EQ(stored, std::multiset<std::string>{"late-0"}) << "stored once";
}

// Events written to a nats-server that is killed before it stores them are
// never acked. Once the relay's connections are back, it sends again what
// they still await: the events are stored (each once) and their entries
// deleted long before their acks would count as overdue or a sweep would
// find them, and a drain then has no ack left to wait for. A relay that
// has sent nothing yet on a connection passes a reconnect by (nats.c 3.4
// crashed when asked what such a connection awaits).
TEST_F(BatchTest, WhatALostServerNeverAckedIsSentAgainOnceNatsIsBack) {
  OutboxRelay::Options options;
  options.prompt_batch_max = 2;
  options.ack_wait_ms = 120000;  // no ack counts as overdue in this test,
  options.orphan_after_ms = 120000;  // and no sweep publishes
  RelayRig rig = Relay("reconnect-test", options);
  OutboxRelay& relay = *rig.relay;
  std::multiset<std::string> stored;
  auto consumer = CollectingConsumer(*rig.nats, "reconnect-test", "sopflow.v1.test.reconnect", stored);
  std::atomic<int> reconnects{0};
  const int listener = rig.nats->AddReconnectListener([&] { ++reconnects; });
  std::shared_ptr<void> unlisten(nullptr, [&](void*) { rig.nats->RemoveReconnectListener(listener); });
  backends_->nats->KillAndRestart();
  ASSERT_TRUE(WaitUntil([&] { return reconnects > 0; }, 20000));
  EXPECT_EQ(relay.RunOnce(), 0u) << "nothing sent, nothing to send again";

  const pid_t nats_pid = backends_->nats->pid();
  ASSERT_EQ(kill(nats_pid, SIGSTOP), 0);
  ASSERT_TRUE(WaitUntil([&] { return AllThreadsStopped(nats_pid); }, 5000));
  // Two events on the send-asap connection, ten on the buffered one.
  std::multiset<std::string> expected;
  auto few = NumberedTransition("sopflow.v1.test.reconnect", "few-", 2, expected);
  ASSERT_EQ(CommitAndPublish(*pool_, {few.get()}, &relay), (std::vector<int>{0}));
  auto many_0 = NumberedTransition("sopflow.v1.test.reconnect", "many-0-", 5, expected);
  auto many_1 = NumberedTransition("sopflow.v1.test.reconnect", "many-1-", 5, expected);
  ASSERT_EQ(CommitAndPublish(*pool_, {many_0.get(), many_1.get()}, &relay), (std::vector<int>{0, 0}));
  relay.RunOnce();
  ASSERT_EQ(OutboxIds().size(), 12u) << "nothing acked by a stopped server";
  backends_->nats->KillAndRestart();  // what it was sent dies with it

  EXPECT_TRUE(WaitUntil([&] { relay.RunOnce(); return OutboxIds().empty(); }, 30000))
      << "sent again, stored and deleted within the test, not after ack_wait_ms (" << options.ack_wait_ms << " ms)";
  for (int pass = 0; pass < 50 && stored.size() < expected.size(); ++pass) consumer->RunOnce();
  consumer->RunOnce();
  EXPECT_EQ(stored, expected) << "each stored once";
  const auto drain_began = std::chrono::steady_clock::now();
  relay.Drain();
  EXPECT_LT(std::chrono::steady_clock::now() - drain_began, std::chrono::milliseconds(options.ack_wait_ms / 2))
      << "no ack left awaited";
}

// What a committer left behind (it died between commit and publish) is
// published by a sweep once it is old enough, and not before: a young
// entry may be its committer's, about to be published.
TEST_F(BatchTest, ASweepPublishesEntriesLeftBehindOnceOldEnough) {
  RelayRig rig = Relay("sweep-test", SweepingEveryPass(1500));
  OutboxRelay& relay = *rig.relay;
  QueueTransition("sopflow.v1.test.sweep", {{"left-0", 0}, {"left-1", 0}});  // committed, never published
  const auto queued = std::chrono::steady_clock::now();
  EXPECT_EQ(relay.RunOnce(), 0u) << "too young";
  size_t published = 0;
  for (int pass = 0; pass < 300 && published == 0; ++pass) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    published += relay.RunOnce();
  }
  EXPECT_EQ(published, 2u);
  EXPECT_GE(std::chrono::steady_clock::now() - queued, std::chrono::milliseconds(1400)) << "not before its age";
  EXPECT_TRUE(WaitUntil([&] { relay.RunOnce(); return OutboxIds().empty(); }, 5000));
  std::multiset<std::string> stored;
  auto consumer = CollectingConsumer(*rig.nats, "sweep-test", "sopflow.v1.test.sweep", stored);
  for (int pass = 0; pass < 50 && stored.size() < 2; ++pass) consumer->RunOnce();
  EXPECT_EQ(stored, (std::multiset<std::string>{"left-0", "left-1"}));
}

// An event the stream refuses (here larger than the server's max_payload)
// keeps its entry, whole, in the outbox, to be swept again after a pause;
// what is committed after it is published and deleted meanwhile.
TEST_F(BatchTest, RelayKeepsPublishingPastAnEventTheStreamRefuses) {
  RelayRig rig = Relay("refused-test", SweepingEveryPass(0));
  OutboxRelay& relay = *rig.relay;
  auto commit = [&](const std::vector<std::pair<std::string, size_t>>& events) {
    auto b = Transition("sopflow.v1.test.refused", events);
    ASSERT_EQ(CommitAndPublish(*pool_, {b.get()}, &relay), (std::vector<int>{0}));
  };
  // The entry's first event is stored; the entry stays for its second.
  commit({{"beside-too-big", 10}, {"too-big", 1200000}});
  for (int i = 0; i < 5; ++i) commit({{"after-" + std::to_string(i), 10}});
  EXPECT_TRUE(WaitUntil([&] { relay.RunOnce(); return OutboxIds().size() <= 2; }, 5000));
  for (int pass = 0; pass < 5; ++pass) relay.RunOnce();  // sweeps meet it again, each later
  EXPECT_EQ(OutboxIds(), (std::vector<std::string>{"beside-too-big", "too-big"}))
      << "the entry with the refused event waits in the outbox, whole";

  std::multiset<std::string> stored;
  auto consumer = CollectingConsumer(*rig.nats, "refused-test", "sopflow.v1.test.refused", stored);
  for (int pass = 0; pass < 50 && stored.size() < 6; ++pass) consumer->RunOnce();
  std::multiset<std::string> expected{"beside-too-big"};
  for (int i = 0; i < 5; ++i) expected.insert("after-" + std::to_string(i));
  EXPECT_EQ(stored, expected) << "each stored once, however often its entry was published";
}

TEST_F(BatchTest, ConsumerAcknowledgesWhatItHandledBeforeStopReturns) {
  // Acks of a batch go through a buffered connection, one write for all of
  // them; Stop must not return before the server has them.
  NatsClient nats(NatsOptions{backends_->nats->url(), "ack-test", true});
  std::vector<std::string> ids;
  for (int i = 1; i <= 20; ++i) ids.push_back("a" + std::to_string(i));
  PublishTestEvents(nats, "sopflow.v1.test.ack", ids);

  std::multiset<std::string> applied;
  auto owned = CollectingConsumer(nats, "ack-test", "sopflow.v1.test.ack", applied);
  EventConsumer& consumer = *owned;
  size_t handled = 0;
  for (int pass = 0; pass < 50 && handled < 20; ++pass) handled += consumer.RunOnce();
  ASSERT_EQ(handled, 20u);
  consumer.Stop();
  EXPECT_EQ(consumer.Backlog(), 0) << "every ack reached the server";
  EXPECT_EQ(applied.size(), 20u);
  EXPECT_EQ(consumer.RunOnce(), 0u) << "nothing comes back";
}

// The names of this process's threads (/proc/self/task/*/comm).
std::multiset<std::string> ThreadNames() {
  std::multiset<std::string> names;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "comm");
    std::string name;
    if (std::getline(in, name)) names.insert(name);
  }
  return names;
}

// A profile or `top -H` tells the service's threads apart by name.
TEST_F(BatchTest, ConsumerAndRelayThreadsCarryTheirNames) {
  NatsClient nats(NatsOptions{backends_->nats->url(), "names-test", true});
  nats.EnsureEventStream();
  EXPECT_EQ(ThreadNames().count("sf-consumer"), 0u);
  EventConsumer::Options consumer_options;
  consumer_options.durable = "names-test";
  consumer_options.filter_subject = "sopflow.v1.test.names";
  EventConsumer consumer(&nats, consumer_options, EventConsumer::BatchHandler([](const std::vector<v1::Event>&) {}));
  OutboxRelay relay(RedisAddress::Parse(backends_->redis->address()), &nats, OutboxRelay::Options());
  consumer.Start();
  relay.Start();
  EXPECT_TRUE(WaitUntil([] { return ThreadNames().count("sf-consumer") == 1 && ThreadNames().count("sf-relay") == 1; },
                        5000));
  consumer.Stop();
  relay.Stop();
  EXPECT_EQ(ThreadNames().count("sf-consumer") + ThreadNames().count("sf-relay"), 0u);
}

// The code of the error a call of a group ended with (CompleteCall,
// StartCall); nullopt if it succeeded.
template <class Call>
std::optional<ErrorCode> CodeOf(const Call& call) {
  if (!call.error) return std::nullopt;
  try {
    std::rethrow_exception(call.error);
  } catch (const DomainError& e) {
    return e.code();
  } catch (...) {
    return ErrorCode::kInternal;
  }
}


TEST_F(BatchTest, CompletionsOfAGroupAreReadTogetherCommittedOnceAndEachEndsAsAloneItWould) {
  v1::Run a = StartRun(), b = StartRun(), c = StartRun();
  const std::string task_a = TasksOf(a).at(0).id(), task_b = TasksOf(b).at(0).id(), task_c = TasksOf(c).at(0).id();
  auto call = [&](const char* token, const std::string& task_id, const std::string& outcome = "") {
    Engine::CompleteCall call;
    call.user = UserOf(token);
    call.task_id = task_id;
    call.outcome = outcome;
    call.output.set_note("laporan");
    return call;
  };
  auto another_output = [](Engine::CompleteCall call) {
    call.output.set_note("laporan lain");
    return call;
  };
  std::vector<Engine::CompleteCall> calls{
      call(kSekretarisBlg, task_a),
      call(kSekretarisBlg, task_b),
      another_output(call(kSekretarisBlg, task_a)),  // the same task, another completion: the first won
      call(kOutsider, task_c),               // not theirs
      call(kSekretarisBlg, "no-such.1"),     // unknown
      call(kSekretarisBlg, task_c, "bogus"), // not a review: no such outcome
      call(kSekretarisBlg, ""),              // no id
      call(kSekretarisBlg, task_b),          // the same completion sent again: answered as the first
  };
  int64_t commits_before = CommandCalls("exec");
  engine_->CompleteAll(calls);
  EXPECT_EQ(CommandCalls("exec") - commits_before, 1) << "one commit for the group";

  ASSERT_TRUE(calls[0].task.has_value());
  EXPECT_EQ(calls[0].task->status(), v1::Task::DONE);
  EXPECT_EQ(calls[0].task->output().note(), "laporan");
  ASSERT_TRUE(calls[1].task.has_value());
  EXPECT_EQ(CodeOf(calls[2]), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(CodeOf(calls[3]), ErrorCode::kPermissionDenied);
  EXPECT_EQ(CodeOf(calls[4]), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(calls[5]), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(calls[6]), ErrorCode::kInvalidArgument);
  for (size_t i = 2; i < 7; ++i) EXPECT_FALSE(calls[i].task.has_value()) << i;
  ASSERT_TRUE(calls[7].task.has_value()) << (calls[7].error ? "an error" : "nothing");
  EXPECT_EQ(calls[7].task->SerializeAsString(), calls[1].task->SerializeAsString());

  // What was stored and queued is what two Complete calls leave.
  EXPECT_EQ(store_->GetTask(task_a)->status(), v1::Task::DONE);
  EXPECT_EQ(store_->GetTask(task_b)->status(), v1::Task::DONE);
  EXPECT_EQ(store_->GetTask(task_c)->status(), v1::Task::OPEN);
  auto outbox = Outbox();
  EXPECT_EQ(outbox.count(a.id() + "/1/step_completed"), 1u);
  EXPECT_EQ(outbox.count(b.id() + "/1/step_completed"), 1u);
  EXPECT_EQ(outbox.count(c.id() + "/1/step_completed"), 0u);
  EXPECT_EQ(outbox.count(task_a + "/completed"), 1u);
  // Each completed step's next task was created in the group's commit.
  EXPECT_EQ(TasksOf(a).size(), 2u);
  EXPECT_EQ(TasksOf(b).size(), 2u);
  EXPECT_EQ(TasksOf(c).size(), 1u);
  EXPECT_EQ(outbox.count(a.id() + ".2/created"), 1u);
  EXPECT_EQ(outbox.count(c.id() + ".2/created"), 0u);
}

TEST_F(BatchTest, CompletionGroupsFinishEveryCallOnceWhateverThreadCommitsIt) {
  constexpr int kRuns = 24;
  std::vector<v1::Run> runs;
  for (int i = 0; i < kRuns; ++i) runs.push_back(StartRun());

  CompletionGroups groups(engine_.get(), 5);  // small groups: several per burst
  std::mutex mu;
  std::map<std::string, int> finished;  // task id -> times done ran
  std::vector<std::thread> callers;
  for (int i = 0; i < kRuns; ++i)
    callers.emplace_back([&, i] {
      Engine::CompleteCall call;
      call.user = UserOf(kSekretarisBlg);
      call.task_id = TasksOf(runs[i]).at(0).id();
      groups.Submit(std::move(call), [&](Engine::CompleteCall& done) {
        std::lock_guard lock(mu);
        EXPECT_TRUE(done.task.has_value()) << done.task_id;
        ++finished[done.task_id];
      });
    });
  for (auto& t : callers) t.join();
  // Submit returns before its call is done only if another thread is
  // committing, which finishes it; once all have returned, all are done.
  ASSERT_EQ(finished.size(), static_cast<size_t>(kRuns));
  for (const auto& [id, times] : finished) EXPECT_EQ(times, 1) << id;
  for (const auto& r : runs) EXPECT_EQ(TasksOf(r).at(0).status(), v1::Task::DONE);
}

// A quarter-end burst of StartRun calls, committed as one group: each call
// is decided on its own (a refused one takes nothing with it), two calls
// with one request_id start one run, and the rest cost one transaction
// and one read of the SOP's latest version.
TEST_F(BatchTest, StartAllStartsEachCallOnItsOwnInOneTransaction) {
  auto call = [&](const std::string& token, v1::StartRunRequest req) {
    return Engine::StartCall{UserOf(token), std::move(req), std::nullopt, nullptr};
  };
  v1::StartRunRequest with_id = Run003Request("2026-Q1");
  with_id.set_request_id("bulk-1");
  v1::StartRunRequest unknown = Run003Request("2026-Q1");
  unknown.set_sop_id("no-such-sop");
  std::vector<Engine::StartCall> calls{call(kSekretarisBlg, with_id),   call(kSekretarisBlg, unknown),
                                       call(kSekretarisBlg, with_id),   call(kOutsider, Run003Request("2026-Q2")),
                                       call(kSekretarisBlg, Run003Request("2026-Q3"))};
  engine_->StartAll(calls);

  ASSERT_TRUE(calls[0].run.has_value());
  EXPECT_EQ(CodeOf(calls[1]), ErrorCode::kNotFound);
  ASSERT_TRUE(calls[2].run.has_value());
  EXPECT_EQ(calls[2].run->id(), calls[0].run->id()) << "one request_id, one run";
  EXPECT_EQ(CodeOf(calls[3]), ErrorCode::kPermissionDenied);
  ASSERT_TRUE(calls[4].run.has_value());
  EXPECT_NE(calls[4].run->id(), calls[0].run->id());
  for (size_t i : {1u, 3u}) EXPECT_FALSE(calls[i].run.has_value()) << i;

  // Each started run has its first task and its two events, once.
  auto outbox = Outbox();
  for (size_t i : {0u, 4u}) {
    const v1::Run& run = *calls[i].run;
    EXPECT_EQ(TasksOf(run).size(), 1u) << i;
    EXPECT_EQ(outbox.count(run.id() + "/started"), 1u) << i;
    EXPECT_EQ(outbox.count(run.id() + ".1/created"), 1u) << i;
  }
  size_t started = 0;
  for (const auto& [id, e] : outbox) started += e.type() == events::kRunStarted;
  EXPECT_EQ(started, 2u);

  // Starts with no request_id share nothing a guard reads: one transaction.
  // The SOP's latest version is read once for the group, not per call.
  int64_t exec_before = CommandCalls("exec"), hget_before = CommandCalls("hget");
  std::vector<Engine::StartCall> burst;
  for (int i = 0; i < 6; ++i) burst.push_back(call(kSekretarisBlg, Run003Request("2026-Q4")));
  engine_->StartAll(burst);
  for (const auto& c : burst) EXPECT_TRUE(c.run.has_value());
  EXPECT_EQ(CommandCalls("exec") - exec_before, 1);
  EXPECT_EQ(CommandCalls("hget") - hget_before, 1);
}

TEST_F(BatchTest, StartGroupsFinishEveryCallOnceWhateverThreadCommitsIt) {
  constexpr int kCallers = 24;
  StartGroups groups(engine_.get(), 5);  // small groups: several per burst
  std::mutex mu;
  std::map<std::string, int> finished;  // run id -> times done ran
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i)
    callers.emplace_back([&] {
      Engine::StartCall call{UserOf(kSekretarisBlg), Run003Request("2026-Q1"), std::nullopt, nullptr};
      groups.Submit(std::move(call), [&](Engine::StartCall& done) {
        std::lock_guard lock(mu);
        ASSERT_TRUE(done.run.has_value());
        ++finished[done.run->id()];
      });
    });
  for (auto& t : callers) t.join();
  ASSERT_EQ(finished.size(), static_cast<size_t>(kCallers));
  for (const auto& [id, times] : finished) EXPECT_EQ(times, 1) << id;
  for (const auto& [id, times] : finished) {
    v1::Run run;
    run.set_id(id);
    EXPECT_EQ(TasksOf(run).size(), 1u) << id;
  }
}

// A unit's users list their unit's runs, and the runs naming them as a
// fan-out member, however many runs other units started since (before,
// a non-admin's page was the province's newest 4 x page_size runs,
// filtered: empty once others had started 400). Pages follow one another
// with nothing missed or twice, through runs committed in one group (one
// millisecond for all: 400, more than one read after a cursor among them
// takes, paging.cc's kMinRead).
TEST_F(BatchTest, ListRunsGivesAUnitItsRunsAndPagesThroughEveryRunOnce) {
  engine_->DeployTrusted(ReadText(SourcePath("deploy/base/definitions/001-kalbar-biro-organisasi.yaml")),
                         "001-kalbar-biro-organisasi.yaml", "test");
  const v1::Run ours = StartRun();  // balangan-satpolpp, by its sekretaris
  v1::StartRunRequest fan_out;
  fan_out.set_sop_id(kSop001);
  fan_out.set_period("2026-Q3");
  fan_out.set_unit("kalbar-biro-organisasi");
  (*fan_out.mutable_members())["bagian"].add_members("balangan-satpolpp");
  (*fan_out.mutable_deadlines())[2] =
      google::protobuf::util::TimeUtil::MillisecondsToTimestamp(UnixMillis(clock_.Now() + std::chrono::hours(72)));
  const v1::Run naming_us = engine_->StartRun(UserOf(kKaro), fan_out);
  // Then 650 runs of other units: 400 committed in one group, 250 alone.
  std::vector<Engine::StartCall> group;
  for (int i = 0; i < 400; ++i) {
    v1::StartRunRequest req = Run003Request();
    req.set_unit("unit-lain-" + std::to_string(i % 7));
    group.push_back({UserOf(kAdmin), req, std::nullopt, nullptr});
  }
  engine_->StartAll(group);
  for (const auto& call : group) ASSERT_TRUE(call.run.has_value());
  for (int i = 0; i < 250; ++i) {
    v1::StartRunRequest req = Run003Request();
    req.set_unit("unit-lain-" + std::to_string(i % 7));
    engine_->StartRun(UserOf(kAdmin), req);
  }

  auto list = [&](const char* token, const std::string& sop, uint32_t page_size, const std::string& page_token) {
    v1::ListRunsRequest req;
    req.set_sop_id(sop);
    req.set_page_size(page_size);
    req.set_page_token(page_token);
    return engine_->ListRuns(UserOf(token), req);
  };
  // The two may share a millisecond; then the higher id comes first.
  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  auto started_ms = [&](const v1::Run& run) {
    return std::stoll(ReplyString(conn.Command({"ZSCORE", "sf:runs", run.id()}).get()).value_or("0"));
  };
  const bool naming_us_first =
      std::make_pair(started_ms(naming_us), naming_us.id()) > std::make_pair(started_ms(ours), ours.id());
  const std::string newer = naming_us_first ? naming_us.id() : ours.id();
  const std::string older = naming_us_first ? ours.id() : naming_us.id();
  auto mine = list(kSekretarisBlg, "", 100, "");
  ASSERT_EQ(mine.runs_size(), 2);
  EXPECT_EQ(mine.runs(0).id(), newer) << "newest first";
  EXPECT_EQ(mine.runs(1).id(), older);
  EXPECT_EQ(mine.next_page_token(), "");
  auto of_003 = list(kSekretarisBlg, kSop003, 100, "");
  ASSERT_EQ(of_003.runs_size(), 1);
  EXPECT_EQ(of_003.runs(0).id(), ours.id());
  // One at a time: the second page, then the end.
  auto first = list(kSekretarisBlg, "", 1, "");
  ASSERT_EQ(first.runs_size(), 1);
  ASSERT_NE(first.next_page_token(), "");
  auto second = list(kSekretarisBlg, "", 1, first.next_page_token());
  EXPECT_EQ(first.runs(0).id(), newer);
  ASSERT_EQ(second.runs_size(), 1);
  EXPECT_EQ(second.runs(0).id(), older);
  EXPECT_EQ(list(kSekretarisBlg, "", 1, second.next_page_token()).runs_size(), 0);

  // An admin pages through all 652, newest first, each once.
  const std::vector<std::string> paged =
      PageThrough([&](const std::string& token, std::vector<std::string>& ids) {
        auto got = list(kAdmin, "", 37, token);
        for (const auto& r : got.runs()) ids.push_back(r.id());
        return got.next_page_token();
      }).ids;
  std::vector<std::string> every = ReplyStrings(conn.Command({"ZRANGE", "sf:runs", "+inf", "-inf", "BYSCORE", "REV"}).get());
  ASSERT_EQ(every.size(), 652u);
  EXPECT_EQ(paged, every) << "a page missed or repeated a run";
  EXPECT_EQ(std::set<std::string>(paged.begin(), paged.end()).size(), 652u);

  // A token that is not one is refused with its field named.
  ExpectTokensRefused({"x", ":01ABC", "12:", "1a:01ABC"}, [&](const std::string& bad) { list(kAdmin, "", 10, bad); });

  // Runs from before the index (an older router's): indexed at the next
  // start, then listed for their unit again.
  for (const auto& key : ReplyStrings(conn.Command({"KEYS", "sf:runs-readable*"}).get())) conn.Command({"DEL", key});
  EXPECT_EQ(list(kSekretarisBlg, "", 100, "").runs_size(), 0);
  EXPECT_EQ(engine_->IndexReadableRuns(), 652u);
  EXPECT_EQ(list(kSekretarisBlg, "", 100, "").runs_size(), 2);
  // The next start looks only at the recent ones again: here, with
  // nothing recent, those of the newest millisecond indexed.
  auto newest = ReplyStrings(conn.Command({"ZRANGE", "sf:runs", "-1", "-1", "WITHSCORES"}).get());
  ASSERT_EQ(newest.size(), 2u);
  const int64_t at_newest = ReplyInteger(conn.Command({"ZCOUNT", "sf:runs", newest[1], newest[1]}).get());
  EXPECT_EQ(engine_->IndexReadableRuns(std::chrono::milliseconds(0)), static_cast<size_t>(at_newest));
}

// A role's queue at quarter end holds more than one page: ListInbox pages
// through it oldest first, each task once, through tasks created in one
// group (one millisecond) and a task done between pages. Tasks another
// user claimed are not listed; those the caller claimed are, in their
// place. (Before, a caller saw the oldest 1,000 and nothing after.)
TEST_F(BatchTest, ListInboxPagesThroughARolesQueueOldestFirstEachTaskOnce) {
  std::vector<Engine::StartCall> group;
  for (int i = 0; i < 150; ++i) group.push_back({UserOf(kSekretarisBlg), Run003Request(), std::nullopt, nullptr});
  engine_->StartAll(group);
  std::vector<v1::Run> runs;
  for (auto& call : group) {
    ASSERT_TRUE(call.run.has_value());
    runs.push_back(*call.run);
  }
  for (int i = 0; i < 150; ++i) runs.push_back(StartRun());
  std::vector<v1::Task> firsts;
  for (const auto& run : runs) firsts.push_back(TasksOf(run).at(0));
  const User me = UserOf(kSekretarisBlg);
  const User colleague{"sekretaris-2", "", me.unit, {"sekretaris"}};
  for (int i = 0; i < 5; ++i) engine_->Claim(me, firsts[40 * i + 3].id());
  std::set<std::string> theirs;
  for (int i = 0; i < 5; ++i) theirs.insert(engine_->Claim(colleague, firsts[40 * i + 7].id()).id());

  auto page = [&](uint32_t size, const std::string& token) {
    v1::ListInboxRequest req;
    req.set_page_size(size);
    req.set_page_token(token);
    return engine_->Inbox(me, req);
  };
  auto expected = [&] {  // open or mine, by creation then id
    std::vector<std::pair<int64_t, std::string>> order;
    for (const auto& t : store_->GetTasks([&] {
           std::vector<std::string> ids;
           for (const auto& f : firsts) ids.push_back(f.id());
           return ids;
         }()))
      if (t.status() == v1::Task::OPEN || (t.status() == v1::Task::CLAIMED && t.assignee() == me.id))
        order.emplace_back(google::protobuf::util::TimeUtil::TimestampToMilliseconds(t.created_at()), t.id());
    std::sort(order.begin(), order.end());
    std::vector<std::string> ids;
    for (auto& [ms, id] : order) ids.push_back(id);
    return ids;
  };
  const auto before = expected();
  ASSERT_EQ(before.size(), 295u);

  auto paged = PageThrough([&](const std::string& token, std::vector<std::string>& ids) {
    const bool first_page = ids.empty();
    auto got = page(37, token);
    for (const auto& t : got.tasks()) {
      ids.push_back(t.id());
      EXPECT_EQ(theirs.count(t.id()), 0u) << t.id() << " was claimed by another";
    }
    if (first_page) {  // the newest task is done before its page comes
      EXPECT_EQ(got.tasks_size(), 37);
      engine_->Complete(me, before.back(), "", {});
    }
    return got.next_page_token();
  });
  EXPECT_EQ(paged.pages, 8);  // 294 in pages of 37: 7 full, an 8th of 35
  auto after = expected();
  ASSERT_EQ(after.size(), 294u);
  EXPECT_EQ(paged.ids, after) << "a page missed, repeated or misordered a task";
  auto all = page(1000, "");
  EXPECT_EQ(all.tasks_size(), 294);
  EXPECT_EQ(all.next_page_token(), "");
  EXPECT_EQ(page(0, "").tasks_size(), 100) << "page_size 0 is 100";
}

// A webhook's deliveries and dead letters page newest first, each once.
// Dead letters of a notifier from before the per-target list (which wrote
// the province's list alone) are put in it when a notifier starts.
TEST_F(BatchTest, ListDeliveriesPagesAWebhooksLogAndItsDeadLettersOlderOnesIncluded) {
  notifier::Store nstore(pool_.get(), 1000);
  v1::Webhook hook, other;
  hook.set_id("wh-paged");
  other.set_id("wh-other");
  constexpr int64_t kStart = 1790000000000;
  auto record = [&](int i, int64_t at_ms) {
    v1::Notification n;
    n.set_id("n-" + std::to_string(1000 + i));
    RedisBatch b;
    nstore.Record(b, n, {hook, other}, {}, at_ms, false);
    ASSERT_EQ(nstore.Commit(b), 0);
  };
  for (int i = 0; i < 100; ++i) record(i, kStart);  // one millisecond
  for (int i = 100; i < 250; ++i) record(i, kStart + i);
  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  // 30 of the hook's and 10 of the other's died under a notifier that
  // wrote only sf:n:dead, the newest death last.
  auto die = [&](const std::string& target, int i, int64_t at_ms) {
    const std::string id = "n-" + std::to_string(1000 + i) + "|" + target;
    auto d = nstore.Delivery(id);
    ASSERT_TRUE(d.has_value()) << id;
    d->set_status(v1::Delivery::DEAD);
    conn.Command({"HSET", notifier::keys::Delivery(id), "status", "DEAD", "pb", d->SerializeAsString()});
    conn.Command({"ZADD", notifier::keys::kDead, std::to_string(at_ms), id});
  };
  for (int i = 0; i < 30; ++i) die(hook.id(), i * 8, kStart + 5000 + i);
  for (int i = 0; i < 10; ++i) die(other.id(), i, kStart + 6000 + i);

  auto list = [&](bool dead_only, size_t size, const std::string& token) {
    return nstore.DeliveriesFor(hook.id(), dead_only, size, token);
  };
  auto page_through = [&](bool dead_only, size_t size) {
    return PageThrough([&](const std::string& token, std::vector<std::string>& ids) {
             auto got = list(dead_only, size, token);
             for (const auto& d : got.items) ids.push_back(d.id());
             return got.next_page_token;
           }).ids;
  };
  auto zset_newest_first = [&](const std::string& key) {
    return ReplyStrings(conn.Command({"ZRANGE", key, "+inf", "-inf", "BYSCORE", "REV"}).get());
  };
  const auto every = zset_newest_first(notifier::keys::DeliveriesOf(hook.id()));
  ASSERT_EQ(every.size(), 250u);
  EXPECT_EQ(page_through(false, 37), every);
  EXPECT_TRUE(page_through(true, 7).empty()) << "not indexed yet";

  EXPECT_EQ(nstore.IndexDeadLetters(3600 * 1000), 40u);
  auto dead = page_through(true, 7);
  ASSERT_EQ(dead.size(), 30u);
  for (size_t i = 0; i < dead.size(); ++i)
    EXPECT_EQ(dead[i], "n-" + std::to_string(1000 + (29 - i) * 8) + "|" + hook.id()) << "newest death first";
  for (const auto& d : list(true, 100, "").items) EXPECT_EQ(d.status(), v1::Delivery::DEAD);
  // A later start looks again only at the deaths of the last `recent`
  // before the newest indexed (+6009), and nothing is listed twice.
  EXPECT_EQ(nstore.IndexDeadLetters(1000), 31u);  // from +5009: 21 of the hook's, the other's 10
  EXPECT_EQ(nstore.IndexDeadLetters(5), 6u);      // from +6004

  EXPECT_EQ(page_through(true, 100).size(), 30u);
}

// A province's archive grows by a berkas per run. SearchRecords and ListDue
// page in filing order, each record once, with their filters and whether
// a record was disposed of read for a page of records at a time: no
// command per record, where they read each record and its disposal alone.
// A record's access log pages oldest first.
TEST_F(BatchTest, SearchDueAndTheAccessLogPageThroughTheArchiveEachEntryOnce) {
  // One completed run of seed 003; the archiver files copies of it under
  // other run ids and units (its sources here are this test's).
  const v1::Run run = StartRun();
  CompleteToTheEnd(run);
  const v1::GetRunResponse done = engine_->GetRun(UserOf(kAdmin), run.id());
  ASSERT_EQ(done.run().status(), v1::Run::COMPLETED);
  archiver::Sources sources;
  sources.run = [&](const std::string& id) {
    v1::GetRunResponse copy = done;
    copy.mutable_run()->set_id(id);
    copy.mutable_run()->set_unit(id.substr(0, id.find('~')));
    return copy;
  };
  sources.definition = [&](const std::string& sop, uint32_t version) { return engine_->GetDefinition(sop, version); };
  sources.report = [](const std::string&) { return std::optional<std::pair<std::string, std::string>>(); };
  archiver::DirectoryBlobStore blobs(backends_->dir + "/search-blobs");
  auto rules = archiver::Rules::Load(SourcePath("deploy/base/archiver/klasifikasi.yaml"),
                                     SourcePath("deploy/base/archiver/jra.yaml"),
                                     SourcePath("deploy/base/archiver/berkas.yaml"));
  archiver::Engine archive(pool_.get(), &blobs, &clock_, rules, sources);
  constexpr int kRecords = 250;
  std::vector<std::string> filed, of_unit_a;
  for (int i = 0; i < kRecords; ++i) {
    const std::string unit = i % 5 == 0 ? "unit-a" : "unit-b";
    auto record = archive.FileRun(std::nullopt, unit + "~" + std::to_string(1000 + i));
    filed.push_back(record.record().id());
    if (unit == "unit-a") of_unit_a.push_back(record.record().id());
  }
  // One disposed of (as Dispose marks it): its page says so.
  RedisConnection conn(RedisAddress::Parse(backends_->redis->address()));
  conn.Command({"SADD", "sf:ar:disposed", filed[40]});

  auto search = [&](const std::string& unit, uint32_t size, const std::string& token) {
    v1::SearchRecordsRequest req;
    req.set_unit(unit);
    req.set_page_size(size);
    req.set_page_token(token);
    return archive.Search(UserOf(kAdmin), req);
  };
  auto page_through = [&](const std::string& unit, uint32_t size) {
    return PageThrough([&](const std::string& token, std::vector<std::string>& ids) {
             auto got = search(unit, size, token);
             for (const auto& r : got.records()) ids.push_back(r.record().id());
             return got.next_page_token();
           }).ids;
  };
  int64_t hmget = CommandCalls("hmget");
  const int64_t sismember = CommandCalls("sismember");
  EXPECT_EQ(page_through("", 37), filed);
  EXPECT_EQ(CommandCalls("hmget") - hmget, kRecords) << "a page reads the records it gives";
  hmget = CommandCalls("hmget");
  EXPECT_EQ(page_through("unit-a", 7), of_unit_a);
  EXPECT_LT(CommandCalls("hmget") - hmget, 2 * kRecords) << "a filtered page reads at most twice what it passes";
  auto second = search("", 37, search("", 37, "").next_page_token());
  ASSERT_EQ(second.records_size(), 37);
  for (const auto& r : second.records()) EXPECT_EQ(r.disposed(), r.record().id() == filed[40]) << r.record().id();
  EXPECT_EQ(CommandCalls("sismember") - sismember, 0) << "disposals read by the page";
  auto first = search("", 0, "");
  EXPECT_EQ(first.records_size(), 100) << "page_size 0 is 100";
  EXPECT_NE(first.next_page_token(), "");
  ExpectTokensRefused({"x", "12:", ":BRK"}, [&](const std::string& bad) { search("", 10, bad); });

  // ListDue pages the same way. Seed 003's berkas are active two years
  // and inactive five more: in mid-2030 all are due for transfer but the
  // disposed one, and none for disposition.
  auto due_through = [&](v1::ListDueRequest::Due due) {
    return PageThrough([&](const std::string& token, std::vector<std::string>& ids) {
      v1::ListDueRequest req;
      req.set_due(due);
      req.set_date("2030-06-01");
      req.set_page_size(37);
      req.set_page_token(token);
      auto got = archive.Due(UserOf(kAdmin), req);
      for (const auto& r : got.records()) ids.push_back(r.record().id());
      return got.next_page_token();
    });
  };
  std::vector<std::string> transferable = filed;
  transferable.erase(transferable.begin() + 40);
  auto due = due_through(v1::ListDueRequest::TRANSFER);
  EXPECT_EQ(due.ids, transferable);
  EXPECT_EQ(due.pages, 7) << "249 at 37 a page";
  due = due_through(v1::ListDueRequest::DISPOSITION);
  EXPECT_TRUE(due.ids.empty());
  EXPECT_EQ(due.pages, 1) << "one call reads the whole chain when nothing is due";

  // The access log of a record, a hundred reads of it: oldest first, each
  // once; the last full page knows it is the last.
  for (int i = 0; i < 100; ++i) {
    v1::AccessLogEntry e;
    e.set_user("reader-" + std::to_string(i));
    e.set_action("read");
    conn.Command({"RPUSH", "sf:ar:access:" + filed[7], e.SerializeAsString()});
  }
  archive.Get(UserOf(kAdmin), filed[7]);  // seed 003 is rahasia: the read is logged as the 101st
  v1::ListAccessLogRequest log;
  log.set_record_id(filed[7]);
  log.set_page_size(10);
  auto readers = PageThrough([&](const std::string& token, std::vector<std::string>& users) {
    log.set_page_token(token);
    auto got = archive.AccessLog(UserOf(kAdmin), log);
    EXPECT_LE(got.entries_size(), 10);
    for (const auto& e : got.entries()) users.push_back(e.user());
    return got.next_page_token();
  });
  ASSERT_EQ(readers.ids.size(), 101u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(readers.ids[i], "reader-" + std::to_string(i));
  EXPECT_EQ(readers.ids[100], "admin");
  EXPECT_EQ(readers.pages, 11);
  log.set_page_size(101);
  log.clear_page_token();
  auto whole = archive.AccessLog(UserOf(kAdmin), log);
  EXPECT_EQ(whole.entries_size(), 101);
  EXPECT_EQ(whole.next_page_token(), "") << "a page that reaches the end says so";
  log.set_page_size(10);
  const std::string of_record_7 = archive.AccessLog(UserOf(kAdmin), log).next_page_token();
  log.set_record_id(filed[8]);
  ExpectTokensRefused({of_record_7.c_str()}, [&](const std::string& token) {
    log.set_page_token(token);
    archive.AccessLog(UserOf(kAdmin), log);
  });
}

// Members of one fan-out finishing at once on several routers race on the
// step's counter. Each loser lost to a member that finished, so it does
// not use up its attempts: 200 at once, on as many threads and 16
// connections (as if on many replicas), all finish, and the step after
// is created once. With losses counted as attempts, 11-13 of 200 answered
// UNAVAILABLE.
TEST_F(BatchTest, FanOutMembersFinishingAtOnceAllFinishAndTheStepAfterComesOnce) {
  RedisPool pool(RedisAddress::Parse(backends_->redis->address()), 16);
  Store store(&pool);
  Engine engine(&store, &clock_, "test/router");
  engine.DeployTrusted(ReadText(SourcePath("deploy/base/definitions/001-kalbar-biro-organisasi.yaml")),
                       "001-kalbar-biro-organisasi.yaml", "test");
  constexpr int kMembers = 200;
  v1::StartRunRequest req;
  req.set_sop_id(kSop001);
  req.set_period("2026-Q3");
  req.set_unit("kalbar-biro-organisasi");
  auto& group = (*req.mutable_members())["bagian"];
  for (int i = 0; i < kMembers; ++i) group.add_members("unit-" + std::to_string(i));
  (*req.mutable_deadlines())[2] =
      google::protobuf::util::TimeUtil::MillisecondsToTimestamp(UnixMillis(clock_.Now() + std::chrono::hours(72)));
  v1::Run run = engine.StartRun(UserOf(kKaro), req);
  const v1::Task first = TasksOf(run).at(0);
  User first_actor{"first", "", "kalbar-biro-organisasi", {first.pelaksana()}};
  engine.Complete(first_actor, first.id(), "", {});
  std::vector<v1::Task> members;
  for (const auto& t : TasksOf(run))
    if (!t.member().empty()) members.push_back(t);
  ASSERT_EQ(members.size(), static_cast<size_t>(kMembers));

  std::atomic<int> finished{0};
  std::mutex mu;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (const auto& t : members)
    threads.emplace_back([&, t] {
      User member{"user-" + t.member(), "", t.member(), {t.pelaksana()}};
      try {
        engine.Complete(member, t.id(), "", {});
        ++finished;
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        errors.push_back(t.id() + ": " + e.what());
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(finished.load(), kMembers);
  EXPECT_TRUE(errors.empty()) << errors.size() << " failed, e.g. " << errors.front();
  auto tasks = TasksOf(run);
  EXPECT_EQ(tasks.size(), static_cast<size_t>(kMembers + 2)) << "the first, the members, the step after: once";
  EXPECT_EQ(tasks.back().step(), 3u);
  EXPECT_EQ(tasks.back().status(), v1::Task::OPEN);
}

}  // namespace
}  // namespace sopflow::testing

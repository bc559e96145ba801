// sopbench as users run it: self-contained, against a given Redis and NATS,
// and against a running deployment. Small runs: these check what it
// prints and that every hand-off is counted, never how fast anything is.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "redis.h"
#include "router_fixture.h"

namespace sopflow::testing {
namespace {

constexpr int kRuns = 3;
constexpr int kHandoffsPerRun = 9;  // 10 steps

struct BenchResult {
  int exit_code = -1;
  std::string log;      // stdout and stderr
  nlohmann::json last;  // the last line, when it is JSON
};

// Starts sopbench, its output going to `log_file`.
void StartBench(ChildProcess& bench, const std::string& log_file, std::vector<std::string> args) {
  args.insert(args.begin(), SOPFLOW_BENCH_BIN);
  bench.Start(args, {}, log_file);
}

// Waits for a started sopbench to end (bounded) and reads what it printed.
BenchResult FinishBench(ChildProcess& bench, const std::string& log_file) {
  BenchResult r;
  r.exit_code = bench.WaitExit(180000);
  if (r.exit_code < 0) bench.Kill();
  std::ifstream in(log_file);
  std::stringstream all;
  all << in.rdbuf();
  r.log = all.str();
  std::string line, last_json;
  for (std::istringstream lines(r.log); std::getline(lines, line);)
    if (!line.empty() && line.front() == '{') last_json = line;
  if (!last_json.empty()) r.last = nlohmann::json::parse(last_json, nullptr, false);
  return r;
}

// Runs sopbench to its end (bounded) and reads what it printed.
BenchResult RunBench(const std::string& dir, const std::string& name, std::vector<std::string> args) {
  ChildProcess bench;
  const std::string log_file = dir + "/" + name + ".log";
  StartBench(bench, log_file, std::move(args));
  return FinishBench(bench, log_file);
}

std::vector<std::string> Keys(const nlohmann::json& object) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : object.items()) keys.push_back(k);
  return keys;
}

// The keys matching `pattern`, asked on a connection of its own (a test
// may restart Redis between two asks).
std::vector<std::string> RedisKeys(const std::string& redis_address, const std::string& pattern) {
  RedisConnection redis(RedisAddress::Parse(redis_address));
  return ReplyStrings(redis.Command({"KEYS", pattern}).get());
}

// The run records sopflow holds: sf:run:<id>, not its :tasks or :history.
size_t RunRecords(const std::string& redis_address) {
  size_t records = 0;
  for (const auto& key : RedisKeys(redis_address, "sf:run:*")) records += key.find(':', 7) == std::string::npos;
  return records;
}

// Every run finished, every hand-off counted once, figures present.
void ExpectCompleteReport(const BenchResult& r) {
  ASSERT_EQ(r.exit_code, 0) << r.log;
  ASSERT_TRUE(r.last.is_object()) << r.log;
  EXPECT_EQ(r.last["runs_completed"], kRuns);
  EXPECT_EQ(r.last["errors"], 0);
  EXPECT_EQ(r.last["handoffs"], kRuns * kHandoffsPerRun);
  EXPECT_GT(r.last["handoffs_per_s"].get<double>(), 0);
  EXPECT_GT(r.last["runs_per_s"].get<double>(), 0);
  for (const char* p : {"p50", "p95", "p99", "max"}) EXPECT_GE(r.last["handoff_latency_ms"][p].get<double>(), 0) << p;
  EXPECT_LE(r.last["handoff_latency_ms"]["p50"].get<double>(), r.last["handoff_latency_ms"]["max"].get<double>());
  for (const char* p : {"p50", "p99"}) EXPECT_GT(r.last["run_latency_ms"][p].get<double>(), 0) << p;
  EXPECT_EQ(r.last["settings"]["steps"], 10);
  EXPECT_GE(r.last["host"]["cpus"].get<int>(), 1);
  for (const char* pct : {"busy_pct", "steal_pct"}) {
    EXPECT_GE(r.last["host"][pct].get<double>(), 0) << pct;
    EXPECT_LE(r.last["host"][pct].get<double>(), 100) << pct;
  }
}

TEST(BenchTest, SelfContainedRunStartsEverythingAndReportsEveryProcess) {
  std::string dir = MakeTempDir("bench");
  std::string latency_log = dir + "/latencies.txt";
  auto r = RunBench(dir, "self-contained",
                    {"--runs", std::to_string(kRuns), "--work-dir", dir, "--timeout", "120", "--latency-log", latency_log,
                     "--idle-subscribers", "3"});
  ExpectCompleteReport(r);
  const std::vector<std::string> all{"bench", "nats-server", "notifier", "redis-server", "router"};
  EXPECT_EQ(Keys(r.last["cpu_ms_per_handoff"]), all);
  EXPECT_EQ(Keys(r.last["context_switches_per_handoff"]), all);
  // Every hand-off is a line of the log: when, how long, which task.
  std::ifstream in(latency_log);
  std::string line;
  int lines = 0;
  for (; std::getline(in, line); ++lines) {
    std::istringstream fields(line);
    double at_ms = -1, latency_ms = -1;
    std::string task;
    fields >> at_ms >> latency_ms >> task;
    EXPECT_GE(at_ms, 0) << line;
    EXPECT_GE(latency_ms, 0) << line;
    EXPECT_NE(task.find('.'), std::string::npos) << line;
  }
  EXPECT_EQ(lines, kRuns * kHandoffsPerRun);
  EXPECT_EQ(r.last["settings"]["deployment"], "self-contained");
  EXPECT_EQ(r.last["settings"]["idle_subscribers"], 3);
  EXPECT_EQ(r.last["settings"]["complete_with"], "stream") << "workers complete over CompleteTasks by default";
  EXPECT_EQ(r.last["settings"]["redis"], "appendonly yes, appendfsync everysec");
  EXPECT_EQ(r.last["settings"]["jetstream"], "file storage, nats-server GOMAXPROCS=1");
  // What Redis ran per hand-off (31 at the time of writing: the router's and
  // the notifier's transaction and the relay). The ceiling is loose: idle
  // polls add a few on a slow machine; a doubling would be a regression.
  ASSERT_TRUE(r.last.contains("redis"));
  EXPECT_GT(r.last["redis"]["commands_per_handoff"].get<double>(), 10);
  EXPECT_LT(r.last["redis"]["commands_per_handoff"].get<double>(), 60);
  EXPECT_GT(r.last["redis"]["transactions_per_handoff"].get<double>(), 0);
  EXPECT_GT(r.last["redis"]["calls_per_handoff"]["xadd"].get<double>(), 0);
  RemoveTree(dir);
}

// A quarter-end push: no workers, only StartRun calls from several
// callers at once; the report says how fast they were answered and what
// each start cost while starting. The services' directory holds 500 more
// users and the notifier 20 webhooks of other units, as a province's would.
TEST(BenchTest, StartOnlyStartsTheRunsAndReportsHowFast) {
  std::string dir = MakeTempDir("bench");
  auto r = RunBench(dir, "start-only",
                    {"--runs", "40", "--start-only", "--starters", "8", "--directory-users", "500", "--webhooks", "20",
                     "--work-dir", dir, "--timeout", "120"});
  ASSERT_EQ(r.exit_code, 0) << r.log;
  ASSERT_TRUE(r.last.is_object()) << r.log;
  EXPECT_EQ(r.last["runs_started"], 40);
  EXPECT_EQ(r.last["errors"], 0);
  EXPECT_EQ(r.last["handoffs"], 0) << "no workers: no task is completed";
  EXPECT_GT(r.last["starts_per_s"].get<double>(), 0);
  EXPECT_GT(r.last["start_latency_ms"]["p50"].get<double>(), 0);
  EXPECT_LE(r.last["start_latency_ms"]["p50"].get<double>(), r.last["start_latency_ms"]["p99"].get<double>());
  EXPECT_EQ(r.last["settings"]["start_only"], true);
  EXPECT_EQ(r.last["settings"]["starters"], 8);
  EXPECT_EQ(r.last["settings"]["directory_users"], 500) << "the services started with the larger directory";
  EXPECT_EQ(r.last["settings"]["webhooks"], 20) << "registered before the runs, for other units";
  const std::vector<std::string> all{"bench", "nats-server", "notifier", "redis-server", "router"};
  EXPECT_EQ(Keys(r.last["cpu_ms_per_start"]), all);  // CPU is counted in clock ticks: 40 starts may show 0
  RemoveTree(dir);
}

// An ops team's setting: the services already run, with TLS; sopbench is
// given their addresses and the CA, and acts as users the deployment knows
// (--print-users).
TEST(BenchTest, LoadsARunningDeploymentAtTheAddressesItIsGiven) {
  Backends b;
  auto users = RunBench(b.dir, "users", {"--print-users", "--token-prefix", "ops-bench-"});
  ASSERT_EQ(users.exit_code, 0) << users.log;
  ASSERT_NE(users.log.find("token: ops-bench-10"), std::string::npos) << users.log;
  ASSERT_NE(users.log.find("permissions: [read_runs], token: ops-bench-notifier"), std::string::npos) << users.log;
  std::string tokens = b.dir + "/bench-users.yaml";
  std::ofstream(tokens) << users.log;

  const std::string key = b.dir + "/tls.key", cert = b.dir + "/tls.crt";
  ASSERT_TRUE(MakeCertificate(key, cert, b.dir + "/openssl.log"));

  int router_port = 0, notifier_port = 0;
  ChildProcess router, notifier;
  ASSERT_TRUE(StartOnOwnPort(router,
                             {SOPFLOW_ROUTER_BIN, "--tls-cert", cert, "--tls-key", key, "--redis", b.redis->address(),
                              "--nats", b.nats->url(), "--tokens", tokens, "--log-level", "info"},
                             {}, b.dir + "/router.log", &router_port));
  ASSERT_TRUE(StartOnOwnPort(notifier,
                             {SOPFLOW_NOTIFIER_BIN, "--tls-cert", cert, "--tls-key", key, "--redis",
                              b.redis->address(), "--nats", b.nats->url(), "--tokens", tokens, "--templates",
                              std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/notifier/templates", "--router",
                              "127.0.0.1:" + std::to_string(router_port), "--tls-ca", cert, "--service-token",
                              "ops-bench-notifier", "--log-level", "info"},
                             {}, b.dir + "/notifier.log", &notifier_port));

  std::string router_addr = "127.0.0.1:" + std::to_string(router_port);
  std::string notifier_addr = "127.0.0.1:" + std::to_string(notifier_port);
  auto r = RunBench(b.dir, "connected",
                    {"--router", router_addr, "--notifier", notifier_addr, "--ca-file", cert, "--runs",
                     std::to_string(kRuns), "--token-prefix", "ops-bench-", "--timeout", "120"});
  // What the services said, shown if the report is incomplete. (Under
  // `ctest -j2` a worker's Subscribe was now and then refused: a port
  // chosen by FreePort() had been taken by another process before the
  // notifier bound it. The services now choose their own ports. Then CI
  // saw one worker's first connection fail, UNAVAILABLE, and the bench wait
  // out its timeout for the step nobody did: workers now keep their streams
  // with NotificationFeed, which waits for a connection and resubscribes,
  // and a worker that gives up ends the benchmark at once.)
  SCOPED_TRACE("router.log:\n" + ReadText(b.dir + "/router.log") + "\nnotifier.log:\n" +
               ReadText(b.dir + "/notifier.log"));
  ExpectCompleteReport(r);
  // It started nothing, so it can only measure itself.
  EXPECT_EQ(Keys(r.last["cpu_ms_per_handoff"]), std::vector<std::string>{"bench"});
  EXPECT_EQ(Keys(r.last["context_switches_per_handoff"]), std::vector<std::string>{"bench"});
  EXPECT_EQ(r.last["settings"]["deployment"], "connected");
  EXPECT_EQ(r.last["settings"]["router_addresses"], nlohmann::json::array({router_addr}));
  EXPECT_FALSE(r.last["settings"].contains("redis"));
  EXPECT_FALSE(r.last.contains("redis")) << "it does not know the deployment's Redis";

  // Users the deployment does not know get a clear refusal, not a hang.
  auto stranger = RunBench(b.dir, "stranger",
                           {"--router", router_addr, "--notifier", notifier_addr, "--ca-file", cert, "--runs", "1",
                            "--admin-token", "not-a-user", "--timeout", "30"});
  EXPECT_EQ(stranger.exit_code, 1);
  EXPECT_NE(stranger.log.find("deploying bench-10.yaml: UNAUTHENTICATED"), std::string::npos) << stranger.log;

  // Plaintext to a TLS deployment: a clear failure, not a hang.
  auto plaintext = RunBench(b.dir, "plaintext",
                            {"--router", router_addr, "--notifier", notifier_addr, "--runs", "1",
                             "--token-prefix", "ops-bench-", "--timeout", "30"});
  EXPECT_EQ(plaintext.exit_code, 1);
  EXPECT_NE(plaintext.log.find("deploying bench-10.yaml: UNAVAILABLE"), std::string::npos) << plaintext.log;
}

TEST(BenchTest, StartsOnlyTheServicesAgainstAGivenRedisAndNats) {
  Backends b;
  std::string work_dir = b.dir + "/bench";
  std::filesystem::create_directories(work_dir);
  auto r = RunBench(b.dir, "given-infrastructure",
                    {"--redis", b.redis->address(), "--nats", b.nats->url(), "--runs", std::to_string(kRuns),
                     "--routers", "2", "--work-dir", work_dir, "--timeout", "120", "--complete-with", "unary"});
  ExpectCompleteReport(r);
  EXPECT_EQ(r.last["settings"]["complete_with"], "unary");
  EXPECT_EQ(Keys(r.last["cpu_ms_per_handoff"]), (std::vector<std::string>{"bench", "notifier", "router"}));
  EXPECT_EQ(r.last["settings"]["routers"], 2);
  EXPECT_EQ(r.last["settings"]["deployment"], "own services, given redis and nats");
}

// The bare shape (tools/floor) under the same benchmark, as
// docs/performance.md compares it with sopflow: every run finishes, each
// start and step recorded exactly once (11 fields per run: the start and
// ten completions), and the figures are those of any other run.
TEST(BenchTest, TheBareShapeRunsUnderTheSameBenchmark) {
  Backends b;
  std::string work_dir = b.dir + "/bench";
  std::filesystem::create_directories(work_dir);
  auto r = RunBench(b.dir, "floor",
                    {"--bin-dir", SOPFLOW_FLOOR_BIN_DIR, "--redis", b.redis->address(), "--nats", b.nats->url(),
                     "--runs", std::to_string(kRuns), "--work-dir", work_dir, "--timeout", "120"});
  ExpectCompleteReport(r);
  EXPECT_EQ(Keys(r.last["cpu_ms_per_handoff"]), (std::vector<std::string>{"bench", "notifier", "router"}));
  RedisConnection redis(RedisAddress::Parse(b.redis->address()));
  auto runs = RedisKeys(b.redis->address(), "floor:run:*");
  ASSERT_EQ(runs.size(), static_cast<size_t>(kRuns));
  for (const auto& run : runs) EXPECT_EQ(ReplyInteger(redis.Command({"HLEN", run}).get()), 11) << run;
  EXPECT_EQ(ReplyInteger(redis.Command({"XLEN", "floor:log"}).get()), kRuns * 10) << "one notification per task";
}

// Redis killed under the load and restarted, held loading for 2 s or more
// (--key-load-delay over 20,000 keys): the starts and completions the
// deployment refuses meanwhile (UNAVAILABLE) are retried, as a client
// should, over the stream and with unary calls, and every run finishes
// without an error and without a run started twice.
TEST(BenchTest, RetriesWhatTheDeploymentRefusesWhileRedisRestarts) {
  for (const std::string complete_with : {"stream", "unary"}) {
    SCOPED_TRACE(complete_with);
    Backends b;
    b.FillRedisToLoadSlowly();
    const std::string work_dir = b.dir + "/bench";
    std::filesystem::create_directories(work_dir);
    constexpr int kRestartRuns = 30;
    ChildProcess bench;
    const std::string log_file = b.dir + "/restart.log";
    StartBench(bench, log_file,
               {"--redis", b.redis->address(), "--nats", b.nats->url(), "--runs", std::to_string(kRestartRuns),
                "--rate", "10", "--work-dir", work_dir, "--timeout", "120", "--complete-with", complete_with});
    const std::string redis = b.redis->address();
    ASSERT_TRUE(WaitUntil([&] { return RunRecords(redis) >= 5; }, 60000)) << "the load did not begin";
    b.redis->KillAndRestart({"--key-load-delay", "100"});
    BenchResult r = FinishBench(bench, log_file);
    ASSERT_EQ(r.exit_code, 0) << r.log;
    EXPECT_EQ(r.last["runs_started"], kRestartRuns) << r.log;
    EXPECT_EQ(r.last["runs_completed"], kRestartRuns) << r.log;
    EXPECT_EQ(r.last["errors"], 0) << r.log;
    EXPECT_GT(r.last["retried"].get<int>(), 0) << "nothing was refused: Redis restarted after the load?";
    EXPECT_EQ(RunRecords(redis), static_cast<size_t>(kRestartRuns)) << "one run per start";
    EXPECT_EQ(RedisKeys(redis, "sf:req:sopbench-*").size(), static_cast<size_t>(kRestartRuns)) << "each start has its request_id";
  }
}

// A router SIGKILLed under the load and started again on its address, as
// a pod is behind its Service: the workers open their CompleteTasks
// streams again and send what the dead stream left unanswered (the router
// answers what it had applied as the first time), starts are retried, and
// every run finishes once, without an error.
TEST(BenchTest, OpensItsStreamsAgainWhenTheRouterIsKilledAndRestarted) {
  Backends b;
  auto users = RunBench(b.dir, "users", {"--print-users"});
  ASSERT_EQ(users.exit_code, 0) << users.log;
  const std::string tokens = b.dir + "/bench-users.yaml";
  std::ofstream(tokens) << users.log;
  const std::vector<std::string> router_args{SOPFLOW_ROUTER_BIN, "--redis", b.redis->address(), "--nats", b.nats->url(),
                                             "--tokens", tokens, "--log-level", "info"};
  int router_port = 0, notifier_port = 0;
  ChildProcess router, notifier;
  ASSERT_TRUE(StartOnOwnPort(router, router_args, {}, b.dir + "/router.log", &router_port));
  const std::string router_addr = "127.0.0.1:" + std::to_string(router_port);
  ASSERT_TRUE(StartOnOwnPort(notifier,
                             {SOPFLOW_NOTIFIER_BIN, "--redis", b.redis->address(), "--nats", b.nats->url(), "--tokens",
                              tokens, "--templates", std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/notifier/templates",
                              "--router", router_addr, "--service-token", "bench-notifier", "--log-level", "info"},
                             {}, b.dir + "/notifier.log", &notifier_port));
  const std::string redis = b.redis->address();

  constexpr int kRuns = 40;
  ChildProcess bench;
  const std::string log_file = b.dir + "/router-restart.log";
  StartBench(bench, log_file,
             {"--router", router_addr, "--notifier", "127.0.0.1:" + std::to_string(notifier_port), "--runs",
              std::to_string(kRuns), "--rate", "8", "--timeout", "120"});
  ASSERT_TRUE(WaitUntil([&] { return RunRecords(redis) >= 10; }, 60000)) << "the load did not begin";
  const size_t runs_before_kill = RunRecords(redis);  // at --rate 8, ~1 s into the 5 s of starts
  router.Kill();
  ChildProcess restarted;
  std::vector<std::string> same_address = router_args;
  same_address.insert(same_address.end(), {"--listen", router_addr});
  restarted.Start(same_address, {}, b.dir + "/router-restarted.log");
  BenchResult r = FinishBench(bench, log_file);
  SCOPED_TRACE("router-restarted.log:\n" + ReadText(b.dir + "/router-restarted.log"));
  ASSERT_EQ(r.exit_code, 0) << r.log;
  EXPECT_EQ(r.last["runs_started"], kRuns) << r.log;
  EXPECT_EQ(r.last["runs_completed"], kRuns) << r.log;
  EXPECT_EQ(r.last["errors"], 0) << r.log;
  EXPECT_LT(runs_before_kill, static_cast<size_t>(kRuns)) << "the router died under the load";
  EXPECT_EQ(RunRecords(redis), static_cast<size_t>(kRuns)) << "one run per start";
  EXPECT_EQ(RedisKeys(redis, "sf:task:*").size(), static_cast<size_t>(kRuns) * 10) << "each task created once";
}

TEST(BenchTest, RefusesOptionsThatContradictEachOtherBeforeStartingAnything) {
  std::string dir = MakeTempDir("bench-options");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const auto& c : std::vector<Case>{
           {{"--router", "127.0.0.1:1"}, "--router and --notifier go together"},
           {{"--redis", "127.0.0.1:1"}, "--redis and --nats go together"},
           {{"--router", "127.0.0.1:1", "--notifier", "127.0.0.1:2", "--routers", "2"},
            "--routers applies when sopbench starts the services"},
           {{"--router", "127.0.0.1:1", "--notifier", "127.0.0.1:2", "--ca-file", dir + "/missing.pem"},
            "--ca-file " + dir + "/missing.pem: cannot read it"},
           {{"--ca-file", dir + "/missing.pem"}, "--ca-file applies to a deployment given with --router/--notifier"},
       }) {
    auto r = RunBench(dir, "refused", c.args);
    EXPECT_EQ(r.exit_code, 1) << r.log;
    EXPECT_NE(r.log.find(c.says), std::string::npos) << r.log;
    EXPECT_TRUE(r.last.is_null()) << "printed figures: " << r.log;
    std::filesystem::remove(dir + "/refused.log");
  }
  RemoveTree(dir);
}

}  // namespace
}  // namespace sopflow::testing

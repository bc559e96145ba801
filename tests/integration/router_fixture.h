// Integration tests of the router against a real redis-server and
// nats-server -js, started per test process on free loopback ports.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors.h"
#include "clock.h"
#include "grpc_client.h"
#include "router.h"
#include "servers.h"
#include "sopflow/v1/router.grpc.pb.h"

namespace sopflow::testing {

inline constexpr char kAdmin[] = "demo-admin";
inline constexpr char kKaro[] = "demo-karo";
inline constexpr char kKasubbagTu[] = "demo-kasubbag-tu";
inline constexpr char kKabagTl[] = "demo-kabag-tatalaksana";
inline constexpr char kBagianTl[] = "demo-bagian-tatalaksana";
inline constexpr char kBagianKl[] = "demo-bagian-kelembagaan";
inline constexpr char kSekretarisBlg[] = "demo-sekretaris-blg";
inline constexpr char kKasubagPp[] = "demo-kasubag-pp";
inline constexpr char kEsakipWorker[] = "demo-esakip-worker";
inline constexpr char kOutsider[] = "demo-outsider";
inline constexpr char kNotifierService[] = "demo-notifier";  // read_runs: the notifier's service account

inline constexpr char kSop001[] = "kalbar-biro-organisasi-data-kinerja";
inline constexpr char kSop003[] = "balangan-satpolpp-data-kinerja";
inline constexpr char kSop004[] = "gowa-perencanaan-pelaporan-data-kinerja";

std::string SourcePath(const std::string& relative);
std::string ReadText(const std::string& path);
// Every demo user (deploy/overlays/dev/tokens.yaml) as a scripted actor.
std::vector<demo::Actor> AllActors();

// Redis + NATS in a temporary folder.
struct Backends {
  Backends();
  ~Backends();
  RouterConfig RouterConfigFor() const;  // listen on a free port, seeds deployed
  // Adds 20,000 small keys to Redis, so that restarted with
  // --key-load-delay 100 it loads for 2 s or more on any machine.
  void FillRedisToLoadSlowly() const;
  std::string dir;
  std::unique_ptr<RedisServer> redis;
  std::unique_ptr<NatsServer> nats;
};

// A stub to the router on 127.0.0.1:port, plaintext.
std::unique_ptr<v1::Router::Stub> RouterStub(int port);

// Redis, NATS and a router of a test's own, started, with a stub to it: for
// a test that starts (or kills) other services beside its router, where
// RouterTest's suites share one. Built on the test's thread, which
// outlives the servers it starts.
struct OwnRouter {
  OwnRouter();
  Backends backends;
  SystemClock clock;
  RouterProcess router;
  std::unique_ptr<v1::Router::Stub> stub;
};

// A request to start seed 003 (Balangan) for `period`.
v1::StartRunRequest Run003Request(const std::string& period = "2026-Q3");
// Starts a run of seed 003 (Balangan, 2026-Q3) as its sekretaris.
v1::Run StartRun003(v1::Router::Stub& stub);

// Polls `done` every few ms until it holds or timeout_ms passes.
bool WaitUntil(const std::function<bool()>& done, int timeout_ms = 20000);

// Scrapes http://127.0.0.1:port/metrics (as WaitUntil, bounded) until one
// page holds every one of `texts`; `body` gets the last page scraped.
bool ScrapeUntil(int port, const std::vector<std::string>& texts, std::string& body);

// The child process listens on 127.0.0.1:port within timeout_ms; if not,
// the failure says why, with the tail of the child's log.
inline ::testing::AssertionResult Listens(ChildProcess& child, int port, int timeout_ms = 15000) {
  std::string why = child.WaitListening(port, timeout_ms);
  if (why.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the child process " << why;
}

// Starts the sopflow service `argv` on a port it chooses itself (--listen
// 127.0.0.1:0, --port-file next to its log) and waits until it listens
// within timeout_ms; *port is its port. No other process can take the port
// between its choice and the bind, as one from FreePort() can when tests
// run in parallel. A restart with the same log file writes the port anew.
// If it does not listen, the failure says why, with the tail of its log.
inline ::testing::AssertionResult StartOnOwnPort(ChildProcess& child, std::vector<std::string> argv,
                                                 const std::map<std::string, std::string>& env,
                                                 const std::string& log_file, int* port, int timeout_ms = 15000) {
  child.StartWithOwnPort(std::move(argv), env, log_file);
  std::string why = child.WaitOwnPort(timeout_ms, port);
  if (why.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the child process " << why;
}

// Starts a service process with `config` and returns why it refused to
// start (std::invalid_argument's message); "" when it started, and then
// it is shut down again.
template <class Process, class Config>
std::string StartRefusal(const Config& config, const Clock* clock) {
  Process process(config, clock);
  try {
    process.Start();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  process.Shutdown();
  return "";
}

// A self-signed certificate for 127.0.0.1 and its key, made by openssl.
::testing::AssertionResult MakeCertificate(const std::string& key, const std::string& cert, const std::string& log);

class RouterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();

  v1::Router::Stub& stub() { return *stub_; }

  v1::Run Start001(const std::string& request_id = "");
  v1::Run Start003();
  v1::Run Start004();
  v1::GetRunResponse GetRun(const std::string& run_id);
  // Waits for an open task of `step` in the run and returns it.
  v1::Task WaitForOpenTask(const std::string& run_id, uint32_t step);
  // Completes open tasks (reviews pass) until one of `step` is open.
  v1::Task AdvanceTo(const std::string& run_id, uint32_t step);
  // The caller's inbox, only the tasks of `run_id`.
  std::vector<v1::Task> InboxOf(const std::string& token, const std::string& run_id);
  grpc::Status Complete(const std::string& token, const std::string& task_id, const std::string& outcome,
                        v1::Task* out = nullptr);

  static Backends* backends_;
  static SystemClock clock_;
  static RouterProcess* router_;
  static std::unique_ptr<v1::Router::Stub> stub_;
};

}  // namespace sopflow::testing

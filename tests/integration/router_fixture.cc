#include "router_fixture.h"

#include <google/protobuf/util/time_util.h>
#include <httplib.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "redis.h"

namespace sopflow::testing {

using google::protobuf::util::TimeUtil;

Backends* RouterTest::backends_ = nullptr;
SystemClock RouterTest::clock_;
RouterProcess* RouterTest::router_ = nullptr;
std::unique_ptr<v1::Router::Stub> RouterTest::stub_;

std::string SourcePath(const std::string& relative) { return std::string(SOPFLOW_SOURCE_DIR) + "/" + relative; }

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<demo::Actor> AllActors() {
  std::vector<demo::Actor> actors;
  YAML::Node root = YAML::LoadFile(SourcePath("deploy/overlays/dev/tokens.yaml"));
  for (const auto& u : root["users"]) actors.push_back({u["id"].as<std::string>(), u["token"].as<std::string>()});
  return actors;
}

Backends::Backends() : dir(MakeTempDir("sopflow-it")) {
  redis = std::make_unique<RedisServer>(dir);
  nats = std::make_unique<NatsServer>(dir);
}

Backends::~Backends() {
  redis.reset();
  nats.reset();
  RemoveTree(dir);
}

void Backends::FillRedisToLoadSlowly() const {
  RedisConnection conn(RedisAddress::Parse(redis->address()));
  for (int page = 0; page < 20; ++page) {
    std::vector<std::vector<std::string>> sets;
    for (int i = 0; i < 1000; ++i) sets.push_back({"SET", "test:filler:" + std::to_string(page * 1000 + i), "x"});
    for (auto& reply : conn.Pipeline(sets))
      if (ReplyIsError(reply.get())) throw std::runtime_error("filling Redis: a SET was refused");
  }
}

RouterConfig Backends::RouterConfigFor() const {
  RouterConfig c;
  c.listen = "127.0.0.1:0";
  c.redis = redis->address();
  c.nats = nats->url();
  c.tokens_file = SourcePath("deploy/overlays/dev/tokens.yaml");
  c.definitions_dir = SourcePath("deploy/base/definitions");
  c.calendar_file = SourcePath("deploy/base/calendar/calendar.yaml");
  c.relay_reclaim_idle_ms = 500;
  c.drain_ms = 2000;
  return c;
}

::testing::AssertionResult MakeCertificate(const std::string& key, const std::string& cert, const std::string& log) {
  ChildProcess openssl;
  openssl.Start({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days",
                 "1", "-subj", "/CN=sopflow-router", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"},
                {}, log);
  if (openssl.WaitExit(30000) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "openssl failed; see " << log;
}

bool WaitUntil(const std::function<bool()>& done, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

bool ScrapeUntil(int port, const std::vector<std::string>& texts, std::string& body) {
  httplib::Client http("127.0.0.1", port);
  return WaitUntil([&] {
    auto res = http.Get("/metrics");
    body = res && res->status == 200 ? res->body : "";
    return std::all_of(texts.begin(), texts.end(), [&](const std::string& t) { return body.find(t) != std::string::npos; });
  });
}

void RouterTest::SetUpTestSuite() {
  backends_ = new Backends();
  router_ = new RouterProcess(backends_->RouterConfigFor(), &clock_);
  router_->Start();
  stub_ = RouterStub(router_->port());
}

void RouterTest::TearDownTestSuite() {
  stub_.reset();
  delete router_;
  router_ = nullptr;
  delete backends_;
  backends_ = nullptr;
}

OwnRouter::OwnRouter() : router(backends.RouterConfigFor(), &clock) {
  router.Start();
  stub = RouterStub(router.port());
}

std::unique_ptr<v1::Router::Stub> RouterStub(int port) {
  return v1::Router::NewStub(OpenChannel("127.0.0.1:" + std::to_string(port)));
}

v1::Run RouterTest::Start001(const std::string& request_id) {
  v1::StartRunRequest req;
  req.set_sop_id(kSop001);
  req.set_period("2026-Q3");
  req.set_unit("kalbar-biro-organisasi");
  req.set_request_id(request_id);
  auto& m = (*req.mutable_members())["bagian"];
  for (const char* b : {"bagian-tatalaksana", "bagian-kelembagaan", "bagian-reformasi-birokrasi"}) m.add_members(b);
  (*req.mutable_deadlines())[2] = TimeUtil::MillisecondsToTimestamp(UnixMillis(clock_.Now()) + 3 * 86400000LL);
  v1::Run run;
  auto st = stub().StartRun(AuthedContext(kKaro).get(), req, &run);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return run;
}

v1::StartRunRequest Run003Request(const std::string& period) {
  v1::StartRunRequest req;
  req.set_sop_id(kSop003);
  req.set_period(period);
  req.set_unit("balangan-satpolpp");
  return req;
}

v1::Run StartRun003(v1::Router::Stub& stub) {
  v1::StartRunRequest req = Run003Request();
  v1::Run run;
  auto st = stub.StartRun(AuthedContext(kSekretarisBlg).get(), req, &run);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return run;
}

v1::Run RouterTest::Start003() { return StartRun003(stub()); }

v1::Run RouterTest::Start004() {
  v1::StartRunRequest req;
  req.set_sop_id(kSop004);
  req.set_period("2026");
  req.set_unit("gowa-perencanaan");
  auto& m = (*req.mutable_members())["fungsional"];
  for (const char* f : {"fungsional-1", "fungsional-2", "fungsional-3"}) m.add_members(f);
  v1::Run run;
  auto st = stub().StartRun(AuthedContext("demo-kepala-skpd").get(), req, &run);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return run;
}

v1::GetRunResponse RouterTest::GetRun(const std::string& run_id) {
  v1::GetRunRequest req;
  req.set_run_id(run_id);
  v1::GetRunResponse resp;
  auto st = stub().GetRun(AuthedContext(kAdmin).get(), req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp;
}

v1::Task RouterTest::WaitForOpenTask(const std::string& run_id, uint32_t step) {
  v1::Task found;
  bool ok = WaitUntil([&] {
    auto snapshot = GetRun(run_id);
    for (const auto& t : snapshot.tasks())
      if (t.step() == step && (t.status() == v1::Task::OPEN || t.status() == v1::Task::CLAIMED)) {
        found = t;
        return true;
      }
    return false;
  });
  EXPECT_TRUE(ok) << "no open task for step " << step << " in run " << run_id;
  return found;
}

std::vector<v1::Task> RouterTest::InboxOf(const std::string& token, const std::string& run_id) {
  v1::ListInboxResponse inbox;
  auto st = stub().ListInbox(AuthedContext(token).get(), {}, &inbox);
  EXPECT_TRUE(st.ok()) << st.error_message();
  std::vector<v1::Task> out;
  for (const auto& t : inbox.tasks())
    if (t.run_id() == run_id) out.push_back(t);
  return out;
}

grpc::Status RouterTest::Complete(const std::string& token, const std::string& task_id, const std::string& outcome,
                                  v1::Task* out) {
  v1::CompleteTaskRequest req;
  req.set_task_id(task_id);
  req.set_outcome(outcome);
  v1::Task ignored;
  return stub().CompleteTask(AuthedContext(token).get(), req, out ? out : &ignored);
}

v1::Task RouterTest::AdvanceTo(const std::string& run_id, uint32_t step) {
  auto actors = AllActors();
  v1::Task target;
  bool ok = WaitUntil([&] {
    auto snapshot = GetRun(run_id);
    for (const auto& t : snapshot.tasks()) {
      if (t.status() != v1::Task::OPEN && t.status() != v1::Task::CLAIMED) continue;
      if (t.step() == step) {
        target = t;
        return true;
      }
      std::string outcome = t.kind() == v1::Step::REVIEW ? "sesuai" : "";
      for (const auto& a : actors)
        if (Complete(a.token, t.id(), outcome).ok()) break;
    }
    return false;
  });
  EXPECT_TRUE(ok) << "run " << run_id << " never reached step " << step;
  return target;
}

}  // namespace sopflow::testing

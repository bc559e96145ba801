// What every sopflow server has: health and reflection without a token,
// and an interceptor that records each call.
#include <grpcpp/generic/generic_stub.h>
#include <signal.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "grpc_server.h"
#include "metrics.h"
#include "redis.h"
#include "router_fixture.h"

namespace sopflow::testing {
namespace {

bool Next(grpc::CompletionQueue& cq) {
  void* tag;
  bool ok = false;
  return cq.Next(&tag, &ok) && ok;
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  for (auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// One request, one response over a generic stream, with no token: how a
// prober or grpcurl sees a server, without its generated stubs.
std::string CallWithoutToken(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                             const std::string& request, grpc::Status* status) {
  grpc::GenericStub generic(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&ctx, method, &cq);
  call->StartCall(nullptr);
  std::string response;
  if (Next(cq)) {
    grpc::Slice slice(request);
    call->Write(grpc::ByteBuffer(&slice, 1), nullptr);
    Next(cq);
    call->WritesDone(nullptr);
    Next(cq);
    grpc::ByteBuffer buffer;
    call->Read(&buffer, nullptr);
    if (Next(cq)) response = Bytes(buffer);
  }
  call->Finish(status, nullptr);
  Next(cq);
  cq.Shutdown();
  while (Next(cq)) {
  }
  return response;
}

// grpc.health.v1 answers: HealthCheckResponse{status: SERVING | NOT_SERVING}.
const std::string kServing("\x08\x01", 2);
const std::string kNotServing("\x08\x02", 2);

std::string HealthOf(const std::shared_ptr<grpc::Channel>& channel, grpc::Status* status) {
  return CallWithoutToken(channel, "/grpc.health.v1.Health/Check", "", status);
}

class ServerTest : public RouterTest {
 protected:
  std::string CallWithoutToken(const std::string& method, const std::string& request, grpc::Status* status) {
    return testing::CallWithoutToken(OpenChannel("127.0.0.1:" + std::to_string(router_->port())), method, request,
                                     status);
  }
};

TEST_F(ServerTest, HealthIsServedWithoutAToken) {
  grpc::Status status;
  // HealthCheckRequest{service: ""} is empty; the answer is {status: SERVING}.
  std::string answer = CallWithoutToken("/grpc.health.v1.Health/Check", "", &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(answer, kServing);
}

TEST_F(ServerTest, ReflectionListsTheRouterWithoutAToken) {
  grpc::Status status;
  // ServerReflectionRequest{list_services: "*"}: field 7, length 1.
  std::string answer = CallWithoutToken("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                        std::string("\x3a\x01*", 3), &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(answer.find("sopflow.v1.Router"), std::string::npos);
  EXPECT_NE(answer.find("grpc.health.v1.Health"), std::string::npos);
}

TEST_F(ServerTest, EveryCallIsCountedByTheInterceptor) {
  const std::string ok_labels = "method=\"/sopflow.v1.Router/ListDefinitions\",code=\"OK\"";
  const std::string denied_labels = "method=\"/sopflow.v1.Router/DeployDefinition\",code=\"PERMISSION_DENIED\"";
  double ok_before = Metrics::Global().CounterValue("sopflow_grpc_requests_total", ok_labels);
  double denied_before = Metrics::Global().CounterValue("sopflow_grpc_requests_total", denied_labels);
  v1::ListDefinitionsResponse defs;
  ASSERT_TRUE(stub().ListDefinitions(AuthedContext(kKaro).get(), {}, &defs).ok());
  ASSERT_TRUE(stub().ListDefinitions(AuthedContext(kKaro).get(), {}, &defs).ok());
  v1::DeployDefinitionRequest deploy;
  deploy.set_yaml("id: x");
  v1::DeployDefinitionResponse deployed;
  EXPECT_FALSE(stub().DeployDefinition(AuthedContext(kKaro).get(), deploy, &deployed).ok());
  EXPECT_EQ(Metrics::Global().CounterValue("sopflow_grpc_requests_total", ok_labels), ok_before + 2);
  EXPECT_EQ(Metrics::Global().CounterValue("sopflow_grpc_requests_total", denied_labels), denied_before + 1);
  std::string text = Metrics::Global().Render();
  EXPECT_NE(text.find("# TYPE sopflow_grpc_request_duration_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("sopflow_grpc_request_duration_seconds_count{method=\"/sopflow.v1.Router/ListDefinitions\"}"),
            std::string::npos);
}

TEST_F(ServerTest, ASecondServerOnATakenPortFailsToStartInsteadOfSharingIt) {
  ServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(router_->port());
  ServerHost second(options);
  try {
    second.Start();
    ADD_FAILURE() << "a second server started on the router's port";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on " + options.listen), std::string::npos) << e.what();
  }
  grpc::Status status;
  EXPECT_EQ(CallWithoutToken("/grpc.health.v1.Health/Check", "", &status), kServing);  // the first still serves
}

// The fixtures' redis-server and nats-server take a port from FreePort(),
// which another process may bind first. The server then exits, and is
// started again on another port; a connect answered by the other process
// does not pass for the server being ready.
TEST(FixtureTest, AServerWhosePortWasTakenFirstIsStartedAgainOnAnother) {
  std::string dir = MakeTempDir("sopflow-port-taken");
  for (const std::string server : {"redis-server", "nats-server"}) {
    int starts = 0, taken = 0, holder = -1;
    auto argv_for = [&](int port) {
      if (++starts == 1) {
        // Another process binds the port just chosen, and answers connects
        // on it, before the server starts: the race, made certain.
        taken = port;
        holder = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(listen(holder, 8), 0);
      }
      const std::string p = std::to_string(port);
      if (server == "redis-server")
        return std::vector<std::string>{"redis-server", "--port", p, "--bind", "127.0.0.1", "--dir", dir, "--save", ""};
      return std::vector<std::string>{"nats-server", "-a", "127.0.0.1", "-p", p};
    };
    ChildProcess process;
    int port = process.StartOnFreePort(argv_for, {}, dir + "/" + server + ".log",
                                       server == "redis-server" ? "Ready to accept connections" : "Server is ready",
                                       10000);
    close(holder);
    EXPECT_EQ(starts, 2) << server;
    EXPECT_NE(port, taken) << server;
    EXPECT_TRUE(process.running()) << server;
    if (server == "redis-server") {
      RedisConnection conn(RedisAddress::Parse("127.0.0.1:" + std::to_string(port)));
      Reply pong = conn.Command({"PING"});
      EXPECT_EQ(ReplyString(pong.get()).value_or(""), "PONG");
    } else {
      EXPECT_TRUE(WaitForPort(port, 2000));
    }
  }
  RemoveTree(dir);
}

TEST(MetricsEndpointTest, PrometheusScrapesRequestsHandoffsAndOutboxBacklog) {
  Backends backends;
  SystemClock clock;
  auto config = backends.RouterConfigFor();
  config.metrics_listen = "127.0.0.1:0";
  RouterProcess router(config, &clock);
  router.Start();
  ASSERT_GT(router.metrics_port(), 0);
  auto stub = RouterStub(router.port());
  v1::Run run = StartRun003(*stub);
  ASSERT_FALSE(run.id().empty());
  std::string body;
  ASSERT_TRUE(ScrapeUntil(router.metrics_port(), {"sopflow_handoffs_total "}, body));  // the first task was created
  EXPECT_NE(body.find("# TYPE sopflow_grpc_requests_total counter"), std::string::npos);
  EXPECT_NE(body.find("sopflow_grpc_requests_total{method=\"/sopflow.v1.Router/StartRun\",code=\"OK\"}"), std::string::npos);
  // The router consumes no events; what can lag behind it is the relay,
  // which empties the outbox once JetStream has the events.
  EXPECT_NE(body.find("# TYPE sopflow_outbox_backlog gauge"), std::string::npos);
  EXPECT_TRUE(ScrapeUntil(router.metrics_port(), {"\nsopflow_outbox_backlog 0\n"}, body)) << body;
  EXPECT_NE(body.find("sopflow_grpc_request_duration_seconds_bucket{method=\"/sopflow.v1.Router/StartRun\",le=\"+Inf\"}"),
            std::string::npos);
  router.Shutdown();
}

// A router whose GetRun answers only when the test says: a call that stays
// live for as long as the test wants.
class HeldGetRun final : public v1::Router::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* ctx, const v1::GetRunRequest*,
                                   v1::GetRunResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = ctx->DefaultReactor();
    arrived_.notify_all();
    return held_;
  }
  bool WaitArrived() {
    std::unique_lock<std::mutex> lock(mu_);
    return arrived_.wait_for(lock, std::chrono::seconds(20), [&] { return held_ != nullptr; });
  }
  void Answer() {
    std::lock_guard<std::mutex> lock(mu_);
    held_->Finish(grpc::Status::OK);
  }

 private:
  std::mutex mu_;
  std::condition_variable arrived_;
  grpc::ServerUnaryReactor* held_ = nullptr;
};

// An HTTP/2 client that connects, says hello, and then reads nothing: what
// a gRPC client with an idle channel is between its polls (C-core clients
// poll an idle channel every 5 s). -1 if it cannot connect.
int IdleHttp2Connection(int port) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return -1;
  // The connection preface, then an empty SETTINGS frame (RFC 9113 3.4).
  const std::string hello = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + std::string("\0\0\0\x04\0\0\0\0\0", 9);
  if (write(fd, hello.data(), hello.size()) != static_cast<ssize_t>(hello.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// A drain waits for the calls a server holds and answers them, and then
// ends: gRPC alone would also wait for every connected client to
// acknowledge its GOAWAY, which one that reads nothing never does (gRPC
// gives up after 20 s, or at the grace's end). Here the grace is a minute.
TEST(ServerDrainTest, ADrainWaitsForItsCallsButNotForClientsThatReadNothing) {
  ServerOptions options;
  options.users = UserDirectory::LoadFile(SourcePath("deploy/overlays/dev/tokens.yaml"));
  ServerHost host(options);
  HeldGetRun service;
  host.AddService(&service);
  host.Start();

  auto stub = RouterStub(host.port());
  auto call = std::async(std::launch::async, [&] {
    v1::GetRunRequest request;
    v1::GetRunResponse response;
    return stub->GetRun(AuthedContext(kKaro).get(), request, &response);
  });
  ASSERT_TRUE(service.WaitArrived());
  int idle = IdleHttp2Connection(host.port());
  ASSERT_GE(idle, 0);

  const auto grace = std::chrono::seconds(60);
  auto t0 = std::chrono::steady_clock::now();
  auto drained = std::async(std::launch::async, [&] { host.Shutdown(grace); });
  EXPECT_EQ(drained.wait_for(std::chrono::milliseconds(500)), std::future_status::timeout)
      << "the drain ended while a call was still held";
  service.Answer();
  grpc::Status answered = call.get();
  EXPECT_TRUE(answered.ok()) << "the held call is answered, not cancelled: " << answered.error_message();
  ASSERT_EQ(drained.wait_for(std::chrono::seconds(90)), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15))
      << "the drain waited for the client that reads nothing";
  close(idle);
}

// How the router runs on Kubernetes: TLS on the API port (clients trust the
// CA), a plaintext health-only port for kubelet's gRPC probes, and on
// SIGTERM NOT_SERVING while calls are still answered, then a clean exit.
TEST(DeploymentShapeTest, TlsApiPlaintextHealthPortAndNotServingDuringTheDrain) {
  Backends backends;
  const std::string key = backends.dir + "/tls.key", cert = backends.dir + "/tls.crt";
  ASSERT_TRUE(MakeCertificate(key, cert, backends.dir + "/openssl.log"));

  auto c = backends.RouterConfigFor();
  int port = 0;
  ChildProcess router;
  ASSERT_TRUE(StartOnOwnPort(router,
                             {SOPFLOW_ROUTER_BIN, "--health-listen", "127.0.0.1:0",
                              "--tls-cert", cert, "--tls-key", key, "--redis", c.redis, "--nats", c.nats, "--tokens",
                              c.tokens_file, "--definitions", c.definitions_dir, "--not-serving-delay-ms", "3000",
                              "--drain-ms", "2000", "--log-level", "warn"},
                             {}, backends.dir + "/router.log", &port));
  // The health port it chose, on the port file's second line.
  int health_port = 0;
  {
    std::ifstream in(backends.dir + "/router.log.port");
    std::string api, word;
    in >> api >> word >> health_port;
    ASSERT_EQ(word, "health");
  }
  ASSERT_GT(health_port, 0);
  ASSERT_NE(health_port, port);
  ASSERT_TRUE(Listens(router, health_port));

  auto tls = OpenChannel("127.0.0.1:" + std::to_string(port), cert);
  auto stub = v1::Router::NewStub(tls);
  v1::ListDefinitionsResponse defs;
  grpc::Status st = stub->ListDefinitions(AuthedContext(kKaro).get(), {}, &defs);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(defs.definitions_size(), 3);
  // The API port speaks only TLS.
  auto plain = RouterStub(port);
  EXPECT_EQ(plain->ListDefinitions(AuthedContext(kKaro, std::chrono::seconds(2)).get(), {}, &defs).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // The health port answers health, plaintext, and serves nothing else.
  auto health = OpenChannel("127.0.0.1:" + std::to_string(health_port));
  grpc::Status hs;
  EXPECT_EQ(HealthOf(health, &hs), kServing);
  EXPECT_TRUE(hs.ok()) << hs.error_message();
  EXPECT_EQ(v1::Router::NewStub(health)->ListDefinitions(AuthedContext(kKaro).get(), {}, &defs).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  kill(router.pid(), SIGTERM);
  ASSERT_TRUE(WaitUntil([&] { return HealthOf(health, &hs) == kNotServing; }, 10000))
      << "NOT_SERVING after SIGTERM";
  st = stub->ListDefinitions(AuthedContext(kKaro).get(), {}, &defs);
  EXPECT_TRUE(st.ok()) << "still answering while load balancers let go: " << st.error_message();
  EXPECT_EQ(router.WaitExit(15000), 0);
}

// cert-manager renews a certificate by rewriting the mounted Secret; the
// server serves the new one to new connections without a restart.
TEST(DeploymentShapeTest, ARenewedCertificateIsServedWithoutARestart) {
  std::string dir = MakeTempDir("sopflow-tls");
  const std::string key = dir + "/tls.key", cert = dir + "/tls.crt";
  ASSERT_TRUE(MakeCertificate(key, cert, dir + "/openssl.log"));
  const std::string old_cert = ReadText(cert);
  ServerOptions options;
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  options.tls_reload = std::chrono::seconds(1);
  options.users = UserDirectory::LoadFile(SourcePath("deploy/overlays/dev/tokens.yaml"));
  ServerHost server(options);
  server.Start();
  const std::string address = "127.0.0.1:" + std::to_string(server.port());
  grpc::Status status;
  EXPECT_EQ(HealthOf(OpenChannel(address, cert), &status), kServing) << status.error_message();

  // The renewal: a new key and certificate, each moved into place whole.
  ASSERT_TRUE(MakeCertificate(dir + "/new.key", dir + "/new.crt", dir + "/openssl.log"));
  std::filesystem::rename(dir + "/new.key", key);
  std::filesystem::rename(dir + "/new.crt", cert);
  std::ofstream(dir + "/old.crt") << old_cert;
  // A client that trusts only the new certificate gets through once the
  // server has read it (a fresh channel each time: a new handshake)...
  EXPECT_TRUE(WaitUntil([&] { return HealthOf(OpenChannel(address, cert), &status) == kServing; }, 15000))
      << status.error_message();
  // ...and one that trusts only the old certificate no longer does.
  EXPECT_NE(HealthOf(OpenChannel(address, dir + "/old.crt"), &status), kServing);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  server.Shutdown(std::chrono::milliseconds(100));
  RemoveTree(dir);
}

}  // namespace
}  // namespace sopflow::testing

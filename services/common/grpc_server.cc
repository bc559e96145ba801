#include "grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/server_interceptor.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "grpc_client.h"
#include "metrics.h"
#include "service_config.h"

namespace sopflow {

// The calls a server holds: from when gRPC hands one to the interceptors
// until it is destroyed, its status sent.
class LiveCalls {
 public:
  void Add() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
  }
  void Remove() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ == 0) changed_.notify_all();
  }
  // Waits until no call is live (true), `until` passes or Stop (false).
  bool WaitForNone(std::chrono::steady_clock::time_point until) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_until(lock, until, [&] { return count_ == 0 || stopped_; });
    return count_ == 0 && !stopped_;
  }
  // Waits out `quiet` unless stopped; true if no call is live at its end.
  bool NoneAfter(std::chrono::milliseconds quiet) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, quiet, [&] { return stopped_; });
    return count_ == 0 && !stopped_;
  }
  void Stop(bool stopped) {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = stopped;
    changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int64_t count_ = 0;
  bool stopped_ = false;
};

namespace {

// Methods callable without a token: probes and tooling.
bool IsPublicMethod(std::string_view path) {
  return path.rfind("/grpc.health.v1.Health/", 0) == 0 || path.rfind("/grpc.reflection.", 0) == 0;
}

class BearerTokenProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenProcessor(std::shared_ptr<const UserDirectory> users) : users_(std::move(users)) {}
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& md, grpc::AuthContext*, OutputMetadata*,
                       OutputMetadata*) override {
    auto path = md.find(":path");
    bool is_public = path != md.end() && IsPublicMethod(std::string_view(path->second.data(), path->second.size()));
    auto auth = md.find("authorization");
    if (auth == md.end()) {
      if (is_public) return grpc::Status::OK;
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing 'authorization: Bearer <token>'");
    }
    std::string value(auth->second.data(), auth->second.size());
    constexpr std::string_view kPrefix = "Bearer ";
    if (value.rfind(kPrefix, 0) != 0)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "authorization must be 'Bearer <token>'");
    if (!users_->FindByToken(value.substr(kPrefix.size())))
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown token");
    // The identity is not stored in `ctx`: with these credentials the auth
    // context belongs to the connection, which many users' calls may share
    // (and concurrent AddProperty calls race). CallerOf reads the call's own
    // header instead.
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<const UserDirectory> users_;
};

// Access log and request metrics for every call, handlers untouched; and
// the count of live calls a drain waits for.
class CallObserver final : public grpc::experimental::Interceptor {
 public:
  CallObserver(grpc::experimental::ServerRpcInfo* info, std::shared_ptr<LiveCalls> live)
      : method_(info->method()), start_(std::chrono::steady_clock::now()), live_(std::move(live)) {
    live_->Add();
  }
  ~CallObserver() override { live_->Remove(); }  // the call is gone, its status sent

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      std::string code = StatusCodeName(status.error_code());
      Metrics::Global().Count("sopflow_grpc_requests_total", "method=\"" + method_ + "\",code=\"" + code + "\"");
      Metrics::Global().Observe("sopflow_grpc_request_duration_seconds", "method=\"" + method_ + "\"", seconds);
      if (status.ok()) spdlog::debug("{} OK {:.3f} ms", method_, seconds * 1000);
      else spdlog::info("{} {} {:.3f} ms: {}", method_, code, seconds * 1000, status.error_message());
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  std::chrono::steady_clock::time_point start_;
  std::shared_ptr<LiveCalls> live_;
};

class CallObserverFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallObserverFactory(std::shared_ptr<LiveCalls> live) : live_(std::move(live)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new CallObserver(info, live_);
  }

 private:
  std::shared_ptr<LiveCalls> live_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::shared_ptr<grpc::ServerCredentials> MakeCredentials(const ServerOptions& o) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!o.tls_cert_file.empty() && !o.tls_key_file.empty()) {
    // Read once here: a missing or unreadable file fails the start, rather
    // than every handshake later. The watcher then keeps the pair current;
    // a pair that does not match (a half-written renewal) is not taken.
    ReadFile(o.tls_key_file);
    ReadFile(o.tls_cert_file);
    auto watcher = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        o.tls_key_file, o.tls_cert_file, static_cast<unsigned int>(o.tls_reload.count()));
    grpc::experimental::TlsServerCredentialsOptions tls(watcher);
    tls.watch_identity_key_cert_pairs();
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    creds = grpc::experimental::TlsServerCredentials(tls);
  } else {
    creds = grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  }
  creds->SetAuthMetadataProcessor(std::make_shared<BearerTokenProcessor>(o.users));
  return creds;
}

}  // namespace

grpc::Status ToGrpcStatus(const DomainError& e) {
  using grpc::StatusCode;
  StatusCode code = StatusCode::INTERNAL;
  switch (e.code()) {
    case ErrorCode::kInvalidArgument: code = StatusCode::INVALID_ARGUMENT; break;
    case ErrorCode::kNotFound: code = StatusCode::NOT_FOUND; break;
    case ErrorCode::kAlreadyExists: code = StatusCode::ALREADY_EXISTS; break;
    case ErrorCode::kFailedPrecondition: code = StatusCode::FAILED_PRECONDITION; break;
    case ErrorCode::kPermissionDenied: code = StatusCode::PERMISSION_DENIED; break;
    case ErrorCode::kUnauthenticated: code = StatusCode::UNAUTHENTICATED; break;
    case ErrorCode::kOutOfRange: code = StatusCode::OUT_OF_RANGE; break;
    case ErrorCode::kUnavailable: code = StatusCode::UNAVAILABLE; break;
    case ErrorCode::kInternal: code = StatusCode::INTERNAL; break;
  }
  return grpc::Status(code, e.what());
}

grpc::Status GuardedCall(const std::function<void()>& fn) {
  try {
    fn();
    return grpc::Status::OK;
  } catch (const DomainError& e) {
    return ToGrpcStatus(e);
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::INTERNAL, e.what());
  }
}

User CallerOf(const grpc::ServerContextBase& ctx, const UserDirectory& users) {
  const auto& md = ctx.client_metadata();
  auto auth = md.find("authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (auth != md.end()) {
    std::string_view value(auth->second.data(), auth->second.size());
    if (value.substr(0, kPrefix.size()) == kPrefix)
      if (auto user = users.FindByToken(std::string(value.substr(kPrefix.size())))) return *user;
  }
  throw DomainError(ErrorCode::kUnauthenticated, "no authenticated user");
}

ServerHost::ServerHost(ServerOptions options)
    : options_(std::move(options)), live_calls_(std::make_shared<LiveCalls>()) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
}

ServerHost::~ServerHost() {
  if (server_) Shutdown(std::chrono::milliseconds(0));
}

void ServerHost::AddService(grpc::Service* service) { builder_.RegisterService(service); }

void ServerHost::Start() {
  // gRPC sets SO_REUSEPORT by default on Linux: a second process given the
  // same port would then bind too and take a share of the connections
  // unnoticed (a stale replica, a mistyped flag). Off, it fails at start.
  builder_.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder_.AddListeningPort(options_.listen, MakeCredentials(options_), &port_);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<CallObserverFactory>(live_calls_));
  builder_.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder_.BuildAndStart();
  if (!server_ || port_ == 0) throw std::runtime_error("cannot listen on " + options_.listen);
  if (!options_.health_listen.empty()) {
    grpc::ServerBuilder health;  // the default health service only: no handler of ours is reachable here
    health.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    health.AddListeningPort(options_.health_listen, grpc::InsecureServerCredentials(), &health_port_);
    health_server_ = health.BuildAndStart();
    if (!health_server_ || health_port_ == 0) throw std::runtime_error("cannot listen on " + options_.health_listen);
  }
  SetServing(true);
}

void ServerHost::SetServing(bool serving) {
  for (auto* s : {server_.get(), health_server_.get()})
    if (s && s->GetHealthCheckService()) s->GetHealthCheckService()->SetServingStatus(serving);
}

void ServerHost::Shutdown(std::chrono::milliseconds grace) {
  if (!server_) return;
  SetServing(false);
  if (options_.not_serving_delay.count() > 0) std::this_thread::sleep_for(options_.not_serving_delay);
  auto deadline = std::chrono::steady_clock::now() + grace;
  live_calls_->Stop(false);
  std::thread closer([this, deadline] { CloseIdleConnectionsOnceCallsEnd(deadline); });
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  live_calls_->Stop(true);
  closer.join();
  server_->Wait();
  server_.reset();
  if (health_server_) {
    health_server_->Shutdown(std::chrono::system_clock::now());
    health_server_->Wait();
    health_server_.reset();
  }
}

// gRPC's shutdown ends when every connection has closed, and it closes a
// connection once the client has acknowledged the GOAWAY's ping. A client
// holding an idle channel reads nothing until it next polls (C-core
// clients every 5 s; gRPC gives up on one after 20 s), so one such client
// (every department's integration keeps one) held each drain that long or
// to its grace. Once no call is left there is nothing to wait for: the
// remaining connections are closed as gRPC would at the deadline.
// The quiet period lets clients that are reading close theirs first, and
// covers the moment before Shutdown has begun: a close that came too early
// only drops idle connections, and the loop closes again.
void ServerHost::CloseIdleConnectionsOnceCallsEnd(std::chrono::steady_clock::time_point deadline) {
  constexpr std::chrono::milliseconds kQuiet{100};
  while (std::chrono::steady_clock::now() + kQuiet < deadline) {
    if (!live_calls_->WaitForNone(deadline - kQuiet)) return;
    if (!live_calls_->NoneAfter(kQuiet)) continue;
    grpc_server_cancel_all_calls(server_->c_server());
  }
}

ServerOptions ServerOptionsFor(const ServiceConfig& c, std::shared_ptr<const UserDirectory> users) {
  ServerOptions o;
  o.listen = c.listen;
  o.tls_cert_file = c.tls_cert_file;
  o.tls_key_file = c.tls_key_file;
  o.tls_reload = std::chrono::seconds(c.tls_reload_s);
  o.users = std::move(users);
  o.health_listen = c.health_listen;
  o.not_serving_delay = std::chrono::milliseconds(c.not_serving_delay_ms);
  return o;
}

}  // namespace sopflow

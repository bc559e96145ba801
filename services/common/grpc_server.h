// What every sopflow gRPC server shares: credentials with bearer-token
// authentication (an AuthMetadataProcessor), grpc.health.v1, reflection,
// and the single mapping from DomainError to gRPC status codes.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "error.h"
#include "users.h"

namespace sopflow {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // port 0: pick a free one
  // With both set the server speaks TLS. Without, it accepts only loopback
  // peers (gRPC local credentials): safe by default, and what a service
  // mesh sidecar in front of the pod connects from.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The files are checked this often; a renewed pair (cert-manager writes
  // both into the mounted Secret) serves new handshakes without a restart.
  std::chrono::seconds tls_reload{60};
  std::shared_ptr<const UserDirectory> users;
  // Kubelet's gRPC probes speak neither TLS nor bearer tokens: when set, a
  // second, plaintext server here answers grpc.health.v1 and nothing else.
  std::string health_listen;
  // On Shutdown, report NOT_SERVING this long while still serving, so load
  // balancers and Kubernetes endpoints stop sending before the port closes.
  std::chrono::milliseconds not_serving_delay{0};
};

struct ServiceConfig;
class LiveCalls;
ServerOptions ServerOptionsFor(const ServiceConfig& config, std::shared_ptr<const UserDirectory> users);

// The one mapping from domain errors to gRPC status codes.
grpc::Status ToGrpcStatus(const DomainError& e);
// Runs `fn`, mapping any exception it throws to a status.
grpc::Status GuardedCall(const std::function<void()>& fn);

// The user the AuthMetadataProcessor authenticated for this call.
User CallerOf(const grpc::ServerContextBase& ctx, const UserDirectory& users);

// Runs a unary callback handler inline and finishes the call with the
// mapped status.
template <class Fn>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, Fn&& fn) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(GuardedCall(std::forward<Fn>(fn)));
  return reactor;
}

// Options for a stream reactor's write, one at a time, with `more_queued`
// behind it: gRPC's buffer hint may then hold it to send them together
// (the next write without the hint sends all). Never on the stream's first
// write (`wrote_before` false): that one carries the initial metadata,
// which a hint holds back until some other write on the connection, so the
// write would not complete and nothing queued behind it would go out.
inline grpc::WriteOptions QueuedWriteOptions(bool more_queued, bool wrote_before) {
  grpc::WriteOptions options;
  if (more_queued && wrote_before) options.set_buffer_hint();
  return options;
}

// A streaming call refused before it started (bad token or argument): a
// reactor that ends with `status` at once and frees itself.
template <class Reactor>
Reactor* Refused(const grpc::Status& status) {
  struct Refusal final : Reactor {
    explicit Refusal(const grpc::Status& s) { this->Finish(s); }
    void OnDone() override { delete this; }
  };
  return new Refusal(status);
}

// A server with health and reflection, built from services added by the
// caller.
class ServerHost {
 public:
  explicit ServerHost(ServerOptions options);
  ~ServerHost();
  void AddService(grpc::Service* service);
  void Start();  // throws std::runtime_error if it cannot listen
  int port() const { return port_; }
  int health_port() const { return health_port_; }
  void SetServing(bool serving);
  // Reports NOT_SERVING (for not_serving_delay), then stops accepting calls
  // and waits up to `grace` for running ones; returns once they are done,
  // whether or not clients still hold idle connections.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  void CloseIdleConnectionsOnceCallsEnd(std::chrono::steady_clock::time_point deadline);

  ServerOptions options_;
  std::shared_ptr<LiveCalls> live_calls_;
  grpc::ServerBuilder builder_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  int port_ = 0;
  int health_port_ = 0;
};

}  // namespace sopflow

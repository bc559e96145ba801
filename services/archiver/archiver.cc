#include "archiver.h"

#include <spdlog/spdlog.h>

#include "engine.h"
#include "event_consumer.h"
#include "event_types.h"
#include "grpc_client.h"
#include "grpc_server.h"
#include "ids.h"
#include "service.h"
#include "sopflow/v1/aggregator.grpc.pb.h"
#include "sopflow/v1/router.grpc.pb.h"

namespace sopflow::archiver {

struct ArchiverProcess::Impl {
  Config config;
  const Clock* clock;
  std::shared_ptr<const UserDirectory> users;
  std::unique_ptr<RedisPool> pool;
  std::unique_ptr<DirectoryBlobStore> blobs;
  std::unique_ptr<NatsClient> nats;
  std::unique_ptr<v1::Router::Stub> router;
  std::unique_ptr<v1::Aggregator::Stub> aggregator;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EventConsumer> consumer;
  std::unique_ptr<ArchiverService> service;
  std::unique_ptr<ServerHost> server;
  std::unique_ptr<MetricsEndpoint> metrics;

  // gRPC failures as domain errors: transient ones come back as UNAVAILABLE.
  static void Check(const grpc::Status& st, const std::string& what) {
    if (st.ok()) return;
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) ThrowNotFound(what + ": " + st.error_message());
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE || st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      ThrowUnavailable(what + ": " + st.error_message());
    throw DomainError(ErrorCode::kInternal, what + ": " + st.error_message());
  }

  Sources MakeSources() {
    Sources s;
    s.run = [this](const std::string& run_id) {
      v1::GetRunRequest req;
      req.set_run_id(run_id);
      v1::GetRunResponse resp;
      Check(router->GetRun(AuthedContext(config.service_token).get(), req, &resp), "router GetRun");
      return resp;
    };
    s.definition = [this](const std::string& id, uint32_t version) {
      v1::GetDefinitionRequest req;
      req.set_id(id);
      req.set_version(version);
      v1::Definition resp;
      Check(router->GetDefinition(AuthedContext(config.service_token).get(), req, &resp), "router GetDefinition");
      return resp;
    };
    s.report = [this](const std::string& run_id) -> std::optional<std::pair<std::string, std::string>> {
      if (!aggregator) return std::nullopt;
      v1::GetReportRequest req;
      req.set_run_id(run_id);
      v1::PerformanceReport report;
      grpc::Status st = aggregator->GetReport(AuthedContext(config.service_token).get(), req, &report);
      if (st.error_code() == grpc::StatusCode::NOT_FOUND || st.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
        return std::nullopt;  // the run has no collecting step
      Check(st, "aggregator GetReport");
      v1::ExportReportRequest ex;
      ex.set_run_id(run_id);
      ex.set_format(v1::ExportReportRequest::HTML);
      v1::ReportFile html;
      Check(aggregator->ExportReport(AuthedContext(config.service_token).get(), ex, &html), "aggregator ExportReport");
      return std::make_pair(report.SerializeAsString(), html.content());
    };
    return s;
  }
};

ArchiverProcess::ArchiverProcess(Config config, const Clock* clock) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->clock = clock;
  if (impl_->config.replica_id.empty()) impl_->config.replica_id = DefaultReplicaId();
}

ArchiverProcess::~ArchiverProcess() { Shutdown(); }

void ArchiverProcess::Start() {
  auto& c = impl_->config;
  impl_->users = UserDirectory::LoadFile(c.tokens_file);
  // A token the router would refuse would leave every completed run
  // unfiled (its event terminated, with an error in the log).
  RequireServiceAccount(*impl_->users, c.tokens_file, c.service_token,
                        {"archiver", "--service-token", "read_runs",
                         "the router's GetRun and the aggregator's GetReport ask of a service"});
  auto rules = Rules::Load(c.rules_dir + "/klasifikasi.yaml", c.rules_dir + "/jra.yaml", c.rules_dir + "/berkas.yaml");
  impl_->pool = std::make_unique<RedisPool>(RedisAddress::Parse(c.redis), c.redis_pool);
  impl_->blobs = std::make_unique<DirectoryBlobStore>(c.blob_dir);
  impl_->router = v1::Router::NewStub(OpenChannel(c.router, c.tls_ca_file));
  if (!c.aggregator.empty()) impl_->aggregator = v1::Aggregator::NewStub(OpenChannel(c.aggregator, c.tls_ca_file));
  impl_->engine = std::make_unique<Engine>(impl_->pool.get(), impl_->blobs.get(), impl_->clock, rules, impl_->MakeSources());
  impl_->nats = std::make_unique<NatsClient>(NatsOptions{c.nats, "sopflow-archiver-" + c.replica_id, true});
  impl_->nats->EnsureEventStream(c.stream_replicas);
  EventConsumer::Options options;
  options.durable = "archiver";
  options.filter_subject = events::kRunCompleted;
  options.ack_wait_ms = c.ack_wait_ms;
  Engine* engine = impl_->engine.get();
  impl_->consumer = std::make_unique<EventConsumer>(impl_->nats.get(), options, [engine](const v1::Event& e) {
    if (e.has_run_completed()) engine->FileRun(std::nullopt, e.run_id());
  });
  impl_->service = std::make_unique<ArchiverService>(impl_->engine.get(), impl_->users);
  impl_->server = std::make_unique<ServerHost>(ServerOptionsFor(c, impl_->users));
  impl_->server->AddService(impl_->service.get());
  impl_->server->Start();
  impl_->consumer->Start();
  impl_->metrics = ServeMetrics(c.metrics_listen, impl_->consumer.get());
  spdlog::info("archiver {} listening on port {}", c.replica_id, impl_->server->port());
}

int ArchiverProcess::port() const { return impl_->server ? impl_->server->port() : 0; }
int ArchiverProcess::health_port() const { return impl_->server ? impl_->server->health_port() : 0; }

void ArchiverProcess::Shutdown() {
  if (!impl_ || !impl_->server) return;
  impl_->server->Shutdown(std::chrono::milliseconds(impl_->config.drain_ms));
  impl_->metrics.reset();
  impl_->consumer->Stop();
  impl_->server.reset();
}

}  // namespace sopflow::archiver

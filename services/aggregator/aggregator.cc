#include "aggregator.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "event_consumer.h"
#include "grpc_client.h"
#include "grpc_server.h"
#include "ids.h"
#include "outbox_relay.h"
#include "service.h"
#include "sopflow/v1/router.grpc.pb.h"
#include "thread_name.h"

namespace sopflow::aggregator {

struct AggregatorProcess::Impl {
  Config config;
  const Clock* clock;
  std::shared_ptr<const UserDirectory> users;
  std::unique_ptr<RedisPool> pool;
  std::unique_ptr<NatsClient> nats;
  std::unique_ptr<NatsClient> publisher;
  std::unique_ptr<v1::Router::Stub> router;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EventConsumer> consumer;
  std::unique_ptr<OutboxRelay> relay;
  std::unique_ptr<AggregatorService> service;
  std::unique_ptr<ServerHost> server;
  std::unique_ptr<MetricsEndpoint> metrics;
  std::atomic<bool> running{false};
  std::thread deadlines;

  void Attach(const std::string& task_id, const v1::DocumentRef& doc) {
    v1::AttachDocumentRequest req;
    req.set_task_id(task_id);
    *req.mutable_document() = doc;
    v1::Task out;
    grpc::Status st = router->AttachDocument(AuthedContext(config.router_token).get(), req, &out);
    if (st.ok()) return;
    // The router created the next task before the event was published
    // (in the transaction that ended the step), so NOT_FOUND is unexpected;
    // like UNAVAILABLE it is retried: the event comes back.
    if (st.error_code() == grpc::StatusCode::NOT_FOUND || st.error_code() == grpc::StatusCode::UNAVAILABLE ||
        st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      throw DomainError(ErrorCode::kUnavailable, "attach to " + task_id + ": " + st.error_message());
    throw DomainError(ErrorCode::kInternal, "attach to " + task_id + ": " + st.error_message());
  }

  void DeadlineLoop() {
    while (running) {
      try {
        if (consumer->Backlog() == 0) engine->FireDeadlines();  // first learn who submitted
      } catch (const std::exception& e) {
        spdlog::warn("deadlines: {}", e.what());
      }
      SleepWhileRunning(running, std::chrono::milliseconds(config.deadline_interval_ms));
    }
  }
};

AggregatorProcess::AggregatorProcess(Config config, const Clock* clock) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->clock = clock;
  if (impl_->config.replica_id.empty()) impl_->config.replica_id = DefaultReplicaId();
}

AggregatorProcess::~AggregatorProcess() { Shutdown(); }

void AggregatorProcess::Start() {
  auto& c = impl_->config;
  impl_->users = UserDirectory::LoadFile(c.tokens_file);
  // A token the router would refuse would leave every report unattached.
  RequireServiceAccount(*impl_->users, c.tokens_file, c.router_token,
                        {"aggregator", "--router-token", "attach_documents", "the router's AttachDocument asks"});
  impl_->pool = std::make_unique<RedisPool>(RedisAddress::Parse(c.redis), c.redis_pool);
  impl_->nats = std::make_unique<NatsClient>(NatsOptions{c.nats, "sopflow-aggregator-" + c.replica_id, true});
  impl_->nats->EnsureEventStream(c.stream_replicas);
  impl_->publisher = std::make_unique<NatsClient>(NatsOptions{c.nats, "sopflow-aggregator-pub-" + c.replica_id, false});
  impl_->router = v1::Router::NewStub(OpenChannel(c.router, c.tls_ca_file));
  Impl* impl = impl_.get();
  impl_->engine = std::make_unique<Engine>(
      impl_->pool.get(), impl_->clock,
      [impl](const std::string& task, const v1::DocumentRef& doc) { impl->Attach(task, doc); },
      "sopflow/aggregator/" + c.replica_id);
  if (!c.catalogues_dir.empty()) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(c.catalogues_dir))
      if (e.path().extension() == ".yaml") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f);
      std::stringstream text;
      text << in.rdbuf();
      impl_->engine->LoadCatalogueTrusted(text.str(), f.filename().string());
    }
  }
  EventConsumer::Options options;
  options.durable = "aggregator";
  options.filter_subject = kEventSubjects;  // the whole stream: made without a filter (PullConsumer)
  options.ack_wait_ms = c.ack_wait_ms;
  Engine* engine = impl_->engine.get();
  impl_->consumer = std::make_unique<EventConsumer>(impl_->nats.get(), options,
                                                    [engine](const v1::Event& e) { engine->OnEvent(e); });
  OutboxRelay::Options relay_options;
  relay_options.stream = kOutbox;
  impl_->relay = std::make_unique<OutboxRelay>(RedisAddress::Parse(c.redis), impl_->publisher.get(), relay_options);
  impl_->engine->PublishThrough(impl_->relay.get());
  impl_->service = std::make_unique<AggregatorService>(impl_->engine.get(), impl_->users);
  impl_->server = std::make_unique<ServerHost>(ServerOptionsFor(c, impl_->users));
  impl_->server->AddService(impl_->service.get());
  impl_->server->Start();
  impl_->running = true;
  impl_->consumer->Start();
  impl_->relay->Start();
  impl_->deadlines = NamedThread("sf-deadlines", [impl] { impl->DeadlineLoop(); });
  // Two things can lag: the events it consumes, and its own outbox (the
  // late-submission events it publishes).
  impl_->metrics = ServeMetricsWithGauges(
      c.metrics_listen, {ConsumerBacklogGauge(impl_->consumer.get()), OutboxBacklogGauge(impl_->relay.get())});
  spdlog::info("aggregator {} listening on port {}", c.replica_id, impl_->server->port());
}

int AggregatorProcess::port() const { return impl_->server ? impl_->server->port() : 0; }
int AggregatorProcess::health_port() const { return impl_->server ? impl_->server->health_port() : 0; }
int AggregatorProcess::metrics_port() const { return impl_->metrics ? impl_->metrics->port() : 0; }

void AggregatorProcess::Shutdown() {
  if (!impl_ || !impl_->server) return;
  impl_->server->Shutdown(std::chrono::milliseconds(impl_->config.drain_ms));
  impl_->metrics.reset();
  impl_->consumer->Stop();
  impl_->running = false;
  if (impl_->deadlines.joinable()) impl_->deadlines.join();
  impl_->relay->Drain();
  impl_->server.reset();
}

}  // namespace sopflow::aggregator

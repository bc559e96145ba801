#include "router.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine.h"
#include "grpc_server.h"
#include "metrics_http.h"
#include "ids.h"
#include "outbox_relay.h"
#include "service.h"
#include "store.h"

namespace sopflow {

struct RouterProcess::Impl {
  RouterConfig config;
  const Clock* clock;
  std::shared_ptr<const UserDirectory> users;
  std::unique_ptr<RedisPool> pool;
  std::unique_ptr<Store> store;
  std::unique_ptr<NatsClient> publisher;  // buffered; the relay adds a send-asap sibling
  std::unique_ptr<Engine> engine;
  std::unique_ptr<OutboxRelay> relay;
  std::unique_ptr<RouterService> service;
  std::unique_ptr<ServerHost> server;
  std::unique_ptr<MetricsEndpoint> metrics;
};

namespace {
void DeployDirectory(Engine& engine, const std::string& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".yaml" || entry.path().extension() == ".yml") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    auto result = engine.DeployTrusted(text.str(), path.filename().string(), "system:" + path.filename().string());
    spdlog::info("definition {} v{} from {}{}", result.definition().id(), result.definition().version(),
                 path.filename().string(), result.created() ? " (new)" : "");
  }
}
}  // namespace

RouterProcess::RouterProcess(RouterConfig config, const Clock* clock) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->clock = clock;
  if (impl_->config.replica_id.empty()) impl_->config.replica_id = DefaultReplicaId();
}

RouterProcess::~RouterProcess() { Shutdown(); }

void RouterProcess::Start() {
  auto& c = impl_->config;
  impl_->users = UserDirectory::LoadFile(c.tokens_file);
  impl_->pool = std::make_unique<RedisPool>(RedisAddress::Parse(c.redis), c.redis_pool);
  impl_->store = std::make_unique<Store>(impl_->pool.get());
  impl_->publisher = std::make_unique<NatsClient>(NatsOptions{c.nats, "sopflow-router-pub-" + c.replica_id, false});
  impl_->publisher->EnsureEventStream(c.stream_replicas);
  auto calendar = c.calendar_file.empty() ? WorkCalendar::Default() : WorkCalendar::LoadFile(c.calendar_file);
  impl_->engine =
      std::make_unique<Engine>(impl_->store.get(), impl_->clock, "sopflow/router/" + c.replica_id, calendar);
  // Room for the CloudEvents headers and the subject.
  constexpr int64_t kHeaderRoom = 8192;
  impl_->engine->RememberRecent(static_cast<size_t>(std::max(c.recent_tasks, 0)));
  impl_->engine->LimitEventBytes(static_cast<size_t>(std::max<int64_t>(impl_->publisher->MaxPayload() - kHeaderRoom, 0)));
  if (!c.definitions_dir.empty()) DeployDirectory(*impl_->engine, c.definitions_dir);
  // Runs started before this version indexed who may read them: listed
  // for their units from now on (ListRuns).
  if (size_t indexed = impl_->engine->IndexReadableRuns())
    spdlog::info("indexed {} runs for the units that may read them", indexed);

  OutboxRelay::Options relay_options;
  relay_options.orphan_after_ms = c.relay_reclaim_idle_ms;
  impl_->relay = std::make_unique<OutboxRelay>(RedisAddress::Parse(c.redis), impl_->publisher.get(), relay_options);
  impl_->store->PublishThrough(impl_->relay.get());

  impl_->service = std::make_unique<RouterService>(impl_->engine.get(), impl_->users);
  impl_->server = std::make_unique<ServerHost>(ServerOptionsFor(c, impl_->users));
  impl_->server->AddService(impl_->service.get());
  impl_->server->Start();
  impl_->relay->Start();
  // The router consumes no events (it routes in the completing
  // transaction); what can lag is the relay.
  impl_->metrics = ServeMetricsWithGauges(c.metrics_listen, {OutboxBacklogGauge(impl_->relay.get())});
  spdlog::info("router {} listening on port {}", c.replica_id, impl_->server->port());
}

int RouterProcess::port() const { return impl_->server ? impl_->server->port() : 0; }
int RouterProcess::health_port() const { return impl_->server ? impl_->server->health_port() : 0; }
int RouterProcess::metrics_port() const { return impl_->metrics ? impl_->metrics->port() : 0; }

void RouterProcess::Shutdown() {
  if (!impl_ || !impl_->server) return;
  // Streams first: an idle one would otherwise hold the drain to its deadline.
  impl_->service->DrainStreams();
  impl_->server->Shutdown(std::chrono::milliseconds(impl_->config.drain_ms));
  impl_->metrics.reset();
  impl_->relay->Drain();  // after the server: events of the last calls still go out
  impl_->server.reset();
}

}  // namespace sopflow

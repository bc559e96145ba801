#include "notifier.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "declared_webhooks.h"
#include "event_consumer.h"
#include "event_types.h"
#include "error.h"
#include "grpc_client.h"
#include "grpc_server.h"
#include "ids.h"
#include "service.h"
#include "thread_name.h"
#include "sopflow/v1/router.grpc.pb.h"
#include "wake_signal.h"

namespace sopflow::notifier {

struct NotifierProcess::Impl {
  Config config;
  const Clock* clock;
  std::shared_ptr<const UserDirectory> users;
  std::unique_ptr<RedisPool> pool;
  std::unique_ptr<Store> store;
  std::unique_ptr<NatsClient> nats;
  std::unique_ptr<v1::Router::Stub> router;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EventConsumer> consumer;
  std::unique_ptr<NotifierService> service;
  std::unique_ptr<ServerHost> server;
  std::unique_ptr<MetricsEndpoint> metrics;
  std::atomic<bool> running{false};
  WakeSignal deliveries_scheduled;
  std::vector<std::thread> loops;

  // What a firing timer knows of its task: the router's answer now. Not
  // found is an answer (the timer goes); any other failure is not (the
  // timer stays claimed and fires again after its lease).
  std::optional<v1::Task> AskRouter(const std::string& task_id) {
    v1::GetTaskRequest req;
    req.set_task_id(task_id);
    v1::Task task;
    grpc::Status st = router->GetTask(AuthedContext(config.service_token, std::chrono::seconds(5)).get(), req, &task);
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) return std::nullopt;
    if (!st.ok())
      throw DomainError(ErrorCode::kUnavailable,
                        "router GetTask " + task_id + ": " + StatusCodeName(st.error_code()) + " " + st.error_message());
    return task;
  }

  void TimerLoop() {
    while (running) {
      size_t taken = 0;
      try {
        // No wait for the consumer's backlog: a task completed while this
        // notifier was down is done in the router's answer, whatever
        // events are still to be handled.
        engine->FireDueTimers(Engine::kTimersPerPass, &taken);
      } catch (const std::exception& e) {
        spdlog::warn("timers: {}", e.what());
        taken = 0;  // the router or Redis is away: not at once again
      }
      // A full pass: more may be due (a quarter-end burst of due times).
      // Look again at once, not a pause per hundred reminders.
      if (taken == static_cast<size_t>(Engine::kTimersPerPass)) continue;
      SleepWhileRunning(running, std::chrono::milliseconds(config.timer_interval_ms));
    }
  }

  void SweepLoop() {
    const auto look_every = std::chrono::milliseconds(std::min<int64_t>(config.sweep_interval_ms, 60000));
    // Between pages the sweep waits: 1.1 million keys take about 30 s an
    // interval instead of 2 s, and the chain's commands wait behind one
    // page of 100 keys at most, not a stream of them.
    const auto pause = std::chrono::milliseconds(2);
    auto between_pages = [this, pause] {
      SleepWhileRunning(running, pause);
      return running.load();
    };
    while (running) {
      try {
        engine->SweepExpired(config.replica_id, config.sweep_interval_ms, between_pages);
      } catch (const std::exception& e) {
        spdlog::warn("sweep: {}", e.what());  // the next look, or another replica, sweeps
      }
      SleepWhileRunning(running, look_every);
    }
  }

  // Polls due deliveries: at once again while there are some, then less and
  // less often while there are none (up to delivery_idle_max_ms), and at
  // once when this replica schedules one. An idle notifier so costs Redis
  // about one script call per worker per second instead of fifty; what
  // another replica schedules, that replica's own workers take.
  void DeliveryLoop() {
    IdleBackoff backoff(std::chrono::milliseconds(config.loop_interval_ms),
                        std::chrono::milliseconds(std::max(config.loop_interval_ms, config.delivery_idle_max_ms)));
    WakeSignal::Cursor cursor;
    while (running) {
      size_t done = 0;
      try {
        done = engine->DeliverDue();
      } catch (const std::exception& e) {
        spdlog::warn("deliveries: {}", e.what());
      }
      auto pause = backoff.After(done > 0);
      if (done > 0) continue;  // more may be due: look again at once
      if (deliveries_scheduled.WaitFor(cursor, pause)) backoff.Reset();
    }
  }
};

namespace {
// Dead letters a notifier of the version before DeadOf may have written
// during a rolling update: looked at again by every notifier that starts.
constexpr int64_t kRecentDeadMs = 3600 * 1000;
}  // namespace

NotifierProcess::NotifierProcess(Config config, const Clock* clock) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->clock = clock;
  if (impl_->config.replica_id.empty()) impl_->config.replica_id = DefaultReplicaId();
}

NotifierProcess::~NotifierProcess() { Shutdown(); }

void NotifierProcess::Start() {
  auto& c = impl_->config;
  impl_->users = UserDirectory::LoadFile(c.tokens_file);
  if (c.router.empty()) throw std::invalid_argument("notifier: the router's address is required (--router)");
  // A token the router would refuse would fail every reminder, each
  // retried only when its lease runs out.
  RequireServiceAccount(*impl_->users, c.tokens_file, c.service_token,
                        {"notifier", "--service-token", "read_runs", "the router's GetTask asks of a service"});
  auto calendar = c.calendar_file.empty() ? WorkCalendar::Default() : WorkCalendar::LoadFile(c.calendar_file);
  auto composer = std::make_shared<Composer>(impl_->users, Templates::Load(c.templates_dir), calendar);
  impl_->pool = std::make_unique<RedisPool>(RedisAddress::Parse(c.redis), c.redis_pool);
  impl_->store = std::make_unique<Store>(impl_->pool.get(), c.log_max_len);
  if (size_t indexed = impl_->store->IndexDeadLetters(kRecentDeadMs))
    spdlog::info("notifier: {} dead letters indexed by target", indexed);
  impl_->nats = std::make_unique<NatsClient>(NatsOptions{c.nats, "sopflow-notifier-" + c.replica_id, true});
  impl_->nats->EnsureEventStream(c.stream_replicas);
  impl_->router = v1::Router::NewStub(OpenChannel(c.router, c.tls_ca_file));
  impl_->engine = std::make_unique<Engine>(
      impl_->store.get(), impl_->clock, composer,
      [impl = impl_.get()](const std::string& task_id) { return impl->AskRouter(task_id); }, c.options);
  impl_->engine->OnDeliveriesScheduled([impl = impl_.get()] { impl->deliveries_scheduled.Notify(); });
  if (!c.webhooks_file.empty()) impl_->engine->DeclareWebhooks(LoadDeclaredWebhooks(c.webhooks_file, ProcessEnvironment()));
  EventConsumer::Options consumer_options;
  consumer_options.durable = "notifier";
  consumer_options.filter_subject = kEventSubjects;  // the whole stream: made without a filter (PullConsumer)
  consumer_options.ignored_subjects = {events::kRunStarted, events::kStepCompleted,
                                      events::kTaskClaimed};  // Engine::RecordFor has no use for them
  consumer_options.ack_wait_ms = c.ack_wait_ms;
  Engine* engine = impl_->engine.get();
  impl_->consumer = std::make_unique<EventConsumer>(impl_->nats.get(), consumer_options,
                                                    EventConsumer::BatchHandler([engine](const std::vector<v1::Event>& events) {
                                                      engine->OnEvents(events);
                                                    }));
  impl_->service = std::make_unique<NotifierService>(impl_->engine.get(), impl_->users, RedisAddress::Parse(c.redis));
  impl_->server = std::make_unique<ServerHost>(ServerOptionsFor(c, impl_->users));
  impl_->server->AddService(impl_->service.get());
  impl_->server->Start();
  impl_->running = true;
  impl_->consumer->Start();
  impl_->loops.push_back(NamedThread("sf-timers", [this] { impl_->TimerLoop(); }));
  impl_->loops.push_back(NamedThread("sf-sweep", [this] { impl_->SweepLoop(); }));
  for (int i = 0; i < c.delivery_workers; ++i) impl_->loops.push_back(NamedThread("sf-delivery", [this] { impl_->DeliveryLoop(); }));
  impl_->metrics = ServeMetrics(c.metrics_listen, impl_->consumer.get());
  spdlog::info("notifier {} listening on port {}", c.replica_id, impl_->server->port());
}

int NotifierProcess::port() const { return impl_->server ? impl_->server->port() : 0; }
int NotifierProcess::health_port() const { return impl_->server ? impl_->server->health_port() : 0; }

void NotifierProcess::Shutdown() {
  if (!impl_ || !impl_->server) return;
  impl_->service->StopStreams();
  impl_->server->Shutdown(std::chrono::milliseconds(impl_->config.drain_ms));
  impl_->metrics.reset();
  impl_->consumer->Stop();
  impl_->running = false;
  impl_->deliveries_scheduled.Notify();  // idle delivery workers stop waiting
  for (auto& t : impl_->loops) t.join();
  impl_->loops.clear();
  impl_->server.reset();
}

}  // namespace sopflow::notifier

#include "event_consumer.h"

#include <nats/nats.h>

#include <spdlog/spdlog.h>

#include "error.h"
#include "metrics.h"

namespace sopflow {

namespace {
ConsumerOptions ToConsumerOptions(const EventConsumer::Options& o) {
  ConsumerOptions c;
  c.durable = o.durable;
  c.filter_subject = o.filter_subject;
  c.ack_wait_ms = o.ack_wait_ms;
  return c;
}
}  // namespace

EventConsumer::EventConsumer(NatsClient* nats, Options options, Handler handler)
    : nats_(nats), options_(std::move(options)), handler_(std::move(handler)),
      consumer_(*nats, ToConsumerOptions(options_)) {}

int64_t ConsumerBacklog(NatsClient& nats, const std::string& durable) {
  jsConsumerInfo* ci = nullptr;
  if (js_GetConsumerInfo(&ci, nats.jetstream(), kEventStream, durable.c_str(), nullptr, nullptr) != NATS_OK) return -1;
  int64_t backlog = static_cast<int64_t>(ci->NumPending) + ci->NumAckPending;
  jsConsumerInfo_Destroy(ci);
  return backlog;
}

int64_t EventConsumer::Backlog() { return ConsumerBacklog(*nats_, options_.durable); }

EventConsumer::~EventConsumer() { Stop(); }

void EventConsumer::Start() {
  running_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void EventConsumer::Stop() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
}

void EventConsumer::Loop() {
  while (running_) {
    try {
      RunOnce();
    } catch (const std::exception& e) {
      spdlog::warn("event consumer {}: {}", options_.durable, e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

size_t EventConsumer::RunOnce() {
  auto messages = consumer_.Fetch(options_.batch, options_.fetch_timeout_ms);
  for (auto& msg : messages) {
    v1::Event event;
    if (!event.ParseFromString(msg.data())) {
      spdlog::error("event consumer: undecodable message on {}; terminated", msg.subject());
      msg.Term();
      continue;
    }
    try {
      handler_(event);
      msg.Ack();
    } catch (const DomainError& e) {
      if (e.code() == ErrorCode::kUnavailable) {
        msg.Nak(500);  // Redis is away: try again shortly
      } else {
        spdlog::error("event {}: {}; terminated", event.id(), e.what());
        msg.Term();
      }
    } catch (const std::exception& e) {
      spdlog::error("event {}: {}; will retry", event.id(), e.what());
      msg.Nak(1000);
    }
  }
  return messages.size();
}

std::unique_ptr<MetricsEndpoint> ServeMetrics(const std::string& listen, EventConsumer* consumer) {
  if (listen.empty()) return nullptr;
  return std::make_unique<MetricsEndpoint>(listen, [consumer] {
    Metrics::Global().Set("sopflow_consumer_backlog", "consumer=\"" + consumer->durable() + "\"",
                          static_cast<double>(consumer->Backlog()));
  });
}

}  // namespace sopflow

#include "event_consumer.h"

#include <nats/nats.h>

#include <spdlog/spdlog.h>

#include <algorithm>

#include "error.h"
#include "thread_name.h"

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
    : EventConsumer(nats, std::move(options), BatchHandler([handler = std::move(handler)](const std::vector<v1::Event>& events) {
        for (const auto& e : events) handler(e);
      })) {}

EventConsumer::EventConsumer(NatsClient* nats, Options options, BatchHandler handler)
    : nats_(nats), options_(std::move(options)), handler_(std::move(handler)),
      consumer_(*nats, ToConsumerOptions(options_)),
      // Acks go out buffered: they need no send-asap.
      acks_(std::make_unique<NatsClient>(SiblingOptions(nats->options(), "-acks", false))) {}

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
  thread_ = NamedThread("sf-consumer", [this] { Loop(); });
}

void EventConsumer::Stop() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
  acks_->Flush(2000);  // what was handled is acknowledged before we go
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
  std::vector<IncomingMessage> decoded;
  std::vector<v1::Event> events;
  decoded.reserve(messages.size());
  events.reserve(messages.size());
  std::vector<IncomingMessage> unread;  // on ignored subjects
  const auto& ignored = options_.ignored_subjects;
  for (auto& msg : messages) {
    if (!ignored.empty() && std::find(ignored.begin(), ignored.end(), msg.subject()) != ignored.end()) {
      unread.push_back(std::move(msg));
      continue;
    }
    v1::Event event;
    if (!event.ParseFromString(msg.data())) {
      spdlog::error("event consumer: undecodable message on {}; terminated", msg.subject());
      msg.Term();
      continue;
    }
    events.push_back(std::move(event));
    decoded.push_back(std::move(msg));
  }
  // A few acks go out at once; more share one write (AckOfFetch). The
  // unread ones are acked the same way: on the buffered connection alone,
  // each fetch's acks reached nats-server as two writes on two
  // connections, and it spent more per hand-off.
  auto ack = [&](IncomingMessage& msg) { msg.AckOfFetch(messages.size(), *acks_); };
  for (auto& msg : unread) ack(msg);
  if (events.empty()) return messages.size();
  try {
    handler_(events);
    for (auto& msg : decoded) ack(msg);
    return messages.size();
  } catch (const DomainError& e) {
    if (e.code() == ErrorCode::kUnavailable) {
      for (auto& msg : decoded) msg.Nak(500);  // Redis is away: try again shortly
      return messages.size();
    }
  } catch (const std::exception&) {
  }
  // Something in the batch failed: apply the events one at a time, so only
  // the event at fault is retried or terminated. Those applied before are
  // applied again harmlessly (handlers are idempotent).
  for (size_t i = 0; i < events.size(); ++i) ApplyAlone(decoded[i], events[i]);
  return messages.size();
}

void EventConsumer::ApplyAlone(IncomingMessage& msg, const v1::Event& event) {
  try {
    handler_({event});
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

ScrapedGauge ConsumerBacklogGauge(EventConsumer* consumer) {
  return {"sopflow_consumer_backlog", "consumer=\"" + consumer->durable() + "\"",
          [consumer] { return static_cast<double>(consumer->Backlog()); }};
}

std::unique_ptr<MetricsEndpoint> ServeMetrics(const std::string& listen, EventConsumer* consumer) {
  return ServeMetricsWithGauges(listen, {ConsumerBacklogGauge(consumer)});
}

}  // namespace sopflow

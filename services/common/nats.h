// NATS and JetStream through nats.c 3.4: a connection with its JetStream
// context, batched asynchronous publishing with per-message acks, and a
// pull consumer that fetches in batches.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

typedef struct __natsConnection natsConnection;
typedef struct __jsCtx jsCtx;
typedef struct __natsSubscription natsSubscription;
typedef struct __natsMsg natsMsg;
struct jsPubAckErr;

namespace sopflow {

// The stream all sopflow events go to, and the subjects it holds.
inline constexpr char kEventStream[] = "SOPFLOW";
inline constexpr char kEventSubjects[] = "sopflow.v1.>";

struct NatsOptions {
  std::string url = "nats://127.0.0.1:4222";
  std::string name = "sopflow";
  // Flush every message at once instead of from nats.c's flusher thread;
  // saves ~1 ms per request on consumers (see ../shared/TOOLCHAIN.md).
  bool send_asap = false;
  // How long connecting and the JetStream calls of start-up (stream and
  // consumer creation) keep retrying transient failures before giving up.
  int startup_wait_ms = 30000;
};

// A sibling connection's options: the same server and settings, its own
// name (`name_suffix` appended) and its own choice of send-asap. Sibling
// connections let one component both batch (buffered) and answer promptly
// (send-asap) without one mode's cost on the other's traffic.
NatsOptions SiblingOptions(NatsOptions options, const std::string& name_suffix, bool send_asap);

class NatsClient {
 public:
  explicit NatsClient(const NatsOptions& options);  // throws DomainError(kUnavailable)
  ~NatsClient();
  NatsClient(const NatsClient&) = delete;
  NatsClient& operator=(const NatsClient&) = delete;

  natsConnection* connection() const { return conn_; }
  const NatsOptions& options() const { return options_; }
  // Waits until the server has everything this connection buffered.
  void Flush(int timeout_ms);
  jsCtx* jetstream() const { return js_; }
  int startup_wait_ms() const { return options_.startup_wait_ms; }
  // The largest message the server takes (its max_payload), headers included.
  int64_t MaxPayload() const;

  // Calls `listener` each time the connection is back after losing its
  // server, on a nats.c thread (keep it short). Returns the handle for
  // RemoveReconnectListener, which its owner must call before it goes:
  // once that returns, the listener is not running and is never called.
  int AddReconnectListener(std::function<void()> listener);
  void RemoveReconnectListener(int handle);

  // Creates the event stream (file storage, `replicas` copies across a
  // JetStream cluster) if it does not exist yet.
  void EnsureEventStream(int replicas = 1, int64_t duplicate_window_ms = 120000, int64_t max_age_hours = 24 * 30);

  struct OutgoingMessage {
    std::string subject;
    std::string msg_id;  // Nats-Msg-Id: duplicates are dropped by the stream
    std::string data;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  // Publishes asynchronously and waits until the stream acknowledged every
  // message. Returns the msg_ids that were NOT stored (to retry later).
  // On a send-asap connection each message is written at once; on a
  // buffered one nats.c's flusher thread writes them (about 1 ms later at
  // light load, in few writes under load).
  std::vector<std::string> PublishAll(const std::vector<OutgoingMessage>& messages, int timeout_ms = 5000);

 private:
  static void OnPublishError(jsCtx* js, ::jsPubAckErr* err, void* closure);
  static void OnReconnected(natsConnection* conn, void* closure);
  NatsOptions options_;
  natsConnection* conn_ = nullptr;
  jsCtx* js_ = nullptr;
  std::mutex publish_mu_;  // one batch at a time, so failures belong to it
  std::mutex failed_mu_;
  std::set<std::string> failed_;
  std::mutex listeners_mu_;  // held while a listener runs
  std::map<int, std::function<void()>> reconnect_listeners_;
  int next_listener_ = 0;
};

// One fetched message; acks are explicit.
class IncomingMessage {
 public:
  explicit IncomingMessage(natsMsg* msg) : msg_(msg) {}
  ~IncomingMessage();
  IncomingMessage(IncomingMessage&& o) noexcept : msg_(o.msg_) { o.msg_ = nullptr; }
  IncomingMessage(const IncomingMessage&) = delete;

  std::string subject() const;
  std::string data() const;
  std::string header(const char* key) const;
  uint64_t delivery_count() const;
  void Ack();                       // done: never redeliver
  // The same, written into `buffered`'s buffer: a consumer's own connection
  // sends each message at once (its fetch requests need that), which made
  // every ack a write of its own; through a buffered connection the acks of
  // a batch leave in one write.
  void AckThrough(NatsClient& buffered);
  // Acks one of the `fetched` messages of a fetch: with a few, at once on
  // the message's own connection; with more, through `buffered`, so they
  // share one write (its flusher sends them a moment later, which at light
  // load would only add a wake-up beside the chain's own).
  void AckOfFetch(size_t fetched, NatsClient& buffered);
  void Nak(int64_t delay_ms);       // failed: redeliver after delay_ms
  void Term();                      // cannot ever be processed

 private:
  natsMsg* msg_;
};

struct ConsumerOptions {
  std::string durable;          // shared by all replicas: work is split among them
  std::string filter_subject;
  int64_t ack_wait_ms = 30000;  // redelivered if not acked in this time
  int64_t max_deliver = -1;     // unlimited
  int64_t max_ack_pending = 20000;
};

class PullConsumer {
 public:
  PullConsumer(NatsClient& client, const ConsumerOptions& options);
  ~PullConsumer();
  // Up to `batch` messages; empty when none arrived within timeout_ms.
  std::vector<IncomingMessage> Fetch(int batch, int timeout_ms);

 private:
  natsSubscription* sub_ = nullptr;
};

}  // namespace sopflow

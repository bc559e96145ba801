#include "nats.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "error.h"

namespace sopflow {

NatsOptions SiblingOptions(NatsOptions options, const std::string& name_suffix, bool send_asap) {
  options.name += name_suffix;
  options.send_asap = send_asap;
  return options;
}

namespace {
[[noreturn]] void ThrowNats(const std::string& what, natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) {
  std::string msg = what + ": " + natsStatus_GetText(s);
  if (jerr) msg += " (jetstream error " + std::to_string(static_cast<int>(jerr)) + ")";
  const char* last = nats_GetLastError(nullptr);
  if (last && *last) msg += ": " + std::string(last);
  ThrowUnavailable(msg);
}

bool IsTransient(natsStatus s, jsErrCode jerr) {
  return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_NO_SERVER || s == NATS_NOT_YET_CONNECTED ||
         s == NATS_CONNECTION_DISCONNECTED || jerr == JSClusterNotAvailErr || jerr == JSStreamOfflineErr;
}

// Start-up calls retry what passes by itself: a NATS server still starting
// or recovering its streams, a cluster electing its JetStream leader, a
// disk stalled by another process' fsync (a JetStream API call then times
// out). A service that exited instead would crash-loop on Kubernetes, or
// in a test, fail. `call` returns its status and sets *jerr.
template <typename Call>
natsStatus RetryWhileStarting(const std::string& what, int wait_ms, jsErrCode* jerr, Call call) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (int attempt = 1;; ++attempt) {
    *jerr = static_cast<jsErrCode>(0);
    natsStatus s = call();
    if (s == NATS_OK || !IsTransient(s, *jerr) || std::chrono::steady_clock::now() >= deadline) return s;
    spdlog::warn("{}: {} (attempt {}), retrying", what, natsStatus_GetText(s), attempt);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}
}  // namespace

NatsClient::NatsClient(const NatsOptions& options) : options_(options) {
  // nats.c spins up to 2,000 trylocks on a busy mutex before blocking. Its
  // reader thread met the relay's flushing thread that way on every PONG:
  // ~14,000 instructions each, 4% of the router's (callgrind). On two
  // cores a waiter does better to sleep. Must precede every other nats.c
  // call; later calls change nothing.
  static const bool opened = [] { return nats_Open(0) == NATS_OK; }();
  (void)opened;
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, options.url.c_str());
  if (s == NATS_OK) s = natsOptions_SetName(opts, options.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);  // keep trying: NATS restarts are normal
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 5000);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, &NatsClient::OnReconnected, this);
  if (s == NATS_OK && options.send_asap) s = natsOptions_SetSendAsap(opts, true);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (s == NATS_OK)
    s = RetryWhileStarting("nats connect " + options.url, options.startup_wait_ms, &jerr,
                           [&] { return natsConnection_Connect(&conn_, opts); });
  natsOptions_Destroy(opts);
  if (s != NATS_OK) ThrowNats("nats connect " + options.url, s);

  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.ErrHandler = &NatsClient::OnPublishError;
  jo.PublishAsync.ErrHandlerClosure = this;
  jo.PublishAsync.MaxPending = 4096;
  s = natsConnection_JetStream(&js_, conn_, &jo);
  if (s != NATS_OK) ThrowNats("jetstream context", s);
}

NatsClient::~NatsClient() {
  if (js_) jsCtx_Destroy(js_);
  if (conn_) {
    natsConnection_Close(conn_);
    natsConnection_Destroy(conn_);
  }
}

void NatsClient::EnsureEventStream(int replicas, int64_t duplicate_window_ms, int64_t max_age_hours) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {kEventSubjects};
  cfg.Name = kEventStream;
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  cfg.Duplicates = duplicate_window_ms * 1000000;
  cfg.MaxAge = max_age_hours * 3600LL * 1000000000LL;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = RetryWhileStarting("create stream " + std::string(kEventStream), startup_wait_ms(), &jerr, [&] {
    jsStreamInfo* si = nullptr;
    natsStatus added = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
    if (si) jsStreamInfo_Destroy(si);
    return added;
  });
  if (s == NATS_OK || jerr == JSStreamNameExistErr) return;
  // Services start together and each creates the stream; the server may
  // answer a loser of that race "subjects overlap with an existing stream"
  // (the winner's). Either way, what start-up needs is that it exists.
  jsStreamInfo* si = nullptr;
  jsErrCode lookup_err = static_cast<jsErrCode>(0);
  bool exists = js_GetStreamInfo(&si, js_, kEventStream, nullptr, &lookup_err) == NATS_OK;
  if (si) jsStreamInfo_Destroy(si);
  if (exists) return;
  ThrowNats("create stream " + std::string(kEventStream), s, jerr);
}

void NatsClient::Flush(int timeout_ms) {
  if (natsConnection_Status(conn_) != NATS_CONN_STATUS_CONNECTED) {
    // NATS is away (a drain after its shutdown): waiting cannot deliver it.
    int buffered = natsConnection_Buffered(conn_);
    if (buffered > 0) spdlog::warn("nats {}: not connected, {} buffered bytes not sent", options_.name, buffered);
    return;
  }
  // The PING round trip even when nats.c's buffer is empty: its flusher
  // thread may have written the buffer without the server having read it,
  // and only the PONG says the server has everything sent before.
  natsStatus s = natsConnection_FlushTimeout(conn_, timeout_ms);
  if (s != NATS_OK) spdlog::warn("nats flush {}: {}", options_.name, natsStatus_GetText(s));
}

void NatsClient::OnPublishError(jsCtx*, jsPubAckErr* err, void* closure) {
  auto* self = static_cast<NatsClient*>(closure);
  const char* id = nullptr;
  if (err->Msg && natsMsgHeader_Get(err->Msg, "Nats-Msg-Id", &id) == NATS_OK && id) {
    std::lock_guard lock(self->failed_mu_);
    self->failed_.insert(id);
  }
}

std::vector<std::string> NatsClient::PublishAll(const std::vector<OutgoingMessage>& messages, int timeout_ms) {
  std::lock_guard publish_lock(publish_mu_);
  {
    std::lock_guard lock(failed_mu_);
    failed_.clear();
  }
  std::vector<std::string> not_sent;
  for (const auto& m : messages) {
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, m.subject.c_str(), nullptr, m.data.data(), static_cast<int>(m.data.size()));
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", m.msg_id.c_str());
    for (const auto& [k, v] : m.headers)
      if (s == NATS_OK) s = natsMsgHeader_Set(msg, k.c_str(), v.c_str());
    if (s == NATS_OK) s = js_PublishMsgAsync(js_, &msg, nullptr);  // takes ownership on success
    if (msg) natsMsg_Destroy(msg);
    if (s != NATS_OK) not_sent.push_back(m.msg_id);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout_ms;
  natsStatus s = js_PublishAsyncComplete(js_, &po);
  std::lock_guard lock(failed_mu_);
  if (s != NATS_OK) {
    // Timed out: some acks did not arrive. Treat the whole batch as unsent;
    // a re-publish is harmless because the stream drops duplicate msg ids.
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) natsMsgList_Destroy(&pending);
    not_sent.clear();
    for (const auto& m : messages) not_sent.push_back(m.msg_id);
    return not_sent;
  }
  for (const auto& id : failed_) not_sent.push_back(id);
  return not_sent;
}

void NatsClient::OnReconnected(natsConnection*, void* closure) {
  auto* self = static_cast<NatsClient*>(closure);
  spdlog::info("nats {}: reconnected", self->options_.name);
  std::lock_guard lock(self->listeners_mu_);
  for (auto& [handle, listener] : self->reconnect_listeners_) listener();
}

int NatsClient::AddReconnectListener(std::function<void()> listener) {
  std::lock_guard lock(listeners_mu_);
  reconnect_listeners_.emplace(next_listener_, std::move(listener));
  return next_listener_++;
}

void NatsClient::RemoveReconnectListener(int handle) {
  std::lock_guard lock(listeners_mu_);
  reconnect_listeners_.erase(handle);
}

int64_t NatsClient::MaxPayload() const { return natsConnection_GetMaxPayload(conn_); }

IncomingMessage::~IncomingMessage() {
  if (msg_) natsMsg_Destroy(msg_);
}

std::string IncomingMessage::subject() const { return natsMsg_GetSubject(msg_); }

std::string IncomingMessage::data() const {
  return std::string(natsMsg_GetData(msg_), static_cast<size_t>(natsMsg_GetDataLength(msg_)));
}

std::string IncomingMessage::header(const char* key) const {
  const char* v = nullptr;
  if (natsMsgHeader_Get(msg_, key, &v) == NATS_OK && v) return v;
  return {};
}

uint64_t IncomingMessage::delivery_count() const {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg_) != NATS_OK) return 0;
  uint64_t n = meta->NumDelivered;
  jsMsgMetaData_Destroy(meta);
  return n;
}

void IncomingMessage::Ack() { natsMsg_Ack(msg_, nullptr); }

void IncomingMessage::AckThrough(NatsClient& buffered) {
  const char* reply = natsMsg_GetReply(msg_);
  if (reply) natsConnection_PublishString(buffered.connection(), reply, "+ACK");
}

void IncomingMessage::AckOfFetch(size_t fetched, NatsClient& buffered) {
  constexpr size_t kAckAtOnceMax = 4;  // up to this many acks are sent one by one
  fetched > kAckAtOnceMax ? AckThrough(buffered) : Ack();
}

void IncomingMessage::Nak(int64_t delay_ms) { natsMsg_NakWithDelay(msg_, delay_ms, nullptr); }
void IncomingMessage::Term() { natsMsg_Term(msg_, nullptr); }

namespace {
// nats-server 2.9 counts a filtered consumer's pending messages by reading
// the stream's messages one by one, from its delivery loop: with the
// filter "sopflow.v1.>" that was 68% of its CPU at saturation (pprof) and
// its "slow mode" of earlier sessions. A consumer without a filter is
// counted from the stream's state. A filter that covers the whole stream
// is no filter, so the consumer is made without it.
const char* EffectiveFilter(const std::string& filter_subject) {
  return filter_subject.empty() || filter_subject == kEventSubjects ? nullptr : filter_subject.c_str();
}
}  // namespace

PullConsumer::PullConsumer(NatsClient& client, const ConsumerOptions& options) {
  jsConsumerConfig cfg;
  jsConsumerConfig_Init(&cfg);
  cfg.Durable = options.durable.c_str();
  cfg.AckPolicy = js_AckExplicit;
  cfg.AckWait = options.ack_wait_ms * 1000000;
  cfg.MaxDeliver = options.max_deliver;
  cfg.MaxAckPending = options.max_ack_pending;
  cfg.FilterSubject = EffectiveFilter(options.filter_subject);
  cfg.DeliverPolicy = js_DeliverAll;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  // Create or update: a durable made by an earlier version (with the filter
  // on the whole stream, or another ack wait) takes this configuration and
  // keeps its position; replicas starting at once send the same one.
  natsStatus s = RetryWhileStarting("add consumer " + options.durable, client.startup_wait_ms(), &jerr, [&] {
    jsConsumerInfo* ci = nullptr;
    natsStatus added = js_AddConsumer(&ci, client.jetstream(), kEventStream, &cfg, nullptr, &jerr);
    if (ci) jsConsumerInfo_Destroy(ci);
    return added;
  });
  if (s != NATS_OK) ThrowNats("add consumer " + options.durable, s, jerr);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = kEventStream;
  so.Consumer = options.durable.c_str();  // bind to it, as it is
  s = RetryWhileStarting("pull subscribe " + options.durable, client.startup_wait_ms(), &jerr, [&] {
    return js_PullSubscribe(&sub_, client.jetstream(), cfg.FilterSubject, options.durable.c_str(), nullptr, &so,
                            &jerr);
  });
  if (s != NATS_OK) ThrowNats("pull subscribe " + options.durable, s, jerr);
}

PullConsumer::~PullConsumer() {
  // Unsubscribe would delete the durable consumer that other replicas
  // share; destroying only the local subscription keeps it.
  if (sub_) natsSubscription_Destroy(sub_);
}

std::vector<IncomingMessage> PullConsumer::Fetch(int batch, int timeout_ms) {
  natsMsgList list{};
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = natsSubscription_Fetch(&list, sub_, batch, timeout_ms, &jerr);
  std::vector<IncomingMessage> out;
  if (s == NATS_TIMEOUT) return out;
  if (s != NATS_OK) ThrowNats("fetch", s, jerr);
  out.reserve(list.Count);
  for (int i = 0; i < list.Count; ++i) {
    out.emplace_back(list.Msgs[i]);
    list.Msgs[i] = nullptr;  // ownership moved
  }
  natsMsgList_Destroy(&list);
  return out;
}

}  // namespace sopflow

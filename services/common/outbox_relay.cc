#include "outbox_relay.h"

#include <hiredis/hiredis.h>
#include <nats/nats.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "clock.h"
#include "error.h"
#include "thread_name.h"

namespace sopflow {
namespace {

// One entry of an XRANGE reply, its events' fields as read (i, s, e per
// event, in order).
struct ReadEntry {
  std::string id;
  std::vector<std::string> fields;
};

std::vector<ReadEntry> ParseEntries(const redisReply* list) {
  std::vector<ReadEntry> out;
  if (!list || list->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i < list->elements; ++i) {
    const redisReply* item = list->element[i];
    if (item->type != REDIS_REPLY_ARRAY || item->elements != 2) continue;
    const redisReply* fields = item->element[1];
    if (!fields || fields->type != REDIS_REPLY_ARRAY) continue;  // deleted meanwhile
    ReadEntry e{ReplyString(item->element[0]).value_or(""), {}};
    for (size_t f = 0; f < fields->elements; ++f) e.fields.push_back(ReplyString(fields->element[f]).value_or(""));
    out.push_back(std::move(e));
  }
  return out;
}

// The events of a read entry, as views into it.
std::vector<RedisBatch::EmittedEvent> EventsOf(const ReadEntry& entry) {
  std::vector<RedisBatch::EmittedEvent> events;
  for (size_t f = 0; f + 1 < entry.fields.size(); f += 2) {
    const std::string& name = entry.fields[f];
    std::string_view value = entry.fields[f + 1];
    if (name == "i") events.push_back({value, {}, {}});  // each event starts with its id
    else if (events.empty()) continue;
    else if (name == "s") events.back().subject = value;
    else if (name == "e") events.back().data = value;
  }
  return events;
}

// Test failpoint: die after the commit and before publishing its events,
// as a process killed at the worst moment would. Read once: it is asked
// at every commit.
bool CrashBeforePublish() {
  static const bool crash = [] {
    const char* fp = std::getenv("SOPFLOW_FAILPOINT");
    return fp && std::string(fp) == "relay_crash_before_publish";
  }();
  return crash;
}

// The event as a NATS message with its CloudEvents headers; nullptr if
// nats.c could not build it.
natsMsg* EventMessage(const RedisBatch::EmittedEvent& event) {
  CloudEventAttributes a;
  std::string time;
  if (ReadCloudEventAttributes(event.data, &a)) time = FormatRfc3339(FromUnixMillis(a.time_ms));
  const std::string id(event.id), type(event.subject);
  const std::pair<const char*, const char*> headers[] = {
      {"Nats-Msg-Id", id.c_str()},     {"ce-specversion", "1.0"},     {"ce-id", id.c_str()},
      {"ce-type", type.c_str()},       {"ce-source", a.source.c_str()}, {"ce-time", time.c_str()},
      {"ce-subject", a.subject.c_str()}, {"content-type", "application/protobuf"}};
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, type.c_str(), nullptr, event.data.data(), static_cast<int>(event.data.size()));
  for (const auto& [k, v] : headers)
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, k, v);
  if (s == NATS_OK) return msg;
  natsMsg_Destroy(msg);
  return nullptr;
}

// A JetStream context on `client`'s connection that reports every ack.
jsCtx* AckReportingContext(NatsClient& client, void* relay,
                           void (*on_ack)(jsCtx*, natsMsg*, ::jsPubAck*, ::jsPubAckErr*, void*)) {
  jsOptions options;
  jsOptions_Init(&options);
  options.PublishAsync.AckHandler = on_ack;
  options.PublishAsync.AckHandlerClosure = relay;
  jsCtx* js = nullptr;
  natsStatus s = natsConnection_JetStream(&js, client.connection(), &options);
  if (s != NATS_OK) throw DomainError(ErrorCode::kUnavailable, std::string("JetStream context: ") + natsStatus_GetText(s));
  return js;
}

int64_t NowMs() { return UnixMillis(SystemClock().Now()); }

// The shortest pause before sweeping again after a refusal.
constexpr int64_t kFirstRefusalPauseMs = 200;

// google.protobuf.Timestamp (seconds = 1, nanos = 2) at the stream's
// position, as milliseconds.
bool ReadTimestampMs(google::protobuf::io::CodedInputStream& in, int64_t* ms) {
  using google::protobuf::internal::WireFormatLite;
  int length = 0;
  if (!in.ReadVarintSizeAsInt(&length)) return false;
  auto limit = in.PushLimit(length);
  int64_t seconds = 0;
  int32_t nanos = 0;
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    int field = WireFormatLite::GetTagFieldNumber(tag);
    bool varint = WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_VARINT;
    uint64_t v = 0;
    if (varint && (field == 1 || field == 2)) {
      if (!in.ReadVarint64(&v)) return false;
      if (field == 1) seconds = static_cast<int64_t>(v);
      else nanos = static_cast<int32_t>(v);
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  if (!in.ConsumedEntireMessage()) return false;
  in.PopLimit(limit);
  *ms = seconds * 1000 + nanos / 1000000;
  return true;
}

bool ReadAttributes(std::string_view event, CloudEventAttributes* out) {
  using google::protobuf::internal::WireFormatLite;
  using google::protobuf::io::CodedInputStream;
  // sopflow.v1.Event: source = 3, time = 4, subject = 5.
  constexpr int kSource = 3, kTime = 4, kSubject = 5;
  CodedInputStream in(reinterpret_cast<const uint8_t*>(event.data()), static_cast<int>(event.size()));
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    int field = WireFormatLite::GetTagFieldNumber(tag);
    bool delimited = WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
    if (delimited && (field == kSource || field == kSubject)) {
      if (!WireFormatLite::ReadString(&in, field == kSource ? &out->source : &out->subject)) return false;
    } else if (delimited && field == kTime) {
      if (!ReadTimestampMs(in, &out->time_ms)) return false;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}


}  // namespace

bool ReadCloudEventAttributes(std::string_view event, CloudEventAttributes* out) {
  CloudEventAttributes read;
  const bool ok = ReadAttributes(event, &read);
  *out = ok ? std::move(read) : CloudEventAttributes();
  return ok;
}

OutboxRelay::OutboxRelay(RedisAddress redis, NatsClient* nats, Options options)
    : redis_(redis),
      backlog_redis_(std::move(redis)),
      prompt_(std::make_unique<NatsClient>(SiblingOptions(nats->options(), "-prompt", true))),
      options_(std::move(options)) {
  buffered_js_.js = AckReportingContext(*nats, this, &OutboxRelay::OnAck);
  prompt_js_.js = AckReportingContext(*prompt_, this, &OutboxRelay::OnAck);
  sweep_pause_ms_ = options_.sweep_interval_ms;
  for (NatsClient* client : {nats, prompt_.get()})
    reconnect_listeners_.emplace_back(client, client->AddReconnectListener([this] {
      std::lock_guard lock(mu_);
      resend_due_ = true;
      wake_.notify_one();
    }));
}

OutboxRelay::~OutboxRelay() {
  for (auto [client, handle] : reconnect_listeners_) client->RemoveReconnectListener(handle);
  Stop();
  // Acks still awaited would call OnAck on a relay that is gone: wait for
  // them (each times out after ack_wait_ms), then close the contexts.
  AwaitAcks(options_.ack_wait_ms + 1000);
  jsCtx_Destroy(buffered_js_.js);
  jsCtx_Destroy(prompt_js_.js);
}

void OutboxRelay::Start() {
  {
    std::lock_guard lock(mu_);
    running_ = true;
  }
  thread_ = NamedThread("sf-relay", [this] { Loop(); });
}

void OutboxRelay::Stop() {
  {
    std::lock_guard lock(mu_);
    running_ = false;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  try {
    DeleteStored();
  } catch (const std::exception& e) {
    // Left in the outbox: a sweep publishes them again, and the stream
    // drops them as duplicates.
    spdlog::warn("outbox relay: deleting what was published: {}", e.what());
  }
}

void OutboxRelay::Drain() {
  AwaitAcks(options_.ack_wait_ms + 1000);
  Stop();
}

void OutboxRelay::AwaitAcks(int timeout_ms) {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout_ms;
  for (jsCtx* js : {prompt_js_.js, buffered_js_.js}) {
    natsStatus s = js_PublishAsyncComplete(js, &po);
    if (s != NATS_OK) spdlog::warn("outbox relay: acks still awaited after {} ms: {}", timeout_ms, natsStatus_GetText(s));
  }
}

void OutboxRelay::Loop() {
  std::unique_lock lock(mu_);
  while (running_) {
    lock.unlock();
    try {
      RunOnce();
    } catch (const std::exception& e) {
      spdlog::warn("outbox relay: {}", e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    lock.lock();
    // Until the next sweep (or a pass at the usual interval while sweeps
    // pause after refusals), unless enough stored entries wait to be deleted.
    const int64_t wait_ms =
        std::max<int64_t>(std::min<int64_t>(next_sweep_ms_ - NowMs(), options_.sweep_interval_ms), 1);
    wake_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return !running_ || delete_due_ || resend_due_; });
    delete_due_ = false;
  }
}

size_t OutboxRelay::RunOnce() {
  ResendAfterReconnect();
  ForgetOverdue();
  DeleteStored();
  if (NowMs() < next_sweep_ms_) return 0;
  size_t published = Sweep();
  std::lock_guard lock(mu_);
  // A sweep that met refusals comes back later and later (an event larger
  // than the server's max_payload is refused until that is raised).
  const bool refusals = refused_ > refused_at_last_sweep_;
  sweep_pause_ms_ = refusals ? std::clamp<int64_t>(sweep_pause_ms_ * 2, kFirstRefusalPauseMs, options_.sweep_pause_max_ms)
                             : options_.sweep_interval_ms;
  if (refusals)
    spdlog::warn("outbox relay: {} event(s) not stored by JetStream (first: {}); swept again in {} ms",
                 refused_ - refused_at_last_sweep_, first_refusal_, sweep_pause_ms_);
  refused_at_last_sweep_ = refused_;
  first_refusal_.clear();
  next_sweep_ms_ = NowMs() + sweep_pause_ms_;
  return published;
}

size_t OutboxRelay::Sweep() {
  // Age by Redis's clock, which gave the entries their ids.
  Reply time = redis_.Command({"TIME"});
  ThrowIfError(time.get());
  if (!time || time->type != REDIS_REPLY_ARRAY || time->elements != 2)
    throw DomainError(ErrorCode::kInternal, "TIME: unexpected reply");
  const int64_t redis_ms = std::stoll(ReplyString(time->element[0]).value_or("0")) * 1000 +
                           std::stoll(ReplyString(time->element[1]).value_or("0")) / 1000;
  const int64_t until_ms = redis_ms - options_.orphan_after_ms;
  if (until_ms < 0) return 0;
  Reply r = redis_.Command({"XRANGE", options_.stream, sweep_from_, std::to_string(until_ms), "COUNT",
                            std::to_string(options_.batch)});
  ThrowIfError(r.get());
  auto read = ParseEntries(r.get());
  // A full batch: more may follow, read past it next time, so that entries
  // the stream keeps refusing cannot hide those behind them.
  const size_t replied = r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
  sweep_from_ = replied == static_cast<size_t>(options_.batch) && !read.empty() ? "(" + read.back().id : "-";
  std::vector<Entry> entries;
  {
    std::lock_guard lock(mu_);
    for (const auto& e : read)
      if (!in_flight_.count(e.id) && std::find(stored_.begin(), stored_.end(), e.id) == stored_.end())
        entries.push_back({e.id, EventsOf(e)});
  }
  size_t events = 0;
  for (const auto& e : entries) events += e.events.size();
  if (!entries.empty()) {
    spdlog::info("outbox relay: {} entr{} left behind, {} event(s): publishing", entries.size(),
                 entries.size() == 1 ? "y" : "ies", events);
    PublishEntries(entries);
  }
  return events;
}

void OutboxRelay::Publish(const std::vector<const RedisBatch*>& batches, const std::vector<std::string>& entries) {
  std::vector<Entry> out;
  for (size_t i = 0; i < batches.size() && i < entries.size(); ++i)
    if (!entries[i].empty()) out.push_back({entries[i], batches[i]->Emitted()});
  if (out.empty()) return;
  if (CrashBeforePublish()) {
    spdlog::critical("failpoint relay_crash_before_publish: exiting with {} entr{} unpublished", out.size(),
                     out.size() == 1 ? "y" : "ies");
    _exit(86);
  }
  PublishEntries(out);
}

void OutboxRelay::PublishEntries(const std::vector<Entry>& entries) {
  struct Outgoing {
    natsMsg* msg;
    const std::string* entry;
  };
  std::vector<Outgoing> messages;
  for (const auto& entry : entries)
    for (const auto& event : entry.events)
      if (natsMsg* msg = EventMessage(event)) messages.push_back({msg, &entry.id});
  const bool prompt = static_cast<int>(messages.size()) <= options_.prompt_batch_max;
  {
    // Registered before they are sent: an ack may come back before
    // js_PublishMsgAsync returns.
    std::lock_guard lock(mu_);
    const int64_t now = NowMs();
    for (const auto& m : messages) {
      InFlight& f = in_flight_[*m.entry];
      f.sent_ms = now;
      ++f.unacked;
      entry_of_[m.msg] = *m.entry;
    }
    // An entry some of whose events could not even be built is not
    // deleted: a sweep tries it again (one with none built is not in
    // flight at all).
    for (const auto& entry : entries)
      if (auto f = in_flight_.find(entry.id);
          f != in_flight_.end() && f->second.unacked < static_cast<int>(entry.events.size()))
        f->second.failed = true;
  }
  // No MaxWait: nats.c would keep a timer record per message and, once
  // it expired, dispatch a timeout message for it whether or not the ack
  // came (measured: +50% of the router's CPU). Acks overdue are dropped by
  // ForgetOverdue instead.
  for (auto& m : messages) {
    natsMsg* sent = m.msg;
    AckingContext& context = prompt ? prompt_js_ : buffered_js_;
    natsStatus s = js_PublishMsgAsync(context.js, &m.msg, nullptr);
    if (s == NATS_OK) {
      // Read first: committing threads would otherwise each write the
      // flag's cache line at every publish.
      if (!context.sent.load(std::memory_order_relaxed)) context.sent.store(true, std::memory_order_release);
      continue;  // nats.c owns it; OnAck reports it
    }
    NotSent(sent, s);
    natsMsg_Destroy(m.msg);
  }
}

void OutboxRelay::NotSent(natsMsg* msg, int status) {
  // Counted as refused, its entry left for a sweep.
  ::jsPubAckErr err{};
  err.Err = static_cast<natsStatus>(status);
  err.ErrText = natsStatus_GetText(err.Err);
  Acked(msg, &err);
}

// nats.c sends a message once: one written to a server that died before
// storing it is never acked, and without MaxWait (see PublishEntries)
// nats.c would keep it awaited for good. So when a connection is back,
// what it still awaits is taken back from nats.c and sent again: the
// stream stores what the dead server lost and drops, by Nats-Msg-Id, what
// it had stored. Before, the lost events waited ack_wait_ms and a sweep,
// and every drain after a NATS restart waited out acks that never came.
void OutboxRelay::ResendAfterReconnect() {
  {
    std::lock_guard lock(mu_);
    if (!resend_due_) return;
    resend_due_ = false;
  }
  size_t resent = 0;
  for (AckingContext* context : {&prompt_js_, &buffered_js_}) {
    jsCtx* js = context->js;
    natsMsgList pending{};
    if (!context->sent.load(std::memory_order_acquire) || js_PublishAsyncGetPendingList(&pending, js) != NATS_OK)
      continue;  // none awaited
    const int64_t now = NowMs();
    for (int i = 0; i < pending.Count; ++i) {
      natsMsg* msg = pending.Msgs[i];
      {
        // One whose entry was forgotten as overdue is the sweep's; the
        // others' entries count from now for ack_wait_ms.
        std::lock_guard lock(mu_);
        auto e = entry_of_.find(msg);
        if (e == entry_of_.end()) continue;  // destroyed with the list
        if (auto f = in_flight_.find(e->second); f != in_flight_.end()) f->second.sent_ms = now;
      }
      natsStatus s = js_PublishMsgAsync(js, &pending.Msgs[i], nullptr);  // nulls the slot if taken
      if (s == NATS_OK) ++resent;
      else NotSent(msg, s);
    }
    natsMsgList_Destroy(&pending);
  }
  if (resent) spdlog::info("outbox relay: NATS is back; {} event(s) awaiting their acks sent again", resent);
}

void OutboxRelay::OnAck(jsCtx*, natsMsg* msg, ::jsPubAck*, ::jsPubAckErr* err, void* closure) {
  static_cast<OutboxRelay*>(closure)->Acked(msg, err);
  natsMsg_Destroy(msg);
}

void OutboxRelay::Acked(natsMsg* msg, const ::jsPubAckErr* err) {
  std::lock_guard lock(mu_);
  auto it = entry_of_.find(msg);
  if (it == entry_of_.end()) return;
  const std::string entry = std::move(it->second);
  entry_of_.erase(it);
  auto f = in_flight_.find(entry);
  if (f == in_flight_.end()) return;
  if (err) {
    f->second.failed = true;
    ++refused_;
    if (first_refusal_.empty()) {
      const char* id = nullptr;
      natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
      first_refusal_ = std::string(id ? id : "?") + ": " + (err->ErrText ? err->ErrText : natsStatus_GetText(err->Err));
    }
  }
  if (--f->second.unacked > 0) return;
  // An entry is done when all its events are stored; otherwise it stays,
  // whole, for a sweep, and the stream drops the events it has.
  if (!f->second.failed) stored_.push_back(entry);
  in_flight_.erase(f);
  if (stored_.size() == static_cast<size_t>(options_.delete_batch)) {
    delete_due_ = true;
    wake_.notify_one();
  }
}

void OutboxRelay::ForgetOverdue() {
  std::lock_guard lock(mu_);
  const int64_t overdue = NowMs() - options_.ack_wait_ms;
  int64_t unacked = 0;  // events: what the sweep's warning counts
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.sent_ms >= overdue) {
      ++it;
      continue;
    }
    // Its messages' acks, if they still come, find no entry and change
    // nothing; the entry is the sweep's now.
    unacked += it->second.unacked;
    it = in_flight_.erase(it);
  }
  if (unacked == 0) return;
  refused_ += unacked;
  if (first_refusal_.empty()) first_refusal_ = "no ack within " + std::to_string(options_.ack_wait_ms) + " ms";
  for (auto it = entry_of_.begin(); it != entry_of_.end();)
    it = in_flight_.count(it->second) ? std::next(it) : entry_of_.erase(it);
}

void OutboxRelay::DeleteStored() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    ids.swap(stored_);
  }
  if (ids.empty()) return;
  std::vector<std::string> del{"XDEL", options_.stream};
  del.insert(del.end(), ids.begin(), ids.end());
  try {
    ThrowIfError(redis_.Command(del).get());
  } catch (...) {
    std::lock_guard lock(mu_);
    stored_.insert(stored_.end(), ids.begin(), ids.end());  // tried again next pass
    throw;
  }
}

int64_t OutboxRelay::Backlog() {
  std::lock_guard lock(backlog_mu_);
  Reply r = backlog_redis_.Command({"XLEN", options_.stream});  // reconnects by itself after a failure
  ThrowIfError(r.get());
  return ReplyInteger(r.get());
}

ScrapedGauge OutboxBacklogGauge(OutboxRelay* relay) {
  return {"sopflow_outbox_backlog", "", [relay] { return static_cast<double>(relay->Backlog()); }};
}

std::vector<int> CommitAndPublish(RedisPool& pool, const std::vector<const RedisBatch*>& batches,
                                  OutboxRelay* relay) {
  if (!relay) return CommitAll(pool, batches);
  std::vector<std::string> entries;
  auto results = CommitAll(pool, batches, &entries);
  relay->Publish(batches, entries);
  return results;
}

}  // namespace sopflow

#include "outbox_relay.h"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <cstdlib>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "clock.h"
#include "error.h"
#include "sopflow/v1/event.pb.h"
#include "thread_name.h"

namespace sopflow {
namespace {

constexpr char kGroup[] = "relay";

struct QueuedEvent {
  std::string event_id;
  std::string subject;
  std::string data;
};

// One stream entry: the events one transition queued (RedisBatch::Emit).
struct Entry {
  std::string stream_id;
  std::vector<QueuedEvent> events;
};

// Parses [[id, [field, value, ...]], ...]; the fields are i, s, e per
// event, in order.
std::vector<Entry> ParseEntries(const redisReply* list) {
  std::vector<Entry> out;
  if (!list || list->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i < list->elements; ++i) {
    const redisReply* item = list->element[i];
    if (item->type != REDIS_REPLY_ARRAY || item->elements != 2) continue;
    Entry e;
    e.stream_id = ReplyString(item->element[0]).value_or("");
    const redisReply* fields = item->element[1];
    if (!fields || fields->type != REDIS_REPLY_ARRAY) continue;  // deleted meanwhile
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
      std::string name = ReplyString(fields->element[f]).value_or("");
      std::string value = ReplyString(fields->element[f + 1]).value_or("");
      if (name == "i") e.events.push_back({std::move(value), "", ""});  // each event starts with its id
      else if (e.events.empty()) continue;
      else if (name == "s") e.events.back().subject = std::move(value);
      else if (name == "e") e.events.back().data = std::move(value);
    }
    out.push_back(std::move(e));
  }
  return out;
}

// Test failpoint: die after reading events and before publishing them, as
// a process killed at the worst moment would.
bool CrashBeforePublish() {
  const char* fp = std::getenv("SOPFLOW_FAILPOINT");
  return fp && std::string(fp) == "relay_crash_before_publish";
}

NatsClient::OutgoingMessage ToMessage(const QueuedEvent& entry) {
  NatsClient::OutgoingMessage m;
  m.subject = entry.subject;
  m.msg_id = entry.event_id;
  m.data = entry.data;
  CloudEventAttributes a;
  std::string time;
  if (ReadCloudEventAttributes(entry.data, &a)) time = FormatRfc3339(FromUnixMillis(a.time_ms));
  m.headers = {{"ce-specversion", "1.0"}, {"ce-id", entry.event_id}, {"ce-type", entry.subject},
               {"ce-source", a.source},   {"ce-time", time},        {"ce-subject", a.subject},
               {"content-type", "application/protobuf"}};
  return m;
}

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

bool ReadAttributes(const std::string& event, CloudEventAttributes* out) {
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

bool ReadCloudEventAttributes(const std::string& event, CloudEventAttributes* out) {
  CloudEventAttributes read;
  const bool ok = ReadAttributes(event, &read);
  *out = ok ? std::move(read) : CloudEventAttributes();
  return ok;
}

OutboxRelay::OutboxRelay(RedisAddress redis, NatsClient* nats, Options options)
    : redis_(redis),
      backlog_redis_(std::move(redis)),
      nats_(nats),
      prompt_(std::make_unique<NatsClient>(SiblingOptions(nats->options(), "-prompt", true))),
      options_(std::move(options)) {
  // Start at "0": entries queued before any relay existed are published too.
  Reply r = redis_.Command({"XGROUP", "CREATE", options_.stream, kGroup, "0", "MKSTREAM"});
  if (ReplyIsError(r.get()) && ReplyErrorText(r.get()).rfind("BUSYGROUP", 0) != 0)
    throw DomainError(ErrorCode::kInternal, "XGROUP CREATE: " + ReplyErrorText(r.get()));
}

OutboxRelay::~OutboxRelay() { Stop(); }

void OutboxRelay::Start() {
  running_ = true;
  thread_ = NamedThread("sf-relay", [this] { Loop(); });
}

void OutboxRelay::Stop() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
  try {
    FlushDone();
  } catch (const std::exception& e) {
    // Left pending: another replica takes them over and re-publishes them,
    // which the stream drops as duplicates.
    spdlog::warn("outbox relay: deleting what was published: {}", e.what());
  }
}

void OutboxRelay::Drain() {
  Stop();
  try {
    RunOnce();
    FlushDone();
  } catch (const std::exception& e) {
    spdlog::warn("final outbox relay: {}", e.what());
  }
}

void OutboxRelay::Loop() {
  while (running_) {
    try {
      RunOnce();
    } catch (const std::exception& e) {
      spdlog::warn("outbox relay: {}", e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

size_t OutboxRelay::RunOnce() {
  std::vector<Entry> entries;
  int64_t now_ms = UnixMillis(SystemClock().Now());
  if (now_ms - last_reclaim_ms_ >= 1000) {
    last_reclaim_ms_ = now_ms;
    Reply r = CommandAfterDone({"XAUTOCLAIM", options_.stream, kGroup, options_.consumer_name,
                                std::to_string(options_.reclaim_idle_ms), "0-0", "COUNT", std::to_string(options_.batch)});
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2) entries = ParseEntries(r->element[1]);
  }
  bool own_pending = false;
  if (entries.empty()) {
    // ">" reads new entries; "0" re-reads this consumer's unacknowledged ones.
    own_pending = own_pending_at_ms_ >= 0 && now_ms >= own_pending_at_ms_;
    std::vector<std::string> cmd{"XREADGROUP", "GROUP", kGroup, options_.consumer_name, "COUNT",
                                 std::to_string(options_.batch)};
    // Block only while no retry of own entries is due soon.
    int64_t block_ms = options_.block_ms;
    if (own_pending_at_ms_ >= 0) block_ms = std::clamp<int64_t>(own_pending_at_ms_ - now_ms, 1, block_ms);
    if (!own_pending) cmd.insert(cmd.end(), {"BLOCK", std::to_string(block_ms)});
    cmd.insert(cmd.end(), {"STREAMS", options_.stream, own_pending ? "0" : ">"});
    Reply r = CommandAfterDone(cmd);
    if (ReplyIsError(r.get())) throw DomainError(ErrorCode::kInternal, "XREADGROUP: " + ReplyErrorText(r.get()));
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
      const redisReply* stream = r->element[0];
      if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2) entries = ParseEntries(stream->element[1]);
    }
    if (own_pending && entries.empty()) {
      own_pending_at_ms_ = -1;
      own_pending_pause_ms_ = kOwnPendingPauseMinMs;
    }
  }
  if (entries.empty()) return 0;
  if (CrashBeforePublish()) {
    spdlog::critical("failpoint relay_crash_before_publish: exiting with {} event(s) unpublished", entries.size());
    _exit(86);
  }

  std::vector<NatsClient::OutgoingMessage> messages;
  messages.reserve(entries.size() * 3);
  for (const auto& entry : entries)
    for (const auto& e : entry.events) messages.push_back(ToMessage(e));
  bool small = static_cast<int>(messages.size()) <= options_.prompt_batch_max;
  auto failed_ids = (small ? *prompt_ : *nats_).PublishAll(messages, 5000);
  std::set<std::string> failed(failed_ids.begin(), failed_ids.end());

  // An entry is done when all its events are stored; otherwise all of it is
  // published again, and the stream drops the ones it has (Nats-Msg-Id).
  size_t published = 0;
  for (const auto& entry : entries) {
    size_t stored = std::count_if(entry.events.begin(), entry.events.end(),
                                  [&](const QueuedEvent& e) { return failed.count(e.event_id) == 0; });
    if (stored == entry.events.size()) done_.push_back(entry.stream_id);
    published += stored;
  }
  if (!failed.empty()) {
    // Retried after a pause that doubles while they keep failing (an event
    // larger than the server's max_payload fails until that is raised).
    spdlog::warn("outbox relay: {} event(s) not stored by JetStream (first: {}); retrying in {} ms", failed.size(),
                 *failed.begin(), own_pending_pause_ms_);
    own_pending_at_ms_ = now_ms + own_pending_pause_ms_;
    if (own_pending) own_pending_pause_ms_ = std::min(own_pending_pause_ms_ * 2, kOwnPendingPauseMaxMs);
  } else if (own_pending) {
    own_pending_at_ms_ = now_ms;  // more of them may be left: read on
  }
  return published;
}

std::vector<std::vector<std::string>> OutboxRelay::DoneCommands() const {
  if (done_.empty()) return {};
  std::vector<std::string> ack{"XACK", options_.stream, kGroup}, del{"XDEL", options_.stream};
  ack.insert(ack.end(), done_.begin(), done_.end());
  del.insert(del.end(), done_.begin(), done_.end());
  return {std::move(ack), std::move(del)};
}

Reply OutboxRelay::CommandAfterDone(const std::vector<std::string>& command) {
  auto commands = DoneCommands();
  commands.push_back(command);
  auto replies = redis_.Pipeline(commands);
  done_.clear();  // the pipeline went through: Redis has the XACK and XDEL
  return std::move(replies.back());
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

void OutboxRelay::FlushDone() {
  auto commands = DoneCommands();
  if (commands.empty()) return;
  redis_.Pipeline(commands);
  done_.clear();
}

}  // namespace sopflow

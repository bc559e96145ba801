#include "engine.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <set>

#include "calendar.h"
#include "error.h"
#include "ids.h"
#include "paging.h"
#include "redis_batch.h"

namespace sopflow::archiver {

using google::protobuf::util::TimeUtil;

namespace keys {
std::string Record(const std::string& id) { return "sf:ar:rec:" + id; }
std::string ByRun(const std::string& run) { return "sf:ar:byrun:" + run; }
std::string Access(const std::string& id) { return "sf:ar:access:" + id; }
inline constexpr char kChain[] = "sf:ar:chain";
inline constexpr char kHead[] = "sf:ar:head";
inline constexpr char kDisposed[] = "sf:ar:disposed";
inline constexpr char kCounters[] = "sf:ar:counters";
}  // namespace keys

namespace {

constexpr int kMaxAttempts = 64;


v1::FiledRecord Filed(const v1::ArchiveRecord& r, const std::string& hash, bool disposed) {
  v1::FiledRecord f;
  *f.mutable_record() = r;
  f.set_hash(hash);
  f.set_disposed(disposed);
  return f;
}

v1::BlobRef BlobOf(BlobStore& store, const std::string& name, const std::string& data, const std::string& media) {
  v1::BlobRef b;
  b.set_name(name);
  b.set_sha256(store.Put(data));
  b.set_size(data.size());
  b.set_media_type(media);
  return b;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

Engine::Engine(RedisPool* pool, BlobStore* blobs, const Clock* clock, std::shared_ptr<const Rules> rules, Sources sources)
    : pool_(pool), blobs_(blobs), clock_(clock), rules_(std::move(rules)), sources_(std::move(sources)) {}

namespace {
constexpr size_t kLoadChunk = 1000;
}  // namespace

std::optional<Engine::Stored> Engine::StoredOf(const redisReply* r) {
  auto fields = ReplyStrings(r);
  if (fields.size() != 2 || fields[0].empty()) return std::nullopt;
  Stored s;
  s.manifest = std::move(fields[0]);
  s.hash = std::move(fields[1]);
  if (!s.record.ParseFromString(s.manifest)) return std::nullopt;
  return s;
}

std::optional<Engine::Stored> Engine::Load(const std::string& id) { return LoadMany({id})[0]; }

std::vector<std::optional<Engine::Stored>> Engine::LoadMany(const std::vector<std::string>& ids) {
  std::vector<std::optional<Stored>> out;
  out.reserve(ids.size());
  auto conn = pool_->Acquire();
  for (size_t from = 0; from < ids.size(); from += kLoadChunk) {
    std::vector<std::vector<std::string>> reads;
    for (size_t i = from; i < std::min(ids.size(), from + kLoadChunk); ++i)
      reads.push_back({"HMGET", keys::Record(ids[i]), "manifest", "hash"});
    for (auto& r : conn->Pipeline(reads)) {
      ThrowIfError(r.get());
      out.push_back(StoredOf(r.get()));
    }
  }
  return out;
}

Engine::ChainSlice Engine::LoadChain(size_t from, size_t count) {
  ChainSlice out;
  Reply disposed;
  {
    auto conn = pool_->Acquire();
    Reply r = conn->Command({"LRANGE", keys::kChain, std::to_string(from), std::to_string(from + count - 1)});
    ThrowIfError(r.get());
    out.ids = ReplyStrings(r.get());
    if (out.ids.empty()) return out;
    std::vector<std::string> ask{"SMISMEMBER", keys::kDisposed};
    ask.insert(ask.end(), out.ids.begin(), out.ids.end());
    disposed = conn->Command(ask);
    ThrowIfError(disposed.get());
  }
  out.records = LoadMany(out.ids);
  for (size_t i = 0; i < out.records.size() && i < disposed->elements; ++i)
    if (out.records[i]) out.records[i]->disposed = disposed->element[i]->integer == 1;
  return out;
}

std::vector<Engine::Stored> Engine::LoadAll() {
  std::vector<Stored> out;
  for (size_t from = 0;; from += kLoadChunk) {
    auto chunk = LoadChain(from, kLoadChunk);
    for (auto& s : chunk.records)
      if (s) out.push_back(std::move(*s));
    if (chunk.ids.size() < kLoadChunk) return out;
  }
}

bool Engine::IsDisposed(const std::string& id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"SISMEMBER", keys::kDisposed, id});
  return ReplyInteger(r.get()) == 1;
}

v1::FiledRecord Engine::Append(v1::ArchiveRecord record, const std::function<void(RedisBatch&)>& extra,
                               const std::string& absent_key) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    std::vector<std::string> head, counter;
    std::string counter_field = record.unit_pengolah() + ":" + record.kurun_waktu().substr(0, 4);
    {
      auto conn = pool_->Acquire();
      auto replies = conn->Pipeline({{"HMGET", keys::kHead, "seq", "hash"}, {"HGET", keys::kCounters, counter_field}});
      head = ReplyStrings(replies[0].get());
      counter.push_back(ReplyString(replies[1].get()).value_or(""));
    }
    uint64_t seq = head[0].empty() ? 0 : std::stoull(head[0]);
    record.set_seq(seq + 1);
    record.set_prev_hash(head[1]);
    *record.mutable_filed_at() = TimeUtil::MillisecondsToTimestamp(UnixMillis(clock_->Now()));
    int n = counter[0].empty() ? 0 : std::stoi(counter[0]);
    if (record.kind() == v1::ArchiveRecord::BERKAS) {
      // The physical twin: folders numbered within boxes, per unit and year.
      int fpb = std::max(1, rules_->folders_per_box());
      record.set_nomor_boks(record.kurun_waktu().substr(0, 4) + "/" + std::to_string(n / fpb + 1));
      record.set_nomor_folder(std::to_string(n % fpb + 1));
    }
    std::string manifest = record.SerializeAsString();
    std::string hash = Sha256Hex(manifest);
    RedisBatch b;
    if (!absent_key.empty()) b.ExpectAbsent(absent_key);
    b.ExpectField(keys::kHead, "seq", head[0]);
    b.ExpectField(keys::kCounters, counter_field, counter[0]);
    b.Write({"HSET", keys::Record(record.id()), "manifest", manifest, "hash", hash});
    b.Write({"RPUSH", keys::kChain, record.id()});
    b.Write({"HSET", keys::kHead, "seq", std::to_string(record.seq()), "hash", hash});
    if (record.kind() == v1::ArchiveRecord::BERKAS) b.Write({"HSET", keys::kCounters, counter_field, std::to_string(n + 1)});
    extra(b);
    int failed = Commit(*pool_, b);
    if (failed == 0) return Filed(record, hash, false);
    if (failed == 1 && !absent_key.empty()) return {};  // filed meanwhile by another replica: caller re-reads
  }
  throw DomainError(ErrorCode::kUnavailable, "the archive chain kept moving; retry");
}

v1::FiledRecord Engine::FileRun(const std::optional<User>& user, const std::string& run_id) {
  if (run_id.empty()) ThrowInvalid("run_id", "is required");
  {
    auto conn = pool_->Acquire();
    Reply r = conn->Command({"GET", keys::ByRun(run_id)});
    if (auto id = ReplyString(r.get())) {
      auto s = Load(*id);
      if (s) {
        if (user && !user->admin && user->unit != s->record.unit_pengolah()) ThrowDenied("run " + run_id + " is not your unit's");
        return Filed(s->record, s->hash, IsDisposed(*id));  // filing is idempotent
      }
    }
  }
  v1::GetRunResponse run = sources_.run(run_id);
  if (user && !user->admin && user->unit != run.run().unit()) ThrowDenied("run " + run_id + " is not your unit's");
  if (run.run().status() != v1::Run::COMPLETED)
    ThrowPrecondition("run " + run_id + " is " + v1::Run::Status_Name(run.run().status()) + "; only completed runs are filed");
  v1::Definition def = sources_.definition(run.run().sop_id(), run.run().sop_version());
  v1::ArchiveRecord record = BerkasFor(*rules_, run, def);
  record.set_filed_by(user ? user->id : "system:run.completed");
  std::string timeline;
  google::protobuf::util::JsonPrintOptions json;
  json.add_whitespace = true;
  json.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(run, &timeline, json);
  *record.add_blobs() = BlobOf(*blobs_, "timeline.json", timeline, "application/json");
  *record.add_blobs() = BlobOf(*blobs_, "definition.yaml", def.source_yaml(), "application/yaml");
  if (auto report = sources_.report(run_id)) {
    *record.add_blobs() = BlobOf(*blobs_, "report.pb", report->first, "application/vnd.sopflow.performance-report");
    *record.add_blobs() = BlobOf(*blobs_, "report.html", report->second, "text/html");
  }
  record.set_jumlah(static_cast<uint32_t>(record.blobs_size() + record.documents_size()));
  v1::FiledRecord filed = Append(record, [&](RedisBatch& b) { b.Write({"SET", keys::ByRun(run_id), record.id()}); },
                                 keys::ByRun(run_id));
  if (filed.hash().empty()) return FileRun(user, run_id);  // another replica filed it: return that
  return filed;
}

bool Engine::MayRead(const User& user, const v1::ArchiveRecord& r) const {
  switch (r.keamanan()) {
    case v1::ArchiveRecord::TERBATAS: return user.admin || user.unit == r.unit_pengolah();
    case v1::ArchiveRecord::RAHASIA:
      if (user.admin) return true;
      if (user.unit != r.unit_pengolah()) return false;
      for (const auto& role : r.peran_rahasia())
        if (user.HasRole(role)) return true;
      return false;
    default: return true;
  }
}

void Engine::CheckRead(const User& user, const Stored& s, const std::string& action) {
  if (!MayRead(user, s.record))
    ThrowDenied("record " + s.record.id() + " is " + v1::ArchiveRecord::Security_Name(s.record.keamanan()) +
                " to unit '" + s.record.unit_pengolah() + "'");
  if (s.record.keamanan() == v1::ArchiveRecord::TERBATAS || s.record.keamanan() == v1::ArchiveRecord::RAHASIA) {
    v1::AccessLogEntry e;
    *e.mutable_time() = TimeUtil::MillisecondsToTimestamp(UnixMillis(clock_->Now()));
    e.set_user(user.id);
    e.set_action(action);
    auto conn = pool_->Acquire();
    conn->Command({"RPUSH", keys::Access(s.record.id()), e.SerializeAsString()});
  }
}

v1::FiledRecord Engine::Get(const User& user, const std::string& id) {
  auto s = Load(id);
  if (!s) ThrowNotFound("no record '" + id + "'");
  CheckRead(user, *s, "read");
  return Filed(s->record, s->hash, IsDisposed(id));
}

std::string Engine::Blob(const User& user, const std::string& record_id, const std::string& sha256) {
  auto s = Load(record_id);
  if (!s) ThrowNotFound("no record '" + record_id + "'");
  const v1::BlobRef* ref = nullptr;
  for (const auto& b : s->record.blobs())
    if (b.sha256() == sha256) ref = &b;
  if (!ref) ThrowNotFound("record " + record_id + " has no blob " + sha256);
  CheckRead(user, *s, "blob:" + ref->name());
  if (IsDisposed(record_id)) ThrowPrecondition("record " + record_id + " was disposed of (musnah)");
  auto data = blobs_->Get(sha256);
  if (!data) throw DomainError(ErrorCode::kInternal, "blob " + sha256 + " is missing from the store: run Verify");
  return *data;
}

v1::SearchRecordsResponse Engine::Search(const User& user, const v1::SearchRecordsRequest& req) {
  std::string text = Lower(req.text());
  return PageChain(req.page_token(), req.page_size(), [&](const Stored& s) {
    const auto& r = s.record;
    if (r.kind() != v1::ArchiveRecord::BERKAS) return false;
    if (!req.sop_id().empty() && r.sop_id() != req.sop_id()) return false;
    if (!req.unit().empty() && r.unit_pengolah() != req.unit()) return false;
    if (!req.period().empty() && r.kurun_waktu() != req.period()) return false;
    if (!req.kode_klasifikasi().empty() && r.kode_klasifikasi().rfind(req.kode_klasifikasi(), 0) != 0) return false;
    if (!text.empty() && Lower(r.uraian()).find(text) == std::string::npos) return false;
    return MayRead(user, r);  // what you may not read, you do not find
  });
}

v1::SearchRecordsResponse Engine::PageChain(const std::string& page_token, uint32_t page_size,
                                            const std::function<bool(const Stored&)>& wanted) {
  // A page goes on from the chain position after the last record the
  // previous page looked at. Records `wanted` leaves out make it read on,
  // up to kMaxScanned a call; then the page is short and its token goes on.
  constexpr size_t kMaxScanned = 20 * kLoadChunk;
  const size_t limit = PageLimit(page_size);
  auto after = FromPageToken(page_token);
  size_t next = after ? static_cast<size_t>(after->score) + 1 : 0;
  std::string last_id = after ? after->id : "";
  v1::SearchRecordsResponse out;
  bool at_end = false;
  // What is read is what the page needs, twice as much again each time
  // the filters left records out.
  size_t want = limit;
  for (size_t scanned = 0; static_cast<size_t>(out.records_size()) < limit && scanned < kMaxScanned && !at_end;
       want = std::min(want * 2, kLoadChunk)) {
    auto chunk = LoadChain(next, want);
    at_end = chunk.ids.size() < want;
    size_t used = 0;
    for (size_t i = 0; i < chunk.ids.size() && static_cast<size_t>(out.records_size()) < limit; ++i, ++used) {
      last_id = chunk.ids[i];
      const auto& s = chunk.records[i];
      if (s && wanted(*s)) *out.add_records() = Filed(s->record, s->hash, s->disposed);
    }
    if (used < chunk.ids.size()) at_end = false;
    next += used;
    scanned += used;
  }
  if (!at_end && next > 0) out.set_next_page_token(PageToken({last_id, static_cast<int64_t>(next - 1)}));
  return out;
}

v1::VerifyResponse Engine::Verify(const User& user, const std::string& record_id) {
  std::vector<std::string> ids, head;
  std::set<std::string> disposed;
  {
    auto conn = pool_->Acquire();
    auto replies = conn->Pipeline({{"LRANGE", keys::kChain, "0", "-1"}, {"HMGET", keys::kHead, "seq", "hash"},
                                   {"SMEMBERS", keys::kDisposed}});
    ids = ReplyStrings(replies[0].get());
    head = ReplyStrings(replies[1].get());
    for (auto& d : ReplyStrings(replies[2].get())) disposed.insert(d);
  }
  v1::VerifyResponse out;
  auto problem = [&](const std::string& id, const std::string& what) {
    auto* p = out.add_problems();
    p->set_record_id(id);
    p->set_what(what);
  };
  std::string prev;
  bool prev_known = true;
  auto stored = LoadMany(ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& id = ids[i];
    auto& s = stored[i];
    bool in_scope = record_id.empty() || id == record_id;
    if (!s) {
      if (in_scope) problem(id, "record missing from the store");
      prev_known = false;
      continue;
    }
    std::string computed = Sha256Hex(s->manifest);
    if (in_scope) {
      out.set_records_checked(out.records_checked() + 1);
      if (computed != s->hash) problem(id, "manifest altered: its SHA-256 is not the one recorded");
      if (s->record.seq() != i + 1)
        problem(id, "sequence " + std::to_string(s->record.seq()) + " at position " + std::to_string(i + 1) +
                        ": a record before it was removed");
      if (prev_known && s->record.prev_hash() != prev) problem(id, "chain broken: prev_hash does not match the record before");
      if (!prev_known) problem(id, "the record before it is missing");
      if (s->record.kind() == v1::ArchiveRecord::BERKAS && !disposed.count(id))
        for (const auto& b : s->record.blobs()) {
          out.set_blobs_checked(out.blobs_checked() + 1);
          auto data = blobs_->Get(b.sha256());
          if (!data) problem(id, "blob " + b.name() + " (" + b.sha256() + ") missing");
          else if (Sha256Hex(*data) != b.sha256()) problem(id, "blob " + b.name() + " altered");
        }
    }
    prev = computed;
    prev_known = true;
  }
  if (record_id.empty()) {
    uint64_t head_seq = head.size() == 2 && !head[0].empty() ? std::stoull(head[0]) : 0;
    if (head_seq != ids.size())
      problem("", "the chain holds " + std::to_string(ids.size()) + " records but " + std::to_string(head_seq) +
                      " were filed: records were removed");
    if (head.size() == 2 && head[1] != prev && prev_known) problem("", "the newest record is not the one last filed");
  } else if (out.records_checked() == 0 && out.problems_size() == 0) {
    ThrowNotFound("no record '" + record_id + "' in the chain");
  }
  (void)user;
  out.set_ok(out.problems_size() == 0);
  return out;
}

v1::SearchRecordsResponse Engine::Due(const User& user, const v1::ListDueRequest& req) {
  int64_t at_ms = UnixMillis(clock_->Now());
  if (!req.date().empty()) {
    int64_t day;
    if (!ParseDate(req.date(), &day)) ThrowInvalid("date", "YYYY-MM-DD");
    at_ms = day * 86400000;
  }
  const auto due = req.due();
  if (due != v1::ListDueRequest::TRANSFER && due != v1::ListDueRequest::DISPOSITION)
    ThrowInvalid("due", "TRANSFER or DISPOSITION");
  return PageChain(req.page_token(), req.page_size(), [&](const Stored& s) {
    const auto& r = s.record;
    if (r.kind() != v1::ArchiveRecord::BERKAS || s.disposed || !MayRead(user, r)) return false;
    int64_t active = TimeUtil::TimestampToMilliseconds(r.aktif_sampai());
    int64_t inactive = TimeUtil::TimestampToMilliseconds(r.inaktif_sampai());
    return due == v1::ListDueRequest::TRANSFER ? (active <= at_ms && at_ms < inactive) : inactive <= at_ms;
  });
}

v1::FiledRecord Engine::Dispose(const User& user, const v1::DisposeRequest& req) {
  if (!user.admin) ThrowDenied("only an admin disposes of records");
  if (req.alasan().empty()) ThrowInvalid("alasan", "the berita acara needs a reason");
  auto s = Load(req.record_id());
  if (!s) ThrowNotFound("no record '" + req.record_id() + "'");
  const auto& r = s->record;
  if (r.kind() != v1::ArchiveRecord::BERKAS) ThrowPrecondition(req.record_id() + " is not a berkas");
  if (IsDisposed(r.id())) ThrowPrecondition(req.record_id() + " was disposed of already");
  if (r.retensi().keterangan() == v1::RetentionRule::PERMANEN)
    ThrowPrecondition(req.record_id() + " is permanen: it is never disposed of");
  if (r.retensi().keterangan() == v1::RetentionRule::DINILAI_KEMBALI)
    ThrowPrecondition(req.record_id() + " must be re-appraised (dinilai kembali) before any disposal");
  if (TimeUtil::TimestampToMilliseconds(r.inaktif_sampai()) > UnixMillis(clock_->Now()))
    ThrowPrecondition(req.record_id() + " is retained until " + TimeUtil::ToString(r.inaktif_sampai()));
  v1::ArchiveRecord ba;
  ba.set_kind(v1::ArchiveRecord::BERITA_ACARA_PEMUSNAHAN);
  ba.set_id("BAP-" + r.id());
  ba.set_disposed_record_id(r.id());
  ba.set_disposed_record_hash(s->hash);
  ba.set_alasan(req.alasan());
  *ba.mutable_saksi() = req.saksi();
  ba.set_filed_by(user.id);
  ba.set_unit_pengolah(r.unit_pengolah());
  ba.set_kurun_waktu(r.kurun_waktu());
  ba.set_kode_klasifikasi(r.kode_klasifikasi());
  v1::FiledRecord filed = Append(ba, [&](RedisBatch& b) { b.Write({"SADD", keys::kDisposed, r.id()}); },
                                 keys::Record(ba.id()));
  if (filed.hash().empty()) ThrowPrecondition(req.record_id() + " was disposed of already");
  // Destroy the content, keeping blobs another live record still refers to.
  std::set<std::string> in_use;
  for (const auto& other : LoadAll())
    if (other.record.id() != r.id() && other.record.kind() == v1::ArchiveRecord::BERKAS && !other.disposed)
      for (const auto& b : other.record.blobs()) in_use.insert(b.sha256());
  for (const auto& b : r.blobs())
    if (!in_use.count(b.sha256())) blobs_->Remove(b.sha256());
  return filed;
}

v1::ListAccessLogResponse Engine::AccessLog(const User& user, const v1::ListAccessLogRequest& req) {
  if (!user.admin) ThrowDenied("the access log is for admins");
  // The log only grows (RPUSH): a page goes on from the position after the
  // previous page's last entry. The token names its record.
  const size_t limit = PageLimit(req.page_size());
  size_t from = 0;
  if (auto after = FromPageToken(req.page_token())) {
    if (after->id != req.record_id()) ThrowInvalid("page_token", "is another record's");
    from = static_cast<size_t>(after->score) + 1;
  }
  auto conn = pool_->Acquire();
  // One more than the page: whether there is a next page, without a call
  // that finds nothing.
  Reply r = conn->Command({"LRANGE", keys::Access(req.record_id()), std::to_string(from), std::to_string(from + limit)});
  auto entries = ReplyStrings(r.get());
  v1::ListAccessLogResponse out;
  for (size_t i = 0; i < entries.size() && i < limit; ++i) {
    v1::AccessLogEntry e;
    if (e.ParseFromString(entries[i])) *out.add_entries() = std::move(e);
  }
  if (entries.size() > limit)
    out.set_next_page_token(PageToken({req.record_id(), static_cast<int64_t>(from + limit - 1)}));
  return out;
}

}  // namespace sopflow::archiver

// The archiver's operations. Records form a hash chain in Redis (each
// manifest names the previous record's hash; its own hash is kept beside
// it); blobs live in a content-addressed BlobStore. There is no update: a
// record is filed once, read, verified, and at most disposed of, which
// files a berita acara in the chain.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "blob_store.h"
#include "clock.h"
#include "redis.h"
#include "redis_batch.h"
#include "rules.h"
#include "sopflow/v1/archive.pb.h"
#include "users.h"

namespace sopflow::archiver {

// Where the archiver reads what it files (the router and the aggregator over
// gRPC in production; anything in tests). Throw DomainError.
struct Sources {
  std::function<v1::GetRunResponse(const std::string& run_id)> run;
  std::function<v1::Definition(const std::string& sop_id, uint32_t version)> definition;
  // The run's aggregated report as (protobuf bytes, HTML), if it has one.
  std::function<std::optional<std::pair<std::string, std::string>>(const std::string& run_id)> report;
};

class Engine {
 public:
  Engine(RedisPool* pool, BlobStore* blobs, const Clock* clock, std::shared_ptr<const Rules> rules, Sources sources);

  // Files a completed run once; `user` empty (nullopt) for the event path.
  v1::FiledRecord FileRun(const std::optional<User>& user, const std::string& run_id);
  v1::FiledRecord Get(const User& user, const std::string& id);
  // The blob's bytes, after the access check (and log).
  std::string Blob(const User& user, const std::string& record_id, const std::string& sha256);
  // Berkas matching the request, in filing order, a page at a time.
  v1::SearchRecordsResponse Search(const User& user, const v1::SearchRecordsRequest& req);
  v1::VerifyResponse Verify(const User& user, const std::string& record_id);
  // Berkas due for transfer or disposition at the request's date, in
  // filing order, a page at a time.
  v1::SearchRecordsResponse Due(const User& user, const v1::ListDueRequest& req);
  v1::FiledRecord Dispose(const User& user, const v1::DisposeRequest& req);
  // Admins: a record's access log, oldest first, a page at a time.
  v1::ListAccessLogResponse AccessLog(const User& user, const v1::ListAccessLogRequest& req);

 private:
  struct Stored {
    v1::ArchiveRecord record;
    std::string manifest;  // the bytes the hash is over
    std::string hash;
    bool disposed = false;  // set by LoadChain
  };
  static std::optional<Stored> StoredOf(const redisReply* hmget_manifest_hash);
  std::optional<Stored> Load(const std::string& id);
  // Records by id, a pipeline per thousand; nullopt where missing.
  std::vector<std::optional<Stored>> LoadMany(const std::vector<std::string>& ids);
  // The chain's ids from position `from` (0-based), at most `count`, and
  // their records (nullopt: missing from the store) with their disposal:
  // three round trips, not one per record.
  struct ChainSlice {
    std::vector<std::string> ids;
    std::vector<std::optional<Stored>> records;
  };
  ChainSlice LoadChain(size_t from, size_t count);
  // One page of the chain's records `wanted` keeps, after `page_token`'s
  // position: what Search and Due share.
  v1::SearchRecordsResponse PageChain(const std::string& page_token, uint32_t page_size,
                                      const std::function<bool(const Stored&)>& wanted);
  std::vector<Stored> LoadAll();
  // Appends `record` to the chain (seq, prev_hash, box and folder set here)
  // with `extra` guards and writes in the same transaction.
  v1::FiledRecord Append(v1::ArchiveRecord record, const std::function<void(RedisBatch&)>& extra,
                         const std::string& absent_key);
  bool MayRead(const User& user, const v1::ArchiveRecord& r) const;
  void CheckRead(const User& user, const Stored& s, const std::string& action);
  bool IsDisposed(const std::string& id);

  RedisPool* pool_;
  BlobStore* blobs_;
  const Clock* clock_;
  std::shared_ptr<const Rules> rules_;
  Sources sources_;
};

}  // namespace sopflow::archiver

#include "service.h"

#include "grpc_server.h"

namespace sopflow::archiver {

using grpc::ServerContext;
using grpc::Status;

Status ArchiverService::FileRun(ServerContext* ctx, const v1::FileRunRequest* req, v1::FiledRecord* resp) {
  return GuardedCall([&] { *resp = engine_->FileRun(CallerOf(*ctx, *users_), req->run_id()); });
}

Status ArchiverService::GetRecord(ServerContext* ctx, const v1::GetRecordRequest* req, v1::FiledRecord* resp) {
  return GuardedCall([&] { *resp = engine_->Get(CallerOf(*ctx, *users_), req->id()); });
}

Status ArchiverService::GetBlob(ServerContext* ctx, const v1::GetBlobRequest* req,
                                grpc::ServerWriter<v1::BlobChunk>* writer) {
  return GuardedCall([&] {
    std::string data = engine_->Blob(CallerOf(*ctx, *users_), req->record_id(), req->sha256());
    constexpr size_t kChunk = 64 * 1024;  // large blobs stream in pieces
    for (size_t at = 0; at < data.size() || at == 0; at += kChunk) {
      v1::BlobChunk chunk;
      chunk.set_data(data.substr(at, kChunk));
      if (!writer->Write(chunk)) return;
      if (data.empty()) break;
    }
  });
}

Status ArchiverService::SearchRecords(ServerContext* ctx, const v1::SearchRecordsRequest* req,
                                      v1::SearchRecordsResponse* resp) {
  return GuardedCall([&] { *resp = engine_->Search(CallerOf(*ctx, *users_), *req); });
}

Status ArchiverService::Verify(ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyResponse* resp) {
  return GuardedCall([&] { *resp = engine_->Verify(CallerOf(*ctx, *users_), req->record_id()); });
}

Status ArchiverService::ListDue(ServerContext* ctx, const v1::ListDueRequest* req, v1::SearchRecordsResponse* resp) {
  return GuardedCall([&] { *resp = engine_->Due(CallerOf(*ctx, *users_), *req); });
}

Status ArchiverService::Dispose(ServerContext* ctx, const v1::DisposeRequest* req, v1::FiledRecord* resp) {
  return GuardedCall([&] { *resp = engine_->Dispose(CallerOf(*ctx, *users_), *req); });
}

Status ArchiverService::ListAccessLog(ServerContext* ctx, const v1::ListAccessLogRequest* req,
                                      v1::ListAccessLogResponse* resp) {
  return GuardedCall([&] { *resp = engine_->AccessLog(CallerOf(*ctx, *users_), *req); });
}

}  // namespace sopflow::archiver

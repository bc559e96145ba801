// The Archiver gRPC service (synchronous API).
#pragma once

#include "engine.h"
#include "sopflow/v1/archive.grpc.pb.h"

namespace sopflow::archiver {

class ArchiverService final : public v1::Archiver::Service {
 public:
  ArchiverService(Engine* engine, std::shared_ptr<const UserDirectory> users) : engine_(engine), users_(std::move(users)) {}

  grpc::Status FileRun(grpc::ServerContext*, const v1::FileRunRequest*, v1::FiledRecord*) override;
  grpc::Status GetRecord(grpc::ServerContext*, const v1::GetRecordRequest*, v1::FiledRecord*) override;
  grpc::Status GetBlob(grpc::ServerContext*, const v1::GetBlobRequest*, grpc::ServerWriter<v1::BlobChunk>*) override;
  grpc::Status SearchRecords(grpc::ServerContext*, const v1::SearchRecordsRequest*, v1::SearchRecordsResponse*) override;
  grpc::Status Verify(grpc::ServerContext*, const v1::VerifyRequest*, v1::VerifyResponse*) override;
  grpc::Status ListDue(grpc::ServerContext*, const v1::ListDueRequest*, v1::SearchRecordsResponse*) override;
  grpc::Status Dispose(grpc::ServerContext*, const v1::DisposeRequest*, v1::FiledRecord*) override;
  grpc::Status ListAccessLog(grpc::ServerContext*, const v1::ListAccessLogRequest*, v1::ListAccessLogResponse*) override;

 private:
  Engine* engine_;
  std::shared_ptr<const UserDirectory> users_;
};

}  // namespace sopflow::archiver

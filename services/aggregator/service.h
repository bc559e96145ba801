// The Aggregator gRPC service (synchronous API: reports and submissions
// are not the hand-off hot path).
#pragma once

#include "engine.h"
#include "sopflow/v1/aggregator.grpc.pb.h"

namespace sopflow::aggregator {

class AggregatorService final : public v1::Aggregator::Service {
 public:
  AggregatorService(Engine* engine, std::shared_ptr<const UserDirectory> users)
      : engine_(engine), users_(std::move(users)) {}

  grpc::Status LoadCatalogue(grpc::ServerContext*, const v1::LoadCatalogueRequest*, v1::LoadCatalogueResponse*) override;
  grpc::Status GetCatalogue(grpc::ServerContext*, const v1::GetCatalogueRequest*, v1::Catalogue*) override;
  grpc::Status SubmitRealisasi(grpc::ServerContext*, const v1::SubmitRealisasiRequest*, v1::Submission*) override;
  grpc::Status ListSubmissions(grpc::ServerContext*, const v1::ListSubmissionsRequest*,
                               v1::ListSubmissionsResponse*) override;
  grpc::Status GetReport(grpc::ServerContext*, const v1::GetReportRequest*, v1::PerformanceReport*) override;
  grpc::Status ExportReport(grpc::ServerContext*, const v1::ExportReportRequest*, v1::ReportFile*) override;
  grpc::Status GetRollup(grpc::ServerContext*, const v1::GetRollupRequest*, v1::UnitReport*) override;
  grpc::Status GetProcessMetrics(grpc::ServerContext*, const v1::GetProcessMetricsRequest*,
                                 v1::ProcessMetrics*) override;

 private:
  Engine* engine_;
  std::shared_ptr<const UserDirectory> users_;
};

}  // namespace sopflow::aggregator

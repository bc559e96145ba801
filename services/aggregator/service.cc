#include "service.h"

#include "grpc_server.h"

namespace sopflow::aggregator {

using grpc::ServerContext;
using grpc::Status;

Status AggregatorService::LoadCatalogue(ServerContext* ctx, const v1::LoadCatalogueRequest* req,
                                        v1::LoadCatalogueResponse* resp) {
  return GuardedCall([&] {
    for (auto& c : engine_->LoadCatalogue(CallerOf(*ctx, *users_), req->yaml(), req->file_name()))
      *resp->add_catalogues() = std::move(c);
  });
}

Status AggregatorService::GetCatalogue(ServerContext* ctx, const v1::GetCatalogueRequest* req, v1::Catalogue* resp) {
  return GuardedCall([&] {
    CallerOf(*ctx, *users_);
    *resp = engine_->GetCatalogue(req->unit(), req->tahun());
  });
}

Status AggregatorService::SubmitRealisasi(ServerContext* ctx, const v1::SubmitRealisasiRequest* req,
                                          v1::Submission* resp) {
  return GuardedCall([&] { *resp = engine_->Submit(CallerOf(*ctx, *users_), *req); });
}

Status AggregatorService::ListSubmissions(ServerContext* ctx, const v1::ListSubmissionsRequest* req,
                                          v1::ListSubmissionsResponse* resp) {
  return GuardedCall([&] {
    for (auto& s : engine_->ListSubmissions(CallerOf(*ctx, *users_), req->run_id(), req->unit()))
      *resp->add_submissions() = std::move(s);
  });
}

Status AggregatorService::GetReport(ServerContext* ctx, const v1::GetReportRequest* req, v1::PerformanceReport* resp) {
  return GuardedCall([&] { *resp = engine_->GetReport(CallerOf(*ctx, *users_), req->run_id()); });
}

Status AggregatorService::ExportReport(ServerContext* ctx, const v1::ExportReportRequest* req, v1::ReportFile* resp) {
  return GuardedCall([&] { *resp = engine_->Export(CallerOf(*ctx, *users_), req->run_id(), req->format()); });
}

Status AggregatorService::GetRollup(ServerContext* ctx, const v1::GetRollupRequest* req, v1::UnitReport* resp) {
  return GuardedCall([&] { *resp = engine_->Rollup(CallerOf(*ctx, *users_), req->unit(), req->period()); });
}

Status AggregatorService::GetProcessMetrics(ServerContext* ctx, const v1::GetProcessMetricsRequest* req,
                                            v1::ProcessMetrics* resp) {
  return GuardedCall([&] { *resp = engine_->ProcessMetrics(CallerOf(*ctx, *users_), *req); });
}

}  // namespace sopflow::aggregator

#include "service.h"

#include "grpc_server.h"

namespace sopflow {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

namespace {

// Queues a call for its group once the caller is known, and finishes it
// with what the group decided (its error mapped to a status, or its
// result) on whichever thread commits the group. The request and response
// live until Finish.
template <class Call, class Result>
ServerUnaryReactor* SubmitToGroup(CallbackServerContext* ctx, const UserDirectory& users, CallGroups<Call>& groups,
                                  Call call, std::optional<Result> Call::*result, Result* resp) {
  auto* reactor = ctx->DefaultReactor();
  grpc::Status caller = GuardedCall([&] { call.user = CallerOf(*ctx, users); });
  if (!caller.ok()) {
    reactor->Finish(caller);
    return reactor;
  }
  groups.Submit(std::move(call), [reactor, resp, result](Call& done) {
    reactor->Finish(GuardedCall([&] {
      if (done.error) std::rethrow_exception(done.error);
      *resp = std::move(*(done.*result));
    }));
  });
  return reactor;
}

}  // namespace

ServerUnaryReactor* RouterService::DeployDefinition(CallbackServerContext* ctx, const v1::DeployDefinitionRequest* req,
                                                    v1::DeployDefinitionResponse* resp) {
  return Unary(ctx, [&] { *resp = engine_->Deploy(CallerOf(*ctx, *users_), req->yaml(), req->file_name()); });
}

ServerUnaryReactor* RouterService::ListDefinitions(CallbackServerContext* ctx, const v1::ListDefinitionsRequest*,
                                                   v1::ListDefinitionsResponse* resp) {
  return Unary(ctx, [&] {
    CallerOf(*ctx, *users_);
    for (auto& d : engine_->ListDefinitions()) *resp->add_definitions() = std::move(d);
  });
}

ServerUnaryReactor* RouterService::GetDefinition(CallbackServerContext* ctx, const v1::GetDefinitionRequest* req,
                                                 v1::Definition* resp) {
  return Unary(ctx, [&] {
    CallerOf(*ctx, *users_);
    *resp = engine_->GetDefinition(req->id(), req->version());
  });
}

ServerUnaryReactor* RouterService::StartRun(CallbackServerContext* ctx, const v1::StartRunRequest* req, v1::Run* resp) {
  Engine::StartCall call;
  call.request = *req;
  return SubmitToGroup(ctx, *users_, starts_, std::move(call), &Engine::StartCall::run, resp);
}

ServerUnaryReactor* RouterService::GetRun(CallbackServerContext* ctx, const v1::GetRunRequest* req,
                                          v1::GetRunResponse* resp) {
  return Unary(ctx, [&] { *resp = engine_->GetRun(CallerOf(*ctx, *users_), req->run_id()); });
}

ServerUnaryReactor* RouterService::ListRuns(CallbackServerContext* ctx, const v1::ListRunsRequest* req,
                                            v1::ListRunsResponse* resp) {
  return Unary(ctx, [&] { *resp = engine_->ListRuns(CallerOf(*ctx, *users_), *req); });
}

ServerUnaryReactor* RouterService::CancelRun(CallbackServerContext* ctx, const v1::CancelRunRequest* req, v1::Run* resp) {
  return Unary(ctx, [&] { *resp = engine_->CancelRun(CallerOf(*ctx, *users_), req->run_id(), req->reason()); });
}

ServerUnaryReactor* RouterService::ListInbox(CallbackServerContext* ctx, const v1::ListInboxRequest* req,
                                             v1::ListInboxResponse* resp) {
  return Unary(ctx, [&] { *resp = engine_->Inbox(CallerOf(*ctx, *users_), *req); });
}

ServerUnaryReactor* RouterService::GetTask(CallbackServerContext* ctx, const v1::GetTaskRequest* req, v1::Task* resp) {
  return Unary(ctx, [&] { *resp = engine_->GetTask(CallerOf(*ctx, *users_), req->task_id()); });
}

ServerUnaryReactor* RouterService::ClaimTask(CallbackServerContext* ctx, const v1::ClaimTaskRequest* req, v1::Task* resp) {
  return Unary(ctx, [&] { *resp = engine_->Claim(CallerOf(*ctx, *users_), req->task_id()); });
}

ServerUnaryReactor* RouterService::CompleteTask(CallbackServerContext* ctx, const v1::CompleteTaskRequest* req,
                                                v1::Task* resp) {
  Engine::CompleteCall call;
  call.task_id = req->task_id();
  call.outcome = req->outcome();
  call.output = req->output();
  return SubmitToGroup(ctx, *users_, completions_, std::move(call), &Engine::CompleteCall::task, resp);
}

grpc::ServerBidiReactor<v1::CompleteTaskRequest, v1::CompleteTasksResponse>* RouterService::CompleteTasks(
    CallbackServerContext* ctx) {
  User caller;
  grpc::Status status = GuardedCall([&] { caller = CallerOf(*ctx, *users_); });
  if (!status.ok()) return Refused<grpc::ServerBidiReactor<v1::CompleteTaskRequest, v1::CompleteTasksResponse>>(status);
  return new CompletionStream(completions_, streams_, std::move(caller));
}

ServerUnaryReactor* RouterService::ReturnTask(CallbackServerContext* ctx, const v1::ReturnTaskRequest* req,
                                              v1::Task* resp) {
  return Unary(ctx, [&] {
    *resp = engine_->Return(CallerOf(*ctx, *users_), req->task_id(), req->reason(), req->output());
  });
}

ServerUnaryReactor* RouterService::ActivateJobs(CallbackServerContext* ctx, const v1::ActivateJobsRequest* req,
                                                v1::ActivateJobsResponse* resp) {
  return Unary(ctx, [&] {
    for (auto& j : engine_->ActivateJobs(CallerOf(*ctx, *users_), *req)) *resp->add_jobs() = std::move(j);
  });
}

ServerUnaryReactor* RouterService::CompleteJob(CallbackServerContext* ctx, const v1::CompleteJobRequest* req,
                                               v1::Task* resp) {
  return Unary(ctx, [&] { *resp = engine_->CompleteJob(CallerOf(*ctx, *users_), *req); });
}

ServerUnaryReactor* RouterService::FailJob(CallbackServerContext* ctx, const v1::FailJobRequest* req, v1::Task* resp) {
  return Unary(ctx, [&] { *resp = engine_->FailJob(CallerOf(*ctx, *users_), *req); });
}

ServerUnaryReactor* RouterService::AttachDocument(CallbackServerContext* ctx, const v1::AttachDocumentRequest* req,
                                                  v1::Task* resp) {
  return Unary(ctx, [&] { *resp = engine_->AttachDocument(CallerOf(*ctx, *users_), *req); });
}

}  // namespace sopflow

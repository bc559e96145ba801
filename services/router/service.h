// The Router gRPC service: each handler authenticates through CallerOf
// (the token was checked by the AuthMetadataProcessor), calls the engine,
// and lets GuardedCall map domain errors to status codes.
#pragma once

#include "call_groups.h"
#include "completion_stream.h"
#include "engine.h"
#include "sopflow/v1/router.grpc.pb.h"
#include "users.h"

namespace sopflow {

class RouterService final : public v1::Router::CallbackService {
 public:
  RouterService(Engine* engine, std::shared_ptr<const UserDirectory> users)
      : engine_(engine), users_(std::move(users)), completions_(engine), starts_(engine) {}

  grpc::ServerUnaryReactor* DeployDefinition(grpc::CallbackServerContext*, const v1::DeployDefinitionRequest*,
                                             v1::DeployDefinitionResponse*) override;
  grpc::ServerUnaryReactor* ListDefinitions(grpc::CallbackServerContext*, const v1::ListDefinitionsRequest*,
                                            v1::ListDefinitionsResponse*) override;
  grpc::ServerUnaryReactor* GetDefinition(grpc::CallbackServerContext*, const v1::GetDefinitionRequest*,
                                          v1::Definition*) override;
  grpc::ServerUnaryReactor* StartRun(grpc::CallbackServerContext*, const v1::StartRunRequest*, v1::Run*) override;
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext*, const v1::GetRunRequest*, v1::GetRunResponse*) override;
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext*, const v1::ListRunsRequest*,
                                     v1::ListRunsResponse*) override;
  grpc::ServerUnaryReactor* CancelRun(grpc::CallbackServerContext*, const v1::CancelRunRequest*, v1::Run*) override;
  grpc::ServerUnaryReactor* ListInbox(grpc::CallbackServerContext*, const v1::ListInboxRequest*,
                                      v1::ListInboxResponse*) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext*, const v1::GetTaskRequest*, v1::Task*) override;
  grpc::ServerUnaryReactor* ClaimTask(grpc::CallbackServerContext*, const v1::ClaimTaskRequest*, v1::Task*) override;
  grpc::ServerUnaryReactor* CompleteTask(grpc::CallbackServerContext*, const v1::CompleteTaskRequest*,
                                         v1::Task*) override;
  grpc::ServerBidiReactor<v1::CompleteTaskRequest, v1::CompleteTasksResponse>* CompleteTasks(
      grpc::CallbackServerContext*) override;
  grpc::ServerUnaryReactor* ReturnTask(grpc::CallbackServerContext*, const v1::ReturnTaskRequest*, v1::Task*) override;
  grpc::ServerUnaryReactor* ActivateJobs(grpc::CallbackServerContext*, const v1::ActivateJobsRequest*,
                                         v1::ActivateJobsResponse*) override;
  grpc::ServerUnaryReactor* CompleteJob(grpc::CallbackServerContext*, const v1::CompleteJobRequest*,
                                        v1::Task*) override;
  grpc::ServerUnaryReactor* FailJob(grpc::CallbackServerContext*, const v1::FailJobRequest*, v1::Task*) override;
  grpc::ServerUnaryReactor* AttachDocument(grpc::CallbackServerContext*, const v1::AttachDocumentRequest*,
                                           v1::Task*) override;

  // Ends the open CompleteTasks streams (UNAVAILABLE once what they read is
  // answered) and refuses new ones: the first step of a drain.
  void DrainStreams() { streams_.Drain(); }

 private:
  Engine* engine_;
  std::shared_ptr<const UserDirectory> users_;
  CompletionGroups completions_;  // CompleteTask calls and streams, committed in groups
  StartGroups starts_;            // StartRun calls, committed in groups
  CompletionStreams streams_;
};

}  // namespace sopflow

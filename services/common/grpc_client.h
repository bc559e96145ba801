// Client-side helpers shared by sopctl, the demo, workers and tests.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

namespace sopflow {

// A context that carries "authorization: Bearer <token>" and a deadline.
std::unique_ptr<grpc::ClientContext> AuthedContext(const std::string& token,
                                                   std::chrono::milliseconds timeout = std::chrono::seconds(10));
// A plaintext channel (loopback or mesh); TLS when ca_file is given.
std::shared_ptr<grpc::Channel> OpenChannel(const std::string& address, const std::string& ca_file = "");

// "NOT_FOUND" for grpc::StatusCode::NOT_FOUND.
std::string StatusCodeName(grpc::StatusCode code);

}  // namespace sopflow

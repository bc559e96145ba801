// Domain errors. Logic code throws DomainError; the one mapping to gRPC
// status codes lives in grpc_server.cc (ToGrpcStatus), so handlers never
// pick status codes themselves.
#pragma once

#include <stdexcept>
#include <string>

namespace sopflow {

enum class ErrorCode {
  kInvalidArgument,     // a request field is wrong; `field` names it
  kNotFound,            // unknown definition, run, task
  kAlreadyExists,
  kFailedPrecondition,  // the thing is not in a state for this call
  kPermissionDenied,    // the user lacks the role/unit/admin right
  kUnauthenticated,
  kOutOfRange,          // e.g. a resume cursor older than what is kept
  kUnavailable,         // Redis or NATS unreachable: retry
  kInternal,
};

class DomainError : public std::runtime_error {
 public:
  DomainError(ErrorCode code, std::string message, std::string field = {})
      : std::runtime_error(field.empty() ? message : field + ": " + message),
        code_(code),
        field_(std::move(field)) {}

  ErrorCode code() const { return code_; }
  const std::string& field() const { return field_; }

 private:
  ErrorCode code_;
  std::string field_;
};

[[noreturn]] inline void ThrowInvalid(std::string field, std::string message) {
  throw DomainError(ErrorCode::kInvalidArgument, std::move(message), std::move(field));
}
[[noreturn]] inline void ThrowNotFound(std::string message) {
  throw DomainError(ErrorCode::kNotFound, std::move(message));
}
[[noreturn]] inline void ThrowPrecondition(std::string message) {
  throw DomainError(ErrorCode::kFailedPrecondition, std::move(message));
}
[[noreturn]] inline void ThrowDenied(std::string message) {
  throw DomainError(ErrorCode::kPermissionDenied, std::move(message));
}
[[noreturn]] inline void ThrowUnavailable(std::string message) {
  throw DomainError(ErrorCode::kUnavailable, std::move(message));
}

}  // namespace sopflow

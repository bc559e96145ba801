// Webhooks an ops team declares in a file (a Kubernetes ConfigMap) instead
// of registering them over gRPC. Their signing secrets are never in the
// file: each names the environment variable that holds it, which Kubernetes
// fills from a Secret.
//
//   webhooks:
//     - id: esakip-kalbar                    # becomes webhook id "wh-esakip-kalbar"
//       url: https://esakip.example.go.id/hooks/sopflow
//       unit: kalbar-biro-organisasi
//       role: karo_organisasi                # optional: only this role's notifications
//       kinds: [TASK_ASSIGNED, TASK_OVERDUE]      # optional: all kinds
//       secret_env: WEBHOOK_SECRET_ESAKIP    # required
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sopflow/v1/notifier.pb.h"

namespace sopflow::notifier {

// Reads the environment; tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnvironment();

// Parses a declared-webhooks file. Throws DomainError(kInvalidArgument) naming
// every problem as "file:line: field: message"; nothing is declared then.
std::vector<v1::Webhook> LoadDeclaredWebhooks(const std::string& path, const EnvLookup& env);

}  // namespace sopflow::notifier

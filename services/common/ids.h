#pragma once

#include <string>

#include "clock.h"

namespace sopflow {

// A run id: time-ordered (sortable by start) and random, 20 characters of
// Crockford base32, e.g. "01JD3Q5Z8K6M2P4R7T9V".
std::string NewRunId(TimePoint now);
// A replica's default name: host-pid-random, unique across restarts.
std::string DefaultReplicaId();
// Random lowercase hex of `bytes` bytes.
std::string RandomHex(size_t bytes);
// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(const std::string& data);

}  // namespace sopflow

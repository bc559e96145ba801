// The settings every service replica has.
#pragma once

#include <cstdint>
#include <string>

namespace sopflow {

struct ServiceConfig {
  std::string listen;                       // gRPC address; each service sets its default port
  std::string redis = "127.0.0.1:6379";
  std::string nats = "nats://127.0.0.1:4222";
  int stream_replicas = 1;                  // copies of the event stream in a JetStream cluster
  std::string tokens_file;
  std::string tls_cert_file;                // with tls_key_file: TLS; else loopback peers only
  std::string tls_key_file;
  int tls_reload_s = 60;                    // how often the certificate files are checked for a renewal
  std::string tls_ca_file;                  // CA for calls to other sopflow services over TLS
  std::string health_listen;                // host:port for a plaintext grpc.health.v1 (kubelet probes)
  std::string replica_id;                   // default: host-pid-random
  int redis_pool = 8;
  int drain_ms = 10000;                     // grace for running calls on SIGTERM
  int not_serving_delay_ms = 0;             // on SIGTERM, NOT_SERVING this long before closing
  int64_t ack_wait_ms = 10000;              // events a dead replica held return after this
  std::string metrics_listen;               // host:port for GET /metrics; empty: off
  std::string port_file;                    // once listening, the gRPC port is written here
};

}  // namespace sopflow

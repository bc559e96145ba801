// An archiver replica: gRPC server and the consumer of run.completed
// (durable "archiver"), reading runs from the router and reports from the
// aggregator.
#pragma once

#include <memory>
#include <string>

#include "clock.h"
#include "service_config.h"

namespace sopflow::archiver {

struct Config : ServiceConfig {
  Config() { listen = "127.0.0.1:7304"; }
  std::string blob_dir = "var/archive/blobs";
  std::string rules_dir = "deploy/base/archiver";  // klasifikasi.yaml, jra.yaml, berkas.yaml
  std::string router;
  std::string aggregator;     // optional: reports are filed when given
  std::string service_token;  // a user with read_runs
};

class ArchiverProcess {
 public:
  ArchiverProcess(Config config, const Clock* clock);
  ~ArchiverProcess();
  void Start();
  int port() const;
  int health_port() const;  // 0 without --health-listen
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sopflow::archiver

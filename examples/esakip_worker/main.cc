// sopflow-esakip-worker: an external job worker for SYSTEM steps of type
// "esakip.input" (seed 004 step 9: entering the measurement into the
// regency's e-SAKIP). It activates jobs over gRPC, does the work, and
// completes them, like a Zeebe job worker. Here the "work" builds a receipt;
// a real connector would call e-SAKIP and FailJob on errors.
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <iostream>

#include "actors.h"
#include "grpc_client.h"

namespace {
std::atomic<bool> stop{false};
void OnSignal(int) { stop = true; }
}  // namespace

int main(int argc, char** argv) {
  std::string router = "127.0.0.1:7301", token, job_type = "esakip.input", worker = "esakip-worker-1";
  CLI::App app{"e-SAKIP job worker"};
  app.add_option("--router", router)->envname("SOPFLOW_ROUTER")->capture_default_str();
  app.add_option("--token", token)->envname("SOPFLOW_TOKEN")->required();
  app.add_option("--job-type", job_type)->capture_default_str();
  app.add_option("--worker", worker)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  auto stub = sopflow::v1::Router::NewStub(sopflow::OpenChannel(router));
  std::cout << "e-SAKIP worker " << worker << " waiting for " << job_type << " jobs" << std::endl;
  int done = sopflow::demo::RunJobWorker(*stub, token, job_type, worker, stop,
                                         [](const std::string& line) { std::cout << line << std::endl; });
  std::cout << "e-SAKIP worker stopped after " << done << " job(s)" << std::endl;
  return 0;
}

// sopbench: measures the event chain the way users load it. Self-contained
// by default: starts redis-server (appendonly, fsync every second),
// nats-server -js (file storage), router and notifier replicas, deploys a
// 10-step SOP, starts N runs, and has one worker per actor learn of each
// task from a notifier Subscribe stream and complete it at once. The last
// line printed is one JSON object with the figures.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "grpc_client.h"
#include "servers.h"
#include "sopflow/v1/notifier.grpc.pb.h"
#include "sopflow/v1/router.grpc.pb.h"

namespace fs = std::filesystem;
using namespace sopflow;
using sopflow::testing::ChildProcess;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kSteps = 10;

// CPU time (user + system) of a process so far, in milliseconds.
double CpuMs(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close_paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// One CompleteTask in flight: what the callback needs alive until it runs.
struct Completion {
  std::unique_ptr<grpc::ClientContext> context;
  v1::CompleteTaskRequest request;
  v1::Task response;
};

// Bounds the calls a worker has in flight.
class InflightWindow {
 public:
  explicit InflightWindow(int limit) : free_(limit), limit_(limit) {}
  void Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void Release() {
    std::lock_guard lock(mu_);
    ++free_;
    cv_.notify_all();
  }
  // Every call answered (each has a deadline, so this is bounded).
  void WaitIdle() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return free_ == limit_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_, limit_;
};

struct Timings {
  std::mutex mu;
  std::map<std::string, std::array<Clock::time_point, kSteps + 2>> received, completed;  // by run, by gen
  std::map<std::string, Clock::time_point> started;
  std::vector<double> handoffs, runs;
};

}  // namespace

int main(int argc, char** argv) {
  int runs = 2000, routers = 1, notifiers = 1, rate = 0, timeout_s = 600, inflight = 64;
  std::string bin_dir, work_dir;
  CLI::App app{"sopbench: hand-off throughput and latency of the sopflow event chain"};
  app.add_option("--runs", runs, "runs to start")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--rate", rate, "open loop: runs started per second (0: as fast as possible)")->capture_default_str();
  app.add_option("--routers", routers, "router replicas")->capture_default_str()->check(CLI::Range(1, 8));
  app.add_option("--notifiers", notifiers, "notifier replicas")->capture_default_str()->check(CLI::Range(1, 8));
  app.add_option("--inflight", inflight, "CompleteTask calls each worker has in flight at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--bin-dir", bin_dir, "the build folder (default: next to this program)");
  app.add_option("--work-dir", work_dir, "data folder (default: a new temporary one)");
  app.add_option("--timeout", timeout_s, "give up after this many seconds")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (bin_dir.empty()) bin_dir = fs::canonical("/proc/self/exe").parent_path().parent_path().parent_path().string();
  if (work_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "sopbench-XXXXXX").string();
    work_dir = mkdtemp(tmpl.data());
  }
  std::string source = fs::canonical(fs::path(__FILE__).parent_path()).string();

  // Users: an admin and one user per actor role.
  {
    std::ofstream t(work_dir + "/tokens.yaml");
    t << "users:\n  - {id: admin, unit: bench, roles: [], admin: true, token: bench-admin}\n";
    for (int i = 1; i <= kSteps; ++i)
      t << "  - {id: actor-" << i << ", unit: bench, roles: [step-" << i << "], token: bench-" << i << "}\n";
  }
  auto redis_server = std::make_unique<sopflow::testing::RedisServer>(work_dir);
  auto nats_server = std::make_unique<sopflow::testing::NatsServer>(work_dir);
  struct Child {
    std::string name;
    int port;
    std::unique_ptr<ChildProcess> process;
  };
  std::vector<Child> children;
  auto spawn = [&](const std::string& name, int port, const std::vector<std::string>& argv, const std::string& log) {
    children.push_back({name, port, std::make_unique<ChildProcess>()});
    children.back().process->Start(argv, {}, log);
  };
  std::string redis = redis_server->address(), nats = nats_server->url();
  std::vector<int> router_ports, notifier_ports;
  for (int i = 0; i < routers; ++i) {
    int port = sopflow::testing::FreePort();
    router_ports.push_back(port);
    spawn("router", port, {bin_dir + "/services/router/sopflow-router", "--listen", "127.0.0.1:" + std::to_string(port),
                                        "--redis", redis, "--nats", nats, "--tokens", work_dir + "/tokens.yaml",
                                        "--log-level", "warn"},
          work_dir + "/router-" + std::to_string(i) + ".log");
  }
  for (int i = 0; i < notifiers; ++i) {
    int port = sopflow::testing::FreePort();
    notifier_ports.push_back(port);
    spawn("notifier", port, {bin_dir + "/services/notifier/sopflow-notifier", "--listen",
                                          "127.0.0.1:" + std::to_string(port), "--redis", redis, "--nats", nats, "--tokens",
                                          work_dir + "/tokens.yaml", "--templates", source + "/../../deploy/base/notifier/templates",
                                          "--log-level", "warn"},
          work_dir + "/notifier-" + std::to_string(i) + ".log");
  }
  for (const auto& child : children) {
    std::string why = child.process->WaitListening(child.port, 15000);
    if (!why.empty()) {
      std::cerr << "sopbench: " << child.name << " " << why;
      return 1;
    }
  }

  std::vector<std::unique_ptr<v1::Router::Stub>> router_stubs;
  for (int p : router_ports) router_stubs.push_back(v1::Router::NewStub(OpenChannel("127.0.0.1:" + std::to_string(p))));
  {
    std::ifstream in(source + "/bench-10.yaml");
    v1::DeployDefinitionRequest req;
    req.set_yaml(std::string((std::istreambuf_iterator<char>(in)), {}));
    req.set_file_name("bench-10.yaml");
    v1::DeployDefinitionResponse resp;
    auto st = router_stubs[0]->DeployDefinition(AuthedContext("bench-admin").get(), req, &resp);
    if (!st.ok()) {
      std::cerr << "deploy: " << st.error_message() << "\n";
      return 1;
    }
  }

  Timings timings;
  std::atomic<int> runs_done{0}, errors{0};
  std::atomic<bool> stop{false};
  const std::string output_blob(200, 'x');  // ~200 bytes of output per step
  std::vector<std::unique_ptr<grpc::ClientContext>> stream_contexts(kSteps);
  std::vector<std::thread> workers;
  std::atomic<int> streams_ready{0};
  for (int step = 1; step <= kSteps; ++step) {
    workers.emplace_back([&, step] {
      auto notifier = v1::Notifier::NewStub(
          OpenChannel("127.0.0.1:" + std::to_string(notifier_ports[step % notifier_ports.size()])));
      auto& router = *router_stubs[step % router_stubs.size()];
      std::string token = "bench-" + std::to_string(step);
      v1::SubscribeRequest sub;
      sub.set_role("step-" + std::to_string(step));
      stream_contexts[step - 1] = AuthedContext(token, std::chrono::hours(24));
      auto reader = notifier->Subscribe(stream_contexts[step - 1].get(), sub);
      ++streams_ready;
      // Completions go out asynchronously, at most `inflight` at a time per
      // worker, as a real client working several tasks would; a worker that
      // waited for each reply would cap the chain at workers / latency.
      InflightWindow window(inflight);
      v1::Notification n;
      while (!stop && reader->Read(&n)) {
        if (n.kind() != v1::Notification::TASK_ASSIGNED) continue;
        auto now = Clock::now();
        uint32_t gen = n.step();
        {
          std::lock_guard lock(timings.mu);
          timings.received[n.run_id()][gen] = now;
          if (gen > 1) {
            auto prev = timings.completed[n.run_id()][gen - 1];
            if (prev.time_since_epoch().count() != 0) timings.handoffs.push_back(Ms(now - prev));
          }
        }
        window.Acquire();
        auto* call = new Completion;
        call->context = AuthedContext(token);
        call->request.set_task_id(n.task_id());
        call->request.mutable_output()->set_note(output_blob);
        std::string run_id = n.run_id();
        router.async()->CompleteTask(call->context.get(), &call->request, &call->response,
                                     [&, call, run_id, gen](grpc::Status st) {
          auto done = Clock::now();
          if (!st.ok()) {
            ++errors;
          } else {
            std::lock_guard lock(timings.mu);
            timings.completed[run_id][gen] = done;
            // The next task may reach its worker before this reply reaches
            // us: that hand-off took no time after CompleteTask returned.
            if (gen < kSteps && timings.received[run_id][gen + 1].time_since_epoch().count() != 0)
              timings.handoffs.push_back(0);
            if (gen == kSteps) {
              timings.runs.push_back(Ms(done - timings.started[run_id]));
              ++runs_done;
            }
          }
          delete call;
          window.Release();
        });
      }
      window.WaitIdle();
    });
  }
  while (streams_ready < kSteps) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the streams are reading

  auto cpu_of = [&] {
    std::map<std::string, double> cpu{{"redis-server", CpuMs(redis_server->pid())}, {"nats-server", CpuMs(nats_server->pid())}};
    for (const auto& child : children) cpu[child.name] += CpuMs(child.process->pid());
    return cpu;
  };
  std::map<std::string, double> cpu_before = cpu_of();
  double bench_before = CpuMs(getpid());
  auto t0 = Clock::now();
  // Starters: open loop at --rate, or as fast as a few threads go.
  int starter_threads = 4;
  std::atomic<int> next{0};
  std::vector<std::thread> starters;
  for (int s = 0; s < starter_threads; ++s)
    starters.emplace_back([&, s] {
      auto& router = *router_stubs[s % router_stubs.size()];
      for (int i = next++; i < runs; i = next++) {
        if (rate > 0) std::this_thread::sleep_until(t0 + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate)));
        v1::StartRunRequest req;
        req.set_sop_id("sopbench-10");
        req.set_period("2026-Q4");
        req.set_unit("bench");
        v1::Run run;
        auto before = Clock::now();
        auto st = router.StartRun(AuthedContext("bench-1").get(), req, &run);
        if (!st.ok()) {
          ++errors;
          continue;
        }
        std::lock_guard lock(timings.mu);
        timings.started[run.id()] = before;
      }
    });
  for (auto& t : starters) t.join();
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (runs_done < runs - errors && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  double elapsed_s = Ms(Clock::now() - t0) / 1000.0;
  std::map<std::string, double> cpu_after = cpu_of();
  double bench_cpu = CpuMs(getpid()) - bench_before;

  stop = true;
  for (auto& ctx : stream_contexts)
    if (ctx) ctx->TryCancel();
  for (auto& w : workers) w.join();
  children.clear();  // SIGTERM, then SIGKILL after a grace
  nats_server.reset();
  redis_server.reset();

  double handoffs = static_cast<double>(timings.handoffs.size());
  nlohmann::json cpu;
  for (const char* name : {"router", "notifier", "redis-server", "nats-server"})
    cpu[name] = handoffs > 0 ? (cpu_after[name] - cpu_before[name]) / handoffs : 0;
  cpu["bench"] = handoffs > 0 ? bench_cpu / handoffs : 0;
  nlohmann::json out = {
      {"runs", runs},
      {"runs_completed", runs_done.load()},
      {"errors", errors.load()},
      {"seconds", elapsed_s},
      {"runs_per_s", runs_done / elapsed_s},
      {"handoffs_per_s", handoffs / elapsed_s},
      {"handoff_latency_ms",
       {{"p50", Percentile(timings.handoffs, 50)},
        {"p95", Percentile(timings.handoffs, 95)},
        {"p99", Percentile(timings.handoffs, 99)},
        {"max", timings.handoffs.empty() ? 0 : *std::max_element(timings.handoffs.begin(), timings.handoffs.end())}}},
      {"run_latency_ms", {{"p50", Percentile(timings.runs, 50)}, {"p99", Percentile(timings.runs, 99)}}},
      {"cpu_ms_per_handoff", cpu},
      {"settings",
       {{"steps", kSteps}, {"rate", rate}, {"routers", routers}, {"notifiers", notifiers},
        {"redis", "appendonly yes, appendfsync everysec"}, {"jetstream", "file storage"},
        {"workers", "one per actor, notifier Subscribe stream + asynchronous CompleteTask"},
        {"inflight_per_worker", inflight}, {"output_bytes", 200}}},
  };
  std::cout << out.dump() << std::endl;
  return runs_done == runs ? 0 : 2;
}

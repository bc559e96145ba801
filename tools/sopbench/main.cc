// sopbench: measures the event chain the way users load it. Self-contained
// by default: starts redis-server (appendonly, fsync every second),
// nats-server -js (file storage), router and notifier replicas, deploys a
// 10-step SOP, starts N runs, and has one worker per actor learn of each
// task from a notifier Subscribe stream and complete it at once (over a
// CompleteTasks stream, or with --complete-with unary CompleteTask calls). Given
// --redis and --nats it starts only the services, against those; given
// --router and --notifier it starts nothing and loads that deployment. The
// last line printed is one JSON object with the figures.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>

#include "grpc_client.h"
#include "notification_feed.h"
#include "redis.h"
#include "servers.h"
#include "sopflow/v1/notifier.grpc.pb.h"
#include "sopflow/v1/router.grpc.pb.h"

namespace fs = std::filesystem;
using namespace sopflow;
using sopflow::testing::ChildProcess;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kSteps = 10;

struct Options {
  int runs = 2000, routers = 1, notifiers = 1, rate = 0, timeout_s = 600, inflight = 64, idle_subscribers = 0;
  int starters = 4;  // threads calling StartRun, each one call at a time
  int directory_users = 0;  // more users in the tokens file, in other units
  int webhooks = 0;         // webhooks registered for other units
  std::string bin_dir, work_dir;
  std::string redis, nats;                                // running infrastructure: start only the services
  std::vector<std::string> router_addrs, notifier_addrs;  // a running deployment: start nothing
  std::string ca_file;
  std::string latency_log;
  std::string admin_token = "bench-admin", token_prefix = "bench-";
  std::string complete_with = "stream";  // "stream": one CompleteTasks stream per worker; "unary": CompleteTask calls
  bool print_users = false;
  bool start_only = false;  // no workers: only how fast runs are started
  bool connected() const { return !router_addrs.empty(); }
  bool own_infrastructure() const { return !connected() && redis.empty(); }
  std::string ActorToken(int step) const { return token_prefix + std::to_string(step); }
  // The notifiers' service account: their timers ask the router (read_runs).
  std::string NotifierToken() const { return token_prefix + "notifier"; }
};

// The users the benchmark acts as: an admin that deploys its SOP, and one
// user per actor role. A deployment it connects to must know them
// (`sopbench --print-users` prints this file).
std::string UsersYaml(const Options& o) {
  std::ostringstream t;
  t << "users:\n  - {id: bench-admin, unit: bench, roles: [], admin: true, token: " << o.admin_token << "}\n";
  for (int i = 1; i <= kSteps; ++i)
    t << "  - {id: actor-" << i << ", unit: bench, roles: [step-" << i << "], token: " << o.ActorToken(i) << "}\n";
  t << "  - {id: bench-notifier, unit: bench, roles: [], permissions: [read_runs], token: " << o.NotifierToken() << "}\n";
  // A province's directory: the same roles in a hundred other units, as
  // the users of other offices hold them; none of them works here.
  for (int i = 0; i < o.directory_users; ++i) {
    std::string hash = std::to_string(i);  // a token nobody presents
    hash.insert(0, 64 - hash.size(), '0');
    t << "  - {id: staff-" << i << ", unit: unit-" << i % 100 << ", roles: [step-" << i % kSteps + 1
      << "], token_sha256: " << hash << "}\n";
  }
  return t.str();
}

// Options that contradict each other, or "" when they do not.
std::string OptionConflict(const Options& o, const CLI::App& app) {
  if (o.router_addrs.empty() != o.notifier_addrs.empty()) return "--router and --notifier go together";
  if (o.redis.empty() != o.nats.empty()) return "--redis and --nats go together";
  if (o.connected()) {
    for (const char* own : {"--routers", "--notifiers", "--redis", "--nats", "--bin-dir", "--webhooks", "--directory-users"})
      if (app.count(own) > 0)
        return std::string(own) + " applies when sopbench starts the services; with --router/--notifier it starts nothing";
  }
  if (!o.ca_file.empty()) {
    if (!o.connected()) return "--ca-file applies to a deployment given with --router/--notifier";
    if (!std::ifstream(o.ca_file)) return "--ca-file " + o.ca_file + ": cannot read it";
  }
  return "";
}

// CPU time (user + system) of a process so far, in milliseconds, with that
// of its children it has reaped when `with_children`: Redis rewrites its
// append-only file in a forked child (two rewrites, ~1.2 s of CPU, in a
// --runs 2000 run), a cost of durability the box pays that the parent's
// own time does not show. A rewrite still running at the end is not in it.
double CpuMs(pid_t pid, bool with_children) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close_paren + 2));
  std::string field;
  unsigned long long ticks = 0;  // fields 14-15: utime, stime; 16-17: cutime, cstime
  for (int i = 3; i <= 17 && rest >> field; ++i)
    if (i == 14 || i == 15 || (with_children && (i == 16 || i == 17))) ticks += std::stoull(field);
  return static_cast<double>(ticks) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Context switches (voluntary and not) of a process's threads so far: each
// is a thread put to sleep or preempted, the cost that dominates a hand-off.
uint64_t ContextSwitches(pid_t pid) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0 || line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
        total += std::stoull(line.substr(line.find(':') + 1));
  }
  return total;
}

// The whole machine's CPU time so far (/proc/stat, clock ticks): what was
// busy, and what the hypervisor took (steal), which on a shared VM moves
// every figure.
struct HostTicks {
  uint64_t busy = 0, steal = 0, total = 0;
};

HostTicks ReadHostTicks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  HostTicks t;
  t.busy = user + nice + system + irq + softirq;
  t.steal = steal;
  t.total = t.busy + idle + iowait + steal;
  return t;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// What the benchmark loads: the gRPC addresses of the services, and the
// processes it started itself, whose CPU time it can measure. Members are
// destroyed in reverse order: the services stop before NATS and Redis.
struct Deployment {
  std::vector<std::string> routers, notifiers;
  std::string ca_file;
  std::string redis;  // host:port when known (not for a connected run)
  std::unique_ptr<sopflow::testing::RedisServer> redis_server;
  std::unique_ptr<sopflow::testing::NatsServer> nats_server;
  struct Child {
    std::string name;
    int port;  // as the service wrote it (ChildProcess::WaitOwnPort)
    std::unique_ptr<ChildProcess> process;
  };
  std::vector<Child> children;

  // Process name -> pids, for the processes this benchmark started.
  std::map<std::string, std::vector<pid_t>> Measured() const {
    std::map<std::string, std::vector<pid_t>> pids;
    if (redis_server) pids["redis-server"].push_back(redis_server->pid());
    if (nats_server) pids["nats-server"].push_back(nats_server->pid());
    for (const auto& child : children) pids[child.name].push_back(child.process->pid());
    return pids;
  }
};

// Starts the router and notifier replicas (and Redis and NATS unless given);
// "" or why it could not.
std::string StartLocal(const Options& o, const std::string& source, Deployment& d) {
  {
    std::ofstream t(o.work_dir + "/tokens.yaml");
    t << UsersYaml(o);
  }
  std::string redis = o.redis, nats = o.nats;
  if (o.own_infrastructure()) {
    d.redis_server = std::make_unique<sopflow::testing::RedisServer>(o.work_dir);
    d.nats_server = std::make_unique<sopflow::testing::NatsServer>(o.work_dir);
    redis = d.redis_server->address();
    nats = d.nats_server->url();
  }
  d.redis = redis;
  // Each service picks its own port (port 0) and says which: a port
  // picked here could be taken before the service binds it (by the next
  // replica started, or by a test running beside), and the benchmark would
  // then talk to the wrong process.
  auto spawn = [&](const std::string& name, int index, std::vector<std::string> extra) {
    std::vector<std::string> argv{o.bin_dir + "/services/" + name + "/sopflow-" + name, "--redis", redis, "--nats",
                                  nats, "--tokens", o.work_dir + "/tokens.yaml", "--log-level", "warn"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    d.children.push_back({name, 0, std::make_unique<ChildProcess>()});
    d.children.back().process->StartWithOwnPort(argv, {}, o.work_dir + "/" + name + "-" + std::to_string(index) + ".log");
  };
  // Waits for the children started since `from` to say their ports.
  auto wait_ports = [&](size_t from) -> std::string {
    for (size_t i = from; i < d.children.size(); ++i) {
      auto& child = d.children[i];
      std::string why = child.process->WaitOwnPort(15000, &child.port);
      if (!why.empty()) return child.name + " " + why;
      (child.name == "router" ? d.routers : d.notifiers).push_back("127.0.0.1:" + std::to_string(child.port));
    }
    return "";
  };
  for (int i = 0; i < o.routers; ++i) spawn("router", i, {});
  if (std::string why = wait_ports(0); !why.empty()) return why;
  // Notifiers after the routers: their timers need a router's address.
  const size_t first_notifier = d.children.size();
  for (int i = 0; i < o.notifiers; ++i)
    spawn("notifier", i,
          {"--templates", source + "/../../deploy/base/notifier/templates", "--router",
           d.routers[i % d.routers.size()], "--service-token", o.NotifierToken()});
  return wait_ports(first_notifier);
}

// One CompleteTask in flight: what the callback needs alive until it runs.
struct Completion {
  std::unique_ptr<grpc::ClientContext> context;
  v1::CompleteTaskRequest request;
  v1::Task response;
};

// A worker's CompleteTasks stream: its requests go out one write at a time
// (gRPC allows one outstanding write per stream), queued meanwhile; each
// answer is handed to `on_answer` as it arrives, on a gRPC thread.
class CompletionStreamClient final
    : public grpc::ClientBidiReactor<v1::CompleteTaskRequest, v1::CompleteTasksResponse> {
 public:
  using OnAnswer = std::function<void(const v1::CompleteTasksResponse&)>;
  // When the stream ends, with the requests it left unanswered (applied or
  // not: a killed router may have committed some before it died).
  using OnEnd = std::function<void(const grpc::Status&, std::vector<v1::CompleteTaskRequest> unanswered)>;
  CompletionStreamClient(v1::Router::Stub& router, std::unique_ptr<grpc::ClientContext> context, OnAnswer on_answer,
                         OnEnd on_end)
      : context_(std::move(context)), on_answer_(std::move(on_answer)), on_end_(std::move(on_end)) {
    router.async()->CompleteTasks(context_.get(), this);
    StartRead(&answer_);
    StartCall();
  }

  // False if the stream has ended: the request was not taken.
  bool Send(const v1::CompleteTaskRequest& request) {
    std::unique_lock lock(mu_);
    if (ended_) return false;
    unanswered_.emplace(request.task_id(), request);
    queued_.push_back(request);
    if (!writing_) WriteNext(lock);
    return true;
  }

  // Closes the sending side once everything queued is written, then waits
  // until the router has answered and ended the stream (or `limit` passes).
  grpc::Status CloseAndWait(std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    closing_ = true;
    if (!writing_ && !closed_) {
      closed_ = true;
      StartWritesDone();
    }
    if (!cv_.wait_for(lock, limit, [&] { return done_; })) {
      context_->TryCancel();
      cv_.wait(lock, [&] { return done_; });  // gRPC ends a cancelled call promptly
    }
    return status_;
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (!ok) return;  // the stream ended; OnDone says why
    if (!queued_.empty()) return WriteNext(lock);
    if (closing_ && !closed_) {
      closed_ = true;
      StartWritesDone();
    }
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      std::lock_guard lock(mu_);
      if (auto it = unanswered_.find(answer_.task_id()); it != unanswered_.end()) unanswered_.erase(it);
    }
    on_answer_(answer_);
    StartRead(&answer_);
  }
  void OnDone(const grpc::Status& status) override {
    std::vector<v1::CompleteTaskRequest> unanswered;
    {
      std::lock_guard lock(mu_);
      for (auto& [task_id, request] : unanswered_) unanswered.push_back(std::move(request));
      unanswered_.clear();
      status_ = status;
      ended_ = true;  // a Send from now on is refused
    }
    on_end_(status, std::move(unanswered));
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

 private:
  // Starts writing the first queued request; `lock` is released first
  // (gRPC may run OnWriteDone at once).
  void WriteNext(std::unique_lock<std::mutex>& lock) {
    writing_ = true;
    sending_ = std::move(queued_.front());
    queued_.pop_front();
    grpc::WriteOptions options;
    if (!queued_.empty()) options.set_buffer_hint();  // more behind it: send them together
    lock.unlock();
    StartWrite(&sending_, options);
  }

  std::unique_ptr<grpc::ClientContext> context_;
  OnAnswer on_answer_;
  OnEnd on_end_;
  v1::CompleteTasksResponse answer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::CompleteTaskRequest> queued_;
  v1::CompleteTaskRequest sending_;
  bool writing_ = false, closing_ = false, closed_ = false, ended_ = false, done_ = false;
  std::unordered_multimap<std::string, v1::CompleteTaskRequest> unanswered_;  // by task id
  grpc::Status status_;
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

// Calls made again after a pause, on a thread of its own: a completion
// refused because the deployment cannot serve now (Redis restarting, say)
// is sent again as a client would, without holding up the thread that
// read the refusal.
class DelayedCalls {
 public:
  DelayedCalls() : thread_([this] { Loop(); }) {}
  ~DelayedCalls() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();  // what is still due runs first: each holds a worker's slot
  }
  void After(std::chrono::milliseconds pause, std::function<void()> call) {
    std::lock_guard lock(mu_);
    due_.emplace(Clock::now() + pause, std::move(call));
    cv_.notify_all();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (due_.empty()) {
        if (stopping_) return;
        cv_.wait(lock);
        continue;
      }
      auto next = due_.begin();
      if (!stopping_ && cv_.wait_until(lock, next->first) != std::cv_status::timeout) continue;
      next = due_.begin();  // one due sooner may have come meanwhile
      auto call = std::move(next->second);
      due_.erase(next);
      lock.unlock();
      call();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> due_;
  bool stopping_ = false;
  std::thread thread_;
};

// Refusals a client retries: the deployment cannot serve now, or the call
// ran past its deadline. Retrying is safe: a run is started with a
// request_id, and the router answers a completion repeated after it was
// applied as it answered the first.
bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}
constexpr int kMaxAttempts = 20;
// Before the attempt after `attempt`: 100 ms doubling up to 2 s (about
// 33 s over all the attempts).
std::chrono::milliseconds RetryPause(int attempt) {
  return std::chrono::milliseconds(std::min(100 << std::min(attempt - 1, 5), 2000));
}

// A worker's CompleteTasks stream, kept as a client should keep it. When
// the stream ends while requests are unanswered because its router could
// not serve (killed, restarted or drained: UNAVAILABLE), a new stream is
// opened after a pause and those requests are sent again on it. A request
// the dead router had applied is answered as it was the first time.
// Requests sent meanwhile wait for the new stream.
class CompletionStreams {
 public:
  // Requests given up on: the stream ended in a way not worth retrying,
  // or after kMaxAttempts streams.
  using OnLost = std::function<void(const grpc::Status&, int lost)>;
  using OpenStream = std::function<std::unique_ptr<grpc::ClientContext>()>;
  CompletionStreams(v1::Router::Stub& router, OpenStream context_of, CompletionStreamClient::OnAnswer on_answer,
                    OnLost on_lost, DelayedCalls& later, std::atomic<int>& retried)
      : router_(router), context_of_(std::move(context_of)), on_answer_(std::move(on_answer)),
        on_lost_(std::move(on_lost)), later_(later), retried_(retried), current_(Open()) {}

  void Send(v1::CompleteTaskRequest request) {
    for (;;) {
      std::shared_ptr<CompletionStreamClient> stream;
      {
        std::lock_guard lock(mu_);
        if (given_up_) break;
        if (reopening_) return waiting_.push_back(std::move(request));
        stream = current_;
      }
      if (stream->Send(request)) return;
      std::lock_guard lock(mu_);
      // Ended, and its end not yet handled: that will send this again too.
      if (!given_up_ && (reopening_ || current_ == stream)) return waiting_.push_back(std::move(request));
    }
    on_lost_(given_up_status_, 1);
  }

  // Once every request is answered: ends the stream (see
  // CompletionStreamClient::CloseAndWait).
  grpc::Status CloseAndWait(std::chrono::seconds limit) {
    std::shared_ptr<CompletionStreamClient> stream;
    {
      std::unique_lock lock(mu_);
      closing_ = true;
      // A stream that ended with nothing unanswered may have a reopening
      // pending (within RetryPause's 2 s): it must not run on a closed,
      // perhaps destroyed, object.
      reopening_done_.wait(lock, [this] { return !reopening_; });
      stream = current_;
    }
    return stream->CloseAndWait(limit);
  }

 private:
  std::shared_ptr<CompletionStreamClient> Open() {
    auto stream = std::make_shared<CompletionStreamClient>(
        router_, context_of_(), on_answer_,
        [this](const grpc::Status& st, std::vector<v1::CompleteTaskRequest> unanswered) {
          Ended(st, std::move(unanswered));
        });
    opened_.push_back(stream);  // kept: gRPC may still be finishing the ones that ended
    return stream;
  }

  // On the ended stream's gRPC thread: its unanswered requests go first
  // on the next stream, or are given up.
  void Ended(const grpc::Status& st, std::vector<v1::CompleteTaskRequest> unanswered) {
    int lost = 0;
    {
      std::lock_guard lock(mu_);
      if (closing_ || given_up_) return;
      if (!Retryable(st.error_code()) || ++reopened_ >= kMaxAttempts) {
        given_up_ = true;
        given_up_status_ = st;
        lost = static_cast<int>(unanswered.size() + waiting_.size());
        waiting_.clear();
      } else {
        reopening_ = true;
        retried_ += static_cast<int>(unanswered.size());  // not those merely waiting for the stream
        waiting_.insert(waiting_.begin(), std::make_move_iterator(unanswered.begin()),
                        std::make_move_iterator(unanswered.end()));
        later_.After(RetryPause(reopened_), [this] { Reopen(); });
      }
    }
    if (lost > 0) on_lost_(st, lost);
  }

  void Reopen() {
    std::vector<v1::CompleteTaskRequest> resend;
    {
      std::lock_guard lock(mu_);
      reopening_ = false;
      // Closing means every request was answered: no stream is needed.
      if (!closing_) current_ = Open();
      resend.swap(waiting_);
    }
    reopening_done_.notify_all();
    for (auto& request : resend) Send(std::move(request));
  }

  v1::Router::Stub& router_;
  const OpenStream context_of_;
  const CompletionStreamClient::OnAnswer on_answer_;
  const OnLost on_lost_;
  DelayedCalls& later_;
  std::atomic<int>& retried_;
  std::mutex mu_;
  std::condition_variable reopening_done_;
  std::vector<std::shared_ptr<CompletionStreamClient>> opened_;
  std::shared_ptr<CompletionStreamClient> current_;
  std::vector<v1::CompleteTaskRequest> waiting_;  // for the next stream, in order
  bool reopening_ = false, closing_ = false, given_up_ = false;
  int reopened_ = 0;
  grpc::Status given_up_status_;
};

struct Timings {
  std::mutex mu;
  std::map<std::string, std::array<Clock::time_point, kSteps + 2>> received, completed;  // by run, by gen
  std::map<std::string, Clock::time_point> started;
  std::vector<double> handoffs, runs;
  std::vector<double> starts;   // each StartRun call's latency, ms
  double starting_ms = 0;       // from the first StartRun to the last one's answer
  // Each hand-off as "<ms since the first run started> <latency ms> <task id>",
  // for --latency-log: where the slow ones fall in time.
  std::vector<std::string> handoff_lines;
  Clock::time_point t0;
  void Record(Clock::time_point at, double latency_ms, const std::string& run_id, uint32_t gen) {
    handoffs.push_back(latency_ms);
    handoff_lines.push_back(std::to_string(Ms(at - t0)) + " " + std::to_string(latency_ms) + " " + run_id + "." +
                            std::to_string(gen));
  }
};

// The load: one worker per actor, completing each task it is told of, and
// starters opening runs. Counters and timings are what the report reads.
class Load {
 public:
  Load(const Options& o, const Deployment& d) : o_(o), d_(d) {
    for (const auto& a : d.routers) router_stubs_.push_back(v1::Router::NewStub(OpenChannel(a, d.ca_file)));
  }

  // "" or why the benchmark SOP could not be deployed.
  std::string DeploySop(const std::string& source) {
    std::ifstream in(source + "/bench-10.yaml");
    v1::DeployDefinitionRequest req;
    req.set_yaml(std::string((std::istreambuf_iterator<char>(in)), {}));
    req.set_file_name("bench-10.yaml");
    v1::DeployDefinitionResponse resp;
    auto st = router_stubs_[0]->DeployDefinition(AuthedContext(o_.admin_token).get(), req, &resp);
    return st.ok() ? "" : StatusCodeName(st.error_code()) + ": " + st.error_message();
  }

  // "" once every worker is subscribed (its stream's headers came), or
  // why not.
  std::string StartWorkers() {
    for (int step = 1; step <= kSteps; ++step) workers_feeds_.push_back(FeedOf(RoleRequest(step), step));
    for (int step = 1; step <= kSteps; ++step) workers_.emplace_back([this, step] { Work(step); });
    return WaitForStreams(streams_ready_, kSteps, "workers");
  }

  // Starts the runs (open loop at --rate, or as fast as a few threads go)
  // and waits until they are done or the timeout passes.
  void StartRunsAndWait(Clock::time_point t0) {
    {
      std::lock_guard lock(timings_.mu);
      timings_.t0 = t0;
    }
    std::atomic<int> next{0};
    std::vector<std::thread> starters;
    starters.reserve(static_cast<size_t>(o_.starters));
    for (int s = 0; s < o_.starters; ++s)
      starters.emplace_back([&, s] {
        auto& router = *router_stubs_[s % router_stubs_.size()];
        for (int i = next++; i < o_.runs; i = next++) {
          if (o_.rate > 0)
            std::this_thread::sleep_until(t0 + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / o_.rate)));
          StartOneRun(router, i);
        }
      });
    for (auto& t : starters) t.join();
    {
      std::lock_guard lock(timings_.mu);
      timings_.starting_ms = Ms(Clock::now() - t0);
    }
    if (o_.start_only) return;
    auto deadline = t0 + std::chrono::seconds(o_.timeout_s);
    // A worker that gave up leaves its step undone: no use waiting on.
    while (runs_done_ < o_.runs - errors_ && workers_gone_ == 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // Webhooks of other units (a province's systems, each subscribed to its
  // own unit): the notifier weighs each notification against them, and
  // none is called. "" or why one could not be registered.
  std::string RegisterOtherWebhooks(int n) {
    auto notifier = v1::Notifier::NewStub(OpenChannel(d_.notifiers[0], d_.ca_file));
    for (int i = 0; i < n; ++i) {
      v1::RegisterWebhookRequest req;
      req.set_url("http://127.0.0.1:9/sopbench-" + std::to_string(i));  // never called: no notification of its unit
      req.set_unit("unit-" + std::to_string(i % 100));
      v1::Webhook hook;
      auto st = notifier->RegisterWebhook(AuthedContext(o_.admin_token).get(), req, &hook);
      if (!st.ok()) return StatusCodeName(st.error_code()) + ": " + st.error_message();
    }
    return "";
  }

  // Streams of other subscribers (units with no work here), as a notifier
  // serving many connected users has: they receive nothing but are open.
  // "" once they are all subscribed, or why not.
  std::string StartIdleSubscribers(int n) {
    idle_.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      v1::SubscribeRequest sub;
      sub.set_unit("sopbench-idle-" + std::to_string(i));
      idle_feeds_.push_back(FeedOf(sub, i, o_.admin_token));
    }
    for (int i = 0; i < n; ++i)
      idle_.emplace_back([this, i] {
        auto st = idle_feeds_[i]->Run(CountFirstLive(idle_open_), [](const v1::Notification&) {});
        if (!st.ok()) ReportError("Subscribe (idle)", st);
      });
    return WaitForStreams(idle_open_, n, "idle subscribers");
  }

  void Stop() {
    for (auto* feeds : {&workers_feeds_, &idle_feeds_})
      for (auto& feed : *feeds) feed->Stop();
    for (auto* threads : {&workers_, &idle_})
      for (auto& t : *threads) t.join();
  }

  int runs_done() const { return runs_done_; }
  size_t runs_started() {
    std::lock_guard lock(timings_.mu);
    return timings_.starts.size();
  }
  int errors() const { return errors_; }
  int retried() const { return retried_; }
  Timings& timings() { return timings_; }

 private:
  // Until `opened` reaches `want` (at most 60 s): "" or what is missing.
  static std::string WaitForStreams(const std::atomic<int>& opened, int want, const char* who) {
    for (int i = 0; i < 12000 && opened < want; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (opened >= want) return "";
    return std::to_string(want - opened) + " of " + std::to_string(want) + " " + who + " not subscribed after 60 s";
  }

  // Counts a feed in `subscribed` when it first goes live, not again when
  // it resubscribes: WaitForStreams waits for every feed, once each.
  static NotificationFeed::OnLive CountFirstLive(std::atomic<int>& subscribed) {
    return [&subscribed, counted = false](const std::string&) mutable {
      if (!counted) ++subscribed;
      counted = true;
    };
  }

  // The load's calls wait for a connection that failed to come back
  // (within their deadline) rather than fail at once: the deployment
  // answered DeploySop, so a failure here is a hiccup, not a wrong address.
  static std::unique_ptr<grpc::ClientContext> LoadContext(const std::string& token,
                                                          std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto context = AuthedContext(token, timeout);
    context->set_wait_for_ready(true);
    return context;
  }

  v1::SubscribeRequest RoleRequest(int step) const {
    v1::SubscribeRequest sub;
    sub.set_role("step-" + std::to_string(step));
    return sub;
  }

  // A stream kept as a client keeps it: it starts at the `index`th
  // notifier and moves on to the next one if that one goes away.
  std::unique_ptr<NotificationFeed> FeedOf(const v1::SubscribeRequest& request, int index,
                                           const std::string& token = "") const {
    NotificationFeed::Options feed;
    for (size_t i = 0; i < d_.notifiers.size(); ++i)
      feed.addresses.push_back(d_.notifiers[(static_cast<size_t>(index) + i) % d_.notifiers.size()]);
    feed.ca_file = d_.ca_file;
    feed.token = token.empty() ? o_.ActorToken(index) : token;
    feed.request = request;
    return std::make_unique<NotificationFeed>(std::move(feed));
  }

  // The `i`th run, its start retried while the deployment cannot serve.
  void StartOneRun(v1::Router::Stub& router, int i) {
    v1::StartRunRequest req;
    req.set_sop_id("sopbench-10");
    req.set_period("2026-Q4");
    req.set_unit("bench");
    req.set_request_id(load_id_ + "-" + std::to_string(i));
    v1::Run run;
    auto before = Clock::now();
    grpc::Status st;
    for (int attempt = 1;; ++attempt) {
      st = router.StartRun(LoadContext(o_.ActorToken(1)).get(), req, &run);
      if (st.ok() || !Retryable(st.error_code()) || attempt == kMaxAttempts) break;
      ++retried_;
      std::this_thread::sleep_for(RetryPause(attempt));
    }
    if (!st.ok()) {
      ReportError("StartRun", st);
      return;
    }
    std::lock_guard lock(timings_.mu);
    timings_.started[run.id()] = before;
    timings_.starts.push_back(Ms(Clock::now() - before));
  }

  // The first error of each kind is printed, so a failing run says why.
  void ReportError(const char* what, const grpc::Status& st) {
    if (errors_++ < 5) std::cerr << "sopbench: " << what << ": " << StatusCodeName(st.error_code()) << ": " << st.error_message() << "\n";
  }

  void Work(int step) {
    auto& router = *router_stubs_[step % router_stubs_.size()];
    std::string token = o_.ActorToken(step);
    // Completions go out asynchronously, at most `inflight` at a time per
    // worker, as a real client working several tasks would; a worker that
    // waited for each reply would cap the chain at workers / latency.
    InflightWindow window(o_.inflight);
    std::unique_ptr<CompletionStreams> completions;
    RetryCounts stream_retries;  // the stream's answers name only the task
    if (o_.complete_with == "stream")
      completions = std::make_unique<CompletionStreams>(
          router, [token] { return LoadContext(token, std::chrono::hours(24)); },
          [this, &window, &completions, &stream_retries](const v1::CompleteTasksResponse& a) {
            grpc::Status st(static_cast<grpc::StatusCode>(a.code()), a.message());
            const int attempt = stream_retries.Attempted(a.task_id(), st);
            if (RetryLater(st, attempt, [&completions, request = CompletionOf(a.task_id())] { completions->Send(request); }))
              return;
            Answered("CompleteTasks", st, a.task(), window);
          },
          [this, &window](const grpc::Status& st, int lost) {
            // Their slots come back, so the worker's wait for them ends.
            ReportError("CompleteTasks stream ended with requests unanswered", st);
            for (int i = 0; i < lost; ++i) window.Release();
          },
          retries_, retried_);
    auto st = workers_feeds_[step - 1]->Run(
        CountFirstLive(streams_ready_),
        [&](const v1::Notification& n) {
          if (n.kind() != v1::Notification::TASK_ASSIGNED) return;
          Received(n.run_id(), n.step());
          window.Acquire();
          if (completions)
            completions->Send(CompletionOf(n.task_id()));
          else
            Complete(router, token, CompletionOf(n.task_id()), window, 1);
        });
    if (!st.ok()) {
      ReportError("Subscribe", st);
      ++workers_gone_;
    }
    window.WaitIdle();
    if (completions) {
      auto st = completions->CloseAndWait(std::chrono::seconds(30));
      if (!st.ok()) ReportError("CompleteTasks stream", st);
    }
  }

  v1::CompleteTaskRequest CompletionOf(const std::string& task_id) const {
    v1::CompleteTaskRequest request;
    request.set_task_id(task_id);
    request.mutable_output()->set_note(output_blob_);
    return request;
  }

  // How often each task's completion was refused in a way worth retrying,
  // for the answers of a stream (they carry no attempt).
  class RetryCounts {
   public:
    // The attempt `st` answered; a final answer forgets the task.
    int Attempted(const std::string& task_id, const grpc::Status& st) {
      std::lock_guard lock(mu_);
      auto it = attempts_.find(task_id);
      const int attempt = it == attempts_.end() ? 1 : it->second + 1;
      if (Retryable(st.error_code()) && attempt < kMaxAttempts) attempts_[task_id] = attempt;
      else if (it != attempts_.end()) attempts_.erase(it);
      return attempt;
    }

   private:
    std::mutex mu_;
    std::unordered_map<std::string, int> attempts_;
  };

  // Schedules `again` after a pause if `st` is worth retrying and
  // `attempt` was not the last; true if it did.
  bool RetryLater(const grpc::Status& st, int attempt, std::function<void()> again) {
    if (!Retryable(st.error_code()) || attempt >= kMaxAttempts) return false;
    ++retried_;
    retries_.After(RetryPause(attempt), std::move(again));
    return true;
  }

  void Received(const std::string& run_id, uint32_t gen) {
    auto now = Clock::now();
    std::lock_guard lock(timings_.mu);
    timings_.received[run_id][gen] = now;
    if (gen > 1) {
      auto prev = timings_.completed[run_id][gen - 1];
      // `now` was read before the lock: the answer, timed after it, may
      // have been recorded first. The task still arrived first: 0.
      if (prev.time_since_epoch().count() != 0) timings_.Record(now, std::max(0.0, Ms(now - prev)), run_id, gen);
    }
  }

  void Complete(v1::Router::Stub& router, const std::string& token, v1::CompleteTaskRequest request,
                InflightWindow& window, int attempt) {
    auto* call = new Completion;
    call->context = LoadContext(token);
    call->request = std::move(request);
    router.async()->CompleteTask(
        call->context.get(), &call->request, &call->response,
        [this, call, &router, &token, &window, attempt](const grpc::Status& st) {
          std::unique_ptr<Completion> done(call);
          if (RetryLater(st, attempt, [this, &router, &token, &window, attempt, request = done->request] {
                Complete(router, token, request, window, attempt + 1);
              }))
            return;
          Answered("CompleteTask", st, done->response, window);
        });
  }

  // A completion's final answer, by call or on the stream (`task` the
  // completed task when it succeeded): timed when it succeeded, reported
  // when not; either way its in-flight slot comes back.
  void Answered(const char* what, const grpc::Status& st, const v1::Task& task, InflightWindow& window) {
    if (st.ok())
      Completed(task.run_id(), task.step());
    else
      ReportError(what, st);
    window.Release();
  }

  void Completed(const std::string& run_id, uint32_t gen) {
    auto done = Clock::now();
    std::lock_guard lock(timings_.mu);
    timings_.completed[run_id][gen] = done;
    // The next task may reach its worker before this reply reaches us: that
    // hand-off took no time after CompleteTask returned.
    if (gen < kSteps && timings_.received[run_id][gen + 1].time_since_epoch().count() != 0)
      timings_.Record(done, 0, run_id, gen + 1);
    if (gen == kSteps) {
      timings_.runs.push_back(Ms(done - timings_.started[run_id]));
      ++runs_done_;
    }
  }

  const Options& o_;
  const Deployment& d_;
  const std::string output_blob_ = std::string(200, 'x');  // ~200 bytes of output per step
  std::vector<std::unique_ptr<v1::Router::Stub>> router_stubs_;
  std::vector<std::unique_ptr<NotificationFeed>> workers_feeds_, idle_feeds_;  // [step - 1], [i]
  std::vector<std::thread> idle_;
  std::vector<std::thread> workers_;
  std::atomic<int> streams_ready_{0}, idle_open_{0}, runs_done_{0}, errors_{0}, workers_gone_{0}, retried_{0};
  // Distinct per benchmark process: its runs' request_ids never meet
  // another's in a Redis that outlives it.
  const std::string load_id_ =
      "sopbench-" + std::to_string(getpid()) + "-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  Timings timings_;
  DelayedCalls retries_;  // last: the workers' retries run before the rest goes
};

struct ProcessSample {
  double cpu_ms = 0;
  uint64_t context_switches = 0;
};

// Every process this benchmark started, and itself ("bench"), by name;
// replicas of one service add up.
std::map<std::string, ProcessSample> SampleProcesses(const Deployment& d) {
  auto pids = d.Measured();
  pids["bench"].push_back(getpid());
  std::map<std::string, ProcessSample> out;
  for (const auto& [name, list] : pids)
    for (pid_t pid : list) {
      // The benchmark's own children are the services, measured apart.
      out[name].cpu_ms += CpuMs(pid, /*with_children=*/pid != getpid());
      out[name].context_switches += ContextSwitches(pid);
    }
  return out;
}

// Commands Redis ran so far, by name (INFO commandstats; a script's own
// commands are counted as well as the script call). Empty when unknown.
std::map<std::string, int64_t> RedisCommandCalls(const std::string& address) {
  if (address.empty()) return {};
  try {
    sopflow::RedisConnection conn(sopflow::RedisAddress::Parse(address));
    return sopflow::CommandCalls(conn);
  } catch (const std::exception& e) {
    std::cerr << "sopbench: INFO commandstats: " << e.what() << "\n";
    return {};
  }
}

// What the benchmark counts: per process it started (and itself), the
// machine, and the commands Redis ran by name. A sample holds the totals
// at one moment; Between gives what was spent from one sample to another.
struct Counters {
  std::map<std::string, ProcessSample> processes;
  HostTicks host;
  std::map<std::string, int64_t> redis_calls;
};

Counters TakeSample(const Deployment& d) { return {SampleProcesses(d), ReadHostTicks(), RedisCommandCalls(d.redis)}; }

Counters Between(const Counters& first, const Counters& last) {
  Counters spent;
  for (const auto& [name, a] : last.processes) {
    auto it = first.processes.find(name);
    ProcessSample b = it == first.processes.end() ? ProcessSample{} : it->second;
    spent.processes[name] = {a.cpu_ms - b.cpu_ms, a.context_switches - b.context_switches};
  }
  spent.host = {last.host.busy - first.host.busy, last.host.steal - first.host.steal, last.host.total - first.host.total};
  for (const auto& [name, n] : last.redis_calls) {
    auto it = first.redis_calls.find(name);
    spent.redis_calls[name] = n - (it == first.redis_calls.end() ? 0 : it->second);
  }
  return spent;
}

// Redis commands per hand-off: the data commands, run directly, in
// transactions or by scripts (not MULTI, EXEC, WATCH, UNWATCH or the script
// calls themselves, nor this benchmark's INFO); the transactions (EXEC)
// and script calls; and the ten most frequent commands. With --redis,
// other clients of that Redis count too.
nlohmann::json RedisPerHandoff(const std::map<std::string, int64_t>& calls, double handoffs) {
  if (calls.empty() || handoffs <= 0) return nullptr;
  auto is_script = [](const std::string& name) { return name == "evalsha" || name == "eval" || name == "fcall"; };
  auto is_control = [](const std::string& name) {
    return name == "multi" || name == "exec" || name == "watch" || name == "unwatch" || name == "info";
  };
  int64_t commands = 0, scripts = 0;
  std::vector<std::pair<int64_t, std::string>> by_calls;
  for (const auto& [name, n] : calls) {
    if (n <= 0) continue;
    if (is_script(name)) scripts += n;
    else if (!is_control(name)) commands += n;
    if (name != "info") by_calls.emplace_back(n, name);
  }
  std::sort(by_calls.rbegin(), by_calls.rend());
  nlohmann::json top = nlohmann::json::object();
  for (size_t i = 0; i < by_calls.size() && i < 10; ++i)
    top[by_calls[i].second] = static_cast<double>(by_calls[i].first) / handoffs;
  auto exec = calls.find("exec");
  double transactions = exec == calls.end() ? 0 : static_cast<double>(exec->second);
  return {{"commands_per_handoff", static_cast<double>(commands) / handoffs},
          {"transactions_per_handoff", transactions / handoffs},
          {"script_calls_per_handoff", static_cast<double>(scripts) / handoffs},
          {"calls_per_handoff", top}};
}

nlohmann::json Settings(const Options& o, const Deployment& d) {
  nlohmann::json s = {{"steps", kSteps},
                      {"rate", o.rate},
                      {"routers", d.routers.size()},
                      {"notifiers", d.notifiers.size()},
                      {"workers", o.complete_with == "stream"
                                      ? "one per actor, notifier Subscribe stream + a CompleteTasks stream"
                                      : "one per actor, notifier Subscribe stream + asynchronous CompleteTask calls"},
                      {"complete_with", o.complete_with},
                      {"inflight_per_worker", o.inflight},
                      {"starters", o.starters},
                      {"start_only", o.start_only},
                      {"directory_users", o.directory_users},
                      {"webhooks", o.webhooks},
                      {"idle_subscribers", o.idle_subscribers},
                      {"output_bytes", 200}};
  if (o.connected()) {
    s["deployment"] = "connected";
    s["router_addresses"] = d.routers;
    s["notifier_addresses"] = d.notifiers;
  } else {
    s["deployment"] = o.own_infrastructure() ? "self-contained" : "own services, given redis and nats";
  }
  if (o.own_infrastructure()) {
    s["redis"] = "appendonly yes, appendfsync everysec";
    s["jetstream"] = "file storage, nats-server GOMAXPROCS=1";
  }
  return s;
}

nlohmann::json Report(const Options& o, const Deployment& d, Load& load, double elapsed_s, const Counters& spent) {
  auto& t = load.timings();
  double handoffs = static_cast<double>(t.handoffs.size());
  auto per_handoff = [&](double x) { return handoffs > 0 ? x / handoffs : 0; };
  // Only of the processes this benchmark started: a connected run reports
  // the benchmark's own.
  nlohmann::json cpu = nlohmann::json::object(), switches = nlohmann::json::object();
  for (const auto& [name, p] : spent.processes) {
    cpu[name] = per_handoff(p.cpu_ms);
    switches[name] = per_handoff(static_cast<double>(p.context_switches));
  }
  auto host_pct = [&](uint64_t ticks) {
    return spent.host.total > 0 ? 100.0 * static_cast<double>(ticks) / static_cast<double>(spent.host.total) : 0;
  };
  nlohmann::json out = {
      {"runs", o.runs},
      {"runs_started", t.starts.size()},
      {"runs_completed", load.runs_done()},
      {"errors", load.errors()},
      {"retried", load.retried()},
      {"handoffs", t.handoffs.size()},
      {"seconds", elapsed_s},
      {"runs_per_s", load.runs_done() / elapsed_s},
      {"handoffs_per_s", handoffs / elapsed_s},
      {"handoff_latency_ms",
       {{"p50", Percentile(t.handoffs, 50)},
        {"p95", Percentile(t.handoffs, 95)},
        {"p99", Percentile(t.handoffs, 99)},
        {"max", t.handoffs.empty() ? 0 : *std::max_element(t.handoffs.begin(), t.handoffs.end())}}},
      {"run_latency_ms", {{"p50", Percentile(t.runs, 50)}, {"p99", Percentile(t.runs, 99)}}},
      // The starting phase alone: how fast runs were opened (--starters
      // callers, each one StartRun at a time), while the workers ran.
      {"starts_per_s", t.starting_ms > 0 ? static_cast<double>(t.starts.size()) * 1000.0 / t.starting_ms : 0},
      {"start_latency_ms", {{"p50", Percentile(t.starts, 50)}, {"p99", Percentile(t.starts, 99)}}},
      {"cpu_ms_per_handoff", cpu},
      {"context_switches_per_handoff", switches},
      {"host", {{"cpus", std::thread::hardware_concurrency()},
                {"busy_pct", host_pct(spent.host.busy)},
                {"steal_pct", host_pct(spent.host.steal)}}},
      {"settings", Settings(o, d)},
  };
  if (auto redis = RedisPerHandoff(spent.redis_calls, handoffs); !redis.is_null()) out["redis"] = redis;
  if (o.start_only) {
    // No hand-offs: what each start cost instead.
    double starts = static_cast<double>(t.starts.size());
    nlohmann::json per_start = nlohmann::json::object();
    for (const auto& [name, p] : spent.processes) per_start[name] = starts > 0 ? p.cpu_ms / starts : 0;
    out["cpu_ms_per_start"] = per_start;
  }
  return out;
}

void AddOptions(CLI::App& app, Options& o) {
  app.add_option("--runs", o.runs, "runs to start")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--rate", o.rate, "open loop: runs started per second (0: as fast as possible)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--routers", o.routers, "router replicas to start")->capture_default_str()->check(CLI::Range(1, 8));
  app.add_option("--notifiers", o.notifiers, "notifier replicas to start")->capture_default_str()->check(CLI::Range(1, 8));
  app.add_option("--inflight", o.inflight, "completions each worker has in flight (unanswered) at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--starters", o.starters, "threads calling StartRun (each waits for its answer before the next)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_flag("--start-only", o.start_only,
               "no workers: start the runs and report how fast (starts_per_s, start_latency_ms), as a quarter-end push");
  app.add_option("--directory-users", o.directory_users,
                 "more users in the services' tokens file (other units, the same roles), as a province's directory")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--webhooks", o.webhooks,
                 "webhooks registered for other units first (never called), as a province's systems; not with --router")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--complete-with", o.complete_with,
                 "how workers complete: one CompleteTasks stream each, or CompleteTask calls")
      ->capture_default_str()
      ->check(CLI::IsMember({"stream", "unary"}));
  app.add_option("--idle-subscribers", o.idle_subscribers,
                 "extra Subscribe streams for units with no work here, as many connected users are")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--redis", o.redis, "a running Redis (host:port): start only the services, against it and --nats");
  app.add_option("--nats", o.nats, "a running NATS with JetStream (nats://host:port), with --redis");
  app.add_option("--router", o.router_addrs, "a running deployment: router address(es), comma-separated; starts nothing")
      ->delimiter(',');
  app.add_option("--notifier", o.notifier_addrs, "notifier address(es) of that deployment, comma-separated")->delimiter(',');
  app.add_option("--ca-file", o.ca_file, "TLS: the CA that signed the deployment's certificates (default: plaintext)");
  app.add_option("--admin-token", o.admin_token, "token of the admin that deploys the benchmark SOP")->capture_default_str();
  app.add_option("--token-prefix", o.token_prefix, "actor N's token is this prefix followed by N")->capture_default_str();
  app.add_option("--latency-log", o.latency_log, "write each hand-off (ms since start, latency ms, task) to this file");
  app.add_flag("--print-users", o.print_users, "print the users a deployment must know (tokens YAML) and exit");
  app.add_option("--bin-dir", o.bin_dir, "the build folder (default: next to this program)");
  app.add_option("--work-dir", o.work_dir, "data folder (default: a new temporary one)");
  app.add_option("--timeout", o.timeout_s, "give up after this many seconds")->capture_default_str()->check(CLI::Range(1, 86400));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"sopbench: hand-off throughput and latency of the sopflow event chain"};
  AddOptions(app, o);
  CLI11_PARSE(app, argc, argv);
  if (o.print_users) {
    std::cout << UsersYaml(o);
    return 0;
  }
  if (std::string conflict = OptionConflict(o, app); !conflict.empty()) {
    std::cerr << "sopbench: " << conflict << "\n";
    return 1;
  }
  if (o.bin_dir.empty()) o.bin_dir = fs::canonical("/proc/self/exe").parent_path().parent_path().parent_path().string();
  if (o.work_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "sopbench-XXXXXX").string();
    o.work_dir = mkdtemp(tmpl.data());
  }
  std::string source = fs::canonical(fs::path(__FILE__).parent_path()).string();

  Deployment d;
  if (o.connected()) {
    d.routers = o.router_addrs;
    d.notifiers = o.notifier_addrs;
    d.ca_file = o.ca_file;
  } else if (std::string why = StartLocal(o, source, d); !why.empty()) {
    std::cerr << "sopbench: " << why;
    return 1;
  }
  Load load(o, d);
  if (std::string why = load.DeploySop(source); !why.empty()) {
    std::cerr << "sopbench: deploying bench-10.yaml: " << why << "\n";
    return 1;
  }
  if (std::string why = load.RegisterOtherWebhooks(o.webhooks); !why.empty()) {
    std::cerr << "sopbench: registering webhooks: " << why << "\n";
    return 1;
  }
  std::string not_subscribed = load.StartIdleSubscribers(o.idle_subscribers);
  if (not_subscribed.empty() && !o.start_only) not_subscribed = load.StartWorkers();
  if (!not_subscribed.empty()) {
    std::cerr << "sopbench: " << not_subscribed << "\n";
    load.Stop();
    return 1;
  }

  Counters before = TakeSample(d);
  auto t0 = Clock::now();
  load.StartRunsAndWait(t0);
  double elapsed_s = Ms(Clock::now() - t0) / 1000.0;
  Counters spent = Between(before, TakeSample(d));

  load.Stop();
  d.children.clear();  // SIGTERM, then SIGKILL after a grace

  if (!o.latency_log.empty()) {
    std::ofstream log(o.latency_log);
    for (const auto& line : load.timings().handoff_lines) log << line << "\n";
  }
  std::cout << Report(o, d, load, elapsed_s, spent).dump() << std::endl;
  if (o.start_only) return load.runs_started() == static_cast<size_t>(o.runs) ? 0 : 2;
  return load.runs_done() == o.runs ? 0 : 2;
}

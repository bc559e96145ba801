// The bare shape issue 6 fixes, with none of sopflow in it: what the
// benchmark's hand-off costs on a box when the services do the least the
// shape asks of them. sopbench runs against it exactly as against sopflow
// (`sopbench --bin-dir build/tools/floor`), so the two figures compare.
//
// Per hand-off, and nothing more:
// - "router": a completion arrives on a CompleteTasks stream (or a
//   CompleteTask call); one Redis command records it durably and refuses
//   it if the task was already completed (HSETNX: the at-most-once guard);
//   one event (`task.created`, the next task) is published to JetStream;
//   the answer goes back; the event's ack is awaited. Redis commands are
//   pipelined and events published in batches: everything that arrived
//   while the last batch was busy goes in the next one.
// - "notifier": a durable pull consumer fetches those events in batches of
//   up to 256; one Redis command per event records the notification
//   (XADD to a capped log); the notification goes out on the Subscribe
//   streams of the task's role; the event is acked.
// Its NATS connections are set as sopflow's are (send-asap where a
// wake-up would wait for nats.c's flusher, acks of big fetches buffered),
// so the light-load latencies compare too.
//
// Left out, on purpose, because they are what sopflow adds to the shape:
// tokens and roles, the SOP's routing and time standards, the outbox (an
// event lost if the router dies between commit and publish), the task's
// own record and indexes, inboxes, timers, history, cursors that resume,
// webhooks, metrics, drains. No SOP file is read: the benchmark SOP's ten
// sequential steps are hard-wired (`kSteps`).
//
// One program; it acts as the router or the notifier by the name it was
// started as (the build makes services/router/sopflow-router and
// services/notifier/sopflow-notifier links to it, where sopbench looks).
#include <grpcpp/grpcpp.h>
#include <nats/nats.h>
#include <pthread.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nats.h"
#include "redis.h"
#include "sopflow/v1/notifier.grpc.pb.h"
#include "sopflow/v1/router.grpc.pb.h"

namespace v1 = sopflow::v1;
using sopflow::NatsClient;
using sopflow::RedisConnection;

namespace {

constexpr uint32_t kSteps = 10;  // tools/sopbench/bench-10.yaml: steps 1..10, role "step-N"
constexpr char kCreatedSubject[] = "sopflow.v1.floor.task.created";

struct Flags {
  std::string redis, nats, listen = "127.0.0.1:0", port_file;
};

// "<run>.<gen>" -> {run, gen}; gen 0 if the id is not one of ours.
std::pair<std::string, uint32_t> SplitTaskId(const std::string& id) {
  auto dot = id.rfind('.');
  if (dot == std::string::npos) return {id, 0};
  try {
    return {id.substr(0, dot), static_cast<uint32_t>(std::stoul(id.substr(dot + 1)))};
  } catch (const std::exception&) {
    return {id, 0};
  }
}

// The task a step creates, as sopflow's task.created event carries it
// (about the same fields and size).
v1::Task NewTask(const std::string& run_id, uint32_t gen) {
  v1::Task t;
  t.set_id(run_id + "." + std::to_string(gen));
  t.set_run_id(run_id);
  t.set_sop_id("sopbench-10");
  t.set_sop_version(1);
  t.set_step(gen);
  t.set_gen(gen);
  t.set_pelaksana("step-" + std::to_string(gen));
  t.set_unit("bench");
  t.set_period("2026-Q4");
  t.set_status(v1::Task::OPEN);
  t.set_aktivitas("Langkah " + std::to_string(gen) + " dari SOP tolok ukur: menyiapkan dan meneruskan data kinerja");
  t.add_kelengkapan("Data kinerja unit");
  t.add_kelengkapan("Formulir isian");
  t.set_sop_nama("SOP tolok ukur sepuluh langkah");
  t.mutable_created_at()->set_seconds(time(nullptr));
  return t;
}

// ---------------------------------------------------------------- router

// One completion or start waiting for the committer; `done` answers it
// (OK with the task, or the refusal).
struct Pending {
  std::string run_id;
  uint32_t gen = 0;  // 0: a run to start
  std::string output;
  std::function<void(const grpc::Status&, const v1::Task&)> done;
};

// Records what arrives in batches: one pipeline to Redis, the batch's
// events published, the answers, then the events' acks awaited.
class Committer {
 public:
  explicit Committer(const Flags& f)
      : redis_(sopflow::RedisAddress::Parse(f.redis)), nats_(sopflow::NatsOptions{f.nats, "floor-router", true, 30000}) {
    nats_.EnsureEventStream();
    thread_ = std::thread([this] { Loop(); });
  }
  ~Committer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void Submit(Pending p) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(p));
    }
    cv_.notify_one();
  }

 private:
  void Loop() {
    for (;;) {
      std::vector<Pending> batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
      Commit(batch);
    }
  }

  void Commit(std::vector<Pending>& batch) {
    std::vector<std::vector<std::string>> commands;
    commands.reserve(batch.size());
    for (auto& p : batch)
      commands.push_back({"HSETNX", "floor:run:" + p.run_id, std::to_string(p.gen), p.output});
    std::vector<sopflow::Reply> replies;
    try {
      replies = redis_.Pipeline(commands);
    } catch (const std::exception& e) {
      for (auto& p : batch) p.done(grpc::Status(grpc::StatusCode::UNAVAILABLE, e.what()), {});
      return;
    }
    // The events go out before the answers, as sopflow's committer sends
    // them: the next task is on its way while the worker reads its answer.
    // Their acks are awaited after, off the hand-off's path.
    int published = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& p = batch[i];
      if (sopflow::ReplyInteger(replies[i].get()) != 1 || p.gen >= kSteps) continue;
      Publish(p.run_id, p.gen + 1);
      ++published;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& p = batch[i];
      if (sopflow::ReplyInteger(replies[i].get()) != 1) {
        p.done(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "already completed"), {});
        continue;
      }
      v1::Task done = NewTask(p.run_id, p.gen);
      done.set_status(v1::Task::DONE);
      p.done(grpc::Status::OK, done);
    }
    if (published == 0) return;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    if (js_PublishAsyncComplete(nats_.jetstream(), &po) != NATS_OK)
      std::cerr << "floor router: acks of " << published << " events not all received\n";
  }

  // task.created of the run's `gen`th task, deduplicated by its id.
  void Publish(const std::string& run_id, uint32_t gen) {
    const std::string data = NewTask(run_id, gen).SerializeAsString();
    const std::string id = run_id + "." + std::to_string(gen);
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, kCreatedSubject, nullptr, data.data(), static_cast<int>(data.size()));
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", id.c_str());
    if (s == NATS_OK) s = js_PublishMsgAsync(nats_.jetstream(), &msg, nullptr);  // owns msg on success
    if (msg) natsMsg_Destroy(msg);
    if (s != NATS_OK) std::cerr << "floor router: publish: " << natsStatus_GetText(s) << "\n";
  }

  RedisConnection redis_;
  NatsClient nats_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// A stream's outgoing messages: gRPC allows one write at a time, so the
// rest wait here, and a write carries the buffer hint while more wait.
template <class Message>
struct WriteQueue {
  std::deque<Message> waiting;
  Message current;
  bool writing = false;
  // The message to write now and its options, or nullptr.
  const Message* Next(grpc::WriteOptions* options) {
    if (writing || waiting.empty()) return nullptr;
    current = std::move(waiting.front());
    waiting.pop_front();
    writing = true;
    if (!waiting.empty()) options->set_buffer_hint();
    return &current;
  }
};

// One CompleteTasks stream: reads ahead, answers in the order commits end.
class CompletionStream final : public grpc::ServerBidiReactor<v1::CompleteTaskRequest, v1::CompleteTasksResponse> {
 public:
  explicit CompletionStream(Committer& committer) : committer_(committer) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard lock(mu_);
      reading_ = false;
      MaybeFinishLocked();
      return;
    }
    auto [run, gen] = SplitTaskId(request_.task_id());
    {
      std::lock_guard lock(mu_);
      ++unanswered_;
    }
    auto answer = [this, task_id = request_.task_id()](const grpc::Status& st, const v1::Task& t) {
      v1::CompleteTasksResponse r;
      r.set_task_id(task_id);
      r.set_code(st.error_code());
      r.set_message(st.error_message());
      if (st.ok()) *r.mutable_task() = t;
      Answer(std::move(r));
    };
    if (gen == 0) answer(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such task"), {});
    else committer_.Submit({run, gen, request_.output().note(), std::move(answer)});
    StartRead(&request_);
  }

  void OnWriteDone(bool /*ok*/) override {
    std::lock_guard lock(mu_);
    answers_.writing = false;
    WriteNextLocked();
  }

  void OnDone() override { delete this; }

 private:
  void Answer(v1::CompleteTasksResponse r) {
    std::lock_guard lock(mu_);
    --unanswered_;
    answers_.waiting.push_back(std::move(r));
    WriteNextLocked();
  }
  void WriteNextLocked() {
    grpc::WriteOptions options;
    if (const auto* next = answers_.Next(&options)) StartWrite(next, options);
    else MaybeFinishLocked();
  }
  void MaybeFinishLocked() {
    if (reading_ || answers_.writing || unanswered_ > 0 || !answers_.waiting.empty() || finished_) return;
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  Committer& committer_;
  v1::CompleteTaskRequest request_;
  std::mutex mu_;
  WriteQueue<v1::CompleteTasksResponse> answers_;
  bool reading_ = true, finished_ = false;
  int unanswered_ = 0;
};

class FloorRouter final : public v1::Router::CallbackService {
 public:
  explicit FloorRouter(Committer& committer) : committer_(committer) {}

  grpc::ServerUnaryReactor* DeployDefinition(grpc::CallbackServerContext* context, const v1::DeployDefinitionRequest*,
                                             v1::DeployDefinitionResponse* response) override {
    response->mutable_definition()->set_id("sopbench-10");
    response->set_created(true);
    return Finished(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* StartRun(grpc::CallbackServerContext* context, const v1::StartRunRequest* request,
                                     v1::Run* run) override {
    auto* reactor = context->DefaultReactor();
    std::string id = "floor-" + std::to_string(getpid()) + "-" + std::to_string(++runs_);
    run->set_id(id);
    run->set_sop_id(request->sop_id());
    run->set_status(v1::Run::ACTIVE);
    // Gen 0 is the start: recorded once, then step 1's task is published.
    committer_.Submit({id, 0, request->request_id(), [reactor](const grpc::Status& st, const v1::Task&) {
                         reactor->Finish(st);
                       }});
    return reactor;
  }

  grpc::ServerUnaryReactor* CompleteTask(grpc::CallbackServerContext* context, const v1::CompleteTaskRequest* request,
                                         v1::Task* response) override {
    auto [run, gen] = SplitTaskId(request->task_id());
    if (gen == 0) return Finished(context, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such task"));
    auto* reactor = context->DefaultReactor();
    committer_.Submit({run, gen, request->output().note(), [reactor, response](const grpc::Status& st, const v1::Task& t) {
                         if (st.ok()) *response = t;
                         reactor->Finish(st);
                       }});
    return reactor;
  }

  grpc::ServerBidiReactor<v1::CompleteTaskRequest, v1::CompleteTasksResponse>* CompleteTasks(
      grpc::CallbackServerContext*) override {
    return new CompletionStream(committer_);
  }

 private:
  static grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* context, const grpc::Status& st) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(st);
    return reactor;
  }
  Committer& committer_;
  std::atomic<uint64_t> runs_{0};
};

// -------------------------------------------------------------- notifier

// One Subscribe stream of a role: notifications written one at a time,
// queued meanwhile.
class SubscriberStream final : public grpc::ServerWriteReactor<v1::Notification> {
 public:
  using Forget = std::function<void(SubscriberStream*)>;
  explicit SubscriberStream(Forget forget) : forget_(std::move(forget)) {}

  // The headers tell the client it is subscribed (NotificationFeed waits
  // for them).
  void Open(grpc::CallbackServerContext* context) {
    context->AddInitialMetadata("sopflow-cursor", "0");
    StartSendInitialMetadata();
  }

  void Push(const v1::Notification& n) {
    std::lock_guard lock(mu_);
    if (done_) return;
    writes_.waiting.push_back(n);
    WriteNextLocked();
  }

  void OnSendInitialMetadataDone(bool /*ok*/) override {}
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writes_.writing = false;
    if (!ok) return;
    WriteNextLocked();
  }
  void OnCancel() override { End(); }
  // Only after Finish, so End has run: nothing can push to it any more.
  void OnDone() override { delete this; }

 private:
  void End() {
    bool first;
    {
      std::lock_guard lock(mu_);
      first = !done_;
      done_ = true;
    }
    if (first) {
      forget_(this);
      Finish(grpc::Status::OK);
    }
  }
  void WriteNextLocked() {
    if (done_) return;
    grpc::WriteOptions options;
    if (const auto* next = writes_.Next(&options)) StartWrite(next, options);
  }

  Forget forget_;
  std::mutex mu_;
  WriteQueue<v1::Notification> writes_;
  bool done_ = false;
};

class FloorNotifier final : public v1::Notifier::CallbackService {
 public:
  grpc::ServerWriteReactor<v1::Notification>* Subscribe(grpc::CallbackServerContext* context,
                                                        const v1::SubscribeRequest* request) override {
    std::string role = request->role();
    auto* stream = new SubscriberStream([this, role](SubscriberStream* s) {
      std::lock_guard lock(mu_);
      auto range = by_role_.equal_range(role);
      for (auto it = range.first; it != range.second; ++it)
        if (it->second == s) {
          by_role_.erase(it);
          break;
        }
    });
    {
      std::lock_guard lock(mu_);
      by_role_.emplace(role, stream);
    }
    stream->Open(context);
    return stream;
  }

  void Deliver(const std::string& role, const v1::Notification& n) {
    std::lock_guard lock(mu_);
    auto range = by_role_.equal_range(role);
    for (auto it = range.first; it != range.second; ++it) it->second->Push(n);
  }

 private:
  std::mutex mu_;
  std::multimap<std::string, SubscriberStream*> by_role_;
};

// Fetches task.created in batches, records each notification, pushes it,
// acks it.
class Consumer {
 public:
  Consumer(const Flags& f, FloorNotifier& service)
      : service_(service),
        redis_(sopflow::RedisAddress::Parse(f.redis)),
        nats_(sopflow::NatsOptions{f.nats, "floor-notifier", true, 30000}),
        acks_(sopflow::SiblingOptions(nats_.options(), "-acks", false)) {
    nats_.EnsureEventStream();
    sopflow::ConsumerOptions options;
    options.durable = "floor-notifier";
    options.filter_subject = kCreatedSubject;
    consumer_ = std::make_unique<sopflow::PullConsumer>(nats_, options);
    thread_ = std::thread([this] { Loop(); });
  }
  ~Consumer() {
    stop_ = true;
    thread_.join();
  }

 private:
  void Loop() {
    while (!stop_) {
      auto messages = consumer_->Fetch(256, 200);
      if (messages.empty()) continue;
      std::vector<v1::Notification> notifications(messages.size());
      std::vector<std::vector<std::string>> commands;
      commands.reserve(messages.size());
      for (size_t i = 0; i < messages.size(); ++i) {
        v1::Task task;
        task.ParseFromString(messages[i].data());
        auto& n = notifications[i];
        n.set_id(task.id() + ".assigned");
        n.set_kind(v1::Notification::TASK_ASSIGNED);
        n.mutable_time()->set_seconds(time(nullptr));
        n.set_title("Tugas baru: " + task.aktivitas());
        n.set_body("Langkah " + std::to_string(task.step()) + " " + task.sop_nama() + ", unit " + task.unit() +
                   ", periode " + task.period());
        n.set_unit(task.unit());
        n.set_role(task.pelaksana());
        n.set_run_id(task.run_id());
        n.set_task_id(task.id());
        n.set_sop_id(task.sop_id());
        n.set_step(task.step());
        n.set_period(task.period());
        commands.push_back({"XADD", "floor:log", "MAXLEN", "~", "100000", "*", "n", n.SerializeAsString()});
      }
      std::vector<sopflow::Reply> replies;
      try {
        replies = redis_.Pipeline(commands);
      } catch (const std::exception& e) {
        std::cerr << "floor notifier: " << e.what() << "\n";
        for (auto& m : messages) m.Nak(100);
        continue;
      }
      for (size_t i = 0; i < messages.size(); ++i) {
        auto cursor = sopflow::ReplyString(replies[i].get());
        if (!cursor) {
          messages[i].Nak(100);
          continue;
        }
        notifications[i].set_cursor(*cursor);
        service_.Deliver(notifications[i].role(), notifications[i]);
        messages[i].AckOfFetch(messages.size(), acks_);  // as sopflow's consumer acks
      }
    }
  }

  FloorNotifier& service_;
  RedisConnection redis_;
  NatsClient nats_;
  NatsClient acks_;
  std::unique_ptr<sopflow::PullConsumer> consumer_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ------------------------------------------------------------------ main

std::unique_ptr<grpc::Server> Serve(const Flags& f, grpc::Service* service) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(f.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "floor: cannot listen on " << f.listen << "\n";
    std::exit(1);
  }
  if (!f.port_file.empty()) std::ofstream(f.port_file) << port << "\n";
  return server;
}

sigset_t TermSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

void WaitForTerm() {
  sigset_t set = TermSignals();
  int signal_number = 0;
  sigwait(&set, &signal_number);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"the bare shape of issue 6, for comparison with sopflow (tools/floor/main.cc)"};
  Flags f;
  app.add_option("--redis", f.redis)->required();
  app.add_option("--nats", f.nats)->required();
  app.add_option("--listen", f.listen);
  app.add_option("--port-file", f.port_file);
  app.allow_extras();  // sopbench passes the services' other flags (tokens, templates, ...)
  CLI11_PARSE(app, argc, argv);

  // Signals wait for sigwait, not a handler, in every thread.
  sigset_t set = TermSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  const std::string name = std::filesystem::path(argv[0]).filename().string();
  try {
    if (name == "sopflow-router") {
      Committer committer(f);
      FloorRouter service(committer);
      auto server = Serve(f, &service);
      WaitForTerm();
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    } else if (name == "sopflow-notifier") {
      FloorNotifier service;
      Consumer consumer(f, service);
      auto server = Serve(f, &service);
      WaitForTerm();
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    } else {
      std::cerr << "floor: start me as sopflow-router or sopflow-notifier, not " << name << "\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::cerr << "floor: " << e.what() << "\n";
    return 1;
  }
  nats_Close();
  return 0;
}

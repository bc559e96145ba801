// Notifications reach every channel once: a gRPC stream (with resume), a
// signed webhook (with retries and a dead-letter list), e-mail through a
// real SMTP server, and the inbox; reminders and escalations fire once.
#include <hiredis/hiredis.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <future>
#include <set>

#include "delivery.h"
#include "log_tail.h"
#include "store.h"
#include "error.h"
#include "nats.h"
#include "metrics.h"
#include "notification_feed.h"
#include "notifier_fixture.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow::testing {
namespace {

using grpc::StatusCode;

// A Subscribe stream read on its own thread. Constructed once subscribed:
// its headers came (or it was refused), so what follows reaches it.
class Subscription {
 public:
  Subscription(v1::Notifier::Stub& stub, const std::string& token, const v1::SubscribeRequest& req)
      : ctx_(AuthedContext(token, std::chrono::seconds(120))) {
    reader_ = stub.Subscribe(ctx_.get(), req);
    reader_->WaitForInitialMetadata();
    start_cursor_ = SubscribeCursorOf(*ctx_);
    thread_ = std::thread([this] {
      v1::Notification n;
      while (reader_->Read(&n)) {
        std::lock_guard lock(mu_);
        got_.push_back(n);
      }
      auto st = reader_->Finish();
      std::lock_guard lock(mu_);
      status_ = st;
      done_ = true;
    });
  }
  ~Subscription() { Cancel(); }
  void Cancel() {
    ctx_->TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  std::vector<v1::Notification> got() {
    std::lock_guard lock(mu_);
    return got_;
  }
  // The `sopflow-cursor` header: where the stream starts.
  const std::string& start_cursor() const { return start_cursor_; }
  bool WaitForCount(size_t n, int timeout_ms = 20000) {
    return WaitUntil([&] { return got().size() >= n; }, timeout_ms);
  }
  grpc::Status FinalStatus() {
    WaitUntil([&] {
      std::lock_guard lock(mu_);
      return done_;
    });
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReader<v1::Notification>> reader_;
  std::string start_cursor_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<v1::Notification> got_;
  grpc::Status status_;
  bool done_ = false;
};

notifier::StreamId ParseStreamIdForTest(const std::string& cursor) {
  return cursor.empty() ? notifier::StreamId{0, 0} : notifier::ParseStreamId(cursor);
}

std::vector<v1::Notification> OfRun(const std::vector<v1::Notification>& all, const std::string& run_id) {
  std::vector<v1::Notification> out;
  for (const auto& n : all)
    if (n.run_id() == run_id) out.push_back(n);
  return out;
}

class NotifierChannelsTest : public NotifierTest {};

TEST_F(NotifierChannelsTest, ANewTaskReachesTheStreamASignedWebhookTheSmtpSinkAndTheInbox) {
  v1::Webhook hook = Register(kSekretarisBlg, receiver_->url(), "balangan-satpolpp");
  ASSERT_EQ(hook.secret().size(), 64u);
  Subscription stream(notifier(), kSekretarisBlg, {});
  v1::Run run = Start003();
  v1::Task task = WaitForOpenTask(run.id(), 1);

  ASSERT_TRUE(WaitUntil([&] { return !OfRun(stream.got(), run.id()).empty(); }));
  auto streamed = OfRun(stream.got(), run.id())[0];
  EXPECT_EQ(streamed.kind(), v1::Notification::TASK_ASSIGNED);
  EXPECT_EQ(streamed.task_id(), task.id());
  EXPECT_FALSE(streamed.cursor().empty());
  EXPECT_NE(streamed.title().find("Tugas baru: langkah 1"), std::string::npos);

  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& r : receiver_->received())
      if (r.body.find(task.id()) != std::string::npos) return true;
    return false;
  }));
  for (const auto& r : receiver_->received()) {
    if (r.body.find(task.id()) == std::string::npos) continue;
    EXPECT_EQ(r.signature, "sha256=" + notifier::HmacSha256Hex(hook.secret(), r.body)) << "signature must verify";
    EXPECT_NE(r.body.find("\"type\":\"sopflow.v1.notification.task_assigned\""), std::string::npos);
    EXPECT_EQ(r.delivery, streamed.id() + "|" + hook.id());
  }

  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& m : smtp_->Messages())
      if (m.find(task.id()) != std::string::npos) return true;
    return false;
  }));
  for (const auto& m : smtp_->Messages()) {
    if (m.find(task.id()) == std::string::npos) continue;
    EXPECT_NE(m.find("To: sekretaris@satpolpp.balangan.example.go.id"), std::string::npos) << m;
    EXPECT_NE(m.find("Subject: =?UTF-8?B?"), std::string::npos);
    EXPECT_NE(m.find("Yth. Sekretaris Satpol PP,"), std::string::npos) << m;
    EXPECT_NE(m.find("Memerintahkan untuk Mengumpulkan data laporan kinerja triwulan"), std::string::npos);
  }

  auto inbox = InboxOf(kSekretarisBlg, v1::Notification::TASK_ASSIGNED, task.id());
  ASSERT_EQ(inbox.size(), 1u);
  EXPECT_FALSE(inbox[0].read());
  v1::CountUnreadResponse unread;
  ASSERT_TRUE(notifier().CountUnread(AuthedContext(kSekretarisBlg).get(), {}, &unread).ok());
  EXPECT_GE(unread.unread(), 1u);
  v1::MarkReadRequest mark;
  mark.add_ids(inbox[0].id());
  v1::MarkReadResponse marked;
  ASSERT_TRUE(notifier().MarkRead(AuthedContext(kSekretarisBlg).get(), mark, &marked).ok());
  EXPECT_EQ(marked.marked(), 1u);
  EXPECT_TRUE(InboxOf(kSekretarisBlg, v1::Notification::TASK_ASSIGNED, task.id())[0].read());
}

TEST_F(NotifierChannelsTest, ASubscriberResumesFromItsCursorWithNothingMissedOrTwice) {
  v1::SubscribeRequest by_unit;
  by_unit.set_unit("balangan-satpolpp");
  auto first = std::make_unique<Subscription>(notifier(), kSekretarisBlg, by_unit);
  v1::Run run = Start003();
  ASSERT_TRUE(WaitUntil([&] { return !OfRun(first->got(), run.id()).empty(); }));
  std::string cursor = OfRun(first->got(), run.id())[0].cursor();
  std::string first_id = OfRun(first->got(), run.id())[0].id();
  first->Cancel();  // the subscriber goes away...

  AdvanceTo(run.id(), 5);  // ...while steps 1-4 are done and tasks 2-5 are created

  v1::SubscribeRequest resume = by_unit;
  resume.set_cursor(cursor);
  Subscription second(notifier(), kSekretarisBlg, resume);
  ASSERT_TRUE(WaitUntil([&] { return OfRun(second.got(), run.id()).size() >= 4; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // nothing more may come
  auto missed = OfRun(second.got(), run.id());
  std::vector<uint32_t> steps;
  std::set<std::string> ids;
  for (const auto& n : missed) {
    EXPECT_EQ(n.kind(), v1::Notification::TASK_ASSIGNED);
    EXPECT_NE(n.id(), first_id);
    EXPECT_TRUE(ids.insert(n.id()).second) << "twice: " << n.id();
    steps.push_back(n.step());
  }
  EXPECT_EQ(steps, (std::vector<uint32_t>{2, 3, 4, 5}));

  v1::SubscribeRequest bad = by_unit;
  bad.set_cursor("not-a-cursor");
  Subscription rejected(notifier(), kSekretarisBlg, bad);
  EXPECT_EQ(rejected.FinalStatus().error_code(), StatusCode::INVALID_ARGUMENT);
}

// The headers come before any notification, with the cursor the stream
// starts after: a subscriber gone before its first notification resumes
// from it and misses nothing. A refused stream has no cursor.
TEST_F(NotifierChannelsTest, TheHeadersSayWhereTheStreamStartsAndResumingFromThemMissesNothing) {
  v1::SubscribeRequest by_unit;
  by_unit.set_unit("balangan-satpolpp");
  auto first = std::make_unique<Subscription>(notifier(), kSekretarisBlg, by_unit);
  const std::string start = first->start_cursor();
  ASSERT_FALSE(start.empty());
  {
    RedisConnection redis(RedisAddress::Parse(backends_->redis->address()));
    Reply newest = redis.Command({"XREVRANGE", notifier::keys::kLog, "+", "-", "COUNT", "1"});
    ASSERT_EQ(newest->type, REDIS_REPLY_ARRAY);
    std::string expected = newest->elements == 1 ? ReplyString(newest->element[0]->element[0]).value_or("") : "0-0";
    EXPECT_EQ(start, expected) << "from now: after the newest notification";
  }
  first->Cancel();  // gone before its first notification
  EXPECT_TRUE(first->got().empty());

  v1::Run run = Start003();
  AdvanceTo(run.id(), 2);
  v1::SubscribeRequest resume = by_unit;
  resume.set_cursor(start);
  Subscription second(notifier(), kSekretarisBlg, resume);
  EXPECT_EQ(second.start_cursor(), start);
  ASSERT_TRUE(WaitUntil([&] { return OfRun(second.got(), run.id()).size() >= 2; }));
  std::vector<uint32_t> steps;
  for (const auto& n : OfRun(second.got(), run.id())) steps.push_back(n.step());
  EXPECT_EQ(steps, (std::vector<uint32_t>{1, 2}));

  Subscription refused(notifier(), "not-a-user", by_unit);
  EXPECT_EQ(refused.start_cursor(), "");
  EXPECT_EQ(refused.FinalStatus().error_code(), StatusCode::UNAUTHENTICATED);
}

// NotificationFeed, as sopctl watch and sopbench's workers keep a stream.
// It passes over an address nobody answers. When its notifier drains, it
// keeps trying; what is notified meanwhile reaches it once the notifier
// is back (restarted on its port), resumed from the last cursor it saw:
// each task once, in order.
TEST_F(NotifierChannelsTest, AFeedResumesFromItsCursorWhenItsNotifierIsBackAfterADrain) {
  auto config = NotifierConfigFor(*backends_, "", router_->port());
  config.replica_id = "notifier-spare";
  auto spare = std::make_unique<notifier::NotifierProcess>(config, &clock_);
  spare->Start();
  const std::string spare_address = "127.0.0.1:" + std::to_string(spare->port());

  NotificationFeed::Options options;
  options.addresses = {"127.0.0.1:" + std::to_string(FreePort()), spare_address};
  options.token = kSekretarisBlg;
  options.request.set_unit("balangan-satpolpp");
  options.connect_timeout = std::chrono::milliseconds(200);
  options.max_failed_attempts = 100;  // minutes of trying, with its pauses up to 5 s
  std::atomic<int> unreachable{0}, drained{0};
  options.on_retry = [&](const grpc::Status& st) {
    if (st.error_code() == StatusCode::UNAVAILABLE) ++unreachable;
    if (st.ok()) ++drained;  // the drain ended the stream
  };
  NotificationFeed feed(options);
  std::mutex mu;
  std::vector<std::string> live_at;
  std::vector<v1::Notification> got;
  grpc::Status ended;
  std::thread reader([&] {
    ended = feed.Run(
        [&](const std::string& cursor) {
          std::lock_guard lock(mu);
          live_at.push_back(cursor);
        },
        [&](const v1::Notification& n) {
          std::lock_guard lock(mu);
          got.push_back(n);
        });
  });
  auto lives = [&] {
    std::lock_guard lock(mu);
    return live_at.size();
  };
  auto of_run = [&](const std::string& run_id) {
    std::lock_guard lock(mu);
    return OfRun(got, run_id);
  };
  ASSERT_TRUE(WaitUntil([&] { return lives() == 1; }));

  v1::Run run = Start003();
  ASSERT_TRUE(WaitUntil([&] { return of_run(run.id()).size() == 1; }));
  const std::string seen = of_run(run.id())[0].cursor();
  spare->Shutdown();  // a drain: the stream ends, and nothing answers there
  spare.reset();
  AdvanceTo(run.id(), 4);  // tasks 2-4 are notified while the feed has no notifier
  EXPECT_EQ(lives(), 1u);
  config.listen = spare_address;
  notifier::NotifierProcess restarted(config, &clock_);
  restarted.Start();
  ASSERT_TRUE(WaitUntil([&] { return of_run(run.id()).size() >= 4; }));
  feed.Stop();
  reader.join();

  EXPECT_TRUE(ended.ok()) << ended.error_message();
  std::vector<uint32_t> steps;
  for (const auto& n : of_run(run.id())) steps.push_back(n.step());
  EXPECT_EQ(steps, (std::vector<uint32_t>{1, 2, 3, 4})) << "each once, in order";
  std::lock_guard lock(mu);
  ASSERT_EQ(live_at.size(), 2u);
  EXPECT_EQ(live_at[1], seen) << "resumed after the last notification it had";
  EXPECT_GE(unreachable, 2) << "the address nobody answers, then the drained one until it was back";
  EXPECT_EQ(drained, 1);
}

// Stop() ends a feed that is waiting for a notifier to answer without
// waiting out its connect_timeout (a minute here): sopctl and the
// benchmark stop at once.
TEST_F(NotifierChannelsTest, AStoppedFeedDoesNotWaitOutItsConnectTimeout) {
  NotificationFeed::Options options;
  options.addresses = {"127.0.0.1:" + std::to_string(FreePort())};
  options.token = kSekretarisBlg;
  options.connect_timeout = std::chrono::minutes(1);
  NotificationFeed feed(options);
  bool live = false;
  auto run = std::async(std::launch::async, [&] {
    return feed.Run([&](const std::string&) { live = true; }, [](const v1::Notification&) {});
  });
  EXPECT_EQ(run.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout) << "still trying";
  feed.Stop();
  ASSERT_EQ(run.wait_for(std::chrono::seconds(30)), std::future_status::ready) << "Stop() waited for the timeout";
  EXPECT_TRUE(run.get().ok());
  EXPECT_FALSE(live);
}

// A subscriber that stops reading while notifications keep coming: its
// stream holds what it may (kMaxPending), stops being handed more, and
// catches up from its cursor once the subscriber reads again; everything
// arrives once, in log order.
TEST_F(NotifierChannelsTest, ASubscriberThatStopsReadingGetsEverythingOnceWhenItReadsAgain) {
  constexpr int kNotifications = 4000;  // ~32 MB: more than gRPC's windows and the sockets hold
  const double behind_before = Metrics::Global().CounterValue("sopflow_subscribe_streams_behind_total", "");
  auto ctx = AuthedContext(kSekretarisBlg, std::chrono::seconds(120));
  auto reader = notifier().Subscribe(ctx.get(), {});
  reader->WaitForInitialMetadata();  // subscribed: what is added next reaches it
  RedisConnection redis(RedisAddress::Parse(backends_->redis->address()));
  const std::string body(8000, 'x');
  for (int i = 0; i < kNotifications; i += 100) {
    std::vector<std::vector<std::string>> adds;
    for (int j = i; j < i + 100; ++j) {
      v1::Notification n;
      n.set_id("slow-" + std::to_string(j));
      n.set_unit("balangan-satpolpp");
      n.add_users("sekretaris-blg");
      n.set_body(body);
      adds.push_back({"XADD", notifier::keys::kLog, "*", "n", n.SerializeAsString()});
    }
    for (auto& r : redis.Pipeline(adds)) ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  }
  // The tail reads them while nobody reads the stream, which falls behind
  // (the notifier runs in this process). Waited for, not slept: a slow
  // machine takes longer.
  ASSERT_TRUE(WaitUntil(
      [&] { return Metrics::Global().CounterValue("sopflow_subscribe_streams_behind_total", "") > behind_before; },
      60000));
  std::vector<std::string> got;
  std::string last_cursor;
  v1::Notification n;
  for (int reads = 0; reads < 2 * kNotifications && got.size() < kNotifications && reader->Read(&n); ++reads) {
    if (n.id().rfind("slow-", 0) != 0) continue;  // another test's
    EXPECT_LT(ParseStreamIdForTest(last_cursor), ParseStreamIdForTest(n.cursor())) << "in log order";
    last_cursor = n.cursor();
    got.push_back(n.id());
  }
  ASSERT_EQ(got.size(), static_cast<size_t>(kNotifications));
  for (int i = 0; i < kNotifications; ++i) ASSERT_EQ(got[i], "slow-" + std::to_string(i)) << "missed or twice";
  EXPECT_GT(Metrics::Global().CounterValue("sopflow_subscribe_streams_behind_total", ""), behind_before)
      << "the stream fell behind and caught up (the notifier runs in this process)";
  ctx->TryCancel();
  reader->Finish();
}

int ThreadsOfThisProcess() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

// A waiting Subscribe stream holds no thread of the notifier (it runs in
// this process here). On the synchronous API each held one, woken twice a
// second: a notifier with many connected users spent its time on them.
// The subscribers here are asynchronous too, so they add no threads either.
TEST_F(NotifierChannelsTest, SubscribersHoldNoThreadOfTheNotifier) {
  constexpr int kStreams = 64;
  int before = ThreadsOfThisProcess();
  ASSERT_GT(before, 0);
  // Every stream resumes after the newest notification now, so none can
  // start past the run's (a stream without a cursor starts at the newest
  // notification when the notifier gets to it).
  RedisConnection redis(RedisAddress::Parse(backends_->redis->address()));
  Reply newest = redis.Command({"XREVRANGE", notifier::keys::kLog, "+", "-", "COUNT", "1"});
  v1::SubscribeRequest req;
  req.set_cursor(newest && newest->elements == 1 ? ReplyString(newest->element[0]->element[0]).value_or("0-0") : "0-0");
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientAsyncReader<v1::Notification>>> readers;
  std::vector<v1::Notification> got(kStreams);
  auto tag_of = [](int i) { return reinterpret_cast<void*>(static_cast<intptr_t>(i)); };
  // Handles `count` completions (up to 20 s in all); `each(i, ok)` says
  // whether stream i's completion counts or it waits for another.
  auto await = [&](int count, const std::function<bool(int, bool)>& each) {
    auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(20);
    int counted = 0;
    void* tag;
    bool ok;
    while (counted < count && cq.AsyncNext(&tag, &ok, deadline) == grpc::CompletionQueue::GOT_EVENT)
      if (each(static_cast<int>(reinterpret_cast<intptr_t>(tag)), ok)) ++counted;
    return counted;
  };
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(AuthedContext(kSekretarisBlg, std::chrono::seconds(120)));
    readers.push_back(notifier().PrepareAsyncSubscribe(contexts.back().get(), req, &cq));
    readers.back()->StartCall(tag_of(i));
  }
  // EXPECT, not ASSERT, up to the end: the streams are always closed and
  // their completions drained before the queue goes.
  EXPECT_EQ(await(kStreams, [](int, bool ok) { return ok; }), kStreams) << "every stream opened";
  for (int i = 0; i < kStreams; ++i) readers[i]->Read(&got[i], tag_of(i));
  v1::Run run = Start003();
  int reached = await(kStreams, [&](int i, bool ok) {
    if (!ok) return true;  // the stream ended: counted, and failed below
    if (got[i].run_id() == run.id()) return true;
    readers[i]->Read(&got[i], tag_of(i));  // an older notification of the caller's: read on
    return false;
  });
  EXPECT_EQ(reached, kStreams) << "every stream got the new task";
  for (const auto& n : got) EXPECT_EQ(n.run_id(), run.id());
  int during = ThreadsOfThisProcess();
  EXPECT_LT(during - before, kStreams / 4) << "threads before " << before << ", with the streams open " << during;

  for (auto& c : contexts) c->TryCancel();
  std::vector<grpc::Status> statuses(kStreams);
  for (int i = 0; i < kStreams; ++i) readers[i]->Finish(&statuses[i], tag_of(i));
  cq.Shutdown();  // drains the finishes and any read still pending
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  for (const auto& st : statuses) EXPECT_EQ(st.error_code(), StatusCode::CANCELLED);
  ASSERT_FALSE(HasFailure());
  // The notifier ended its side too: a new subscriber (resuming after what
  // the others got, so it cannot start past the next one) is served.
  v1::SubscribeRequest resume;
  resume.set_cursor(got[0].cursor());
  Subscription stream(notifier(), kSekretarisBlg, resume);
  v1::Run next = Start003();
  EXPECT_TRUE(WaitUntil([&] { return !OfRun(stream.got(), next.id()).empty(); }));
}

TEST_F(NotifierChannelsTest, AWebhookThatFailsTwiceThenSucceedsIsDeliveredOnce) {
  receiver_->FailFirst(2);
  v1::Webhook hook = Register(kSekretarisBlg, receiver_->url(), "balangan-satpolpp");
  size_t before = receiver_->received().size();
  v1::Run run = Start003();
  v1::Task task = WaitForOpenTask(run.id(), 1);
  auto mine = [&] {
    std::vector<WebhookReceiver::Received> out;
    for (const auto& r : receiver_->received())
      if (r.body.find(task.id()) != std::string::npos) out.push_back(r);
    return out;
  };
  ASSERT_TRUE(WaitUntil([&] { return mine().size() >= 3; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // no fourth attempt may follow
  auto got = mine();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].delivery, got[2].delivery);
  EXPECT_GE(receiver_->received().size(), before + 3);

  v1::ListDeliveriesRequest req;
  req.set_webhook_id(hook.id());
  v1::ListDeliveriesResponse log;
  ASSERT_TRUE(WaitUntil([&] {
    log.Clear();
    notifier().ListDeliveries(AuthedContext(kSekretarisBlg).get(), req, &log);
    return log.deliveries_size() == 1 && log.deliveries(0).status() == v1::Delivery::DELIVERED;
  }));
  const auto& d = log.deliveries(0);
  ASSERT_EQ(d.attempts_size(), 3);
  EXPECT_EQ(d.attempts(0).status_code(), 500);
  EXPECT_EQ(d.attempts(1).status_code(), 500);
  EXPECT_EQ(d.attempts(2).status_code(), 200);
}

TEST_F(NotifierChannelsTest, AWebhookThatAlwaysFailsEndsInTheDeadLetterList) {
  receiver_->FailAlways(true);
  v1::Webhook hook = Register(kSekretarisBlg, receiver_->url(), "balangan-satpolpp");
  v1::Run run = Start003();
  v1::Task task = WaitForOpenTask(run.id(), 1);
  v1::ListDeliveriesRequest req;
  req.set_webhook_id(hook.id());
  req.set_dead_only(true);
  v1::ListDeliveriesResponse dead;
  ASSERT_TRUE(WaitUntil([&] {
    dead.Clear();
    notifier().ListDeliveries(AuthedContext(kSekretarisBlg).get(), req, &dead);
    return dead.deliveries_size() == 1;
  }));
  EXPECT_EQ(dead.deliveries(0).status(), v1::Delivery::DEAD);
  EXPECT_EQ(dead.deliveries(0).attempts_size(), 4);  // max_attempts in the fixture
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int posts = 0;
  for (const auto& r : receiver_->received()) posts += r.body.find(task.id()) != std::string::npos;
  EXPECT_EQ(posts, 4);
}

TEST_F(NotifierChannelsTest, TestWebhookSendsNowAndLogsTheAttempt) {
  v1::Webhook hook = Register(kSekretarisBlg, receiver_->url(), "balangan-satpolpp");
  v1::TestWebhookRequest req;
  req.set_id(hook.id());
  v1::Delivery d;
  ASSERT_TRUE(notifier().TestWebhook(AuthedContext(kSekretarisBlg).get(), req, &d).ok());
  EXPECT_EQ(d.status(), v1::Delivery::DELIVERED);
  ASSERT_EQ(d.attempts_size(), 1);
  EXPECT_EQ(d.attempts(0).status_code(), 200);
  bool seen = false;
  for (const auto& r : receiver_->received()) seen |= r.body.find("sopflow.v1.notification.test") != std::string::npos;
  EXPECT_TRUE(seen);
}

TEST_F(NotifierChannelsTest, CallersSeeAndManageOnlyWhatIsTheirs) {
  v1::SubscribeRequest other_unit;
  other_unit.set_unit("kalbar-biro-organisasi");
  Subscription denied(notifier(), kSekretarisBlg, other_unit);
  EXPECT_EQ(denied.FinalStatus().error_code(), StatusCode::PERMISSION_DENIED);
  v1::SubscribeRequest other_role;
  other_role.set_role("kabid");
  Subscription denied_role(notifier(), kSekretarisBlg, other_role);
  EXPECT_EQ(denied_role.FinalStatus().error_code(), StatusCode::PERMISSION_DENIED);
  Subscription anonymous(notifier(), "", {});
  EXPECT_EQ(anonymous.FinalStatus().error_code(), StatusCode::UNAUTHENTICATED);

  v1::RegisterWebhookRequest req;
  req.set_url(receiver_->url());
  req.set_unit("kalbar-biro-organisasi");
  v1::Webhook hook;
  EXPECT_EQ(notifier().RegisterWebhook(AuthedContext(kSekretarisBlg).get(), req, &hook).error_code(),
            StatusCode::PERMISSION_DENIED);
  req.set_unit("balangan-satpolpp");
  req.set_url("ftp://example/x");
  auto st = notifier().RegisterWebhook(AuthedContext(kSekretarisBlg).get(), req, &hook);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("url:", 0), 0u) << st.error_message();
  v1::RemoveWebhookRequest remove;
  remove.set_id("wh-nope");
  v1::RemoveWebhookResponse removed;
  EXPECT_EQ(notifier().RemoveWebhook(AuthedContext(kSekretarisBlg).get(), remove, &removed).error_code(),
            StatusCode::NOT_FOUND);
  v1::Webhook theirs = Register(kKaro, receiver_->url(), "kalbar-biro-organisasi");
  remove.set_id(theirs.id());
  EXPECT_EQ(notifier().RemoveWebhook(AuthedContext(kSekretarisBlg).get(), remove, &removed).error_code(),
            StatusCode::PERMISSION_DENIED);
  v1::ListNotificationsRequest page;
  page.set_page_token("halaman-2");
  v1::ListNotificationsResponse notifications;
  st = notifier().ListNotifications(AuthedContext(kSekretarisBlg).get(), page, &notifications);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("page_token:", 0), 0u) << st.error_message();
  v1::ListDeliveriesRequest deliveries;
  deliveries.set_webhook_id(theirs.id());
  v1::ListDeliveriesResponse delivered;
  EXPECT_EQ(notifier().ListDeliveries(AuthedContext(kSekretarisBlg).get(), deliveries, &delivered).error_code(),
            StatusCode::PERMISSION_DENIED);
  deliveries.clear_webhook_id();  // the caller's own e-mail deliveries
  deliveries.set_page_token("halaman-2");
  st = notifier().ListDeliveries(AuthedContext(kSekretarisBlg).get(), deliveries, &delivered);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("page_token:", 0), 0u) << st.error_message();
  v1::ListWebhooksResponse listed;
  ASSERT_TRUE(notifier().ListWebhooks(AuthedContext(kSekretarisBlg).get(), {}, &listed).ok());
  for (const auto& h : listed.webhooks()) {
    EXPECT_EQ(h.unit(), "balangan-satpolpp");
    EXPECT_TRUE(h.secret().empty());
  }
}

TEST_F(NotifierChannelsTest, RunsEndingAndLateUnitsAreAnnounced) {
  v1::Run run = Start003();
  demo::DriveRun(stub(), AllActors(), run.id(), kAdmin, {});
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& n : InboxOf(kSekretarisBlg, v1::Notification::RUN_COMPLETED, ""))
      if (n.run_id() == run.id()) return true;
    return false;
  }));

  v1::Run cancelled = Start001();
  WaitForOpenTask(cancelled.id(), 1);
  v1::CancelRunRequest cancel;
  cancel.set_run_id(cancelled.id());
  cancel.set_reason("periode salah");
  v1::Run out;
  ASSERT_TRUE(stub().CancelRun(AuthedContext(kKaro).get(), cancel, &out).ok());
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& n : InboxOf(kKaro, v1::Notification::RUN_CANCELLED, ""))
      if (n.run_id() == cancelled.id() && n.reason() == "periode salah") return true;
    return false;
  }));

  // The aggregator's event: Bagian Kelembagaan missed its submission.
  NatsClient nats(NatsOptions{backends_->nats->url(), "late-test", false});
  v1::Event late;
  late.set_id("late-" + cancelled.id());
  late.set_type("sopflow.v1.aggregator.submissions_late");
  late.set_run_id(cancelled.id());
  late.set_unit("kalbar-biro-organisasi");
  late.set_sop_id(kSop001);
  late.set_period("2026-Q3");
  late.mutable_submissions_late()->set_step(2);
  late.mutable_submissions_late()->set_role("bagian");
  late.mutable_submissions_late()->add_units("bagian-kelembagaan");
  ASSERT_TRUE(nats.PublishAll({{late.type(), late.id(), late.SerializeAsString(), {}}}).empty());
  ASSERT_TRUE(WaitUntil([&] { return !InboxOf(kBagianKl, v1::Notification::SUBMISSION_LATE, "").empty(); }));
  EXPECT_TRUE(InboxOf(kBagianTl, v1::Notification::SUBMISSION_LATE, "").empty());
}

// Ops declare a webhook in a ConfigMap file with its secret in a Secret
// (an environment variable): it is listed without the secret and signs
// what it delivers with it.
bool AnyPostMentions(WebhookReceiver& receiver, const std::string& text) {
  for (const auto& r : receiver.received())
    if (r.body.find(text) != std::string::npos) return true;
  return false;
}

// The Balangan dashboard declared in a webhooks file for `config`, its
// secret in the environment variable the file names (set here; unset it
// once the notifier has started).
void DeclareBalanganDashboard(notifier::Config& config, const Backends& backends, const WebhookReceiver& receiver,
                              const std::string& secret) {
  ASSERT_EQ(setenv("SOPFLOW_TEST_WEBHOOK_SECRET", secret.c_str(), 1), 0);
  config.webhooks_file = backends.dir + "/webhooks.yaml";
  std::ofstream(config.webhooks_file) << "webhooks:\n  - {id: balangan-dashboard, url: \"" << receiver.url()
                                      << "\", unit: balangan-satpolpp, secret_env: SOPFLOW_TEST_WEBHOOK_SECRET}\n";
}

TEST(DeclaredWebhooksTest, AWebhookFromTheFileSignsWithTheSecretFromTheEnvironment) {
  OwnRouter own;
  WebhookReceiver receiver;
  const std::string secret = "declared-secret-0123456789";
  auto config = NotifierConfigFor(own.backends, "", own.router.port());
  DeclareBalanganDashboard(config, own.backends, receiver, secret);
  notifier::NotifierProcess notifier(config, &own.clock);
  notifier.Start();
  unsetenv("SOPFLOW_TEST_WEBHOOK_SECRET");

  auto notifier_stub = v1::Notifier::NewStub(OpenChannel("127.0.0.1:" + std::to_string(notifier.port())));
  v1::ListWebhooksResponse hooks;
  ASSERT_TRUE(notifier_stub->ListWebhooks(AuthedContext(kAdmin).get(), {}, &hooks).ok());
  ASSERT_EQ(hooks.webhooks_size(), 1);
  EXPECT_EQ(hooks.webhooks(0).id(), "wh-balangan-dashboard");
  EXPECT_EQ(hooks.webhooks(0).secret(), "") << "secrets never leave";

  v1::Run run = StartRun003(*own.stub);
  ASSERT_FALSE(run.id().empty());
  ASSERT_TRUE(WaitUntil([&] { return AnyPostMentions(receiver, run.id()); }));
  for (const auto& r : receiver.received())
    EXPECT_EQ(r.signature, "sha256=" + notifier::HmacSha256Hex(secret, r.body));
  notifier.Shutdown();
  own.router.Shutdown();
}

// Delivery workers of an idle notifier back off (up to a minute here) and
// are woken by their own replica scheduling a delivery: the webhook is
// posted at once, which polling alone would do only a minute later.
TEST(DeliveryWakeTest, AnIdleNotifierPostsTheWebhooksItSchedulesAtOnceAndStopsWithoutWaitingOutItsPause) {
  OwnRouter own;
  WebhookReceiver receiver;
  auto config = NotifierConfigFor(own.backends, "", own.router.port());
  config.loop_interval_ms = 60000;
  config.delivery_idle_max_ms = 60000;
  DeclareBalanganDashboard(config, own.backends, receiver, "wake-secret-0123456789");
  notifier::NotifierProcess notifier(config, &own.clock);
  notifier.Start();
  unsetenv("SOPFLOW_TEST_WEBHOOK_SECRET");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the workers' first look found nothing

  v1::Run run = StartRun003(*own.stub);
  ASSERT_FALSE(run.id().empty());
  EXPECT_TRUE(WaitUntil([&] { return AnyPostMentions(receiver, run.id()); }, 20000))
      << "not posted within 20 s: the workers were not woken";

  auto before = std::chrono::steady_clock::now();
  notifier.Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(30)) << "shutdown waited out the pause";
  own.router.Shutdown();
}

TEST(DeclaredWebhooksTest, ABrokenFileStopsTheNotifierFromStarting) {
  Backends backends;
  SystemClock clock;
  auto config = NotifierConfigFor(backends, "", /*router_port=*/9);  // it does not start
  config.webhooks_file = backends.dir + "/webhooks.yaml";
  std::ofstream(config.webhooks_file) << "webhooks:\n  - {id: x, url: \"http://127.0.0.1:9/h\", unit: u, "
                                         "secret_env: SOPFLOW_TEST_UNSET_SECRET}\n";
  notifier::NotifierProcess notifier(config, &clock);
  try {
    notifier.Start();
    FAIL() << "must not start";
  } catch (const sopflow::DomainError& e) {
    EXPECT_NE(std::string(e.what()).find("webhooks.yaml:2: secret_env: $SOPFLOW_TEST_UNSET_SECRET"), std::string::npos)
        << e.what();
  }
}

// The log tail keeps the newest entries in memory; older cursors are told
// to read Redis (nullopt), newer ones get what follows them, in order.
TEST(NotifierStartTest, AServiceTokenTheRouterWouldRefuseStopsTheStart) {
  Backends backends;
  SystemClock clock;
  auto refused = [&](const std::string& token) {
    auto config = NotifierConfigFor(backends, "", /*router_port=*/9);  // it does not start
    config.service_token = token;
    return StartRefusal<notifier::NotifierProcess>(config, &clock);
  };
  EXPECT_NE(refused("").find("--service-token is no user's token"), std::string::npos);
  EXPECT_NE(refused("not-a-token").find("--service-token is no user's token"), std::string::npos);
  EXPECT_NE(refused(kSekretarisBlg).find("user 'sekretaris-blg', who lacks the read_runs permission"),
            std::string::npos);
}

TEST(LogTailTest, ServesWhatFollowsACursorAndSendsOlderCursorsToRedis) {
  Backends backends;
  RedisConnection redis(RedisAddress::Parse(backends.redis->address()));
  auto add = [&](int i) {
    v1::Notification n;
    n.set_id("n" + std::to_string(i));
    Reply r = redis.Command({"XADD", notifier::keys::kLog, "*", "n", n.SerializeAsString()});
    return ReplyString(r.get()).value_or("");
  };
  std::vector<std::string> ids;
  for (int i = 1; i <= 3; ++i) ids.push_back(add(i));
  notifier::LogTail tail(RedisAddress::Parse(backends.redis->address()), /*capacity=*/4);
  tail.Start();
  EXPECT_EQ(tail.floor(), ids[2]) << "memory starts after what was there";
  EXPECT_FALSE(tail.Next("0-0", 10).has_value()) << "older than memory: read Redis";
  for (int i = 4; i <= 9; ++i) ids.push_back(add(i));
  std::vector<std::string> got;
  ASSERT_TRUE(WaitUntil([&] {
    auto batch = tail.Next(ids[4], 10);
    if (!batch) return false;
    got.clear();
    for (const auto& e : batch->wanted) got.push_back(e.notification->id());
    return got.size() == 4;
  }));
  EXPECT_EQ(got, (std::vector<std::string>{"n6", "n7", "n8", "n9"}));
  EXPECT_EQ(tail.floor(), ids[4]) << "four kept: n6..n9";
  EXPECT_FALSE(tail.Next(ids[3], 10).has_value());
  auto none = tail.Next(ids[8], 10);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->wanted.empty()) << "nothing newer yet";
  EXPECT_EQ(none->cursor, ids[8]);
  auto odd = tail.Next(ids[4], 10, [](const v1::Notification& n) { return n.id() == "n7" || n.id() == "n9"; });
  ASSERT_TRUE(odd.has_value());
  ASSERT_EQ(odd->wanted.size(), 2u) << "filtered by the tail";
  EXPECT_EQ(odd->wanted[1].notification->id(), "n9");
  EXPECT_EQ(odd->cursor, ids[8]) << "past what was not wanted";
  auto two = tail.Next(ids[4], 2);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->cursor, ids[6]) << "no further than the last one taken";
  tail.Stop();
}

// A live listener is handed what it wants of each new entry, looked up by
// its interest: a notification costs the listeners it concerns, not every
// one open, and an idle listener neither scans memory nor falls behind it
// however often memory turns over. A listener not live (still catching up)
// is handed nothing; Stop tells every listener, once.
TEST(LogTailTest, ALiveListenerIsHandedWhatItWantsAndNothingElse) {
  Backends backends;
  RedisConnection redis(RedisAddress::Parse(backends.redis->address()));
  auto add = [&](const std::string& id, const std::string& unit) {
    v1::Notification n;
    n.set_id(id);
    n.set_unit(unit);
    n.set_role("staf");
    n.add_users("u-" + unit);
    Reply r = redis.Command({"XADD", notifier::keys::kLog, "*", "n", n.SerializeAsString()});
    return ReplyString(r.get()).value_or("");
  };
  add("n0", "elsewhere");
  notifier::LogTail tail(RedisAddress::Parse(backends.redis->address()), /*capacity=*/4);
  tail.Start();
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> got;  // listener -> notification ids handed
  std::map<std::string, int> stops;
  auto listen = [&](const std::string& name, const std::string& interest, notifier::LogTail::Wants wants) {
    return tail.Listen(interest, std::move(wants), [&, name](std::vector<notifier::LogEntry> entries) {
      std::lock_guard lock(mu);
      if (entries.empty()) ++stops[name];
      for (const auto& e : entries) got[name].push_back(e.notification->id());
    });
  };
  auto of_unit = [](const std::string& unit) {
    return [unit](const v1::Notification& n) { return n.unit() == unit || n.member() == unit; };
  };
  auto balangan = listen("balangan", notifier::LogTail::UnitInterest("balangan"), of_unit("balangan"));
  auto gowa = listen("gowa", notifier::LogTail::RoleInterest("staf", "gowa"), {});
  auto user = listen("user", notifier::LogTail::UserInterest("u-gowa"), {});
  auto all = listen("all", notifier::LogTail::kEverything, {});
  auto not_live = listen("not-live", notifier::LogTail::UnitInterest("gowa"), of_unit("gowa"));
  for (const auto& l : {balangan, gowa, user, all}) {
    auto batch = tail.Next(tail.floor(), 10, l->wants, l);  // caught up: live
    ASSERT_TRUE(batch.has_value());
    EXPECT_TRUE(batch->live);
  }
  auto handed = [&](const std::string& name) {
    std::lock_guard lock(mu);
    return got[name];
  };
  using Ids = std::vector<std::string>;
  add("n1", "balangan");
  add("n2", "gowa");
  ASSERT_TRUE(WaitUntil([&] { return handed("all").size() == 2; }));
  EXPECT_EQ(handed("balangan"), Ids{"n1"});
  ASSERT_TRUE(WaitUntil([&] { return handed("gowa").size() == 1 && handed("user").size() == 1; }));
  EXPECT_EQ(handed("gowa"), Ids{"n2"});
  EXPECT_EQ(handed("user"), Ids{"n2"});
  for (int i = 3; i <= 12; ++i) add("n" + std::to_string(i), "elsewhere");  // memory (4) turns over twice
  add("n13", "gowa");
  ASSERT_TRUE(WaitUntil([&] { return handed("all").size() == 13; }));
  ASSERT_TRUE(WaitUntil([&] { return handed("gowa").size() == 2; }));
  EXPECT_EQ(handed("gowa"), (Ids{"n2", "n13"})) << "live: nothing missed while memory turned over";
  EXPECT_EQ(handed("balangan"), Ids{"n1"}) << "handed nothing it does not want";
  EXPECT_TRUE(handed("not-live").empty()) << "not live: it reads the tail itself";
  EXPECT_FALSE(tail.Next("0-0", 10).has_value()) << "memory no longer reaches back";
  tail.Unlisten(all);
  tail.Stop();
  std::lock_guard lock(mu);
  for (const char* name : {"balangan", "gowa", "user", "not-live"}) EXPECT_EQ(stops[name], 1) << name;
  EXPECT_EQ(stops["all"], 0) << "not one that left";
}

// A subscriber reading from the start on a notifier started after the
// notifications were written gets the old ones (from Redis) and then the
// new ones (from the tail), each once, in order.
TEST(LogTailTest, ASubscriberFromTheStartCatchesUpFromRedisThenFollowsTheTail) {
  OwnRouter own;
  auto start_run = [&] { return StartRun003(*own.stub).id(); };
  std::string first_run;
  {
    notifier::NotifierProcess before(NotifierConfigFor(own.backends, "", own.router.port()), &own.clock);
    before.Start();
    first_run = start_run();
    RedisConnection redis(RedisAddress::Parse(own.backends.redis->address()));
    ASSERT_TRUE(WaitUntil([&] {
      Reply n = redis.Command({"XLEN", notifier::keys::kLog});
      return ReplyInteger(n.get()) >= 1;
    }));
    before.Shutdown();
  }
  notifier::NotifierProcess after(NotifierConfigFor(own.backends, "", own.router.port()), &own.clock);
  after.Start();
  auto notifier_stub = v1::Notifier::NewStub(OpenChannel("127.0.0.1:" + std::to_string(after.port())));
  v1::SubscribeRequest req;
  req.set_from_start(true);
  Subscription stream(*notifier_stub, kSekretarisBlg, req);
  ASSERT_TRUE(stream.WaitForCount(1));
  EXPECT_EQ(stream.got()[0].run_id(), first_run) << "the old one, from Redis";
  std::string second_run = start_run();
  ASSERT_TRUE(WaitUntil([&] { return !OfRun(stream.got(), second_run).empty(); }));
  std::set<std::string> ids;
  std::string last_cursor;
  for (const auto& n : stream.got()) {
    EXPECT_TRUE(ids.insert(n.id()).second) << "twice: " << n.id();
    EXPECT_LT(ParseStreamIdForTest(last_cursor), ParseStreamIdForTest(n.cursor())) << "in log order";
    last_cursor = n.cursor();
  }
  EXPECT_EQ(OfRun(stream.got(), first_run).size(), 1u);
  EXPECT_EQ(OfRun(stream.got(), second_run).size(), 1u);
  // A draining notifier ends its open streams itself, with OK (the
  // subscriber resumes elsewhere from its cursor), not by cancelling them
  // when the drain time runs out.
  after.Shutdown();
  EXPECT_TRUE(stream.FinalStatus().ok()) << stream.FinalStatus().error_message();
  own.router.Shutdown();
}

}  // namespace
}  // namespace sopflow::testing

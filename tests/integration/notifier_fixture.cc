#include "notifier_fixture.h"

#include <httplib.h>

#include <filesystem>

namespace sopflow::testing {

WebhookReceiver* NotifierTest::receiver_ = nullptr;
SmtpSink* NotifierTest::smtp_ = nullptr;
notifier::NotifierProcess* NotifierTest::notifier_process_ = nullptr;
std::unique_ptr<v1::Notifier::Stub> NotifierTest::notifier_stub_;

WebhookReceiver::WebhookReceiver() : server_(std::make_unique<httplib::Server>()) {
  server_->Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu_);
    received_.push_back({req.body, req.get_header_value("X-Sopflow-Signature"), req.get_header_value("X-Sopflow-Delivery")});
    bool fail = fail_always_ || fail_first_ > 0;
    if (fail_first_ > 0) --fail_first_;
    res.status = fail ? 500 : 200;
    res.set_content(fail ? "try later" : "ok", "text/plain");
  });
  port_ = server_->bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

WebhookReceiver::~WebhookReceiver() {
  server_->stop();
  thread_.join();
}

void WebhookReceiver::FailFirst(int n) {
  std::lock_guard lock(mu_);
  fail_first_ = n;
}

void WebhookReceiver::FailAlways(bool on) {
  std::lock_guard lock(mu_);
  fail_always_ = on;
}

std::vector<WebhookReceiver::Received> WebhookReceiver::received() {
  std::lock_guard lock(mu_);
  return received_;
}

SmtpSink::SmtpSink(const std::string& dir) : maildir_(dir + "/maildir") {
  // Debian's python3 (where python3-aiosmtpd lives), not whatever is first
  // on PATH; -d logs "Server is listening" once it has bound its port.
  port_ = process_.StartOnFreePort(
      [&](int port) {
        return std::vector<std::string>{"/usr/bin/python3", "-m", "aiosmtpd", "-n", "-d",
                                        "-l", "127.0.0.1:" + std::to_string(port), "-c",
                                        "aiosmtpd.handlers.Mailbox", maildir_};
      },
      {}, dir + "/smtp.log", "Server is listening on", 20000);
}

std::vector<std::string> SmtpSink::Messages() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(maildir_ + "/new", ec)) out.push_back(ReadText(e.path()));
  return out;
}

notifier::Config NotifierConfigFor(const Backends& backends, const std::string& smtp_url, int router_port) {
  notifier::Config c;
  c.router = "127.0.0.1:" + std::to_string(router_port);
  c.service_token = kNotifierService;
  c.listen = "127.0.0.1:0";
  c.redis = backends.redis->address();
  c.nats = backends.nats->url();
  c.tokens_file = SourcePath("deploy/overlays/dev/tokens.yaml");
  c.calendar_file = SourcePath("deploy/base/calendar/calendar.yaml");
  c.templates_dir = SourcePath("deploy/base/notifier/templates");
  c.options.smtp.url = smtp_url;
  c.options.max_attempts = 4;
  c.options.backoff_base_ms = 20;
  c.options.backoff_max_ms = 200;
  c.options.http_timeout_ms = 2000;
  c.loop_interval_ms = 5;
  c.timer_interval_ms = 5;
  c.drain_ms = 2000;
  return c;
}

void NotifierTest::SetUpTestSuite() {
  RouterTest::SetUpTestSuite();
  receiver_ = new WebhookReceiver();
  smtp_ = new SmtpSink(backends_->dir);
  notifier_process_ = new notifier::NotifierProcess(NotifierConfigFor(*backends_, smtp_->url(), router_->port()), &clock_);
  notifier_process_->Start();
  notifier_stub_ = NewNotifierStub(notifier_process_->port());
}

void NotifierTest::TearDownTestSuite() {
  notifier_stub_.reset();
  delete notifier_process_;
  notifier_process_ = nullptr;
  delete smtp_;
  smtp_ = nullptr;
  delete receiver_;
  receiver_ = nullptr;
  RouterTest::TearDownTestSuite();
}

void NotifierTest::TearDown() {
  v1::ListWebhooksResponse hooks;
  notifier().ListWebhooks(AuthedContext(kAdmin).get(), {}, &hooks);
  for (const auto& h : hooks.webhooks()) {
    v1::RemoveWebhookRequest req;
    req.set_id(h.id());
    v1::RemoveWebhookResponse resp;
    notifier().RemoveWebhook(AuthedContext(kAdmin).get(), req, &resp);
  }
  receiver_->FailFirst(0);
  receiver_->FailAlways(false);
}

std::unique_ptr<v1::Notifier::Stub> NotifierTest::NewNotifierStub(int port) {
  return v1::Notifier::NewStub(OpenChannel("127.0.0.1:" + std::to_string(port)));
}

std::vector<v1::Notification> NotifierTest::InboxOf(const std::string& token, v1::Notification::Kind kind,
                                                     const std::string& task_id) {
  v1::ListNotificationsRequest req;
  req.set_page_size(500);
  v1::ListNotificationsResponse resp;
  EXPECT_TRUE(notifier().ListNotifications(AuthedContext(token).get(), req, &resp).ok());
  std::vector<v1::Notification> out;
  for (const auto& n : resp.notifications())
    if (n.kind() == kind && (task_id.empty() || n.task_id() == task_id)) out.push_back(n);
  return out;
}

v1::Webhook NotifierTest::Register(const std::string& token, const std::string& url, const std::string& unit) {
  v1::RegisterWebhookRequest req;
  req.set_url(url);
  req.set_unit(unit);
  v1::Webhook hook;
  auto st = notifier().RegisterWebhook(AuthedContext(token).get(), req, &hook);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return hook;
}

}  // namespace sopflow::testing

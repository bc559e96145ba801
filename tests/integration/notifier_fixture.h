// The notifier against real Redis, NATS, the router, an HTTP webhook
// receiver and an SMTP sink (Debian's python3-aiosmtpd).
#pragma once

#include <mutex>
#include <thread>

#include "notifier.h"
#include "router_fixture.h"
#include "sopflow/v1/notifier.grpc.pb.h"

namespace httplib {
class Server;
}

namespace sopflow::testing {

// A webhook endpoint that records every POST and can be told to fail.
class WebhookReceiver {
 public:
  struct Received {
    std::string body, signature, delivery;
  };
  WebhookReceiver();
  ~WebhookReceiver();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  void FailFirst(int n);
  void FailAlways(bool on);
  std::vector<Received> received();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::vector<Received> received_;
  int fail_first_ = 0;
  bool fail_always_ = false;
};

// An SMTP server that stores what it receives in a Maildir.
class SmtpSink {
 public:
  explicit SmtpSink(const std::string& dir);
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> Messages();  // raw RFC 5322 texts

 private:
  std::string maildir_;
  int port_;
  ChildProcess process_;
};

// A notifier of the test deployment; its timers ask the router on
// `router_port` (with the notifier's read_runs service account).
notifier::Config NotifierConfigFor(const Backends& backends, const std::string& smtp_url, int router_port);

class NotifierTest : public RouterTest {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void TearDown() override;  // removes the test's webhooks

  static std::unique_ptr<v1::Notifier::Stub> NewNotifierStub(int port);
  v1::Notifier::Stub& notifier() { return *notifier_stub_; }
  // The caller's inbox notifications of `kind` about `task_id`.
  std::vector<v1::Notification> InboxOf(const std::string& token, v1::Notification::Kind kind,
                                        const std::string& task_id);
  v1::Webhook Register(const std::string& token, const std::string& url, const std::string& unit);

  static WebhookReceiver* receiver_;
  static SmtpSink* smtp_;
  static notifier::NotifierProcess* notifier_process_;
  static std::unique_ptr<v1::Notifier::Stub> notifier_stub_;
};

}  // namespace sopflow::testing

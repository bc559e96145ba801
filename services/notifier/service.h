// The Notifier gRPC service (synchronous API: Subscribe holds a thread per
// stream while it waits for the log tail, which suits a service whose
// callers are people and departments' systems).
#pragma once

#include <atomic>

#include "engine.h"
#include "log_tail.h"
#include "sopflow/v1/notifier.grpc.pb.h"

namespace sopflow::notifier {

class NotifierService final : public v1::Notifier::Service {
 public:
  // Starts the shared log tail; throws if Redis cannot be reached.
  NotifierService(Engine* engine, std::shared_ptr<const UserDirectory> users, RedisAddress redis)
      : engine_(engine), users_(std::move(users)), redis_(redis), tail_(std::move(redis)) {
    tail_.Start();
  }
  // Ends open Subscribe streams (graceful drain).
  void StopStreams() {
    stopping_ = true;
    tail_.Stop();
  }

  grpc::Status Subscribe(grpc::ServerContext*, const v1::SubscribeRequest*,
                         grpc::ServerWriter<v1::Notification>*) override;
  grpc::Status ListNotifications(grpc::ServerContext*, const v1::ListNotificationsRequest*,
                                 v1::ListNotificationsResponse*) override;
  grpc::Status MarkRead(grpc::ServerContext*, const v1::MarkReadRequest*, v1::MarkReadResponse*) override;
  grpc::Status CountUnread(grpc::ServerContext*, const v1::CountUnreadRequest*, v1::CountUnreadResponse*) override;
  grpc::Status RegisterWebhook(grpc::ServerContext*, const v1::RegisterWebhookRequest*, v1::Webhook*) override;
  grpc::Status ListWebhooks(grpc::ServerContext*, const v1::ListWebhooksRequest*, v1::ListWebhooksResponse*) override;
  grpc::Status RemoveWebhook(grpc::ServerContext*, const v1::RemoveWebhookRequest*,
                             v1::RemoveWebhookResponse*) override;
  grpc::Status TestWebhook(grpc::ServerContext*, const v1::TestWebhookRequest*, v1::Delivery*) override;
  grpc::Status ListDeliveries(grpc::ServerContext*, const v1::ListDeliveriesRequest*,
                              v1::ListDeliveriesResponse*) override;

 private:
  Engine* engine_;
  std::shared_ptr<const UserDirectory> users_;
  RedisAddress redis_;
  LogTail tail_;
  std::atomic<bool> stopping_{false};
};

}  // namespace sopflow::notifier

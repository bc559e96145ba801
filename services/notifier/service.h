// The Notifier gRPC service. Subscribe is on gRPC's callback API (a stream
// holds no thread while it waits: SubscribeStream); the rest are short
// calls from people and departments' systems, on the synchronous API.
#pragma once

#include "engine.h"
#include "log_tail.h"
#include "sopflow/v1/notifier.grpc.pb.h"

namespace sopflow::notifier {

class NotifierService final : public v1::Notifier::WithCallbackMethod_Subscribe<v1::Notifier::Service> {
 public:
  // Starts the shared log tail; throws if Redis cannot be reached.
  NotifierService(Engine* engine, std::shared_ptr<const UserDirectory> users, RedisAddress redis)
      : engine_(engine), users_(std::move(users)), redis_(redis), tail_(std::move(redis)) {
    tail_.Start();
  }
  // Ends open Subscribe streams (graceful drain): each finishes after the
  // notification it is sending; subscribers resume from their cursor.
  void StopStreams() { tail_.Stop(); }

  grpc::ServerWriteReactor<v1::Notification>* Subscribe(grpc::CallbackServerContext*,
                                                        const v1::SubscribeRequest*) override;
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
};

}  // namespace sopflow::notifier

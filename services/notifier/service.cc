#include "service.h"

#include <hiredis/hiredis.h>

#include <regex>

#include "grpc_server.h"
#include "notification_feed.h"
#include "paging.h"
#include "subscribe_stream.h"

namespace sopflow::notifier {

namespace {

// The cursor to read after: the request's, the oldest, or the newest.
std::string StartCursor(RedisConnection& redis, const v1::SubscribeRequest& req) {
  static const std::regex kCursor(R"(\d{1,20}-\d{1,20})");
  if (!req.cursor().empty()) {
    if (!std::regex_match(req.cursor(), kCursor)) ThrowInvalid("cursor", "not a cursor this service gave out");
    // XINFO STREAM tells the newest id ever removed by trimming: a cursor
    // before it means notifications after the cursor are gone.
    Reply info = redis.Command({"XINFO", "STREAM", keys::kLog});
    if (info && info->type == REDIS_REPLY_ARRAY)
      for (size_t i = 0; i + 1 < info->elements; i += 2)
        if (ReplyString(info->element[i]).value_or("") == "max-deleted-entry-id") {
          std::string deleted = ReplyString(info->element[i + 1]).value_or("0-0");
          if (ParseStreamId(req.cursor()) < ParseStreamId(deleted))
            throw DomainError(ErrorCode::kOutOfRange, "cursor " + req.cursor() + " is older than the kept log; resubscribe from_start");
        }
    return req.cursor();
  }
  if (req.from_start()) return "0-0";
  Reply last = redis.Command({"XREVRANGE", keys::kLog, "+", "-", "COUNT", "1"});
  if (last && last->type == REDIS_REPLY_ARRAY && last->elements == 1)
    return ReplyString(last->element[0]->element[0]).value_or("0-0");
  return "0-0";
}

}  // namespace

grpc::ServerWriteReactor<v1::Notification>* NotifierService::Subscribe(grpc::CallbackServerContext* ctx,
                                                                       const v1::SubscribeRequest* req) {
  Engine::Subscription matches;
  std::string cursor;
  grpc::Status refused = GuardedCall([&] {
    matches = engine_->SubscriptionFilter(CallerOf(*ctx, *users_), *req);
    RedisConnection redis(redis_, 5000);
    cursor = StartCursor(redis, *req);
  });
  if (!refused.ok()) return Refused<grpc::ServerWriteReactor<v1::Notification>>(refused);
  // Draining: a stream taken now would end at once, after headers that
  // told its subscriber it was subscribed. It goes to another replica.
  if (!tail_.running())
    return Refused<grpc::ServerWriteReactor<v1::Notification>>(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "this notifier is draining; subscribe at another replica"));
  // The stream sends its headers at once with this: the subscriber knows
  // it will see everything after it, and where to resume if it breaks
  // before the first notification.
  ctx->AddInitialMetadata(kSubscribeCursorHeader, cursor);
  return new SubscribeStream(tail_, redis_, std::move(matches.interest), std::move(matches.wants), std::move(cursor));
}

grpc::Status NotifierService::ListNotifications(grpc::ServerContext* ctx, const v1::ListNotificationsRequest* req,
                                                v1::ListNotificationsResponse* resp) {
  return GuardedCall([&] {
    User user = CallerOf(*ctx, *users_);
    auto page = engine_->store().InboxOf(user.id, PageLimit(req->page_size(), 50, 500), req->unread_only(),
                                         FromPageToken(req->page_token()));
    for (auto& n : page.notifications) *resp->add_notifications() = std::move(n);
    if (page.last) resp->set_next_page_token(PageToken(*page.last));
  });
}

grpc::Status NotifierService::MarkRead(grpc::ServerContext* ctx, const v1::MarkReadRequest* req,
                                       v1::MarkReadResponse* resp) {
  return GuardedCall([&] {
    User user = CallerOf(*ctx, *users_);
    std::vector<std::string> ids(req->ids().begin(), req->ids().end());
    resp->set_marked(static_cast<uint32_t>(engine_->store().MarkRead(user.id, ids)));
  });
}

grpc::Status NotifierService::CountUnread(grpc::ServerContext* ctx, const v1::CountUnreadRequest*,
                                          v1::CountUnreadResponse* resp) {
  return GuardedCall([&] {
    resp->set_unread(static_cast<uint32_t>(engine_->store().UnreadCount(CallerOf(*ctx, *users_).id)));
  });
}

grpc::Status NotifierService::RegisterWebhook(grpc::ServerContext* ctx, const v1::RegisterWebhookRequest* req,
                                              v1::Webhook* resp) {
  return GuardedCall([&] { *resp = engine_->RegisterWebhook(CallerOf(*ctx, *users_), *req); });
}

grpc::Status NotifierService::ListWebhooks(grpc::ServerContext* ctx, const v1::ListWebhooksRequest* req,
                                           v1::ListWebhooksResponse* resp) {
  return GuardedCall([&] {
    for (auto& h : engine_->ListWebhooks(CallerOf(*ctx, *users_), req->unit())) *resp->add_webhooks() = std::move(h);
  });
}

grpc::Status NotifierService::RemoveWebhook(grpc::ServerContext* ctx, const v1::RemoveWebhookRequest* req,
                                            v1::RemoveWebhookResponse*) {
  return GuardedCall([&] { engine_->RemoveWebhook(CallerOf(*ctx, *users_), req->id()); });
}

grpc::Status NotifierService::TestWebhook(grpc::ServerContext* ctx, const v1::TestWebhookRequest* req,
                                          v1::Delivery* resp) {
  return GuardedCall([&] { *resp = engine_->TestWebhook(CallerOf(*ctx, *users_), req->id()); });
}

grpc::Status NotifierService::ListDeliveries(grpc::ServerContext* ctx, const v1::ListDeliveriesRequest* req,
                                             v1::ListDeliveriesResponse* resp) {
  return GuardedCall([&] { *resp = engine_->ListDeliveries(CallerOf(*ctx, *users_), *req); });
}

}  // namespace sopflow::notifier

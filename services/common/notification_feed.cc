#include "notification_feed.h"

#include <thread>

#include "grpc_client.h"

namespace sopflow {

std::string SubscribeCursorOf(const grpc::ClientContext& context) {
  const auto& headers = context.GetServerInitialMetadata();
  auto it = headers.find(kSubscribeCursorHeader);
  return it == headers.end() ? "" : std::string(it->second.data(), it->second.size());
}

NotificationFeed::NotificationFeed(Options options) : options_(std::move(options)) {
  for (const auto& address : options_.addresses) channels_.push_back(OpenChannel(address, options_.ca_file));
}

grpc::Status NotificationFeed::Run(const OnLive& on_live, const OnNotification& on_notification) {
  if (channels_.empty()) return {grpc::StatusCode::INVALID_ARGUMENT, "no notifier address"};
  grpc::Status last;
  size_t next = 0;
  for (int failed = 0; failed < options_.max_failed_attempts;) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return grpc::Status::OK;
    }
    bool got_headers = RunOnce(next, on_live, on_notification, &last);
    {
      std::lock_guard lock(mu_);
      if (stopped_) return grpc::Status::OK;
    }
    if (!WorthRetrying(last)) return last;
    // The next replica: the one that ended the stream may be draining.
    failed = got_headers ? 0 : failed + 1;
    if (options_.on_retry && failed < options_.max_failed_attempts) options_.on_retry(last);
    next = (next + 1) % channels_.size();
    std::this_thread::sleep_for(options_.retry_pause);
  }
  return {last.error_code() == grpc::StatusCode::OK ? grpc::StatusCode::UNAVAILABLE : last.error_code(),
          "no notifier took the subscription in " + std::to_string(options_.max_failed_attempts) +
              " attempts; last: " + last.error_message()};
}

bool NotificationFeed::RunOnce(size_t channel_index, const OnLive& on_live, const OnNotification& on_notification,
                               grpc::Status* status) {
  if (!Connect(*channels_[channel_index])) {
    *status = {grpc::StatusCode::UNAVAILABLE, options_.addresses[channel_index] + " not reachable"};
    return false;
  }
  auto stub = v1::Notifier::NewStub(channels_[channel_index]);
  v1::SubscribeRequest request = options_.request;
  grpc::ClientContext* context = nullptr;
  {
    std::lock_guard lock(mu_);
    if (!cursor_.empty()) {
      request.set_cursor(cursor_);
      request.set_from_start(false);
    }
    context_ = AuthedContext(options_.token, options_.stream_deadline);
    context = context_.get();
    if (stopped_) context->TryCancel();  // Stop() came between the checks
  }
  auto reader = stub->Subscribe(context, request);
  reader->WaitForInitialMetadata();
  std::string start = SubscribeCursorOf(*context);
  // Headers alone come with a refusal too (trailers only): a stream is
  // live when a notifier gave its start, or when it is an older one.
  v1::Notification n;
  bool got_headers = !start.empty();
  if (got_headers) {
    {
      std::lock_guard lock(mu_);
      cursor_ = start;
    }
    on_live(start);
  }
  while (reader->Read(&n)) {
    if (!got_headers) {  // a notifier without the header: live now
      got_headers = true;
      on_live("");
    }
    {
      std::lock_guard lock(mu_);
      if (!n.cursor().empty()) cursor_ = n.cursor();
    }
    on_notification(n);
  }
  *status = reader->Finish();
  return got_headers;
}

bool NotificationFeed::Connect(grpc::Channel& channel) {
  // In slices, so that Stop() is not kept waiting for a whole timeout.
  constexpr auto kSlice = std::chrono::milliseconds(100);
  const auto until = std::chrono::steady_clock::now() + options_.connect_timeout;
  for (auto now = std::chrono::steady_clock::now(); now < until; now = std::chrono::steady_clock::now()) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return false;
    }
    auto slice = std::min<std::chrono::steady_clock::duration>(kSlice, until - now);
    if (channel.WaitForConnected(std::chrono::system_clock::now() + slice)) return true;
  }
  return false;
}

bool NotificationFeed::WorthRetrying(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::UNIMPLEMENTED:
      return false;
    default:  // OK (a drain), UNAVAILABLE, CANCELLED by the server, a deadline: subscribe again
      return true;
  }
}

void NotificationFeed::Stop() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  if (context_) context_->TryCancel();
}

std::string NotificationFeed::cursor() const {
  std::lock_guard lock(mu_);
  return cursor_;
}

}  // namespace sopflow

#include "notification_feed.h"

#include <algorithm>
#include <random>
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
  std::minstd_rand random(std::random_device{}());
  std::uniform_real_distribution<double> jitter(-1.0, 1.0);
  for (int failed = 0; failed < options_.max_failed_attempts;) {
    if (Stopped()) return grpc::Status::OK;
    bool worked = RunOnce(next, on_live, on_notification, &last);
    if (Stopped()) return grpc::Status::OK;
    if (!WorthRetrying(last)) return last;
    // The next replica: the one that ended the stream may be draining.
    failed = worked ? 0 : failed + 1;
    if (failed >= options_.max_failed_attempts) break;
    if (options_.on_retry) options_.on_retry(last);
    next = (next + 1) % channels_.size();
    if (failed > 0) Pause(PauseAfter(failed, options_, jitter(random)));
  }
  return {last.error_code() == grpc::StatusCode::OK ? grpc::StatusCode::UNAVAILABLE : last.error_code(),
          "no notifier kept the subscription in " + std::to_string(options_.max_failed_attempts) +
              " attempts in a row; last: " + (last.ok() ? "the stream ended at once" : last.error_message())};
}

std::chrono::milliseconds NotificationFeed::PauseAfter(int failed, const Options& options, double jitter) {
  const auto most = static_cast<double>(options.max_retry_pause.count());
  auto pause = static_cast<double>(options.retry_pause.count());
  for (int i = 1; i < failed && pause < most; ++i) pause *= 2;
  pause = std::min(pause, most);
  return std::chrono::milliseconds(static_cast<int64_t>(pause * (1.0 + 0.2 * std::clamp(jitter, -1.0, 1.0))));
}

void NotificationFeed::Pause(std::chrono::milliseconds pause) {
  // Stop() wakes it: a feed backing off for seconds still stops at once.
  std::unique_lock lock(mu_);
  stop_signal_.wait_for(lock, pause, [this] { return stopped_; });
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
  const auto opened = std::chrono::steady_clock::now();
  bool brought_any = false;
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
    brought_any = true;
    on_notification(n);
  }
  *status = reader->Finish();
  return got_headers && (brought_any || std::chrono::steady_clock::now() - opened >= options_.healthy_after);
}

bool NotificationFeed::Connect(grpc::Channel& channel) {
  // In slices, so that Stop() is not kept waiting for a whole timeout.
  constexpr auto kSlice = std::chrono::milliseconds(100);
  const auto until = std::chrono::steady_clock::now() + options_.connect_timeout;
  for (auto now = std::chrono::steady_clock::now(); now < until; now = std::chrono::steady_clock::now()) {
    if (Stopped()) return false;
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
  stop_signal_.notify_all();
}

bool NotificationFeed::Stopped() const {
  std::lock_guard lock(mu_);
  return stopped_;
}

std::string NotificationFeed::cursor() const {
  std::lock_guard lock(mu_);
  return cursor_;
}

}  // namespace sopflow

#include "store.h"

#include <google/protobuf/util/time_util.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <mutex>

#include "error.h"
#include "leased_queue.h"

namespace sopflow::notifier {

using google::protobuf::util::TimeUtil;

namespace keys {
namespace {
constexpr std::string_view kInboxPrefix = "sf:n:inbox:";
constexpr std::string_view kDeliveriesPrefix = "sf:n:deliveries:";
constexpr std::string_view kDeadOfPrefix = "sf:n:dead-of:";
}  // namespace
std::string Item(const std::string& id) { return "sf:n:item:" + id; }
std::string Inbox(const std::string& user) { return std::string(kInboxPrefix) + user; }
std::string Unread(const std::string& user) { return "sf:n:unread:" + user; }
std::string Delivery(const std::string& id) { return "sf:n:delivery:" + id; }
std::string DeliveriesOf(const std::string& target) { return std::string(kDeliveriesPrefix) + target; }
std::string DeadOf(const std::string& target) { return std::string(kDeadOfPrefix) + target; }
}  // namespace keys

void Store::Record(RedisBatch& b, const v1::Notification& n, const std::vector<v1::Webhook>& hooks,
                   const std::vector<std::pair<std::string, std::string>>& emails, int64_t now_ms,
                   bool marks_cause) const {
  std::string pb = n.SerializeAsString();
  std::string score = std::to_string(now_ms);
  if (marks_cause) b.ClaimAbsent(keys::Item(n.id()), pb, kKeepSeconds);
  else b.Write({"SET", keys::Item(n.id()), pb, "EX", kKeepSecondsArg});
  b.Write({"XADD", keys::kLog, "MAXLEN", "~", std::to_string(log_max_len_), "*", "n", pb});
  for (const auto& user : n.users()) {
    b.Write({"ZADD", keys::Inbox(user), score, n.id()});
    b.Write({"SADD", keys::Unread(user), n.id()});
  }
  auto add_delivery = [&](v1::Delivery::Channel channel, const std::string& target, const std::string& user) {
    v1::Delivery d;
    d.set_id(n.id() + "|" + target);
    d.set_notification_id(n.id());
    d.set_channel(channel);
    d.set_target(target);
    d.set_user(user);
    d.set_status(v1::Delivery::PENDING);
    *d.mutable_next_attempt_at() = TimeUtil::MillisecondsToTimestamp(now_ms);
    b.Write({"HSET", keys::Delivery(d.id()), "status", "PENDING", "attempt", "0", "pb", d.SerializeAsString()});
    b.Write({"EXPIRE", keys::Delivery(d.id()), kKeepSecondsArg});
    b.Write({"ZADD", keys::kDue, score, d.id()});
    b.Write({"ZADD", keys::DeliveriesOf(target), score, d.id()});
  };
  for (const auto& hook : hooks) add_delivery(v1::Delivery::WEBHOOK, hook.id(), "");
  for (const auto& [user, email] : emails) add_delivery(v1::Delivery::EMAIL, email, user);
}

Store::WebhookSet Store::Webhooks() {
  auto conn = pool_->Acquire();
  auto replies = conn->Pipeline({{"HGET", keys::kHooksMeta, "version"}, {"HVALS", keys::kHooks}});
  for (const auto& r : replies) ThrowIfError(r.get());
  std::vector<v1::Webhook> hooks;
  for (const auto& s : ReplyStrings(replies[1].get()))
    if (!hooks.emplace_back().ParseFromString(s)) hooks.pop_back();
  return WebhookSet::Of(ReplyString(replies[0].get()).value_or(""), std::move(hooks));
}

Store::WebhookSet Store::WebhookSet::Of(std::string version, std::vector<v1::Webhook> hooks) {
  WebhookSet set{std::move(version), std::move(hooks), {}};
  for (size_t i = 0; i < set.hooks.size(); ++i) set.by_unit[set.hooks[i].unit()].push_back(i);
  return set;
}

std::vector<v1::Webhook> Store::WebhookSet::For(const v1::Notification& n) const {
  std::vector<size_t> of_unit;
  for (const std::string* unit : {&n.unit(), &n.member()}) {
    if (unit->empty() || (unit == &n.member() && n.member() == n.unit())) continue;
    auto found = by_unit.find(*unit);
    if (found != by_unit.end()) of_unit.insert(of_unit.end(), found->second.begin(), found->second.end());
  }
  std::sort(of_unit.begin(), of_unit.end());
  std::vector<v1::Webhook> out;
  for (size_t i : of_unit) {
    const v1::Webhook& h = hooks[i];
    bool role = h.role().empty() || h.role() == n.role();
    bool kind = h.kinds().empty() || std::find(h.kinds().begin(), h.kinds().end(), n.kind()) != h.kinds().end();
    if (role && kind) out.push_back(h);
  }
  return out;
}

namespace {
void BumpWebhooksVersion(RedisBatch& batch) { batch.Write({"HINCRBY", keys::kHooksMeta, "version", "1"}); }
}  // namespace

void Store::PutWebhook(RedisBatch& batch, const v1::Webhook& hook) {
  batch.Write({"HSET", keys::kHooks, hook.id(), hook.SerializeAsString()});
  BumpWebhooksVersion(batch);
}

void Store::RemoveWebhook(RedisBatch& batch, const std::string& id) {
  batch.Write({"HDEL", keys::kHooks, id});
  BumpWebhooksVersion(batch);
}

std::optional<v1::Webhook> Store::Webhook(const std::string& id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HGET", keys::kHooks, id});
  ThrowIfError(r.get());
  return ReplyMessage<v1::Webhook>(r.get());
}

std::optional<v1::Notification> Store::Item(const std::string& id) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"GET", keys::Item(id)});
  ThrowIfError(r.get());
  return ReplyMessage<v1::Notification>(r.get());
}

std::optional<v1::Delivery> Store::Delivery(const std::string& id, int64_t* attempt) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"HMGET", keys::Delivery(id), "pb", "attempt"});
  ThrowIfError(r.get());
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return std::nullopt;
  if (attempt) *attempt = ReplyInteger(r->element[1]);
  return ReplyMessage<v1::Delivery>(r->element[0]);
}

std::vector<Claimed> Store::ClaimDeliveries(int64_t now_ms, int64_t lease_ms, int limit) {
  return ClaimDue(*pool_, keys::kDue, now_ms, lease_ms, limit, "sf:n:delivery:");
}

std::vector<std::string> Store::ClaimTimers(int64_t now_ms, int64_t lease_ms, int limit) {
  std::vector<std::string> out;
  for (auto& item : ClaimDue(*pool_, keys::kTimers, now_ms, lease_ms, limit)) out.push_back(std::move(item.id));
  return out;
}

namespace {
// Which of `entries` the user has not read: SMISMEMBER, one 0 or 1 each.
std::vector<std::string> UnreadAmong(const std::string& user, const std::vector<Ranked>& entries) {
  std::vector<std::string> command{"SMISMEMBER", keys::Unread(user)};
  for (const auto& e : entries) command.push_back(e.id);
  return command;
}
bool IsUnread(const redisReply* flags, size_t i) {
  return flags && flags->type == REDIS_REPLY_ARRAY && i < flags->elements && flags->element[i]->integer == 1;
}

// Up to `limit` + 1 of a user's inbox entries after `after`, newest first:
// the one beyond the page says whether there is a next. Unread only: the
// inbox a page at a time against the unread set (every unread id is in
// the inbox), so a user with thousands unread costs a page, not a read of
// every unread notification.
std::vector<Ranked> PageOfInbox(RedisConnection& conn, const std::string& user, size_t limit, bool unread_only,
                                std::optional<Ranked> after) {
  if (!unread_only) return NewestAfter(conn, keys::Inbox(user), after, limit + 1);
  const size_t page = std::max<size_t>(limit * 4, 64);
  std::vector<Ranked> out;
  while (out.size() <= limit) {
    auto entries = NewestAfter(conn, keys::Inbox(user), after, page);
    if (entries.empty()) break;
    Reply flags = conn.Command(UnreadAmong(user, entries));
    ThrowIfError(flags.get());
    for (size_t i = 0; i < entries.size() && out.size() <= limit; ++i)
      if (IsUnread(flags.get(), i)) out.push_back(entries[i]);
    if (entries.size() < page) break;
    after = entries.back();
  }
  return out;
}
}  // namespace

Store::InboxPage Store::InboxOf(const std::string& user, size_t limit, bool unread_only,
                                const std::optional<Ranked>& after) {
  auto conn = pool_->Acquire();
  auto entries = PageOfInbox(*conn, user, limit, unread_only, after);
  InboxPage out;
  if (entries.size() > limit) {
    entries.resize(limit);
    out.last = entries.back();
  }
  if (entries.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& e : entries) cmds.push_back({"GET", keys::Item(e.id)});
  cmds.push_back(UnreadAmong(user, entries));
  auto replies = conn->Pipeline(cmds);
  const redisReply* flags = replies.back().get();
  for (size_t i = 0; i < entries.size(); ++i) {
    auto n = ReplyMessage<v1::Notification>(replies[i].get());
    if (!n) continue;  // expired; the sweep forgets its id
    n->set_read(!IsUnread(flags, i));
    out.notifications.push_back(std::move(*n));
  }
  return out;
}

size_t Store::UnreadCount(const std::string& user) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"SCARD", keys::Unread(user)});
  ThrowIfError(r.get());
  return static_cast<size_t>(ReplyInteger(r.get()));
}

size_t Store::MarkRead(const std::string& user, const std::vector<std::string>& ids) {
  auto conn = pool_->Acquire();
  Reply r = ids.empty() ? conn->Command({"UNLINK", keys::Unread(user)}) : [&] {
    std::vector<std::string> cmd{"SREM", keys::Unread(user)};
    cmd.insert(cmd.end(), ids.begin(), ids.end());
    return conn->Command(cmd);
  }();
  ThrowIfError(r.get());
  return static_cast<size_t>(ReplyInteger(r.get()));
}

namespace {
// The deliveries of `ids` still kept, in one round trip.
std::vector<v1::Delivery> DeliveriesIn(RedisPool* pool, const std::vector<std::string>& ids) {
  std::vector<v1::Delivery> out;
  if (ids.empty()) return out;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& id : ids) cmds.push_back({"HGET", keys::Delivery(id), "pb"});
  auto conn = pool->Acquire();
  for (auto& reply : conn->Pipeline(cmds))
    if (auto d = ReplyMessage<v1::Delivery>(reply.get())) out.push_back(std::move(*d));
  return out;
}
}  // namespace

Page<v1::Delivery> Store::DeliveriesFor(const std::string& target, bool dead_only, size_t limit,
                                        const std::string& page_token) {
  PageSources<v1::Delivery> from{pool_, Order::kNewestFirst, [this](const auto& ids) { return DeliveriesIn(pool_, ids); }};
  from.zsets.push_back(dead_only ? keys::DeadOf(target) : keys::DeliveriesOf(target));
  return PageAcross<v1::Delivery>(from, page_token, limit, [](const v1::Delivery&) { return true; });
}

size_t Store::IndexDeadLetters(int64_t recent_ms) {
  return IndexSinceMarker(*pool_, keys::kDead, keys::kDeadIndexed, recent_ms, [this](const std::vector<Ranked>& dead) {
    std::vector<std::string> ids;
    for (const auto& d : dead) ids.push_back(d.id);
    std::map<std::string, std::string> target_of;
    for (const auto& d : DeliveriesIn(pool_, ids)) target_of[d.id()] = d.target();
    std::vector<std::vector<std::string>> adds;
    for (const auto& d : dead) {
      auto target = target_of.find(d.id);
      if (target == target_of.end()) continue;  // expired: nothing left to list
      adds.push_back({"ZADD", keys::DeadOf(target->second), std::to_string(d.score), d.id});
    }
    if (adds.empty()) return size_t{0};
    auto conn = pool_->Acquire();
    for (auto& reply : conn->Pipeline(adds)) ThrowIfError(reply.get());
    return adds.size();
  });
}

namespace {
bool StartsWith(const std::string& s, std::string_view prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
// An inbox names at most this many expired ids per look; the rest go on
// the next pass.
constexpr int kForgetPerInbox = 10000;
}  // namespace

Store::SweptPage Store::ForgetExpired(const std::string& cursor, int64_t cutoff_ms, int page_size) {
  auto conn = pool_->Acquire();
  Reply page = conn->Command({"SCAN", cursor, "MATCH", "sf:n:*", "TYPE", "zset", "COUNT", std::to_string(page_size)});
  ThrowIfError(page.get());
  if (page->type != REDIS_REPLY_ARRAY || page->elements != 2) throw std::runtime_error("SCAN: unexpected reply");
  SweptPage out;
  out.next_cursor = ReplyString(page->element[0]).value_or("0");
  const std::string before = "(" + std::to_string(cutoff_ms);
  // Delivery lists are trimmed by score at once. An inbox's expired ids are
  // read first: the same ids leave the user's unread set, which has no
  // scores.
  std::vector<std::string> inboxes;
  std::vector<std::vector<std::string>> looks;
  for (auto& key : ReplyStrings(page->element[1])) {
    if (StartsWith(key, keys::kInboxPrefix)) {
      looks.push_back({"ZRANGE", key, "-inf", before, "BYSCORE", "LIMIT", "0", std::to_string(kForgetPerInbox)});
      inboxes.push_back(std::move(key));
    } else if (StartsWith(key, keys::kDeliveriesPrefix) || StartsWith(key, keys::kDeadOfPrefix) || key == keys::kDead) {
      looks.push_back({"ZREMRANGEBYSCORE", key, "-inf", before});
    }
  }
  out.lists = looks.size();
  if (looks.empty()) return out;
  std::vector<std::vector<std::string>> forgets;
  size_t next_inbox = 0;
  for (auto& reply : conn->Pipeline(looks)) {
    ThrowIfError(reply.get());
    if (reply->type == REDIS_REPLY_INTEGER) {
      out.forgotten += static_cast<size_t>(reply->integer);
      continue;
    }
    const std::string& inbox = inboxes[next_inbox++];
    auto ids = ReplyStrings(reply.get());
    if (ids.empty()) continue;
    // Unread first: a sweep cut short leaves the ids in the inbox, where
    // the next one finds them again.
    std::vector<std::string> srem{"SREM", keys::Unread(inbox.substr(keys::kInboxPrefix.size()))};
    std::vector<std::string> zrem{"ZREM", inbox};
    srem.insert(srem.end(), ids.begin(), ids.end());
    zrem.insert(zrem.end(), ids.begin(), ids.end());
    forgets.push_back(std::move(srem));
    forgets.push_back(std::move(zrem));
    out.forgotten += ids.size();
  }
  if (!forgets.empty())
    for (auto& reply : conn->Pipeline(forgets)) ThrowIfError(reply.get());
  return out;
}

bool Store::TakeSweep(const std::string& replica, int64_t interval_ms) {
  auto conn = pool_->Acquire();
  Reply r = conn->Command({"SET", keys::kSweep, replica, "NX", "PX", std::to_string(interval_ms)});
  ThrowIfError(r.get());
  return r->type == REDIS_REPLY_STATUS;  // nil: another replica has this interval
}

}  // namespace sopflow::notifier

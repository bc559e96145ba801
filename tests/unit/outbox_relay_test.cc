// The relay reads an event's CloudEvents attributes without parsing its
// payload: it must find what a full parse finds, whatever else the event holds.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "outbox_relay.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow {
namespace {

using google::protobuf::util::TimeUtil;

v1::Event CompletedEvent() {
  v1::Event e;
  e.set_id("R1.4/completed");
  e.set_type("sopflow.v1.task.completed");
  e.set_source("sopflow/router/router-0");
  *e.mutable_time() = TimeUtil::MillisecondsToTimestamp(1795161845123);
  e.set_subject("R1.4");
  e.set_run_id("R1");
  e.set_period("2026-Q3");
  auto* task = e.mutable_task_completed()->mutable_task();
  task->set_id("R1.4");
  task->mutable_output()->set_note(std::string(2000, 'x'));
  return e;
}

TEST(OutboxRelay, CloudEventAttributesAreReadWithoutParsingThePayload) {
  v1::Event e = CompletedEvent();
  CloudEventAttributes a;
  ASSERT_TRUE(ReadCloudEventAttributes(e.SerializeAsString(), &a));
  EXPECT_EQ(a.source, "sopflow/router/router-0");
  EXPECT_EQ(a.subject, "R1.4");
  EXPECT_EQ(a.time_ms, 1795161845123);

  // Before 1970, no subject; a message in two parts (fields appended).
  v1::Event early;
  *early.mutable_time() = TimeUtil::MillisecondsToTimestamp(-1500);
  early.set_source("s");
  ASSERT_TRUE(ReadCloudEventAttributes(early.SerializeAsString(), &a));
  EXPECT_EQ(a.time_ms, TimeUtil::TimestampToMilliseconds(early.time()));
  EXPECT_EQ(a.subject, "");
  v1::Event subject_only;
  subject_only.set_subject("S");
  v1::Event source_only;
  source_only.set_source("src");
  ASSERT_TRUE(ReadCloudEventAttributes(subject_only.SerializeAsString() + source_only.SerializeAsString(), &a));
  EXPECT_EQ(a.subject, "S");
  EXPECT_EQ(a.source, "src");

  // Not a message: nothing is taken from it.
  std::string bytes = e.SerializeAsString();
  ASSERT_FALSE(ReadCloudEventAttributes(bytes.substr(0, bytes.size() - 10), &a));
  EXPECT_EQ(a.source, "");
  EXPECT_EQ(a.time_ms, 0);
  EXPECT_FALSE(ReadCloudEventAttributes(std::string("\xff\xff\xff", 3), &a));
  EXPECT_TRUE(ReadCloudEventAttributes("", &a));  // the empty message
}

}  // namespace
}  // namespace sopflow

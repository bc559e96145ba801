// What a router remembers of the records it wrote (RecentRecords): open
// tasks and ACTIVE runs as written, finished ones dropped, bounded.
#include "recent_records.h"

#include <gtest/gtest.h>

#include "store.h"

namespace sopflow {
namespace {

v1::Task OpenTask(const std::string& id) {
  v1::Task t;
  t.set_id(id);
  t.set_run_id("run");
  t.set_status(v1::Task::OPEN);
  return t;
}

v1::Run RunWith(const std::string& id, v1::Run::Status status) {
  v1::Run r;
  r.set_id(id);
  r.set_status(status);
  return r;
}

TEST(RecentRecordsTest, KeepsOpenTasksAndActiveRunsAsWrittenAndDropsFinishedOnes) {
  RecentRecords recent(8, 8);
  Batch created;
  v1::Task task = OpenTask("run.1");
  created.PutTask(task);
  v1::Run run = RunWith("run", v1::Run::ACTIVE);
  created.PutRun(run);
  recent.Remember(created);
  ASSERT_TRUE(recent.Task("run.1"));
  EXPECT_EQ(recent.Task("run.1")->revision(), 1u) << "as written: PutTask bumped it";
  ASSERT_TRUE(recent.Run("run"));
  EXPECT_EQ(recent.Run("run")->status(), v1::Run::ACTIVE);

  Batch claimed;
  task.set_status(v1::Task::CLAIMED);
  claimed.PutTask(task);
  recent.Remember(claimed);
  EXPECT_EQ(recent.Task("run.1")->status(), v1::Task::CLAIMED);
  EXPECT_EQ(recent.Task("run.1")->revision(), 2u);

  Batch finished;
  task.set_status(v1::Task::DONE);
  finished.PutTask(task);
  run.set_status(v1::Run::COMPLETED);
  finished.PutRun(run);
  recent.Remember(finished);
  EXPECT_FALSE(recent.Task("run.1"));
  EXPECT_FALSE(recent.Run("run"));

  // A run read from Redis is kept only while ACTIVE; a task taken is gone.
  recent.RememberRun(std::make_shared<const v1::Run>(RunWith("read", v1::Run::ACTIVE)));
  recent.RememberRun(std::make_shared<const v1::Run>(RunWith("ended", v1::Run::CANCELLED)));
  EXPECT_TRUE(recent.Run("read"));
  EXPECT_FALSE(recent.Run("ended"));
  Batch again;
  v1::Task other = OpenTask("run.2");
  again.PutTask(other);
  recent.Remember(again);
  ASSERT_TRUE(recent.TakeTask("run.2"));
  EXPECT_FALSE(recent.Task("run.2"));
  EXPECT_FALSE(recent.TakeTask("run.2"));
}

TEST(RecentRecordsTest, TheOldestRememberedGoFirstAndRewritingOneMakesItNew) {
  RecentRecords recent(3, 3);
  auto remember = [&](const std::string& id) {
    Batch b;
    v1::Task t = OpenTask(id);
    b.PutTask(t);
    recent.Remember(b);
  };
  remember("a");
  remember("b");
  remember("c");
  remember("a");  // rewritten: now the newest
  remember("d");  // evicts b, the oldest; a's first insertion is a dead entry
  EXPECT_TRUE(recent.Task("a"));
  EXPECT_FALSE(recent.Task("b"));
  EXPECT_TRUE(recent.Task("c"));
  EXPECT_TRUE(recent.Task("d"));
  // Many rewrites of one task keep the bookkeeping bounded and the others in.
  for (int i = 0; i < 100; ++i) remember("d");
  EXPECT_TRUE(recent.Task("a"));
  EXPECT_TRUE(recent.Task("c"));
  EXPECT_TRUE(recent.Task("d"));
  remember("e");
  EXPECT_FALSE(recent.Task("c")) << "the oldest live entry goes (c: a was rewritten after it)";
  EXPECT_TRUE(recent.Task("a"));
  EXPECT_TRUE(recent.Task("e"));

  RecentRecords none(0, 0);
  Batch b;
  v1::Task t = OpenTask("x");
  b.PutTask(t);
  b.PutRun(RunWith("run", v1::Run::ACTIVE));
  none.Remember(b);
  EXPECT_FALSE(none.Task("x"));
  EXPECT_FALSE(none.Run("run"));
}

}  // namespace
}  // namespace sopflow

#include "flow.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "definition.h"
#include "error.h"
#include "users.h"

namespace sopflow {
namespace {

using google::protobuf::util::TimeUtil;

v1::Definition Seed(const std::string& name) {
  std::ifstream in(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/definitions/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  auto d = ParseDefinitionOrThrow(ss.str(), name);
  d.set_version(1);
  return d;
}

const TimePoint kNow = FromUnixMillis(1782871200000);  // 2026-07-01T02:00:00Z

TEST(Flow, RoutesReviewsAndSequences) {
  auto d = Seed("001-kalbar-biro-organisasi.yaml");
  EXPECT_EQ(flow::NextAfter(d, 1, "selesai").step, 2u);
  EXPECT_EQ(flow::NextAfter(d, 6, "perbaikan").step, 5u);
  EXPECT_EQ(flow::NextAfter(d, 6, "sesuai").step, 7u);
  EXPECT_EQ(flow::NextAfter(d, 7, "perbaikan").step, 6u);
  EXPECT_TRUE(flow::NextAfter(d, 10, "selesai").ends_run);
}

TEST(Flow, OutcomesAreChecked) {
  auto d = Seed("001-kalbar-biro-organisasi.yaml");
  EXPECT_EQ(flow::CheckOutcome(flow::StepOf(d, 1), ""), "selesai");
  EXPECT_EQ(flow::CheckOutcome(flow::StepOf(d, 6), "sesuai"), "sesuai");
  try {
    flow::CheckOutcome(flow::StepOf(d, 6), "");
    FAIL();
  } catch (const DomainError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(e.field(), "outcome");
    EXPECT_NE(std::string(e.what()).find("sesuai, perbaikan"), std::string::npos);
  }
  EXPECT_THROW(flow::CheckOutcome(flow::StepOf(d, 1), "sesuai"), DomainError);
  EXPECT_EQ(flow::RevisionOutcome(flow::StepOf(d, 7)), "perbaikan");
  EXPECT_THROW(flow::RevisionOutcome(flow::StepOf(d, 5)), DomainError);
}

v1::Run RunOf(const v1::Definition& d) {
  v1::Run run;
  run.set_id("R1");
  run.set_unit("kalbar-biro-organisasi");
  run.set_period("2026-Q3");
  auto& members = (*run.mutable_members())["bagian"];
  for (const char* m : {"bagian-tatalaksana", "bagian-kelembagaan", "bagian-reformasi-birokrasi"}) members.add_members(m);
  (*run.mutable_deadlines())[2] = TimeUtil::MillisecondsToTimestamp(UnixMillis(kNow) + 3 * 86400000LL);
  return run;
}

TEST(Flow, FanOutMakesOneTaskPerMemberWithTheRunDeadline) {
  auto d = Seed("001-kalbar-biro-organisasi.yaml");
  auto tasks = flow::PlanTasks(d, RunOf(d), 2, 2, kNow, *WorkCalendar::Default());
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].id(), "R1.2.1");
  EXPECT_EQ(tasks[2].member(), "bagian-reformasi-birokrasi");
  EXPECT_EQ(TimeUtil::TimestampToMilliseconds(tasks[1].due_at()), UnixMillis(kNow) + 3 * 86400000LL);
  auto one = flow::PlanTasks(d, RunOf(d), 5, 5, kNow, *WorkCalendar::Default());
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].id(), "R1.5");
  EXPECT_EQ(one[0].pelaksana(), "kasubbag_tu");
  EXPECT_EQ(TimeUtil::TimestampToMilliseconds(one[0].due_at()), UnixMillis(kNow) + 120 * 60000LL);
}

TEST(Flow, WhoMayAct) {
  auto d = Seed("001-kalbar-biro-organisasi.yaml");
  auto fan = flow::PlanTasks(d, RunOf(d), 2, 2, kNow, *WorkCalendar::Default());
  auto plain = flow::PlanTasks(d, RunOf(d), 5, 5, kNow, *WorkCalendar::Default())[0];
  User kasubbag{.id = "k", .unit = "kalbar-biro-organisasi", .roles = {"kasubbag_tu"}};
  User outsider{.id = "o", .unit = "dinas-lain", .roles = {"kasubbag_tu", "bagian"}};
  User bagian_tl{.id = "b", .unit = "bagian-tatalaksana", .roles = {"bagian"}};
  User admin{.id = "a", .unit = "sopflow", .admin = true};
  EXPECT_TRUE(flow::MayActOn(kasubbag, plain));
  EXPECT_FALSE(flow::MayActOn(outsider, plain));  // right role, wrong unit
  EXPECT_FALSE(flow::MayActOn(admin, plain));     // admins do not take others' tasks
  EXPECT_TRUE(flow::MayActOn(bagian_tl, fan[0]));
  EXPECT_FALSE(flow::MayActOn(bagian_tl, fan[1]));  // another Bagian's member task
  EXPECT_FALSE(flow::MayActOn(outsider, fan[0]));
  EXPECT_TRUE(flow::MayRead(bagian_tl, RunOf(d)));
  EXPECT_FALSE(flow::MayRead(outsider, RunOf(d)));
  // What ListRuns indexes a run under: the names MayRead admits.
  const auto readers = flow::ReadersOf(RunOf(d));
  EXPECT_EQ(readers, (std::vector<std::string>{"bagian-kelembagaan", "bagian-reformasi-birokrasi", "bagian-tatalaksana",
                                                "kalbar-biro-organisasi"}));
  for (const auto& name : readers) {
    User of_unit{.id = "u", .unit = name, .roles = {}};
    User named{.id = name, .unit = "dinas-lain", .roles = {}};
    EXPECT_TRUE(flow::MayRead(of_unit, RunOf(d))) << name;
    if (name != RunOf(d).unit()) {  // a member may be a user
      EXPECT_TRUE(flow::MayRead(named, RunOf(d))) << name;
    }
  }
  User karo{.id = "r", .unit = "kalbar-biro-organisasi", .roles = {"karo_organisasi"}};
  EXPECT_TRUE(flow::MayStart(karo, d, "kalbar-biro-organisasi"));
  EXPECT_FALSE(flow::MayStart(karo, d, "dinas-lain"));
  EXPECT_FALSE(flow::MayStart(kasubbag, d, "kalbar-biro-organisasi"));
}

v1::StartRunRequest GoodStart() {
  v1::StartRunRequest req;
  req.set_sop_id("kalbar-biro-organisasi-data-kinerja");
  req.set_period("2026-Q3");
  req.set_unit("kalbar-biro-organisasi");
  (*req.mutable_members())["bagian"].add_members("bagian-tatalaksana");
  (*req.mutable_deadlines())[2] = TimeUtil::MillisecondsToTimestamp(UnixMillis(kNow) + 86400000LL);
  return req;
}

std::string FieldOfError(const v1::Definition& d, const v1::StartRunRequest& req) {
  try {
    flow::CheckStartRequest(d, req, kNow);
  } catch (const DomainError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.field();
  }
  return "";
}

TEST(Flow, StartRequestsAreChecked) {
  auto d = Seed("001-kalbar-biro-organisasi.yaml");
  EXPECT_EQ(FieldOfError(d, GoodStart()), "");
  auto r = GoodStart();
  r.clear_period();
  EXPECT_EQ(FieldOfError(d, r), "period");
  r = GoodStart();
  r.clear_unit();
  EXPECT_EQ(FieldOfError(d, r), "unit");
  r = GoodStart();
  r.mutable_members()->clear();
  EXPECT_EQ(FieldOfError(d, r), "members[bagian]");
  r = GoodStart();
  (*r.mutable_members())["bagian"].add_members("bagian-tatalaksana");
  EXPECT_EQ(FieldOfError(d, r), "members[bagian]");
  r = GoodStart();
  (*r.mutable_members())["seksi"].add_members("x");
  EXPECT_EQ(FieldOfError(d, r), "members[seksi]");
  r = GoodStart();
  r.mutable_deadlines()->clear();
  EXPECT_EQ(FieldOfError(d, r), "deadlines[2]");
  r = GoodStart();
  (*r.mutable_deadlines())[2] = TimeUtil::MillisecondsToTimestamp(UnixMillis(kNow) - 1000);
  EXPECT_EQ(FieldOfError(d, r), "deadlines[2]");
  r = GoodStart();
  (*r.mutable_deadlines())[5] = TimeUtil::MillisecondsToTimestamp(UnixMillis(kNow) + 1000);
  EXPECT_EQ(FieldOfError(d, r), "deadlines[5]");
}

TEST(Flow, SupervisorsDefaultToTheNextReviewerThenTheFirstActor) {
  auto d001 = Seed("001-kalbar-biro-organisasi.yaml");
  EXPECT_EQ(flow::SupervisorOf(d001, 3), "kabag_tatalaksana");  // the step 6 review
  EXPECT_EQ(flow::SupervisorOf(d001, 6), "karo_organisasi");    // the step 7 review
  EXPECT_EQ(flow::SupervisorOf(d001, 8), "karo_organisasi");    // no review after: the first actor
  EXPECT_EQ(flow::SupervisorOf(d001, 1), "kabag_tatalaksana");
  auto d003 = Seed("003-balangan-satpol-pp.yaml");
  EXPECT_EQ(flow::SupervisorOf(d003, 4), "sekretaris");
  EXPECT_EQ(flow::SupervisorOf(d003, 1), "");  // the one who orders has nobody above in the SOP
  auto tasks = flow::PlanTasks(d001, RunOf(d001), 5, 5, kNow, *WorkCalendar::Default());
  EXPECT_EQ(tasks[0].supervisor(), "kabag_tatalaksana");
}

TEST(Flow, CompletionEntryMeasuresAgainstWaktu) {
  auto d = Seed("001-kalbar-biro-organisasi.yaml");
  auto task = flow::PlanTasks(d, RunOf(d), 1, 1, kNow, *WorkCalendar::Default())[0];  // 20 menit
  auto on_time = flow::CompletionEntry(task, "rita", "selesai", false, "", kNow + std::chrono::minutes(15));
  EXPECT_EQ(on_time.elapsed_seconds(), 900);
  EXPECT_EQ(on_time.standard_seconds(), 1200);
  EXPECT_TRUE(on_time.within_standard());
  auto late = flow::CompletionEntry(task, "rita", "selesai", false, "", kNow + std::chrono::minutes(25));
  EXPECT_FALSE(late.within_standard());
}

TEST(Users, TokenFileLoadsAndRejectsBadEntries) {
  auto dir = UserDirectory::LoadFile(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/overlays/dev/tokens.yaml");
  auto karo = dir->FindByToken("demo-karo");
  ASSERT_TRUE(karo);
  EXPECT_EQ(karo->id, "rita");
  EXPECT_TRUE(karo->HasRole("karo_organisasi"));
  EXPECT_FALSE(dir->FindByToken("demo-karo "));
  EXPECT_TRUE(dir->FindById("esakip-worker")->MayWorkJob("esakip.input"));
  EXPECT_THROW(UserDirectory::LoadText("users:\n  - {id: a}\n", "t.yaml"), std::runtime_error);
  EXPECT_THROW(UserDirectory::LoadText("users:\n  - {id: a, token: x}\n  - {id: b, token: x}\n", "t.yaml"),
               std::runtime_error);
  try {
    UserDirectory::LoadText("users:\n  - {id: a, token: x}\n  - {name: b, token: y}\n", "t.yaml");
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("t.yaml:3"), std::string::npos) << e.what();
  }
}

TEST(Users, ServiceAccountsAreCheckedForTheirPermission) {
  auto dir = UserDirectory::LoadText(
      "users:\n"
      "  - {id: svc, token: s, permissions: [read_runs]}\n"
      "  - {id: boss, token: b, admin: true}\n"
      "  - {id: clerk, token: c}\n",
      "t.yaml");
  const ServiceAccount account{"archiver", "--service-token", "read_runs", "the router's GetRun asks"};
  EXPECT_EQ(RequireServiceAccount(*dir, "t.yaml", "s", account).id, "svc");
  EXPECT_EQ(RequireServiceAccount(*dir, "t.yaml", "b", account).id, "boss");
  auto refusal = [&](const std::string& token) -> std::string {
    try {
      RequireServiceAccount(*dir, "t.yaml", token, account);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(refusal("x"), "archiver: --service-token is no user's token in t.yaml");
  EXPECT_EQ(refusal(""), "archiver: --service-token is no user's token in t.yaml");
  EXPECT_EQ(refusal("c"),
            "archiver: --service-token is user 'clerk', who lacks the read_runs permission the router's GetRun asks");
}

}  // namespace
}  // namespace sopflow

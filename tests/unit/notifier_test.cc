#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "../../services/notifier/store.h"
#include "compose.h"
#include "declared_webhooks.h"
#include "error.h"
#include "delivery.h"

namespace sopflow::notifier {
namespace {

using google::protobuf::util::TimeUtil;

TimePoint At(const char* text) {
  TimePoint t;
  EXPECT_TRUE(ParseRfc3339(text, &t)) << text;
  return t;
}

std::shared_ptr<const UserDirectory> Users() {
  return UserDirectory::LoadFile(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/overlays/dev/tokens.yaml");
}

std::shared_ptr<const Composer> MakeComposer() {
  return std::make_shared<Composer>(
      Users(), Templates::Load(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/notifier/templates"),
      WorkCalendar::LoadFile(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/calendar/calendar.yaml"));
}

v1::Task StaffTask() {
  v1::Task t;
  t.set_id("R1.4");
  t.set_run_id("R1");
  t.set_sop_id("balangan-satpolpp-data-kinerja");
  t.set_sop_nama("Pengumpulan Data Kinerja");
  t.set_step(4);
  t.set_pelaksana("staf_evaluasi");
  t.set_unit("balangan-satpolpp");
  t.set_period("2026-Q3");
  t.set_aktivitas("Menyusun laporan kinerja triwulan");
  t.add_kelengkapan("Perjanjian Kinerja");
  t.set_output_name("Draft Laporan Kinerja");
  t.mutable_waktu()->set_text("30 menit");
  t.set_supervisor("sekretaris");
  t.set_status(v1::Task::OPEN);
  *t.mutable_created_at() = TimeUtil::MillisecondsToTimestamp(UnixMillis(At("2026-08-14T09:00:00+08:00")));
  *t.mutable_due_at() = TimeUtil::MillisecondsToTimestamp(UnixMillis(At("2026-08-14T09:30:00+08:00")));
  return t;
}

TEST(Delivery, HmacMatchesRfc4231) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Delivery, BackoffGrowsWithJitterAndIsCapped) {
  EXPECT_EQ(BackoffMs(1, 1000, 300000, 0.0), 500);
  EXPECT_EQ(BackoffMs(1, 1000, 300000, 0.999999), 999);
  EXPECT_EQ(BackoffMs(4, 1000, 300000, 0.0), 4000);
  EXPECT_GE(BackoffMs(4, 1000, 300000, 0.5), 4000);
  EXPECT_LT(BackoffMs(4, 1000, 300000, 0.5), 8000);
  EXPECT_EQ(BackoffMs(40, 1000, 300000, 0.0), 150000);
  EXPECT_LE(BackoffMs(40, 1000, 300000, 0.999), 300000);
}

TEST(Compose, AudienceIsTheRoleInTheUnitOrTheMember) {
  auto users = Users();
  auto staff = Audience(*users, "staf_evaluasi", "balangan-satpolpp", "");
  ASSERT_EQ(staff.size(), 1u);
  EXPECT_EQ(staff[0]->id, "staf-blg");
  EXPECT_TRUE(Audience(*users, "kasubbag_tu", "balangan-satpolpp", "").empty());
  auto bagian = Audience(*users, "bagian", "kalbar-biro-organisasi", "bagian-kelembagaan");
  ASSERT_EQ(bagian.size(), 1u);
  EXPECT_EQ(bagian[0]->id, "bagian-kl");
  auto fungsional = Audience(*users, "fungsional", "gowa-perencanaan", "fungsional-2");
  ASSERT_EQ(fungsional.size(), 1u);
  EXPECT_EQ(fungsional[0]->id, "fungsional-2");
}

// Audience looks the role up in an index instead of reading the whole
// directory for each notification; it must answer what that reading did,
// in the file's order: roles held twice, a member that names a unit, one
// that names a user, one that names a user whose id is also a unit's name.
TEST(Compose, AudienceFromTheIndexIsWhatReadingEveryUserFinds) {
  std::string yaml = "users:\n";
  for (int i = 0; i < 300; ++i)
    yaml += "  - {id: u" + std::to_string(i) + ", unit: unit-" + std::to_string(i % 7) + ", roles: [r" +
            std::to_string(i % 3) + ", r" + std::to_string(i % 5) + "], token: t" + std::to_string(i) + "}\n";
  yaml += "  - {id: unit-3, unit: unit-4, roles: [r1], token: tx}\n";
  auto dir = UserDirectory::LoadText(yaml, "generated.yaml");
  auto read_all = [&](const std::string& role, const std::string& unit, const std::string& member) {
    std::vector<std::string> ids;
    for (const auto& u : dir->users()) {
      bool match = member.empty() ? u.unit == unit : (u.id == member || u.unit == member);
      if (u.HasRole(role) && match) ids.push_back(u.id);
    }
    return ids;
  };
  size_t compared = 0, found = 0;
  for (const std::string role : {"r0", "r1", "r2", "r3", "r4", "r9"})
    for (const std::string unit : {"unit-0", "unit-3", "unit-6", "unit-9"})
      for (const std::string member : {"", "unit-3", "u10", "u11", "unit-9", "nobody"}) {
        std::vector<std::string> ids;
        for (const User* u : Audience(*dir, role, unit, member)) ids.push_back(u->id);
        EXPECT_EQ(ids, read_all(role, unit, member)) << role << " " << unit << " '" << member << "'";
        ++compared;
        found += ids.size();
      }
  EXPECT_EQ(compared, 144u);
  EXPECT_GT(found, 500u);  // the cases are not all empty (559 users found in all)
}

// A notification goes to the webhooks of its unit or member, of its role
// or every role, of its kind or every kind: looked up by unit, it must
// match what weighing every hook of the set did, in the set's order.
TEST(Webhooks, ANotificationGoesToTheHooksOfItsUnitRoleAndKind) {
  std::vector<v1::Webhook> hooks;
  for (int i = 0; i < 120; ++i) {
    v1::Webhook h;
    h.set_id("wh-" + std::to_string(i));
    h.set_unit("unit-" + std::to_string(i % 6));
    if (i % 4 == 1) h.set_role("staf");
    if (i % 4 == 2) h.set_role("kabid");
    if (i % 5 == 3) h.add_kinds(v1::Notification::TASK_OVERDUE);
    hooks.push_back(h);
  }
  auto set = notifier::Store::WebhookSet::Of("7", hooks);
  auto weigh_all = [&](const v1::Notification& n) {
    std::vector<std::string> ids;
    for (const auto& h : hooks) {
      bool unit = h.unit() == n.unit() || (!n.member().empty() && h.unit() == n.member());
      bool role = h.role().empty() || h.role() == n.role();
      bool kind = h.kinds().empty() || std::find(h.kinds().begin(), h.kinds().end(), n.kind()) != h.kinds().end();
      if (unit && role && kind) ids.push_back(h.id());
    }
    return ids;
  };
  size_t cases = 0, sent = 0;
  for (const std::string unit : {"unit-0", "unit-4", "unit-9"})
    for (const std::string member : {"", "unit-2", "unit-4", "someone"})
      for (const std::string role : {"staf", "kabid", "other"})
        for (auto kind : {v1::Notification::TASK_ASSIGNED, v1::Notification::TASK_OVERDUE}) {
          v1::Notification n;
          n.set_unit(unit);
          n.set_member(member);
          n.set_role(role);
          n.set_kind(kind);
          std::vector<std::string> ids;
          for (const auto& h : set.For(n)) ids.push_back(h.id());
          EXPECT_EQ(ids, weigh_all(n)) << unit << " '" << member << "' " << role << " " << kind;
          ++cases;
          sent += ids.size();
        }
  EXPECT_EQ(cases, 72u);
  EXPECT_GT(sent, 300u);  // the cases are not all empty
}

TEST(Compose, TimersAtTheShareOfTheTimeAndFaster) {
  auto timers = TimersFor(StaffTask(), 0.8, 1);
  ASSERT_TRUE(timers.has_due);
  EXPECT_EQ(timers.reminder, At("2026-08-14T09:24:00+08:00"));
  EXPECT_EQ(timers.due, At("2026-08-14T09:30:00+08:00"));
  auto fast = TimersFor(StaffTask(), 0.8, 60);  // 30 minutes become 30 seconds
  EXPECT_EQ(fast.due, At("2026-08-14T09:00:30+08:00"));
  EXPECT_EQ(fast.reminder, At("2026-08-14T09:00:24+08:00"));
}

TEST(Compose, DatesInTheUnitsZoneAndLanguage) {
  UnitCalendar wita;
  wita.zone = "WITA";
  wita.utc_offset_minutes = 480;
  EXPECT_EQ(FormatLocal(At("2026-08-17T08:00:00Z"), wita, "id"), "Senin, 17 Agustus 2026 16:00 WITA");
  EXPECT_EQ(FormatLocal(At("2026-08-17T08:00:00Z"), wita, "en"), "Monday 17 August 2026 16:00 WITA");
}

TEST(Compose, TaskNotificationsAddressTheRightPeopleInBothLanguages) {
  auto composer = MakeComposer();
  auto task = StaffTask();
  auto assigned = composer->ForTask(v1::Notification::TASK_ASSIGNED, task, "R1.4/created", At("2026-08-14T09:00:00+08:00"));
  EXPECT_EQ(assigned.id(), "R1.4/created/TASK_ASSIGNED");
  ASSERT_EQ(assigned.users_size(), 1);
  EXPECT_EQ(assigned.users(0), "staf-blg");
  EXPECT_NE(assigned.title().find("Tugas baru: langkah 4 Pengumpulan Data Kinerja (2026-Q3)"), std::string::npos)
      << assigned.title();
  EXPECT_NE(assigned.body().find("Tenggat (mutu baku 30 menit): Jumat, 14 Agustus 2026 09:30 WITA"), std::string::npos)
      << assigned.body();
  EXPECT_NE(assigned.body_en().find("Due (time standard 30 menit): Friday 14 August 2026 09:30 WITA"), std::string::npos)
      << assigned.body_en();
  EXPECT_EQ(assigned.body().find("{{"), std::string::npos);
  EXPECT_EQ(assigned.body_en().find("{{"), std::string::npos);

  auto escalated = composer->ForTask(v1::Notification::TASK_ESCALATED, task, "R1.4|due", At("2026-08-14T09:30:00+08:00"),
                                     task.supervisor());
  EXPECT_EQ(escalated.role(), "sekretaris");
  ASSERT_EQ(escalated.users_size(), 1);
  EXPECT_EQ(escalated.users(0), "sekretaris-blg");
  EXPECT_NE(escalated.title().find("Eskalasi"), std::string::npos);

  task.set_status(v1::Task::CLAIMED);
  task.set_assignee("staf-blg");
  auto reminder = composer->ForTask(v1::Notification::TASK_REMINDER, task, "R1.4|reminder", At("2026-08-14T09:24:00+08:00"));
  ASSERT_EQ(reminder.users_size(), 1);
  EXPECT_EQ(reminder.users(0), "staf-blg");

  auto staf = Users()->FindById("staf-blg");
  auto mail = composer->RenderFor(assigned, *staf);  // staf-blg reads English
  EXPECT_EQ(mail.subject.rfind("[sopflow] New task: step 4", 0), 0u) << mail.subject;
  EXPECT_EQ(mail.body.rfind("Dear Staf Penyusun Evaluasi Kinerja,", 0), 0u) << mail.body;
}

TEST(Compose, TemplatesFillEachPlaceholderOnceAndKeepUnknownOnes) {
  auto fill = [](const std::string& text, const Vars& vars) { return Templates::Fill(Templates::Compile(text), vars); };
  Vars vars{{"sop", "SOP {{unit}}"}, {"unit", "balangan"}, {"x", ""}};
  EXPECT_EQ(fill("Yth. {{unit}}, {{sop}} ({{unit}})", vars), "Yth. balangan, SOP {{unit}} (balangan)");
  EXPECT_EQ(fill("{{nama}} di {{unit}}{{x}}.", vars), "{{nama}} di balangan.");  // no var: left as written
  EXPECT_EQ(fill("a {{unit", vars), "a {{unit");                                 // not closed: literal
  EXPECT_EQ(fill("{{a {{unit}} }}", vars), "{{a balangan }}");                    // the innermost is the placeholder
  EXPECT_EQ(fill("{{{unit}}}", vars), "{balangan}");
  EXPECT_EQ(fill("", vars), "");
  EXPECT_EQ(Templates::Compile("a{{unit}}b{{sop}}").size(), 4u);
}

TEST(Compose, WebhookBodyIsACloudEvent) {
  auto composer = MakeComposer();
  auto n = composer->ForTask(v1::Notification::TASK_ASSIGNED, StaffTask(), "R1.4/created", At("2026-08-14T09:00:00+08:00"));
  auto json = nlohmann::json::parse(CloudEventJson(n));
  EXPECT_EQ(json["specversion"], "1.0");
  EXPECT_EQ(json["id"], "R1.4/created/TASK_ASSIGNED");
  EXPECT_EQ(json["type"], "sopflow.v1.notification.task_assigned");
  EXPECT_EQ(json["subject"], "R1.4");
  EXPECT_EQ(json["time"], "2026-08-14T01:00:00.000Z");
  EXPECT_EQ(json["data"]["task_id"], "R1.4");
  EXPECT_EQ(json["data"]["users"][0], "staf-blg");
}

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

TEST(DeclaredWebhooks, SecretsComeFromTheEnvironmentAndKindsByName) {
  auto path = WriteFile("hooks-ok.yaml", R"(webhooks:
  - id: esakip-kalbar
    url: https://esakip.example.go.id/hooks/sopflow
    unit: kalbar-biro-organisasi
    kinds: [TASK_ASSIGNED, TASK_OVERDUE]
    secret_env: HOOK_SECRET
  - {id: dashboard, url: "http://dash:8080/in", unit: balangan-satpolpp, role: kabid, secret_env: HOOK_SECRET}
)");
  auto hooks = LoadDeclaredWebhooks(path, Env({{"HOOK_SECRET", "0123456789abcdef0123"}}));
  ASSERT_EQ(hooks.size(), 2u);
  EXPECT_EQ(hooks[0].id(), "wh-esakip-kalbar");
  EXPECT_EQ(hooks[0].secret(), "0123456789abcdef0123");
  ASSERT_EQ(hooks[0].kinds_size(), 2);
  EXPECT_EQ(hooks[0].kinds(1), v1::Notification::TASK_OVERDUE);
  EXPECT_EQ(hooks[1].role(), "kabid");
  EXPECT_EQ(hooks[1].kinds_size(), 0) << "no kinds: every kind";
}

TEST(DeclaredWebhooks, EveryProblemIsNamedWithItsLineAndNothingIsDeclared) {
  auto path = WriteFile("hooks-bad.yaml", R"(webhooks:
  - id: ok-one
    url: https://a.example/h
    unit: u
    secret_env: HOOK_SECRET
  - id: Bad_Id
    url: ftp://nope
    unit: u
    kinds: [TASK_ASSIGNED, NOT_A_KIND]
    secret_env: MISSING
    colour: red
  - {id: ok-one, url: "https://b.example/h", unit: u, secret_env: SHORT}
)");
  try {
    LoadDeclaredWebhooks(path, Env({{"HOOK_SECRET", "0123456789abcdef0123"}, {"SHORT", "abc"}}));
    FAIL() << "a broken file must be refused";
  } catch (const sopflow::DomainError& e) {
    std::string m = e.what();
    EXPECT_EQ(e.code(), sopflow::ErrorCode::kInvalidArgument);
    EXPECT_NE(m.find(path + ":6: id: required"), std::string::npos) << m;
    EXPECT_NE(m.find(path + ":6: url: required, http:// or https://"), std::string::npos) << m;
    EXPECT_NE(m.find(path + ":9: kinds: unknown kind 'NOT_A_KIND'"), std::string::npos) << m;
    EXPECT_NE(m.find(path + ":10: secret_env: $MISSING must hold a secret"), std::string::npos) << m;
    EXPECT_NE(m.find(path + ":11: colour: unknown field"), std::string::npos) << m;
    EXPECT_NE(m.find(path + ":12: id: declared twice"), std::string::npos) << m;
    EXPECT_NE(m.find(path + ":12: secret_env: $SHORT must hold a secret of at least 16"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace sopflow::notifier

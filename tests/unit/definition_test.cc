#include "definition.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "error.h"

namespace sopflow {
namespace {

std::string ReadSeed(const std::string& name) {
  std::ifstream in(std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/definitions/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A small valid definition that the bad-file tests break one way each.
const char* kGood = R"(id: contoh
nama: Contoh
pelaksana:
  - {id: kasubbag, nama: Kasubbag}
  - {id: kabag, nama: Kabag}
langkah:
  - no: 1
    pelaksana: kasubbag
    aktivitas: Menyusun draft
    waktu: 20 menit
  - no: 2
    jenis: reviu
    pelaksana: kabag
    aktivitas: Menelaah draft
    waktu: 30 menit
    hasil:
      sesuai: 3
      perbaikan: {ke: 1, revisi: true}
  - no: 3
    pelaksana: kasubbag
    aktivitas: Mengarsipkan
    waktu: 5 menit
)";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

// The problems, as "line: field: message" lines.
std::vector<Problem> ProblemsOf(const std::string& yaml) { return ParseDefinition(yaml, "x.yaml").problems; }

bool HasProblem(const std::vector<Problem>& problems, int line, const std::string& field_part,
                const std::string& message_part) {
  for (const auto& p : problems)
    if (p.line == line && p.field.find(field_part) != std::string::npos &&
        p.message.find(message_part) != std::string::npos)
      return true;
  return false;
}

std::string Dump(const std::vector<Problem>& problems) {
  std::string out;
  for (const auto& p : problems) out += p.ToString() + "\n";
  return out;
}

TEST(Definition, Seed001LoadsFaithfully) {
  auto parsed = ParseDefinition(ReadSeed("001-kalbar-biro-organisasi.yaml"), "001.yaml");
  ASSERT_TRUE(parsed.ok()) << Dump(parsed.problems);
  const auto& d = parsed.definition;
  EXPECT_EQ(d.id(), "kalbar-biro-organisasi-data-kinerja");
  EXPECT_EQ(d.nomor(), "065/3/DP-B");
  EXPECT_EQ(d.disahkan_oleh().nip(), "19791208 200003 2 002");
  EXPECT_EQ(d.tanggal_efektif(), "2021-01-04");
  EXPECT_EQ(d.pelaksana_size(), 6);
  ASSERT_EQ(d.steps_size(), 10);
  EXPECT_EQ(d.steps(1).kind(), v1::Step::FAN_OUT);
  EXPECT_EQ(d.steps(1).member_group(), "bagian");
  EXPECT_EQ(d.steps(1).waktu().unit(), v1::Waktu::SET_AT_START);
  EXPECT_EQ(d.steps(4).waktu().unit(), v1::Waktu::MINUTES);
  EXPECT_EQ(d.steps(4).waktu().amount(), 120u);
  EXPECT_EQ(d.steps(4).output(), "Draft Data Kinerja");
  const auto& review6 = d.steps(5);
  EXPECT_EQ(review6.kind(), v1::Step::REVIEW);
  ASSERT_EQ(review6.outcomes_size(), 2);
  EXPECT_EQ(review6.outcomes(0).name(), "sesuai");
  EXPECT_EQ(review6.outcomes(0).next_step(), 7u);
  EXPECT_EQ(review6.outcomes(1).name(), "perbaikan");
  EXPECT_EQ(review6.outcomes(1).next_step(), 5u);
  EXPECT_TRUE(review6.outcomes(1).revision());
  EXPECT_EQ(d.steps(6).outcomes(1).next_step(), 6u);  // Karo sends back to Kabag
  EXPECT_TRUE(d.steps(9).ends_run());
  EXPECT_EQ(d.steps(0).next_step(), 2u);
  EXPECT_EQ(d.steps(0).line(), 46);
  EXPECT_EQ(d.source_sha256().size(), 64u);
}

TEST(Definition, Seed003LoadsFaithfully) {
  auto parsed = ParseDefinition(ReadSeed("003-balangan-satpol-pp.yaml"), "003.yaml");
  ASSERT_TRUE(parsed.ok()) << Dump(parsed.problems);
  const auto& d = parsed.definition;
  ASSERT_EQ(d.steps_size(), 9);
  EXPECT_EQ(d.steps(0).keterangan(), "SOP Surat Masuk");
  EXPECT_EQ(d.steps(2).waktu().amount(), 2u);
  EXPECT_EQ(d.steps(5).waktu().unit(), v1::Waktu::WORKING_DAYS);
  EXPECT_EQ(d.steps(6).waktu().amount(), 120u);
  EXPECT_EQ(d.steps(2).kelengkapan_size(), 4);
  EXPECT_EQ(d.dasar_hukum_size(), 4);
}

TEST(Definition, Seed004LoadsFaithfully) {
  auto parsed = ParseDefinition(ReadSeed("004-gowa-perencanaan-pelaporan.yaml"), "004.yaml");
  ASSERT_TRUE(parsed.ok()) << Dump(parsed.problems);
  const auto& d = parsed.definition;
  ASSERT_EQ(d.steps_size(), 10);
  EXPECT_EQ(d.steps(3).kind(), v1::Step::FAN_OUT);
  EXPECT_EQ(d.steps(3).member_group(), "fungsional");
  EXPECT_EQ(d.steps(7).kind(), v1::Step::REVIEW);
  EXPECT_EQ(d.steps(7).outcomes(1).next_step(), 6u);
  EXPECT_EQ(d.steps(8).kind(), v1::Step::SYSTEM);
  EXPECT_EQ(d.steps(8).job_type(), "esakip.input");
  EXPECT_EQ(d.steps(5).kelengkapan_size(), 0);
}

TEST(Definition, GoodExampleHasNoProblems) { EXPECT_TRUE(ParseDefinition(kGood, "x.yaml").ok()); }

TEST(Definition, YamlSyntaxErrorHasLine) {
  auto p = ProblemsOf(Replace(kGood, "  - no: 3\n", "  - no: [3\n"));
  ASSERT_EQ(p.size(), 1u) << Dump(p);
  EXPECT_GE(p[0].line, 19);
  EXPECT_NE(p[0].message.find("YAML syntax"), std::string::npos);
}

TEST(Definition, UnknownActor) {
  auto p = ProblemsOf(Replace(kGood, "    pelaksana: kabag\n", "    pelaksana: kepala\n"));
  EXPECT_TRUE(HasProblem(p, 13, "langkah 2.pelaksana", "unknown pelaksana 'kepala'")) << Dump(p);
}

TEST(Definition, OutcomePointingAtNoStep) {
  auto p = ProblemsOf(Replace(kGood, "sesuai: 3", "sesuai: 9"));
  EXPECT_TRUE(HasProblem(p, 11, "langkah 2.hasil.sesuai", "step 9, which does not exist")) << Dump(p);
}

TEST(Definition, UnreachableStep) {
  // Step 2 ends the run on both outcomes: step 3 cannot be reached.
  auto p = ProblemsOf(Replace(kGood, "sesuai: 3", "sesuai: selesai"));
  EXPECT_TRUE(HasProblem(p, 19, "langkah 3", "no path from the first step")) << Dump(p);
}

TEST(Definition, LoopWithNoWayOut) {
  // "sesuai" back to 1 as well: steps 1 and 2 loop for ever.
  auto p = ProblemsOf(Replace(kGood, "sesuai: 3", "sesuai: 1"));
  EXPECT_TRUE(HasProblem(p, 7, "langkah 1", "loop with no way out")) << Dump(p);
  EXPECT_TRUE(HasProblem(p, 11, "langkah 2", "loop with no way out")) << Dump(p);
}

TEST(Definition, UnparsableWaktu) {
  auto p = ProblemsOf(Replace(kGood, "waktu: 30 menit", "waktu: setengah jam"));
  EXPECT_TRUE(HasProblem(p, 15, "langkah 2.waktu", "cannot read waktu")) << Dump(p);
  p = ProblemsOf(Replace(kGood, "waktu: 30 menit", "waktu: 30 minggu"));
  EXPECT_TRUE(HasProblem(p, 15, "langkah 2.waktu", "unknown unit")) << Dump(p);
}

TEST(Definition, DuplicateStepNumber) {
  auto p = ProblemsOf(Replace(kGood, "  - no: 3\n", "  - no: 2\n"));
  EXPECT_TRUE(HasProblem(p, 19, "langkah 2.no", "duplicate step number (also on line 11)")) << Dump(p);
}

TEST(Definition, UnknownFieldIsATypo) {
  auto p = ProblemsOf(Replace(kGood, "    aktivitas: Mengarsipkan\n", "    aktivitas: Mengarsipkan\n    keterngan: x\n"));
  EXPECT_TRUE(HasProblem(p, 22, "langkah 3.keterngan", "unknown field")) << Dump(p);
}

TEST(Definition, MissingRequiredFields) {
  auto p = ProblemsOf(Replace(kGood, "    aktivitas: Menyusun draft\n", ""));
  EXPECT_TRUE(HasProblem(p, 7, "langkah 1.aktivitas", "is required")) << Dump(p);
  p = ProblemsOf(Replace(kGood, "id: contoh\n", ""));
  EXPECT_TRUE(HasProblem(p, 1, "id", "is required")) << Dump(p);
}

TEST(Definition, ReviewNeedsOutcomesAndFanOutNeedsGroup) {
  auto p = ProblemsOf(Replace(kGood, "    jenis: reviu\n", "    jenis: fanout\n"));
  EXPECT_TRUE(HasProblem(p, 11, "langkah 2.anggota", "is required")) << Dump(p);
  EXPECT_TRUE(HasProblem(p, 17, "langkah 2.hasil", "only a reviu step has hasil")) << Dump(p);
  p = ProblemsOf(Replace(kGood, "      sesuai: 3\n", ""));
  EXPECT_TRUE(HasProblem(p, 17, "langkah 2.hasil", "at least two outcomes")) << Dump(p);
}

TEST(Definition, SystemStepNeedsJobType) {
  auto p = ProblemsOf(Replace(kGood, "    aktivitas: Mengarsipkan\n", "    jenis: sistem\n    aktivitas: Mengarsipkan\n"));
  EXPECT_TRUE(HasProblem(p, 19, "langkah 3.pekerjaan", "is required")) << Dump(p);
}

TEST(Definition, DuplicateActorAndBadDate) {
  auto p = ProblemsOf(Replace(Replace(kGood, "{id: kabag, nama: Kabag}", "{id: kasubbag, nama: Kabag}"), "nama: Contoh\n",
                              "nama: Contoh\ntanggal_efektif: 2021-13-04\n"));
  EXPECT_TRUE(HasProblem(p, 6, "pelaksana[1].id", "duplicate pelaksana 'kasubbag'")) << Dump(p);
  EXPECT_TRUE(HasProblem(p, 3, "tanggal_efektif", "YYYY-MM-DD")) << Dump(p);
}

TEST(Definition, EveryProblemIsReportedAtOnce) {
  std::string bad = Replace(Replace(kGood, "waktu: 20 menit", "waktu: lama"), "sesuai: 3", "sesuai: 7");
  auto p = ProblemsOf(bad);
  EXPECT_GE(p.size(), 2u) << Dump(p);
}

TEST(Definition, OrThrowGivesInvalidArgumentListingProblems) {
  try {
    ParseDefinitionOrThrow(Replace(kGood, "pelaksana: kabag", "pelaksana: nobody"), "contoh.yaml");
    FAIL() << "no error";
  } catch (const DomainError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("contoh.yaml:13: langkah 2.pelaksana"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sopflow

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "blob_store.h"
#include "ids.h"
#include "rules.h"

namespace sopflow::archiver {
namespace {

using google::protobuf::util::TimeUtil;

std::shared_ptr<const Rules> Shipped() {
  std::string dir = std::string(SOPFLOW_SOURCE_DIR) + "/deploy/base/archiver/";
  return Rules::Load(dir + "klasifikasi.yaml", dir + "jra.yaml", dir + "berkas.yaml");
}

TEST(ArchiveRules, ClassificationComesFromTheNomorOrTheSettings) {
  auto rules = Shipped();
  v1::Definition d001;
  d001.set_id("kalbar-biro-organisasi-data-kinerja");
  d001.set_nomor("065/3/DP-B");
  EXPECT_EQ(rules->ClassifyRun(d001), "065");
  EXPECT_EQ(rules->ClassificationName("065"), "Ketatalaksanaan");
  v1::Definition d003;
  d003.set_id("balangan-satpolpp-data-kinerja");
  d003.set_nomor("800/13/Satpol-PP/BLG/2023");
  EXPECT_EQ(rules->ClassifyRun(d003), "800");
  v1::Definition d004;
  d004.set_id("gowa-perencanaan-pelaporan-data-kinerja");
  EXPECT_EQ(rules->ClassifyRun(d004), "860");  // no nomor: from berkas.yaml
  v1::Definition other;
  other.set_id("x");
  other.set_nomor("999/1");
  EXPECT_EQ(rules->ClassifyRun(other), "000");
  EXPECT_EQ(rules->SettingsFor("gowa-perencanaan-pelaporan-data-kinerja").keamanan, v1::ArchiveRecord::TERBATAS);
}

TEST(ArchiveRules, RetentionByLongestPrefixAndDatesFromTheYearsEnd) {
  auto rules = Shipped();
  EXPECT_EQ(rules->RetentionFor("065").keterangan(), v1::RetentionRule::MUSNAH);
  EXPECT_EQ(rules->RetentionFor("860").aktif_tahun(), 1);  // 860 beats 800
  EXPECT_EQ(rules->RetentionFor("861").keterangan(), v1::RetentionRule::MUSNAH);
  EXPECT_EQ(rules->RetentionFor("800").keterangan(), v1::RetentionRule::PERMANEN);
  EXPECT_EQ(rules->RetentionFor("850").keterangan(), v1::RetentionRule::PERMANEN);  // under 800
  EXPECT_EQ(rules->RetentionFor("999").keterangan(), v1::RetentionRule::DINILAI_KEMBALI);  // 000: the rest
  v1::ArchiveRecord r;
  *r.mutable_retensi() = rules->RetentionFor("065");  // aktif 2, inaktif 3
  SetRetentionDates(&r, "2026-Q3");
  EXPECT_EQ(TimeUtil::ToString(r.aktif_sampai()), "2029-01-01T00:00:00Z");
  EXPECT_EQ(TimeUtil::ToString(r.inaktif_sampai()), "2032-01-01T00:00:00Z");
}

TEST(BlobStore, ContentAddressedAndWholeOrAbsent) {
  DirectoryBlobStore store(::testing::TempDir() + "/blobs-" + RandomHex(4));
  std::string sha = store.Put("Data kinerja 2026-Q3");
  EXPECT_EQ(sha, Sha256Hex("Data kinerja 2026-Q3"));
  EXPECT_EQ(store.Put("Data kinerja 2026-Q3"), sha);  // stored once
  EXPECT_EQ(*store.Get(sha), "Data kinerja 2026-Q3");
  EXPECT_TRUE(store.Remove(sha));
  EXPECT_FALSE(store.Get(sha).has_value());
  EXPECT_THROW(store.Get("../../etc/passwd"), std::invalid_argument);
}

}  // namespace
}  // namespace sopflow::archiver

// The archiver against real Redis, NATS, the router and the aggregator:
// filing, tamper detection, retention and disposal, access, and a restart.
#include <google/protobuf/util/time_util.h>

#include <hiredis/hiredis.h>

#include <filesystem>
#include <fstream>

#include "aggregator.h"
#include "archiver.h"
#include "realisasi.h"
#include "redis.h"
#include "router_fixture.h"
#include "sopflow/v1/archive.grpc.pb.h"

namespace sopflow::testing {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::StatusCode;

archiver::Config ArchiverConfigFor(const Backends& b, int router_port, int aggregator_port) {
  archiver::Config c;
  c.listen = "127.0.0.1:0";
  c.redis = b.redis->address();
  c.nats = b.nats->url();
  c.tokens_file = SourcePath("deploy/overlays/dev/tokens.yaml");
  c.blob_dir = b.dir + "/blobs";
  c.rules_dir = SourcePath("deploy/base/archiver");
  c.router = "127.0.0.1:" + std::to_string(router_port);
  if (aggregator_port) c.aggregator = "127.0.0.1:" + std::to_string(aggregator_port);
  c.service_token = "demo-archiver";
  c.ack_wait_ms = 1000;
  c.drain_ms = 2000;
  return c;
}

class ArchiverTest : public RouterTest {
 protected:
  static void SetUpTestSuite() {
    RouterTest::SetUpTestSuite();
    aggregator::Config ac;
    ac.listen = "127.0.0.1:0";
    ac.redis = backends_->redis->address();
    ac.nats = backends_->nats->url();
    ac.tokens_file = SourcePath("deploy/overlays/dev/tokens.yaml");
    ac.catalogues_dir = SourcePath("deploy/base/aggregator/catalogues");
    ac.router = "127.0.0.1:" + std::to_string(router_->port());
    ac.router_token = "demo-aggregator";
    ac.ack_wait_ms = 1000;
    aggregator_ = new aggregator::AggregatorProcess(ac, &clock_);
    aggregator_->Start();
    archive_clock_ = new ManualClock(SystemClock().Now());
    archiver_ = new archiver::ArchiverProcess(ArchiverConfigFor(*backends_, router_->port(), aggregator_->port()),
                                              archive_clock_);
    archiver_->Start();
    archive_stub_ = v1::Archiver::NewStub(OpenChannel("127.0.0.1:" + std::to_string(archiver_->port())));
  }
  static void TearDownTestSuite() {
    archive_stub_.reset();
    delete archiver_;
    delete aggregator_;
    delete archive_clock_;
    RouterTest::TearDownTestSuite();
  }
  v1::Archiver::Stub& archive() { return *archive_stub_; }

  // Runs the SOP to completion and waits until the archiver filed it.
  v1::FiledRecord RunAndFile(const v1::Run& run) {
    demo::DriveOptions options;
    options.fill_output = demo::FillRealisasi;
    std::unique_ptr<v1::Router::Stub> worker_stub;
    auto result = demo::DriveRun(stub(), AllActors(), run.id(), kAdmin, options);
    EXPECT_EQ(result.run().status(), v1::Run::COMPLETED);
    v1::FiledRecord filed;
    EXPECT_TRUE(WaitUntil([&] {
      v1::GetRecordRequest req;
      req.set_id("BRK-" + run.id());
      return archive().GetRecord(AuthedContext(kAdmin).get(), req, &filed).ok();
    }));
    return filed;
  }
  v1::VerifyResponse VerifyAll() {
    v1::VerifyResponse resp;
    EXPECT_TRUE(archive().Verify(AuthedContext(kAdmin).get(), {}, &resp).ok());
    return resp;
  }
  std::string BlobPath(const std::string& sha) { return backends_->dir + "/blobs/" + sha.substr(0, 2) + "/" + sha.substr(2); }
  static bool Mentions(const v1::VerifyResponse& v, const std::string& record_id, const std::string& what) {
    for (const auto& p : v.problems())
      if ((record_id.empty() || p.record_id() == record_id) && p.what().find(what) != std::string::npos) return true;
    return false;
  }

  static aggregator::AggregatorProcess* aggregator_;
  static archiver::ArchiverProcess* archiver_;
  static ManualClock* archive_clock_;
  static std::unique_ptr<v1::Archiver::Stub> archive_stub_;
};

aggregator::AggregatorProcess* ArchiverTest::aggregator_ = nullptr;
archiver::ArchiverProcess* ArchiverTest::archiver_ = nullptr;
ManualClock* ArchiverTest::archive_clock_ = nullptr;
std::unique_ptr<v1::Archiver::Stub> ArchiverTest::archive_stub_;

TEST_F(ArchiverTest, ACompletedSeedRunIsFiledWithClassificationRetentionAndContent) {
  v1::Run run = Start001();
  v1::FiledRecord filed = RunAndFile(run);
  const auto& r = filed.record();
  EXPECT_EQ(r.kind(), v1::ArchiveRecord::BERKAS);
  EXPECT_EQ(r.kode_klasifikasi(), "065");
  EXPECT_EQ(r.klasifikasi(), "Ketatalaksanaan");
  EXPECT_EQ(r.sop_nomor(), "065/3/DP-B");
  EXPECT_EQ(r.kurun_waktu(), "2026-Q3");
  EXPECT_EQ(r.unit_pengolah(), "kalbar-biro-organisasi");
  EXPECT_EQ(r.keamanan(), v1::ArchiveRecord::BIASA);
  EXPECT_EQ(r.retensi().keterangan(), v1::RetentionRule::MUSNAH);
  EXPECT_EQ(r.retensi().jadwal(), "jra-contoh-2026");
  EXPECT_EQ(TimeUtil::ToString(r.aktif_sampai()), "2029-01-01T00:00:00Z");
  EXPECT_EQ(TimeUtil::ToString(r.inaktif_sampai()), "2032-01-01T00:00:00Z");
  EXPECT_EQ(r.lokasi_rak(), "R-07");
  EXPECT_FALSE(r.nomor_boks().empty());
  EXPECT_FALSE(r.nomor_folder().empty());
  std::vector<std::string> names;
  for (const auto& b : r.blobs()) names.push_back(b.name());
  EXPECT_EQ(names, (std::vector<std::string>{"timeline.json", "definition.yaml", "report.pb", "report.html"}));
  EXPECT_EQ(r.keputusan_size(), 5);  // 6 perbaikan, 6 sesuai, 7 perbaikan, 6 sesuai, 7 sesuai
  EXPECT_EQ(r.keputusan(0).outcome(), "perbaikan");
  EXPECT_FALSE(r.keputusan(0).reason().empty());
  EXPECT_GE(r.documents_size(), 16);  // every step's output, and the report attached to step 3
  EXPECT_EQ(r.jumlah(), static_cast<uint32_t>(r.blobs_size() + r.documents_size()));

  v1::GetBlobRequest blob;
  blob.set_record_id(r.id());
  blob.set_sha256(r.blobs(0).sha256());
  auto ctx = AuthedContext(kKaro);
  auto reader = archive().GetBlob(ctx.get(), blob);
  std::string timeline;
  v1::BlobChunk chunk;
  while (reader->Read(&chunk)) timeline += chunk.data();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(timeline.size(), r.blobs(0).size());
  EXPECT_NE(timeline.find(run.id()), std::string::npos);

  v1::FileRunRequest again;
  again.set_run_id(run.id());
  v1::FiledRecord second;
  ASSERT_TRUE(archive().FileRun(AuthedContext(kKaro).get(), again, &second).ok());
  EXPECT_EQ(second.hash(), filed.hash());  // filing twice yields one record
  v1::SearchRecordsRequest search;
  search.set_sop_id(kSop001);
  search.set_text("PENGUMPULAN DATA");
  v1::SearchRecordsResponse found;
  ASSERT_TRUE(archive().SearchRecords(AuthedContext(kKaro).get(), search, &found).ok());
  int matches = 0;
  for (const auto& f : found.records()) matches += f.record().run_id() == run.id();
  EXPECT_EQ(matches, 1);
  EXPECT_TRUE(VerifyAll().ok());
}

TEST_F(ArchiverTest, AChangedByteARemovedBlobAndARemovedRecordAreEachDetected) {
  std::vector<v1::FiledRecord> filed;
  for (int i = 0; i < 3; ++i) filed.push_back(RunAndFile(Start003()));
  ASSERT_TRUE(VerifyAll().ok());

  // A changed byte in a blob.
  std::string timeline = filed[1].record().blobs(0).sha256();
  std::string path = BlobPath(timeline);
  std::string original;
  {
    std::ifstream in(path, std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::string changed = original;
  changed[changed.size() / 2] ^= 1;
  std::ofstream(path, std::ios::binary) << changed;
  auto v = VerifyAll();
  EXPECT_FALSE(v.ok());
  EXPECT_TRUE(Mentions(v, filed[1].record().id(), "blob timeline.json altered"));
  std::ofstream(path, std::ios::binary) << original;
  EXPECT_TRUE(VerifyAll().ok());

  // A removed blob.
  std::filesystem::remove(path);
  v = VerifyAll();
  EXPECT_TRUE(Mentions(v, filed[1].record().id(), "blob timeline.json"));
  EXPECT_TRUE(Mentions(v, filed[1].record().id(), "missing"));
  std::ofstream(path, std::ios::binary) << original;
  EXPECT_TRUE(VerifyAll().ok());

  // A record removed from the middle of the chain.
  RedisConnection redis(RedisAddress::Parse(backends_->redis->address()));
  const std::string key = "sf:ar:rec:" + filed[1].record().id();
  Reply saved = redis.Command({"HMGET", key, "manifest", "hash"});
  std::string manifest = ReplyString(saved->element[0]).value_or(""), hash = ReplyString(saved->element[1]).value_or("");
  redis.Command({"LREM", "sf:ar:chain", "0", filed[1].record().id()});
  redis.Command({"DEL", key});
  v = VerifyAll();
  EXPECT_FALSE(v.ok());
  EXPECT_TRUE(Mentions(v, filed[2].record().id(), "chain broken"));
  EXPECT_TRUE(Mentions(v, filed[2].record().id(), "a record before it was removed"));
  EXPECT_TRUE(Mentions(v, "", "records were removed"));
  // Put it back where it was: the archive is whole again.
  redis.Command({"HSET", key, "manifest", manifest, "hash", hash});
  redis.Command({"LINSERT", "sf:ar:chain", "BEFORE", filed[2].record().id(), filed[1].record().id()});
  EXPECT_TRUE(VerifyAll().ok());
}

TEST_F(ArchiverTest, RetentionDueListsAndDisposalOnAFixedClock) {
  v1::FiledRecord musnah = RunAndFile(Start001());    // 065: 2 + 3 years, musnah
  v1::FiledRecord permanen = RunAndFile(Start003());  // 800: 2 + 5 years, permanen
  auto due = [&](v1::ListDueRequest::Due kind, const char* date) {
    v1::ListDueRequest req;
    req.set_due(kind);
    req.set_date(date);
    v1::SearchRecordsResponse resp;
    EXPECT_TRUE(archive().ListDue(AuthedContext(kAdmin).get(), req, &resp).ok());
    std::set<std::string> ids;
    for (const auto& r : resp.records()) ids.insert(r.record().id());
    return ids;
  };
  EXPECT_FALSE(due(v1::ListDueRequest::TRANSFER, "2028-12-31").count(musnah.record().id()));
  EXPECT_TRUE(due(v1::ListDueRequest::TRANSFER, "2029-06-01").count(musnah.record().id()));
  EXPECT_TRUE(due(v1::ListDueRequest::TRANSFER, "2029-06-01").count(permanen.record().id()));
  EXPECT_TRUE(due(v1::ListDueRequest::DISPOSITION, "2032-06-01").count(musnah.record().id()));
  EXPECT_FALSE(due(v1::ListDueRequest::DISPOSITION, "2032-06-01").count(permanen.record().id()));
  EXPECT_TRUE(due(v1::ListDueRequest::DISPOSITION, "2034-06-01").count(permanen.record().id()));

  v1::DisposeRequest dispose;
  dispose.set_record_id(musnah.record().id());
  dispose.set_alasan("Retensi habis menurut JRA; dinilai tidak berguna lagi");
  dispose.add_saksi("Kepala Biro Organisasi");
  v1::FiledRecord ba;
  auto st = archive().Dispose(AuthedContext(kAdmin).get(), dispose, &ba);
  EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION);  // still retained in 2026
  EXPECT_NE(st.error_message().find("retained until 2032-01-01"), std::string::npos) << st.error_message();
  archive_clock_->Set(FromUnixMillis(UnixMillis(SystemClock().Now()) + 3600LL * 24 * 365 * 9 * 1000));  // ~2035
  EXPECT_EQ(archive().Dispose(AuthedContext(kKaro).get(), dispose, &ba).error_code(), StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(archive().Dispose(AuthedContext(kAdmin).get(), dispose, &ba).ok());
  EXPECT_EQ(ba.record().kind(), v1::ArchiveRecord::BERITA_ACARA_PEMUSNAHAN);
  EXPECT_EQ(ba.record().disposed_record_hash(), musnah.hash());
  EXPECT_EQ(ba.record().saksi(0), "Kepala Biro Organisasi");
  EXPECT_FALSE(std::filesystem::exists(BlobPath(musnah.record().blobs(0).sha256())));  // destroyed
  v1::GetRecordRequest get;
  get.set_id(musnah.record().id());
  v1::FiledRecord after;
  ASSERT_TRUE(archive().GetRecord(AuthedContext(kAdmin).get(), get, &after).ok());
  EXPECT_TRUE(after.disposed());
  EXPECT_TRUE(VerifyAll().ok());  // the chain, with its berita acara, still holds
  EXPECT_EQ(archive().Dispose(AuthedContext(kAdmin).get(), dispose, &ba).error_code(), StatusCode::FAILED_PRECONDITION);
  dispose.set_record_id(permanen.record().id());
  st = archive().Dispose(AuthedContext(kAdmin).get(), dispose, &ba);
  EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("permanen"), std::string::npos);
  archive_clock_->Set(SystemClock().Now());
}

TEST_F(ArchiverTest, AccessFollowsTheSecurityClassAndRestrictedReadsAreLogged) {
  std::atomic<bool> stop{false};
  auto worker_stub = RouterStub(router_->port());
  std::thread worker([&] { demo::RunJobWorker(*worker_stub, kEsakipWorker, "esakip.input", "esakip-test", stop); });
  v1::FiledRecord terbatas = RunAndFile(Start004());  // 860, terbatas to gowa-perencanaan
  stop = true;
  worker.join();
  ASSERT_EQ(terbatas.record().keamanan(), v1::ArchiveRecord::TERBATAS);
  v1::GetRecordRequest get;
  get.set_id(terbatas.record().id());
  v1::FiledRecord out;
  EXPECT_EQ(archive().GetRecord(AuthedContext(kKaro).get(), get, &out).error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(archive().GetRecord(AuthedContext(kOutsider).get(), get, &out).error_code(), StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(archive().GetRecord(AuthedContext(kKasubagPp).get(), get, &out).ok());
  v1::SearchRecordsRequest search;
  search.set_sop_id(kSop004);
  v1::SearchRecordsResponse found;
  ASSERT_TRUE(archive().SearchRecords(AuthedContext(kKaro).get(), search, &found).ok());
  EXPECT_EQ(found.records_size(), 0);  // not found by who may not read it
  v1::ListAccessLogRequest log;
  log.set_record_id(terbatas.record().id());
  v1::ListAccessLogResponse entries;
  EXPECT_EQ(archive().ListAccessLog(AuthedContext(kKasubagPp).get(), log, &entries).error_code(),
            StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(archive().ListAccessLog(AuthedContext(kAdmin).get(), log, &entries).ok());
  bool logged = false;
  for (const auto& e : entries.entries()) logged |= e.user() == "kasubag-pp" && e.action() == "read";
  EXPECT_TRUE(logged);
  log.set_page_token("not-a-token");
  EXPECT_EQ(archive().ListAccessLog(AuthedContext(kAdmin).get(), log, &entries).error_code(),
            StatusCode::INVALID_ARGUMENT);
  v1::ListDueRequest due;
  due.set_due(v1::ListDueRequest::TRANSFER);
  due.set_page_token("not-a-token");
  v1::SearchRecordsResponse due_page;
  EXPECT_EQ(archive().ListDue(AuthedContext(kAdmin).get(), due, &due_page).error_code(), StatusCode::INVALID_ARGUMENT);

  v1::FiledRecord rahasia = RunAndFile(Start003());  // rahasia: the Sekretaris of the unit
  get.set_id(rahasia.record().id());
  EXPECT_EQ(archive().GetRecord(AuthedContext("demo-kabid-blg").get(), get, &out).error_code(),
            StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(archive().GetRecord(AuthedContext(kSekretarisBlg).get(), get, &out).ok());
}

TEST(ArchiverCrashTest, KilledAndRestartedItLosesNothing) {
  OwnRouter own;
  auto config = ArchiverConfigFor(own.backends, own.router.port(), 0);
  auto start_archiver = [&](ChildProcess& p) {
    int port = 0;
    EXPECT_TRUE(StartOnOwnPort(p,
                               {SOPFLOW_ARCHIVER_BIN, "--redis", config.redis, "--nats", config.nats, "--tokens",
                                config.tokens_file, "--blobs", config.blob_dir, "--rules", config.rules_dir, "--router",
                                config.router, "--service-token", config.service_token, "--ack-wait-ms", "1000"},
                               {}, own.backends.dir + "/archiver.log", &port));
    return port;
  };
  auto run_one = [&] {
    v1::Run run = StartRun003(*own.stub);
    EXPECT_EQ(demo::DriveRun(*own.stub, AllActors(), run.id(), kAdmin, {}).run().status(), v1::Run::COMPLETED);
    return run.id();
  };
  ChildProcess first;
  start_archiver(first);
  std::string run1 = run_one();
  first.Kill();  // SIGKILL, perhaps while filing run1
  std::string run2 = run_one();  // completes while no archiver runs
  ChildProcess second;
  int port = start_archiver(second);
  auto archive = v1::Archiver::NewStub(OpenChannel("127.0.0.1:" + std::to_string(port)));
  for (const auto& run : {run1, run2}) {
    v1::FiledRecord filed;
    EXPECT_TRUE(WaitUntil([&] {
      v1::GetRecordRequest req;
      req.set_id("BRK-" + run);
      return archive->GetRecord(AuthedContext(kAdmin).get(), req, &filed).ok();
    })) << run;
  }
  v1::VerifyResponse v;
  ASSERT_TRUE(archive->Verify(AuthedContext(kAdmin).get(), {}, &v).ok());
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.records_checked(), 2u);  // each run filed once
  second.Stop();
  own.router.Shutdown();
}

TEST(ArchiverStartTest, AServiceTokenTheRouterWouldRefuseStopsTheStart) {
  Backends backends;
  SystemClock clock;
  auto start = [&](const std::string& token) {
    auto config = ArchiverConfigFor(backends, /*router_port=*/9, /*aggregator_port=*/0);  // never called here
    config.service_token = token;
    return StartRefusal<archiver::ArchiverProcess>(config, &clock);
  };
  EXPECT_NE(start("").find("archiver: --service-token is no user's token in"), std::string::npos);
  EXPECT_NE(start("not-a-token").find("--service-token is no user's token"), std::string::npos);
  EXPECT_NE(start(kKaro).find("user 'rita', who lacks the read_runs permission"), std::string::npos);
  EXPECT_EQ(start("demo-archiver"), "");
  EXPECT_EQ(start(kAdmin), "") << "admins hold every permission";
}

}  // namespace
}  // namespace sopflow::testing

// The aggregator against real Redis, NATS and the router: submissions,
// the report attached to the next actor's task, late units, redelivery and
// a restart mid-run.
#include <google/protobuf/util/time_util.h>
#include <nats/nats.h>

#include <set>

#include "aggregator.h"
#include "event_consumer.h"
#include "nats.h"
#include "realisasi.h"
#include "router_fixture.h"
#include "sopflow/v1/aggregator.grpc.pb.h"
#include "sopflow/v1/event.pb.h"

namespace sopflow::testing {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::StatusCode;

aggregator::Config AggregatorConfigFor(const Backends& b, int router_port) {
  aggregator::Config c;
  c.listen = "127.0.0.1:0";
  c.redis = b.redis->address();
  c.nats = b.nats->url();
  c.tokens_file = SourcePath("deploy/overlays/dev/tokens.yaml");
  c.catalogues_dir = SourcePath("deploy/base/aggregator/catalogues");
  c.router = "127.0.0.1:" + std::to_string(router_port);
  c.router_token = "demo-aggregator";
  c.deadline_interval_ms = 10;
  c.ack_wait_ms = 1000;
  c.drain_ms = 2000;
  return c;
}

class AggregatorTest : public RouterTest {
 protected:
  static void SetUpTestSuite() {
    RouterTest::SetUpTestSuite();
    StartAggregator();
  }
  static void StartAggregator() {
    aggregator_ = new aggregator::AggregatorProcess(AggregatorConfigFor(*backends_, router_->port()), &clock_);
    aggregator_->Start();
    agg_stub_ = v1::Aggregator::NewStub(OpenChannel("127.0.0.1:" + std::to_string(aggregator_->port())));
  }
  static void StopAggregator() {
    agg_stub_.reset();
    delete aggregator_;
    aggregator_ = nullptr;
  }
  static void TearDownTestSuite() {
    StopAggregator();
    RouterTest::TearDownTestSuite();
  }
  v1::Aggregator::Stub& agg() { return *agg_stub_; }

  // Completes a fan-out member's task with its realisasi as the output.
  void SubmitThroughTask(const std::string& token, const std::string& run_id, bool with_data = true) {
    std::vector<v1::Task> mine;
    ASSERT_TRUE(WaitUntil([&] {
      mine = InboxOf(token, run_id);
      return !mine.empty();
    }));
    v1::CompleteTaskRequest req;
    req.set_task_id(mine[0].id());
    if (with_data) demo::FillRealisasi(mine[0], req.mutable_output());
    v1::Task out;
    auto st = stub().CompleteTask(AuthedContext(token).get(), req, &out);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  std::vector<v1::Submission> Submissions(const std::string& run_id) {
    v1::ListSubmissionsRequest req;
    req.set_run_id(run_id);
    v1::ListSubmissionsResponse resp;
    EXPECT_TRUE(agg().ListSubmissions(AuthedContext(kKaro).get(), req, &resp).ok());
    return {resp.submissions().begin(), resp.submissions().end()};
  }
  bool ReportAttached(const std::string& run_id, v1::Task* step3) {
    auto run = GetRun(run_id);
    for (const auto& t : run.tasks())
      if (t.step() == 3 && t.attachments_size() > 0) {
        *step3 = t;
        return true;
      }
    return false;
  }

  static aggregator::AggregatorProcess* aggregator_;
  static std::unique_ptr<v1::Aggregator::Stub> agg_stub_;
};

aggregator::AggregatorProcess* AggregatorTest::aggregator_ = nullptr;
std::unique_ptr<v1::Aggregator::Stub> AggregatorTest::agg_stub_;

v1::SubmitRealisasiRequest Direct(const std::string& run_id, const std::string& unit, const std::string& kode,
                                  double value) {
  v1::SubmitRealisasiRequest req;
  req.set_run_id(run_id);
  req.set_unit(unit);
  req.set_period("2026-Q3");
  auto* item = req.add_items();
  item->set_kode(kode);
  item->set_realisasi(value);
  return req;
}

TEST_F(AggregatorTest, ThreeBagianSubmitAndTheReportIsAttachedToStep3sTask) {
  v1::Run run = Start001();
  ASSERT_TRUE(Complete(kKaro, WaitForOpenTask(run.id(), 1).id(), "").ok());
  ASSERT_TRUE(WaitUntil([&] { return GetRun(run.id()).tasks_size() == 4; }));
  // Bagian Tatalaksana first sends a figure directly, then its task's
  // output replaces it: both stay in the history.
  v1::Submission first;
  auto direct = Direct(run.id(), "bagian-tatalaksana", "TL-1", 60);
  ASSERT_TRUE(WaitUntil([&] { return agg().SubmitRealisasi(AuthedContext(kBagianTl).get(), direct, &first).ok(); }));
  EXPECT_EQ(first.version(), 1u);
  SubmitThroughTask(kBagianTl, run.id());
  SubmitThroughTask(kBagianKl, run.id());
  SubmitThroughTask("demo-bagian-rb", run.id());

  v1::Task step3;
  ASSERT_TRUE(WaitUntil([&] { return ReportAttached(run.id(), &step3); }));
  ASSERT_EQ(step3.attachments_size(), 1);
  EXPECT_EQ(step3.attachments(0).uri(), "sopflow://aggregator/reports/" + run.id());
  EXPECT_EQ(step3.attachments(0).name(), "Draft Data Kinerja 2026-Q3 (agregat)");
  EXPECT_EQ(step3.attachments(0).sha256().size(), 64u);

  v1::GetReportRequest get;
  get.set_run_id(run.id());
  v1::PerformanceReport report;
  ASSERT_TRUE(agg().GetReport(AuthedContext("demo-pelaksana").get(), get, &report).ok());
  ASSERT_EQ(report.units_size(), 3);
  EXPECT_EQ(report.not_submitted_size(), 0);
  EXPECT_EQ(report.organisasi(), "kalbar-biro-organisasi");
  const auto& tl = report.units(0);
  EXPECT_EQ(tl.unit(), "bagian-tatalaksana");
  EXPECT_EQ(tl.submission_version(), 2u);
  EXPECT_DOUBLE_EQ(tl.indikator(0).realisasi(), 70);  // the task output, not the earlier 60
  EXPECT_NEAR(tl.indikator(0).capaian(), 70.0 / 75 * 100, 1e-9);
  EXPECT_NEAR(tl.indikator(1).capaian(), (2 * 4 - 4.5) / 4 * 100, 1e-9);  // lower is better
  EXPECT_NEAR(tl.serapan(), 95e6 / 450e6 * 100, 1e-9);
  const auto& kl = report.units(1);
  EXPECT_NEAR(kl.indikator(1).capaian(), (160.0 - 83) / 80 * 100, 1e-9);  // above the range
  EXPECT_EQ(kl.indikator(1).rumus(), "range: (2max-r)/max*100 above the range");
  ASSERT_EQ(report.organisasi_indikator_size(), 2);
  EXPECT_EQ(report.organisasi_indikator(0).kode(), "IKU-1");  // TL-1 and RB-1 cascade into it
  EXPECT_NEAR(report.organisasi_indikator(0).capaian(), (70.0 / 75 * 100 + 66.0 / 70 * 100) / 2, 1e-9);

  auto history = Submissions(run.id());
  int tl_versions = 0;
  for (const auto& s : history)
    if (s.unit() == "bagian-tatalaksana") {
      ++tl_versions;
      EXPECT_EQ(s.status(), s.version() == 1 ? v1::Submission::SUPERSEDED : v1::Submission::ACCEPTED);
    }
  EXPECT_EQ(tl_versions, 2);
  // After the step closed, nothing more is taken.
  v1::Submission late;
  EXPECT_EQ(agg().SubmitRealisasi(AuthedContext(kBagianTl).get(), direct, &late).error_code(),
            StatusCode::FAILED_PRECONDITION);

  for (auto format : {v1::ExportReportRequest::CSV, v1::ExportReportRequest::XLSX, v1::ExportReportRequest::HTML}) {
    v1::ExportReportRequest ex;
    ex.set_run_id(run.id());
    ex.set_format(format);
    v1::ReportFile file;
    ASSERT_TRUE(agg().ExportReport(AuthedContext(kKaro).get(), ex, &file).ok());
    EXPECT_GT(file.content().size(), 100u);
  }
  v1::GetProcessMetricsRequest pm;
  pm.set_run_id(run.id());
  v1::ProcessMetrics metrics;
  ASSERT_TRUE(agg().GetProcessMetrics(AuthedContext(kKaro).get(), pm, &metrics).ok());
  ASSERT_GE(metrics.steps_size(), 2);
  EXPECT_EQ(metrics.steps(1).step(), 2u);
  EXPECT_EQ(metrics.steps(1).count(), 3u);  // three members
}

TEST_F(AggregatorTest, BadSubmissionsAreRejectedWithTheirFieldAndNothingIsStored) {
  v1::Run run = Start001();
  ASSERT_TRUE(WaitUntil([&] {
    v1::Submission s;
    return agg().SubmitRealisasi(AuthedContext(kBagianTl).get(), Direct(run.id(), "bagian-tatalaksana", "TL-9", 1), &s)
               .error_code() == StatusCode::INVALID_ARGUMENT;
  }));
  v1::Submission s;
  auto bad = Direct(run.id(), "bagian-tatalaksana", "TL-9", 1);
  auto* over = bad.add_items();
  over->set_kode("TL-1");
  over->set_realisasi(130);
  bad.set_period("2026-Q2");
  auto st = agg().SubmitRealisasi(AuthedContext(kBagianTl).get(), bad, &s);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("period: the run is for 2026-Q3, not 2026-Q2"), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("items[0].kode: unknown indicator 'TL-9'"), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("items[1].realisasi: above the indicator's maximum"), std::string::npos);
  EXPECT_EQ(agg().SubmitRealisasi(AuthedContext(kBagianKl).get(), Direct(run.id(), "bagian-tatalaksana", "TL-1", 1), &s)
                .error_code(),
            StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(agg().SubmitRealisasi(AuthedContext(kOutsider).get(), Direct(run.id(), "bagian-tatalaksana", "TL-1", 1), &s)
                .error_code(),
            StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(agg().SubmitRealisasi(AuthedContext(kAdmin).get(), Direct(run.id(), "dinas-lain", "TL-1", 1), &s)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);  // not a member of the run
  EXPECT_EQ(agg().SubmitRealisasi(AuthedContext(kBagianTl).get(), Direct("01NOPE", "bagian-tatalaksana", "TL-1", 1), &s)
                .error_code(),
            StatusCode::NOT_FOUND);
  EXPECT_TRUE(Submissions(run.id()).empty());

  // A task output whose value is not a number: kept as REJECTED with its
  // problem, and the unit counts as not submitted.
  ASSERT_TRUE(Complete(kKaro, WaitForOpenTask(run.id(), 1).id(), "").ok());
  std::vector<v1::Task> mine;
  ASSERT_TRUE(WaitUntil([&] {
    mine = InboxOf(kBagianKl, run.id());
    return !mine.empty();
  }));
  v1::CompleteTaskRequest req;
  req.set_task_id(mine[0].id());
  (*(*req.mutable_output()->mutable_data()->mutable_fields())["realisasi"].mutable_struct_value()->mutable_fields())["KL-1"]
      .set_string_value("empat");
  v1::Task out;
  ASSERT_TRUE(stub().CompleteTask(AuthedContext(kBagianKl).get(), req, &out).ok());
  ASSERT_TRUE(WaitUntil([&] { return !Submissions(run.id()).empty(); }));
  auto subs = Submissions(run.id());
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].status(), v1::Submission::REJECTED);
  ASSERT_EQ(subs[0].problems_size(), 1);
  EXPECT_EQ(subs[0].problems(0).field(), "output.data.realisasi.KL-1");
  v1::GetReportRequest get;
  get.set_run_id(run.id());
  v1::PerformanceReport preview;
  ASSERT_TRUE(agg().GetReport(AuthedContext(kKaro).get(), get, &preview).ok());
  EXPECT_EQ(preview.not_submitted_size(), 3);
}

TEST_F(AggregatorTest, UnitsLateForTheDeadlineArePublishedForTheNotifier) {
  v1::StartRunRequest req;
  req.set_sop_id(kSop001);
  req.set_period("2026-Q3");
  req.set_unit("kalbar-biro-organisasi");
  auto& m = (*req.mutable_members())["bagian"];
  for (const char* b : {"bagian-tatalaksana", "bagian-kelembagaan", "bagian-reformasi-birokrasi"}) m.add_members(b);
  (*req.mutable_deadlines())[2] = TimeUtil::MillisecondsToTimestamp(UnixMillis(clock_.Now()) + 1500);
  v1::Run run;
  ASSERT_TRUE(stub().StartRun(AuthedContext(kKaro).get(), req, &run).ok());
  ASSERT_TRUE(Complete(kKaro, WaitForOpenTask(run.id(), 1).id(), "").ok());
  SubmitThroughTask(kBagianTl, run.id());
  SubmitThroughTask(kBagianKl, run.id());
  // Bagian Reformasi Birokrasi says nothing; the deadline passes.
  NatsClient nats(NatsOptions{backends_->nats->url(), "late-reader", true});
  natsSubscription* sub = nullptr;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.DeliverPolicy = js_DeliverAll;
  ASSERT_EQ(js_SubscribeSync(&sub, nats.jetstream(), "sopflow.v1.aggregator.submissions_late", nullptr, &so, nullptr),
            NATS_OK);
  v1::Event found;
  for (int i = 0; i < 100 && found.id().empty(); ++i) {
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, sub, 200) != NATS_OK) continue;
    v1::Event e;
    if (e.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg)) && e.run_id() == run.id()) found = e;
    natsMsg_Destroy(msg);
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  ASSERT_FALSE(found.id().empty()) << "no submissions_late event";
  ASSERT_EQ(found.submissions_late().units_size(), 1);
  EXPECT_EQ(found.submissions_late().units(0), "bagian-reformasi-birokrasi");
  EXPECT_EQ(found.submissions_late().role(), "bagian");
  EXPECT_EQ(found.submissions_late().step(), 2u);
}

TEST_F(AggregatorTest, RedeliveredEventsChangeNothing) {
  v1::Run run = Start001();
  ASSERT_TRUE(Complete(kKaro, WaitForOpenTask(run.id(), 1).id(), "").ok());
  for (const char* token : {kBagianTl, kBagianKl, "demo-bagian-rb"}) SubmitThroughTask(token, run.id());
  v1::Task step3;
  ASSERT_TRUE(WaitUntil([&] { return ReportAttached(run.id(), &step3); }));
  v1::GetReportRequest get;
  get.set_run_id(run.id());
  v1::PerformanceReport before;
  ASSERT_TRUE(agg().GetReport(AuthedContext(kKaro).get(), get, &before).ok());
  auto subs_before = Submissions(run.id());
  v1::GetProcessMetricsRequest pm;
  pm.set_run_id(run.id());
  v1::ProcessMetrics metrics_before;
  ASSERT_TRUE(agg().GetProcessMetrics(AuthedContext(kKaro).get(), pm, &metrics_before).ok());

  // Replay every event of the run under new message ids, as a redelivery would.
  NatsClient nats(NatsOptions{backends_->nats->url(), "replay", true});
  natsSubscription* sub = nullptr;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.DeliverPolicy = js_DeliverAll;
  ASSERT_EQ(js_SubscribeSync(&sub, nats.jetstream(), "sopflow.v1.>", nullptr, &so, nullptr), NATS_OK);
  std::vector<NatsClient::OutgoingMessage> again;
  for (int i = 0; i < 10000; ++i) {
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, sub, 300) != NATS_OK) break;
    v1::Event e;
    if (e.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg)) && e.run_id() == run.id())
      again.push_back({natsMsg_GetSubject(msg), "replay-" + std::to_string(i), e.SerializeAsString(), {}});
    natsMsg_Destroy(msg);
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  ASSERT_GT(again.size(), 8u);
  ASSERT_TRUE(nats.PublishAll(again).empty());
  ASSERT_TRUE(WaitUntil([&] { return ConsumerBacklog(nats, "aggregator") == 0; }));

  v1::PerformanceReport after;
  ASSERT_TRUE(agg().GetReport(AuthedContext(kKaro).get(), get, &after).ok());
  EXPECT_EQ(after.SerializeAsString(), before.SerializeAsString());
  EXPECT_EQ(Submissions(run.id()).size(), subs_before.size());
  v1::ProcessMetrics metrics_after;
  ASSERT_TRUE(agg().GetProcessMetrics(AuthedContext(kKaro).get(), pm, &metrics_after).ok());
  EXPECT_EQ(metrics_after.SerializeAsString(), metrics_before.SerializeAsString());
  EXPECT_EQ(GetRun(run.id()).tasks(4).attachments_size(), 1);  // attached once
}

TEST_F(AggregatorTest, RestartedMidRunItLosesNothing) {
  v1::Run run = Start001();
  ASSERT_TRUE(Complete(kKaro, WaitForOpenTask(run.id(), 1).id(), "").ok());
  ASSERT_TRUE(WaitUntil([&] { return GetRun(run.id()).tasks_size() == 4; }));
  StopAggregator();  // the Bagian submit while the aggregator is down
  for (const char* token : {kBagianTl, kBagianKl, "demo-bagian-rb"}) SubmitThroughTask(token, run.id());
  StartAggregator();
  v1::Task step3;
  ASSERT_TRUE(WaitUntil([&] { return ReportAttached(run.id(), &step3); }));
  v1::GetReportRequest get;
  get.set_run_id(run.id());
  v1::PerformanceReport report;
  ASSERT_TRUE(agg().GetReport(AuthedContext(kKaro).get(), get, &report).ok());
  EXPECT_EQ(report.not_submitted_size(), 0);
  for (const auto& u : report.units()) EXPECT_TRUE(u.submitted()) << u.unit();
}

// Both things that can lag behind an aggregator are on its /metrics: the
// events it consumes, and its own outbox (what it publishes for the
// notifier), which the relay empties once JetStream has the events.
TEST_F(AggregatorTest, PrometheusShowsTheConsumerAndOutboxBacklogs) {
  auto config = AggregatorConfigFor(*backends_, router_->port());
  config.metrics_listen = "127.0.0.1:0";
  aggregator::AggregatorProcess replica(config, &clock_);
  replica.Start();
  ASSERT_GT(replica.metrics_port(), 0);
  std::string body;
  EXPECT_TRUE(ScrapeUntil(replica.metrics_port(),
                          {"\nsopflow_outbox_backlog 0\n", "\nsopflow_consumer_backlog{consumer=\"aggregator\"} 0\n"}, body))
      << body;
  EXPECT_NE(body.find("# TYPE sopflow_outbox_backlog gauge"), std::string::npos);
  replica.Shutdown();
}

TEST_F(AggregatorTest, RollupsAndCataloguesOverGrpc) {
  v1::GetCatalogueRequest creq;
  creq.set_unit("bagian-kelembagaan");
  creq.set_tahun(2026);
  v1::Catalogue cat;
  ASSERT_TRUE(agg().GetCatalogue(AuthedContext(kBagianKl).get(), creq, &cat).ok());
  EXPECT_EQ(cat.indikator_size(), 2);
  v1::LoadCatalogueRequest load;
  load.set_yaml("tahun: 2026\norganisasi: x\nunit:\n  y:\n    indikator:\n      - {kode: A, target: [1, 2, 3, 4], arah: ke-atas}\n");
  load.set_file_name("baru.yaml");
  v1::LoadCatalogueResponse loaded;
  EXPECT_EQ(agg().LoadCatalogue(AuthedContext(kKaro).get(), load, &loaded).error_code(), StatusCode::PERMISSION_DENIED);
  auto st = agg().LoadCatalogue(AuthedContext(kAdmin).get(), load, &loaded);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("baru.yaml:6: unit.y.indikator[0].arah"), std::string::npos) << st.error_message();
  v1::GetRollupRequest rreq;
  rreq.set_unit("bagian-kelembagaan");
  rreq.set_period("2026-S3");
  v1::UnitReport rollup;
  EXPECT_EQ(agg().GetRollup(AuthedContext(kBagianKl).get(), rreq, &rollup).error_code(), StatusCode::INVALID_ARGUMENT);
  rreq.set_period("2026");
  ASSERT_TRUE(agg().GetRollup(AuthedContext(kKaro).get(), rreq, &rollup).ok());  // the Biro reads its Bagian
  EXPECT_EQ(rollup.indikator_size(), 2);
  EXPECT_EQ(agg().GetRollup(AuthedContext(kOutsider).get(), rreq, &rollup).error_code(), StatusCode::PERMISSION_DENIED);

  // The whole organisation, after a quarter's submissions.
  v1::Run run = Start001();
  ASSERT_TRUE(Complete(kKaro, WaitForOpenTask(run.id(), 1).id(), "").ok());
  for (const char* token : {kBagianTl, kBagianKl, "demo-bagian-rb"}) SubmitThroughTask(token, run.id());
  v1::Task step3;
  ASSERT_TRUE(WaitUntil([&] { return ReportAttached(run.id(), &step3); }));
  rreq.set_unit("kalbar-biro-organisasi");
  rreq.set_period("2026-S2");
  ASSERT_TRUE(agg().GetRollup(AuthedContext(kKaro).get(), rreq, &rollup).ok());
  EXPECT_EQ(rollup.indikator_size(), 5);  // TL-1, TL-2, KL-1, KL-2, RB-1
  EXPECT_DOUBLE_EQ(rollup.pagu(), 1e9);
  EXPECT_GT(rollup.rata_rata_capaian(), 0);
  EXPECT_FALSE(rollup.predikat().empty());
  EXPECT_EQ(agg().GetRollup(AuthedContext(kBagianTl).get(), rreq, &rollup).error_code(), StatusCode::PERMISSION_DENIED);
}

TEST(AggregatorStartTest, ARouterTokenTheRouterWouldRefuseStopsTheStart) {
  Backends backends;
  SystemClock clock;
  auto start = [&](const std::string& token) {
    auto config = AggregatorConfigFor(backends, /*router_port=*/9);  // never called here
    config.router_token = token;
    return StartRefusal<aggregator::AggregatorProcess>(config, &clock);
  };
  EXPECT_NE(start("").find("aggregator: --router-token is no user's token in"), std::string::npos);
  EXPECT_NE(start("demo-archiver").find("user 'archiver', who lacks the attach_documents permission"),
            std::string::npos)
      << "reading runs is not attaching to their tasks";
  EXPECT_EQ(start("demo-aggregator"), "");
}

}  // namespace
}  // namespace sopflow::testing

// 21: a real Prometheus (Debian's `prometheus`) scrapes komoku's /metrics:
// the scrape succeeds (the text format parses) and a few series, including
// the commit histogram and the per-key write figures, arrive with the values
// komoku reports. And promtool's lint (`promtool check metrics`) finds
// nothing to say about /metrics, on a fresh service (where the counters are
// there at 0) and after it has seen traffic, refusals and a compaction.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

class PrometheusTest : public KomokuTest {
 protected:
  // Starts Prometheus on a free loopback port, scraping komoku every second.
  bool StartPrometheus() {
    PrometheusOptions o;
    o.config =
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: komoku\n"
        "    static_configs:\n      - targets: ['127.0.0.1:" +
        std::to_string(komoku_->http_port()) + "']\n";
    o.ready_timeout = std::chrono::seconds(30);
    prometheus_ = komoku::testing::StartPrometheus(
        dir_, o, [&](int port) { return Query(port, "up").status == 200; }, &port_);
    return prometheus_ != nullptr;
  }
  void TearDown() override {
    if (prometheus_) {
      if (HasFailure()) std::cerr << "----- prometheus output -----\n" << prometheus_->Output();
      prometheus_->Stop();
    }
    KomokuTest::TearDown();
  }
  struct Answer {
    int status = 0;
    json body;
  };
  Answer Query(const std::string& promql) const { return Query(port_, promql); }
  static Answer Query(int port, const std::string& promql) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_connection_timeout(std::chrono::seconds(2));
    auto res = cli.Get("/api/v1/query?query=" + httplib::detail::encode_query_param(promql));
    if (!res) return {};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
  // The value of a query with one result, or -1 while there is none.
  double Value(const std::string& promql) const {
    Answer a = Query(promql);
    if (a.status != 200 || !a.body.is_object()) return -1;
    const json& result = a.body["data"]["result"];
    if (result.size() != 1) return -1;
    return std::stod(result[0]["value"][1].get<std::string>());
  }

  int port_ = 0;
  std::unique_ptr<Process> prometheus_;
};

TEST_F(PrometheusTest, ScrapesKomokuMetrics) {
  ASSERT_EQ(access(PROMETHEUS_BINARY, X_OK), 0)
      << PROMETHEUS_BINARY << " is missing: scripts/install-deps.sh test installs it";
  constexpr int kCount = 25;
  for (int i = 0; i < kCount; ++i) {
    mqtt_->Publish("komoku/set/prom/temp", std::to_string(20 + i));
  }
  mqtt_->Publish("komoku/set/prom/temp", "warm");  // refused: wrong type
  ASSERT_TRUE(WaitForHistory("prom/temp", kCount));
  ASSERT_TRUE(StartPrometheus()) << (prometheus_ ? prometheus_->Output() : "");
  // A successful scrape: up is 1 and komoku's own series are there.
  ASSERT_TRUE(WaitFor([&] { return Value(R"(up{job="komoku"})") == 1; }, std::chrono::seconds(30)))
      << Query("up").body.dump();
  ASSERT_TRUE(WaitFor([&] { return Value("komoku_changes_stored_total") >= kCount; },
                      std::chrono::seconds(30)))
      << Query("komoku_changes_stored_total").body.dump();
  EXPECT_EQ(Value(R"(komoku_key_changes_stored_total{key="prom/temp"})"), kCount);
  EXPECT_GT(Value(R"(komoku_key_hot_bytes_written_total{key="prom/temp"})"), 0);
  EXPECT_GE(Value(R"(sum(komoku_refused_total))"), 1);
  EXPECT_EQ(Value("komoku_mqtt_connected"), 1);
  // The commit latency histogram parses as one: its quantile is a number.
  double p99 = Value("histogram_quantile(0.99, komoku_commit_seconds_bucket)");
  EXPECT_GE(p99, 0) << Query("komoku_commit_seconds_bucket").body.dump();
  EXPECT_GT(Value("process_resident_memory_bytes"), 1e6);
  // SQLite holds at least its prepared statements, and never more than the
  // most it has held.
  EXPECT_GT(Value("komoku_sqlite_memory_bytes"), 0);
  EXPECT_GE(Value("komoku_sqlite_memory_highwater_bytes"), Value("komoku_sqlite_memory_bytes"));
}

// What `promtool check metrics` says of `body`: its exit status and output
// (empty and 0 when it has no complaint).
struct Lint {
  int status = -1;
  std::string output;
};
Lint Promtool(const TempDir& dir, const std::string& body, const std::string& name) {
  const std::string in = dir.File(name + ".txt");
  std::ofstream(in) << body;
  Process p({"/bin/sh", "-c", std::string(PROMTOOL_BINARY) + " check metrics < " + in},
            dir.File(name + ".promtool.log"));
  Lint lint;
  lint.status = p.Wait(std::chrono::seconds(60));
  lint.output = p.Output();
  return lint;
}

// The value text of `series` in `body`, or "absent".
std::string SampleText(const std::string& body, const std::string& series) {
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return line.substr(series.size() + 1);
    }
  }
  return "absent";
}

TEST_F(PrometheusTest, PromtoolFindsNothingToSayAndCountersStartAtZero) {
  ASSERT_EQ(access(PROMTOOL_BINARY, X_OK), 0)
      << PROMTOOL_BINARY << " is missing: scripts/install-deps.sh test installs it";
  // Before any message: every counter is there at 0.
  const Komoku::Reply fresh = komoku_->Get("/metrics");
  ASSERT_EQ(fresh.status, 200);
  Lint lint = Promtool(dir_, fresh.body, "fresh");
  EXPECT_EQ(lint.status, 0) << lint.output << "\n---\n" << fresh.body;
  EXPECT_EQ(lint.output, "") << fresh.body;
  for (const char* series :
       {"komoku_mqtt_messages_total", "komoku_changes_accepted_total",
        "komoku_changes_stored_total", "komoku_changes_repeated_total",
        "komoku_changes_duplicate_total", "komoku_uptime_timeouts_total",
        "komoku_commit_errors_total", "komoku_compactions_total", "komoku_compaction_errors_total",
        "komoku_hot_fold_seconds_total", "komoku_hot_vacuum_seconds_total",
        "komoku_derived_published_total", "komoku_derived_dropped_total",
        "komoku_mqtt_publish_errors_total", "komoku_state_unpublishable_total",
        "komoku_segments_quarantined_total", "komoku_ingest_log_errors_total",
        R"(komoku_config_reloads_total{result="refused"})",
        R"(komoku_commit_seconds_bucket{le="+Inf"})"}) {
    EXPECT_EQ(SampleText(fresh.body, series), "0") << series << "\n" << fresh.body;
  }
  EXPECT_EQ(SampleText(fresh.body, R"(komoku_build_info{version=")" KOMOKU_VERSION R"("})"), "1")
      << fresh.body;
  const double started = std::stod(SampleText(fresh.body, "process_start_time_seconds"));
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(started, now + 1);
  EXPECT_GT(started, now - 600);  // it started with this test
  EXPECT_GT(std::stod(SampleText(fresh.body, "process_open_fds")), 3);
  EXPECT_GE(std::stod(SampleText(fresh.body, "process_cpu_seconds_total")), 0);

  // After traffic: changes, a refusal, a repeat, a compaction (folds,
  // vacuum, segments), a per-key series with a label to escape.
  constexpr int kCount = 10;
  for (int i = 0; i < kCount; ++i) mqtt_->Publish("komoku/set/lint/temp", std::to_string(i));
  mqtt_->Publish("komoku/set/lint/temp", "warm");  // refused: wrong type
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=lint/" + std::string("q%22uote"), "1").status, 201);
  ASSERT_TRUE(WaitForHistory("lint/temp", kCount));
  ASSERT_EQ(komoku_->Post("/api/v1/compact", "").status, 200);
  const Komoku::Reply busy = komoku_->Get("/metrics");
  lint = Promtool(dir_, busy.body, "busy");
  EXPECT_EQ(lint.status, 0) << lint.output << "\n---\n" << busy.body;
  EXPECT_EQ(lint.output, "") << busy.body;
  EXPECT_EQ(SampleText(busy.body, "komoku_changes_stored_total"), std::to_string(kCount + 1));
  EXPECT_EQ(SampleText(busy.body, R"(komoku_refused_total{reason="wrong_type"})"), "1");
  EXPECT_EQ(SampleText(busy.body, "komoku_compactions_total"), "1");
  EXPECT_EQ(SampleText(busy.body, R"(komoku_key_changes_stored_total{key="lint/q\"uote"})"), "1")
      << busy.body;
  // Nothing counted under a family /metrics does not declare.
  EXPECT_EQ(komoku_->Output().find("no declared family"), std::string::npos) << komoku_->Output();

  // ?name= answers the named families only, each still promtool-clean.
  const Komoku::Reply some = komoku_->Get(
      "/metrics?name=komoku_changes_stored_total&name=komoku_key_changes_stored_total");
  ASSERT_EQ(some.status, 200) << some.body;
  lint = Promtool(dir_, some.body, "some");
  EXPECT_EQ(lint.status, 0) << lint.output << "\n---\n" << some.body;
  EXPECT_EQ(SampleText(some.body, "komoku_changes_stored_total"), std::to_string(kCount + 1));
  EXPECT_EQ(SampleText(some.body, R"(komoku_key_changes_stored_total{key="lint/temp"})"),
            std::to_string(kCount));
  size_t helps = 0;
  for (size_t at = some.body.find("# HELP "); at != std::string::npos;
       at = some.body.find("# HELP ", at + 1)) {
    ++helps;
  }
  EXPECT_EQ(helps, 2u) << some.body;
  EXPECT_EQ(some.body.find("komoku_compactions_total"), std::string::npos) << some.body;
  // A name that is no family, or another parameter: refused, saying which.
  const Komoku::Reply unknown = komoku_->Get("/metrics?name=komoku_no_such_total");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body.find("komoku_no_such_total"), std::string::npos) << unknown.body;
  const Komoku::Reply typo = komoku_->Get("/metrics?nmae=komoku_changes_stored_total");
  EXPECT_EQ(typo.status, 400);
  EXPECT_NE(typo.body.find("nmae"), std::string::npos) << typo.body;
}

}  // namespace
}  // namespace komoku::testing

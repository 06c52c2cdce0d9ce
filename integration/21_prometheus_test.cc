// 21: a real Prometheus (Debian's `prometheus`) scrapes komoku's /metrics:
// the scrape succeeds (the text format parses) and a few series, including
// the commit histogram and the per-key write figures, arrive with the values
// komoku reports.
#include <gtest/gtest.h>
#include <httplib.h>

#include <unistd.h>

#include <fstream>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

class PrometheusTest : public KomokuTest {
 protected:
  // Starts Prometheus on a free loopback port, scraping komoku every second.
  bool StartPrometheus() {
    const std::string conf = dir_.File("prometheus.yml");
    std::ofstream(conf) << "global:\n"
                        << "  scrape_interval: 1s\n"
                        << "scrape_configs:\n"
                        << "  - job_name: komoku\n"
                        << "    static_configs:\n"
                        << "      - targets: ['127.0.0.1:" << komoku_->http_port() << "']\n";
    // The port may be taken between choosing it and Prometheus's bind: try again.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = FreeLoopbackPort();
      prometheus_ = std::make_unique<Process>(
          std::vector<std::string>{PROMETHEUS_BINARY, "--config.file=" + conf,
                                   "--storage.tsdb.path=" + dir_.File("tsdb"),
                                   "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
          dir_.File("prometheus.log"));
      if (WaitFor([&] { return Query("up").status == 200 || !prometheus_->Running(); },
                  std::chrono::seconds(30)) &&
          prometheus_->Running()) {
        return true;
      }
      prometheus_->Stop();
    }
    return false;
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
  Answer Query(const std::string& promql) const {
    httplib::Client cli("127.0.0.1", port_);
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
  EXPECT_GT(Value("komoku_resident_memory_bytes"), 1e6);
  // SQLite holds at least its prepared statements, and never more than the
  // most it has held.
  EXPECT_GT(Value("komoku_sqlite_memory_bytes"), 0);
  EXPECT_GE(Value("komoku_sqlite_memory_highwater_bytes"), Value("komoku_sqlite_memory_bytes"));
}

}  // namespace
}  // namespace komoku::testing

// 36: Prometheus remote write into a real Prometheus (Debian's `prometheus`,
// started with --web.enable-remote-write-receiver on a free loopback port):
// 10,000 changes over 100 keys, put over MQTT into the real komoku, arrive
// with their values and times, under the names and labels the read API
// gives the keys; and with the receiver killed for 30 s mid-stream, and
// komoku itself restarted meanwhile, nothing is lost: every change arrives
// once the receiver is back (resumed from komoku's state file).
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

constexpr int kKeys = 100;
constexpr int kChangesPerKey = 100;

class RemoteWriteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    base_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count() -
               10000;
  }
  void TearDown() override {
    if (HasFailure()) {
      if (prometheus_) std::cerr << "----- prometheus output -----\n" << prometheus_->Output();
      if (komoku_) DumpOnFailure(*broker_, *komoku_);
    }
    if (prometheus_) prometheus_->Stop();
  }

  // Starts Prometheus as a remote write receiver on a free port, with its
  // TSDB in the test's directory.
  bool StartPrometheus() { return StartReceiver(0, "prometheus.log", 5); }
  // Starts it again on the same port and TSDB (after a kill; the port may
  // linger a while).
  bool RestartPrometheus() { return StartReceiver(port_, "prometheus2.log", 10); }
  bool StartReceiver(int port, const std::string& log_name, int tries) {
    PrometheusOptions o;
    o.args = {"--web.enable-remote-write-receiver"};
    o.port = port;
    o.log_name = log_name;
    o.tries = tries;
    prometheus_ = komoku::testing::StartPrometheus(
        dir_, o, [&](int) { return Query("up").status == 200; }, &port_);
    return prometheus_ != nullptr;
  }

  bool StartKomoku() {
    komoku_ = std::make_unique<Komoku>(
        dir_, *broker_,
        "remote_write:\n  url: http://127.0.0.1:" + std::to_string(port_) +
            "/api/v1/write\n  batch_size: 500\n  send_interval: 200\n  exclude: other/*\n");
    return komoku_->Start();
  }

  struct Answer {
    int status = 0;
    json body;
  };
  Answer Query(const std::string& promql, int64_t time_ms = 0) const {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_connection_timeout(std::chrono::seconds(2));
    cli.set_read_timeout(std::chrono::seconds(30));
    std::string path = "/api/v1/query?query=" + httplib::detail::encode_query_param(promql);
    if (time_ms) path += "&time=" + TimeText(time_ms);
    auto res = cli.Get(path);
    if (!res) return {};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  static std::string TimeText(int64_t ms) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%lld.%03lld", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000));
    return buf;
  }
  static std::string Key(int k) { return "rw/sensor" + std::to_string(k); }
  int64_t TimeOf(int j) const { return base_ms_ + j * 50; }
  static double ValueOf(int k, int j) { return k * 1000 + j + 0.25; }

  // Puts changes j in [from, to) of every key over MQTT (interleaved keys).
  void PutChanges(int from, int to) {
    MqttClient mqtt(broker_->url(), "it-rw-publisher");
    for (int j = from; j < to; ++j) {
      for (int k = 0; k < kKeys; ++k) {
        mqtt.Publish("komoku/set/" + Key(k), "{\"value\": " + std::to_string(ValueOf(k, j)) +
                                                 ", \"time\": " + TimeText(TimeOf(j)) + "}");
      }
    }
  }

  // Samples Prometheus holds per key: key -> (time ms -> value).
  std::map<std::string, std::map<int64_t, double>> Held() const {
    std::map<std::string, std::map<int64_t, double>> out;
    Answer a = Query("{__name__=~\"rw_sensor.*\"}[10m]", TimeOf(kChangesPerKey) + 1000);
    if (a.status != 200 || !a.body.is_object()) return out;
    for (const json& series : a.body["data"]["result"]) {
      const json& m = series["metric"];
      auto& samples = out[m.value("key", "")];
      EXPECT_EQ(m.value("__name__", ""), "rw_" + m.value("key", "").substr(3));
      EXPECT_EQ(m.value("type", ""), "numeric");
      for (const json& v : series["values"]) {
        const int64_t ms = std::llround(v[0].get<double>() * 1000);
        samples[ms] = std::stod(v[1].get<std::string>());
      }
    }
    return out;
  }
  size_t HeldCount() const {
    size_t n = 0;
    for (const auto& [key, samples] : Held()) n += samples.size();
    return n;
  }

  // Every change of every key, exactly.
  void ExpectAllArrived() const {
    auto held = Held();
    ASSERT_EQ(held.size(), static_cast<size_t>(kKeys));
    for (int k = 0; k < kKeys; ++k) {
      const auto& samples = held[Key(k)];
      ASSERT_EQ(samples.size(), static_cast<size_t>(kChangesPerKey)) << Key(k);
      for (int j = 0; j < kChangesPerKey; ++j) {
        auto it = samples.find(TimeOf(j));
        ASSERT_NE(it, samples.end()) << Key(k) << " change " << j;
        EXPECT_EQ(it->second, ValueOf(k, j)) << Key(k) << " change " << j;
      }
    }
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  std::unique_ptr<Process> prometheus_;
  int port_ = 0;
  int64_t base_ms_ = 0;
};

TEST_F(RemoteWriteTest, TenThousandChangesArriveWithTheirValuesAndTimes) {
  ASSERT_TRUE(StartPrometheus());
  ASSERT_TRUE(StartKomoku()) << komoku_->Output();
  // Excluded by the config, and a string: neither is sent.
  MqttClient mqtt(broker_->url(), "it-rw-other");
  mqtt.Publish("komoku/set/other/x", "1");
  mqtt.Publish("komoku/set/rw/text", "\"armed\"");
  PutChanges(0, kChangesPerKey);
  ASSERT_TRUE(
      WaitFor([&] { return HeldCount() >= kKeys * kChangesPerKey; }, std::chrono::seconds(120)))
      << "Prometheus holds " << HeldCount() << " samples; komoku sent "
      << komoku_->Metric("komoku_remote_write_sent_total");
  ExpectAllArrived();
  EXPECT_EQ(komoku_->Metric("komoku_remote_write_sent_total"), kKeys * kChangesPerKey);
  EXPECT_EQ(komoku_->Metric("komoku_remote_write_failed_total"), 0);
  EXPECT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_remote_write_pending") == 0; }));
  EXPECT_EQ(Query("count({__name__=\"other_x\"})").body["data"]["result"].size(), 0u);
  EXPECT_EQ(Query("count({key=\"rw/text\"})").body["data"]["result"].size(), 0u);
}

TEST_F(RemoteWriteTest, ReceiverKilledForThirtySecondsAndKomokuRestartedLosesNothing) {
  ASSERT_TRUE(StartPrometheus());
  ASSERT_TRUE(StartKomoku()) << komoku_->Output();
  PutChanges(0, kChangesPerKey / 2);
  // Some arrived: the stream is under way.
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_remote_write_sent_total") > 0; },
                      std::chrono::seconds(60)));
  prometheus_->Kill();
  const auto killed = std::chrono::steady_clock::now();
  // Meanwhile: the second half, and komoku stopped and started again.
  PutChanges(kChangesPerKey / 2, kChangesPerKey);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_remote_write_retries_total") > 0; },
                      std::chrono::seconds(60)));
  EXPECT_GT(komoku_->Metric("komoku_remote_write_pending"), 0);
  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  std::this_thread::sleep_until(killed + std::chrono::seconds(30));
  ASSERT_TRUE(RestartPrometheus());
  ASSERT_TRUE(
      WaitFor([&] { return HeldCount() >= kKeys * kChangesPerKey; }, std::chrono::seconds(120)))
      << "Prometheus holds " << HeldCount() << " samples";
  ExpectAllArrived();
  EXPECT_EQ(komoku_->Metric("komoku_remote_write_failed_total"), 0);
  EXPECT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_remote_write_pending") == 0; }));
}

}  // namespace
}  // namespace komoku::testing

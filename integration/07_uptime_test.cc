// 07: uptime keys turn false by themselves at last-true + max_time: the
// change is stored at that time and published on komoku/state soon after;
// repeats of true keep the key true; a pending timeout survives a restart,
// and one that fell while komoku was down is recorded at its due time.
#include <gtest/gtest.h>

#include <cstdio>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

// The issue asks for 100 ms; asserting a generous bound keeps a busy machine
// from failing the test, the measured latency is printed.
constexpr double kLatencyBoundSeconds = 0.25;
constexpr double kOneMs = 0.0011;

double ToSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

double NowSeconds() { return ToSeconds(std::chrono::system_clock::now()); }

class UptimeServiceTest : public KomokuTest {
 protected:
  std::string ExtraConfig() const override {
    return "keys:\n"
           "  hb:\n"
           "    type: uptime\n"
           "    max_time: 0.5\n"
           "  pending:\n"
           "    type: uptime\n"
           "    max_time: 4\n"
           "  down:\n"
           "    type: uptime\n"
           "    max_time: 1\n";
  }

  // PUT true over HTTP; the time the change was given.
  double PutTrue(const std::string &key) {
    auto r = komoku_->Put("/api/v1/value?key=" + key, "true");
    EXPECT_EQ(r.status, 200) << r.body;
    return r.Json()["time"].get<double>();
  }

  json Rows(const std::string &key) {
    return komoku_->Get("/api/v1/history?key=" + key + "&from=0").Json()["rows"];
  }

  // The arrival of the first state message on komoku/state/<key> with value
  // false; its payload in `state`.
  bool WaitForFalseState(MqttClient &watcher, const std::string &key, json *state, double *arrived,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    return WaitFor(
        [&] {
          for (const auto &m : watcher.ReceivedWithTimes()) {
            if (m.topic != "komoku/state/" + key || m.payload.empty()) continue;
            json s = json::parse(m.payload, nullptr, false);
            if (s.is_object() && s["value"] == false) {
              *state = s;
              *arrived = ToSeconds(m.arrived);
              return true;
            }
          }
          return false;
        },
        timeout);
  }
};

TEST_F(UptimeServiceTest, TurnsFalseAtLastTruePlusMaxTimeAndIsPublishedPromptly) {
  MqttClient watcher(broker_->url(), "it-watcher");
  watcher.Subscribe("komoku/state/hb");
  const double first = PutTrue("hb");
  // Repeats of true within max_time (and within same_value_resolution, so
  // not stored) keep it true well past the first max_time.
  double last = first;
  while (last - first < 1.2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    auto v = komoku_->Get("/api/v1/value?key=hb").Json();
    ASSERT_EQ(v["value"], true) << "turned false while refreshed: " << v.dump();
    last = PutTrue("hb");
  }
  ASSERT_EQ(Rows("hb").size(), 1u) << "repeats are not stored: " << Rows("hb").dump();

  ASSERT_TRUE(WaitForHistory("hb", 2, std::chrono::milliseconds(5000))) << Rows("hb").dump();
  const double due = last + 0.5;
  auto rows = Rows("hb");
  ASSERT_EQ(rows.size(), 2u) << rows.dump();
  EXPECT_NEAR(rows[0][0].get<double>(), first, kOneMs);
  EXPECT_EQ(rows[0][1], true);
  EXPECT_NEAR(rows[1][0].get<double>(), due, kOneMs) << "false at last true + max_time";
  EXPECT_EQ(rows[1][1], false);
  auto v = komoku_->Get("/api/v1/value?key=hb").Json();
  EXPECT_EQ(v["value"], false);
  EXPECT_NEAR(v["time"].get<double>(), due, kOneMs);

  json state;
  double arrived = 0;
  ASSERT_TRUE(WaitForFalseState(watcher, "hb", &state, &arrived));
  EXPECT_NEAR(state["time"].get<double>(), due, kOneMs) << state.dump();
  EXPECT_EQ(state["previous"], true) << state.dump();
  const double latency = arrived - due;
  std::printf("uptime timeout published %.1f ms after its due time\n", latency * 1000);
  RecordProperty("timeout_publish_latency_ms", static_cast<int>(latency * 1000));
  EXPECT_GE(latency, -kOneMs) << "published before it was due";
  EXPECT_LT(latency, kLatencyBoundSeconds);

  // True again starts a new period.
  const double again = PutTrue("hb");
  ASSERT_TRUE(WaitForHistory("hb", 4, std::chrono::milliseconds(5000))) << Rows("hb").dump();
  rows = Rows("hb");
  EXPECT_NEAR(rows[2][0].get<double>(), again, kOneMs);
  EXPECT_EQ(rows[2][1], true);
  EXPECT_NEAR(rows[3][0].get<double>(), again + 0.5, kOneMs);
  EXPECT_EQ(rows[3][1], false);
  EXPECT_EQ(komoku_->Metric("komoku_uptime_timeouts_total"), 2);
}

TEST_F(UptimeServiceTest, RepeatsOverMqttKeepItTrue) {
  // A heartbeat over MQTT every 100 ms for 1.5 s (three max_times).
  for (int i = 0; i < 15; ++i) {
    mqtt_->Publish("komoku/set/hb", "ON");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto rows = Rows("hb");
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0][1], true);
  ASSERT_TRUE(WaitForHistory("hb", 2, std::chrono::milliseconds(5000)));
  EXPECT_EQ(Rows("hb")[1][1], false);
}

TEST_F(UptimeServiceTest, RestartReArmsAPendingTimeoutFromTheLastRefresh) {
  MqttClient watcher(broker_->url(), "it-watcher");
  watcher.Subscribe("komoku/state/pending");
  const double first = PutTrue("pending");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // Not stored (a repeat), but it moves the timeout.
  const double last = PutTrue("pending");
  ASSERT_EQ(Rows("pending").size(), 1u);
  const double due = last + 4;

  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  const double restarted = NowSeconds();
  ASSERT_LT(restarted, due - 0.5) << "the restart took too long for this test";
  auto v = komoku_->Get("/api/v1/value?key=pending").Json();
  EXPECT_EQ(v["value"], true) << v.dump();

  ASSERT_TRUE(WaitForHistory("pending", 2, std::chrono::milliseconds(10000)));
  auto rows = Rows("pending");
  ASSERT_EQ(rows.size(), 2u) << rows.dump();
  EXPECT_NEAR(rows[0][0].get<double>(), first, kOneMs);
  EXPECT_NEAR(rows[1][0].get<double>(), due, kOneMs)
      << "re-armed from the last refresh (" << last << "), not from the stored true (" << first
      << ") or the restart (" << restarted << ")";
  EXPECT_EQ(rows[1][1], false);

  json state;
  double arrived = 0;
  ASSERT_TRUE(WaitForFalseState(watcher, "pending", &state, &arrived));
  EXPECT_NEAR(state["time"].get<double>(), due, kOneMs);
  const double latency = arrived - due;
  std::printf("re-armed uptime timeout published %.1f ms after its due time\n", latency * 1000);
  EXPECT_LT(latency, kLatencyBoundSeconds);
}

TEST_F(UptimeServiceTest, TimeoutThatFellWhileDownIsRecordedAtItsDueTime) {
  const double last = PutTrue("down");
  ASSERT_EQ(komoku_->Stop(), 0);
  const double due = last + 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitForHistory("down", 2, std::chrono::milliseconds(5000)));
  auto rows = Rows("down");
  ASSERT_EQ(rows.size(), 2u) << rows.dump();
  EXPECT_NEAR(rows[1][0].get<double>(), due, kOneMs) << "at its due time, not at the restart";
  EXPECT_EQ(rows[1][1], false);
  auto v = komoku_->Get("/api/v1/value?key=down").Json();
  EXPECT_EQ(v["value"], false);
  EXPECT_NEAR(v["time"].get<double>(), due, kOneMs);
}

TEST_F(UptimeServiceTest, TimeoutThatFellWhileDownIsPublishedAsTheState) {
  const double last = PutTrue("down");
  ASSERT_EQ(komoku_->Stop(), 0);
  const double due = last + 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitForHistory("down", 2, std::chrono::milliseconds(5000)));
  // Whoever asks the broker afterwards sees the key false, at its due time.
  MqttClient late(broker_->url(), "it-late");
  late.Subscribe("komoku/state/down");
  json state;
  double arrived = 0;
  ASSERT_TRUE(WaitForFalseState(late, "down", &state, &arrived, std::chrono::milliseconds(3000)))
      << "komoku/state/down still says: "
      << (late.Received().empty() ? "(nothing)" : late.Received().back().second);
  EXPECT_NEAR(state["time"].get<double>(), due, kOneMs);
}

}  // namespace
}  // namespace komoku::testing

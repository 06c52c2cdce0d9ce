// 13: derived state back to MQTT against the real binary and Mosquitto: the
// wiring, in seconds. The 10-second bucket aggregates of a numeric, a
// boolean, a string and a counter key reach a subscriber soon after the
// bucket's end, with values computed by hand and equal to what HTTP
// history/stats answer for the same window; a rolling statistic equals
// /stats for its window; Home Assistant discovery configs are JSON with the
// fields Home Assistant needs; a restart inside a bucket neither loses nor
// duplicates a bucket's publication. What the publisher does at longer
// resolutions, late changes, catch-up and staleness over minutes is tested
// with a manual clock in tests/derived.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <thread>
#include <tuple>
#include <vector>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

// The issue asks for 1 s; a busy machine must not fail the test, so the
// assertion is generous and the measured latency is printed.
constexpr double kLatencyBoundSeconds = 5.0;

double ToSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}
double NowSeconds() { return ToSeconds(std::chrono::system_clock::now()); }

std::string Fixed(double seconds) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", seconds);
  return buf;
}

// Sleeps until at least `left` seconds remain in the current bucket of
// `step` seconds, and at least `into` seconds have passed in it; returns
// the bucket's start.
double WaitForRoomInBucket(double step, double into, double left) {
  for (;;) {
    const double now = NowSeconds();
    const double start = std::floor(now / step) * step;
    if (now - start >= into && start + step - now >= left) return start;
    const double wake = now - start < into ? start + into : start + step + into;
    std::this_thread::sleep_for(std::chrono::duration<double>(wake - now + 0.01));
  }
}

class DerivedServiceTest : public KomokuTest {
 protected:
  std::string ExtraConfig() const override {
    return "keys:\n"
           "  temp:\n    type: numeric\n"
           "  door:\n    type: boolean\n"
           "  mode:\n    type: string\n"
           "  energy:\n    type: counter\n"
           "  hb:\n    type: numeric\n    stale_after: 600\n"
           "derived:\n"
           "  discovery: true\n"
           "  aggregates:\n"
           "    - key: temp\n      every: [1m, 10s, 5s]\n      unit: \"\u00b0C\"\n"
           "      device_class: temperature\n"
           "    - key: door\n      every: [1m, 10s]\n"
           "    - key: mode\n      every: [1m, 10s]\n"
           "    - key: energy\n      every: [1m, 10s]\n"
           "  rolling:\n"
           "    - key: door\n      name: open_share_1h\n      stat: share\n      value: true\n"
           "      window: 1h\n"
           "    - key: temp\n      stat: max\n      window: 24h\n"
           "  discovery_keys:\n"
           "    - key: door\n      device_class: door\n"
           "    - temp\n";
  }

  void PutAt(const std::string& key, const std::string& value, double t) {
    auto r = komoku_->Put("/api/v1/value?key=" + key + "&time=" + Fixed(t), value);
    ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  }

  json GetJson(const std::string& q) {
    auto r = komoku_->Get(q);
    EXPECT_EQ(r.status, 200) << q << " -> " << r.body;
    return r.Json();
  }

  // The first message on `topic` whose payload has "start" == start and no
  // correction mark; its arrival time in `arrived`.
  static bool WaitForBucket(MqttClient& watcher, const std::string& topic, double start,
                            json* payload, double* arrived, std::chrono::milliseconds timeout) {
    return WaitFor(
        [&] {
          for (const auto& m : watcher.ReceivedWithTimes()) {
            if (m.topic != topic) continue;
            json p = json::parse(m.payload, nullptr, false);
            if (!p.is_object() || p.contains("correction")) continue;
            if (std::fabs(p["start"].get<double>() - start) < 1e-6) {
              *payload = p;
              *arrived = ToSeconds(m.arrived);
              return true;
            }
          }
          return false;
        },
        timeout);
  }
};

TEST_F(DerivedServiceTest, TenSecondAggregatesOfEveryKindAtBucketEndEqualHttp) {
  MqttClient watcher(broker_->url(), "it-derived-watcher");
  watcher.Subscribe("komoku/derived/#");
  // Changes at B+1..B+4 s of the next bucket to start at least a second from
  // now, put at once (a time up to a day ahead is accepted): every PUT has
  // until the bucket's end, at least 11 s, however busy the machine.
  const double step = 10;
  const double b = std::ceil((NowSeconds() + 1) / step) * step;
  PutAt("temp", "20", b + 1);
  PutAt("temp", "22", b + 2);
  PutAt("door", "false", b + 1);
  PutAt("door", "true", b + 2);
  PutAt("door", "false", b + 4);
  PutAt("mode", "eco", b + 1);
  PutAt("mode", "comfort", b + 3);
  PutAt("energy", "10", b + 1);
  PutAt("energy", "12.5", b + 2);
  PutAt("energy", "1", b + 3);  // a reset: counts 1
  ASSERT_LT(NowSeconds(), b + step) << "the PUTs took longer than the bucket";

  const double end = b + step;
  const auto timeout =
      std::chrono::milliseconds(static_cast<int>((end - NowSeconds() + 30) * 1000));
  json temp, door, mode, energy;
  double arrived = 0, ignored = 0;
  ASSERT_TRUE(WaitForBucket(watcher, "komoku/derived/temp/10s", b, &temp, &arrived, timeout));
  const double latency = arrived - end;
  std::printf("10-second aggregate arrived %.1f ms after the bucket's end\n", latency * 1000);
  RecordProperty("bucket_publish_latency_ms", static_cast<int>(latency * 1000));
  EXPECT_GE(latency, 0) << "published before the bucket closed";
  EXPECT_LT(latency, kLatencyBoundSeconds);

  // By hand: unknown for the first second, 20 for 1 s, 22 for 8 s.
  EXPECT_EQ(temp["end"], end);
  EXPECT_DOUBLE_EQ(temp["avg"].get<double>(), 21);
  EXPECT_DOUBLE_EQ(temp["twavg"].get<double>(), (20.0 * 1 + 22.0 * 8) / 9);
  EXPECT_EQ(temp["min"], 20.0);
  EXPECT_EQ(temp["max"], 22.0);
  EXPECT_EQ(temp["count"], 2);
  const std::string range = "&from=" + Fixed(b) + "&to=" + Fixed(end);
  json h = GetJson("/api/v1/history?key=temp&step=10s&agg=avg,twavg,min,max,count" + range);
  ASSERT_EQ(h["rows"].size(), 1u) << h.dump();
  EXPECT_EQ(h["rows"][0],
            json::array({b, temp["avg"], temp["twavg"], temp["min"], temp["max"], temp["count"]}));

  ASSERT_TRUE(WaitForBucket(watcher, "komoku/derived/door/10s", b, &door, &ignored,
                            std::chrono::milliseconds(10000)));
  EXPECT_DOUBLE_EQ(door["time"]["true"].get<double>(), 2);
  EXPECT_DOUBLE_EQ(door["time"]["false"].get<double>(), 7);
  EXPECT_DOUBLE_EQ(door["time"]["unknown"].get<double>(), 1);
  EXPECT_EQ(door["changes"], 2);
  json s = GetJson("/api/v1/stats?key=door" + range);
  EXPECT_EQ(door["time"], s["time"]);
  EXPECT_EQ(door["share"], s["share"]);
  EXPECT_EQ(door["changes"], s["changes"]);

  ASSERT_TRUE(WaitForBucket(watcher, "komoku/derived/mode/10s", b, &mode, &ignored,
                            std::chrono::milliseconds(10000)));
  EXPECT_DOUBLE_EQ(mode["time"]["eco"].get<double>(), 2);
  EXPECT_DOUBLE_EQ(mode["time"]["comfort"].get<double>(), 7);
  EXPECT_EQ(mode["changes"], 1);
  s = GetJson("/api/v1/stats?key=mode" + range);
  EXPECT_EQ(mode["time"], s["time"]);
  EXPECT_EQ(mode["share"], s["share"]);

  ASSERT_TRUE(WaitForBucket(watcher, "komoku/derived/energy/10s", b, &energy, &ignored,
                            std::chrono::milliseconds(10000)));
  EXPECT_DOUBLE_EQ(energy["increase"].get<double>(), 3.5);
  h = GetJson("/api/v1/history?key=energy&step=10s&agg=increase,rate" + range);
  EXPECT_EQ(h["rows"][0][1], energy["increase"]);
  EXPECT_EQ(h["rows"][0][2], energy["rate"]);

  // Rolling statistics: the newest publication equals /stats for its window.
  const std::vector<std::tuple<std::string, std::string, std::string>> rolling = {
      {"komoku/derived/door/open_share_1h", "door", "share"},
      {"komoku/derived/temp/max_24h", "temp", "max"}};
  for (const auto& [topic, key, field] : rolling) {
    json last;
    for (const auto& [t, payload] : watcher.Received()) {
      if (t == topic) last = json::parse(payload);
    }
    ASSERT_TRUE(last.is_object()) << topic;
    json st = GetJson("/api/v1/stats?key=" + key + "&from=" + Fixed(last["from"].get<double>()) +
                      "&to=" + Fixed(last["to"].get<double>()));
    json expected = field == "share" ? st["share"]["true"] : st[field];
    EXPECT_EQ(last["value"], expected) << topic << " " << last.dump() << " vs " << st.dump();
  }
  EXPECT_GE(komoku_->Metric("komoku_derived_published_total"), 4);
  EXPECT_EQ(komoku_->Metric("komoku_derived_dropped_total"), 0);
}

TEST_F(DerivedServiceTest, HomeAssistantDiscoveryConfigsAreValidJson) {
  MqttClient ha(broker_->url(), "it-home-assistant");
  ha.Subscribe("homeassistant/#");
  const std::vector<std::string> expected = {
      "homeassistant/sensor/komoku_temp_1m/config",
      "homeassistant/sensor/komoku_temp_10s/config",
      "homeassistant/sensor/komoku_door_1m/config",
      "homeassistant/sensor/komoku_door_open_share_1h/config",
      "homeassistant/binary_sensor/komoku_hb_stale/config",
      "homeassistant/binary_sensor/komoku_door_state/config",
      "homeassistant/sensor/komoku_temp_state/config",
  };
  std::map<std::string, json> configs;
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& [topic, payload] : ha.Received()) {
      configs[topic] = json::parse(payload, nullptr, false);
    }
    for (const std::string& t : expected) {
      if (!configs.count(t)) return false;
    }
    return true;
  })) << configs.size()
      << " configs";
  for (const auto& [topic, c] : configs) {
    SCOPED_TRACE(topic);
    ASSERT_TRUE(c.is_object()) << "not JSON";
    const std::string id = topic.substr(topic.find("/komoku_") + 1,
                                        topic.rfind("/config") - topic.find("/komoku_") - 1);
    EXPECT_EQ(c["unique_id"], id);
    EXPECT_TRUE(c["name"].is_string());
    ASSERT_TRUE(c["state_topic"].is_string());
    EXPECT_EQ(c["availability_topic"], "komoku/status");
    EXPECT_EQ(c["payload_available"], "online");
    EXPECT_EQ(c["payload_not_available"], "offline");
    EXPECT_TRUE(c["device"]["identifiers"].is_array());
    EXPECT_TRUE(c["device"]["name"].is_string());
    // The device page in Home Assistant links to Komoku's web page.
    EXPECT_EQ(c["device"]["configuration_url"],
              "http://127.0.0.1:" + std::to_string(komoku_->http_port()) + "/");
  }
  const json& temp = configs["homeassistant/sensor/komoku_temp_1m/config"];
  EXPECT_EQ(temp["state_topic"], "komoku/derived/temp/1m");
  EXPECT_EQ(temp["unit_of_measurement"], "\u00b0C");
  EXPECT_EQ(temp["device_class"], "temperature");
  EXPECT_EQ(temp["state_class"], "measurement");
  EXPECT_EQ(temp["value_template"], "{{ value_json.twavg }}");
  const json& door = configs["homeassistant/binary_sensor/komoku_door_state/config"];
  EXPECT_EQ(door["state_topic"], "komoku/state/door");
  EXPECT_EQ(door["device_class"], "door");
  const json& stale = configs["homeassistant/binary_sensor/komoku_hb_stale/config"];
  EXPECT_EQ(stale["state_topic"], "komoku/derived/hb/stale");
  EXPECT_EQ(stale["payload_on"], "true");
  // The stale state itself: hb has no value yet, so it is stale.
  MqttClient watcher(broker_->url(), "it-stale-watcher");
  watcher.Subscribe("komoku/derived/hb/stale");
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& [t, p] : watcher.Received()) {
      if (p == "true") return true;
    }
    return false;
  }));
  PutAt("hb", "1", NowSeconds());
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& [t, p] : watcher.Received()) {
      if (p == "false") return true;
    }
    return false;
  }));
}

TEST_F(DerivedServiceTest, RestartInsideABucketNeitherLosesNorDuplicatesIt) {
  MqttClient watcher(broker_->url(), "it-restart-watcher");
  watcher.Subscribe("komoku/derived/temp/5s");
  // Inside a 5 s bucket with at least 3.5 s left: a value, then a clean
  // restart, then the bucket's end. (A restart slower than that publishes
  // the bucket as catch-up: still once.)
  const double step = 5;
  const double b = WaitForRoomInBucket(step, 0.6, 3.5);
  PutAt("temp", "30", b + 0.5);
  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  json payload;
  double arrived = 0;
  ASSERT_TRUE(WaitForBucket(watcher, "komoku/derived/temp/5s", b, &payload, &arrived,
                            std::chrono::milliseconds(40000)));
  EXPECT_EQ(payload["count"], 1);
  EXPECT_EQ(payload["max"], 30.0);
  // The next bucket, then count: every bucket from the first seen to the
  // last seen exactly once.
  ASSERT_TRUE(WaitForBucket(watcher, "komoku/derived/temp/5s", b + step, &payload, &arrived,
                            std::chrono::milliseconds(40000)));
  std::map<double, int> seen;
  for (const auto& [t, p] : watcher.Received()) {
    json j = json::parse(p);
    if (!j.contains("correction")) ++seen[j["start"].get<double>()];
  }
  ASSERT_GE(seen.size(), 2u);
  double expect = seen.begin()->first;
  for (const auto& [start, n] : seen) {
    EXPECT_EQ(start, expect) << "a bucket is missing before " << start;
    EXPECT_EQ(n, 1) << "bucket " << start << " published " << n << " times";
    expect = start + step;
  }
  EXPECT_EQ(seen.count(b + step), 1u);
  EXPECT_EQ(seen.count(b), 1u);
}

}  // namespace
}  // namespace komoku::testing

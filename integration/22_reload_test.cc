// 22: SIGHUP reloads the configuration of the real binary against a real
// Mosquitto. New mapping rules, key definitions and derived definitions take
// effect without a restart and without losing one of the messages streamed
// across the reloads; a rule taken out stops mapping its topics. A bad new
// config (a YAML error, a type change the store refuses, a derived
// definition on an unknown key) is refused as a whole, says why in the log,
// and leaves the running configuration as it was.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

const char kRuleA[] =
    "  - name: sensors\n"
    "    topic: sensors/+/temp\n"
    "    key: \"{1}/temp\"\n"
    "    type: numeric\n";
const char kRuleB[] =
    "  - name: plain\n"
    "    topic: plain/+/state\n"
    "    key: \"{1}/state\"\n"
    "    type: string\n";

class ReloadTest : public KomokuTest {
 protected:
  std::string ExtraConfig() const override {
    return std::string("mappings:\n") + kRuleA +
           "keys:\n"
           "  room/setpoint:\n    type: numeric\n";
  }

  long long Reloads(const char* result) {
    return komoku_->Metric(std::string("komoku_config_reloads_total{result=\"") + result + "\"}");
  }

  // Writes `extra_yaml` as the config's tail, sends SIGHUP and waits for
  // the reload to be counted; "ok", "refused", or "" when it never was.
  std::string Reload(const std::string& extra_yaml) {
    const long long ok = Reloads("ok");
    const long long refused = Reloads("refused");
    komoku_->RewriteConfig(extra_yaml);
    EXPECT_EQ(kill(komoku_->process()->pid(), SIGHUP), 0);
    std::string result;
    WaitFor([&] {
      if (Reloads("ok") > ok) result = "ok";
      if (Reloads("refused") > refused) result = "refused";
      return !result.empty();
    });
    return result;
  }

  size_t Rows(const std::string& key) {
    auto r = komoku_->Get("/api/v1/history?key=" + key + "&from=0");
    if (r.status != 200) return 0;
    json j = r.Json();
    return j["rows"].size();
  }

  // The key as Komoku's "keys" operation lists it (type, opts, value);
  // null when there is no such key.
  json Key(const std::string& key) {
    const json reply = komoku_->Post("/api/v1/komoku", R"({"keys": {"values": true}})").Json();
    for (const json& k : reply["result"]) {
      if (k["key"] == key) return k;
    }
    return nullptr;
  }

  // Publishes `value` on the sentinel topic (mapped by rule B) and waits
  // until it is stored: every message published before it has been handled.
  void Sync(int n) {
    mqtt_->Publish("plain/sentinel/state", "s" + std::to_string(n));
    ASSERT_TRUE(WaitFor([&] {
      json k = Key("sentinel/state");
      return k.is_object() && k["value"] == "s" + std::to_string(n);
    })) << "sentinel "
        << n << " not stored";
  }
};

TEST_F(ReloadTest, NewRulesKeysAndDerivedApplyWithoutLosingMessages) {
  MqttClient watcher(broker_->url(), "it-reload-watcher");
  watcher.Subscribe("komoku/derived/#");

  // A stream of distinct values on a mapped topic across three reloads.
  constexpr int kMessages = 300;
  std::atomic<bool> publishing{true};
  std::thread publisher([&] {
    MqttClient client(broker_->url(), "it-reload-stream");
    for (int i = 1; i <= kMessages; ++i) {
      client.Publish("sensors/kitchen/temp", std::to_string(20 + i * 0.01));
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    publishing = false;
  });
  const std::string with_b = std::string("mappings:\n") + kRuleA + kRuleB +
                             "keys:\n"
                             "  room/setpoint:\n    type: numeric\n"
                             "  room/humidity:\n    type: numeric\n    stale_after: 600\n"
                             "derived:\n"
                             "  rolling:\n"
                             "    - key: room/setpoint\n      name: max_1h\n      stat: max\n"
                             "      window: 1h\n";
  EXPECT_EQ(Reload(with_b), "ok");
  EXPECT_EQ(Reload(ExtraConfig()), "ok");
  EXPECT_EQ(Reload(with_b), "ok");
  publisher.join();
  ASSERT_TRUE(WaitForHistory("kitchen/temp", kMessages, std::chrono::milliseconds(20000)))
      << Rows("kitchen/temp") << " of " << kMessages << " stored";
  EXPECT_EQ(Rows("kitchen/temp"), static_cast<size_t>(kMessages));
  EXPECT_EQ(komoku_->Metric("komoku_config_last_reload_successful"), 1);

  // Rule B maps now; the new key definition is in force.
  mqtt_->Publish("plain/boiler/state", "heating");
  ASSERT_TRUE(WaitForHistory("boiler/state", 1));
  EXPECT_EQ(Key("boiler/state")["type"], "string");
  json humidity = Key("room/humidity");
  ASSERT_TRUE(humidity.is_object()) << "room/humidity not defined by the reload";
  EXPECT_EQ(humidity["type"], "numeric");
  EXPECT_EQ(humidity["opts"]["stale_after"], 600) << humidity.dump();

  // The new rolling statistic is published.
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=room/setpoint", "21.5").status / 100, 2);
  EXPECT_TRUE(WaitFor([&] {
    for (const auto& [topic, payload] : watcher.Received()) {
      if (topic == "komoku/derived/room/setpoint/max_1h") return true;
    }
    return false;
  })) << "no komoku/derived/room/setpoint/max_1h after the reload";

  // Rule A taken out: its topic is no longer mapped.
  EXPECT_EQ(Reload(std::string("mappings:\n") + kRuleB), "ok");
  mqtt_->Publish("sensors/kitchen/temp", "99");
  Sync(1);
  EXPECT_EQ(Rows("kitchen/temp"), static_cast<size_t>(kMessages));
  EXPECT_TRUE(komoku_->process()->Running());
  EXPECT_NE(komoku_->Output().find("configuration reloaded from"), std::string::npos);
}

TEST_F(ReloadTest, BadConfigIsRefusedAndTheRunningOneStays) {
  const std::string good = std::string("mappings:\n") + kRuleA + kRuleB;
  ASSERT_EQ(Reload(good), "ok");
  mqtt_->Publish("sensors/kitchen/temp", "20");
  ASSERT_TRUE(WaitForHistory("kitchen/temp", 1));

  // A YAML error: named with its file and line.
  EXPECT_EQ(Reload("mappings: [\n"), "refused");
  EXPECT_EQ(komoku_->Metric("komoku_config_last_reload_successful"), 0);
  EXPECT_NE(komoku_->Output().find(
                "reload refused, the running configuration stays: " + komoku_->config_path() + ":"),
            std::string::npos)
      << komoku_->Output();

  // A type change the store refuses, together with a new rule: neither the
  // rule nor any other key definition is applied.
  const char kRuleC[] =
      "  - name: extra\n"
      "    topic: extra/+\n"
      "    key: \"extra/{1}\"\n";
  EXPECT_EQ(Reload(good + kRuleC +
                   "keys:\n"
                   "  new/key:\n    type: boolean\n"
                   "  kitchen/temp:\n    type: string\n"),
            "refused");
  EXPECT_EQ(Key("kitchen/temp")["type"], "numeric");
  EXPECT_TRUE(Key("new/key").is_null()) << "a key of a refused config was defined";
  mqtt_->Publish("extra/one", "1");
  Sync(1);
  EXPECT_TRUE(Key("extra/one").is_null()) << "a rule of a refused config was applied";

  // A derived definition on a key that does not exist.
  EXPECT_EQ(Reload(good + "derived:\n  aggregates:\n    - key: no/such/key\n      every: 1m\n"),
            "refused");
  EXPECT_NE(komoku_->Output().find("unknown key 'no/such/key'"), std::string::npos);

  // The running rules still map.
  mqtt_->Publish("sensors/kitchen/temp", "21");
  ASSERT_TRUE(WaitForHistory("kitchen/temp", 2));
  EXPECT_EQ(komoku_->Metric("komoku_config_reloads_total{result=\"refused\"}"), 3);

  // A good config again: the new rule maps.
  EXPECT_EQ(Reload(good + kRuleC + "derived:\n  tz: Europe/Berlin\n"), "ok");
  EXPECT_EQ(komoku_->Metric("komoku_config_last_reload_successful"), 1);
  mqtt_->Publish("extra/one", "1");
  ASSERT_TRUE(WaitFor([&] { return Key("extra/one").is_object(); }));
  EXPECT_TRUE(komoku_->process()->Running());
}

TEST_F(ReloadTest, RestartOnlySettingsAreNamedAndKeepTheirRunningValues) {
  // The harness's config holds mqtt: first; a second mqtt: section would be
  // a duplicate, so the change is to log.level (reloaded) and to the HTTP
  // limit (restart only), written in the generated sections' place.
  komoku_->RewriteConfig(ExtraConfig());
  std::string config;
  {
    std::ifstream in(komoku_->config_path());
    config.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string http = "http:\n  listen: 127.0.0.1:0\n";
  const size_t at = config.find(http);
  ASSERT_NE(at, std::string::npos) << config;
  config.insert(at + http.size(), "  max_points: 5\n");
  const std::string level = "level: debug";
  config.replace(config.find(level), level.size(), "level: info");
  {
    std::ofstream out(komoku_->config_path() + ".tmp");
    out << config;
  }
  std::filesystem::rename(komoku_->config_path() + ".tmp", komoku_->config_path());
  const long long ok = Reloads("ok");
  ASSERT_EQ(kill(komoku_->process()->pid(), SIGHUP), 0);
  ASSERT_TRUE(WaitFor([&] { return Reloads("ok") > ok; })) << komoku_->Output();
  EXPECT_NE(komoku_->Output().find("take effect at the next restart: http.max_points"),
            std::string::npos)
      << komoku_->Output();
  // max_points is still the running 10,000: 20 rows are answered, where 5
  // would refuse them.
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(komoku_->Put("/api/v1/value?key=room/setpoint&time=" + std::to_string(1000 + i),
                           std::to_string(i))
                      .status /
                  100,
              2);
  }
  auto r = komoku_->Get("/api/v1/history?key=room/setpoint&from=0");
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace komoku::testing

// The example rules shown in config/komoku.yaml (and docs/mapping.md),
// parsed as the config loader parses them, against every example payload of
// issue 7: the keys, values and types each message makes.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "app/config.h"
#include "bridge/mapping.h"
#include "wire/input.h"

namespace komoku::bridge {
namespace {

constexpr int64_t kNow = 1795306000000;  // 2026-11-22

struct Expected {
  std::string key;
  std::string value;  // JSON
  const char* type;   // the key's type: the rule's, else the guess
};

struct Example {
  std::string topic;
  std::string payload;
  std::string rule;
  std::vector<Expected> changes;
  std::optional<int64_t> time_ms = std::nullopt;
};

class MappingExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<app::Config> config = app::ParseConfig(app::MappingExampleYaml(), "example.yaml");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    auto engine = MappingEngine::Compile(config->mappings);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine.value());
  }

  // The changes in any order (JSON objects come sorted by field name).
  void Check(Example ex) {
    SCOPED_TRACE(ex.topic + " " + ex.payload);
    MappingResult r = engine_->Map(ex.topic, ex.payload, kNow);
    std::sort(r.changes.begin(), r.changes.end(),
              [](const MappedChange& a, const MappedChange& b) { return a.key < b.key; });
    std::sort(ex.changes.begin(), ex.changes.end(),
              [](const Expected& a, const Expected& b) { return a.key < b.key; });
    ASSERT_FALSE(r.refusal) << r.refusal->reason << ": " << r.refusal->message;
    ASSERT_EQ(r.matched.size(), 1u);
    EXPECT_EQ(engine_->RuleLabel(r.matched[0]), ex.rule);
    ASSERT_EQ(r.changes.size(), ex.changes.size());
    for (size_t i = 0; i < ex.changes.size(); ++i) {
      const MappedChange& c = r.changes[i];
      const MappingRule& rule = engine_->rule(c.rule);
      EXPECT_EQ(c.key, ex.changes[i].key);
      EXPECT_EQ(store::ValueToJson(c.value), nlohmann::json::parse(ex.changes[i].value)) << c.key;
      store::KeyType type = rule.type ? *rule.type : store::GuessType(c.value);
      EXPECT_STREQ(store::KeyTypeName(type), ex.changes[i].type) << c.key;
      EXPECT_EQ(c.time_ms, ex.time_ms) << c.key;
    }
  }

  std::unique_ptr<MappingEngine> engine_;
};

TEST_F(MappingExamplesTest, TheExampleIsTheCommentedBlockOfTheConfigExample) {
  std::istringstream yaml(app::MappingExampleYaml());
  const std::string example = app::ConfigExample();
  for (std::string line; std::getline(yaml, line);) {
    EXPECT_NE(example.find("\n#" + line + "\n"), std::string::npos) << line;
  }
  EXPECT_EQ(engine_->size(), 13u);
}

TEST_F(MappingExamplesTest, Zigbee2mqtt) {
  Check({"zigbee2mqtt/kitchen_sensor",
         R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})",
         "zigbee2mqtt",
         {{"kitchen_sensor/temperature", "21.43", "numeric"},
          {"kitchen_sensor/humidity", "48.1", "numeric"},
          {"kitchen_sensor/battery", "97", "numeric"}}});
  Check({"zigbee2mqtt/front_door",
         R"({"contact":false,"battery":100})",
         "zigbee2mqtt",
         {{"front_door/contact", "false", "boolean"}, {"front_door/battery", "100", "numeric"}}});
  Check({"zigbee2mqtt/front_door/availability",
         R"({"state":"online"})",
         "z2m_availability",
         {{"front_door/available", "true", "boolean"}}});
  Check({"zigbee2mqtt/front_door/availability",
         "offline",
         "z2m_availability",
         {{"front_door/available", "false", "boolean"}}});
  Check({"zigbee2mqtt/hall_light",
         R"({"state":"ON","brightness":254,"update":{"state":"idle"}})",
         "zigbee2mqtt",
         {{"hall_light/state", "true", "boolean"}, {"hall_light/brightness", "254", "numeric"}}});
  EXPECT_TRUE(engine_->Map("zigbee2mqtt/bridge/state", "online", kNow).matched.empty());
  EXPECT_TRUE(engine_->Map("zigbee2mqtt/bridge", "x", kNow).matched.empty());
}

TEST_F(MappingExamplesTest, Tasmota) {
  Check({"tele/plug1/SENSOR",
         R"({"Time":"2026-11-20T10:00:00","ENERGY":{"Total":12.345,"Power":57,"Voltage":231}})",
         "tasmota_sensor",
         {{"plug1/energy_total", "12.345", "numeric"},
          {"plug1/power", "57", "numeric"},
          {"plug1/voltage", "231", "numeric"}},
         1795168800000});
  Check({"stat/plug1/POWER", "ON", "tasmota_power", {{"plug1/relay", "true", "boolean"}}});
  Check({"stat/plug1/POWER", "OFF", "tasmota_power", {{"plug1/relay", "false", "boolean"}}});
  Check({"tele/plug1/LWT", "Online", "tasmota_lwt", {{"plug1/online", "true", "boolean"}}});
  Check({"tele/plug1/LWT", "Offline", "tasmota_lwt", {{"plug1/online", "false", "boolean"}}});
}

TEST_F(MappingExamplesTest, Shelly) {
  Check({"shellies/shelly1-ABC/relay/0",
         "on",
         "shelly_relay",
         {{"shelly1-ABC/relay/0", "true", "boolean"}}});
  Check({"shellies/shellyht-XYZ/sensor/temperature",
         "21.5",
         "shelly_sensor",
         {{"shellyht-XYZ/temperature", "21.5", "numeric"}}});
}

TEST_F(MappingExamplesTest, EspHome) {
  Check({"livingroom/sensor/temperature/state",
         "21.50",
         "esphome_sensor",
         {{"livingroom/temperature", "21.5", "numeric"}}});
  Check({"livingroom/binary_sensor/motion/state",
         "ON",
         "esphome_binary_sensor",
         {{"livingroom/motion", "true", "boolean"}}});
  Check({"livingroom/status",
         "online",
         "esphome_status",
         {{"livingroom/online", "true", "boolean"}}});
  Check({"livingroom/status",
         "offline",
         "esphome_status",
         {{"livingroom/online", "false", "boolean"}}});
}

TEST_F(MappingExamplesTest, Homie) {
  Check({"homie/weather/outside/temperature",
         "3.5",
         "homie",
         {{"weather/outside/temperature", "3.5", "numeric"}}});
  Check({"homie/weather/outside/condition",
         "rain",
         "homie",
         {{"weather/outside/condition", "\"rain\"", "string"}}});
  Check({"homie/weather/$state", "ready", "homie_state", {{"weather/online", "true", "boolean"}}});
  Check({"homie/weather/$state", "lost", "homie_state", {{"weather/online", "false", "boolean"}}});
  for (const char* attribute : {"homie/weather/outside/$name", "homie/weather/outside/$properties",
                                "homie/weather/$fw/name", "homie/weather/$name",
                                "homie/weather/outside/temperature/$datatype"}) {
    EXPECT_TRUE(engine_->Map(attribute, "x", kNow).matched.empty()) << attribute;
  }
}

TEST_F(MappingExamplesTest, PlainScript) {
  Check({"home/boiler/state",
         "heating",
         "script_state",
         {{"boiler/state", "\"heating\"", "string"}}});
}

TEST_F(MappingExamplesTest, BadPayloadsAreRefusedWithAReason) {
  struct Bad {
    const char* topic;
    const char* payload;
    const char* reason;
  };
  for (const Bad& b : std::vector<Bad>{
           {"zigbee2mqtt/kitchen_sensor", "{\"temperature\":", "bad_json"},
           {"zigbee2mqtt/kitchen_sensor", "21.4", "not_object"},
           {"tele/plug1/SENSOR", R"({"Time":"soon","ENERGY":{"Power":1}})", "bad_time"},
           {"stat/plug1/POWER", "TOGGLE", "bad_boolean"},
           {"tele/plug1/LWT", "Maybe", "bad_boolean"},
           {"shellies/shellyht-XYZ/sensor/temperature", "warm", "wrong_type"},
           {"livingroom/sensor/temperature/state", "nan", "wrong_type"},
       }) {
    MappingResult r = engine_->Map(b.topic, b.payload, kNow);
    ASSERT_TRUE(r.refusal) << b.topic << " " << b.payload;
    EXPECT_EQ(r.refusal->reason, b.reason)
        << b.topic << " " << b.payload << ": " << r.refusal->message;
    EXPECT_TRUE(r.changes.empty());
  }
}

}  // namespace
}  // namespace komoku::bridge

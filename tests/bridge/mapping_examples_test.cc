// The example rules shown in config/komoku.yaml (and docs/mapping.md),
// parsed as the config loader parses them, against every example payload of
// issues 7 and 24: the keys, values and types each message makes. Each
// payload is as the firmware publishes it; the comment before it names the
// document or source it comes from.
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
    ASSERT_FALSE(r.matched.empty());
    // The rule that ended the walk (earlier ones said continue: true).
    EXPECT_EQ(engine_->RuleLabel(r.matched.back()), ex.rule);
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
  EXPECT_EQ(engine_->size(), 25u);
}

// Payloads as zigbee2mqtt publishes them: zigbee2mqtt.io/guide/usage/
// mqtt_topics_and_messages.html (device state, availability) and the device
// pages (Aqara MCCGQ11LM contact, WXKG11LM button's action).
TEST_F(MappingExamplesTest, Zigbee2mqtt) {
  Check({"zigbee2mqtt/kitchen_sensor",
         R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})",
         "zigbee2mqtt",
         {{"kitchen_sensor/temperature", "21.43", "numeric"},
          {"kitchen_sensor/humidity", "48.1", "numeric"},
          {"kitchen_sensor/battery", "97", "numeric"}}});
  // contact false: the magnet is away, the door open; the key is true while
  // open, as discovery makes it from payload_on: false (docs/mapping.md).
  Check({"zigbee2mqtt/front_door",
         R"({"contact":false,"battery":100})",
         "zigbee2mqtt",
         {{"front_door/contact", "true", "boolean"}, {"front_door/battery", "100", "numeric"}}});
  Check({"zigbee2mqtt/front_door",
         R"({"contact":true,"battery":100})",
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
  // A button: the action by the z2m_action rule, the rest by zigbee2mqtt.
  Check({"zigbee2mqtt/hall_switch",
         R"({"action":"single","battery":91,"voltage":3005,"linkquality":87})",
         "zigbee2mqtt",
         {{"hall_switch/action", "\"single\"", "string"},
          {"hall_switch/battery", "91", "numeric"},
          {"hall_switch/voltage", "3005", "numeric"}}});
  // Friendly names with '/' (zigbee2mqtt's "living/lamp" groups devices by room).
  Check({"zigbee2mqtt/living/lamp",
         R"({"state":"OFF","brightness":10})",
         "zigbee2mqtt",
         {{"living/lamp/state", "false", "boolean"}, {"living/lamp/brightness", "10", "numeric"}}});
  Check({"zigbee2mqtt/first/floor/hall/motion/availability",
         R"({"state":"offline"})",
         "z2m_availability",
         {{"first/floor/hall/motion/available", "false", "boolean"}}});
  // Not data: the bridge's own topics, and the commands Home Assistant sends.
  for (const char* topic : {"zigbee2mqtt/bridge/state", "zigbee2mqtt/bridge",
                            "zigbee2mqtt/bridge/devices", "zigbee2mqtt/hall_light/set",
                            "zigbee2mqtt/living/lamp/set", "zigbee2mqtt/living/lamp/get"}) {
    EXPECT_TRUE(engine_->Map(topic, R"({"state":"ON"})", kNow).matched.empty()) << topic;
  }
}

// Tasmota: tasmota.github.io/docs/MQTT (stat/<topic>/POWER<n>, tele/<topic>/LWT)
// and its energy driver (tasmota/tasmota_xdrv_driver/xdrv_03_energy.ino), which
// writes one array element per channel when a device measures several.
TEST_F(MappingExamplesTest, Tasmota) {
  Check({"tele/plug1/SENSOR",
         R"({"Time":"2026-11-20T10:00:00","ENERGY":{"Total":12.345,"Power":57,"Voltage":231}})",
         "tasmota_sensor",
         {{"plug1/energy_total", "12.345", "counter"},
          {"plug1/power", "57", "numeric"},
          {"plug1/voltage", "231", "numeric"}},
         1795168800000});
  // A Shelly 2.5 running Tasmota: two channels, one voltage, one total.
  Check({"tele/shelly25/SENSOR",
         R"({"Time":"2026-11-20T10:00:00","ENERGY":{"TotalStartTime":"2026-01-02T10:11:12",)"
         R"("Total":3.051,"Yesterday":0.112,"Today":0.040,"Period":[0,0],"Power":[12,34],)"
         R"("ApparentPower":[20,40],"ReactivePower":[16,21],"Factor":[0.60,0.85],)"
         R"("Voltage":231,"Current":[0.087,0.173]},"Temperature":41.2,"TempUnit":"C"})",
         "tasmota_sensor",
         {{"shelly25/energy_total", "3.051", "counter"},
          {"shelly25/power/1", "12", "numeric"},
          {"shelly25/power/2", "34", "numeric"},
          {"shelly25/voltage", "231", "numeric"},
          {"shelly25/current/1", "0.087", "numeric"},
          {"shelly25/current/2", "0.173", "numeric"}},
         1795168800000});
  Check({"stat/plug1/POWER", "ON", "tasmota_power", {{"plug1/POWER", "true", "boolean"}}});
  Check({"stat/plug1/POWER", "OFF", "tasmota_power", {{"plug1/POWER", "false", "boolean"}}});
  Check({"stat/strip4/POWER1", "ON", "tasmota_power", {{"strip4/POWER1", "true", "boolean"}}});
  Check({"stat/strip4/POWER4", "OFF", "tasmota_power", {{"strip4/POWER4", "false", "boolean"}}});
  EXPECT_TRUE(engine_->Map("stat/strip4/RESULT", R"({"POWER1":"ON"})", kNow).matched.empty());
  Check({"tele/plug1/LWT", "Online", "tasmota_lwt", {{"plug1/online", "true", "boolean"}}});
  Check({"tele/plug1/LWT", "Offline", "tasmota_lwt", {{"plug1/online", "false", "boolean"}}});
}

// Shelly Gen 1: shelly-api-docs.shelly.cloud/gen1 ("Shelly1/1PM: MQTT",
// "Shelly H&T: MQTT", "Shelly Door/Window 1/2: MQTT").
TEST_F(MappingExamplesTest, Shelly) {
  Check({"shellies/shelly1-ABC/relay/0",
         "on",
         "shelly_relay",
         {{"shelly1-ABC/relay/0", "true", "boolean"}}});
  Check({"shellies/shelly1pm-ABC/relay/0/power",
         "42.47",
         "shelly_relay_power",
         {{"shelly1pm-ABC/relay/0/power", "42.47", "numeric"}}});
  Check({"shellies/shelly1pm-ABC/relay/0/energy",
         "12345",
         "shelly_relay_energy",
         {{"shelly1pm-ABC/relay/0/energy", "12345", "counter"}}});
  // Gen1's input, device temperature and last will (shelly-api-docs gen1,
  // "MQTT": shellies/<id>/input/<i> 0|1, shellies/<id>/temperature,
  // shellies/<id>/overtemperature 0|1, shellies/<id>/online true|false).
  Check({"shellies/shelly1-ABC/input/0",
         "1",
         "shelly_input",
         {{"shelly1-ABC/input/0", "true", "boolean"}}});
  Check({"shellies/shelly1-ABC/input/0",
         "0",
         "shelly_input",
         {{"shelly1-ABC/input/0", "false", "boolean"}}});
  Check({"shellies/shelly1pm-ABC/temperature",
         "41.3",
         "shelly_device_temperature",
         {{"shelly1pm-ABC/temperature", "41.3", "numeric"}}});
  Check({"shellies/shelly1pm-ABC/overtemperature",
         "0",
         "shelly_overtemperature",
         {{"shelly1pm-ABC/overtemperature", "false", "boolean"}}});
  Check({"shellies/shelly1-ABC/online",
         "false",
         "shelly_online",
         {{"shelly1-ABC/online", "false", "boolean"}}});
  Check({"shellies/shellyht-XYZ/sensor/temperature",
         "21.5",
         "shelly_sensor",
         {{"shellyht-XYZ/temperature", "21.5", "numeric"}}});
  Check({"shellies/shellyht-XYZ/sensor/humidity",
         "48",
         "shelly_sensor",
         {{"shellyht-XYZ/humidity", "48", "numeric"}}});
  Check({"shellies/shellyht-XYZ/sensor/ext_power",
         "true",
         "shelly_sensor",
         {{"shellyht-XYZ/ext_power", "true", "boolean"}}});
  Check({"shellies/shellyht-XYZ/sensor/ext_power",
         "false",
         "shelly_sensor",
         {{"shellyht-XYZ/ext_power", "false", "boolean"}}});
  Check({"shellies/shellydw2-XYZ/sensor/state",
         "open",
         "shelly_sensor",
         {{"shellydw2-XYZ/state", "true", "boolean"}}});
  Check({"shellies/shellydw2-XYZ/sensor/state",
         "close",
         "shelly_sensor",
         {{"shellydw2-XYZ/state", "false", "boolean"}}});
  Check({"shellies/shellydw2-XYZ/sensor/tilt",
         "12",
         "shelly_sensor",
         {{"shellydw2-XYZ/tilt", "12", "numeric"}}});
  EXPECT_TRUE(engine_->Map("shellies/shellydw2-XYZ/sensor/act_reasons", R"(["sensor"])", kNow)
                  .matched.empty());
}

// Shelly Gen 2+: shelly-api-docs.shelly.cloud/gen2 (ComponentsAndServices/
// Switch "Status", Temperature, DevicePower; General/RPCChannels "MQTT":
// <id>/online, <id>/status/<component>:<id>).
TEST_F(MappingExamplesTest, ShellyGen2) {
  Check({"shellyplus1pm-a8032ab12cd3/status/switch:0",
         R"({"id":0,"source":"button","output":true,"apower":8.9,"voltage":237.5,"freq":50.0,)"
         R"("current":0.068,"aenergy":{"total":6.532,"by_minute":[45.199,47.141,88.397],)"
         R"("minute_ts":1654511972},"temperature":{"tC":41.1,"tF":105.9}})",
         "shelly_gen2_status",
         {{"shellyplus1pm-a8032ab12cd3/switch:0/output", "true", "boolean"},
          {"shellyplus1pm-a8032ab12cd3/switch:0/apower", "8.9", "numeric"},
          {"shellyplus1pm-a8032ab12cd3/switch:0/voltage", "237.5", "numeric"},
          {"shellyplus1pm-a8032ab12cd3/switch:0/freq", "50.0", "numeric"},
          {"shellyplus1pm-a8032ab12cd3/switch:0/current", "0.068", "numeric"},
          {"shellyplus1pm-a8032ab12cd3/switch:0/aenergy.total", "6.532", "counter"},
          {"shellyplus1pm-a8032ab12cd3/switch:0/temperature.tC", "41.1", "numeric"}}});
  Check({"shellyplusht-a8032ab12cd3/status/temperature:0",
         R"({"id":0,"tC":21.3,"tF":70.3})",
         "shelly_gen2_status",
         {{"shellyplusht-a8032ab12cd3/temperature:0/tC", "21.3", "numeric"}}});
  Check({"shellyplusht-a8032ab12cd3/status/devicepower:0",
         R"({"id":0,"battery":{"V":5.92,"percent":83},"external":{"present":false}})",
         "shelly_gen2_status",
         {{"shellyplusht-a8032ab12cd3/devicepower:0/battery.V", "5.92", "numeric"},
          {"shellyplusht-a8032ab12cd3/devicepower:0/battery.percent", "83", "numeric"},
          {"shellyplusht-a8032ab12cd3/devicepower:0/external.present", "false", "boolean"}}});
  Check({"shellyplus1pm-a8032ab12cd3/online",
         "true",
         "shelly_gen2_online",
         {{"shellyplus1pm-a8032ab12cd3/online", "true", "boolean"}}});
  Check({"shellyplus1pm-a8032ab12cd3/online",
         "false",
         "shelly_gen2_online",
         {{"shellyplus1pm-a8032ab12cd3/online", "false", "boolean"}}});
  // Notifications and other components are not mapped by these rules.
  EXPECT_TRUE(engine_->Map("shellyplus1pm-a8032ab12cd3/status/sys", "{}", kNow).matched.empty());
}

// ESPHome: esphome.io/components/mqtt ("MQTT Component Base Configuration":
// <topic_prefix>/<component>/<id>/state, <topic_prefix>/status); a sensor
// without a reading publishes "nan" (esphome/core/helpers value_accuracy_to_string
// of NAN), a text sensor its text.
TEST_F(MappingExamplesTest, EspHome) {
  Check({"livingroom/sensor/temperature/state",
         "21.50",
         "esphome_sensor",
         {{"livingroom/temperature", "21.5", "numeric"}}});
  Check({"livingroom/sensor/uptime_human/state",
         "2d 3h 4m",
         "esphome_sensor",
         {{"livingroom/uptime_human", "\"2d 3h 4m\"", "string"}}});
  // A text sensor publishes on .../sensor/... too (mqtt_text_sensor.cpp:
  // its component_type() is "sensor").
  Check({"livingroom/sensor/wifi_ssid/state",
         "home-net",
         "esphome_sensor",
         {{"livingroom/wifi_ssid", "\"home-net\"", "string"}}});
  Check({"livingroom/sensor/version/state",
         "2024.12.1",
         "esphome_sensor",
         {{"livingroom/version", "\"2024.12.1\"", "string"}}});
  Check({"livingroom/binary_sensor/motion/state",
         "ON",
         "esphome_binary_sensor",
         {{"livingroom/motion", "true", "boolean"}}});
  // A switch: mqtt_switch.cpp publishes ON/OFF on <node>/switch/<id>/state.
  Check({"livingroom/switch/relay/state",
         "ON",
         "esphome_switch",
         {{"livingroom/relay", "true", "boolean"}}});
  Check({"livingroom/status",
         "online",
         "esphome_status",
         {{"livingroom/online", "true", "boolean"}}});
  Check({"livingroom/status",
         "offline",
         "esphome_status",
         {{"livingroom/online", "false", "boolean"}}});
  // Home Assistant's birth message is no ESPHome device.
  EXPECT_TRUE(engine_->Map("homeassistant/status", "online", kNow).matched.empty());
}

TEST_F(MappingExamplesTest, EspHomeNanIsSkippedAndCounted) {
  MappingResult r = engine_->Map("livingroom/sensor/temperature/state", "nan", kNow);
  EXPECT_FALSE(r.refusal);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(r.unknown_skipped, 1u);
  r = engine_->Map("livingroom/sensor/temperature/state", "21.5", kNow);
  EXPECT_EQ(r.unknown_skipped, 0u);
  EXPECT_EQ(r.changes.size(), 1u);
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
           {"shellies/shelly1pm-ABC/relay/0/power", "warm", "wrong_type"},
           {"tele/plug1/SENSOR", R"({"ENERGY":{"Power":[1,{"x":2}]}})", "not_scalar"},
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

// 12: self-describing devices against a real Mosquitto and the real komoku.
// Retained Home Assistant discovery configs (zigbee2mqtt, ESPHome) and Homie
// attributes, then retained state messages, become typed keys with the
// right values; a configured rule wins over a discovered entity on its
// topic; a config that Komoku cannot follow is refused and counted; a
// deleted config stops the storing; after a restart the retained configs
// and states come again and add no change; the entities are kept in
// <data_dir>/discovery.json, so that the messages the broker queued while
// Komoku was down are stored too, and a broken file is only warned about.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

const char kConfig[] = R"(discovery:
  enabled: true
mappings:
  - name: configured_plug
    topic: tele/+/SENSOR
    key: "{1}/{field}"
    fields:
      ENERGY.Power: power
)";

struct Retained {
  const char* topic;
  const char* payload;
};

// zigbee2mqtt, ESPHome, Tasmota and Homie as they announce themselves.
const Retained kConfigs[] = {
    {"homeassistant/sensor/0x00158d0001a2b3c4/temperature/config",
     R"({"availability":[{"topic":"zigbee2mqtt/bridge/state","value_template":"{{ value_json.state }}"}],
"device":{"identifiers":["zigbee2mqtt_0x00158d0001a2b3c4"],"name":"kitchen_sensor"},
"device_class":"temperature","name":"Temperature","state_class":"measurement",
"state_topic":"zigbee2mqtt/kitchen_sensor","unique_id":"0x00158d0001a2b3c4_temperature_zigbee2mqtt",
"unit_of_measurement":"°C","value_template":"{{ value_json.temperature }}"})"},
    {"homeassistant/sensor/0x00158d0001a2b3c4/humidity/config",
     R"({"device_class":"humidity","name":"Humidity","state_class":"measurement",
"state_topic":"zigbee2mqtt/kitchen_sensor","unit_of_measurement":"%",
"value_template":"{{ value_json['humidity'] }}","expire_after":3600})"},
    {"homeassistant/binary_sensor/0x00158d0001d4e5f6/contact/config",
     R"({"device_class":"door","name":"Door","payload_off":true,"payload_on":false,
"state_topic":"zigbee2mqtt/front_door","value_template":"{{ value_json.contact }}"})"},
    {"homeassistant/sensor/livingroom/energy/config",
     R"({"dev_cla":"energy","unit_of_meas":"kWh","stat_cla":"total_increasing","name":"Energy",
"stat_t":"~sensor/energy/state","avty_t":"~status","~":"livingroom/"})"},
    {"homeassistant/binary_sensor/livingroom/motion/config",
     R"({"dev_cla":"motion","name":"Motion","stat_t":"livingroom/binary_sensor/motion/state",
"avty_t":"livingroom/status"})"},
    // The configured rule takes tele/+/SENSOR: this entity is never used.
    {"homeassistant/sensor/8C8E1A_ENERGY_Total/config",
     R"({"stat_t":"tele/plug1/SENSOR","unit_of_meas":"kWh","stat_cla":"total_increasing",
"val_tpl":"{{value_json['ENERGY']['Total']}}"})"},
    // Refused: a template Komoku cannot evaluate exactly.
    {"homeassistant/sensor/livingroom/power/config",
     R"({"stat_t":"livingroom/sensor/power/state","unit_of_meas":"W",
"val_tpl":"{{ value | float(0) * states('input_number.scale') | float(1) }}"})"},
    {"homie/weather/outside/temperature/$datatype", "float"},
    {"homie/weather/outside/temperature/$unit", "°C"},
};

const Retained kStates[] = {
    {"zigbee2mqtt/kitchen_sensor",
     R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})"},
    {"zigbee2mqtt/bridge/state", R"({"state":"online"})"},
    {"zigbee2mqtt/front_door", R"({"contact":false,"battery":100})"},
    {"livingroom/sensor/energy/state", "12.5"},
    {"livingroom/binary_sensor/motion/state", "ON"},
    {"livingroom/status", "online"},
    {"livingroom/sensor/power/state", "0.057"},
    {"tele/plug1/SENSOR", R"({"ENERGY":{"Total":12.345,"Power":57}})"},
    {"homie/weather/outside/temperature", "3.5"},
    {"homie/weather/$state", "ready"},
};

struct Expected {
  const char* key;
  nlohmann::json value;
  const char* type;
};

const std::vector<Expected>& ExpectedKeys() {
  static const std::vector<Expected> expected = {
      {"zigbee2mqtt/kitchen_sensor/temperature", 21.43, "numeric"},
      {"zigbee2mqtt/kitchen_sensor/humidity", 48.1, "numeric"},
      {"zigbee2mqtt/bridge/state", true, "boolean"},
      {"zigbee2mqtt/front_door/contact", true, "boolean"},  // open: contact false
      {"livingroom/sensor/energy/state", 12.5, "counter"},
      {"livingroom/binary_sensor/motion/state", true, "boolean"},
      {"livingroom/status", true, "boolean"},
      {"plug1/power", 57, "numeric"},  // the configured rule
      {"homie/weather/outside/temperature", 3.5, "numeric"},
      {"homie/weather/$state", true, "boolean"},
  };
  return expected;
}

class SelfDescribingTest : public KomokuTest {
 protected:
  std::string ExtraConfig() const override { return kConfig; }

  nlohmann::json Discovered() {
    auto r = komoku_->Get("/api/v1/discovery");
    return r.status == 200 ? r.Json() : nlohmann::json();
  }
  bool WaitForMapped(int mapped) {
    return WaitFor([&] {
      nlohmann::json d = Discovered();
      return d.is_object() && d["mapped"] == mapped;
    });
  }
  // Every message published before this one has been handled: komoku reads
  // its subscriptions in order on one connection.
  void Barrier() {
    const std::string value = std::to_string(++barriers_);
    mqtt_->Publish("komoku/set/it/barrier", value);
    ASSERT_TRUE(WaitForValue("it/barrier", std::stod(value)));
  }
  void PublishAll() {
    for (const Retained& c : kConfigs) mqtt_->Publish(c.topic, c.payload, 1, /*retained=*/true);
    for (const Retained& s : kStates) mqtt_->Publish(s.topic, s.payload, 1, /*retained=*/true);
  }
  void ExpectAllKeys() {
    for (const Expected& e : ExpectedKeys()) {
      ASSERT_TRUE(WaitForValue(e.key, e.value)) << e.key << ": " << Value(e.key).dump();
      EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
    }
  }
  int barriers_ = 0;
};

// Configs that make several keys each: a device config (Home Assistant
// 2024.11, `cmps`), a zigbee2mqtt JSON-schema light and thermostat; and a
// template that computes (shellies-discovery). A component announced with
// only its platform is removed, the others stay.
TEST_F(SelfDescribingTest, DeviceConfigsLightsAndThermostatsMakeSeveralKeys) {
  const char* device_topic = "homeassistant/device/0AFFD2/config";
  const std::string device =
      R"({"dev":{"ids":"ea334450945afc","name":"Kitchen"},"o":{"name":"bla2mqtt"},)"
      R"("cmps":{"t":{"p":"sensor","device_class":"temperature","unit_of_measurement":"°C",)"
      R"("value_template":"{{ value_json.temperature }}"},)"
      R"("h":{"p":"sensor","unit_of_measurement":"%","value_template":"{{ value_json.humidity }}"},)"
      R"("door":{"p":"binary_sensor","stat_t":"kitchen/door","pl_on":"open","pl_off":"closed"}},)"
      R"("state_topic":"kitchen/climate"})";
  mqtt_->Publish(device_topic, device, 1, /*retained=*/true);
  mqtt_->Publish(
      "homeassistant/light/0x0017880104aabbcc/light/config",
      R"({"brightness":true,"schema":"json","state_topic":"zigbee2mqtt/hall_light",)"
      R"("supported_color_modes":["color_temp"],"command_topic":"zigbee2mqtt/hall_light/set"})",
      1, true);
  mqtt_->Publish("homeassistant/climate/0x0c4314fffe112233/climate/config",
                 R"({"current_temperature_topic":"zigbee2mqtt/thermostat",)"
                 R"("current_temperature_template":"{{ value_json.local_temperature }}",)"
                 R"("temperature_state_topic":"zigbee2mqtt/thermostat",)"
                 R"("temperature_state_template":"{{ value_json.occupied_heating_setpoint }}",)"
                 R"("mode_state_topic":"zigbee2mqtt/thermostat",)"
                 R"("mode_state_template":"{{ value_json.system_mode }}"})",
                 1, true);
  // shellies-discovery: the text payload through float and round.
  mqtt_->Publish("homeassistant/sensor/shellyht-AABBCC-temperature/config",
                 R"({"stat_t":"~sensor/temperature","unit_of_meas":"°C","stat_cla":"measurement",)"
                 R"("val_tpl":"{{value|float|round(1)}}","~":"shellies/shellyht-AABBCC/"})",
                 1, true);
  ASSERT_TRUE(WaitForMapped(3 + 3 + 3 + 1)) << Discovered().dump(2);
  mqtt_->Publish("shellies/shellyht-AABBCC/sensor/temperature", "21.37");
  mqtt_->Publish("kitchen/climate", R"({"temperature":23.2,"humidity":43.5})");
  mqtt_->Publish("kitchen/door", "open");
  mqtt_->Publish("zigbee2mqtt/hall_light", R"({"state":"ON","brightness":200,"color_temp":370})");
  mqtt_->Publish(
      "zigbee2mqtt/thermostat",
      R"({"local_temperature":19.5,"occupied_heating_setpoint":21,"system_mode":"heat"})");
  const Expected expected[] = {
      {"kitchen/climate/temperature", 23.2, "numeric"},
      {"kitchen/climate/humidity", 43.5, "numeric"},
      {"kitchen/door", true, "boolean"},
      {"zigbee2mqtt/hall_light/state", true, "boolean"},
      {"zigbee2mqtt/hall_light/brightness", 200, "numeric"},
      {"zigbee2mqtt/hall_light/color_temp", 370, "numeric"},
      {"zigbee2mqtt/thermostat/local_temperature", 19.5, "numeric"},
      {"zigbee2mqtt/thermostat/occupied_heating_setpoint", 21, "numeric"},
      {"zigbee2mqtt/thermostat/system_mode", "heat", "string"},
      {"shellies/shellyht-AABBCC/sensor/temperature", 21.4, "numeric"},
  };
  for (const Expected& e : expected) {
    ASSERT_TRUE(WaitForValue(e.key, e.value)) << e.key << ": " << Value(e.key).dump();
    EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
  }
  // The door component is removed: its topic is no longer stored.
  std::string fewer = device;
  const std::string door =
      R"("door":{"p":"binary_sensor","stat_t":"kitchen/door","pl_on":"open","pl_off":"closed"})";
  fewer.replace(fewer.find(door), door.size(), R"("door":{"p":"binary_sensor"})");
  mqtt_->Publish(device_topic, fewer, 1, true);
  ASSERT_TRUE(WaitForMapped(9)) << Discovered().dump(2);
  mqtt_->Publish("kitchen/door", "closed");
  mqtt_->Publish("kitchen/climate", R"({"temperature":23.4,"humidity":43.5})");
  ASSERT_TRUE(WaitForValue("kitchen/climate/temperature", 23.4));
  Barrier();
  EXPECT_EQ(Value("kitchen/door")["value"], true);  // "closed" was not stored
}

TEST_F(SelfDescribingTest, AnnouncedDevicesBecomeTypedKeys) {
  PublishAll();
  ASSERT_TRUE(WaitForMapped(7)) << Discovered().dump(2);
  ExpectAllKeys();
  Barrier();
  // The configured rule took the Tasmota topic; the refused entity made
  // nothing; nothing else became a key (battery, linkquality, ...).
  EXPECT_EQ(Value("tele/plug1/SENSOR/ENERGY.Total"), nlohmann::json());
  EXPECT_EQ(Value("livingroom/sensor/power/state"), nlohmann::json());
  auto keys = komoku_->Get("/api/v1/keys").Json()["keys"];
  EXPECT_EQ(keys.size(), ExpectedKeys().size() + 1) << keys.dump();  // + it/barrier

  nlohmann::json d = Discovered();
  EXPECT_EQ(d["refused"], 1);
  bool listed = false;
  for (const auto& e : d["entities"]) {
    if (e["id"] == "homeassistant/sensor/livingroom/power/config") {
      listed = true;
      EXPECT_EQ(e["status"], "refused");
      EXPECT_EQ(e["reason"], "bad_template");
    }
  }
  EXPECT_TRUE(listed) << d.dump(2);
  EXPECT_EQ(komoku_->Metric("komoku_discovery_refused_total{reason=\"bad_template\"}"), 1);
  EXPECT_EQ(komoku_->Metric("komoku_discovery_entities"), 7);
  EXPECT_NE(komoku_->Output().find("discovery: 'homeassistant/sensor/livingroom/power/config' "
                                   "not mapped (bad_template)"),
            std::string::npos);
  // expire_after became the key's stale_after.
  auto keys_api = komoku_->Post("/api/v1/komoku", R"({"keys": {}})").Json();
  bool found = false;
  for (const auto& k : keys_api["result"]) {
    if (k["key"] == "zigbee2mqtt/kitchen_sensor/humidity") {
      found = true;
      EXPECT_EQ(k["opts"]["stale_after"], 3600) << k.dump();
    }
  }
  EXPECT_TRUE(found) << keys_api.dump();

  // New values, not retained, are stored too; a bad one for one entity
  // leaves the other entity of the topic alone.
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":"warm","humidity":50})");
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/humidity", 50));
  EXPECT_EQ(Value("zigbee2mqtt/kitchen_sensor/temperature")["value"], 21.43);
  EXPECT_EQ(
      komoku_->Metric("komoku_mapping_refused_total{rule=\"discovery\",reason=\"wrong_type\"}"), 1);
  mqtt_->Publish("zigbee2mqtt/front_door", R"({"contact":true,"battery":100})");
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/front_door/contact", false));
  EXPECT_TRUE(komoku_->process()->Running());
}

// A switch is on or off: a boolean key, so that history can say what
// share of the time it was on. A switch recorded before that (as text:
// "ON", "OFF") keeps its type and its history: its values go on being
// stored as the words published, not refused.
TEST_F(SelfDescribingTest, ASwitchIsABooleanAndAnOldTextSwitchKeepsItsHistory) {
  // The old key, as Komoku made it until 2026-12-07.
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=old_plug/state", "ON").status, 201);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=old_plug/state", "OFF").status, 200);
  ASSERT_EQ(Value("old_plug/state")["type"], "string");
  mqtt_->Publish("homeassistant/switch/old_plug/config",
                 R"({"stat_t":"old_plug/state","cmd_t":"old_plug/set","uniq_id":"old_plug"})", 1,
                 /*retained=*/true);
  mqtt_->Publish("homeassistant/switch/heater/config",
                 R"({"stat_t":"heater/state","cmd_t":"heater/set","uniq_id":"heater",)"
                 R"("stat_on":"on","stat_off":"off"})",
                 1, /*retained=*/true);
  ASSERT_TRUE(WaitForMapped(2)) << Discovered().dump(2);
  mqtt_->Publish("old_plug/state", "ON");
  mqtt_->Publish("heater/state", "on");
  mqtt_->Publish("heater/state", "None");  // Home Assistant's unknown state: nothing stored
  mqtt_->Publish("heater/state", "off");
  Barrier();
  EXPECT_EQ(Value("heater/state")["type"], "boolean");
  EXPECT_EQ(Value("heater/state")["value"], false);
  EXPECT_EQ(HistorySize("heater/state"), 2u);
  EXPECT_EQ(Value("old_plug/state")["type"], "string");
  EXPECT_EQ(Value("old_plug/state")["value"], "ON");
  EXPECT_EQ(HistorySize("old_plug/state"), 3u);
  auto m = komoku_->Get("/metrics");
  EXPECT_EQ(m.body.find("wrong_type"), std::string::npos) << m.body;  // nothing refused
}

// Whoever may publish a discovery config writes its template: one whose
// regular expression a backtracking engine takes exponential time over,
// `(a|aa)*b` on 4,000 a's (std::regex: 0.09 s at 28 a's, 1.6 times as long
// per a), is answered at once, and the next message is stored after it:
// the ingest thread is not stalled (RE2, docs/mapping.md).
TEST_F(SelfDescribingTest, ATemplateRegexCannotStallIngest) {
  mqtt_->Publish("homeassistant/sensor/evil/config",
                 R"({"stat_t":"evil/state","unit_of_meas":"x",)"
                 R"("val_tpl":"{{ value | regex_findall('(a|aa)*b') | length }}"})",
                 1, /*retained=*/true);
  ASSERT_TRUE(WaitForMapped(1)) << Discovered().dump(2);
  mqtt_->Publish("evil/state", std::string(4000, 'a'));
  Barrier();
  EXPECT_EQ(Value("evil/state")["value"], 0) << Value("evil/state").dump();
  mqtt_->Publish("evil/state", std::string(4000, 'a') + "b");
  Barrier();
  EXPECT_EQ(Value("evil/state")["value"], 1) << Value("evil/state").dump();
}

TEST_F(SelfDescribingTest, ADeletedConfigStopsTheStoring) {
  PublishAll();
  ASSERT_TRUE(WaitForMapped(7)) << Discovered().dump(2);
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/front_door/contact", true));
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/temperature", 21.43));
  // An empty retained message deletes the config (and the retained config).
  mqtt_->Publish("homeassistant/binary_sensor/0x00158d0001d4e5f6/contact/config", "", 1, true);
  mqtt_->Publish("homeassistant/sensor/0x00158d0001a2b3c4/temperature/config", "", 1, true);
  ASSERT_TRUE(WaitForMapped(5)) << Discovered().dump(2);
  mqtt_->Publish("zigbee2mqtt/front_door", R"({"contact":true,"battery":100})");
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":25.0,"humidity":55})");
  // The humidity entity of the same topic is still there.
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/humidity", 55));
  Barrier();
  EXPECT_EQ(Value("zigbee2mqtt/front_door/contact")["value"], true);
  EXPECT_EQ(Value("zigbee2mqtt/kitchen_sensor/temperature")["value"], 21.43);
  EXPECT_TRUE(WaitFor([&] { return HistorySize("zigbee2mqtt/kitchen_sensor/humidity") == 2; }));
  EXPECT_EQ(HistorySize("zigbee2mqtt/front_door/contact"), 1u);
  EXPECT_EQ(HistorySize("zigbee2mqtt/kitchen_sensor/temperature"), 1u);
  EXPECT_NE(komoku_->Output().find("discovery: 'homeassistant/binary_sensor/0x00158d0001d4e5f6/"
                                   "contact/config' removed"),
            std::string::npos);
}

TEST_F(SelfDescribingTest, ARestartGivesTheSameKeysAndNoNewChanges) {
  PublishAll();
  ASSERT_TRUE(WaitForMapped(7)) << Discovered().dump(2);
  ExpectAllKeys();
  Barrier();
  std::map<std::string, size_t> sizes;
  for (const Expected& e : ExpectedKeys()) {
    ASSERT_TRUE(WaitFor([&] { return HistorySize(e.key) == 1; })) << e.key;
    sizes[e.key] = 1;
  }
  const nlohmann::json before = Discovered();

  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitForMapped(7)) << Discovered().dump(2);
  EXPECT_EQ(Discovered(), before);
  // The broker sends every retained state again as Komoku subscribes the
  // discovered topics; wait until each was seen (9 discovered values; the
  // configured plug's retained message counts as well), then check that
  // none added a change.
  EXPECT_TRUE(WaitFor([&] {
    return komoku_->Metric("komoku_mapping_retained_skipped_total") >=
           static_cast<long long>(ExpectedKeys().size());
  })) << komoku_->Output();
  Barrier();
  for (const Expected& e : ExpectedKeys()) {
    EXPECT_EQ(HistorySize(e.key), sizes[e.key]) << e.key;
    EXPECT_EQ(Value(e.key)["value"], e.value) << e.key;
  }
  // And it still maps new values.
  mqtt_->Publish("livingroom/sensor/energy/state", "13.25");
  ASSERT_TRUE(WaitForValue("livingroom/sensor/energy/state", 13.25));
  EXPECT_TRUE(WaitFor([&] { return HistorySize("livingroom/sensor/energy/state") == 2; }));
}

// Messages the broker queued for Komoku's persistent session while it was
// down come right after it reconnects, before the retained configs: they
// are mapped because the entities were read from the state file at start.
TEST_F(SelfDescribingTest, MessagesQueuedWhileDownForDiscoveredTopicsAreStored) {
  mqtt_->Publish(kConfigs[3].topic, kConfigs[3].payload, 1, /*retained=*/true);  // energy
  mqtt_->Publish(kConfigs[1].topic, kConfigs[1].payload, 1, /*retained=*/true);  // humidity
  ASSERT_TRUE(WaitForMapped(2)) << Discovered().dump(2);
  // Saved a moment after the change.
  const std::string state_file = dir_.File("data/discovery.json");
  ASSERT_TRUE(WaitFor([&] {
    std::ifstream in(state_file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str().find(kConfigs[3].topic) != std::string::npos &&
           text.str().find(kConfigs[1].topic) != std::string::npos;
  })) << komoku_->Output();
  ASSERT_EQ(komoku_->Stop(), 0);

  constexpr int kQueued = 30;
  for (int i = 1; i <= kQueued; ++i) {
    mqtt_->Publish("livingroom/sensor/energy/state", std::to_string(100 + i));
    mqtt_->Publish("zigbee2mqtt/kitchen_sensor", "{\"humidity\":" + std::to_string(i) + "}");
  }
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitFor([&] {
    return HistorySize("livingroom/sensor/energy/state") == kQueued &&
           HistorySize("zigbee2mqtt/kitchen_sensor/humidity") == kQueued;
  })) << HistorySize("livingroom/sensor/energy/state")
      << " and " << HistorySize("zigbee2mqtt/kitchen_sensor/humidity") << " of " << kQueued
      << " stored\n"
      << komoku_->Output();
  auto rows =
      komoku_->Get("/api/v1/history?key=livingroom/sensor/energy/state&from=0").Json()["rows"];
  for (int i = 0; i < kQueued; ++i) EXPECT_EQ(rows[i][1], 101 + i) << i;
  EXPECT_EQ(Value("livingroom/sensor/energy/state")["type"], "counter");
  EXPECT_EQ(Value("zigbee2mqtt/kitchen_sensor/humidity")["value"], kQueued);
  EXPECT_NE(komoku_->Output().find("discovery: 2 entities (2 mapped) read from"), std::string::npos)
      << komoku_->Output();
  // The retained configs came again: the same entities, nothing forgotten.
  EXPECT_TRUE(WaitForMapped(2));
}

// A state file that cannot be read is warned about and ignored: Komoku
// starts, learns the entities from the retained configs and writes the
// file again.
TEST_F(SelfDescribingTest, ABrokenStateFileIsWarnedAboutAndIgnored) {
  ASSERT_EQ(komoku_->Stop(), 0);
  const std::string state_file = dir_.File("data/discovery.json");
  std::ofstream(state_file) << R"({"version": 1, "entities": [{"id": 7}]})";
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  EXPECT_NE(komoku_->Output().find("discovery state file '" + state_file +
                                   "' has an entity without id or source"),
            std::string::npos)
      << komoku_->Output();
  EXPECT_NE(komoku_->Output().find("ignored: the entities are learnt again"), std::string::npos);
  PublishAll();
  ASSERT_TRUE(WaitForMapped(7)) << Discovered().dump(2);
  ASSERT_TRUE(WaitFor([&] {
    std::ifstream in(state_file);
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
    return j.is_object() && j["entities"].size() == 8;  // 7 mapped, 1 refused
  })) << komoku_->Output();
}

// `komoku mappings test` reads discovery messages given with --discovery
// before the message, as the service would.
TEST(MappingsCliDiscoveryTest, ShowsDiscoveredEntitiesAndTheirChanges) {
  TempDir dir;
  { std::ofstream(dir.File("k.yaml")) << "discovery:\n  enabled: true\n"; }
  auto run = [&](std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), {KOMOKU_BINARY, "mappings", "test", "-c", dir.File("k.yaml")});
    Process p(args, dir.File("out.txt"));
    int status = p.Wait(std::chrono::seconds(30));
    *out = p.Output();
    return status;
  };
  const std::string config = kConfigs[3].payload;  // the ESPHome energy counter
  std::string out;
  EXPECT_EQ(
      run({"--discovery", kConfigs[3].topic, config, "livingroom/sensor/energy/state", "12.5"},
          &out),
      0)
      << out;
  EXPECT_NE(out.find("livingroom/sensor/energy/state = 12.5 (counter) from "
                     "homeassistant/sensor/livingroom/energy/config"),
            std::string::npos)
      << out;
  EXPECT_EQ(run({kConfigs[6].topic, kConfigs[6].payload}, &out), 1) << out;
  EXPECT_NE(out.find("not mapped (bad_template)"), std::string::npos) << out;
  EXPECT_EQ(run({"livingroom/sensor/energy/state", "12.5"}, &out), 1) << out;
  EXPECT_NE(out.find("unless a discovered entity reads it"), std::string::npos) << out;
}

// `komoku mappings test --log` reads a captured `mosquitto_sub -v` log in
// order: the discovery configs in it teach entities, and each message says
// what it would store, or why not, on its own line.
TEST(MappingsCliDiscoveryTest, ReadsACapturedLog) {
  TempDir dir;
  { std::ofstream(dir.File("k.yaml")) << "discovery:\n  enabled: true\n"; }
  {
    std::ofstream log(dir.File("capture.log"));
    log << "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config "
           R"({"state_topic":"zigbee2mqtt/kitchen_sensor","unit_of_measurement":"°C",)"
           R"("value_template":"{{ value_json.temperature }}"})"
        << "\n"
        << "homeassistant/binary_sensor/shellydw2-AABBCC-door/config "
           R"({"stat_t":"shellies/shellydw2-AABBCC/sensor/state","dev_cla":"door",)"
           R"("pl_on":"ON","pl_off":"OFF",)"
           R"("val_tpl":"{%if value==\"open\"%}ON{%else%}OFF{%endif%}"})"
        << "\n"
        << "homeassistant/sensor/x/cost/config "
           R"({"stat_t":"x/p","unit_of_meas":"EUR","val_tpl":"{{ states('input_number.k') }}"})"
        << "\n"
        << "zigbee2mqtt/kitchen_sensor {\"temperature\":21.43,\"linkquality\":120}\n"
        << "zigbee2mqtt/kitchen_sensor {\"temperature\":\"warm\"}\n"
        << "shellies/shellydw2-AABBCC/sensor/state open\n"
        << "\n"
        << "somewhere/else 1\n"
        << "komoku/set/hall/temperature 20.5\r\n"
        << "homeassistant/sensor/x/cost/config (null)\n";
  }
  Process p({KOMOKU_BINARY, "mappings", "test", "-c", dir.File("k.yaml"), "--log",
             dir.File("capture.log")},
            dir.File("out.txt"));
  ASSERT_EQ(p.Wait(std::chrono::seconds(30)), 0) << p.Output();
  const std::string out = p.Output();
  for (const char* expected : {
           "1: homeassistant/sensor/0x00158d0001a2b3c4/temperature/config: discovery: sensor "
           "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config -> key "
           "zigbee2mqtt/kitchen_sensor/temperature (numeric)",
           "3: homeassistant/sensor/x/cost/config: discovery: homeassistant/sensor/x/cost/config "
           "not mapped (bad_template): value template '{{ states('input_number.k') }}' calls "
           "'states()'",
           "4: zigbee2mqtt/kitchen_sensor: zigbee2mqtt/kitchen_sensor/temperature = 21.43 "
           "(numeric)\n",
           "5: zigbee2mqtt/kitchen_sensor: refused (wrong_type) by "
           "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config: temperature: value "
           "'warm' is not a number\n",
           "6: shellies/shellydw2-AABBCC/sensor/state: shellies/shellydw2-AABBCC/sensor/state = "
           "true (boolean)\n",
           "8: somewhere/else: no rule or discovered entity reads it: not stored\n",
           "9: komoku/set/hall/temperature: a plain put of key 'hall/temperature' = \"20.5\"",
           "10: homeassistant/sensor/x/cost/config: discovery: removes "
           "homeassistant/sensor/x/cost/config\n",
           "9 messages: 2 changes, 1 refused, 2 not stored by any rule; discovery: 2 entities "
           "mapped, 1 not\n",
       }) {
    EXPECT_NE(out.find(expected), std::string::npos) << expected << "\n---\n" << out;
  }
  // A log that is not there, and TOPIC with --log: errors.
  Process missing({KOMOKU_BINARY, "mappings", "test", "--log", dir.File("nope.log")},
                  dir.File("out2.txt"));
  EXPECT_EQ(missing.Wait(std::chrono::seconds(30)), 2) << missing.Output();
  EXPECT_NE(missing.Output().find("cannot read the log"), std::string::npos) << missing.Output();
}

}  // namespace
}  // namespace komoku::testing

// 40: the devices people have, through the example rules of the packaged
// config/komoku.yaml (its commented mappings: block, uncommented as a user
// would), a real Mosquitto and the real binary. Every payload is as the
// firmware publishes it; the comment beside it names the document or source
// (the same payloads as tests/bridge/mapping_examples_test.cc, which checks
// each rule alone).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "harness/harness.h"
#include "test_data.h"

namespace komoku::testing {
namespace {

// zigbee2mqtt's event template (tests/data/templates/README.md says where
// it comes from; the bridge unit tests read the same file).
std::string Zigbee2mqttEventTemplate() {
  return test_data::Read("templates/zigbee2mqtt_event.jinja");
}

class DevicesTest : public KomokuTest {
 protected:
  std::string ExtraConfig() const override { return ExampleMappings(); }
};

TEST_F(DevicesTest, TheExampleRulesAreThere) {
  const std::string rules = ExampleMappings();
  EXPECT_NE(rules.find("name: shelly_gen2_status"), std::string::npos) << rules;
  EXPECT_NE(rules.find("name: esphome_switch"), std::string::npos) << rules;
  EXPECT_NE(rules.find("name: shelly_online"), std::string::npos) << rules;
}

TEST_F(DevicesTest, ARealHouseBecomesTypedKeys) {
  // zigbee2mqtt: zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html.
  mqtt_->Publish("zigbee2mqtt/front_door", R"({"contact":false,"battery":100,"linkquality":87})");
  mqtt_->Publish("zigbee2mqtt/living/lamp", R"({"state":"ON","brightness":120})");
  mqtt_->Publish("zigbee2mqtt/living/lamp/availability", R"({"state":"online"})");
  mqtt_->Publish("zigbee2mqtt/living/lamp/set", R"({"state":"OFF"})");  // a command, not data
  // Tasmota: tasmota.github.io/docs/MQTT; a two-channel energy monitor
  // (xdrv_03_energy.ino writes one element per channel).
  mqtt_->Publish("tele/shelly25/SENSOR",
                 R"({"Time":"2026-11-20T10:00:00","ENERGY":{"Total":3.051,"Power":[12,34],)"
                 R"("Voltage":231,"Current":[0.087,0.173]}})");
  mqtt_->Publish("stat/strip4/POWER2", "ON");
  // Shelly Gen 1: shelly-api-docs.shelly.cloud/gen1 (1PM, H&T, DW2).
  mqtt_->Publish("shellies/shelly1pm-ABC/relay/0/power", "42.47");
  mqtt_->Publish("shellies/shelly1pm-ABC/relay/0/energy", "12345");
  mqtt_->Publish("shellies/shellyht-XYZ/sensor/ext_power", "true");
  mqtt_->Publish("shellies/shellydw2-XYZ/sensor/state", "open");
  mqtt_->Publish("shellies/shelly1pm-ABC/input/0", "1");
  mqtt_->Publish("shellies/shelly1pm-ABC/online", "true");
  // Shelly Gen 2: shelly-api-docs.shelly.cloud/gen2 (Switch status, MQTT).
  mqtt_->Publish("shellyplus1pm-a8032ab12cd3/status/switch:0",
                 R"({"id":0,"source":"init","output":true,"apower":8.9,"voltage":237.5,)"
                 R"("aenergy":{"total":6.532,"by_minute":[45.1,47.1,88.3],"minute_ts":1654511972},)"
                 R"("temperature":{"tC":41.1,"tF":105.9}})");
  mqtt_->Publish("shellyplus1pm-a8032ab12cd3/online", "true");
  // ESPHome: esphome.io/components/mqtt; a sensor without a reading says nan.
  mqtt_->Publish("livingroom/sensor/temperature/state", "nan");
  mqtt_->Publish("livingroom/sensor/temperature/state", "21.50");
  // A text sensor publishes on .../sensor/... (mqtt_text_sensor.cpp).
  mqtt_->Publish("livingroom/sensor/wifi_ssid/state", "home-net");
  mqtt_->Publish("livingroom/switch/relay/state", "ON");
  mqtt_->Publish("livingroom/status", "online");
  // Home Assistant's birth message: no ESPHome device.
  mqtt_->Publish("homeassistant/status", "online");

  struct Expected {
    const char* key;
    nlohmann::json value;
    const char* type;
  };
  const std::vector<Expected> expected = {
      {"front_door/contact", true, "boolean"},  // true = open, as discovery has it
      {"front_door/battery", 100, "numeric"},
      {"living/lamp/state", true, "boolean"},
      {"living/lamp/brightness", 120, "numeric"},
      {"living/lamp/available", true, "boolean"},
      {"shelly25/energy_total", 3.051, "counter"},  // as Tasmota's discovery has it
      {"shelly25/power/1", 12, "numeric"},
      {"shelly25/power/2", 34, "numeric"},
      {"shelly25/voltage", 231, "numeric"},
      {"shelly25/current/1", 0.087, "numeric"},
      {"shelly25/current/2", 0.173, "numeric"},
      {"strip4/POWER2", true, "boolean"},
      {"shelly1pm-ABC/relay/0/power", 42.47, "numeric"},
      {"shelly1pm-ABC/relay/0/energy", 12345, "counter"},
      {"shellyht-XYZ/ext_power", true, "boolean"},
      {"shellydw2-XYZ/state", true, "boolean"},
      {"shelly1pm-ABC/input/0", true, "boolean"},
      {"shelly1pm-ABC/online", true, "boolean"},
      {"shellyplus1pm-a8032ab12cd3/switch:0/output", true, "boolean"},
      {"shellyplus1pm-a8032ab12cd3/switch:0/apower", 8.9, "numeric"},
      {"shellyplus1pm-a8032ab12cd3/switch:0/voltage", 237.5, "numeric"},
      {"shellyplus1pm-a8032ab12cd3/switch:0/aenergy.total", 6.532, "counter"},
      {"shellyplus1pm-a8032ab12cd3/switch:0/temperature.tC", 41.1, "numeric"},
      {"shellyplus1pm-a8032ab12cd3/online", true, "boolean"},
      {"livingroom/temperature", 21.5, "numeric"},
      {"livingroom/wifi_ssid", "home-net", "string"},
      {"livingroom/relay", true, "boolean"},
      {"livingroom/online", true, "boolean"},
  };
  for (const Expected& e : expected) {
    ASSERT_TRUE(WaitForValue(e.key, e.value)) << e.key << ": " << Value(e.key).dump();
    EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
  }
  // Tasmota's Time is the changes' time.
  EXPECT_DOUBLE_EQ(Value("shelly25/power/2")["time"].get<double>(), 1795168800.0);
  // nan was skipped and counted, not refused, and made no string key.
  EXPECT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_mapping_unknown_skipped_total") == 1; }))
      << komoku_->Output();
  EXPECT_EQ(HistorySize("livingroom/temperature"), 1u);
  EXPECT_EQ(komoku_->Output().find(" refused '"), std::string::npos) << komoku_->Output();
  auto keys = komoku_->Get("/api/v1/keys").Json()["keys"];
  EXPECT_EQ(keys.size(), expected.size())
      << "no homeassistant/online, no lamp/set, no linkquality: " << keys.dump();
}

TEST_F(DevicesTest, EveryButtonPressIsRecorded) {
  // zigbee2mqtt's WXKG11LM button: {"action":"single"} per press
  // (zigbee2mqtt.io/devices/WXKG11LM.html), the same value twice in a row.
  mqtt_->Publish("zigbee2mqtt/hall_switch", R"({"action":"single","battery":91})");
  ASSERT_TRUE(WaitForValue("hall_switch/action", "single"));
  mqtt_->Publish("zigbee2mqtt/hall_switch", R"({"action":"single","battery":91})");
  mqtt_->Publish("zigbee2mqtt/hall_switch", R"({"action":"double","battery":91})");
  ASSERT_TRUE(WaitForValue("hall_switch/action", "double"));
  EXPECT_TRUE(WaitFor([&] { return HistorySize("hall_switch/action") == 3; }))
      << HistorySize("hall_switch/action");
  // The battery's repeat is no event: stored once.
  EXPECT_EQ(HistorySize("hall_switch/battery"), 1u);
}

// The packaged config/komoku.yaml (every setting a comment) after the
// harness's broker, data dir and port, less its section lines that the
// harness writes itself (`mqtt:`, `store:`, `http:`, `log:`: a section may
// not be given twice): what `make run` and the Debian package start with.
// zigbee2mqtt announces its devices to Home Assistant (retained configs as
// lib/extension/homeassistant.ts builds them; this shape is from a
// zigbee2mqtt 1.x log), and Komoku records them with no edits, because
// discovery is on by default.
class FreshConfigTest : public KomokuTest {
 protected:
  std::string ExtraConfig() const override {
    std::ifstream in(std::string(KOMOKU_SOURCE_DIR) + "/config/komoku.yaml");
    std::string out;
    for (std::string line; std::getline(in, line);) {
      if (line == "mqtt:" || line == "store:" || line == "http:" || line == "log:") continue;
      out += line + "\n";
    }
    return out;
  }
  // Every message published before this one has been handled (komoku reads
  // its subscriptions in order on one connection), so the subscriptions of
  // the topics discovered so far have been sent.
  void Barrier() {
    const int n = ++barriers_;
    mqtt_->Publish("komoku/set/it/barrier", std::to_string(n));
    ASSERT_TRUE(WaitForValue("it/barrier", n)) << komoku_->Output();
  }
  int barriers_ = 0;
};

TEST_F(FreshConfigTest, RecordsZigbee2mqttWithNoEdits) {
  const std::string avail =
      R"j("availability":[{"topic":"zigbee2mqtt/bridge/state","value_template":"{{ value_json.state }}"}],)j";
  const std::string device =
      R"j("device":{"identifiers":["zigbee2mqtt_0x00158d0001a2b3c4"],"manufacturer":"Aqara",)j"
      R"j("model":"Door and window sensor (MCCGQ11LM)","name":"front_door"},)j";
  mqtt_->Publish(
      "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config",
      "{" + avail + device +
          R"j("device_class":"temperature","enabled_by_default":true,)j"
          R"j("object_id":"kitchen_sensor_temperature","state_class":"measurement",)j"
          R"j("state_topic":"zigbee2mqtt/kitchen_sensor",)j"
          R"j("unique_id":"0x00158d0001a2b3c4_temperature_zigbee2mqtt",)j"
          R"j("unit_of_measurement":"°C","value_template":"{{ value_json.temperature }}"})j",
      1, /*retained=*/true);
  mqtt_->Publish(
      "homeassistant/binary_sensor/0x00158d0001d4e5f6/contact/config",
      "{" + avail + device +
          R"j("device_class":"door","name":"Door","payload_off":true,"payload_on":false,)j"
          R"j("state_topic":"zigbee2mqtt/front_door",)j"
          R"j("unique_id":"0x00158d0001d4e5f6_contact_zigbee2mqtt",)j"
          R"j("value_template":"{{ value_json.contact }}"})j",
      1, /*retained=*/true);
  mqtt_->Publish("homeassistant/light/0x0017880102952daf/light/config",
                 "{" + avail +
                     R"j("brightness":true,"brightness_scale":254,"color_mode":true,)j"
                     R"j("command_topic":"zigbee2mqtt/hall_light/set","schema":"json",)j"
                     R"j("state_topic":"zigbee2mqtt/hall_light",)j"
                     R"j("supported_color_modes":["color_temp"],)j"
                     R"j("unique_id":"0x0017880102952daf_light_zigbee2mqtt"})j",
                 1, /*retained=*/true);
  // Announced disabled (enabled_by_default: false): listed, not recorded.
  mqtt_->Publish(
      "homeassistant/sensor/0x00158d0001a2b3c4/linkquality/config",
      R"j({"enabled_by_default":false,"entity_category":"diagnostic",)j"
      R"j("state_class":"measurement","state_topic":"zigbee2mqtt/kitchen_sensor",)j"
      R"j("unit_of_measurement":"lqi","value_template":"{{ value_json.linkquality }}"})j",
      1, /*retained=*/true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") >= 3; }))
      << komoku_->Output();
  EXPECT_TRUE(WaitFor([&] {
    return komoku_->Metric("komoku_discovery_refused_total{reason=\"disabled\"}") == 1;
  })) << komoku_->Output();
  mqtt_->Publish("zigbee2mqtt/bridge/state", R"({"state":"online"})", 1, true);
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":21.43,"linkquality":120})");
  mqtt_->Publish("zigbee2mqtt/front_door", R"({"contact":false,"battery":100})");
  mqtt_->Publish("zigbee2mqtt/hall_light", R"({"state":"ON","brightness":254,"color_temp":370})");
  struct Expected {
    const char* key;
    nlohmann::json value;
  };
  for (const Expected& e : std::vector<Expected>{
           {"zigbee2mqtt/kitchen_sensor/temperature", 21.43},
           {"zigbee2mqtt/front_door/contact", true},  // open, as through the example rule
           {"zigbee2mqtt/hall_light/state", true},
           {"zigbee2mqtt/hall_light/brightness", 254},
           {"zigbee2mqtt/hall_light/color_temp", 370},
           {"zigbee2mqtt/bridge/state", true},
       }) {
    EXPECT_TRUE(WaitFor([&] { return Value(e.key)["value"] == e.value; }))
        << e.key << ": " << Value(e.key).dump() << komoku_->Output();
  }
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=zigbee2mqtt/kitchen_sensor/linkquality").status, 404);
  // What it read is listed: the rules a user can see (and switch off with
  // discovery.enabled: false).
  auto listed = komoku_->Get("/api/v1/discovery");
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(listed.Json()["mapped"], 5) << listed.body;  // the light is three
}

// Tasmota 12+ announces itself only on tasmota/discovery/<MAC>/config and
// .../sensors (tasmota_xdrv_driver/xdrv_12_discovery.ino); a fresh config
// reads them: relays, the SENSOR numbers (two channels included) and LWT.
TEST_F(FreshConfigTest, RecordsTasmotaNativeDiscovery) {
  mqtt_->Publish(
      "tasmota/discovery/A4CF12ABCDEF/config",
      R"j({"ip":"192.168.1.50","dn":"Shelly 2.5","hn":"shelly25-ABCDEF",)j"
      R"j("mac":"A4CF12ABCDEF","md":"Shelly 2.5","ofln":"Offline","onln":"Online",)j"
      R"j("state":["OFF","ON","TOGGLE","HOLD"],"sw":"13.2.0","t":"shelly25",)j"
      R"j("ft":"%prefix%/%topic%/","tp":["cmnd","stat","tele"],"rl":[1,1,0,0,0,0,0,0],)j"
      R"j("so":{"4":0,"11":0,"13":0,"17":0,"20":0,"30":0,"68":0,"73":0,"82":0},"ver":1})j",
      1, /*retained=*/true);
  mqtt_->Publish("tasmota/discovery/A4CF12ABCDEF/sensors",
                 R"j({"sn":{"Time":"2026-11-20T10:00:00","ENERGY":{"TotalStartTime":)j"
                 R"j("2026-01-02T10:11:12","Total":3.051,"Power":[12,34],"Voltage":231},)j"
                 R"j("TempUnit":"C"},"ver":1})j",
                 1, /*retained=*/true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 5; }))
      << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  mqtt_->Publish("tele/shelly25/LWT", "Online", 1, true);
  mqtt_->Publish("stat/shelly25/POWER2", "ON");
  mqtt_->Publish(
      "tele/shelly25/SENSOR",
      R"({"Time":"2026-11-20T10:05:00","ENERGY":{"TotalStartTime":"2026-01-02T10:11:12",)"
      R"("Total":3.052,"Power":[10,30],"Voltage":230},"TempUnit":"C"})");
  struct Expected {
    const char* key;
    nlohmann::json value;
    const char* type;
  };
  for (const Expected& e : std::vector<Expected>{
           {"tele/shelly25/LWT", true, "boolean"},
           {"stat/shelly25/POWER2", true, "boolean"},
           {"tele/shelly25/SENSOR/ENERGY.Total", 3.052, "counter"},
           {"tele/shelly25/SENSOR/ENERGY.Power/1", 10, "numeric"},
           {"tele/shelly25/SENSOR/ENERGY.Power/2", 30, "numeric"},
           {"tele/shelly25/SENSOR/ENERGY.Voltage", 230, "numeric"},
       }) {
    EXPECT_TRUE(WaitFor([&] { return Value(e.key)["value"] == e.value; }))
        << e.key << ": " << Value(e.key).dump() << komoku_->Output();
    EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
  }
}

// Value templates that compare and choose, as devices announce them
// (docs/mapping.md#value-templates): zigbee2mqtt's update_available
// (lib/extension/homeassistant.ts: a comparison against "available",
// payload_on true), a Shelly-style door through an {% if %} block into
// ON/OFF, a power sensor with float(0). One still unsupported (Home
// Assistant's state, states()) is refused with a log line naming the
// entity and the construct, and counted.
TEST_F(FreshConfigTest, TemplatesThatCompareAndChooseAreEvaluated) {
  mqtt_->Publish("homeassistant/binary_sensor/0x00158d0001a2b3c4/update_available/config",
                 R"j({"device_class":"update","entity_category":"diagnostic",)j"
                 R"j("payload_off":false,"payload_on":true,)j"
                 R"j("state_topic":"zigbee2mqtt/kitchen_sensor",)j"
                 R"j("unique_id":"0x00158d0001a2b3c4_update_available_zigbee2mqtt",)j"
                 R"j("value_template":"{{ value_json['update']['state'] == \"available\" }}"})j",
                 1, /*retained=*/true);
  mqtt_->Publish("homeassistant/binary_sensor/shellydw2-AABBCC-door/config",
                 R"j({"name":"Door","stat_t":"shellies/shellydw2-AABBCC/sensor/state",)j"
                 R"j("dev_cla":"door","pl_on":"ON","pl_off":"OFF",)j"
                 R"j("val_tpl":"{%if value==\"open\"%}ON{%else%}OFF{%endif%}"})j",
                 1, /*retained=*/true);
  mqtt_->Publish("homeassistant/sensor/plug-1/power/config",
                 R"j({"stat_t":"plug-1/state","unit_of_meas":"W","dev_cla":"power",)j"
                 R"j("val_tpl":"{{ value_json.power | float(0) | round(1) }}"})j",
                 1, /*retained=*/true);
  mqtt_->Publish("homeassistant/sensor/plug-1/cost/config",
                 R"j({"stat_t":"plug-1/state","unit_of_meas":"EUR",)j"
                 R"j("val_tpl":"{{ value_json.energy * states('input_number.price') | float }}"})j",
                 1, /*retained=*/true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") >= 3; }))
      << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  ASSERT_TRUE(WaitFor([&] {
    return komoku_->Metric("komoku_discovery_refused_total{reason=\"bad_template\"}") == 1;
  })) << komoku_->Output();
  EXPECT_TRUE(WaitFor([&] {
    return komoku_->Output().find(
               "'homeassistant/sensor/plug-1/cost/config' not mapped "
               "(bad_template)") != std::string::npos &&
           komoku_->Output().find("calls 'states()'") != std::string::npos;
  })) << komoku_->Output();

  mqtt_->Publish("zigbee2mqtt/kitchen_sensor",
                 R"({"temperature":21.4,"update":{"state":"available"}})");
  mqtt_->Publish("shellies/shellydw2-AABBCC/sensor/state", "open");
  mqtt_->Publish("plug-1/state", R"({"power":"12.34","energy":3})");
  struct Expected {
    const char* key;
    nlohmann::json value;
    const char* type;
  };
  const std::vector<Expected> first = {
      {"zigbee2mqtt/kitchen_sensor/update.state", true, "boolean"},
      {"shellies/shellydw2-AABBCC/sensor/state", true, "boolean"},
      {"plug-1/state/power", 12.3, "numeric"},
  };
  for (const Expected& e : first) {
    EXPECT_TRUE(WaitFor([&] { return Value(e.key)["value"] == e.value; }))
        << e.key << ": " << Value(e.key).dump() << komoku_->Output();
    EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
  }
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"update":{"state":"idle"}})");
  mqtt_->Publish("shellies/shellydw2-AABBCC/sensor/state", "close");
  mqtt_->Publish("plug-1/state", R"({"power":"unavailable"})");  // float(0): 0
  for (const Expected& e : std::vector<Expected>{
           {"zigbee2mqtt/kitchen_sensor/update.state", false, "boolean"},
           {"shellies/shellydw2-AABBCC/sensor/state", false, "boolean"},
           {"plug-1/state/power", 0, "numeric"},
       }) {
    EXPECT_TRUE(WaitFor([&] { return Value(e.key)["value"] == e.value; }))
        << e.key << ": " << Value(e.key).dump() << komoku_->Output();
  }
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=plug-1/state/energy").status, 404);
}

// Homie, each version as its convention (homieiot.github.io/convention)
// describes it: a Homie 3.0.1 device whose property has no $datatype
// (optional then, string by default), a Homie 4.0.0 one with its
// $datatype, and a Homie 5 device described by one JSON $description.
TEST_F(FreshConfigTest, RecordsHomie3And4And5Devices) {
  // Homie 3: the property's attributes before the device's version.
  mqtt_->Publish("homie/garden/soil/moisture/$name", "Soil moisture", 1, true);
  mqtt_->Publish("homie/garden/soil/moisture/$unit", "%", 1, true);
  mqtt_->Publish("homie/garden/$homie", "3.0.1", 1, true);
  mqtt_->Publish("homie/garden/$state", "ready", 1, true);
  // Homie 4.
  mqtt_->Publish("homie/weather/$homie", "4.0.0", 1, true);
  mqtt_->Publish("homie/weather/outside/temperature/$name", "Temperature", 1, true);
  mqtt_->Publish("homie/weather/outside/temperature/$datatype", "float", 1, true);
  mqtt_->Publish("homie/weather/outside/temperature/$unit", "°C", 1, true);
  mqtt_->Publish("homie/weather/$state", "ready", 1, true);
  // Homie 5.
  mqtt_->Publish("homie/5/thermo-1/$description",
                 R"j({"homie":"5.0","version":1720000000,"name":"Thermostat","nodes":{)j"
                 R"j("thermostat":{"name":"Living room","properties":{)j"
                 R"j("temperature":{"name":"Temperature","datatype":"float","unit":"°C"},)j"
                 R"j("heating":{"datatype":"boolean"},)j"
                 R"j("mode":{"datatype":"enum","format":"off,heat,auto","settable":true}}}}})j",
                 1, /*retained=*/true);
  mqtt_->Publish("homie/5/thermo-1/$state", "ready", 1, true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 5; }))
      << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  mqtt_->Publish("homie/garden/soil/moisture", "41", 1, true);
  mqtt_->Publish("homie/weather/outside/temperature", "3.5", 1, true);
  mqtt_->Publish("homie/5/thermo-1/thermostat/temperature", "21.5", 1, true);
  mqtt_->Publish("homie/5/thermo-1/thermostat/heating", "true", 1, true);
  mqtt_->Publish("homie/5/thermo-1/thermostat/mode", "heat", 1, true);
  struct Expected {
    const char* key;
    nlohmann::json value;
    const char* type;
  };
  for (const Expected& e : std::vector<Expected>{
           {"homie/garden/soil/moisture", "41", "string"},  // Homie 3's default
           {"homie/garden/$state", true, "boolean"},
           {"homie/weather/outside/temperature", 3.5, "numeric"},
           {"homie/weather/$state", true, "boolean"},
           {"homie/5/thermo-1/thermostat/temperature", 21.5, "numeric"},
           {"homie/5/thermo-1/thermostat/heating", true, "boolean"},
           {"homie/5/thermo-1/thermostat/mode", "heat", "string"},
           {"homie/5/thermo-1/$state", true, "boolean"},
       }) {
    EXPECT_TRUE(WaitFor([&] { return Value(e.key)["value"] == e.value; }))
        << e.key << ": " << Value(e.key).dump() << komoku_->Output();
    EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
  }
}

// A zigbee2mqtt thermostatic radiator valve as lib/extension/homeassistant.ts
// announces it (zigbee2mqtt 1.x): a climate with one template per value,
// its action template a {% set %} dictionary (running_state heat -> heating),
// and its window and battery-low binary_sensors.
TEST_F(FreshConfigTest, RecordsAZigbee2mqttThermostat) {
  const std::string base =
      R"j("availability":[{"topic":"zigbee2mqtt/bridge/state","value_template":)j"
      R"j("{{ value_json.state }}"}],"device":{"identifiers":["zigbee2mqtt_0x0c4314fffe1a2b3c"],)j"
      R"j("manufacturer":"TuYa","model":"Radiator valve (TS0601_thermostat)",)j"
      R"j("name":"bedroom_trv"},)j";
  mqtt_->Publish(
      "homeassistant/climate/0x0c4314fffe1a2b3c/climate/config",
      "{" + base +
          R"j("action_template":"{% set values = {None:None,'idle':'idle','heat':'heating'} %})j"
          R"j({{ values[value_json.running_state] }}","action_topic":"zigbee2mqtt/bedroom_trv",)j"
          R"j("current_temperature_template":"{{ value_json.local_temperature }}",)j"
          R"j("current_temperature_topic":"zigbee2mqtt/bedroom_trv","max_temp":"35",)j"
          R"j("min_temp":"5","mode_command_topic":"zigbee2mqtt/bedroom_trv/set/system_mode",)j"
          R"j("mode_state_template":"{{ value_json.system_mode }}",)j"
          R"j("mode_state_topic":"zigbee2mqtt/bedroom_trv","modes":["heat","auto","off"],)j"
          R"j("temp_step":0.5,"temperature_command_topic":)j"
          R"j("zigbee2mqtt/bedroom_trv/set/current_heating_setpoint",)j"
          R"j("temperature_state_template":"{{ value_json.current_heating_setpoint }}",)j"
          R"j("temperature_state_topic":"zigbee2mqtt/bedroom_trv","temperature_unit":"C",)j"
          R"j("unique_id":"0x0c4314fffe1a2b3c_climate_zigbee2mqtt"})j",
      1, /*retained=*/true);
  mqtt_->Publish("homeassistant/binary_sensor/0x0c4314fffe1a2b3c/window_open/config",
                 "{" + base +
                     R"j("device_class":"window","payload_off":false,"payload_on":true,)j"
                     R"j("state_topic":"zigbee2mqtt/bedroom_trv",)j"
                     R"j("unique_id":"0x0c4314fffe1a2b3c_window_open_zigbee2mqtt",)j"
                     R"j("value_template":"{{ value_json.window_open }}"})j",
                 1, /*retained=*/true);
  mqtt_->Publish("homeassistant/binary_sensor/0x0c4314fffe1a2b3c/battery_low/config",
                 "{" + base +
                     R"j("device_class":"battery","entity_category":"diagnostic",)j"
                     R"j("payload_off":false,"payload_on":true,)j"
                     R"j("state_topic":"zigbee2mqtt/bedroom_trv",)j"
                     R"j("unique_id":"0x0c4314fffe1a2b3c_battery_low_zigbee2mqtt",)j"
                     R"j("value_template":"{{ value_json.battery_low }}"})j",
                 1, /*retained=*/true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 6; }))
      << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  EXPECT_EQ(komoku_->Metric("komoku_discovery_refused_total{reason=\"bad_template\"}"), 0)
      << komoku_->Get("/api/v1/discovery").body;
  mqtt_->Publish("zigbee2mqtt/bridge/state", R"({"state":"online"})", 1, true);
  mqtt_->Publish("zigbee2mqtt/bedroom_trv",
                 R"({"battery_low":false,"child_lock":"UNLOCK","current_heating_setpoint":21,)"
                 R"("local_temperature":19.5,"running_state":"heat","system_mode":"heat",)"
                 R"("window_open":true,"linkquality":72})");
  struct Expected {
    const char* key;
    nlohmann::json value;
    const char* type;
  };
  for (const Expected& e : std::vector<Expected>{
           {"zigbee2mqtt/bedroom_trv/local_temperature", 19.5, "numeric"},
           {"zigbee2mqtt/bedroom_trv/current_heating_setpoint", 21, "numeric"},
           {"zigbee2mqtt/bedroom_trv/system_mode", "heat", "string"},
           {"zigbee2mqtt/bedroom_trv/window_open", true, "boolean"},
           {"zigbee2mqtt/bedroom_trv/battery_low", false, "boolean"},
           {"zigbee2mqtt/bedroom_trv/running_state", "heating", "string"},
       }) {
    EXPECT_TRUE(WaitFor([&] { return Value(e.key)["value"] == e.value; }))
        << e.key << ": " << Value(e.key).dump() << komoku_->Output();
    EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
  }
}

// A zigbee2mqtt device renamed (kitchen_sensor -> kitchen): zigbee2mqtt
// announces its entities again on the same config topics (they are named
// after the IEEE address) with the same unique_id and the new state topic;
// with `homeassistant_rename` it first clears them (an empty retained
// config). lib/extension/homeassistant.ts, onEntityRenamed. The history
// stays on the first key, the new name shows as its alias, also after a
// restart.
TEST_F(FreshConfigTest, ARenamedZigbee2mqttDeviceKeepsItsHistory) {
  const auto config = [](const std::string& name, const char* field, const char* unit) {
    return std::string(R"j({"device":{"identifiers":["zigbee2mqtt_0x00158d0001a2b3c4"],)j") +
           R"j("model":"Temperature and humidity sensor (WSDCGQ11LM)","name":")j" + name +
           R"j("},"device_class":")j" + field + R"j(","enabled_by_default":true,"object_id":")j" +
           name + "_" + field + R"j(","origin":{"name":"Zigbee2MQTT","sw":"1.40.2"},)j" +
           R"j("state_class":"measurement","state_topic":"zigbee2mqtt/)j" + name +
           R"j(","unique_id":"0x00158d0001a2b3c4_)j" + field +
           R"j(_zigbee2mqtt","unit_of_measurement":")j" + unit +
           R"j(","value_template":"{{ value_json.)j" + field + R"j( }}"})j";
  };
  const std::string temperature = "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config";
  const std::string humidity = "homeassistant/sensor/0x00158d0001a2b3c4/humidity/config";
  mqtt_->Publish(temperature, config("kitchen_sensor", "temperature", "°C"), 1, true);
  mqtt_->Publish(humidity, config("kitchen_sensor", "humidity", "%"), 1, true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 2; }))
      << komoku_->Output();
  Barrier();
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":21.5,"humidity":48})");
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/temperature", 21.5)) << komoku_->Output();
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/humidity", 48));

  // The rename: the temperature announced again, the humidity cleared first.
  mqtt_->Publish(temperature, config("kitchen", "temperature", "°C"), 1, true);
  mqtt_->Publish(humidity, "", 1, true);
  mqtt_->Publish(humidity, config("kitchen", "humidity", "%"), 1, true);
  const auto renamed = [&] {
    auto d = komoku_->Get("/api/v1/discovery").Json();
    int n = 0;
    for (const auto& e : d["entities"]) n += e.value("state_topic", "") == "zigbee2mqtt/kitchen";
    return n == 2 && d["mapped"] == 2;
  };
  ASSERT_TRUE(WaitFor(renamed)) << komoku_->Get("/api/v1/discovery").body;
  Barrier();
  mqtt_->Publish("zigbee2mqtt/kitchen", R"({"temperature":22.5,"humidity":50})");
  EXPECT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/temperature", 22.5))
      << Value("zigbee2mqtt/kitchen/temperature").dump() << komoku_->Output();
  EXPECT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/humidity", 50))
      << Value("zigbee2mqtt/kitchen/humidity").dump();
  const auto expect_one_history = [&](size_t changes) {
    for (const char* field : {"temperature", "humidity"}) {
      const std::string key = std::string("zigbee2mqtt/kitchen_sensor/") + field;
      const std::string alias = std::string("zigbee2mqtt/kitchen/") + field;
      EXPECT_TRUE(WaitFor([&] { return HistorySize(key) == changes; }))
          << key << ": " << HistorySize(key);
      // The new name is the key's alias: asking by it answers the key.
      EXPECT_EQ(Value(alias)["key"], key) << alias;
      bool listed = false;
      const nlohmann::json keys = komoku_->Get("/api/v1/keys").Json();
      for (const auto& k : keys["keys"]) {
        if (k["key"] == key) listed = k.value("alias", "") == alias;
      }
      EXPECT_TRUE(listed) << komoku_->Get("/api/v1/keys").body;
    }
  };
  expect_one_history(2);

  // A restart: the retained configs (the new name) come again; the keys
  // stay where the state file says.
  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitFor(renamed)) << komoku_->Get("/api/v1/discovery").body;
  Barrier();
  mqtt_->Publish("zigbee2mqtt/kitchen", R"({"temperature":23,"humidity":51})");
  EXPECT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/temperature", 23)) << komoku_->Output();
  expect_one_history(3);
}

// A renamed zigbee2mqtt device asked for by its new name (the key's alias):
// every request that names a key answers as the first key, and says which
// alias it followed. A real key of the alias's name wins over the alias.
TEST_F(FreshConfigTest, ARenamedDeviceIsFoundByItsNewName) {
  const auto config = [](const std::string& name, const char* field) {
    return std::string(R"j({"device":{"identifiers":["zigbee2mqtt_0x00158d0001a2b3c4"],)j") +
           R"j("name":")j" + name + R"j("},"device_class":")j" + field +
           R"j(","state_class":"measurement","state_topic":"zigbee2mqtt/)j" + name +
           R"j(","unique_id":"0x00158d0001a2b3c4_)j" + field +
           R"j(_zigbee2mqtt","value_template":"{{ value_json.)j" + field + R"j( }}"})j";
  };
  const std::string temperature = "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config";
  const std::string humidity = "homeassistant/sensor/0x00158d0001a2b3c4/humidity/config";
  mqtt_->Publish(temperature, config("kitchen_sensor", "temperature"), 1, true);
  mqtt_->Publish(humidity, config("kitchen_sensor", "humidity"), 1, true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 2; }))
      << komoku_->Output();
  Barrier();
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":21.5,"humidity":48})");
  const std::string key = "zigbee2mqtt/kitchen_sensor/temperature";
  const std::string alias = "zigbee2mqtt/kitchen_temp/temperature";
  ASSERT_TRUE(WaitForValue(key, 21.5)) << komoku_->Output();
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/humidity", 48));
  // A key that happens to have the name the humidity's alias will have.
  mqtt_->Publish("komoku/set/zigbee2mqtt/kitchen_temp/humidity", "99");
  ASSERT_TRUE(WaitForValue("zigbee2mqtt/kitchen_temp/humidity", 99));

  // The rename (same unique_id, new state topic), then a change.
  mqtt_->Publish(temperature, config("kitchen_temp", "temperature"), 1, true);
  mqtt_->Publish(humidity, config("kitchen_temp", "humidity"), 1, true);
  ASSERT_TRUE(WaitFor([&] {
    const nlohmann::json keys = komoku_->Get("/api/v1/keys").Json();
    int n = 0;
    for (const auto& k : keys["keys"]) n += k.contains("alias");
    return n == 2;
  })) << komoku_->Get("/api/v1/keys").body;
  Barrier();
  mqtt_->Publish("zigbee2mqtt/kitchen_temp", R"({"temperature":22.5,"humidity":50})");
  ASSERT_TRUE(WaitForValue(key, 22.5)) << komoku_->Output();

  // One history with both changes, by either name.
  const nlohmann::json both = {21.5, 22.5};
  const auto values = [](const nlohmann::json& answer) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& row : answer["rows"]) out.push_back(row[1]);
    return out;
  };
  for (const std::string& name : {alias, key}) {
    auto r = komoku_->Get("/api/v1/history?key=" + name + "&from=0");
    ASSERT_EQ(r.status, 200) << name << ": " << r.body;
    const nlohmann::json j = r.Json();
    EXPECT_EQ(j["key"], key) << r.body;
    EXPECT_EQ(values(j), both) << r.body;
    // Which alias was followed: only when one was.
    if (name == alias) {
      EXPECT_EQ(j.value("alias", ""), alias) << r.body;
    } else {
      EXPECT_FALSE(j.contains("alias")) << r.body;
    }
  }
  // Every other question that names a key.
  auto value = komoku_->Get("/api/v1/value?key=" + alias).Json();
  EXPECT_EQ(value["key"], key);
  EXPECT_EQ(value["value"], 22.5);
  EXPECT_EQ(value["alias"], alias);
  auto stats = komoku_->Get("/api/v1/stats?key=" + alias + "&from=0");
  ASSERT_EQ(stats.status, 200) << stats.body;
  EXPECT_EQ(stats.Json()["key"], key);
  EXPECT_EQ(stats.Json()["alias"], alias);
  auto at = komoku_->Get("/api/v1/at?key=" + alias + "&time=now");
  ASSERT_EQ(at.status, 200) << at.body;
  EXPECT_EQ(at.Json()["value"], 22.5) << at.body;
  auto several = komoku_->Get("/api/v1/history?key=" + alias + "&key=" + key + "&from=0");
  ASSERT_EQ(several.status, 200) << several.body;
  const nlohmann::json results = several.Json()["results"];
  ASSERT_EQ(results.size(), 2u) << several.body;
  for (const auto& one : results) EXPECT_EQ(values(one), both) << several.body;
  auto fetched =
      komoku_->Post("/api/v1/komoku", R"({"fetch":{"key":")" + alias + R"(","from":0}})");
  ASSERT_EQ(fetched.status, 200) << fetched.body;
  EXPECT_EQ(fetched.Json()["result"].size(), 2u) << fetched.body;

  // A stream by the alias: the key's history, then its live changes.
  SseClient stream(komoku_->http_port(), "/api/v1/stream?key=" + alias + "&since=0");
  ASSERT_EQ(stream.WaitStatus(), 200) << stream.Body();
  const auto streamed = [&](const char* event, const nlohmann::json& value) {
    return stream.WaitForEvents([&](const std::vector<SseClient::Event>& events) {
      for (const SseClient::Event& e : events) {
        const nlohmann::json d = nlohmann::json::parse(e.data, nullptr, false);
        if (e.event == event && d.is_object() && d.value("key", "") == key && d["value"] == value)
          return true;
      }
      return false;
    });
  };
  EXPECT_TRUE(streamed("history", 21.5));
  EXPECT_TRUE(streamed("history", 22.5));

  // Writes by the alias go to the key too, and make no key of its name:
  // over MQTT's set topic and over HTTP.
  mqtt_->Publish("komoku/set/" + alias, "23");
  EXPECT_TRUE(WaitFor([&] { return HistorySize(key) == 3; })) << HistorySize(key);
  EXPECT_TRUE(streamed("change", 23));
  auto put = komoku_->Put("/api/v1/value?key=" + alias + "&value=24", "");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.Json()["key"], key) << put.body;
  EXPECT_EQ(HistorySize(key), 4u);
  const nlohmann::json keys = komoku_->Get("/api/v1/keys").Json();
  for (const auto& k : keys["keys"]) EXPECT_NE(k["key"], alias) << keys.dump();

  // The real key wins: the humidity's alias is a key of its own.
  auto real = komoku_->Get("/api/v1/history?key=zigbee2mqtt/kitchen_temp/humidity&from=0");
  ASSERT_EQ(real.status, 200) << real.body;
  EXPECT_EQ(real.Json()["key"], "zigbee2mqtt/kitchen_temp/humidity") << real.body;
  EXPECT_EQ(values(real.Json()), nlohmann::json({99})) << real.body;
  EXPECT_FALSE(real.Json().contains("alias")) << real.body;
  EXPECT_TRUE(WaitForValue("zigbee2mqtt/kitchen_sensor/humidity", 50));
  // A name that is neither is still unknown.
  EXPECT_EQ(komoku_->Get("/api/v1/history?key=zigbee2mqtt/kitchen_temp/battery").status, 404);
}

// Events: every press is a change, also the same press twice within
// same_value_resolution (60 s). zigbee2mqtt's device triggers (one retained
// device_automation config per action, the action on
// zigbee2mqtt/<name>/action, not retained: lib/extension/homeassistant.ts,
// publishDeviceTriggerDiscover), a Home Assistant MQTT event entity
// (home-assistant.io/integrations/event.mqtt: {"event_type": ...}) and a
// Homie 5 property with "retained": false (homieiot.github.io/specification)
// and a Homie 4 one with $retained false.
TEST_F(FreshConfigTest, EveryPressOfADiscoveredButtonIsRecorded) {
  const std::string trigger =
      R"j({"automation_type":"trigger","device":{"identifiers":["zigbee2mqtt_0x00158d00045b2a11"],)j"
      R"j("model":"Wireless mini switch (WXKG11LM)","name":"hall_switch"},)j"
      R"j("origin":{"name":"Zigbee2MQTT","sw":"1.40.2"},"payload":"VALUE","subtype":"VALUE",)j"
      R"j("topic":"zigbee2mqtt/hall_switch/action","type":"action"})j";
  for (const std::string value : {"single", "double"}) {
    std::string payload = trigger;
    for (size_t at; (at = payload.find("VALUE")) != std::string::npos;) {
      payload.replace(at, 5, value);
    }
    mqtt_->Publish("homeassistant/device_automation/0x00158d00045b2a11/action_" + value + "/config",
                   payload, 1, true);
  }
  mqtt_->Publish("homeassistant/event/doorbell/press/config",
                 R"j({"name":"Doorbell","state_topic":"doorbell/event","device_class":"doorbell",)j"
                 R"j("event_types":["press","hold"],"unique_id":"doorbell_press"})j",
                 1, true);
  mqtt_->Publish(
      "homie/5/remote-1/$description",
      R"j({"homie":"5.0","version":1,"name":"Remote","nodes":{"buttons":{"properties":{)j"
      R"j("button":{"datatype":"enum","format":"press,long-press","retained":false},)j"
      R"j("battery":{"datatype":"integer","unit":"%"}}}}})j",
      1, true);
  // Homie 4.0: a property with $retained false (homieiot.github.io/convention,
  // 4.0.0, property attributes: "$retained", default true).
  mqtt_->Publish("homie/remote-2/$homie", "4.0.0", 1, true);
  mqtt_->Publish("homie/remote-2/buttons/button/$datatype", "enum", 1, true);
  mqtt_->Publish("homie/remote-2/buttons/button/$format", "press,long-press", 1, true);
  mqtt_->Publish("homie/remote-2/buttons/button/$retained", "false", 1, true);
  ASSERT_TRUE(WaitFor([&] {
    const nlohmann::json discovered = komoku_->Get("/api/v1/discovery").Json();
    for (const auto& e : discovered["entities"]) {
      if (e.value("id", "") == "homie/remote-2/buttons/button") return e.value("event", false);
    }
    return false;
  })) << komoku_->Get("/api/v1/discovery").body;
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 6; }))
      << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  Barrier();
  struct Press {
    const char* topic;
    const char* payload;
    const char* key;
    const char* value;
  };
  for (const Press& p : std::vector<Press>{
           {"zigbee2mqtt/hall_switch/action", "single", "zigbee2mqtt/hall_switch/action", "single"},
           {"doorbell/event", R"({"event_type":"press"})", "doorbell/event/event_type", "press"},
           {"homie/5/remote-1/buttons/button", "press", "homie/5/remote-1/buttons/button", "press"},
           {"homie/remote-2/buttons/button", "press", "homie/remote-2/buttons/button", "press"},
       }) {
    // Two identical presses, the second once the first is stored (so that
    // their arrival times differ), then another.
    mqtt_->Publish(p.topic, p.payload);
    ASSERT_TRUE(WaitForValue(p.key, p.value)) << p.key << komoku_->Output();
    EXPECT_EQ(Value(p.key)["type"], "string") << p.key;
    ASSERT_TRUE(WaitFor([&] { return HistorySize(p.key) == 1; })) << p.key;
    mqtt_->Publish(p.topic, p.payload);
    EXPECT_TRUE(WaitFor([&] { return HistorySize(p.key) == 2; }))
        << p.key << ": " << HistorySize(p.key);
  }
  mqtt_->Publish("zigbee2mqtt/hall_switch/action", "double");
  EXPECT_TRUE(WaitForValue("zigbee2mqtt/hall_switch/action", "double"));
  EXPECT_TRUE(WaitFor([&] { return HistorySize("zigbee2mqtt/hall_switch/action") == 3; }));
  // A retained property is no event: its repeat is not stored again.
  mqtt_->Publish("homie/5/remote-1/buttons/battery", "90", 1, true);
  ASSERT_TRUE(WaitForValue("homie/5/remote-1/buttons/battery", 90));
  mqtt_->Publish("homie/5/remote-1/buttons/battery", "90", 1, true);
  Barrier();
  EXPECT_EQ(HistorySize("homie/5/remote-1/buttons/battery"), 1u);
}

// Event options that arrive late: a Homie 4 property announces its
// attributes one retained message each, so its key may exist (made with
// the default same_value_resolution of 60 s) before `$retained false`
// says its values are events. Then the key takes same_value_resolution 0,
// as a key made for an event does, and a second press a moment later is
// stored; a key whose same_value_resolution a user set keeps it.
TEST_F(FreshConfigTest, AnEventMarkerThatComesLateAppliesToItsKey) {
  auto options_of = [&](const std::string& key) {
    const nlohmann::json answer =
        komoku_->Post("/api/v1/komoku", R"({"keys": {}})").Json()["result"];
    for (const nlohmann::json& k : answer) {
      if (k.value("key", "") == key) return k["opts"];
    }
    return nlohmann::json();
  };
  for (const std::string device : {"remote-3", "remote-4"}) {
    mqtt_->Publish("homie/" + device + "/$homie", "4.0.0", 1, true);
    mqtt_->Publish("homie/" + device + "/buttons/button/$datatype", "string", 1, true);
  }
  const std::string key = "homie/remote-3/buttons/button";
  const std::string user_key = "homie/remote-4/buttons/button";
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 2; }))
      << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  Barrier();
  mqtt_->Publish(key, "press");
  mqtt_->Publish(user_key, "press");
  ASSERT_TRUE(WaitForValue(key, "press")) << komoku_->Output();
  ASSERT_TRUE(WaitForValue(user_key, "press")) << komoku_->Output();
  EXPECT_DOUBLE_EQ(options_of(key)["same_value_resolution"].get<double>(), 60);
  // Not an event yet: the repeat is not stored.
  mqtt_->Publish(key, "press");
  Barrier();
  EXPECT_EQ(HistorySize(key), 1u);
  // A user's own choice for the other key.
  ASSERT_EQ(
      komoku_->Post("/api/v1/define?key=" + user_key, R"({"opts": {"same_value_resolution": 5}})")
          .status,
      200);

  for (const std::string device : {"remote-3", "remote-4"}) {
    mqtt_->Publish("homie/" + device + "/buttons/button/$retained", "false", 1, true);
  }
  ASSERT_TRUE(WaitFor([&] { return options_of(key).value("same_value_resolution", -1.0) == 0; }))
      << options_of(key).dump() << komoku_->Output();
  mqtt_->Publish(key, "press");
  EXPECT_TRUE(WaitFor([&] { return HistorySize(key) == 2; })) << HistorySize(key);
  mqtt_->Publish(key, "press");
  EXPECT_TRUE(WaitFor([&] { return HistorySize(key) == 3; })) << HistorySize(key);
  Barrier();
  EXPECT_DOUBLE_EQ(options_of(user_key)["same_value_resolution"].get<double>(), 5);
  EXPECT_NE(komoku_->Output().find("keeps its same_value_resolution of 5 s"), std::string::npos)
      << komoku_->Output();
}

// zigbee2mqtt's event entity (homeassistant.experimental_event_entities):
// lib/extension/homeassistant.ts announces the device's action as an HA
// `event` with state_topic zigbee2mqtt/<name> and getActionValueTemplate()'s
// template (Koenkk/zigbee2mqtt at 6835cbf5, 2026-07-21; the text is the one
// tests/bridge/discovery_test.cc checks construct by construct). Each
// press is stored as its event_type, the same press twice included; a
// message without an action stores nothing, one whose event_type is not in
// event_types is refused.
TEST_F(FreshConfigTest, AZigbee2mqttEventEntityRecordsEachPress) {
  const nlohmann::json config = {
      {"device",
       {{"identifiers", {"zigbee2mqtt_0x0017880109abcdef"}},
        {"model", "Hue tap dial switch (8719514440937/8719514440999)"},
        {"name", "hue_tap"}}},
      {"event_types", {"press", "press_release", "hold", "hold_release", "dial_rotate"}},
      {"name", "Action"},
      {"object_id", "hue_tap_action"},
      {"origin", {{"name", "Zigbee2MQTT"}, {"sw", "2.1.0"}}},
      {"state_topic", "zigbee2mqtt/hue_tap"},
      {"unique_id", "0x0017880109abcdef_action_zigbee2mqtt"},
      {"value_template", Zigbee2mqttEventTemplate()}};
  mqtt_->Publish("homeassistant/event/0x0017880109abcdef/action/config", config.dump(), 1, true);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_discovery_entities") == 1; }))
      << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  Barrier();
  const std::string key = "zigbee2mqtt/hue_tap/event_type";
  const struct {
    const char* payload;
    const char* event_type;
  } presses[] = {
      {R"({"action":"button_1_press","battery":90})", "press"},
      {R"({"action":"button_1_press","battery":90})", "press"},
      {R"({"action":"dial_rotate_left_step","action_direction":"left"})", "dial_rotate"},
      {R"({"action":"button_2_hold_release"})", "hold_release"},
  };
  size_t stored = 0;
  for (const auto& p : presses) {
    mqtt_->Publish("zigbee2mqtt/hue_tap", p.payload);
    ++stored;
    // Each once stored, so that the arrival times of two equal presses differ.
    ASSERT_TRUE(WaitFor([&] { return HistorySize(key) == stored; }))
        << p.payload << ": " << HistorySize(key) << komoku_->Output();
    EXPECT_EQ(Value(key)["value"], p.event_type) << p.payload;
  }
  // No action: nothing stored, nothing refused.
  mqtt_->Publish("zigbee2mqtt/hue_tap", R"({"battery":89,"linkquality":120})");
  Barrier();
  EXPECT_EQ(HistorySize(key), stored);
  EXPECT_EQ(komoku_->Output().find(" refused "), std::string::npos) << komoku_->Output();
  // An event_type the config does not list (recall_1 is `recall`): Home
  // Assistant logs "Invalid event type" and fires nothing; Komoku refuses
  // it, counted, and stores nothing.
  mqtt_->Publish("zigbee2mqtt/hue_tap", R"({"action":"recall_1"})");
  EXPECT_TRUE(WaitFor([&] {
    return komoku_->Metric(
               "komoku_mapping_refused_total{rule=\"discovery\",reason=\"unknown_event_type\"}") ==
           1;
  })) << komoku_->Get("/metrics").body;
  Barrier();
  EXPECT_EQ(HistorySize(key), stored);
  EXPECT_EQ(Value(key)["value"], "hold_release");
  EXPECT_NE(komoku_->Output().find("'recall' is not one of the entity's event_types"),
            std::string::npos)
      << komoku_->Output();
}

}  // namespace
}  // namespace komoku::testing

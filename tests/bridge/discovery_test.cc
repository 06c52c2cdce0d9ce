// Discovery: Home Assistant discovery configs as zigbee2mqtt, Tasmota,
// ESPHome and Shelly (shellies-discovery) publish them, Homie attributes,
// value templates, refusals, the registry's repeats, removals and per-topic
// engines, and its state file.
#include "bridge/discovery.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <string>
#include <tuple>

#include "bridge/ha_template.h"
#include "common/files.h"
#include "temp_dir.h"
#include "test_data.h"

namespace komoku::bridge {
namespace {

using store::KeyType;

constexpr int64_t kNow = 1795306000000;

// zigbee2mqtt 1.40, an Aqara temperature sensor (full keys, availability list).
constexpr char kZ2mTemperatureTopic[] =
    "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config";
constexpr char kZ2mTemperature[] = R"js({"availability":[{"topic":"zigbee2mqtt/bridge/state",
"value_template":"{{ value_json.state }}"},{"topic":"zigbee2mqtt/kitchen_sensor/availability",
"value_template":"{{ value_json.state }}"}],"availability_mode":"all","device":{"identifiers":
["zigbee2mqtt_0x00158d0001a2b3c4"],"manufacturer":"Aqara","model":
"Temperature and humidity sensor (WSDCGQ11LM)","name":"kitchen_sensor","via_device":
"zigbee2mqtt_bridge_0x00124b0022aabbcc"},"device_class":"temperature","enabled_by_default":true,
"name":"Temperature","object_id":"kitchen_sensor_temperature","origin":{"name":"Zigbee2MQTT",
"sw":"1.40.0","url":"https://www.zigbee2mqtt.io"},"state_class":"measurement","state_topic":
"zigbee2mqtt/kitchen_sensor","unique_id":"0x00158d0001a2b3c4_temperature_zigbee2mqtt",
"unit_of_measurement":"°C","value_template":"{{ value_json.temperature }}"})js";
constexpr char kZ2mHumidityTopic[] = "homeassistant/sensor/0x00158d0001a2b3c4/humidity/config";
constexpr char kZ2mHumidity[] = R"({"availability":[{"topic":"zigbee2mqtt/bridge/state",
"value_template":"{{ value_json.state }}"}],"device":{"name":"kitchen_sensor"},
"device_class":"humidity","name":"Humidity","state_class":"measurement","state_topic":
"zigbee2mqtt/kitchen_sensor","unique_id":"0x00158d0001a2b3c4_humidity_zigbee2mqtt",
"unit_of_measurement":"%","value_template":"{{ value_json.humidity }}"})";
// A door contact: Home Assistant's "on" (open) is contact == false.
constexpr char kZ2mDoorTopic[] = "homeassistant/binary_sensor/0x00158d0001d4e5f6/contact/config";
constexpr char kZ2mDoor[] = R"({"availability":[{"topic":"zigbee2mqtt/bridge/state",
"value_template":"{{ value_json.state }}"}],"device":{"name":"front_door"},"device_class":"door",
"name":"Door","payload_off":true,"payload_on":false,"state_topic":"zigbee2mqtt/front_door",
"unique_id":"0x00158d0001d4e5f6_contact_zigbee2mqtt","value_template":"{{ value_json.contact }}"})";
// Tasmota 13 (abbreviated keys).
constexpr char kTasmotaEnergyTopic[] = "homeassistant/sensor/8C8E1A_ENERGY_Total/config";
constexpr char kTasmotaEnergy[] = R"({"name":"Tasmota ENERGY Total",
"stat_t":"tele/tasmota_8C8E1A/SENSOR","avty_t":"tele/tasmota_8C8E1A/LWT","pl_avail":"Online",
"pl_not_avail":"Offline","uniq_id":"8C8E1A_ENERGY_Total","dev":{"ids":["8C8E1A"]},
"unit_of_meas":"kWh","val_tpl":"{{value_json['ENERGY']['Total']}}","dev_cla":"energy",
"stat_cla":"total_increasing"})";
// Tasmota's relay, with `~` as topic base.
constexpr char kTasmotaRelayTopic[] = "homeassistant/switch/8C8E1A_RL_1/config";
constexpr char kTasmotaRelay[] = R"({"name":"Tasmota","cmd_t":"~cmnd/POWER","stat_t":"~tele/STATE",
"val_tpl":"{{value_json.POWER}}","pl_off":"OFF","pl_on":"ON","avty_t":"~tele/LWT",
"pl_avail":"Online","pl_not_avail":"Offline","uniq_id":"8C8E1A_RL_1","dev":{"ids":["8C8E1A"]},
"~":"tasmota_8C8E1A/"})";
// ESPHome 2024 (abbreviated keys, no template).
constexpr char kEsphomeTemperatureTopic[] = "homeassistant/sensor/livingroom/temperature/config";
constexpr char kEsphomeTemperature[] = R"({"dev_cla":"temperature","unit_of_meas":"°C",
"stat_cla":"measurement","name":"Temperature","stat_t":"livingroom/sensor/temperature/state",
"avty_t":"livingroom/status","uniq_id":"ESPsensortemperature","dev":{"ids":"a4cf12abcdef",
"name":"livingroom","sw":"esphome v2024.2.0","mdl":"esp32dev","mf":"espressif"}})";
constexpr char kEsphomeMotionTopic[] = "homeassistant/binary_sensor/livingroom/motion/config";
constexpr char kEsphomeMotion[] = R"({"dev_cla":"motion","name":"Motion",
"stat_t":"livingroom/binary_sensor/motion/state","avty_t":"livingroom/status",
"uniq_id":"ESPbinary_sensormotion","dev":{"ids":"a4cf12abcdef","name":"livingroom"}})";
// Shelly H&T (Gen 1) as shellies-discovery announces it: `~` base, expire_after.
constexpr char kShellyTopic[] = "homeassistant/sensor/shellyht-XYZ-temperature/config";
constexpr char kShelly[] = R"({"name":"Shelly H&T Temperature","stat_t":"~sensor/temperature",
"unit_of_meas":"°C","dev_cla":"temperature","stat_cla":"measurement","exp_aft":86400,
"uniq_id":"shellyht-xyz-temperature","~":"shellies/shellyht-XYZ/","avty_t":"~online",
"pl_avail":"true","pl_not_avail":"false"})";

// The one update a single-entity message makes ("changed" false when none).
Discovery::Update Handle1(Discovery& d, std::string_view topic, std::string_view payload) {
  std::vector<Discovery::Update> u = d.Handle(topic, payload);
  EXPECT_LE(u.size(), 1u) << topic;
  return u.empty() ? Discovery::Update{} : std::move(u.front());
}

DiscoveredEntity Ha(const char* topic, const std::string& payload) {
  return ParseHaDiscovery(topic, payload, DiscoveryOptions{});
}

// "key=value(kind)" per change, then "!reason" per refusal.
std::string Show(const Discovery::Mapped& m) {
  std::string out;
  for (const MappedChange& c : m.result.changes) {
    out += c.key + "=";
    if (auto* d = std::get_if<double>(&c.value)) {
      std::string n = std::to_string(*d);
      n.erase(n.find_last_not_of('0') + 1);
      if (n.back() == '.') n.pop_back();
      out += n + "(d)";
    } else if (auto* b = std::get_if<bool>(&c.value)) {
      out += *b ? "true(b)" : "false(b)";
    } else {
      out += "\"" + std::get<std::string>(c.value) + "\"(s)";
    }
    out += ";";
  }
  for (const MappingRefusal& r : m.result.refusals) out += "!" + r.reason + ";";
  return out;
}

TEST(ValueTemplateTest, WhatKomokuEvaluatesExactly) {
  struct Case {
    const char* text;
    const char* field;  // nullptr: refused
    bool numeric;
  };
  const Case cases[] = {
      {"{{ value }}", "", false},
      {"{{value}}", "", false},
      {"{{ value_json.temperature }}", "/temperature", false},
      {"{{value_json['ENERGY']['Total']}}", "/ENERGY/Total", false},
      {"{{ value_json[\"a/b\"].c }}", "/a~1b/c", false},
      {"{{ value_json.AM2301.Temperature }}", "/AM2301/Temperature", false},
      {" {{ value_json.temperature | float }} ", "/temperature", true},
      {"{{ value_json.temperature | round(1) }}", "/temperature", true},
      {"{{ value_json.temperature | float | round(1) }}", "/temperature", true},
      {"{{ value_json.power * 1000 }}", "/power", true},
      {"{{ (value_json.x) }}", "/x", false},
      // shellies-discovery's templates.
      {"{{value|float|round(1)}}", "", true},
      {"{{value|float*100|round}}", "", true},
      {"{{(value|float/60/1000)|round(2)}}", "", true},
      {"{{value_json.temperature.tC|round(1)}}", "/temperature/tC", true},
      {"{{ value | int }}", "", true},
      {"{{ value_json.x | default(0) }}", "/x", false},
      {"{% if value_json.x is defined %}{{ value_json.x | float * 2 }}{% endif %}", "/x", true},
      // Refused: Komoku would have to guess (a second value, Home
      // Assistant's state, things it does not evaluate).
      {"{{ value_json.a + value_json.b }}", nullptr, false},
      {"{{ value_json.x | default(a) }}", nullptr, false},
      {"{% if value_json.y is defined %}{{ value_json.x }}{% endif %}", nullptr, false},
      {"{{ value_json }}", nullptr, false},
      {"{{ value_json[0] }}", nullptr, false},
      {"{{ states('sensor.x') }}", nullptr, false},
      {"{{ value_json.a }}{{ value_json.b }}", nullptr, false},
      {"{{ 42 }}", nullptr, false},
      {"value_json.a", nullptr, false},
  };
  for (const Case& c : cases) {
    Result<HaTemplate> t = ParseHaTemplate(c.text);
    if (!c.field) {
      EXPECT_FALSE(t.ok()) << c.text;
      continue;
    }
    ASSERT_TRUE(t.ok()) << c.text << ": " << t.status().message();
    EXPECT_FALSE(t->expression) << c.text;  // arithmetic, compiled to steps
    std::string pointer;
    for (const std::string& p : t->path) pointer += "/" + (p == "a/b" ? std::string("a~1b") : p);
    EXPECT_EQ(pointer, c.field) << c.text;
    EXPECT_EQ(t->numeric, c.numeric) << c.text;
  }
}

// What the templates compute, against Python 3 (which Home Assistant runs
// them in): round is to the nearest of the exact binary value, ties to even;
// a filter binds to the operand before it.
TEST(ValueTemplateTest, ComputesAsJinjaDoes) {
  struct Case {
    const char* text;
    double in;
    double out;  // python3 -c 'print(<expression>)'
  };
  const Case cases[] = {
      {"{{ value_json.x | round(2) }}", 2.675, 2.67},  // 2.67499999...
      {"{{ value_json.x | round(2) }}", 0.125, 0.12},  // an exact tie: to even
      {"{{ value_json.x | round(2) }}", 0.375, 0.38},
      {"{{ value_json.x | round }}", 2.5, 2.0},
      {"{{ value_json.x | round }}", 3.5, 4.0},
      {"{{ value_json.x | round(1, 'floor') }}", 21.39, 21.3},
      {"{{ value_json.x | round(1, 'ceil') }}", 21.31, 21.4},
      {"{{ value|float*100|round }}", 0.935, 0.935 * 100},  // round(100), not the product
      {"{{ (value|float/60/1000)|round(2) }}", 123456, 2.06},
      {"{{ (value|float/60/1000)|round(5) }}", 123456, 2.0576},
      {"{{ value | int }}", 21.7, 21},
      {"{{ value | int }}", -21.7, -21},
      {"{{ 100 - value_json.x }}", 30, 70},
      {"{{ 1 / value_json.x }}", 4, 0.25},
      {"{{ -value_json.x | abs }}", 5, -5},  // -(x|abs)
      {"{{ value_json.x * 9 / 5 + 32 }}", 21.5, 21.5 * 9 / 5 + 32},
  };
  for (const Case& c : cases) {
    Result<HaTemplate> t = ParseHaTemplate(c.text);
    ASSERT_TRUE(t.ok()) << c.text << ": " << t.status().message();
    Result<double> out = ApplyNumberOps(t->ops, c.in);
    ASSERT_TRUE(out.ok()) << c.text;
    EXPECT_EQ(*out, c.out) << c.text << " of " << c.in;
  }
  Result<HaTemplate> t = ParseHaTemplate("{{ 10 / value_json.x }}");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(ApplyNumberOps(t->ops, 0).ok());  // Jinja fails too
}

// A Shelly H&T as shellies-discovery announces it: the text payload through
// float and round.
TEST(DiscoveryTest, ShelliesDiscoveryTemplatesMapTheirValues) {
  Discovery d(DiscoveryOptions{});
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/shellyht-AABBCC-temperature/config",
                      R"({"name":"Temperature","stat_t":"~sensor/temperature","unit_of_meas":"°C",)"
                      R"("dev_cla":"temperature","stat_cla":"measurement",)"
                      R"("val_tpl":"{{value|float|round(1)}}","~":"shellies/shellyht-AABBCC/"})")
                  .entity->mapped());
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/shelly1pm-DDEEFF-energy/config",
                      R"({"name":"Energy","stat_t":"shellies/shelly1pm-DDEEFF/relay/0/energy",)"
                      R"("unit_of_meas":"kWh","stat_cla":"total_increasing",)"
                      R"("val_tpl":"{{(value|float/60/1000)|round(2)}}"})")
                  .entity->mapped());
  EXPECT_EQ(Show(d.Map("shellies/shellyht-AABBCC/sensor/temperature", "21.37", kNow)),
            "shellies/shellyht-AABBCC/sensor/temperature=21.4(d);");
  EXPECT_EQ(Show(d.Map("shellies/shelly1pm-DDEEFF/relay/0/energy", "123456", kNow)),
            "shellies/shelly1pm-DDEEFF/relay/0/energy=2.06(d);");
  EXPECT_EQ(Show(d.Map("shellies/shellyht-AABBCC/sensor/temperature", "warm", kNow)),
            "!wrong_type;");
}

// Switches, fans and default-schema lights are on or off, read as Home
// Assistant reads them (homeassistant/components/mqtt/switch.py: state_on
// and state_off, defaulting to payload_on and payload_off; fan.py and
// light/schema_basic.py: payload_on and payload_off through
// state_value_template; "None" is an unknown state in each): booleans,
// so that history answers what share of the time a switch was on.
TEST(DiscoveryTest, SwitchesFansAndLightsAreOnOrOff) {
  Discovery d(DiscoveryOptions{});
  // A Shelly Gen1 relay as shellies-discovery announces it (lower case).
  ASSERT_TRUE(Handle1(d, "homeassistant/switch/shelly1-AABBCC-relay-0/config",
                      R"({"name":"Relay","cmd_t":"~relay/0/command","stat_t":"~relay/0",)"
                      R"("pl_on":"on","pl_off":"off","~":"shellies/shelly1-AABBCC/"})")
                  .entity->mapped());
  // state_on and state_off win over the payloads (HA: stat_on, stat_off).
  ASSERT_TRUE(Handle1(d, "homeassistant/switch/plug/config",
                      R"({"stat_t":"plug/state","cmd_t":"plug/set","pl_on":"1","pl_off":"0",)"
                      R"("stat_on":"powered","stat_off":"idle"})")
                  .entity->mapped());
  ASSERT_TRUE(Handle1(d, "homeassistant/fan/attic/config",
                      R"({"stat_t":"attic/fan","cmd_t":"attic/fan/set",)"
                      R"("stat_val_tpl":"{{ value_json.state }}"})")
                  .entity->mapped());
  ASSERT_TRUE(Handle1(d, "homeassistant/light/porch/config",
                      R"({"stat_t":"porch/light","cmd_t":"porch/light/set"})")
                  .entity->mapped());
  EXPECT_EQ(Show(d.Map("shellies/shelly1-AABBCC/relay/0", "on", kNow)),
            "shellies/shelly1-AABBCC/relay/0=true(b);");
  EXPECT_EQ(Show(d.Map("shellies/shelly1-AABBCC/relay/0", "off", kNow)),
            "shellies/shelly1-AABBCC/relay/0=false(b);");
  EXPECT_EQ(Show(d.Map("shellies/shelly1-AABBCC/relay/0", "ON", kNow)), "!bad_boolean;");
  EXPECT_EQ(Show(d.Map("shellies/shelly1-AABBCC/relay/0", "None", kNow)), "");
  EXPECT_EQ(Show(d.Map("plug/state", "powered", kNow)), "plug/state=true(b);");
  EXPECT_EQ(Show(d.Map("plug/state", "idle", kNow)), "plug/state=false(b);");
  EXPECT_EQ(Show(d.Map("plug/state", "1", kNow)), "!bad_boolean;");
  EXPECT_EQ(Show(d.Map("attic/fan", R"({"state":"ON","percentage":50})", kNow)),
            "attic/fan/state=true(b);");  // the key names the field read
  EXPECT_EQ(Show(d.Map("porch/light", "OFF", kNow)), "porch/light=false(b);");
  // On and off the same: refused, as Home Assistant could tell nothing.
  Discovery::Update same = Handle1(d, "homeassistant/switch/same/config",
                                   R"({"stat_t":"same/state","pl_on":"X","pl_off":"X"})");
  ASSERT_TRUE(same.entity);
  EXPECT_FALSE(same.entity->mapped());
  EXPECT_EQ(same.entity->reason, "bad_option");
}

// bieniu/ha-shellies-discovery-gen2 (python_scripts/shellies_discovery_gen2.py,
// TPL_RELAY_OVERPOWER): a problem sensor true while the status's "errors"
// list (present only with errors) holds "overpower". The template reads
// the field with dict.get and the array whole, as a list.
TEST(DiscoveryTest, ShelliesDiscoveryGen2ReadsErrorListsWithGet) {
  Discovery d(DiscoveryOptions{});
  ASSERT_TRUE(
      Handle1(d, "homeassistant/binary_sensor/shellyplus1pm-a8032ab12cd3-0-overpower/config",
              R"({"name":"Overpower","dev_cla":"problem","stat_t":"~status/switch:0",)"
              R"("val_tpl":"{%if \"overpower\" in value_json.get(\"errors\",[])%}ON{%else%})"
              R"(OFF{%endif%}","~":"shellyplus1pm-a8032ab12cd3/"})")
          .entity->mapped());
  const std::string topic = "shellyplus1pm-a8032ab12cd3/status/switch:0";
  const std::string key = topic + "/errors=";
  EXPECT_EQ(Show(d.Map(topic, R"({"id":0,"output":true,"apower":8.9})", kNow)), key + "false(b);");
  EXPECT_EQ(Show(d.Map(topic, R"({"id":0,"apower":3801.2,"errors":["overpower"]})", kNow)),
            key + "true(b);");
  EXPECT_EQ(Show(d.Map(topic, R"({"id":0,"errors":["overtemp","overvoltage"]})", kNow)),
            key + "false(b);");
  EXPECT_EQ(Show(d.Map(topic, R"({"id":0,"errors":[]})", kNow)), key + "false(b);");
  // An array of objects is no list a template reads: refused, saying so.
  EXPECT_EQ(Show(d.Map(topic, R"({"id":0,"errors":[{"code":1}]})", kNow)), "!not_scalar;");

  // Any template reads an array field whole.
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/x/errors/config",
                      R"({"stat_t":"x/status","unit_of_meas":"n","stat_cla":"measurement",)"
                      R"("val_tpl":"{{ value_json.errors | length }}"})")
                  .entity->mapped());
  EXPECT_EQ(Show(d.Map("x/status", R"({"errors":["a","b"]})", kNow)), "x/status/errors=2(d);");

  // get() with its default, and without one (None: nothing to store).
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/plug/power/config",
                      R"({"stat_t":"plug/state","unit_of_meas":"W",)"
                      R"("val_tpl":"{{ value_json.get('power', 0) }}"})")
                  .entity->mapped());
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/plug/total/config",
                      R"({"stat_t":"plug/state","unit_of_meas":"kWh",)"
                      R"("val_tpl":"{{ value_json.energy.get('total') }}"})")
                  .entity->mapped());
  EXPECT_EQ(Show(d.Map("plug/state", R"({"power":12,"energy":{"total":3.5}})", kNow)),
            "plug/state/power=12(d);plug/state/energy.total=3.5(d);");
  EXPECT_EQ(Show(d.Map("plug/state", R"({"energy":{}})", kNow)), "plug/state/power=0(d);");
  // get() of something other than a quoted field name: refused.
  for (const char* bad : {"{{ value_json.get(value) }}", "{{ value_json.get() }}",
                          "{{ value_json.get('a', 1, 2) }}"}) {
    Result<HaTemplate> t = ParseHaTemplate(bad);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_NE(t.status().message().find("get()"), std::string::npos) << t.status().message();
  }
}

TEST(HaDiscoveryTest, Zigbee2mqttSensor) {
  DiscoveredEntity e = Ha(kZ2mTemperatureTopic, kZ2mTemperature);
  ASSERT_TRUE(e.mapped()) << e.reason << ": " << e.message;
  EXPECT_EQ(e.component, "sensor");
  EXPECT_EQ(e.state_topic, "zigbee2mqtt/kitchen_sensor");
  EXPECT_EQ(e.field, "/temperature");
  EXPECT_EQ(e.key, "zigbee2mqtt/kitchen_sensor/temperature");
  EXPECT_EQ(e.type, KeyType::kNumeric);
  ASSERT_EQ(e.availability.size(), 2u);
  EXPECT_EQ(e.availability[0].topic, "zigbee2mqtt/bridge/state");
  EXPECT_EQ(e.availability[0].field, "/state");
  EXPECT_EQ(e.availability[1].true_words, std::vector<std::string>{"online"});
  EXPECT_EQ(e.info["unit_of_measurement"], "°C");
  EXPECT_EQ(e.info["device_name"], "kitchen_sensor");
  EXPECT_EQ(e.info["node_id"], "0x00158d0001a2b3c4");
}

TEST(HaDiscoveryTest, Zigbee2mqttDoorIsOnWhenTheContactIsOpen) {
  DiscoveredEntity e = Ha(kZ2mDoorTopic, kZ2mDoor);
  ASSERT_TRUE(e.mapped()) << e.message;
  EXPECT_EQ(e.type, KeyType::kBoolean);
  EXPECT_EQ(e.true_words, std::vector<std::string>{"false"});
  EXPECT_EQ(e.false_words, std::vector<std::string>{"true"});
  EXPECT_EQ(e.key, "zigbee2mqtt/front_door/contact");
}

TEST(HaDiscoveryTest, TasmotaAbbreviatedKeysAndTopicBase) {
  DiscoveredEntity energy = Ha(kTasmotaEnergyTopic, kTasmotaEnergy);
  ASSERT_TRUE(energy.mapped()) << energy.message;
  EXPECT_EQ(energy.type, KeyType::kCounter);
  EXPECT_EQ(energy.key, "tele/tasmota_8C8E1A/SENSOR/ENERGY.Total");
  ASSERT_EQ(energy.availability.size(), 1u);
  EXPECT_EQ(energy.availability[0].topic, "tele/tasmota_8C8E1A/LWT");
  EXPECT_EQ(energy.availability[0].true_words, std::vector<std::string>{"Online"});
  EXPECT_EQ(energy.availability[0].false_words, std::vector<std::string>{"Offline"});
  EXPECT_EQ(energy.info.value("object_id", ""), "8C8E1A_ENERGY_Total");

  DiscoveredEntity relay = Ha(kTasmotaRelayTopic, kTasmotaRelay);
  ASSERT_TRUE(relay.mapped()) << relay.message;
  EXPECT_EQ(relay.component, "switch");
  EXPECT_EQ(relay.state_topic, "tasmota_8C8E1A/tele/STATE");
  EXPECT_EQ(relay.availability[0].topic, "tasmota_8C8E1A/tele/LWT");
  EXPECT_EQ(relay.type, KeyType::kBoolean);
  EXPECT_EQ(relay.key, "tasmota_8C8E1A/tele/STATE/POWER");
}

TEST(HaDiscoveryTest, EsphomeAndShelly) {
  DiscoveredEntity t = Ha(kEsphomeTemperatureTopic, kEsphomeTemperature);
  ASSERT_TRUE(t.mapped()) << t.message;
  EXPECT_EQ(t.key, "livingroom/sensor/temperature/state");
  EXPECT_EQ(t.field, "");
  EXPECT_EQ(t.type, KeyType::kNumeric);
  EXPECT_EQ(t.availability[0].topic, "livingroom/status");
  DiscoveredEntity m = Ha(kEsphomeMotionTopic, kEsphomeMotion);
  ASSERT_TRUE(m.mapped()) << m.message;
  EXPECT_EQ(m.type, KeyType::kBoolean);
  EXPECT_EQ(m.true_words, std::vector<std::string>{"ON"});
  DiscoveredEntity s = Ha(kShellyTopic, kShelly);
  ASSERT_TRUE(s.mapped()) << s.message;
  EXPECT_EQ(s.key, "shellies/shellyht-XYZ/sensor/temperature");
  EXPECT_EQ(s.availability[0].topic, "shellies/shellyht-XYZ/online");
  ASSERT_TRUE(s.stale_after_s);
  EXPECT_EQ(*s.stale_after_s, 86400);
}

TEST(HaDiscoveryTest, TypesFromComponentAndClasses) {
  struct Case {
    const char* component;
    const char* extra;  // JSON members
    KeyType type;
  };
  const Case cases[] = {
      {"sensor", R"("unit_of_measurement":"W")", KeyType::kNumeric},
      {"sensor", R"("state_class":"measurement")", KeyType::kNumeric},
      {"sensor", R"("state_class":"total")", KeyType::kNumeric},
      {"sensor", R"("state_class":"total_increasing","unit_of_measurement":"kWh")",
       KeyType::kCounter},
      {"sensor", R"("device_class":"timestamp")", KeyType::kString},
      {"sensor", R"("device_class":"enum")", KeyType::kString},
      {"sensor", R"("icon":"mdi:remote")", KeyType::kString},
      {"binary_sensor", R"("device_class":"motion")", KeyType::kBoolean},
      {"number", R"("min":0)", KeyType::kNumeric},
      {"select", R"("options":["a","b"])", KeyType::kString},
      {"light", R"("brightness":true)", KeyType::kBoolean},
      {"switch", R"("payload_on":"1","payload_off":"0")", KeyType::kBoolean},
      {"fan", R"("command_topic":"dev/x/set")", KeyType::kBoolean},
      {"lock", R"("command_topic":"dev/x/set")", KeyType::kString},
      {"cover", R"("command_topic":"dev/x/set")", KeyType::kString},
  };
  for (const Case& c : cases) {
    std::string topic = std::string("homeassistant/") + c.component + "/dev/x/config";
    DiscoveredEntity e =
        Ha(topic.c_str(), std::string(R"({"state_topic":"dev/x",)") + c.extra + "}");
    ASSERT_TRUE(e.mapped()) << c.component << " " << c.extra << ": " << e.message;
    EXPECT_EQ(e.type, c.type) << c.component << " " << c.extra;
  }
}

TEST(HaDiscoveryTest, RefusedWithAReason) {
  struct Case {
    const char* topic;
    const char* payload;
    const char* reason;
  };
  const Case cases[] = {
      {"homeassistant/sensor/x/config", R"({"state_topic":"a/b",)", "bad_json"},
      {"homeassistant/sensor/x/config", R"(["state_topic"])", "not_object"},
      {"homeassistant/sensor/x/y/z/config", R"({"state_topic":"a/b"})", "bad_topic"},
      {"homeassistant/button/x/config", R"({"command_topic":"a/b/set"})", "no_state_topic"},
      {"homeassistant/sensor/x/config", R"({"state_topic":"a/+/b"})", "bad_topic"},
      {"homeassistant/sensor/x/config", R"({"state_topic":42})", "bad_topic"},
      {"homeassistant/sensor/x/config",
       R"({"state_topic":"a/b","unit_of_measurement":"W","value_template":"{{ value | base64_decode }}"})",
       "bad_template"},
      {"homeassistant/sensor/x/config",
       R"({"state_topic":"a/b","value_template":"{{ value_json.p * 1000 }}"})",
       "bad_template"},  // a number for a string sensor
      {"homeassistant/sensor/x/config",
       R"({"state_topic":"a/b","value_template":"{{ value_json.p | float }}"})",
       "bad_template"},  // float for a string sensor (no unit, no state class)
      {"homeassistant/sensor/x/config",
       R"({"state_topic":"a/b","availability_topic":"a/s","availability_template":"{{ value_json.s | regex_replace('a', 'b') }}"})",
       "bad_template"},
      {"homeassistant/light/x/config", R"({"state_topic":"a/b","schema":"template"})",
       "unsupported"},
      {"homeassistant/device/x/config", R"({"cmps":{}})", "bad_option"},
      {"homeassistant/device/x/config", R"({"state_topic":"a/b","cmps":{"t":{"dev_cla":"x"}}})",
       "bad_option"},  // a component without its platform
      {"homeassistant/climate/x/config", R"({"modes":["heat"]})", "no_state_topic"},
      {"homeassistant/sensor/x/config", R"({"state_topic":"komoku/state/x"})", "own_topic"},
      {"homeassistant/sensor/x/config", R"({"state_topic":"a/b","expire_after":"soon"})",
       "bad_option"},
      {"homeassistant/binary_sensor/x/config",
       R"({"state_topic":"a/b","payload_on":"1","payload_off":"1"})", "bad_option"},
      {"homeassistant/sensor/x/config", R"({"state_topic":"a/{b}"})", "bad_key"},
  };
  for (const Case& c : cases) {
    DiscoveredEntity e = Ha(c.topic, c.payload);
    EXPECT_EQ(e.reason, c.reason) << c.topic << " " << c.payload << ": " << e.message;
    EXPECT_FALSE(e.message.empty()) << c.payload;
  }
  DiscoveredEntity e =
      Ha("homeassistant/sensor/x/config",
         R"({"state_topic":"a/b","value_template":"{{ value_json.p | slugify }}"})");
  EXPECT_NE(
      e.message.find("value template '{{ value_json.p | slugify }}' has the filter 'slugify'"),
      std::string::npos)
      << e.message;
}

// Each message quotes what the entity itself said. They are built from the
// entity's fields in the same call that hands the entity on; armhf's GCC once
// moved the entity first, leaving messages empty-quoted or crashing.
TEST(HaDiscoveryTest, RefusalMessagesQuoteTheEntity) {
  struct Case {
    const char* topic;
    const char* payload;
    const char* quote;
  };
  const Case cases[] = {
      {"homeassistant/sensor/x/y/z/config", R"({"state_topic":"a/b"})",
       "'homeassistant/sensor/x/y/z/config' is not homeassistant/"},
      {"homeassistant/binary_sensor/x/config",
       R"({"state_topic":"a/b","payload_on":"1","payload_off":"1"})",
       "payload_on and payload_off are both '1'"},
      {"homeassistant/button/x/config", R"({"command_topic":"a/b/set"})",
       "a button without state_topic"},
      {"homeassistant/sensor/x/config", R"({"state_topic":"komoku/state/x"})",
       "state topic 'komoku/state/x' is under"},
      {"homeassistant/sensor/x/config",
       R"({"state_topic":"a/b","value_template":"{{ value_json.p | float }}"})",
       "value template '{{ value_json.p | float }}' computes a number, but a sensor here is a "
       "string key"},
      {"homeassistant/sensor/x/config",
       R"({"state_topic":"a/b","availability_topic":"komoku/status"})",
       "availability topic 'komoku/status' is under"},
  };
  for (const Case& c : cases) {
    DiscoveredEntity e = Ha(c.topic, c.payload);
    EXPECT_NE(e.message.find(c.quote), std::string::npos) << c.payload << ": " << e.message;
    EXPECT_EQ(e.id, c.topic);
  }
}

TEST(DiscoveryTest, Zigbee2mqttDeviceMapsEveryEntityOfItsTopic) {
  Discovery d(DiscoveryOptions{});
  Discovery::Update u = Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature);
  EXPECT_TRUE(u.changed);
  EXPECT_EQ(u.subscribe,
            (std::vector<std::string>{"zigbee2mqtt/bridge/state", "zigbee2mqtt/kitchen_sensor",
                                      "zigbee2mqtt/kitchen_sensor/availability"}));
  u = Handle1(d, kZ2mHumidityTopic, kZ2mHumidity);
  EXPECT_TRUE(u.changed);
  EXPECT_TRUE(u.subscribe.empty());  // the topics are there already
  EXPECT_EQ(d.mapped_count(), 2u);

  const std::string payload =
      R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})";
  Discovery::Mapped m = d.Map("zigbee2mqtt/kitchen_sensor", payload, kNow);
  ASSERT_TRUE(m.engine);
  EXPECT_EQ(Show(m),
            "zigbee2mqtt/kitchen_sensor/humidity=48.1(d);"
            "zigbee2mqtt/kitchen_sensor/temperature=21.43(d);");
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/bridge/state", R"({"state":"online"})", kNow)),
            "zigbee2mqtt/bridge/state=true(b);");
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen_sensor/availability", R"({"state":"offline"})", kNow)),
            "zigbee2mqtt/kitchen_sensor/availability=false(b);");
  // One entity's bad value drops only its own change.
  EXPECT_EQ(
      Show(d.Map("zigbee2mqtt/kitchen_sensor", R"({"temperature":"warm","humidity":50})", kNow)),
      "zigbee2mqtt/kitchen_sensor/humidity=50(d);!wrong_type;");
  EXPECT_FALSE(d.Map("zigbee2mqtt/other", payload, kNow).engine);

  // The same retained config again is no change.
  EXPECT_FALSE(Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature).changed);
  // Removed: its topic stays for humidity; the temperature is no longer mapped.
  u = Handle1(d, kZ2mTemperatureTopic, "");
  EXPECT_TRUE(u.changed);
  EXPECT_TRUE(u.removed);
  EXPECT_EQ(u.unsubscribe, std::vector<std::string>{"zigbee2mqtt/kitchen_sensor/availability"});
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen_sensor", payload, kNow)),
            "zigbee2mqtt/kitchen_sensor/humidity=48.1(d);");
  EXPECT_FALSE(Handle1(d, kZ2mTemperatureTopic, "").changed);
  u = Handle1(d, kZ2mHumidityTopic, "");
  EXPECT_EQ(u.unsubscribe,
            (std::vector<std::string>{"zigbee2mqtt/bridge/state", "zigbee2mqtt/kitchen_sensor"}));
  EXPECT_TRUE(d.Topics().empty());
}

TEST(DiscoveryTest, DevicesOfEachKindMapTheirMessages) {
  Discovery d(DiscoveryOptions{});
  for (auto [topic, payload] : {std::pair{kZ2mDoorTopic, kZ2mDoor},
                                {kTasmotaEnergyTopic, kTasmotaEnergy},
                                {kTasmotaRelayTopic, kTasmotaRelay},
                                {kEsphomeTemperatureTopic, kEsphomeTemperature},
                                {kEsphomeMotionTopic, kEsphomeMotion},
                                {kShellyTopic, kShelly}}) {
    Discovery::Update u = Handle1(d, topic, payload);
    ASSERT_TRUE(u.entity && u.entity->mapped()) << topic;
  }
  struct Case {
    const char* topic;
    const char* payload;
    const char* changes;
  };
  const Case cases[] = {
      {"zigbee2mqtt/front_door", R"({"contact":false,"battery":100})",
       "zigbee2mqtt/front_door/contact=true(b);"},
      {"zigbee2mqtt/front_door", R"({"contact":true,"battery":100})",
       "zigbee2mqtt/front_door/contact=false(b);"},
      {"tele/tasmota_8C8E1A/SENSOR",
       R"({"Time":"2026-11-20T10:00:00","ENERGY":{"Total":12.345,"Power":57}})",
       "tele/tasmota_8C8E1A/SENSOR/ENERGY.Total=12.345(d);"},
      {"tele/tasmota_8C8E1A/LWT", "Online", "tele/tasmota_8C8E1A/LWT=true(b);"},
      {"tele/tasmota_8C8E1A/LWT", "offline", "!bad_boolean;"},  // Tasmota's words, exactly
      {"tasmota_8C8E1A/tele/STATE", R"({"POWER":"ON","Heap":25})",
       "tasmota_8C8E1A/tele/STATE/POWER=true(b);"},
      {"livingroom/sensor/temperature/state", "21.50",
       "livingroom/sensor/temperature/state=21.5(d);"},
      {"livingroom/binary_sensor/motion/state", "ON",
       "livingroom/binary_sensor/motion/state=true(b);"},
      {"livingroom/status", "online", "livingroom/status=true(b);"},
      {"shellies/shellyht-XYZ/sensor/temperature", "21.5",
       "shellies/shellyht-XYZ/sensor/temperature=21.5(d);"},
      {"shellies/shellyht-XYZ/online", "false", "shellies/shellyht-XYZ/online=false(b);"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Show(d.Map(c.topic, c.payload, kNow)), c.changes) << c.topic << " " << c.payload;
  }
  // expire_after becomes the key's stale_after.
  Discovery::Mapped m = d.Map("shellies/shellyht-XYZ/sensor/temperature", "21.5", kNow);
  EXPECT_EQ(m.engine->rule(m.result.changes[0].rule).options,
            nlohmann::json({{"stale_after", 86400.0}}));
  EXPECT_EQ(m.engine->rule(m.result.changes[0].rule).type, KeyType::kNumeric);
  // Listed with what they were read from.
  nlohmann::json listing = d.Describe();
  EXPECT_EQ(listing["mapped"], 6);
  EXPECT_EQ(listing["refused"], 0);
  EXPECT_EQ(listing["availability"].size(), 5u) << listing.dump(2);
}

TEST(DiscoveryTest, RefusedEntitiesAreListedAndADuplicateKeyIsRefused) {
  Discovery d(DiscoveryOptions{});
  Discovery::Update u = Handle1(d, "homeassistant/sensor/x/p/config",
                                R"({"state_topic":"x/state","unit_of_measurement":"W",
                                     "value_template":"{{ value_json.power | timestamp_local }}"})");
  ASSERT_TRUE(u.entity);
  EXPECT_EQ(u.entity->reason, "bad_template");
  EXPECT_TRUE(u.subscribe.empty());
  EXPECT_FALSE(d.Map("x/state", R"({"power":5})", kNow).engine);

  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/x/a/config",
                      R"({"state_topic":"x/state","value_template":"{{ value_json.v }}"})")
                  .entity->mapped());
  u = Handle1(d, "homeassistant/sensor/x/b/config",
              R"({"state_topic":"x/state","value_template":"{{ value_json['v'] }}"})");
  EXPECT_EQ(u.entity->reason, "duplicate_key");
  nlohmann::json listing = d.Describe();
  EXPECT_EQ(listing["mapped"], 1);
  EXPECT_EQ(listing["refused"], 2);
  EXPECT_EQ(listing["entities"][0]["status"], "mapped");
  EXPECT_EQ(listing["entities"][1]["reason"], "duplicate_key");
  EXPECT_EQ(listing["entities"][2]["reason"], "bad_template");
  // A refused config that is fixed maps.
  u = Handle1(d, "homeassistant/sensor/x/p/config",
              R"({"state_topic":"x/state","unit_of_measurement":"W",
                   "value_template":"{{ value_json.power | float }}"})");
  ASSERT_TRUE(u.entity->mapped()) << u.entity->message;
  EXPECT_EQ(Show(d.Map("x/state", R"({"power":"5.5","v":"a"})", kNow)),
            "x/state/v=\"a\"(s);x/state/power=5.5(d);");
}

TEST(DiscoveryTest, KeyPrefix) {
  DiscoveryOptions o;
  o.key_prefix = "ha/";
  Discovery d(o);
  ASSERT_TRUE(Handle1(d, kEsphomeTemperatureTopic, kEsphomeTemperature).entity->mapped());
  EXPECT_EQ(Show(d.Map("livingroom/sensor/temperature/state", "21.5", kNow)),
            "ha/livingroom/sensor/temperature/state=21.5(d);");
  EXPECT_EQ(Show(d.Map("livingroom/status", "offline", kNow)), "ha/livingroom/status=false(b);");
}

TEST(DiscoveryTest, Homie) {
  Discovery d(DiscoveryOptions{});
  EXPECT_TRUE(d.IsDiscoveryTopic("homie/weather/outside/temperature/$datatype"));
  EXPECT_TRUE(d.IsDiscoveryTopic("homeassistant/sensor/x/y/config"));
  EXPECT_FALSE(d.IsDiscoveryTopic("homie/weather/outside/temperature"));
  // Attributes may come before $datatype; the property exists with it.
  EXPECT_FALSE(Handle1(d, "homie/weather/outside/temperature/$unit", "°C").changed);
  Discovery::Update u = Handle1(d, "homie/weather/outside/temperature/$datatype", "float");
  ASSERT_TRUE(u.entity && u.entity->mapped()) << (u.entity ? u.entity->message : "");
  EXPECT_EQ(u.entity->info["unit"], "°C");
  EXPECT_EQ(u.subscribe, (std::vector<std::string>{"homie/weather/$state",
                                                   "homie/weather/outside/temperature"}));
  EXPECT_TRUE(Handle1(d, "homie/weather/outside/temperature/$name", "Temperature").changed);
  EXPECT_FALSE(Handle1(d, "homie/weather/outside/temperature/$name", "Temperature").changed);
  ASSERT_TRUE(Handle1(d, "homie/weather/outside/raining/$datatype", "boolean").entity->mapped());
  ASSERT_TRUE(Handle1(d, "homie/weather/outside/sky/$datatype", "enum").entity->mapped());
  Handle1(d, "homie/weather/outside/sky/$format", "clear,cloudy,rain");
  EXPECT_EQ(Handle1(d, "homie/weather/outside/odd/$datatype", "quaternion").entity->reason,
            "unsupported");

  EXPECT_EQ(Show(d.Map("homie/weather/outside/temperature", "3.5", kNow)),
            "homie/weather/outside/temperature=3.5(d);");
  EXPECT_EQ(Show(d.Map("homie/weather/outside/raining", "true", kNow)),
            "homie/weather/outside/raining=true(b);");
  EXPECT_EQ(Show(d.Map("homie/weather/outside/raining", "yes", kNow)), "!bad_boolean;");
  EXPECT_EQ(Show(d.Map("homie/weather/outside/sky", "cloudy", kNow)),
            "homie/weather/outside/sky=\"cloudy\"(s);");
  EXPECT_EQ(Show(d.Map("homie/weather/$state", "ready", kNow)), "homie/weather/$state=true(b);");
  EXPECT_EQ(Show(d.Map("homie/weather/$state", "lost", kNow)), "homie/weather/$state=false(b);");

  // An empty $datatype removes the property.
  u = Handle1(d, "homie/weather/outside/temperature/$datatype", "");
  EXPECT_TRUE(u.removed);
  EXPECT_EQ(u.unsubscribe, std::vector<std::string>{"homie/weather/outside/temperature"});
  EXPECT_FALSE(d.Map("homie/weather/outside/temperature", "3.5", kNow).engine);
}

// Mapping into one Mapped message after message gives what Map gives.
TEST(DiscoveryTest, MapIntoReusesOneResult) {
  Discovery d(DiscoveryOptions{});
  Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature);
  Handle1(d, kZ2mHumidityTopic, kZ2mHumidity);
  Discovery::Mapped reused;
  for (auto [topic, payload] :
       {std::pair{"zigbee2mqtt/kitchen_sensor", R"({"temperature":21.43,"humidity":48.1})"},
        {"zigbee2mqtt/kitchen_sensor", R"({"temperature":"warm","humidity":50})"},
        {"zigbee2mqtt/other", "1"},
        {"zigbee2mqtt/bridge/state", R"({"state":"online"})"},
        {"zigbee2mqtt/kitchen_sensor", "{bad"}}) {
    d.MapInto(topic, payload, kNow, &reused);
    Discovery::Mapped fresh = d.Map(topic, payload, kNow);
    EXPECT_EQ(reused.engine, fresh.engine) << topic;
    EXPECT_EQ(Show(reused), Show(fresh)) << topic << " " << payload;
  }
}

DiscoveryOptions WithStateFile(const store::testing::TempDir& dir) {
  DiscoveryOptions o;
  o.state_path = dir.File("discovery.json");
  return o;
}

// Messages as zigbee2mqtt 1.40-2.x announces a colour-temperature bulb and a
// thermostat (lib/extension/homeassistant.ts: a light with schema json, a
// climate with one state topic and a template per value), and Home
// Assistant's own example of device discovery (MQTT integration docs,
// "Device discovery payload", HA 2024.11).
constexpr char kZ2mLightTopic[] = "homeassistant/light/0x0017880104aabbcc/light/config";
constexpr char kZ2mLight[] = R"({"availability":[{"topic":"zigbee2mqtt/bridge/state",
"value_template":"{{ value_json.state }}"}],"brightness":true,"brightness_scale":254,
"command_topic":"zigbee2mqtt/hall_light/set","device":{"name":"hall_light"},"max_mireds":454,
"min_mireds":250,"name":null,"object_id":"hall_light","schema":"json",
"state_topic":"zigbee2mqtt/hall_light","supported_color_modes":["color_temp","xy"],
"unique_id":"0x0017880104aabbcc_light_zigbee2mqtt"})";
constexpr char kZ2mThermostatTopic[] = "homeassistant/climate/0x0c4314fffe112233/climate/config";
constexpr char kZ2mThermostat[] =
    R"({"action_template":"{% set values = {None:None,'idle':'idle','heat':'heating'} %}{{ values[value_json.running_state] }}",
"action_topic":"zigbee2mqtt/thermostat","current_temperature_template":
"{{ value_json.local_temperature }}","current_temperature_topic":"zigbee2mqtt/thermostat",
"max_temp":"30","min_temp":"5","mode_command_topic":"zigbee2mqtt/thermostat/set/system_mode",
"mode_state_template":"{{ value_json.system_mode }}","mode_state_topic":"zigbee2mqtt/thermostat",
"modes":["off","heat"],"name":null,"temperature_command_topic":
"zigbee2mqtt/thermostat/set/occupied_heating_setpoint","temperature_state_template":
"{{ value_json.occupied_heating_setpoint }}","temperature_state_topic":"zigbee2mqtt/thermostat",
"temp_step":0.5,"unique_id":"0x0c4314fffe112233_climate_zigbee2mqtt"})";
constexpr char kHaDeviceTopic[] = "homeassistant/device/0AFFD2/config";
constexpr char kHaDevice[] = R"({"dev":{"ids":"ea334450945afc","name":"Kitchen",
"mf":"Bla electronics","mdl":"xya","sw":"1.0"},"o":{"name":"bla2mqtt","sw":"2.1"},
"cmps":{"some_unique_component_id1":{"p":"sensor","device_class":"temperature",
"unit_of_measurement":"°C","value_template":"{{ value_json.temperature}}","unique_id":"temp01ae_t"},
"some_unique_id2":{"p":"sensor","device_class":"humidity","unit_of_measurement":"%",
"value_template":"{{ value_json.humidity}}","unique_id":"temp01ae_h"},
"door":{"p":"binary_sensor","stat_t":"sensorBedroom/door","pl_on":"open","pl_off":"closed"}},
"state_topic":"sensorBedroom/state","qos":2})";

std::vector<std::string> Ids(const std::vector<Discovery::Update>& updates) {
  std::vector<std::string> out;
  out.reserve(updates.size());
  for (const Discovery::Update& u : updates) {
    out.push_back(u.id + (u.removed                        ? " removed"
                          : u.entity && u.entity->mapped() ? ""
                                                           : " refused"));
  }
  return out;
}

TEST(DiscoveryTest, JsonSchemaLightRecordsStateBrightnessAndColourTemperature) {
  Discovery d(DiscoveryOptions{});
  const std::vector<Discovery::Update> u = d.Handle(kZ2mLightTopic, kZ2mLight);
  const std::string t = kZ2mLightTopic;
  EXPECT_EQ(Ids(u), (std::vector<std::string>{t, t + "#brightness", t + "#color_temp"}));
  EXPECT_EQ(
      Show(d.Map("zigbee2mqtt/hall_light",
                 R"({"state":"ON","brightness":254,"color_temp":370,"linkquality":90})", kNow)),
      "zigbee2mqtt/hall_light/state=true(b);"
      "zigbee2mqtt/hall_light/brightness=254(d);"
      "zigbee2mqtt/hall_light/color_temp=370(d);");
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/hall_light", R"({"state":"OFF"})", kNow)),
            "zigbee2mqtt/hall_light/state=false(b);");
  // Without brightness or colour modes: the state only.
  Discovery plain(DiscoveryOptions{});
  EXPECT_EQ(Ids(plain.Handle("homeassistant/light/plug/config",
                             R"({"schema":"json","state_topic":"zigbee2mqtt/plug"})")),
            std::vector<std::string>{"homeassistant/light/plug/config"});
}

TEST(DiscoveryTest, ClimateRecordsEachValueItHasATemplateFor) {
  Discovery d(DiscoveryOptions{});
  const std::vector<Discovery::Update> u = d.Handle(kZ2mThermostatTopic, kZ2mThermostat);
  const std::string t = kZ2mThermostatTopic;
  // The action's template maps values through a {% set %} dict.
  EXPECT_EQ(Ids(u), (std::vector<std::string>{t + "#current_temperature", t + "#temperature",
                                              t + "#mode", t + "#action"}));
  EXPECT_EQ(d.mapped_count(), 4u);
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/thermostat",
                       R"({"local_temperature":19.5,"occupied_heating_setpoint":21,)"
                       R"("system_mode":"heat","running_state":"heat"})",
                       kNow)),
            "zigbee2mqtt/thermostat/running_state=\"heating\"(s);"
            "zigbee2mqtt/thermostat/local_temperature=19.5(d);"
            "zigbee2mqtt/thermostat/system_mode=\"heat\"(s);"
            "zigbee2mqtt/thermostat/occupied_heating_setpoint=21(d);");
}

TEST(DiscoveryTest, DeviceDiscoveryMakesOneEntityPerComponent) {
  Discovery d(DiscoveryOptions{});
  const std::string t = kHaDeviceTopic;
  std::vector<Discovery::Update> u = d.Handle(kHaDeviceTopic, kHaDevice);
  EXPECT_EQ(Ids(u), (std::vector<std::string>{t + "#door", t + "#some_unique_component_id1",
                                              t + "#some_unique_id2"}));
  EXPECT_EQ(u[1].entity->info["device_name"], "Kitchen");
  EXPECT_EQ(u[1].entity->info["object_id"], "some_unique_component_id1");
  // The shared state topic, two fields of it; the door has its own topic.
  EXPECT_EQ(Show(d.Map("sensorBedroom/state", R"({"temperature":23.2,"humidity":43.5})", kNow)),
            "sensorBedroom/state/temperature=23.2(d);sensorBedroom/state/humidity=43.5(d);");
  EXPECT_EQ(Show(d.Map("sensorBedroom/door", "open", kNow)), "sensorBedroom/door=true(b);");
  EXPECT_TRUE(d.Handle(kHaDeviceTopic, kHaDevice).empty());  // retained again: no change

  // A component announced with its platform alone is removed; the others stay.
  std::string fewer = kHaDevice;
  const std::string door =
      R"("door":{"p":"binary_sensor","stat_t":"sensorBedroom/door","pl_on":"open","pl_off":"closed"})";
  ASSERT_NE(fewer.find(door), std::string::npos);
  fewer.replace(fewer.find(door), door.size(), R"("door":{"p":"binary_sensor"})");
  u = d.Handle(kHaDeviceTopic, fewer);
  ASSERT_EQ(Ids(u).front(), t + "#door removed");
  EXPECT_EQ(u.front().unsubscribe, std::vector<std::string>{"sensorBedroom/door"});
  EXPECT_EQ(d.mapped_count(), 2u);
  // An empty config removes the device.
  u = d.Handle(kHaDeviceTopic, "");
  EXPECT_EQ(Ids(u), (std::vector<std::string>{t + "#some_unique_component_id1 removed",
                                              t + "#some_unique_id2 removed"}));
  EXPECT_TRUE(d.Topics().empty());
}

TEST(DiscoveryStateTest, SeveralEntitiesOfOneConfigComeBackAfterARestart) {
  store::testing::TempDir dir;
  nlohmann::json before;
  {
    Discovery d(WithStateFile(dir));
    ASSERT_TRUE(d.Load().ok());
    d.Handle(kHaDeviceTopic, kHaDevice);
    d.Handle(kZ2mThermostatTopic, kZ2mThermostat);
    ASSERT_TRUE(d.Save().ok());
    before = d.Describe();
  }
  // Saved once per config, not once per entity.
  const nlohmann::json file =
      nlohmann::json::parse(*store::ReadWholeFile(dir.File("discovery.json")));
  ASSERT_EQ(file["entities"].size(), 2u) << file.dump();
  Discovery d(WithStateFile(dir));
  ASSERT_TRUE(d.Load().ok());
  EXPECT_EQ(d.Describe(), before);
  EXPECT_EQ(d.mapped_count(), 7u);  // the device's 3, the thermostat's 4
  EXPECT_TRUE(d.Handle(kZ2mThermostatTopic, kZ2mThermostat).empty());  // the same: no change
  // The device's config did not come again: all of its entities go.
  EXPECT_EQ(d.ForgetUnconfirmed().size(), 3u);
  EXPECT_EQ(d.mapped_count(), 4u);
}

// What a restart keeps: every entity (mapped and refused, a duplicate still
// the duplicate), Homie attributes, the subscribed topics; a config that
// comes again unchanged is no change; a removed one leaves the file.
TEST(DiscoveryStateTest, EntitiesComeBackAfterARestart) {
  store::testing::TempDir dir;
  nlohmann::json before;
  std::vector<std::string> topics;
  {
    Discovery d(WithStateFile(dir));
    ASSERT_TRUE(d.Load().ok());  // no file yet: nothing
    EXPECT_FALSE(d.NeedsSave());
    Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature);
    Handle1(d, kZ2mHumidityTopic, kZ2mHumidity);
    Handle1(d, kTasmotaEnergyTopic, kTasmotaEnergy);
    Handle1(d, "homeassistant/sensor/x/p/config",
            R"({"state_topic":"x/p","val_tpl":"{{ value | timestamp_local }}"})");
    // Same key as the humidity entity: refused, and so it must stay.
    Handle1(d, "homeassistant/sensor/0x00158d0001a2b3c4/a_humidity/config", kZ2mHumidity);
    Handle1(d, "homie/weather/outside/temperature/$unit", "°C");
    Handle1(d, "homie/weather/outside/temperature/$datatype", "float");
    EXPECT_TRUE(d.NeedsSave());
    ASSERT_TRUE(d.Save().ok());
    EXPECT_FALSE(d.NeedsSave());
    ASSERT_TRUE(d.Save().ok());  // nothing new: no write
    before = d.Describe();
    topics = d.Topics();
  }
  ASSERT_EQ(before["mapped"], 4) << before.dump(2);
  ASSERT_EQ(before["refused"], 2) << before.dump(2);

  Discovery d(WithStateFile(dir));
  Result<std::vector<Discovery::Update>> loaded = d.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->size(), 6u);
  EXPECT_EQ(d.Describe(), before);
  EXPECT_EQ(d.Topics(), topics);
  EXPECT_FALSE(d.NeedsSave());
  EXPECT_TRUE(d.HasUnconfirmed());
  // The queued messages of the topics map at once.
  EXPECT_EQ(
      Show(d.Map("zigbee2mqtt/kitchen_sensor", R"({"temperature":21.43,"humidity":48.1})", kNow)),
      "zigbee2mqtt/kitchen_sensor/humidity=48.1(d);"
      "zigbee2mqtt/kitchen_sensor/temperature=21.43(d);");
  EXPECT_EQ(Show(d.Map("homie/weather/outside/temperature", "3.5", kNow)),
            "homie/weather/outside/temperature=3.5(d);");
  // The retained messages come again: no change.
  EXPECT_FALSE(Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature).changed);
  EXPECT_FALSE(Handle1(d, "homie/weather/outside/temperature/$datatype", "float").changed);
  EXPECT_FALSE(Handle1(d, "homie/weather/outside/temperature/$unit", "°C").changed);
  EXPECT_FALSE(d.NeedsSave());

  // A removal reaches the file.
  EXPECT_TRUE(Handle1(d, kTasmotaEnergyTopic, "").removed);
  EXPECT_TRUE(d.NeedsSave());
  ASSERT_TRUE(d.Save().ok());
  Result<std::string> text = store::ReadWholeFile(dir.File("discovery.json"));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find(kTasmotaEnergyTopic), std::string::npos) << *text;
  EXPECT_NE(text->find(kZ2mTemperatureTopic), std::string::npos) << *text;
  Discovery again(WithStateFile(dir));
  ASSERT_TRUE(again.Load().ok());
  EXPECT_EQ(again.mapped_count(), 3u);
}

// Entities read from the file whose configs the broker does not send again
// are forgotten, and their topics given up.
TEST(DiscoveryStateTest, UnconfirmedEntitiesAreForgotten) {
  store::testing::TempDir dir;
  {
    Discovery d(WithStateFile(dir));
    Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature);
    Handle1(d, kEsphomeTemperatureTopic, kEsphomeTemperature);
    Handle1(d, "homie/weather/outside/temperature/$datatype", "float");
    ASSERT_TRUE(d.Save().ok());
  }
  Discovery d(WithStateFile(dir));
  ASSERT_TRUE(d.Load().ok());
  EXPECT_EQ(d.mapped_count(), 3u);
  EXPECT_FALSE(Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature).changed);  // confirmed
  std::vector<Discovery::Update> gone = d.ForgetUnconfirmed();
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(gone[0].id, "homeassistant/sensor/livingroom/temperature/config");
  EXPECT_TRUE(gone[0].removed);
  EXPECT_EQ(gone[0].unsubscribe,
            (std::vector<std::string>{"livingroom/sensor/temperature/state", "livingroom/status"}));
  EXPECT_EQ(gone[1].id, "homie/weather/outside/temperature");
  EXPECT_EQ(d.mapped_count(), 1u);
  EXPECT_FALSE(d.HasUnconfirmed());
  EXPECT_TRUE(d.ForgetUnconfirmed().empty());
  EXPECT_TRUE(d.NeedsSave());
  // A Homie property forgotten is learnt again from its attribute.
  EXPECT_TRUE(Handle1(d, "homie/weather/outside/temperature/$datatype", "float").entity->mapped());
}

// A file that cannot be used teaches nothing and says why; a file of other
// options loses what those options no longer read.
TEST(DiscoveryStateTest, BrokenFilesAreRefusedWhole) {
  store::testing::TempDir dir;
  const std::string path = dir.File("discovery.json");
  const std::pair<const char*, const char*> broken[] = {
      {"{\"version\": 1, \"entities\": [", "is not a Komoku discovery state"},
      {"[]", "is not a Komoku discovery state"},
      {R"({"version": 2, "entities": []})", "is not a Komoku discovery state"},
      {R"({"version": 1, "entities": [{"source": "home_assistant", "id": "homeassistant/sensor/a/b/config", "config": "{}"}, {"source": "home_assistant"}]})",
       "has an entity without id or source"},
      {R"({"version": 1, "entities": [{"source": "zwave", "id": "x"}]})",
       "has an entity that is neither a Home Assistant config nor Homie attributes"},
      {R"({"version": 1, "entities": [{"source": "homie", "id": "homie/a/b/c", "attributes": {"$datatype": 1}}]})",
       "has a Homie attribute that is not text"},
  };
  for (const auto& [text, why] : broken) {
    ASSERT_TRUE(store::WriteFileAtomically(path, text).ok());
    Discovery d(WithStateFile(dir));
    Result<std::vector<Discovery::Update>> loaded = d.Load();
    ASSERT_FALSE(loaded.ok()) << text;
    EXPECT_TRUE(loaded.status().IsCorruption()) << loaded.status().ToString();
    EXPECT_NE(loaded.status().message().find("discovery state file '" + path + "' " + why),
              std::string::npos)
        << loaded.status().message();
    EXPECT_EQ(d.Describe()["entities"].size(), 0u) << text;  // nothing half-learnt
  }
  // An unreadable file (a directory here) is an I/O error.
  DiscoveryOptions o;
  o.state_path = dir.path();
  EXPECT_TRUE(Discovery(o).Load().status().IsIOError());

  // Saved with Homie on; read with Homie off: the property is dropped, and
  // the file is to be saved again without it.
  {
    Discovery d(WithStateFile(dir));
    Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature);
    Handle1(d, "homie/weather/outside/temperature/$datatype", "float");
    ASSERT_TRUE(d.Save().ok());
  }
  DiscoveryOptions no_homie = WithStateFile(dir);
  no_homie.homie = false;
  Discovery d(no_homie);
  Result<std::vector<Discovery::Update>> loaded = d.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->size(), 1u);
  EXPECT_TRUE(d.NeedsSave());
}

}  // namespace
}  // namespace komoku::bridge

namespace komoku::bridge {
namespace {

// Tasmota 12+'s own discovery (tasmota_xdrv_driver/xdrv_12_discovery.ino
// writes these; the shape as a Sonoff POW R2 / a 2-relay Shelly 2.5 running
// Tasmota 13 publish them): the config names the topics, the sensors the
// numbers of tele/<topic>/SENSOR.
constexpr char kTasmotaConfigTopic[] = "tasmota/discovery/A4CF12ABCDEF/config";
constexpr char kTasmotaConfig[] = R"({"ip":"192.168.1.50","dn":"Shelly 2.5","fn":["Kitchen",
"Hall",null,null,null,null,null,null],"hn":"shelly25-ABCDEF","mac":"A4CF12ABCDEF","md":
"Shelly 2.5","ty":0,"if":0,"ofln":"Offline","onln":"Online","state":["OFF","ON","TOGGLE",
"HOLD"],"sw":"13.2.0","t":"shelly25","ft":"%prefix%/%topic%/","tp":["cmnd","stat","tele"],
"rl":[1,1,0,0,0,0,0,0],"swc":[-1,-1,-1,-1,-1,-1,-1,-1],"swn":[null,null,null,null,null,null,
null,null],"btn":[0,0,0,0,0,0,0,0],"so":{"4":0,"11":0,"13":0,"17":0,"20":0,"30":0,"68":0,
"73":0,"82":0,"114":0,"117":0},"lk":0,"lt_st":0,"sho":[0,0,0,0],"sht":[[0,0,0],[0,0,0],
[0,0,0],[0,0,0]],"ver":1})";
constexpr char kTasmotaSensorsTopic[] = "tasmota/discovery/A4CF12ABCDEF/sensors";
constexpr char kTasmotaSensors[] = R"({"sn":{"Time":"2026-11-20T10:00:00","ANALOG":
{"Temperature":41.2},"ENERGY":{"TotalStartTime":"2026-01-02T10:11:12","Total":3.051,
"Yesterday":0.112,"Today":0.040,"Power":[12,34],"Voltage":231},"TempUnit":"C"},"ver":1})";

TEST(TasmotaDiscoveryTest, RelaysSensorsAndLwt) {
  Discovery d(DiscoveryOptions{});
  EXPECT_TRUE(d.IsDiscoveryTopic(kTasmotaConfigTopic));
  EXPECT_TRUE(d.IsDiscoveryTopic(kTasmotaSensorsTopic));
  // The sensors alone name no topic: nothing yet.
  EXPECT_TRUE(d.Handle(kTasmotaSensorsTopic, kTasmotaSensors).empty());
  const std::vector<Discovery::Update> u = d.Handle(kTasmotaConfigTopic, kTasmotaConfig);
  const std::string g = "tasmota/discovery/A4CF12ABCDEF";
  EXPECT_EQ(Ids(u),
            (std::vector<std::string>{g + "#POWER1", g + "#POWER2", g + "#ANALOG.Temperature",
                                      g + "#ENERGY.Power", g + "#ENERGY.Today", g + "#ENERGY.Total",
                                      g + "#ENERGY.Voltage", g + "#ENERGY.Yesterday"}));
  EXPECT_EQ(d.mapped_count(), 8u);
  EXPECT_EQ(Show(d.Map("stat/shelly25/POWER2", "ON", kNow)), "stat/shelly25/POWER2=true(b);");
  EXPECT_EQ(Show(d.Map("tele/shelly25/LWT", "Offline", kNow)), "tele/shelly25/LWT=false(b);");
  EXPECT_EQ(Show(d.Map("tele/shelly25/SENSOR",
                       R"({"Time":"2026-11-20T10:05:00","ANALOG":{"Temperature":40.9},)"
                       R"("ENERGY":{"Total":3.052,"Yesterday":0.112,"Today":0.041,)"
                       R"("Power":[10,30],"Voltage":230},"TempUnit":"C"})",
                       kNow)),
            "tele/shelly25/SENSOR/ANALOG.Temperature=40.9(d);"
            "tele/shelly25/SENSOR/ENERGY.Power/1=10(d);"
            "tele/shelly25/SENSOR/ENERGY.Power/2=30(d);"
            "tele/shelly25/SENSOR/ENERGY.Today=0.041(d);"
            "tele/shelly25/SENSOR/ENERGY.Total=3.052(d);"
            "tele/shelly25/SENSOR/ENERGY.Voltage=230(d);"
            "tele/shelly25/SENSOR/ENERGY.Yesterday=0.112(d);");
  const nlohmann::json all = d.Describe();
  for (const auto& e : all["entities"]) {
    if (e["id"] == g + "#ENERGY.Total") {
      EXPECT_EQ(e["type"], "counter");
    }
    if (e["id"] == g + "#POWER1") {
      EXPECT_EQ(e["type"], "boolean");
    }
  }
  // The same config again: nothing; an empty one removes the device.
  EXPECT_TRUE(d.Handle(kTasmotaConfigTopic, kTasmotaConfig).empty());
  EXPECT_EQ(d.Handle(kTasmotaConfigTopic, "").size(), 8u);
  EXPECT_EQ(d.mapped_count(), 0u);
  EXPECT_FALSE(d.Map("stat/shelly25/POWER2", "ON", kNow).engine);
}

TEST(TasmotaDiscoveryTest, OneRelayIsPowerAndFullTopicTokens) {
  const std::string config =
      R"({"dn":"Plug","hn":"plug-0A0B0C","mac":"DC4F220A0B0C","ofln":"Offline","onln":"Online",)"
      R"("state":["OFF","ON","TOGGLE","HOLD"],"t":"plug","ft":"home/%hostname%/%prefix%/",)"
      R"("tp":["cmnd","stat","tele"],"rl":[1,0,0,0,0,0,0,0],"so":{"26":0},"ver":1})";
  std::vector<DiscoveredEntity> e =
      ParseTasmotaDiscovery("tasmota/discovery/DC4F220A0B0C", config, "", DiscoveryOptions{});
  ASSERT_EQ(e.size(), 1u);
  EXPECT_TRUE(e[0].mapped()) << e[0].message;
  EXPECT_EQ(e[0].state_topic, "home/plug-0A0B0C/stat/POWER");
  ASSERT_EQ(e[0].availability.size(), 1u);
  EXPECT_EQ(e[0].availability[0].topic, "home/plug-0A0B0C/tele/LWT");
  // SetOption26 on: POWER1 even for one relay.
  std::string so26 = config;
  so26.replace(so26.find(R"("26":0)"), 6, R"("26":1)");
  e = ParseTasmotaDiscovery("tasmota/discovery/DC4F220A0B0C", so26, "", DiscoveryOptions{});
  EXPECT_EQ(e[0].state_topic, "home/plug-0A0B0C/stat/POWER1");
  // A token Komoku cannot fill in, a config that is no object: refused.
  std::string bad = config;
  bad.replace(bad.find("%hostname%"), 10, "%group%");
  e = ParseTasmotaDiscovery("tasmota/discovery/DC4F220A0B0C", bad, "", DiscoveryOptions{});
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].reason, "bad_topic");
  e = ParseTasmotaDiscovery("tasmota/discovery/DC4F220A0B0C", "[1]", "", DiscoveryOptions{});
  EXPECT_EQ(e[0].reason, "not_object");
  DiscoveryOptions off;
  off.tasmota = false;
  EXPECT_FALSE(Discovery(off).IsDiscoveryTopic(kTasmotaConfigTopic));
}

// A Tasmota device given a new topic (the user renames shelly25 to
// kitchen): the discovery topic names its MAC, which does not change, so
// its keys stay the first ones, with the new names as their aliases; the
// LWT is named after its topic, as every availability key.
TEST(TasmotaDiscoveryTest, ANewTopicKeepsTheKeys) {
  Discovery d(DiscoveryOptions{});
  d.Handle(kTasmotaSensorsTopic, kTasmotaSensors);
  d.Handle(kTasmotaConfigTopic, kTasmotaConfig);
  std::string renamed = kTasmotaConfig;
  renamed.replace(renamed.find(R"("t":"shelly25")"), 14, R"("t":"kitchen")");
  ASSERT_FALSE(d.Handle(kTasmotaConfigTopic, renamed).empty());
  EXPECT_EQ(Show(d.Map("stat/kitchen/POWER2", "ON", kNow)), "stat/shelly25/POWER2=true(b);");
  EXPECT_EQ(Show(d.Map("tele/kitchen/SENSOR", R"({"ENERGY":{"Total":3.06}})", kNow)),
            "tele/shelly25/SENSOR/ENERGY.Total=3.06(d);");
  EXPECT_EQ(Show(d.Map("tele/kitchen/LWT", "Online", kNow)), "tele/kitchen/LWT=true(b);");
  EXPECT_FALSE(d.Map("stat/shelly25/POWER2", "ON", kNow).engine);
  EXPECT_EQ(d.Aliases().at("stat/shelly25/POWER2"), "stat/kitchen/POWER2");
  EXPECT_EQ(d.Aliases().at("tele/shelly25/SENSOR/ENERGY.Total"),
            "tele/kitchen/SENSOR/ENERGY.Total");
  EXPECT_EQ(d.Aliases().size(), 8u);
}

TEST(TasmotaDiscoveryTest, ComesBackAfterARestart) {
  store::testing::TempDir dir;
  nlohmann::json before;
  {
    Discovery d(WithStateFile(dir));
    ASSERT_TRUE(d.Load().ok());
    d.Handle(kTasmotaConfigTopic, kTasmotaConfig);
    d.Handle(kTasmotaSensorsTopic, kTasmotaSensors);
    ASSERT_TRUE(d.Save().ok());
    before = d.Describe();
  }
  Discovery d(WithStateFile(dir));
  ASSERT_TRUE(d.Load().ok());
  EXPECT_EQ(d.Describe(), before);
  EXPECT_EQ(d.mapped_count(), 8u);
  EXPECT_TRUE(d.Handle(kTasmotaConfigTopic, kTasmotaConfig).empty());
  EXPECT_TRUE(d.ForgetUnconfirmed().empty());  // the config came again
}

}  // namespace
}  // namespace komoku::bridge

namespace komoku::bridge {
namespace {

// zigbee2mqtt announces linkquality disabled (lib/extension/homeassistant.ts:
// "enabled_by_default": false, "entity_category": "diagnostic"); Home
// Assistant adds it disabled, and so does Komoku unless told otherwise.
TEST(HaDiscoveryTest, EntitiesDisabledByDefaultAreNotRecorded) {
  const std::string topic = "homeassistant/sensor/0x00158d0001a2b3c4/linkquality/config";
  const std::string config =
      R"({"enabled_by_default":false,"entity_category":"diagnostic","icon":"mdi:signal",)"
      R"("name":"Linkquality","state_class":"measurement","state_topic":"zigbee2mqtt/kitchen_sensor",)"
      R"("unique_id":"0x00158d0001a2b3c4_linkquality_zigbee2mqtt","unit_of_measurement":"lqi",)"
      R"("value_template":"{{ value_json.linkquality }}"})";
  DiscoveredEntity e = ParseHaDiscovery(topic, config, DiscoveryOptions{});
  EXPECT_EQ(e.reason, "disabled");
  // Abbreviated ("en") as well.
  EXPECT_EQ(ParseHaDiscovery(topic, R"({"en":false,"stat_t":"a/b","unit_of_meas":"lqi"})",
                             DiscoveryOptions{})
                .reason,
            "disabled");
  DiscoveryOptions all;
  all.disabled_entities = true;
  e = ParseHaDiscovery(topic, config, all);
  EXPECT_TRUE(e.mapped()) << e.message;
  EXPECT_EQ(e.key, "zigbee2mqtt/kitchen_sensor/linkquality");
  EXPECT_TRUE(ParseHaDiscovery(kZ2mTemperatureTopic, kZ2mTemperature, DiscoveryOptions{}).mapped());
}

}  // namespace
}  // namespace komoku::bridge

namespace komoku::bridge {
namespace {

// `|default(c)` and `{% if <field> is defined %}` (shellies-discovery and
// zigbee2mqtt write both): a missing field takes the default, exactly as
// Jinja; the guarded expression stores nothing for a missing field.
TEST(ValueTemplateTest, DefaultAndIsDefined) {
  Result<HaTemplate> t = ParseHaTemplate("{{ value_json.power | default(0) }}");
  ASSERT_TRUE(t.ok()) << t.status().message();
  ASSERT_TRUE(t->missing_value);
  EXPECT_EQ(std::get<double>(*t->missing_value), 0);
  t = ParseHaTemplate("{{ value_json.state | default('unknown') }}");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(std::get<std::string>(*t->missing_value), "unknown");
  t = ParseHaTemplate("{{ value | default(0) }}");  // value is always there
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->missing_value);

  Discovery d(DiscoveryOptions{});
  d.Handle("homeassistant/sensor/plug/power/config",
           R"({"stat_t":"plug/state","unit_of_meas":"W",)"
           R"("val_tpl":"{{ value_json.power | default(0) | float * 2 }}"})");
  d.Handle(
      "homeassistant/sensor/plug/energy/config",
      R"({"stat_t":"plug/state","unit_of_meas":"kWh","stat_cla":"total_increasing",)"
      R"("val_tpl":"{% if value_json.energy is defined %}{{ value_json.energy }}{% endif %}"})");
  EXPECT_EQ(d.mapped_count(), 2u);
  EXPECT_EQ(Show(d.Map("plug/state", R"({"power":21,"energy":3.5})", kNow)),
            "plug/state/energy=3.5(d);plug/state/power=42(d);");
  EXPECT_EQ(Show(d.Map("plug/state", R"({"other":1})", kNow)), "plug/state/power=0(d);");
}

// Templates that compare and choose are evaluated whole, as Jinja does in
// Python; the first column is the template, then what it reads, then per
// input what python3 + jinja2 (with Home Assistant's float/int/round
// filters) renders.
TEST(ValueTemplateTest, ComparisonsAndConditionsEvaluateAsJinjaDoes) {
  using V = TemplateValue;
  struct Case {
    const char* text;
    const char* field;  // JSON pointer of the field read; "" for value
    V in;
    const char* out;  // RenderTemplateValue of the result; nullptr: fails
  };
  const Case cases[] = {
      // zigbee2mqtt's update_available binary_sensor.
      {"{{ value_json['update']['state'] == \"available\" }}", "/update/state",
       V::String("available"), "True"},
      {"{{ value_json['update']['state'] == \"available\" }}", "/update/state", V::String("idle"),
       "False"},
      {"{{ value_json.x != 'idle' }}", "/x", V::String("heating"), "True"},
      {"{{ value_json.x > 20 }}", "/x", V::Float(20.5), "True"},
      {"{{ value_json.x < 20 }}", "/x", V::Int(20), "False"},
      {"{{ value_json.x <= 20 }}", "/x", V::Int(20), "True"},
      {"{{ value_json.x >= 20.5 }}", "/x", V::Int(20), "False"},
      {"{{ 0 < value_json.x < 10 }}", "/x", V::Int(12), "False"},  // chained
      {"{{ value_json.x == 1 }}", "/x", V::Bool(true), "True"},    // True == 1 in Python
      {"{{ value_json.x == '1' }}", "/x", V::Int(1), "False"},
      // Shelly-style blocks: a text payload into words.
      {"{% if value == 'open' %}ON{% else %}OFF{% endif %}", "", V::String("open"), "ON"},
      {"{% if value == 'open' %}ON{% else %}OFF{% endif %}", "", V::String("close"), "OFF"},
      {"{%if value_json.motion==true%}ON{%else%}OFF{%endif%}", "/motion", V::Bool(true), "ON"},
      {"{%- if value_json.x > 1 -%} big {%- elif value_json.x > 0 -%} small {%- else -%} none "
       "{%- endif %}",
       "/x", V::Float(0.5), "small"},
      {"{% if value == 'on' %}ON{% endif %}", "", V::String("off"), ""},
      // Inline if.
      {"{{ 'ON' if value_json.contact == false else 'OFF' }}", "/contact", V::Bool(false), "ON"},
      {"{{ 'ON' if value_json.contact == false else 'OFF' }}", "/contact", V::Bool(true), "OFF"},
      {"{{ value_json.x if value_json.x is defined else 0 }}", "/x", V::Undefined(), "0"},
      {"{{ value_json.x if value_json.x is defined else 0 }}", "/x", V::Float(3.5), "3.5"},
      {"{% if value_json.x is defined %}{{ value_json.x }}{% else %}0{% endif %}", "/x",
       V::Undefined(), "0"},
      // float(0) / int(0): a default instead of a failure.
      {"{{ value | float(0) }}", "", V::String("21.5"), "21.5"},
      {"{{ value | float(0) }}", "", V::String("unavailable"), "0"},
      {"{{ value | float }}", "", V::String("unavailable"), nullptr},
      {"{{ value_json.x | int(0) }}", "/x", V::String("12.7"), "12"},
      {"{{ value_json.x | int(-1) }}", "/x", V::String("n/a"), "-1"},
      {"{{ float(value, 0) * 2 }}", "", V::String("3"), "6.0"},
      {"{{ int(value_json.x, 0) }}", "/x", V::Float(-3.9), "-3"},
      {"{{ value_json.x | float(0) > 25 }}", "/x", V::String("26"), "True"},
      {"{{ (value | float(0) / 1000) | round(2) }}", "", V::String("123456"), "123.46"},
      // Python's arithmetic.
      {"{{ value_json.x // 2 }}", "/x", V::Int(-7), "-4"},
      {"{{ value_json.x % 3 }}", "/x", V::Int(-7), "2"},
      {"{{ value_json.x ** 2 }}", "/x", V::Int(3), "9"},
      {"{{ value_json.x // 0 }}", "/x", V::Int(3), nullptr},
      {"{{ value }} W", "", V::String("21"), "21 W"},
      {"{{ value_json.x ~ ' W' }}", "/x", V::Float(0.1), "0.1 W"},
      {"{{ value_json.x ~ '' }}", "/x", V::Float(100), "100.0"},  // python3: str(100.0)
      {"{{ value_json.x ~ '' }}", "/x", V::Float(1e-5), "1e-05"},
      {"{{ value_json.x ~ '' }}", "/x", V::Float(1e16), "1e+16"},
      {"{{ value_json.x ~ '' }}", "/x", V::Float(123456.789), "123456.789"},
      {"{{ value_json.x ~ '' }}", "/x", V::Float(0.0001), "0.0001"},
      {"{{ value_json.x ~ '' }}", "/x", V::Int(42), "42"},
      {"{{ value | round(1) }}", "", V::String("21.37"), "21.4"},  // HA's round reads text
      {"{{ value * 2 }}", "", V::String("21"), nullptr},           // Python would repeat it
      {"{{ value_json.x < 'a' }}", "/x", V::Int(1), nullptr},      // Python fails too
      {"{{ value | lower == 'on' }}", "", V::String("ON"), "True"},
      {"{{ not value_json.x and true }}", "/x", V::Int(0), "True"},
      {"{{ value_json.x or 'none' }}", "/x", V::String(""), "none"},
  };
  for (const Case& c : cases) {
    // (ParseHaTemplate compiles `value | float` to steps instead.)
    Result<HaTemplate> t = ParseHaExpressionTemplate(c.text);
    ASSERT_TRUE(t.ok()) << c.text << ": " << t.status().message();
    ASSERT_TRUE(t->expression) << c.text;
    std::string pointer;
    for (const std::string& p : t->path) pointer += "/" + p;
    EXPECT_EQ(pointer, c.field) << c.text;
    Result<TemplateValue> out = t->expression->Evaluate(c.in);
    if (!c.out) {
      EXPECT_FALSE(out.ok()) << c.text << " gave " << RenderTemplateValue(*out);
      continue;
    }
    ASSERT_TRUE(out.ok()) << c.text << ": " << out.status().message();
    EXPECT_EQ(RenderTemplateValue(*out), c.out) << c.text;
  }
}

// What Komoku still refuses names the construct, so that the log line and
// GET /api/v1/discovery say what to change.
TEST(ValueTemplateTest, RefusalsNameTheConstruct) {
  const std::pair<const char*, const char*> cases[] = {
      {"{{ states('sensor.x') }}", "calls 'states()'"},
      {"{{ value_json.a + value_json.b }}", "reads two different values"},
      {"{% macro m() %}x{% endmacro %}{{ value }}", "{% macro %}"},
      {"{{ value_json.x | timestamp_local }}", "the filter 'timestamp_local'"},
      {"{{ value_json.x is even }}", "the test 'is even'"},
      {"{{ (value | list)[1:] }}", "slice"},
      {"{{ v }}{{ value }}", "reads 'v'"},
      {"{% if value == 'a' %}A", "without {% endif %}"},
      {"{{ value_json.x | float(default=0) }}", "keyword argument"},
      {"{# note #}{{ value }}", "comment"},
  };
  for (const auto& [text, construct] : cases) {
    Result<HaTemplate> t = ParseHaTemplate(text);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_NE(t.status().message().find(construct), std::string::npos)
        << text << ": " << t.status().message();
    EXPECT_NE(t.status().message().find(text), std::string::npos) << t.status().message();
  }
}

// A template comes from whoever may publish a discovery config: one built
// to exhaust the parser's or the evaluator's stack is refused with a
// reason, never a crash, and a huge one is not echoed whole.
TEST(ValueTemplateTest, HostileTemplatesAreRefusedNotFollowed) {
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  const std::pair<std::string, const char*> cases[] = {
      {"{{ " + repeat("(", 5000) + "value" + repeat(")", 5000) + " }}", "deeper than 32"},
      {"{{ " + repeat("-", 8000) + "value }}", "deeper than 32"},
      {"{{ " + repeat("not ", 3000) + "value }}", "deeper than 32"},
      {"{{ " + repeat("[", 5000) + "value" + repeat("]", 5000) + " }}", "deeper than 32"},
      {"{{ value" + repeat(" ~ 'a'", 2000) + " }}", "deep, more than the 200"},
      {"{% set x = value" + repeat(" ~ 'a'", 2000) + " %}{{ x }}", "deep, more than the 200"},
      {"{% for c in value" + repeat(" ~ 'a'", 2000) + " %}{{ c }}{% endfor %}",
       "deep, more than the 200"},
      {repeat("{% if value %}", 100) + "x" + repeat("{% endif %}", 100), "deeper than 64"},
      {"{% if value == '0' %}0" + repeat("{% elif value == 'x' %}x", 100) + "{% endif %}",
       "deeper than 64"},
      {"{{ value }}" + std::string(20000, ' '), "20011 bytes: more than the 16384 Komoku reads"},
  };
  for (const auto& [text, why] : cases) {
    Result<HaTemplate> t = ParseHaTemplate(text);
    ASSERT_FALSE(t.ok()) << text.substr(0, 80);
    EXPECT_NE(t.status().message().find(why), std::string::npos)
        << text.substr(0, 80) << ": " << t.status().message().substr(0, 500);
    EXPECT_LT(t.status().message().size(), 1000u) << text.substr(0, 80);
  }
  // Deep, but within the bounds: evaluated.
  Result<HaTemplate> ok =
      ParseHaTemplate("{{ " + repeat("(", 20) + "value_json.x" + repeat(")", 20) + " | float }}");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
}

// Found by fuzz/ha_template_fuzzer.cc (crash-ad0b4ae9...: `{{ {'a\x82':
// value} | to_json }}`): to_json of text that is not UTF-8 (an MQTT
// payload's bytes may be anything) threw out of Evaluate, which would end
// the service. Refused now, as is an integer orjson cannot write.
TEST(ValueTemplateTest, FuzzRegressionToJsonOfTextThatIsNotUtf8IsRefused) {
  const std::pair<const char*, TemplateValue> cases[] = {
      {"{{ {'a\x82': value} | to_json }}", TemplateValue::String("20.5")},
      {"{{ {'a': value} | to_json }}", TemplateValue::String("\xff\xfe")},
      {"{{ [value] | to_json }}", TemplateValue::String("caf\xc3")},
      {"{{ value_json.x | to_json }}", TemplateValue::Int(1e20)},
  };
  for (const auto& [text, in] : cases) {
    Result<HaTemplate> t = ParseHaExpressionTemplate(text);
    ASSERT_TRUE(t.ok()) << text << ": " << t.status().message();
    Result<TemplateValue> out = t->expression->Evaluate(in);
    ASSERT_FALSE(out.ok()) << text << " gave " << RenderTemplateValue(*out);
    EXPECT_NE(out.status().message().find("to_json of"), std::string::npos)
        << out.status().message();
  }
  Result<HaTemplate> t = ParseHaExpressionTemplate("{{ [value_json.x] | to_json }}");
  ASSERT_TRUE(t.ok());
  Result<TemplateValue> out = t->expression->Evaluate(TemplateValue::Int(18446744073709549568.0));
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out->text, "[18446744073709549568]");
  out = t->expression->Evaluate(TemplateValue::String("café"));
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out->text, "[\"café\"]");
}

// Found by fuzz/ha_template_fuzzer.cc (crash-eb956209...: `{{
// value_jsonon\u0482 | ... }}`): the refusal quoted one byte of a two-byte
// character, text that is not UTF-8 in the log and in GET
// /api/v1/discovery. It quotes the whole character.
TEST(ValueTemplateTest, FuzzRegressionARefusalQuotesWholeCharacters) {
  for (const char* text : {"{{ value_jsonon\u0482 | round(1) }}", "{{ value \u20ac 2 }}",
                           "{{ value + \U0001F600 }}"}) {
    Result<HaTemplate> t = ParseHaTemplate(text);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_TRUE(store::IsValidUtf8(t.status().message())) << t.status().message();
    EXPECT_NE(t.status().message().find("it cannot read"), std::string::npos)
        << t.status().message();
  }
}

// Found by fuzz/ha_template_fuzzer.cc (crash-96d738e8...: a pattern with
// a count of twenty digits): libstdc++'s std::regex overflowed a signed
// integer reading it. RE2 reads counts up to 1000 and has no
// back-references: both refused, saying so.
TEST(ValueTemplateTest, FuzzRegressionARegexCountTooLongIsRefused) {
  for (const auto& [text, why] : std::vector<std::pair<const char*, const char*>>{
           {"{{ value | regex_findall('a{88888888888888888888}') }}", "counts are at most 1000"},
           {"{{ value | regex_findall('a{1,88888888888888888888}') }}", "counts are at most 1000"},
           {"{{ value | regex_findall('a{1001}') }}", "counts are at most 1000"},
           {"{{ value | regex_findall('(a)\\\\88888888888888888888') }}",
            "no back-references or lookarounds"}}) {
    Result<HaTemplate> t = ParseHaExpressionTemplate(text);
    ASSERT_TRUE(t.ok()) << text << ": " << t.status().message();
    Result<TemplateValue> out = t->expression->Evaluate(TemplateValue::String("aaa"));
    ASSERT_FALSE(out.ok()) << text << " gave " << RenderTemplateValue(*out);
    EXPECT_NE(out.status().message().find(why), std::string::npos) << out.status().message();
  }
  // A literal backslash before digits is no back-reference; a count of
  // up to 1000 is read.
  Result<HaTemplate> t =
      ParseHaExpressionTemplate("{{ value | regex_findall('\\\\\\\\(1234567890)|a{2}') }}");
  ASSERT_TRUE(t.ok()) << t.status().message();
  Result<TemplateValue> out = t->expression->Evaluate(TemplateValue::String("x\\1234567890 aa"));
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(RenderTemplateValue(*out), "['1234567890', '']");
  t = ParseHaExpressionTemplate("{{ value | regex_findall('a{1000}') | length }}");
  ASSERT_TRUE(t.ok()) << t.status().message();
  out = t->expression->Evaluate(TemplateValue::String(std::string(2001, 'a')));
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(RenderTemplateValue(*out), "2");
}

// Whoever may publish a discovery config writes the template: a pattern
// that Python's backtracking re (and std::regex) takes exponential time
// over, `(a|aa)*b` on a few dozen a's, is searched in linear time (RE2),
// so one message cannot stall the ingest thread. Without RE2 this test
// does not finish (std::regex: 28 a's 0.09 s, 1.6 times as long per a).
TEST(ValueTemplateTest, ARegexThatBacktracksExponentiallyTakesLinearTime) {
  for (const char* pattern : {"(a|aa)*b", "(a*)*b", "(a|a?)+b", "^(\\\\w+\\\\s?)*$"}) {
    Result<HaTemplate> t = ParseHaExpressionTemplate(std::string("{{ value | regex_findall('") +
                                                     pattern + "') | length }}");
    ASSERT_TRUE(t.ok()) << pattern << ": " << t.status().message();
    const std::string text = std::string(4000, 'a') + "!";
    Result<TemplateValue> out = t->expression->Evaluate(TemplateValue::String(text));
    ASSERT_TRUE(out.ok()) << pattern << ": " << out.status().message();
    EXPECT_EQ(RenderTemplateValue(*out), "0") << pattern;
  }
}

// Python's regular expressions as RE2 reads them: named groups, `\Z`,
// empty matches as Python 3.7+ finds them (`x*` on 'abxd'), ignorecase;
// what needs backtracking (lookarounds, back-references) is refused with
// a message that says so, not misread (python3 gives each expectation).
TEST(ValueTemplateTest, RegexFindallReadsPythonsSyntaxThroughRe2) {
  const std::vector<std::tuple<const char*, const char*, const char*>> cases = {
      {"{{ value | regex_findall('x*') }}", "abxd", "['', '', 'x', '', '']"},
      {"{{ value | regex_findall('(?P<n>[0-9]+)(?P<u>[a-z]*)') }}", "12ab 3",
       "[('12', 'ab'), ('3', '')]"},
      {"{{ value | regex_findall('[0-9]\\\\Z') }}", "a1 b2", "['2']"},
      {"{{ value | regex_findall('^a') }}", "aaa", "['a']"},
      {"{{ value | regex_findall('\\\\bon\\\\b', True) }}", "ON on one", "['ON', 'on']"},
      {"{{ value | regex_findall('.') }}", "é€", "['é', '€']"},
      {"{{ value | regex_findall('') | length }}", "é€", "3"},
  };
  for (const auto& [text, input, expected] : cases) {
    Result<HaTemplate> t = ParseHaExpressionTemplate(text);
    ASSERT_TRUE(t.ok()) << text << ": " << t.status().message();
    Result<TemplateValue> out = t->expression->Evaluate(TemplateValue::String(input));
    ASSERT_TRUE(out.ok()) << text << ": " << out.status().message();
    EXPECT_EQ(RenderTemplateValue(*out), expected) << text;
  }
  for (const char* text :
       {"{{ value | regex_findall('a(?=b)') }}", "{{ value | regex_findall('(?<!a)b') }}",
        "{{ value | regex_findall('(a)\\\\1') }}"}) {
    Result<HaTemplate> t = ParseHaExpressionTemplate(text);
    ASSERT_TRUE(t.ok()) << text << ": " << t.status().message();
    Result<TemplateValue> out = t->expression->Evaluate(TemplateValue::String("aab"));
    ASSERT_FALSE(out.ok()) << text << " gave " << RenderTemplateValue(*out);
    EXPECT_NE(out.status().message().find("no back-references or lookarounds"), std::string::npos)
        << out.status().message();
  }
}

// A string literal is read as Jinja reads it (Python's escapes): an
// unknown escape keeps its backslash, so `'\d+'` is the pattern \d+, not
// d+ (python3 + jinja2 3.1.6 give each expectation); the escapes Komoku
// does not decode (\x, \u, octal) are refused, not misread.
TEST(ValueTemplateTest, StringLiteralsKeepUnknownEscapesAsJinjaDoes) {
  const std::tuple<const char*, const char*, const char*> cases[] = {
      {R"({{ value | regex_findall('\d+') }})", "a12b345", "['12', '345']"},
      {R"({{ value | regex_findall_index('(\d+)\.(\d+)') }})", "v 21.5", "('21', '5')"},
      {R"({{ value ~ '\q' }})", "x", R"(x\q)"},
      {R"({{ '\'' ~ value ~ "\"" }})", "x", R"('x")"},
      {R"({{ value ~ '\\d' }})", "x", R"(x\d)"},
      {R"({{ (value ~ '\ta') | length }})", "x", "3"},
  };
  for (const auto& [text, in, rendered] : cases) {
    Result<HaTemplate> t = ParseHaExpressionTemplate(text);
    ASSERT_TRUE(t.ok()) << text << ": " << t.status().message();
    Result<TemplateValue> out = t->expression->Evaluate(TemplateValue::String(in));
    ASSERT_TRUE(out.ok()) << text << ": " << out.status().message();
    EXPECT_EQ(RenderTemplateValue(*out), rendered) << text;
  }
  Result<HaTemplate> t = ParseHaExpressionTemplate(R"({{ value ~ '\x41' }})");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(R"(the escape '\x')"), std::string::npos)
      << t.status().message();
}

// Literal text between tags is output as Jinja outputs it, blanks
// included, `{%-` and `-%}` trimming it; Home Assistant then strips the
// whole result (Template.async_render_with_possible_json_value). Each
// expectation is python3 + jinja2 3.1.6's render(...).strip(); the kind
// column says whether a lone value stays native (a number stays a number
// when blanks are all that surround it).
TEST(ValueTemplateTest, TextBetweenTagsIsKeptAsJinjaKeepsIt) {
  using V = TemplateValue;
  using K = TemplateValue::Kind;
  struct Case {
    const char* text;
    V in;
    const char* out;
    K kind;
  };
  const Case cases[] = {
      {"{{ value_json.a }} {{ value_json.a }}", V::String("x"), "x x", K::kString},
      {"{{ value }} {{ value }}", V::String("ab"), "ab ab", K::kString},
      {"{{ value_json.a }}\n{{ value_json.a }}", V::Int(1), "1\n1", K::kString},
      {"{{ value_json.t }} °C", V::Float(21.5), "21.5 °C", K::kString},
      {"{% if value_json.t > 0 %} warm {% endif %}{{ value_json.t }}", V::Float(21.5), "warm 21.5",
       K::kString},
      {"{% for c in value %}{{ c }} {% endfor %}", V::String("ab"), "a b", K::kString},
      {"{% for c in value %}{{ c }}, {%- endfor %}", V::String("ab"), "a,b,", K::kString},
      {"{% if value == 'ab' %}  on  {% endif %}  !", V::String("ab"), "on    !", K::kString},
      {"{%- if value == 'ab' -%}  on  {%- else -%} off {%- endif -%}  !", V::String("ab"), "on!",
       K::kString},
      {"{%- if value == 'ab' -%}  on  {%- else -%} off {%- endif -%}  !", V::String("x"), "off!",
       K::kString},
      // One value among blanks: the stripped text is the value's own.
      {"{% if value_json.t is defined %} {{ value_json.t }} {% endif %}", V::Float(21.5), "21.5",
       K::kFloat},
      {"  {{ value_json.t | float }}\n", V::String(" 21.5 "), "21.5", K::kFloat},
      {"{% set x = value_json.t %}\n{{ x }}\n", V::Int(3), "3", K::kInt},
      {"{% if value_json.t is defined -%}\n  {{ value_json.t }}\n{%- endif %}", V::Float(21.5),
       "21.5", K::kFloat},
      {"{% if value_json.t is defined %} {{ value_json.t }} {% endif %}", V::Undefined(), "",
       K::kString},
      // Python's whitespace: U+3000, a form feed, U+00A0 too.
      {"\u3000{{ value_json.t }}\f", V::Float(21.5), "21.5", K::kFloat},
      {"{{ value }}\u00a0", V::String("on"), "on", K::kString},
  };
  for (const Case& c : cases) {
    Result<HaTemplate> t = ParseHaExpressionTemplate(c.text);
    ASSERT_TRUE(t.ok()) << c.text << ": " << t.status().message();
    Result<TemplateValue> out = t->expression->Evaluate(c.in);
    ASSERT_TRUE(out.ok()) << c.text << ": " << out.status().message();
    EXPECT_EQ(RenderTemplateValue(*out), c.out) << c.text;
    EXPECT_EQ(out->kind, c.kind) << c.text;
  }

  // Through discovery: a number among blanks is still a number, and a text
  // sensor keeps the blank between its parts.
  Discovery d(DiscoveryOptions{});
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/th/temperature/config",
                      R"({"stat_t":"th/state","unit_of_meas":"°C","dev_cla":"temperature",)"
                      R"("val_tpl":"{% if value_json.t is defined %} {{ value_json.t }} )"
                      R"({% endif %}"})")
                  .entity->mapped());
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/th/status/config",
                      R"({"stat_t":"th/state",)"
                      R"("val_tpl":"{{ value_json.mode }} {{ value_json.mode | upper }}"})")
                  .entity->mapped());
  EXPECT_EQ(Show(d.Map("th/state", R"({"t":21.5,"mode":"auto"})", kNow)),
            "th/state/mode=\"auto AUTO\"(s);th/state/t=21.5(d);");
}

// Through discovery into keys: the result is read as the entity's value
// (words for a binary_sensor, a number for a sensor); a missing field stores
// nothing unless the template tests for it; a failing template refuses the
// value.
TEST(DiscoveryTest, ConditionalTemplatesMapTheirValues) {
  Discovery d(DiscoveryOptions{});
  // zigbee2mqtt 1.x's update_available (payload_on true: "True").
  ASSERT_TRUE(
      Handle1(d, "homeassistant/binary_sensor/0x00158d0001a2b3c4/update_available/config",
              R"({"name":null,"object_id":"kitchen_sensor_update_available",)"
              R"("payload_on":true,"payload_off":false,"device_class":"update",)"
              R"("entity_category":"diagnostic","state_topic":"zigbee2mqtt/kitchen_sensor",)"
              R"("value_template":"{{ value_json['update']['state'] == \"available\" }}"})")
          .entity->mapped());
  // A Shelly-style text payload through an if block into ON/OFF.
  ASSERT_TRUE(Handle1(d, "homeassistant/binary_sensor/shellydw2-AABBCC-door/config",
                      R"({"name":"Door","stat_t":"shellies/shellydw2-AABBCC/sensor/state",)"
                      R"("dev_cla":"door","pl_on":"ON","pl_off":"OFF",)"
                      R"("val_tpl":"{%if value==\"open\"%}ON{%else%}OFF{%endif%}"})")
                  .entity->mapped());
  // A power sensor that reads 0 for a word, and one that says so only when
  // the field is there.
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/plug/power/config",
                      R"({"stat_t":"plug/state","unit_of_meas":"W","dev_cla":"power",)"
                      R"("val_tpl":"{{ value_json.power | float(0) }}"})")
                  .entity->mapped());
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/plug/voltage/config",
                      R"({"stat_t":"plug/state","unit_of_meas":"V","dev_cla":"voltage",)"
                      R"("val_tpl":"{{ value_json.voltage | float if value_json.voltage is )"
                      R"(defined else -1 }}"})")
                  .entity->mapped());
  ASSERT_TRUE(Handle1(d, "homeassistant/sensor/plug/current/config",
                      R"({"stat_t":"plug/state","unit_of_meas":"A","dev_cla":"current",)"
                      R"("val_tpl":"{{ value_json.current | float }}"})")
                  .entity->mapped());

  EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen_sensor", R"({"update":{"state":"available"}})", kNow)),
            "zigbee2mqtt/kitchen_sensor/update.state=true(b);");
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen_sensor", R"({"update":{"state":"idle"}})", kNow)),
            "zigbee2mqtt/kitchen_sensor/update.state=false(b);");
  // No update field: nothing, as for every template that does not test for it.
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen_sensor", R"({"temperature":21})", kNow)), "");
  EXPECT_EQ(Show(d.Map("shellies/shellydw2-AABBCC/sensor/state", "open", kNow)),
            "shellies/shellydw2-AABBCC/sensor/state=true(b);");
  EXPECT_EQ(Show(d.Map("shellies/shellydw2-AABBCC/sensor/state", "close", kNow)),
            "shellies/shellydw2-AABBCC/sensor/state=false(b);");
  EXPECT_EQ(Show(d.Map("plug/state", R"({"power":"12.5","voltage":230,"current":0.1})", kNow)),
            "plug/state/current=0.1(d);plug/state/power=12.5(d);plug/state/voltage=230(d);");
  EXPECT_EQ(Show(d.Map("plug/state", R"({"power":"n/a"})", kNow)),
            "plug/state/power=0(d);plug/state/voltage=-1(d);");
  // float without a default fails in Home Assistant: refused, counted.
  EXPECT_EQ(Show(d.Map("plug/state", R"({"current":"n/a"})", kNow)),
            "plug/state/voltage=-1(d);!wrong_type;");
}

// Homie 3.0.1 (homieiot.github.io/convention, 3.0.1: $datatype optional,
// default string; required from 4.0.0): a Homie 3 device's property without
// $datatype is a string key, whichever of $homie and the property's
// attributes comes first; a Homie 4 one still waits for its $datatype.
TEST(DiscoveryTest, Homie3PropertiesWithoutDatatypeAreText) {
  Discovery d(DiscoveryOptions{});
  const std::vector<std::string> filters = d.ConfigFilters();
  EXPECT_NE(std::find(filters.begin(), filters.end(), "homie/+/$homie"), filters.end());
  // Attributes first: nothing yet (the version is not known).
  EXPECT_FALSE(Handle1(d, "homie/garden/soil/moisture/$name", "Soil moisture").changed);
  std::vector<Discovery::Update> u = d.Handle("homie/garden/$homie", "3.0.1");
  ASSERT_EQ(u.size(), 1u);
  ASSERT_TRUE(u[0].entity && u[0].entity->mapped()) << u[0].entity->message;
  EXPECT_EQ(u[0].entity->type, KeyType::kString);
  EXPECT_EQ(u[0].entity->key, "homie/garden/soil/moisture");
  // Version first: the property maps at its first attribute.
  Discovery::Update one = Handle1(d, "homie/garden/soil/state/$name", "State");
  ASSERT_TRUE(one.entity && one.entity->mapped());
  EXPECT_EQ(one.entity->type, KeyType::kString);
  // A $datatype still types it.
  one = Handle1(d, "homie/garden/soil/temperature/$unit", "°C");
  ASSERT_TRUE(one.entity && one.entity->mapped());
  one = Handle1(d, "homie/garden/soil/temperature/$datatype", "float");
  ASSERT_TRUE(one.entity && one.entity->mapped());
  EXPECT_EQ(one.entity->type, KeyType::kNumeric);
  EXPECT_EQ(Show(d.Map("homie/garden/soil/moisture", "41", kNow)),
            "homie/garden/soil/moisture=\"41\"(s);");
  EXPECT_EQ(Show(d.Map("homie/garden/soil/temperature", "12.5", kNow)),
            "homie/garden/soil/temperature=12.5(d);");

  // Homie 4: $datatype is required; without it nothing is mapped.
  d.Handle("homie/hall/$homie", "4.0.0");
  EXPECT_FALSE(Handle1(d, "homie/hall/sensor/temp/$name", "Temperature").changed);
  EXPECT_FALSE(d.Map("homie/hall/sensor/temp", "20", kNow).engine);
}

// Homie 5 (homieiot.github.io/convention, 5.0): the device's properties are
// in the JSON of homie/5/<device>/$description; values at
// homie/5/<device>/<node>/<property>, availability at homie/5/<device>/$state.
TEST(DiscoveryTest, Homie5DescriptionMapsEachProperty) {
  store::testing::TempDir dir;
  DiscoveryOptions options;
  options.state_path = dir.path() + "/discovery.json";
  const char* description =
      R"({"homie":"5.0","version":1720000000,"name":"Thermostat","nodes":{)"
      R"("thermostat":{"name":"Living room","properties":{)"
      R"("temperature":{"name":"Temperature","datatype":"float","unit":"°C"},)"
      R"("setpoint":{"datatype":"float","unit":"°C","settable":true},)"
      R"("heating":{"datatype":"boolean"},)"
      R"("mode":{"datatype":"enum","format":"off,heat,auto"},)"
      R"("odd":{"datatype":"quaternion"}}}}})";
  {
    Discovery d(options);
    const std::vector<std::string> filters = d.ConfigFilters();
    EXPECT_NE(std::find(filters.begin(), filters.end(), "homie/5/+/$description"), filters.end());
    EXPECT_TRUE(d.IsDiscoveryTopic("homie/5/thermo-1/$description"));
    std::vector<Discovery::Update> u = d.Handle("homie/5/thermo-1/$description", description);
    ASSERT_EQ(u.size(), 5u);
    EXPECT_EQ(d.mapped_count(), 4u);
    EXPECT_EQ(Show(d.Map("homie/5/thermo-1/thermostat/temperature", "21.5", kNow)),
              "homie/5/thermo-1/thermostat/temperature=21.5(d);");
    EXPECT_EQ(Show(d.Map("homie/5/thermo-1/thermostat/heating", "true", kNow)),
              "homie/5/thermo-1/thermostat/heating=true(b);");
    EXPECT_EQ(Show(d.Map("homie/5/thermo-1/thermostat/mode", "heat", kNow)),
              "homie/5/thermo-1/thermostat/mode=\"heat\"(s);");
    EXPECT_EQ(Show(d.Map("homie/5/thermo-1/$state", "ready", kNow)),
              "homie/5/thermo-1/$state=true(b);");
    nlohmann::json listing = d.Describe();
    EXPECT_EQ(listing["refused"], 1) << listing.dump(2);
    // The same description again: no change.
    EXPECT_TRUE(d.Handle("homie/5/thermo-1/$description", description).empty());
    ASSERT_TRUE(d.Save().ok());
  }
  // After a restart the description is learnt again from the state file.
  Discovery d(options);
  ASSERT_TRUE(d.Load().ok());
  EXPECT_EQ(d.mapped_count(), 4u);
  EXPECT_EQ(Show(d.Map("homie/5/thermo-1/thermostat/setpoint", "20", kNow)),
            "homie/5/thermo-1/thermostat/setpoint=20(d);");
  // A description without the property drops it.
  d.Handle("homie/5/thermo-1/$description",
           R"({"homie":"5.0","version":2,"nodes":{"thermostat":{"properties":{)"
           R"("temperature":{"datatype":"float"}}}}})");
  EXPECT_EQ(d.mapped_count(), 1u);
  EXPECT_FALSE(d.Map("homie/5/thermo-1/thermostat/setpoint", "20", kNow).engine);
  // Not JSON: refused with a reason.
  std::vector<Discovery::Update> bad = d.Handle("homie/5/other/$description", "{");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0].entity->reason, "bad_json");
}

// zigbee2mqtt renames kitchen_sensor to kitchen: the same config topic and
// unique_id, the new state topic. The first key stays, with the new name
// as its alias; through a removal, a restart, and back to the first name.
TEST(DiscoveryStateTest, ARenamedDeviceKeepsItsFirstKey) {
  store::testing::TempDir dir;
  const auto renamed = [](std::string payload, const std::string& name) {
    for (size_t at = 0; (at = payload.find("kitchen_sensor", at)) != std::string::npos;) {
      payload.replace(at, 14, name);
      at += name.size();
    }
    return payload;
  };
  const std::string key = "zigbee2mqtt/kitchen_sensor/temperature";
  {
    Discovery d(WithStateFile(dir));
    ASSERT_TRUE(d.Load().ok());
    Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature);
    EXPECT_TRUE(d.Aliases().empty());
    Discovery::Update u = Handle1(d, kZ2mTemperatureTopic, renamed(kZ2mTemperature, "kitchen"));
    ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->message;
    EXPECT_EQ(u.entity->key, key);
    EXPECT_EQ(u.entity->alias, "zigbee2mqtt/kitchen/temperature");
    EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen", R"({"temperature":22.5})", kNow)),
              key + "=22.5(d);");
    EXPECT_FALSE(d.Map("zigbee2mqtt/kitchen_sensor", R"({"temperature":22.5})", kNow).engine);
    EXPECT_EQ(d.Aliases(),
              (std::map<std::string, std::string>{{key, "zigbee2mqtt/kitchen/temperature"}}));
    EXPECT_EQ(d.Describe()["entities"][0]["alias"], "zigbee2mqtt/kitchen/temperature");
    // Cleared and announced again (homeassistant_rename): still the first key.
    EXPECT_TRUE(Handle1(d, kZ2mTemperatureTopic, "").removed);
    EXPECT_TRUE(d.Aliases().empty());
    Handle1(d, kZ2mTemperatureTopic, renamed(kZ2mTemperature, "kitchen"));
    EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen", R"({"temperature":23})", kNow)), key + "=23(d);");
    ASSERT_TRUE(d.Save().ok());
  }
  const nlohmann::json file =
      nlohmann::json::parse(*store::ReadWholeFile(dir.File("discovery.json")));
  EXPECT_EQ(file["identities"],
            (nlohmann::json{{"0x00158d0001a2b3c4_temperature_zigbee2mqtt", key}}));
  Discovery d(WithStateFile(dir));
  ASSERT_TRUE(d.Load().ok());
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen", R"({"temperature":24})", kNow)), key + "=24(d);");
  EXPECT_EQ(d.Aliases().at(key), "zigbee2mqtt/kitchen/temperature");
  // A new device named kitchen_sensor would write the renamed one's key:
  // refused, not mixed into its history.
  std::string other = kZ2mTemperature;
  other.replace(other.find("0x00158d0001a2b3c4_temperature"), 18, "0x00158d0009999999");
  Discovery::Update u =
      Handle1(d, "homeassistant/sensor/0x00158d0009999999/temperature/config", other);
  ASSERT_TRUE(u.entity);
  EXPECT_EQ(u.entity->reason, "duplicate_key") << u.entity->message;
  // Renamed back: the first name, no alias.
  d.Handle("homeassistant/sensor/0x00158d0009999999/temperature/config", "");
  Handle1(d, kZ2mTemperatureTopic, kZ2mTemperature);
  EXPECT_TRUE(d.Aliases().empty());
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/kitchen_sensor", R"({"temperature":25})", kNow)),
            key + "=25(d);");
  // An identity that is no key refuses the file.
  std::ofstream(dir.File("discovery.json"))
      << R"({"version":1,"entities":[],"identities":{"x":"a+b"}})";
  Discovery broken(WithStateFile(dir));
  EXPECT_FALSE(broken.Load().ok());
}

// shellies-discovery-gen2 announces three problem sensors that read one
// field ("errors"), each looking for its own error: the first has the key
// named after the field, the others add their names; through a restart
// from the state file (no alias) and a rename (each alias its own). Two
// configs computing the same thing from the same field stay refused.
TEST(DiscoveryStateTest, EntitiesComputingDifferentValuesFromOneFieldEachHaveAKey) {
  store::testing::TempDir dir;
  // The config topic and unique_id name the device's id, the state topic
  // its (MQTT) name.
  const auto problem = [](const std::string& device, const std::string& error,
                          const std::string& name) {
    return std::pair{"homeassistant/binary_sensor/plug-0-" + error + "/config",
                     R"({"name":")" + name +
                         R"(","dev_cla":"problem","stat_t":"~status/switch:0",)" +
                         R"("val_tpl":"{%if \")" + error +
                         R"(\" in value_json.get(\"errors\",[])%}ON{%else%}OFF{%endif%}",)" +
                         R"("uniq_id":"plug-0-)" + error + R"(","~":")" + device + R"(/"})"};
  };
  const std::string base = "plug/status/switch:0/errors";
  {
    Discovery d(WithStateFile(dir));
    ASSERT_TRUE(d.Load().ok());
    for (const auto& [error, name] :
         std::vector<std::pair<std::string, std::string>>{{"overpower", "Overpower"},
                                                          {"overtemp", "Overheating"},
                                                          {"overvoltage", "Over-voltage!"}}) {
      auto [topic, config] = problem("plug", error, name);
      Discovery::Update u = Handle1(d, topic, config);
      ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->message;
    }
    EXPECT_EQ(
        Show(d.Map("plug/status/switch:0", R"({"output":true,"errors":["overtemp"]})", kNow)),
        base + "=false(b);" + base + "/overheating=true(b);" + base + "/over_voltage=false(b);");
    // The same computation under another unique_id: one thing twice.
    auto [topic, config] = problem("plug", "overpower", "Overpower");
    config.replace(config.find("plug-0-overpower"), 16, "plug-0-overpower-2");
    Discovery::Update twice = Handle1(d, "homeassistant/binary_sensor/again/config", config);
    ASSERT_TRUE(twice.entity);
    EXPECT_EQ(twice.entity->reason, "duplicate_key") << twice.entity->message;
    EXPECT_TRUE(d.Aliases().empty());
    ASSERT_TRUE(d.Save().ok());
  }
  Discovery d(WithStateFile(dir));
  ASSERT_TRUE(d.Load().ok());
  EXPECT_EQ(
      Show(d.Map("plug/status/switch:0", R"({"errors":["overvoltage"]})", kNow)),
      base + "=false(b);" + base + "/overheating=false(b);" + base + "/over_voltage=true(b);");
  EXPECT_TRUE(d.Aliases().empty());
  // The device renamed "socket": the same identities, the first keys, each
  // with the name the new topic makes as its alias.
  for (const auto& [error, name] : std::vector<std::pair<std::string, std::string>>{
           {"overpower", "Overpower"}, {"overtemp", "Overheating"}}) {
    auto [topic, config] = problem("socket", error, name);
    Discovery::Update u = Handle1(d, topic, config);
    ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->message;
  }
  EXPECT_EQ(d.Aliases(),
            (std::map<std::string, std::string>{
                {base, "socket/status/switch:0/errors"},
                {base + "/overheating", "socket/status/switch:0/errors/overheating"}}));
}

// Events: keys made with same_value_resolution 0, so that every press is
// stored. zigbee2mqtt's device triggers (one config per action, all on
// zigbee2mqtt/<name>/action) share one key; Home Assistant's event entity
// reads event_type; a Homie 5 property with "retained": false.
TEST(DiscoveryTest, EventsAreStoredEveryTime) {
  Discovery d(DiscoveryOptions{});
  const std::string trigger =
      R"({"automation_type":"trigger","type":"action","subtype":"S","payload":"S",)"
      R"("topic":"zigbee2mqtt/hall_switch/action","device":{"name":"hall_switch"}})";
  for (const std::string s : {"single", "double"}) {
    std::string payload = trigger;
    for (size_t at; (at = payload.find("\"S\"")) != std::string::npos;) {
      payload.replace(at, 3, "\"" + s + "\"");
    }
    Discovery::Update u = Handle1(
        d, "homeassistant/device_automation/0x00158d00045b2a11/action_" + s + "/config", payload);
    ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->reason << u.entity->message;
    EXPECT_TRUE(u.entity->event);
    EXPECT_EQ(u.entity->key, "zigbee2mqtt/hall_switch/action");
  }
  Discovery::Mapped m = d.Map("zigbee2mqtt/hall_switch/action", "single", kNow);
  EXPECT_EQ(Show(m), "zigbee2mqtt/hall_switch/action=\"single\"(s);");  // once, not twice
  ASSERT_TRUE(m.engine);
  EXPECT_EQ(m.engine->rule(0).options.value("same_value_resolution", -1), 0);
  // One trigger removed: the other still reads the topic.
  d.Handle("homeassistant/device_automation/0x00158d00045b2a11/action_single/config", "");
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/hall_switch/action", "single", kNow)),
            "zigbee2mqtt/hall_switch/action=\"single\"(s);");
  EXPECT_EQ(Ha("homeassistant/device_automation/x/y/config",
               R"({"automation_type":"action","topic":"a/b"})")
                .reason,
            "unsupported");

  Handle1(d, "homeassistant/event/doorbell/press/config",
          R"({"state_topic":"doorbell/event","event_types":["press"],"unique_id":"bell"})");
  m = d.Map("doorbell/event", R"({"event_type":"press","duration":1})", kNow);
  EXPECT_EQ(Show(m), "doorbell/event/event_type=\"press\"(s);");
  ASSERT_TRUE(m.engine);
  EXPECT_EQ(m.engine->rule(0).options.value("same_value_resolution", -1), 0);
  EXPECT_EQ(
      Ha("homeassistant/event/doorbell/press/config",
         R"({"state_topic":"doorbell/event","value_template":"{{ value_json.x | timestamp_local }}"})")
          .reason,
      "bad_template");
  // A plain sensor is no event.
  Handle1(d, kShellyTopic, kShelly);
  m = d.Map("shellies/shellyht-XYZ/sensor/temperature", "21", kNow);
  ASSERT_TRUE(m.engine);
  EXPECT_FALSE(m.engine->rule(0).options.contains("same_value_resolution"));

  d.Handle("homie/5/remote/$description",
           R"({"homie":"5.0","nodes":{"b":{"properties":{)"
           R"("button":{"datatype":"enum","format":"press,hold","retained":false},)"
           R"("battery":{"datatype":"integer"}}}}})");
  m = d.Map("homie/5/remote/b/button", "press", kNow);
  ASSERT_TRUE(m.engine);
  EXPECT_EQ(m.engine->rule(0).options.value("same_value_resolution", -1), 0);
  m = d.Map("homie/5/remote/b/battery", "90", kNow);
  ASSERT_TRUE(m.engine);
  EXPECT_FALSE(m.engine->rule(0).options.contains("same_value_resolution"));
}

// Homie 3.0/4.0 (homieiot.github.io/convention, property attributes):
// `$retained` "false" marks a property whose messages are not retained,
// events such as a button press; "true" is the default. Such a property is
// an event key (same_value_resolution 0) whichever attribute comes first.
TEST(DiscoveryTest, Homie3And4NotRetainedPropertiesAreEvents) {
  Discovery d(DiscoveryOptions{});
  const std::vector<std::string> filters = d.ConfigFilters();
  EXPECT_NE(std::find(filters.begin(), filters.end(), "homie/+/+/+/$retained"), filters.end());
  d.Handle("homie/remote/$homie", "4.0.0");
  // $retained after $datatype.
  Handle1(d, "homie/remote/buttons/button/$datatype", "enum");
  Handle1(d, "homie/remote/buttons/button/$format", "press,long-press");
  Discovery::Update u = Handle1(d, "homie/remote/buttons/button/$retained", "false");
  ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->message;
  EXPECT_TRUE(u.entity->event);
  Discovery::Mapped m = d.Map("homie/remote/buttons/button", "press", kNow);
  ASSERT_TRUE(m.engine);
  EXPECT_EQ(m.engine->rule(0).options.value("same_value_resolution", -1), 0);
  // $retained before $datatype, on a Homie 3 device without $datatype.
  d.Handle("homie/old/$homie", "3.0.1");
  u = Handle1(d, "homie/old/remote/click/$retained", "false");
  ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->message;
  EXPECT_TRUE(u.entity->event);
  EXPECT_EQ(u.entity->type, KeyType::kString);
  // "true", or no $retained: no event.
  Handle1(d, "homie/remote/buttons/battery/$datatype", "integer");
  u = Handle1(d, "homie/remote/buttons/battery/$retained", "true");
  ASSERT_TRUE(u.entity && u.entity->mapped());
  EXPECT_FALSE(u.entity->event);
  m = d.Map("homie/remote/buttons/battery", "90", kNow);
  ASSERT_TRUE(m.engine);
  EXPECT_FALSE(m.engine->rule(0).options.contains("same_value_resolution"));
  // Back to retained: no longer an event.
  u = Handle1(d, "homie/remote/buttons/button/$retained", "true");
  ASSERT_TRUE(u.entity && u.entity->mapped());
  EXPECT_FALSE(u.entity->event);
}

// zigbee2mqtt's own event template, exactly as lib/extension/homeassistant.ts
// (getActionValueTemplate, Koenkk/zigbee2mqtt at 6835cbf5, 2026-07-21)
// builds it from its ACTION_PATTERNS: {% set %}, namespace(), nested
// {% for %} with {% continue %}, regex_findall, zip, selectattr/rejectattr,
// map(attribute=), dict.from_keys and to_json. What it renders is what
// Home Assistant's Jinja renders (Python's re.findall, dicts in insertion
// order); the event template takes its event_type.
std::string Zigbee2mqttEventTemplate() {
  return test_data::Read("templates/zigbee2mqtt_event.jinja");
}

TEST(ValueTemplateTest, Zigbee2mqttEventTemplate) {
  Result<HaTemplate> t = ParseHaTemplate(Zigbee2mqttEventTemplate());
  ASSERT_TRUE(t.ok()) << t.status().message();
  ASSERT_TRUE(t->expression);
  EXPECT_EQ(t->path, std::vector<std::string>{"action"});
  EXPECT_TRUE(t->expression->reads_missing());  // value_json.action|default('')
  Result<HaTemplate> event = ParseHaEventTemplate(Zigbee2mqttEventTemplate());
  ASSERT_TRUE(event.ok()) << event.status().message();
  struct Case {
    TemplateValue action;
    const char* rendered;
    const char* event_type;  // nullptr: none
  };
  const Case cases[] = {
      {TemplateValue::String("single"), R"({"event_type":"single"})", "single"},
      {TemplateValue::String("button_1_press"), R"({"button":"button_1","event_type":"press"})",
       "press"},
      {TemplateValue::String("2_hold_release"), R"({"button":"2","event_type":"hold_release"})",
       "hold_release"},
      {TemplateValue::String("recall_12"), R"({"scene":"12","event_type":"recall"})", "recall"},
      {TemplateValue::String("region_3_leave"), R"({"region":"3","event_type":"region_leave"})",
       "region_leave"},
      {TemplateValue::String("dial_rotate_right_fast"),
       R"({"direction":"right","speed":"fast","event_type":"dial_rotate"})", "dial_rotate"},
      {TemplateValue::String("brightness_step_down"),
       R"({"direction":"down","event_type":"brightness_step"})", "brightness_step"},
      // An optional group that took no part is '' (Python's findall).
      {TemplateValue::String("brightness_step"),
       R"({"direction":"","event_type":"brightness_step"})", "brightness_step"},
      // No action in the payload, or an empty one: no event.
      {TemplateValue::Undefined(), "{}", nullptr},
      {TemplateValue::String(""), "{}", nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(RenderTemplateValue(c.action));
    Result<TemplateValue> out = t->expression->Evaluate(c.action);
    ASSERT_TRUE(out.ok()) << out.status().message();
    EXPECT_EQ(RenderTemplateValue(*out), c.rendered);
    Result<TemplateValue> type = event->expression->Evaluate(c.action);
    ASSERT_TRUE(type.ok()) << type.status().message();
    if (c.event_type) {
      EXPECT_EQ(type->kind, TemplateValue::Kind::kString);
      EXPECT_EQ(type->text, c.event_type);
    } else {
      EXPECT_EQ(type->kind, TemplateValue::Kind::kUndefined) << RenderTemplateValue(*type);
    }
  }
}

// The grown subset on its own: what each construct gives, as Jinja in
// Python gives it.
TEST(ValueTemplateTest, SetForListsAndDicts) {
  struct Case {
    const char* text;
    TemplateValue in;
    const char* rendered;
  };
  const Case cases[] = {
      // zigbee2mqtt's climate action (homeassistant.ts, running_state).
      {"{% set values = {None:None,'idle':'idle','heat':'heating','cool':'cooling',"
       "'fan_only':'fan'} %}{{ values[value_json[\"running_state\"]] }}",
       TemplateValue::String("heat"), "heating"},
      {"{% set values = {None:None,'idle':'idle','heat':'heating'} %}"
       "{{ values[value_json.running_state] }}",
       TemplateValue::String("other"), ""},
      {"{% set x = value | int %}{% set y = x * 2 %}{{ y }}", TemplateValue::String("21"), "42"},
      {"{% for c in value | list %}{{ c }}-{% endfor %}", TemplateValue::String("abc"), "a-b-c-"},
      {"{% for c in value | list %}{% if c == 'b' %}{% break %}{% endif %}{{ c }}{% endfor %}",
       TemplateValue::String("abc"), "a"},
      {"{% set x = 1 %}{% for c in value | list %}{% set x = 2 %}{% endfor %}{{ x }}",
       TemplateValue::String("ab"), "1"},  // a set in a loop ends with it
      {"{% set ns = namespace(n=0) %}{% for c in value | list %}{% set ns.n = ns.n + 1 %}"
       "{% endfor %}{{ ns.n }}",
       TemplateValue::String("abc"), "3"},
      {"{{ value in ['a', 'b'] }}", TemplateValue::String("b"), "True"},
      {"{{ value not in ('a', 'b') }}", TemplateValue::String("b"), "False"},
      {"{{ 'x' in value }}", TemplateValue::String("xyz"), "True"},
      {"{{ [1, value] + [3] }}", TemplateValue::Int(2), "[1, 2, 3]"},
      {"{{ (value, 'a') }}", TemplateValue::Int(2), "(2, 'a')"},
      {"{{ {'a': value}['a'] }}", TemplateValue::Int(5), "5"},
      {"{{ {'a': value} | to_json }}", TemplateValue::String("\u00e9\""), "{\"a\":\"\u00e9\\\"\"}"},
      {"{{ value | regex_findall('([a-z])([0-9])') }}", TemplateValue::String("a1 b2"),
       "[('a', '1'), ('b', '2')]"},
      {"{{ value | regex_findall('[0-9]+') | last }}", TemplateValue::String("a1 b22"), "22"},
      {"{{ value | regex_findall_index('(?P<n>[0-9]+)', 1) }}", TemplateValue::String("a1 b22"),
       "22"},
      {"{{ value | regex_findall('X', True) | length }}", TemplateValue::String("xXx"), "3"},
      {"{{ [(1, 'a'), (2, 'b')] | selectattr(0, 'eq', value) | map(attribute=1) | first }}",
       TemplateValue::Int(2), "b"},
      {"{{ [1, 2, 3] | reject('in', [value]) | list }}", TemplateValue::Int(2), "[1, 3]"},
      {"{{ zip([1, 2, 3], value | list) | list }}", TemplateValue::String("ab"),
       "[(1, 'a'), (2, 'b')]"},
      {"{{ dict(a=value) }}", TemplateValue::Int(1), "{'a': 1}"},
      {"{{ [][0] is undefined and value }}", TemplateValue::Bool(true), "True"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Result<HaTemplate> t = ParseHaExpressionTemplate(c.text);
    ASSERT_TRUE(t.ok()) << t.status().message();
    Result<TemplateValue> out = t->expression->Evaluate(c.in);
    ASSERT_TRUE(out.ok()) << out.status().message();
    EXPECT_EQ(RenderTemplateValue(*out), c.rendered);
  }
  // Still refused, named: a name never set, a {% set %} of an attribute
  // of something never set, a {% for %} without {% endfor %}, break
  // outside a loop.
  for (const char* text : {"{{ nothing }}{{ value }}", "{% set ns.x = 1 %}{{ value }}",
                           "{% for c in value %}{{ c }}", "{% break %}{{ value }}"}) {
    EXPECT_FALSE(ParseHaTemplate(text).ok()) << text;
  }
  // Failing at evaluation, as Jinja fails: iterating a number.
  Result<HaTemplate> t = ParseHaExpressionTemplate("{% for c in value %}{{ c }}{% endfor %}");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->expression->Evaluate(TemplateValue::Int(3)).ok());
  // Bounded: a list doubled in a loop, a regex over long text.
  t = ParseHaExpressionTemplate(
      "{% set ns = namespace(l=[1]) %}{% for c in value | list %}{% set ns.l = ns.l + ns.l %}"
      "{% endfor %}{{ ns.l | length }}");
  ASSERT_TRUE(t.ok()) << t.status().message();
  Result<TemplateValue> small = t->expression->Evaluate(TemplateValue::String("abc"));
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(RenderTemplateValue(*small), "8");
  Result<TemplateValue> big = t->expression->Evaluate(TemplateValue::String(std::string(64, 'a')));
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("longer than"), std::string::npos)
      << big.status().message();
  t = ParseHaExpressionTemplate("{{ value | regex_findall('a') | length }}");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->expression->Evaluate(TemplateValue::String(std::string(10000, 'a'))).ok());
}

// Through discovery: zigbee2mqtt's event entity (experimental_event_entities)
// reads the action field through its template; the key is
// <state_topic>/event_type; a message without an action stores nothing.
TEST(DiscoveryTest, Zigbee2mqttEventEntityTakesItsEventType) {
  Discovery d(DiscoveryOptions{});
  const nlohmann::json config = {{"name", "Action"},
                                 {"state_topic", "zigbee2mqtt/hue_tap"},
                                 {"event_types", {"press", "hold", "dial_rotate"}},
                                 {"value_template", Zigbee2mqttEventTemplate()},
                                 {"unique_id", "0x0017880109abcdef_action_zigbee2mqtt"}};
  Discovery::Update u =
      Handle1(d, "homeassistant/event/0x0017880109abcdef/action/config", config.dump());
  ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->reason << ": " << u.entity->message;
  EXPECT_EQ(u.entity->key, "zigbee2mqtt/hue_tap/event_type");
  EXPECT_TRUE(u.entity->event);
  Discovery::Mapped m =
      d.Map("zigbee2mqtt/hue_tap", R"({"action":"button_1_press","battery":90})", kNow);
  EXPECT_EQ(Show(m), "zigbee2mqtt/hue_tap/event_type=\"press\"(s);");
  m = d.Map("zigbee2mqtt/hue_tap", R"({"action":"dial_rotate_left_step"})", kNow);
  EXPECT_EQ(Show(m), "zigbee2mqtt/hue_tap/event_type=\"dial_rotate\"(s);");
  m = d.Map("zigbee2mqtt/hue_tap", R"({"battery":90})", kNow);
  EXPECT_EQ(Show(m), "") << "no action, no event";
}

// Home Assistant's MQTT event requires event_types and fires no event of
// another type (event.py: "Invalid event type ... received on topic",
// dropped): such a value is refused, with its own reason, and a config
// without event_types is refused as Home Assistant refuses it.
TEST(DiscoveryTest, AnEventTypeNotInEventTypesIsRefused) {
  Discovery d(DiscoveryOptions{});
  Discovery::Update u = Handle1(d, "homeassistant/event/doorbell/press/config",
                                R"({"stat_t":"doorbell/event","evt_typ":["press","hold"],)"
                                R"("uniq_id":"bell"})");
  ASSERT_TRUE(u.entity && u.entity->mapped()) << u.entity->message;
  EXPECT_EQ(u.entity->event_types, (std::vector<std::string>{"press", "hold"}));
  EXPECT_EQ(Show(d.Map("doorbell/event", R"({"event_type":"hold"})", kNow)),
            "doorbell/event/event_type=\"hold\"(s);");
  Discovery::Mapped m = d.Map("doorbell/event", R"({"event_type":"ring"})", kNow);
  EXPECT_EQ(Show(m), "!unknown_event_type;");
  ASSERT_EQ(m.result.refusals.size(), 1u);
  EXPECT_NE(m.result.refusals[0].message.find("'ring' is not one of the entity's event_types "
                                              "(press, hold)"),
            std::string::npos)
      << m.result.refusals[0].message;
  // Exactly: case matters, as in Python's `in`.
  EXPECT_EQ(Show(d.Map("doorbell/event", R"({"event_type":"Press"})", kNow)),
            "!unknown_event_type;");
  // Through zigbee2mqtt's template: recall_1 is `recall`, not listed.
  const nlohmann::json config = {{"state_topic", "zigbee2mqtt/hue_tap"},
                                 {"event_types", {"press", "hold"}},
                                 {"value_template", Zigbee2mqttEventTemplate()}};
  ASSERT_TRUE(
      Handle1(d, "homeassistant/event/0x0017880109abcdef/action/config", config.dump()).entity);
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/hue_tap", R"({"action":"recall_1"})", kNow)),
            "!unknown_event_type;");
  EXPECT_EQ(Show(d.Map("zigbee2mqtt/hue_tap", R"({"action":"button_1_press"})", kNow)),
            "zigbee2mqtt/hue_tap/event_type=\"press\"(s);");

  for (const char* types : {"", R"("event_types":[],)", R"("event_types":[1],)"}) {
    const DiscoveredEntity e = Ha("homeassistant/event/doorbell/x/config",
                                  std::string("{") + types + R"("state_topic":"doorbell/event"})");
    EXPECT_EQ(e.reason, "bad_option") << types;
    EXPECT_NE(e.message.find("without event_types"), std::string::npos) << e.message;
  }
  // One text is a list of one (cv.ensure_list).
  EXPECT_TRUE(Ha("homeassistant/event/doorbell/x/config",
                 R"({"event_types":"press","state_topic":"doorbell/event"})")
                  .mapped());
}

}  // namespace
}  // namespace komoku::bridge

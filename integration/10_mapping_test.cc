// 10: topic mapping against a real Mosquitto. The device examples of
// docs/mapping.md (zigbee2mqtt, Tasmota, Shelly, ESPHome) become typed keys
// through the example rules of config/komoku.yaml, read from that file;
// a bad payload on a mapped topic is refused and counted per rule and reason
// while the next good one is stored; retained messages seen again when
// Komoku resubscribes after a restart are not stored twice.
#include <gtest/gtest.h>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

// The example rules of config/komoku.yaml, as shipped (ExampleMappings:
// no copy here that could drift from them), plus one rule whose keys keep
// every repeat (same_value_resolution: 0), so that only the retained check
// can keep a replayed retained message out.
std::string Rules() {
  return ExampleMappings() + R"(  - name: every_repeat
    topic: meter/+
    key: "meter/{1}"
    type: numeric
    same_value_resolution: 0
)";
}

class MappingTest : public KomokuTest {
 protected:
  std::string ExtraConfig() const override { return Rules(); }
};

TEST_F(MappingTest, DeviceExamplesBecomeTypedKeys) {
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor",
                 R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})");
  mqtt_->Publish("zigbee2mqtt/front_door", R"({"contact":false,"battery":100})");
  mqtt_->Publish("zigbee2mqtt/front_door/availability", R"({"state":"online"})");
  mqtt_->Publish("zigbee2mqtt/bridge/state", "online");
  mqtt_->Publish(
      "tele/plug1/SENSOR",
      R"({"Time":"2026-11-20T10:00:00","ENERGY":{"Total":12.345,"Power":57,"Voltage":231}})");
  mqtt_->Publish("stat/plug1/POWER", "ON");
  mqtt_->Publish("tele/plug1/LWT", "Online");
  mqtt_->Publish("shellies/shelly1-ABC/relay/0", "on");
  mqtt_->Publish("shellies/shellyht-XYZ/sensor/temperature", "21.5");
  mqtt_->Publish("livingroom/sensor/temperature/state", "21.50");
  mqtt_->Publish("livingroom/binary_sensor/motion/state", "ON");
  mqtt_->Publish("livingroom/status", "online");
  mqtt_->Publish("homie/weather/$state", "alert");  // Homie 4: not ready

  struct Expected {
    const char* key;
    nlohmann::json value;
    const char* type;
  };
  const std::vector<Expected> expected = {
      {"kitchen_sensor/temperature", 21.43, "numeric"},
      {"kitchen_sensor/humidity", 48.1, "numeric"},
      {"kitchen_sensor/battery", 97, "numeric"},
      {"front_door/contact", true, "boolean"},  // true = open
      {"front_door/battery", 100, "numeric"},
      {"front_door/available", true, "boolean"},
      {"plug1/energy_total", 12.345, "counter"},
      {"plug1/power", 57, "numeric"},
      {"plug1/voltage", 231, "numeric"},
      {"plug1/POWER", true, "boolean"},
      {"plug1/online", true, "boolean"},
      {"shelly1-ABC/relay/0", true, "boolean"},
      {"shellyht-XYZ/temperature", 21.5, "numeric"},
      {"livingroom/temperature", 21.5, "numeric"},
      {"livingroom/motion", true, "boolean"},
      {"livingroom/online", true, "boolean"},
      {"weather/online", false, "boolean"},
  };
  for (const Expected& e : expected) {
    ASSERT_TRUE(WaitForValue(e.key, e.value)) << e.key << ": " << Value(e.key).dump();
    EXPECT_EQ(Value(e.key)["type"], e.type) << e.key;
  }
  // Tasmota's Time field is the change's time.
  EXPECT_DOUBLE_EQ(Value("plug1/power")["time"].get<double>(), 1795168800.0);
  auto keys = komoku_->Get("/api/v1/keys").Json()["keys"];
  EXPECT_EQ(keys.size(), expected.size())
      << "linkquality and bridge topics are not keys: " << keys.dump();
  // Komoku's own komoku/status matches +/status but is never mapped.
  EXPECT_EQ(Value("komoku/online"), nlohmann::json());
}

TEST_F(MappingTest, BadPayloadIsRefusedAndCountedAndTheNextIsStored) {
  // The first rule that reads the payload (z2m_action, which goes on to the
  // zigbee2mqtt rule) refuses it.
  const std::string counter =
      "komoku_mapping_refused_total{rule=\"z2m_action\",reason=\"bad_json\"}";
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":21.0,"humidity":50})");
  ASSERT_TRUE(WaitForValue("kitchen_sensor/humidity", 50));
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":22.0,"humidity":)");
  EXPECT_TRUE(WaitFor([&] { return komoku_->Metric(counter) == 1; }));
  EXPECT_NE(komoku_->Output().find("mapping rule z2m_action refused 'zigbee2mqtt/kitchen_sensor' "
                                   "(bad_json)"),
            std::string::npos);
  // A value its key cannot hold (the Shelly rule guesses the type: the
  // first value made the key numeric) is refused, and counted for the rule.
  mqtt_->Publish("shellies/shellyht-XYZ/sensor/temperature", "21.5");
  ASSERT_TRUE(WaitForValue("shellyht-XYZ/temperature", 21.5));
  mqtt_->Publish("shellies/shellyht-XYZ/sensor/temperature", "warm");
  EXPECT_TRUE(WaitFor([&] {
    return komoku_->Metric(
               "komoku_mapping_refused_total{rule=\"shelly_sensor\",reason=\"wrong_type\"}") == 1;
  })) << komoku_->Output();
  mqtt_->Publish("zigbee2mqtt/kitchen_sensor", R"({"temperature":23.5,"humidity":51})");
  ASSERT_TRUE(WaitForValue("kitchen_sensor/temperature", 23.5));
  // The value is current at once; history shows it once committed.
  EXPECT_TRUE(WaitFor([&] { return HistorySize("kitchen_sensor/humidity") == 2; }));
  EXPECT_EQ(HistorySize("kitchen_sensor/temperature"), 2u);
  EXPECT_EQ(HistorySize("kitchen_sensor/humidity"), 2u);
  EXPECT_EQ(Value("shellyht-XYZ/temperature")["value"], 21.5);
  EXPECT_EQ(HistorySize("shellyht-XYZ/temperature"), 1u);
  EXPECT_TRUE(komoku_->process()->Running());
}

TEST_F(MappingTest, RetainedMessagesAreNotStoredAgainAfterARestart) {
  mqtt_->Publish("meter/water", "42", 1, /*retained=*/true);
  mqtt_->Publish("tele/plug1/LWT", "Online", 1, /*retained=*/true);
  ASSERT_TRUE(WaitForValue("meter/water", 42));
  ASSERT_TRUE(WaitForValue("plug1/online", true));
  // A repeat that is not retained is stored: the rule keeps every repeat.
  mqtt_->Publish("meter/water", "42");
  ASSERT_TRUE(WaitFor([&] { return HistorySize("meter/water") == 2; }));

  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  // The broker sends the retained messages again on resubscribe; wait until
  // Komoku has seen them, then make sure they added nothing.
  EXPECT_TRUE(WaitFor([&] {
    return komoku_->Metric("komoku_mapping_retained_skipped_total") >= 2;
  })) << komoku_->Output();
  EXPECT_EQ(HistorySize("meter/water"), 2u);
  EXPECT_EQ(HistorySize("plug1/online"), 1u);

  // A retained message with a new value is stored.
  mqtt_->Publish("meter/water", "43", 1, /*retained=*/true);
  ASSERT_TRUE(WaitForValue("meter/water", 43));
  EXPECT_TRUE(WaitFor([&] { return HistorySize("meter/water") == 3; }));
  EXPECT_EQ(HistorySize("meter/water"), 3u);
}

TEST_F(MappingTest, AChangeItsKeyRefusesRefusesTheWholeMessage) {
  // The humidity key holds booleans: a number for it refuses the message
  // (Store::PutAll, all or none), so its temperature is not stored either.
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=hall_sensor/humidity", "true").status, 201);
  mqtt_->Publish("zigbee2mqtt/hall_sensor", R"({"temperature":19.5,"humidity":50})");
  EXPECT_TRUE(WaitFor([&] {
    return komoku_->Metric(
               "komoku_mapping_refused_total{rule=\"zigbee2mqtt\",reason=\"wrong_type\"}") == 1;
  })) << komoku_->Output();
  // The store refused it, so it counts as every refused change does.
  EXPECT_EQ(komoku_->Metric("komoku_refused_total{reason=\"wrong_type\"}"), 1);
  EXPECT_NE(komoku_->Output().find("key 'hall_sensor/humidity' (boolean)"), std::string::npos)
      << komoku_->Output();
  EXPECT_EQ(Value("hall_sensor/temperature"), nlohmann::json());
  EXPECT_EQ(Value("hall_sensor/humidity")["value"], true);
  // The next message that fits is stored whole.
  mqtt_->Publish("zigbee2mqtt/hall_sensor", R"({"temperature":20.0,"humidity":false})");
  ASSERT_TRUE(WaitForValue("hall_sensor/temperature", 20.0));
  EXPECT_TRUE(WaitForValue("hall_sensor/humidity", false));
  EXPECT_TRUE(WaitFor([&] { return HistorySize("hall_sensor/temperature") == 1; }));
}

}  // namespace
}  // namespace komoku::testing

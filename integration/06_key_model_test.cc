// 06: the key model (issue 3) from outside: define over HTTP, MQTT and the
// config's keys: section; type changes under data; allowed string values;
// same_value_resolution; atomic increment/decrement from many clients;
// delete with confirmation (history and retained state gone); the newest
// time wins the current value.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class KeyModelServiceTest : public KomokuTest {
 protected:
  // A Komoku JSON query over HTTP; the whole answer.
  json Query(const json &request) {
    auto r = komoku_->Post("/api/v1/komoku", request.dump());
    json j = r.Json();
    if (j.is_discarded()) ADD_FAILURE() << request.dump() << " -> " << r.status << " " << r.body;
    return j;
  }
  // Each key's definition as the `keys` operation answers it.
  std::map<std::string, json> Definitions() {
    std::map<std::string, json> out;
    const json answer = Query(json::parse(R"({"keys": {}})"));
    for (const json &k : answer["result"]) out[k["key"]] = k;
    return out;
  }
  json Rows(const std::string &key) {
    return komoku_->Get("/api/v1/history?key=" + key + "&from=0").Json()["rows"];
  }
};

TEST_F(KeyModelServiceTest, DefineOverHttpWithKeyParameterOrKeyedBody) {
  auto r = komoku_->Post("/api/v1/define?key=boiler/heartbeat",
                         R"({"type": "uptime", "opts": {"max_time": 30}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["result"]["boiler/heartbeat"]["type"], "uptime") << r.body;
  EXPECT_DOUBLE_EQ(r.Json()["result"]["boiler/heartbeat"]["opts"]["max_time"].get<double>(), 30);

  r = komoku_->Post("/api/v1/define",
                    R"({"alarm/state": {"type": "string",
                                        "opts": {"values": ["disarmed", "armed"]}},
                        "energy": {"type": "counter", "opts": {"same_value_resolution": 0}}})");
  ASSERT_EQ(r.status, 200) << r.body;

  auto defs = Definitions();
  ASSERT_EQ(defs.size(), 3u);
  EXPECT_EQ(defs["boiler/heartbeat"]["type"], "uptime");
  EXPECT_DOUBLE_EQ(defs["boiler/heartbeat"]["opts"]["max_time"].get<double>(), 30);
  EXPECT_EQ(defs["alarm/state"]["type"], "string");
  EXPECT_EQ(defs["alarm/state"]["opts"]["values"], json({"disarmed", "armed"}));
  EXPECT_EQ(defs["energy"]["type"], "counter");
  EXPECT_DOUBLE_EQ(defs["energy"]["opts"]["same_value_resolution"].get<double>(), 0);
  // Defined keys exist without a value.
  auto v = komoku_->Get("/api/v1/value?key=energy");
  ASSERT_EQ(v.status, 200) << v.body;
  EXPECT_TRUE(v.Json()["value"].is_null()) << v.body;

  // Bad definitions are 400s that say what was wrong, and change nothing.
  struct Case {
    const char *path;
    const char *body;
    const char *code;
  } cases[] = {
      {"/api/v1/define?key=x", R"({"type": "colour"})", "bad_request"},
      {"/api/v1/define?key=x", R"({"type": "numeric", "opts": {"max_time": 3}})", "bad_option"},
      {"/api/v1/define?key=x", R"({"type": "numeric", "opts": {"nope": 1}})", "bad_option"},
      {"/api/v1/define?key=x", R"({"opts": {}})", "unknown_key"},
      {"/api/v1/define?key=x", "not json", "bad_json"},
  };
  for (const Case &c : cases) {
    auto bad = komoku_->Post(c.path, c.body);
    EXPECT_EQ(bad.status, c.code == std::string("unknown_key") ? 404 : 400)
        << c.body << " -> " << bad.body;
    EXPECT_EQ(bad.Json()["error"]["code"], c.code) << c.body << " -> " << bad.body;
  }
  EXPECT_EQ(Definitions().size(), 3u);
}

TEST_F(KeyModelServiceTest, DefineOverMqtt) {
  mqtt_->Publish("komoku/api/request",
                 R"({"define": {"boiler": {"type": "uptime", "opts": {"max_time": 30}}}})");
  ASSERT_TRUE(WaitFor([&] { return Definitions().count("boiler") > 0; }));
  auto def = Definitions()["boiler"];
  EXPECT_EQ(def["type"], "uptime");
  EXPECT_DOUBLE_EQ(def["opts"]["max_time"].get<double>(), 30);
  EXPECT_DOUBLE_EQ(def["opts"]["same_value_resolution"].get<double>(), 60);
  // An update keeps the options it does not name.
  mqtt_->Publish("komoku/api/request",
                 R"({"define": {"boiler": {"opts": {"same_value_resolution": 5}}}})");
  ASSERT_TRUE(WaitFor(
      [&] { return Definitions()["boiler"]["opts"]["same_value_resolution"].get<double>() == 5; }));
  def = Definitions()["boiler"];
  EXPECT_EQ(def["type"], "uptime");
  EXPECT_DOUBLE_EQ(def["opts"]["max_time"].get<double>(), 30);
}

class ConfigKeysTest : public KeyModelServiceTest {
 protected:
  std::string ExtraConfig() const override {
    return "keys:\n"
           "  heat/heartbeat:\n"
           "    type: uptime\n"
           "    max_time: 30\n"
           "  alarm/state:\n"
           "    type: string\n"
           "    values: [disarmed, armed_home, armed_away]\n"
           "  power/meter:\n"
           "    type: counter\n"
           "    same_value_resolution: 0\n";
  }
};

TEST_F(ConfigKeysTest, KeysSectionDefinesAtStartAndValuesAreEnforced) {
  auto defs = Definitions();
  ASSERT_EQ(defs.size(), 3u) << json(defs).dump();
  EXPECT_EQ(defs["heat/heartbeat"]["type"], "uptime");
  EXPECT_DOUBLE_EQ(defs["heat/heartbeat"]["opts"]["max_time"].get<double>(), 30);
  EXPECT_EQ(defs["alarm/state"]["type"], "string");
  EXPECT_EQ(defs["alarm/state"]["opts"]["values"], json({"disarmed", "armed_home", "armed_away"}));
  EXPECT_EQ(defs["power/meter"]["type"], "counter");
  EXPECT_DOUBLE_EQ(defs["power/meter"]["opts"]["same_value_resolution"].get<double>(), 0);

  // The type comes from the config, not from the first value.
  auto r = komoku_->Put("/api/v1/value?key=heat/heartbeat", "on");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["type"], "uptime");
  EXPECT_EQ(r.Json()["value"], true);

  r = komoku_->Put("/api/v1/value?key=alarm/state", "armed_home");
  ASSERT_EQ(r.status, 200) << r.body;
  r = komoku_->Put("/api/v1/value?key=alarm/state", "party");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.Json()["error"]["code"], "value_not_allowed") << r.body;
  EXPECT_NE(r.body.find("armed_away"), std::string::npos) << "names the allowed values: " << r.body;
  long long refused_before = komoku_->Metric("komoku_refused_total{reason=\"value_not_allowed\"}");
  EXPECT_EQ(refused_before, 1);
  mqtt_->Publish("komoku/set/alarm/state", "burgled");
  mqtt_->Publish("komoku/set/alarm/state", "armed_away");
  ASSERT_TRUE(WaitForHistory("alarm/state", 2));
  auto rows = Rows("alarm/state");
  ASSERT_EQ(rows.size(), 2u) << rows.dump();
  EXPECT_EQ(rows[0][1], "armed_home");
  EXPECT_EQ(rows[1][1], "armed_away");
  EXPECT_EQ(komoku_->Metric("komoku_refused_total{reason=\"value_not_allowed\"}"), 2);

  // same_value_resolution: 0 from the config: every repeat is stored.
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(komoku_->Put("/api/v1/value?key=power/meter", "7").status, 200);
  }
  EXPECT_EQ(Rows("power/meter").size(), 3u) << Rows("power/meter").dump();
}

TEST_F(KeyModelServiceTest, TypeChangeUnderDataIsRefusedExceptBetweenSameValues) {
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=temp", "21.5").status, 201);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=door", "true").status, 201);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=radio", "Jazz FM").status, 201);

  struct Case {
    const char *key;
    const char *type;
    bool allowed;
  } cases[] = {
      {"temp", "string", false},   {"temp", "boolean", false},  {"temp", "uptime", false},
      {"temp", "counter", true},   {"temp", "numeric", true},   {"door", "numeric", false},
      {"door", "string", false},   {"door", "uptime", true},    {"door", "boolean", true},
      {"radio", "numeric", false}, {"radio", "boolean", false},
  };
  long long refused = 0;
  for (const Case &c : cases) {
    auto before = Definitions()[c.key]["type"];
    auto r =
        komoku_->Post(std::string("/api/v1/define?key=") + c.key, json{{"type", c.type}}.dump());
    std::string what = std::string(c.key) + " -> " + c.type + ": " + r.body;
    if (c.allowed) {
      EXPECT_EQ(r.status, 200) << what;
      EXPECT_EQ(Definitions()[c.key]["type"], c.type) << what;
    } else {
      ++refused;
      EXPECT_EQ(r.status, 400) << what;
      EXPECT_EQ(r.Json()["error"]["code"], "type_change") << what;
      EXPECT_EQ(Definitions()[c.key]["type"], before) << "unchanged after " << what;
    }
  }
  EXPECT_EQ(komoku_->Metric("komoku_refused_total{reason=\"type_change\"}"), refused);

  // The same over MQTT: the key keeps its type.
  mqtt_->Publish("komoku/api/request", R"({"define": {"temp": {"type": "string"}}})");
  ASSERT_TRUE(WaitFor([&] {
    return komoku_->Metric("komoku_refused_total{reason=\"type_change\"}") == refused + 1;
  }));
  EXPECT_EQ(Definitions()["temp"]["type"], "numeric");

  // Without data any type goes.
  ASSERT_EQ(komoku_->Post("/api/v1/define?key=empty", R"({"type": "numeric"})").status, 200);
  auto r = komoku_->Post("/api/v1/define?key=empty", R"({"type": "string"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Definitions()["empty"]["type"], "string");
  // The values still read as before.
  auto door = komoku_->Get("/api/v1/value?key=door").Json();
  EXPECT_EQ(door["value"], true);
  EXPECT_DOUBLE_EQ(komoku_->Get("/api/v1/value?key=temp").Json()["value"].get<double>(), 21.5);
}

TEST_F(KeyModelServiceTest, SameValueResolution) {
  // Default 60 s: repeats are accepted but not stored.
  for (int i = 0; i < 3; ++i) {
    auto r = komoku_->Put("/api/v1/value?key=lamp", "true");
    ASSERT_LT(r.status, 300) << r.body;
  }
  for (int i = 0; i < 3; ++i) mqtt_->Publish("komoku/set/lamp", "ON");
  mqtt_->Publish("komoku/set/lamp", "false");
  ASSERT_TRUE(WaitForHistory("lamp", 2));
  mqtt_->Publish("komoku/set/lamp", "true");  // a change back is stored
  ASSERT_TRUE(WaitForHistory("lamp", 3));
  auto rows = Rows("lamp");
  ASSERT_EQ(rows.size(), 3u) << rows.dump();
  EXPECT_EQ(rows[0][1], true);
  EXPECT_EQ(rows[1][1], false);
  EXPECT_EQ(rows[2][1], true);
  EXPECT_EQ(komoku_->Metric("komoku_changes_repeated_total"), 5);

  // same_value_resolution 0: every repeat is stored.
  ASSERT_EQ(komoku_
                ->Post("/api/v1/define?key=meter",
                       R"({"type": "numeric", "opts": {"same_value_resolution": 0}})")
                .status,
            200);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(komoku_->Put("/api/v1/value?key=meter", "5").status, 200);
  for (int i = 0; i < 2; ++i) mqtt_->Publish("komoku/set/meter", "5");
  ASSERT_TRUE(WaitForHistory("meter", 5));
  EXPECT_EQ(Rows("meter").size(), 5u) << Rows("meter").dump();

  // A small resolution: a repeat after it has passed is stored again.
  ASSERT_EQ(komoku_
                ->Post("/api/v1/define?key=fan",
                       R"({"type": "string", "opts": {"same_value_resolution": 0.3}})")
                .status,
            200);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=fan", "low").status, 200);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=fan", "low").status, 200);
  EXPECT_EQ(Rows("fan").size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=fan", "low").status, 200);
  EXPECT_EQ(Rows("fan").size(), 2u) << Rows("fan").dump();
}

TEST_F(KeyModelServiceTest, IncrementAndDecrementAreAtomicUnderConcurrentClients) {
  constexpr int kClients = 4;
  constexpr int kEach = 50;
  std::vector<std::thread> threads;
  std::atomic<int> http_failures{0};
  for (int c = 0; c < kClients; ++c) {
    // MQTT: +1 each (the default step), every other one as increment of 3
    // and decrement of 2.
    threads.emplace_back([&, c] {
      MqttClient client(broker_->url(), "it-incr-" + std::to_string(c));
      for (int i = 0; i < kEach; ++i) {
        if (i % 2 == 0) {
          client.Publish("komoku/api/request", R"({"increment": {"key": "visits"}})");
        } else {
          client.Publish("komoku/api/request", R"({"increment": {"key": "visits", "step": 3}})");
          client.Publish("komoku/api/request", R"({"decrement": {"key": "visits", "step": 2}})");
        }
      }
    });
    // HTTP: +2 then -1.
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        const char *body = i % 2 == 0 ? R"({"increment": {"key": "visits", "step": 2}})"
                                      : R"({"decrement": {"key": "visits"}})";
        auto r = komoku_->Post("/api/v1/komoku", body);
        if (r.status != 200) {
          ++http_failures;
          ADD_FAILURE() << r.status << " " << r.body;
        }
      }
    });
  }
  for (auto &t : threads) t.join();
  EXPECT_EQ(http_failures, 0);
  // MQTT: 4 * 50 * 1; HTTP: 4 * 25 * (2 - 1).
  const double expected = kClients * kEach + kClients * (kEach / 2);
  const int changes = kClients * (kEach + kEach / 2) + kClients * kEach;
  ASSERT_TRUE(WaitForHistory("visits", changes, std::chrono::milliseconds(30000)))
      << Rows("visits").size();
  auto v = komoku_->Get("/api/v1/value?key=visits").Json();
  EXPECT_EQ(v["type"], "counter");
  EXPECT_DOUBLE_EQ(v["value"].get<double>(), expected) << v.dump();
  // Every step is its own stored change: nothing lost, nothing merged.
  EXPECT_EQ(Rows("visits").size(), static_cast<size_t>(changes));
}

TEST_F(KeyModelServiceTest, IncrementOfAnotherTypeIsRefused) {
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=label", "hello").status, 201);
  auto r = komoku_->Post("/api/v1/komoku", R"({"increment": {"key": "label"}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.Json()["error"]["code"], "wrong_type") << r.body;
}

TEST_F(KeyModelServiceTest, DeleteNeedsConfirmationAndRemovesHistoryAndRetainedState) {
  MqttClient watcher(broker_->url(), "it-watcher");
  watcher.Subscribe("komoku/state/#");
  for (const char *v : {"1", "2", "3"}) {
    ASSERT_LT(komoku_->Put("/api/v1/value?key=old/sensor", v).status, 300);
  }
  ASSERT_LT(komoku_->Put("/api/v1/value?key=other", "9").status, 300);
  ASSERT_EQ(Rows("old/sensor").size(), 3u);

  for (const char *path : {"/api/v1/key?key=old/sensor", "/api/v1/key?key=old/sensor&confirm=no",
                           "/api/v1/key?key=old/sensor&confirm="}) {
    auto r = komoku_->Delete(path);
    EXPECT_EQ(r.status, 400) << path << " -> " << r.body;
    EXPECT_EQ(r.Json()["error"]["code"], "not_confirmed") << path << " -> " << r.body;
  }
  EXPECT_EQ(Rows("old/sensor").size(), 3u) << "not deleted without confirmation";
  // Over the API too: confirm must be true.
  auto api = komoku_->Post("/api/v1/komoku", R"({"delete": {"key": "old/sensor"}})");
  EXPECT_EQ(api.status, 400) << api.body;
  EXPECT_EQ(api.Json()["error"]["code"], "not_confirmed") << api.body;

  auto r = komoku_->Delete("/api/v1/key?key=old/sensor&confirm=yes");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=old/sensor").status, 404);
  EXPECT_EQ(komoku_->Get("/api/v1/history?key=old/sensor&from=0").status, 404);
  r = komoku_->Delete("/api/v1/key?key=old/sensor&confirm=yes");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.Json()["error"]["code"], "unknown_key") << r.body;

  // The retained state is cleared (an empty retained message)...
  ASSERT_TRUE(WaitFor([&] {
    for (const auto &[topic, payload] : watcher.Received()) {
      if (topic == "komoku/state/old/sensor" && payload.empty()) return true;
    }
    return false;
  })) << "no empty retained message clears komoku/state/old/sensor";
  // ...so a late subscriber gets the other key's state but nothing for it.
  MqttClient late(broker_->url(), "it-late");
  late.Subscribe("komoku/state/#");
  ASSERT_TRUE(WaitFor([&] {
    for (const auto &[topic, payload] : late.Received()) {
      if (topic == "komoku/state/other") return true;
    }
    return false;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (const auto &[topic, payload] : late.Received()) {
    EXPECT_NE(topic, "komoku/state/old/sensor") << payload;
  }

  // A re-created key starts empty: no old history, no old previous value.
  r = komoku_->Put("/api/v1/value?key=old/sensor", "text now");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.Json()["type"], "string") << "the type is guessed anew";
  auto rows = Rows("old/sensor");
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0][1], "text now");
  EXPECT_TRUE(komoku_->Get("/api/v1/value?key=old/sensor").Json()["previous"].is_null());
  ASSERT_TRUE(WaitFor([&] {
    for (const auto &[topic, payload] : watcher.Received()) {
      if (topic != "komoku/state/old/sensor" || payload.empty()) continue;
      json s = json::parse(payload, nullptr, false);
      if (s["value"] == "text now") return s["previous"].is_null();
    }
    return false;
  }));
}

TEST_F(KeyModelServiceTest, NewestTimeWinsTheCurrentValueLateChangesGoToHistoryOnly) {
  MqttClient watcher(broker_->url(), "it-watcher");
  watcher.Subscribe("komoku/state/garage/temp");
  const double now = NowSeconds();
  auto r =
      komoku_->Put("/api/v1/value?key=garage/temp", json{{"value", 10}, {"time", now - 60}}.dump());
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_TRUE(r.Json()["current"].get<bool>());
  // A late change over HTTP and one over MQTT, both older than the current.
  r = komoku_->Put("/api/v1/value?key=garage/temp",
                   json{{"value", 5}, {"time", now - 3600}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.Json()["current"].get<bool>()) << r.body;
  mqtt_->Publish("komoku/set/garage/temp", json{{"value", 6}, {"time", now - 1800}}.dump());
  ASSERT_TRUE(WaitForHistory("garage/temp", 3));
  // A newer one wins.
  mqtt_->Publish("komoku/set/garage/temp", json{{"value", 12}, {"time", now - 30}}.dump());
  ASSERT_TRUE(WaitForHistory("garage/temp", 4));

  auto v = komoku_->Get("/api/v1/value?key=garage/temp").Json();
  EXPECT_DOUBLE_EQ(v["value"].get<double>(), 12) << v.dump();
  EXPECT_NEAR(v["time"].get<double>(), now - 30, 0.002);
  EXPECT_DOUBLE_EQ(v["previous"]["value"].get<double>(), 10) << v.dump();
  auto rows = Rows("garage/temp");
  ASSERT_EQ(rows.size(), 4u);
  std::vector<double> values;
  for (const auto &row : rows) values.push_back(row[1].get<double>());
  EXPECT_EQ(values, (std::vector<double>{5, 6, 10, 12})) << "history in time order";

  // State was published for 10 and 12 only, never for a late change.
  ASSERT_TRUE(WaitFor([&] {
    for (const auto &[topic, payload] : watcher.Received()) {
      if (json::parse(payload, nullptr, false)["value"] == 12) return true;
    }
    return false;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<double> published;
  for (const auto &[topic, payload] : watcher.Received()) {
    published.push_back(json::parse(payload)["value"].get<double>());
  }
  EXPECT_EQ(published, (std::vector<double>{10, 12}));
  MqttClient late(broker_->url(), "it-late");
  late.Subscribe("komoku/state/garage/temp");
  ASSERT_TRUE(WaitFor([&] { return !late.Received().empty(); }));
  json retained = json::parse(late.Received().back().second);
  EXPECT_DOUBLE_EQ(retained["value"].get<double>(), 12);
  EXPECT_DOUBLE_EQ(retained["previous"].get<double>(), 10);
}

}  // namespace
}  // namespace komoku::testing

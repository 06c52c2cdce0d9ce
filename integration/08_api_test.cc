// 08: Komoku JSON queries over MQTT (komoku/api/request; answers on the MQTT
// 5 response topic with the correlation data, or on komoku/api/response for
// MQTT 3.1.1) and over HTTP (POST /api/v1/komoku): every operation once, and
// the refusals with their codes and counters.
#include <gtest/gtest.h>

#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Refused(const std::string &reason) {
  return "komoku_refused_total{reason=\"" + reason + "\"}";
}

class ApiServiceTest : public KomokuTest {
 protected:
  void SetUp() override {
    KomokuTest::SetUp();
    if (HasFatalFailure()) return;
    mqtt5_ = std::make_unique<Mqtt5Client>(broker_->url(), "it-api-v5");
    mqtt5_->Subscribe(kReplyTopic);
  }
  void TearDown() override {
    mqtt5_.reset();
    KomokuTest::TearDown();
  }

  // A request over MQTT 5; the answer that came back with its correlation
  // data (a discarded json on timeout).
  json AskMqtt(const std::string &request) {
    const std::string correlation = "corr-" + std::to_string(++requests_);
    mqtt5_->Publish("komoku/api/request", request, kReplyTopic, correlation);
    auto reply = mqtt5_->WaitForMessage([&](const Mqtt5Client::Message &m) {
      return m.topic == kReplyTopic && m.correlation_data == correlation;
    });
    if (!reply) {
      ADD_FAILURE() << "no answer to " << request;
      return json(json::value_t::discarded);
    }
    return json::parse(reply->payload, nullptr, false);
  }
  json AskMqtt(const char *request) { return AskMqtt(std::string(request)); }
  json AskMqtt(const json &request) { return AskMqtt(request.dump()); }

  // The same over HTTP: status and answer.
  std::pair<int, json> AskHttp(const std::string &request) {
    auto r = komoku_->Post("/api/v1/komoku", request);
    return {r.status, r.Json()};
  }

  static constexpr const char *kReplyTopic = "it/replies/api-test";
  std::unique_ptr<Mqtt5Client> mqtt5_;
  int requests_ = 0;
};

TEST_F(ApiServiceTest, Mqtt5AnswerGoesToTheResponseTopicWithTheCorrelationData) {
  mqtt5_->Subscribe("komoku/api/response");
  // Correlation data is binary: a zero byte must come back too.
  const std::string correlation("id\0\x01\xff", 5);
  mqtt5_->Publish("komoku/api/request", R"({"ping": {}, "query_id": 42})", kReplyTopic,
                  correlation);
  auto reply =
      mqtt5_->WaitForMessage([](const Mqtt5Client::Message &m) { return m.topic == kReplyTopic; });
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->has_correlation_data);
  EXPECT_EQ(reply->correlation_data, correlation);
  json answer = json::parse(reply->payload);
  EXPECT_EQ(answer["query_id"], 42);
  EXPECT_EQ(answer["result"], "pong");

  // A response topic without correlation data: the answer has none.
  mqtt5_->Subscribe("it/replies/other");
  mqtt5_->Publish("komoku/api/request", R"({"ping": null, "query_id": "third"})",
                  "it/replies/other");
  reply = mqtt5_->WaitForMessage([](const Mqtt5Client::Message &m) {
    return m.topic == "it/replies/other" && m.payload.find("third") != std::string::npos;
  });
  ASSERT_TRUE(reply);
  EXPECT_FALSE(reply->has_correlation_data);
  EXPECT_EQ(json::parse(reply->payload)["query_id"], "third");

  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (const auto &m : mqtt5_->Received()) {
    EXPECT_NE(m.topic, "komoku/api/response") << "answered twice: " << m.payload;
  }
}

TEST_F(ApiServiceTest, Mqtt311AnswerGoesToApiResponse) {
  mqtt_->Subscribe("komoku/api/response");
  mqtt_->Publish("komoku/api/request", R"({"put": {"key": "x", "value": 1}, "query_id": "q1"})");
  mqtt_->Publish("komoku/api/request", R"({"get": {"key": "x"}, "query_id": "q2"})");
  ASSERT_TRUE(WaitFor([&] { return mqtt_->Received().size() >= 2; }));
  auto received = mqtt_->Received();
  ASSERT_EQ(received.size(), 2u);
  json first = json::parse(received[0].second);
  json second = json::parse(received[1].second);
  EXPECT_EQ(first["query_id"], "q1");
  EXPECT_EQ(first["result"]["stored"], true) << first.dump();
  EXPECT_EQ(second["query_id"], "q2");
  EXPECT_EQ(second["result"], 1) << second.dump();
}

TEST_F(ApiServiceTest, EveryOperationOverMqtt) {
  const double now = NowSeconds();
  // put, with times in the past.
  json a =
      AskMqtt(json{{"put", {{"key", "t"}, {"value", 20}, {"time", now - 100}}}, {"query_id", 1}});
  EXPECT_EQ(a["query_id"], 1);
  EXPECT_EQ(a["result"]["created"], true) << a.dump();
  EXPECT_EQ(a["result"]["type"], "numeric") << a.dump();
  EXPECT_EQ(a["result"]["stored"], true) << a.dump();
  a = AskMqtt(json{{"put", {{"key", "t"}, {"value", 21.5}, {"time", now - 50}}}});
  EXPECT_EQ(a["result"]["current"], true) << a.dump();
  a = AskMqtt(json{{"put", {{"key", "t"}, {"value", 22}, {"time", "-10s"}}}});
  EXPECT_EQ(a["result"]["current"], true) << a.dump();
  const double t22 = a["result"]["time"].get<double>();
  EXPECT_NEAR(t22, now - 10, 2);

  a = AskMqtt(R"({"get": {"key": "t"}, "query_id": "g"})");
  EXPECT_EQ(a["query_id"], "g");
  EXPECT_DOUBLE_EQ(a["result"].get<double>(), 22) << a.dump();
  a = AskMqtt(R"({"last": {"key": "t"}})");
  EXPECT_DOUBLE_EQ(a["result"]["value"].get<double>(), 22) << a.dump();
  EXPECT_DOUBLE_EQ(a["result"]["time"].get<double>(), t22) << a.dump();
  a = AskMqtt(R"({"previous": {"key": "t"}})");
  EXPECT_DOUBLE_EQ(a["result"]["value"].get<double>(), 21.5) << a.dump();
  EXPECT_NEAR(a["result"]["time"].get<double>(), now - 50, 0.002) << a.dump();

  a = AskMqtt(R"({"increment": {"key": "c"}})");
  EXPECT_EQ(a["result"]["type"], "counter") << a.dump();
  EXPECT_DOUBLE_EQ(a["result"]["value"].get<double>(), 1) << a.dump();
  a = AskMqtt(R"({"increment": {"key": "c", "step": 2.5}})");
  EXPECT_DOUBLE_EQ(a["result"]["value"].get<double>(), 3.5) << a.dump();
  a = AskMqtt(R"({"decrement": {"key": "c", "step": 1}})");
  EXPECT_DOUBLE_EQ(a["result"]["value"].get<double>(), 2.5) << a.dump();

  a = AskMqtt(R"({"define": {"hb": {"type": "uptime", "opts": {"max_time": 30}}}})");
  EXPECT_EQ(a["result"]["hb"]["type"], "uptime") << a.dump();
  EXPECT_DOUBLE_EQ(a["result"]["hb"]["opts"]["max_time"].get<double>(), 30) << a.dump();

  a = AskMqtt(R"({"keys": {"values": true}})");
  ASSERT_TRUE(a["result"].is_array()) << a.dump();
  std::map<std::string, json> keys;
  for (const json &k : a["result"]) keys[k["key"]] = k;
  ASSERT_EQ(keys.size(), 3u) << a.dump();
  EXPECT_DOUBLE_EQ(keys["t"]["value"].get<double>(), 22);
  EXPECT_DOUBLE_EQ(keys["t"]["time"].get<double>(), t22);
  EXPECT_DOUBLE_EQ(keys["c"]["value"].get<double>(), 2.5);
  EXPECT_TRUE(keys["hb"]["value"].is_null());
  EXPECT_EQ(keys["hb"]["type"], "uptime");
  a = AskMqtt(R"({"keys": {}})");
  EXPECT_FALSE(a["result"][0].contains("value")) << "values only on request: " << a.dump();

  // fetch: epoch seconds and relative times.
  a = AskMqtt(json{{"fetch", {{"key", "t"}, {"from", now - 1000}, {"to", now}}}});
  ASSERT_EQ(a["result"].size(), 3u) << a.dump();
  EXPECT_NEAR(a["result"][0][0].get<double>(), now - 100, 0.002);
  EXPECT_DOUBLE_EQ(a["result"][0][1].get<double>(), 20);
  EXPECT_DOUBLE_EQ(a["result"][2][1].get<double>(), 22);
  a = AskMqtt(R"({"fetch": {"key": "t", "from": "-1h"}})");
  EXPECT_EQ(a["result"].size(), 3u) << a.dump();
  a = AskMqtt(json{{"fetch", {{"key", "t"}, {"from", "-1h"}, {"to", now - 60}}}});
  EXPECT_EQ(a["result"].size(), 1u) << a.dump();
  a = AskMqtt(json{{"fetch", {{"key", "t"}, {"from", now - 60}}}});
  EXPECT_EQ(a["result"].size(), 2u) << a.dump();

  a = AskMqtt(R"({"sub": {"key": "t"}})");
  EXPECT_EQ(a["result"]["topic"], "komoku/state/t") << a.dump();
  a = AskMqtt(R"({"unsub": {"key": "t"}})");
  EXPECT_TRUE(a.contains("result")) << a.dump();

  a = AskMqtt(R"({"delete": {"key": "c", "confirm": true}})");
  EXPECT_TRUE(a.contains("result")) << a.dump();
  a = AskMqtt(R"({"get": {"key": "c"}})");
  EXPECT_EQ(a["error"]["code"], "unknown_key") << a.dump();

  a = AskMqtt(R"({"ping": {}})");
  EXPECT_EQ(a["result"], "pong") << a.dump();
}

TEST_F(ApiServiceTest, EveryOperationOverHttp) {
  const double now = NowSeconds();
  auto [status, a] = AskHttp(
      json{{"put", {{"key", "t"}, {"value", 20}, {"time", now - 100}}}, {"query_id", 9}}.dump());
  EXPECT_EQ(status, 200) << a.dump();
  EXPECT_EQ(a["query_id"], 9);
  EXPECT_EQ(a["result"]["created"], true) << a.dump();
  std::tie(status, a) = AskHttp(json{{"put", {{"key", "t"}, {"value", 22}}}}.dump());
  EXPECT_EQ(status, 200) << a.dump();
  struct Case {
    const char *request;
    json result;  // compared when not null
  } cases[] = {
      {R"({"get": {"key": "t"}})", 22},
      {R"({"last": {"key": "t"}})", nullptr},
      {R"({"previous": {"key": "t"}})", nullptr},
      {R"({"increment": {"key": "n", "step": 5}})", nullptr},
      {R"({"decrement": {"key": "n", "step": 2}})", nullptr},
      {R"({"get": {"key": "n"}})", 3},
      {R"({"keys": {"values": true}})", nullptr},
      {R"({"define": {"s": {"type": "string", "opts": {"values": ["a", "b"]}}}})", nullptr},
      {R"({"fetch": {"key": "t", "from": "-1h"}})", nullptr},
      {R"({"sub": {"key": "t"}})", nullptr},
      {R"({"delete": {"key": "n", "confirm": true}})", nullptr},
      {R"({"ping": {}})", "pong"},
  };
  for (const Case &c : cases) {
    std::tie(status, a) = AskHttp(c.request);
    EXPECT_EQ(status, 200) << c.request << " -> " << a.dump();
    ASSERT_TRUE(a.contains("result")) << c.request << " -> " << a.dump();
    if (!c.result.is_null()) {
      EXPECT_EQ(a["result"], c.result) << c.request;
    }
  }
  std::tie(status, a) = AskHttp(R"({"previous": {"key": "t"}})");
  EXPECT_DOUBLE_EQ(a["result"]["value"].get<double>(), 20);
  std::tie(status, a) = AskHttp(R"({"fetch": {"key": "t", "from": "-1h"}})");
  EXPECT_EQ(a["result"].size(), 2u) << a.dump();
  std::tie(status, a) = AskHttp(R"({"sub": {"key": "t"}})");
  EXPECT_NE(a["result"].dump().find("/api/v1/stream?key=t"), std::string::npos) << a.dump();
  std::tie(status, a) = AskHttp(R"({"keys": {"values": true}})");
  EXPECT_EQ(a["result"].size(), 2u) << "n deleted, s defined: " << a.dump();
}

// A refusal as each transport answers it.
struct ErrorCase {
  const char *request;
  const char *code;
  int http_status;
};
const ErrorCase kErrors[] = {
    {"{\"get\": {\"key\": ", "bad_json", 400},
    {"[1, 2]", "bad_json", 400},
    {R"({"frobnicate": {"key": "t"}, "query_id": 3})", "unknown_operation", 400},
    {R"({"get": {"key": "missing"}, "query_id": 4})", "unknown_key", 404},
    {R"({"fetch": {"key": "missing"}})", "unknown_key", 404},
    {R"({"put": {"key": "t", "value": "warm"}, "query_id": 5})", "wrong_type", 400},
    {R"({"increment": {"key": "s"}})", "wrong_type", 400},
    {R"({"fetch": {"key": "t", "from": "yesterday"}})", "bad_time", 400},
    {R"({"delete": {"key": "t"}})", "not_confirmed", 400},
    {R"({"get": {"key": "t", "kye": 1}})", "bad_request", 400},
};

class ApiErrorTest : public ApiServiceTest {
 protected:
  void SetUp() override {
    ApiServiceTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_EQ(komoku_->Put("/api/v1/value?key=t", "21").status, 201);
    ASSERT_EQ(komoku_->Put("/api/v1/value?key=s", "text").status, 201);
  }
};

TEST_F(ApiErrorTest, RefusalsAnswerTheirCodeOverMqttAndHttp) {
  for (const ErrorCase &c : kErrors) {
    json a = AskMqtt(std::string(c.request));
    EXPECT_EQ(a["error"]["code"], c.code) << "MQTT " << c.request << " -> " << a.dump();
    EXPECT_TRUE(a["error"]["message"].is_string()) << a.dump();
    EXPECT_FALSE(a.contains("result")) << a.dump();
    json request = json::parse(c.request, nullptr, false);
    if (request.is_object() && request.contains("query_id")) {
      EXPECT_EQ(a["query_id"], request["query_id"]) << "query_id echoed in errors too";
    }
    auto [status, h] = AskHttp(c.request);
    EXPECT_EQ(status, c.http_status) << "HTTP " << c.request << " -> " << h.dump();
    EXPECT_EQ(h["error"]["code"], c.code) << "HTTP " << c.request << " -> " << h.dump();
  }
  // Nothing changed.
  auto v = komoku_->Get("/api/v1/value?key=t").Json();
  EXPECT_DOUBLE_EQ(v["value"].get<double>(), 21);
  EXPECT_EQ(komoku_->Get("/api/v1/history?key=t&from=0").Json()["rows"].size(), 1u);
  EXPECT_EQ(komoku_->Get("/api/v1/keys").Json()["keys"].size(), 2u);
  // And komoku keeps answering.
  EXPECT_EQ(AskMqtt(R"({"ping": {}})")["result"], "pong");
}

// Counts per reason, both transports; unknown_key and bad_time have their
// own tests below.
TEST_F(ApiErrorTest, RefusalsAreCountedPerReason) {
  for (const char *reason :
       {"bad_json", "unknown_operation", "wrong_type", "not_confirmed", "bad_request"}) {
    const long long before = komoku_->Metric(Refused(reason));
    int sent = 0;
    for (const ErrorCase &c : kErrors) {
      if (c.code != std::string(reason)) continue;
      AskMqtt(std::string(c.request));
      AskHttp(c.request);
      sent += 2;
    }
    EXPECT_EQ(komoku_->Metric(Refused(reason)) - before, sent) << reason;
  }
}

TEST_F(ApiErrorTest, UnknownKeyIsCounted) {
  const long long before = komoku_->Metric(Refused("unknown_key"));
  AskMqtt(R"({"get": {"key": "missing"}})");
  AskHttp(R"({"last": {"key": "missing"}})");
  EXPECT_EQ(komoku_->Metric(Refused("unknown_key")) - before, 2) << komoku_->Get("/metrics").body;
}

TEST_F(ApiErrorTest, BadTimeIsCounted) {
  const long long before = komoku_->Metric(Refused("bad_time"));
  AskMqtt(R"({"fetch": {"key": "t", "from": "yesterday"}})");
  AskHttp(R"({"put": {"key": "t", "value": 1, "time": "soon"}})");
  EXPECT_EQ(komoku_->Metric(Refused("bad_time")) - before, 2) << komoku_->Get("/metrics").body;
}

}  // namespace
}  // namespace komoku::testing

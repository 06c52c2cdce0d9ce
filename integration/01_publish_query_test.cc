// 01: a value published over MQTT is answered over HTTP: value, history, keys;
// the state comes back on komoku/state; bad HTTP parameters are 400s.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

class PublishQueryTest : public KomokuTest {};

TEST_F(PublishQueryTest, PublishedValueIsAnsweredOverHttp) {
  // A new store has no keys: the list is there, and empty.
  auto none = komoku_->Get("/api/v1/keys?values=true");
  ASSERT_EQ(none.status, 200);
  EXPECT_EQ(none.Json(), nlohmann::json::parse(R"({"keys": []})")) << none.body;

  mqtt_->Publish("komoku/set/kitchen/temperature", "21.5");
  ASSERT_TRUE(WaitForHistory("kitchen/temperature", 1));

  auto value = komoku_->Get("/api/v1/value?key=kitchen/temperature");
  ASSERT_EQ(value.status, 200) << value.body;
  auto v = value.Json();
  EXPECT_EQ(v["key"], "kitchen/temperature");
  EXPECT_EQ(v["type"], "numeric");
  EXPECT_DOUBLE_EQ(v["value"].get<double>(), 21.5);
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(v["time"].get<double>(), now, 60);

  mqtt_->Publish("komoku/set/kitchen/temperature", "22");
  ASSERT_TRUE(WaitForHistory("kitchen/temperature", 2));
  auto history = komoku_->Get("/api/v1/history?key=kitchen/temperature&from=-1h").Json();
  ASSERT_EQ(history["rows"].size(), 2u) << history.dump();
  EXPECT_DOUBLE_EQ(history["rows"][0][1].get<double>(), 21.5);
  EXPECT_DOUBLE_EQ(history["rows"][1][1].get<double>(), 22.0);
  EXPECT_LE(history["rows"][0][0].get<double>(), history["rows"][1][0].get<double>());

  mqtt_->Publish("komoku/set/front_door", "true");
  mqtt_->Publish("komoku/set/radio", "Jazz FM");
  ASSERT_TRUE(WaitForHistory("radio", 1));
  auto keys = komoku_->Get("/api/v1/keys").Json();
  std::map<std::string, std::string> types;
  for (const auto& k : keys["keys"]) types[k["key"]] = k["type"];
  EXPECT_EQ(types, (std::map<std::string, std::string>{{"front_door", "boolean"},
                                                       {"kitchen/temperature", "numeric"},
                                                       {"radio", "string"}}));
}

TEST_F(PublishQueryTest, JsonPayloadWithTimeGoesIntoHistoryInOrder) {
  mqtt_->Publish("komoku/set/garden/rain", R"({"value": 1.5, "time": 1700000100})");
  mqtt_->Publish("komoku/set/garden/rain", R"({"value": 0.5, "time": 1700000000.25})");
  ASSERT_TRUE(WaitForHistory("garden/rain", 2));
  auto rows =
      komoku_->Get("/api/v1/history?key=garden/rain&from=1700000000&to=1700000200").Json()["rows"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_DOUBLE_EQ(rows[0][0].get<double>(), 1700000000.25);
  EXPECT_DOUBLE_EQ(rows[0][1].get<double>(), 0.5);
  // The newest time is the current value, whatever the arrival order.
  auto v = komoku_->Get("/api/v1/value?key=garden/rain").Json();
  EXPECT_DOUBLE_EQ(v["value"].get<double>(), 1.5);
}

TEST_F(PublishQueryTest, StateIsPublishedRetainedWithPrevious) {
  mqtt_->Publish("komoku/set/hall/light", "false");
  mqtt_->Publish("komoku/set/hall/light", "true");
  ASSERT_TRUE(WaitForHistory("hall/light", 2));
  // A client that subscribes afterwards gets the retained state.
  MqttClient late(broker_->url(), "it-late-subscriber");
  late.Subscribe("komoku/state/hall/light");
  nlohmann::json state;
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& [topic, payload] : late.Received()) {
      state = nlohmann::json::parse(payload);
      if (state["value"] == true) return true;
    }
    return false;
  }));
  EXPECT_EQ(state["previous"], false);
  EXPECT_GT(state["time"].get<double>(), 1.7e9);
}

TEST_F(PublishQueryTest, HttpPutIsTheSameAsMqttSet) {
  auto r = komoku_->Put("/api/v1/value?key=office/co2", "612");
  ASSERT_EQ(r.status, 201) << r.body;
  r = komoku_->Put("/api/v1/value?key=office/co2", R"({"value": 640})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto v = komoku_->Get("/api/v1/value?key=office/co2").Json();
  EXPECT_DOUBLE_EQ(v["value"].get<double>(), 640);
  EXPECT_DOUBLE_EQ(v["previous"]["value"].get<double>(), 612);
  r = komoku_->Put("/api/v1/value?key=office/co2", "lots");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("not a number"), std::string::npos) << r.body;
}

// A JSON string is text: "1.10" (a firmware version) makes a string key
// and stays "1.10", over MQTT and HTTP alike; the same text bare is a number.
TEST_F(PublishQueryTest, AJsonStringIsText) {
  mqtt_->Publish("komoku/set/plug/firmware", R"("1.10")");
  mqtt_->Publish("komoku/set/plug/build", R"({"value": "2.0"})");
  mqtt_->Publish("komoku/set/plug/power", "1.10");
  ASSERT_TRUE(WaitForHistory("plug/power", 1));
  ASSERT_TRUE(WaitForHistory("plug/build", 1));
  auto firmware = komoku_->Get("/api/v1/value?key=plug/firmware").Json();
  EXPECT_EQ(firmware["type"], "string") << firmware.dump();
  EXPECT_EQ(firmware["value"], "1.10") << firmware.dump();
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=plug/build").Json()["value"], "2.0");
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=plug/power").Json()["type"], "numeric");
  auto r = komoku_->Put("/api/v1/value?key=plug/serial", R"("007")");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.Json()["type"], "string") << r.body;
  EXPECT_EQ(r.Json()["value"], "007") << r.body;
}

// A clean stop says what it does at info level and nothing at warn or
// error (issue 19 saw "disconnect: MQTT error [-3]" and a refused
// subscription logged after "stopped"): journalctl -p warning stays empty.
TEST_F(PublishQueryTest, ACleanStopLogsNoWarningOrError) {
  mqtt_->Publish("komoku/set/hall/light", "on");
  ASSERT_TRUE(WaitForHistory("hall/light", 1));
  ASSERT_EQ(komoku_->Stop(), 0) << komoku_->Output();
  const std::string out = komoku_->Output();
  EXPECT_NE(out.find("info: stopped"), std::string::npos) << out;
  EXPECT_EQ(out.find("] warning: "), std::string::npos) << out;
  EXPECT_EQ(out.find("] warn: "), std::string::npos) << out;
  EXPECT_EQ(out.find("] error: "), std::string::npos) << out;
  EXPECT_EQ(out.find("] critical: "), std::string::npos) << out;
}

TEST_F(PublishQueryTest, BadParametersAreClear400s) {
  mqtt_->Publish("komoku/set/t", "1");
  ASSERT_TRUE(WaitForHistory("t", 1));
  struct Case {
    const char* query;
    int status;
    const char* says;
  } cases[] = {
      {"/api/v1/value", 400, "missing parameter 'key'"},
      {"/api/v1/value?key=nope", 404, "no key 'nope'"},
      {"/api/v1/history?key=t&from=yesterday", 400, "parameter 'from'"},
      {"/api/v1/history?key=t&form=-1h", 400, "unknown parameter 'form'"},
      {"/api/v1/history?key=t&from=-1h&to=-2h", 400, "'to' must be after 'from'"},
      {"/api/v1/history?key=t&limit=0", 400, "parameter 'limit'"},
      {"/api/v1/history?key=t&limit=abc", 400, "parameter 'limit'"},
      {"/api/v1/history?key=t&from=2026-02-30", 400, "no such day"},
      {"/api/v1/keys?values=maybe", 400, "must be true or false"},
      {"/api/v1/nothing", 404, "no such endpoint"},
  };
  for (const Case& c : cases) {
    auto r = komoku_->Get(c.query);
    EXPECT_EQ(r.status, c.status) << c.query << " -> " << r.body;
    EXPECT_NE(r.body.find(c.says), std::string::npos) << c.query << " -> " << r.body;
    EXPECT_TRUE(r.Json().contains("error")) << c.query << " -> " << r.body;
  }
  // Still serving.
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=t").status, 200);
}

// Whether `answer` holds a whole HTTP response (headers and Content-Length
// bytes of body).
bool WholeAnswer(const std::string& answer) {
  const size_t end = answer.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  const size_t at = answer.find("Content-Length: ");
  if (at == std::string::npos || at > end) return true;
  return answer.size() - end - 4 >= std::stoul(answer.substr(at + 16));
}

// Sends `request` as it is to 127.0.0.1:port and returns the response.
std::string RawHttp(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    for (ssize_t n; !WholeAnswer(answer) && (n = recv(fd, buf, sizeof buf, 0)) > 0;) {
      answer.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return answer;
}

// `curl -X POST URL` sends no Content-Length; such a request is refused at
// once (411 Length Required), and the answer says what to do.
TEST_F(PublishQueryTest, APostWithoutContentLengthIsAClear411) {
  const std::string answer =
      RawHttp(komoku_->http_port(), "POST /api/v1/compact HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 411", 0), 0u) << answer;
  EXPECT_NE(answer.find("POST without a Content-Length header"), std::string::npos) << answer;
  EXPECT_NE(answer.find("-d ''"), std::string::npos) << answer;
  // With an empty body, the same request is done.
  EXPECT_EQ(komoku_->Post("/api/v1/compact", "").status, 200);
}

TEST_F(PublishQueryTest, MetricsCountCommitsMemoryAndUptime) {
  mqtt_->Publish("komoku/set/m", "1");
  ASSERT_TRUE(WaitForHistory("m", 1));
  long long batches = komoku_->Metric("komoku_commit_seconds_count");
  EXPECT_GE(batches, 1);
  EXPECT_EQ(komoku_->Metric("komoku_commit_seconds_bucket{le=\"+Inf\"}"), batches);
  EXPECT_LE(komoku_->Metric("komoku_commit_seconds_bucket{le=\"0.0001\"}"),
            komoku_->Metric("komoku_commit_seconds_bucket{le=\"1\"}"));
  EXPECT_GT(komoku_->Metric("process_resident_memory_bytes"), 1'000'000);
  EXPECT_GE(komoku_->Metric("komoku_uptime_seconds"), 0);
  EXPECT_NE(komoku_->Get("/metrics").body.find("# TYPE komoku_commit_seconds histogram"),
            std::string::npos);
}

TEST_F(PublishQueryTest, HistoryOverTheLimitIsRefusedNotCut) {
  for (int i = 0; i < 5; ++i) mqtt_->Publish("komoku/set/n", std::to_string(i));
  ASSERT_TRUE(WaitForHistory("n", 5));
  auto r = komoku_->Get("/api/v1/history?key=n&from=0&limit=4");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("more than 4 changes"), std::string::npos) << r.body;
  EXPECT_EQ(komoku_->Get("/api/v1/history?key=n&from=0&limit=5").Json()["rows"].size(), 5u);
}

}  // namespace
}  // namespace komoku::testing

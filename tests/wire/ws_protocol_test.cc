// The original Komoku WebSocket protocols (wire/ws_protocol.h) over a real
// Store: every exchange of issue 22 for v1 and v2, the pushes a change
// makes, the old time forms, and every error code.
#include "wire/ws_protocol.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "store_test_util.h"

namespace komoku::store {
namespace {

using nlohmann::json;
using testing::FakeClock;
using testing::OpenTestStore;
using testing::TempDir;

constexpr int64_t kNow = 1700000000000;

class WsProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenTestStore(dir_.File("data"), &clock_);
    ASSERT_TRUE(store_);
    v1_ = std::make_unique<WsProtocol>(store_.get(), WsVersion::kV1);
    v2_ = std::make_unique<WsProtocol>(store_.get(), WsVersion::kV2);
    listener_ = store_->AddListener([this](const Change& c) {
      std::lock_guard<std::mutex> lock(mu_);
      changes_.push_back(c);
    });
  }
  void TearDown() override { store_->RemoveListener(listener_); }

  json V1(const std::string& text) { return v1_->Handle(text).answer; }
  json V2(const std::string& text) { return v2_->Handle(text).answer; }

  // The changes seen since the last call.
  std::vector<Change> Changes() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Change> out;
    out.swap(changes_);
    return out;
  }

  // An error answer's code; its message must say something.
  static std::string Code(const json& answer) {
    if (!answer.is_object() || !answer.contains("error")) return "no error: " + answer.dump();
    EXPECT_TRUE(answer["message"].is_string() && !answer["message"].get<std::string>().empty())
        << answer.dump();
    return answer["error"].get<std::string>();
  }

  TempDir dir_;
  FakeClock clock_{kNow};
  std::unique_ptr<Store> store_;
  std::unique_ptr<WsProtocol> v1_;
  std::unique_ptr<WsProtocol> v2_;
  int listener_ = 0;
  std::mutex mu_;
  std::vector<Change> changes_;  // guarded by mu_
};

TEST_F(WsProtocolTest, V1GetPutAck) {
  EXPECT_EQ(V1(R"({"get":{"key":"foo"}})"), json(nullptr));
  EXPECT_EQ(V1(R"({"put":{"key":"foo","value":123}})"), "ack");
  EXPECT_EQ(V1(R"({"get":{"key":"foo"}})"), 123);
  EXPECT_EQ(V1(R"({"put":{"key":"door","value":false,"time":1432468182.5}})"), "ack");
  EXPECT_EQ(V1(R"({"get":{"key":"door"}})"), false);
  EXPECT_EQ(V1(R"({"put":{"key":"txt","value":"text"}})"), "ack");
  EXPECT_EQ(V1(R"({"get":{"key":"txt"}})"), "text");
  // The key's type is guessed as a put over any transport guesses it.
  EXPECT_EQ(store_->Get("door")->type, KeyType::kBoolean);
  EXPECT_EQ(store_->Get("door")->last->time_ms, 1432468182500);
}

TEST_F(WsProtocolTest, V1PutTakesRubyTimeStrings) {
  clock_.Set(1796500000000);  // 2026-12-05, after the times below
  EXPECT_EQ(V1(R"({"put":{"key":"t","value":1,"time":"2026-12-05 18:40:00 +0000"}})"), "ack");
  EXPECT_EQ(store_->Get("t")->last->time_ms, 1796496000000);
  EXPECT_EQ(V1(R"({"put":{"key":"t","value":2,"time":"2026-12-05 19:40:00.25 +0100"}})"), "ack");
  auto h = store_->History("t", 0, INT64_MAX, 10);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[1].time_ms, 1796496000250);
  EXPECT_EQ(V1(R"({"put":{"key":"t","value":3,"time":"2026-12-05 18:40:01 UTC"}})"), "ack");
  EXPECT_EQ(store_->Get("t")->last->time_ms, 1796496001000);

  EXPECT_EQ(*ParseWsTime("2026-12-05 18:40:00 -0130", 0), 1796496000000 + 90 * 60000);
  EXPECT_EQ(*ParseWsTime(1432468182.5, 0), 1432468182500);
  EXPECT_FALSE(ParseWsTime("2026-12-05 18:40:00 +00", 0).ok());
  EXPECT_FALSE(ParseWsTime("yesterday", 0).ok());
  EXPECT_FALSE(ParseWsTime(json::array(), 0).ok());
  EXPECT_EQ(Code(V1(R"({"put":{"key":"t","value":4,"time":"soon"}})")), "invalid_query");
}

TEST_F(WsProtocolTest, V1Keys) {
  V1(R"({"put":{"key":"foo","value":123}})");
  V1(R"({"put":{"key":"bar","value":true}})");
  EXPECT_EQ(V1(R"({"keys":{}})"),
            json::parse(R"({"foo":{"type":"numeric"},"bar":{"type":"boolean"}})"));
  EXPECT_EQ(V1(R"({"keys":{"include":["value"]}})"),
            json::parse(
                R"({"foo":{"type":"numeric","value":123},"bar":{"type":"boolean","value":true}})"));
  EXPECT_EQ(Code(V1(R"({"keys":{"include":["colour"]}})")), "invalid_query");
}

TEST_F(WsProtocolTest, V1SubAndPub) {
  WsReply r = v1_->Handle(R"({"sub":{"key":"foo"}})");
  EXPECT_EQ(r.answer, "ack");
  EXPECT_EQ(r.sub, WsReply::Sub::kSubscribe);
  EXPECT_EQ(r.key, "foo");
  V1(R"({"put":{"key":"foo","value":123}})");
  clock_.Set(kNow + 1000);
  V1(R"({"put":{"key":"foo","value":234}})");
  std::vector<Change> changes = Changes();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(v1_->Push(changes[0]),
            json::parse(R"({"pub":{"key":"foo","prev":null,"curr":123,"value":123,)"
                        R"("time":1700000000.0,"previous_value":null}})"));
  EXPECT_EQ(v1_->Push(changes[1]),
            json::parse(R"({"pub":{"key":"foo","prev":123,"curr":234,"value":234,)"
                        R"("time":1700000001.0,"previous_value":123}})"));
  r = v1_->Handle(R"({"unsub":{"key":"foo"}})");
  EXPECT_EQ(r.answer, "ack");
  EXPECT_EQ(r.sub, WsReply::Sub::kUnsubscribe);
  // A late change is history only: no push.
  V1(R"({"put":{"key":"foo","value":1,"time":1600000000}})");
  changes = Changes();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(v1_->Push(changes[0]).is_null());
}

TEST_F(WsProtocolTest, V1Fetch) {
  EXPECT_EQ(V1(R"({"fetch":{"key":"nothing"}})"), json::array());
  for (int i = 0; i < 4; ++i) {
    clock_.Set(kNow + i * 3600 * 1000LL);
    V1(R"({"put":{"key":"foo","value":)" + std::to_string(10 * (i + 1)) + "}}");
  }
  // Oldest first, since a time, in "opts" or beside "key".
  EXPECT_EQ(V1(R"({"fetch":{"key":"foo","opts":{"since":1700003600}}})"),
            json::parse("[[1700003600.0,20],[1700007200.0,30],[1700010800.0,40]]"));
  EXPECT_EQ(V1(R"({"fetch":{"key":"foo","since":1700007200}})"),
            json::parse("[[1700007200.0,30],[1700010800.0,40]]"));
  // With a step (the original's capital units): one mean per bucket.
  json rows = V1(R"({"fetch":{"key":"foo","since":1699999200,"step":"2H"}})");
  ASSERT_TRUE(rows.is_array()) << rows.dump();
  ASSERT_EQ(rows.size(), 2u) << rows.dump();
  EXPECT_EQ(rows[0], json::parse("[1699999200.0,15.0]"));
  EXPECT_EQ(rows[1], json::parse("[1700006400.0,35.0]"));

  // Timespans of a boolean.
  clock_.Set(kNow);
  V1(R"({"put":{"key":"door","value":false,"time":1700000000}})");
  V1(R"({"put":{"key":"door","value":true,"time":1700000100}})");
  V1(R"({"put":{"key":"door","value":false,"time":1700000200}})");
  V1(R"({"put":{"key":"door","value":true,"time":1700000300}})");
  clock_.Set(kNow + 400 * 1000);
  EXPECT_EQ(V1(R"({"fetch":{"key":"door","opts":{"since":1699999000,"until":1700000400,)"
               R"("as":"timespans"}}})"),
            json::parse("[[1700000100.0,1700000200.0],[1700000300.0,1700000400.0]]"));
  EXPECT_EQ(Code(V1(R"({"fetch":{"key":"foo","as":"timespans"}})")), "invalid_query");
  EXPECT_EQ(Code(V1(R"({"fetch":{"key":"foo","colour":1}})")), "invalid_query");
}

TEST_F(WsProtocolTest, V1Errors) {
  EXPECT_EQ(Code(V1("{nope")), "invalid_json");
  EXPECT_EQ(Code(V1("")), "invalid_json");
  EXPECT_EQ(Code(V1(R"({"frobnicate":{}})")), "invalid_query");
  EXPECT_EQ(Code(V1(R"([1,2])")), "invalid_query");
  EXPECT_EQ(Code(V1(R"({"get":{"key":"a"},"put":{"key":"a","value":1}})")), "invalid_query");
  EXPECT_EQ(Code(V1(R"({"get":{}})")), "invalid_query");
  EXPECT_EQ(Code(V1(R"({"get":{"key":"a/+"}})")), "invalid_query");
  EXPECT_EQ(Code(V1(R"({"get":"foo"})")), "invalid_query");
  V1(R"({"put":{"key":"n","value":1}})");
  EXPECT_EQ(Code(V1(R"({"put":{"key":"n","value":"high"}})")), "invalid_value");
  EXPECT_EQ(Code(V1(R"({"put":{"key":"n","value":[1]}})")), "invalid_value");
  EXPECT_EQ(V1(R"({"get":{"key":"n"}})"), 1);  // nothing lost
  EXPECT_GE(store_->metrics().Get("komoku_refused_total{reason=\"bad_json\"}"), 2);
}

TEST_F(WsProtocolTest, V2Exchanges) {
  EXPECT_EQ(V2(R"({"put":{"key":"k","value":8}})"), json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(V2(R"({"get":{"key":"k"}})"), json::parse(R"({"result":8})"));
  EXPECT_EQ(V2(R"({"last":{"key":"k"}})"),
            json::parse(R"({"result":{"value":8,"time":1700000000.0}})"));
  EXPECT_EQ(V2(R"({"get":{"key":"unknown"}})"), json::parse(R"({"result":null})"));
  EXPECT_EQ(V2(R"({"get":{"key":"k"},"query_id":"q1"})"),
            json::parse(R"({"result":8,"query_id":"q1"})"));
  EXPECT_EQ(V2(R"({"ping":"foo","query_id":3})"),
            json::parse(R"({"result":{"pong":"foo"},"query_id":3})"));
  EXPECT_EQ(V2(R"({"ping":{"a":[1]}})"), json::parse(R"({"result":{"pong":{"a":[1]}}})"));

  json keys = V2(R"({"keys":{}})");
  ASSERT_TRUE(keys.contains("result")) << keys.dump();
  EXPECT_EQ(keys["result"]["k"]["type"], "numeric");
  EXPECT_TRUE(keys["result"]["k"]["opts"].is_object());
  keys = V2(R"({"keys":{"include":["value"]}})");
  EXPECT_EQ(keys["result"]["k"]["value"], 8);

  // define, with max_time in opts and beside type.
  EXPECT_EQ(V2(R"({"define":{"k1":{"type":"uptime","opts":{"max_time":7}}}})"),
            json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(V2(R"({"define":{"k2":{"type":"uptime","max_time":9}}})"),
            json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(store_->Get("k1")->type, KeyType::kUptime);
  EXPECT_EQ(store_->Get("k1")->options.max_time_ms, 7000);
  EXPECT_EQ(store_->Get("k2")->options.max_time_ms, 9000);

  // A counter: 0 -> +1 -> +2.4 -> -1 -> -1.2 gives 1.2.
  EXPECT_EQ(V2(R"({"define":{"c":{"type":"counter"}}})"), json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(V2(R"({"increment":{"key":"c"}})"), json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(V2(R"({"increment":{"key":"c","step":2.4}})"), json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(V2(R"({"decrement":{"key":"c"}})"), json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(V2(R"({"decrement":{"key":"c","step":1.2}})"), json::parse(R"({"result":"ok"})"));
  json c = V2(R"({"get":{"key":"c"}})");
  EXPECT_NEAR(c["result"].get<double>(), 1.2, 1e-9);

  // fetch, stats, delete.
  clock_.Set(kNow + 1000);
  V2(R"({"put":{"key":"k","value":9}})");
  EXPECT_EQ(V2(R"({"fetch":{"key":"k","from":1699999999}})"),
            json::parse(R"({"result":[[1700000000.0,8],[1700000001.0,9]]})"));
  json stats = V2(R"({"stats":{"key":"k","from":1699999999,"to":1700000002}})");
  ASSERT_TRUE(stats.contains("result")) << stats.dump();
  EXPECT_EQ(stats["result"]["min"], 8.0);
  EXPECT_EQ(stats["result"]["max"], 9.0);
  EXPECT_EQ(stats["result"]["type"], "numeric");
  EXPECT_EQ(Code(V2(R"({"delete":{"key":"k"}})")), "not_confirmed");
  EXPECT_EQ(V2(R"({"delete":{"key":"k","confirm":true}})"), json::parse(R"({"result":"ok"})"));
  EXPECT_EQ(V2(R"({"get":{"key":"k"}})"), json::parse(R"({"result":null})"));
}

TEST_F(WsProtocolTest, V2SubPushesAlsoAfterRecreation) {
  WsReply r = v2_->Handle(R"({"sub":{"key":"k"},"query_id":1})");
  EXPECT_EQ(r.answer, json::parse(R"({"result":"ok","query_id":1})"));
  EXPECT_EQ(r.sub, WsReply::Sub::kSubscribe);
  EXPECT_EQ(r.key, "k");
  V2(R"({"put":{"key":"k","value":123}})");
  clock_.Set(kNow + 1000);
  V2(R"({"put":{"key":"k","value":234}})");
  V2(R"({"delete":{"key":"k","confirm":true}})");
  V2(R"({"put":{"key":"k","value":"now text"}})");
  std::vector<Change> changes = Changes();
  ASSERT_EQ(changes.size(), 4u);
  EXPECT_EQ(v2_->Push(changes[0]),
            json::parse(R"({"pub":{"key":"k","value":123,"previous":null,"time":1700000000.0}})"));
  EXPECT_EQ(v2_->Push(changes[1]),
            json::parse(R"({"pub":{"key":"k","value":234,"previous":123,"time":1700000001.0}})"));
  EXPECT_TRUE(v2_->Push(changes[2]).is_null());  // the deletion
  EXPECT_EQ(v2_->Push(changes[3])["pub"]["value"], "now text");
  r = v2_->Handle(R"({"unsub":{"key":"k"}})");
  EXPECT_EQ(r.sub, WsReply::Sub::kUnsubscribe);
}

TEST_F(WsProtocolTest, AKeyMayBeNamedByItsAlias) {
  const AliasSource aliases = [] {
    return std::map<std::string, std::string>{{"z/kitchen_sensor/t", "z/kitchen/t"}};
  };
  int64_t now = kNow;
  for (WsVersion version : {WsVersion::kV1, WsVersion::kV2}) {
    WsProtocol ws(store_.get(), version, aliases);
    ws.Handle(R"({"put":{"key":"z/kitchen_sensor/t","value":21.5}})");
    clock_.Set(now += 1000);
    EXPECT_EQ(ws.Handle(R"({"put":{"key":"z/kitchen/t","value":22.5}})").answer,
              version == WsVersion::kV1 ? json("ack") : json::parse(R"({"result":"ok"})"));
    json got = ws.Handle(R"({"get":{"key":"z/kitchen/t"}})").answer;
    EXPECT_EQ(version == WsVersion::kV1 ? got : got["result"], 22.5) << got.dump();
    WsReply sub = ws.Handle(R"({"sub":{"key":"z/kitchen/t"}})");
    EXPECT_EQ(sub.sub, WsReply::Sub::kSubscribe);
    EXPECT_EQ(sub.key, "z/kitchen_sensor/t");  // pushes come for the key
    clock_.Set(now += 1000);
  }
  for (const KeyInfo& k : store_->Keys()) EXPECT_NE(k.name, "z/kitchen/t");
}

TEST_F(WsProtocolTest, V2Errors) {
  EXPECT_EQ(Code(V2("{")), "invalid_json");
  json a = V2(R"({"frobnicate":{},"query_id":5})");
  EXPECT_EQ(Code(a), "invalid_query");
  EXPECT_EQ(a["query_id"], 5);
  EXPECT_EQ(Code(V2(R"({"get":{}})")), "invalid_query");
  EXPECT_EQ(Code(V2(R"({"put":{"key":"k"}})")), "invalid_query");
  V2(R"({"put":{"key":"n","value":1}})");
  EXPECT_EQ(Code(V2(R"({"put":{"key":"n","value":"abc"}})")), "invalid_value");
  EXPECT_EQ(Code(V2(R"({"put":{"key":"n","value":{"a":1}}})")), "invalid_value");
  V2(R"({"define":{"s":{"type":"string","opts":{"values":["on","off"]}}}})");
  EXPECT_EQ(Code(V2(R"({"put":{"key":"s","value":"dim"}})")), "invalid_value");
  EXPECT_EQ(Code(V2(R"({"define":{"n":{"type":"boolean"}}})")), "type_change");
  EXPECT_EQ(Code(V2(R"({"fetch":{"key":"none"}})")), "unknown_key");
  EXPECT_EQ(Code(V2(R"({"increment":{"key":"n","step":"x"}})")), "invalid_query");
  EXPECT_EQ(V2(R"({"get":{"key":"n"}})"), json::parse(R"({"result":1})"));
}

}  // namespace
}  // namespace komoku::store

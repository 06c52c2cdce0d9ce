// The Komoku JSON query API (wire/api.h) over a real Store: every
// operation, the query_id echo, every protocol error, and sub/unsub with and
// without a transport's SubHandler.
#include "wire/api.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
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
constexpr double kNowS = 1700000000.0;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenTestStore(dir_.File("data"), &clock_);
    ASSERT_TRUE(store_);
    api_ = std::make_unique<Api>(store_.get(), nullptr);
  }

  json Do(const std::string& text) { return api_->HandleText(text); }

  // The error code of an answer, or "ok" with the answer when it has none.
  static std::string Code(const json& answer) {
    if (!answer.contains("error")) return "ok " + answer.dump();
    EXPECT_TRUE(answer["error"]["message"].is_string()) << answer.dump();
    EXPECT_FALSE(answer["error"]["message"].get<std::string>().empty()) << answer.dump();
    EXPECT_FALSE(answer.contains("result")) << answer.dump();
    return answer["error"]["code"].get<std::string>();
  }

  static std::string Message(const json& answer) {
    return answer.contains("error") ? answer["error"]["message"].get<std::string>() : "";
  }

  // The result of an answer that must have succeeded.
  static json Ok(const json& answer) {
    EXPECT_FALSE(answer.contains("error")) << answer.dump();
    EXPECT_TRUE(answer.contains("result")) << answer.dump();
    return answer.contains("result") ? answer["result"] : json();
  }

  int64_t Refused(const std::string& reason) {
    return store_->metrics().Get("komoku_refused_total{reason=\"" + reason + "\"}");
  }

  TempDir dir_;
  FakeClock clock_{kNow};
  std::unique_ptr<Store> store_;
  std::unique_ptr<Api> api_;
};

TEST_F(ApiTest, Ping) {
  EXPECT_EQ(Ok(Do(R"({"ping": {}})")), "pong");
  EXPECT_EQ(Ok(Do(R"({"ping": null})")), "pong");
  EXPECT_EQ(Code(Do(R"({"ping": {"x": 1}})")), "bad_request");
}

TEST_F(ApiTest, QueryIdIsEchoedOnSuccessAndOnError) {
  json a = Do(R"({"ping": {}, "query_id": 7})");
  EXPECT_EQ(a["query_id"], 7);
  a = Do(R"({"query_id": "abc", "get": {"key": "missing"}})");
  EXPECT_EQ(a["query_id"], "abc");
  EXPECT_EQ(Code(a), "unknown_key");
  a = Do(R"({"query_id": {"n": [1, 2]}, "nope": {}})");
  EXPECT_EQ(a["query_id"], json::parse(R"({"n": [1, 2]})"));
  EXPECT_EQ(Code(a), "unknown_operation");
  a = Do(R"({"ping": {}})");
  EXPECT_FALSE(a.contains("query_id"));
}

// Every operation is routed to its handler, and only those: the refusal of
// an unknown one names them all, in this order.
TEST_F(ApiTest, UnknownOperationNamesEveryOperation) {
  const std::vector<std::string> ops = {"get",       "last",  "previous", "put",    "increment",
                                        "decrement", "keys",  "define",   "delete", "fetch",
                                        "sub",       "unsub", "ping"};
  std::string list;
  for (const std::string& op : ops) {
    list += (list.empty() ? "" : ", ") + op;
    EXPECT_NE(Code(Do("{\"" + op + "\": {}}")), "unknown_operation") << op;
  }
  for (const char* op : {"frobnicate", "ge", "gets", "Get", "query_id2"}) {
    json a = Do("{\"" + std::string(op) + "\": {}}");
    EXPECT_EQ(Code(a), "unknown_operation") << op;
    EXPECT_EQ(Message(a), "unknown operation \"" + std::string(op) + "\" (known: " + list + ")");
  }
}

TEST_F(ApiTest, PutGetLastPrevious) {
  json r = Ok(Do(R"({"put": {"key": "t", "value": 21.5}})"));
  EXPECT_EQ(r["key"], "t");
  EXPECT_EQ(r["type"], "numeric");
  EXPECT_EQ(r["value"], 21.5);
  EXPECT_EQ(r["time"], kNowS);
  EXPECT_EQ(r["stored"], true);
  EXPECT_EQ(r["current"], true);
  EXPECT_EQ(r["created"], true);

  // A time in the past, as epoch seconds and as a relative form.
  r = Ok(Do(R"({"put": {"key": "t", "value": 20, "time": 1699999990}})"));
  EXPECT_EQ(r["current"], false);
  EXPECT_EQ(r["created"], false);
  r = Ok(Do(R"({"put": {"key": "t", "value": "22", "time": "-1s"}})"));
  EXPECT_EQ(r["current"], false);

  EXPECT_EQ(Ok(Do(R"({"get": {"key": "t"}})")), 21.5);
  json last = Ok(Do(R"({"last": {"key": "t"}})"));
  EXPECT_EQ(last, json::parse(R"({"value": 21.5, "time": 1700000000.0})"));
  json prev = Ok(Do(R"({"previous": {"key": "t"}})"));
  EXPECT_EQ(prev, json::parse(R"({"value": 22.0, "time": 1699999999.0})"));

  // Booleans and strings keep their JSON type.
  Ok(Do(R"({"put": {"key": "door", "value": true}})"));
  EXPECT_EQ(Ok(Do(R"({"get": {"key": "door"}})")), true);
  Ok(Do(R"({"put": {"key": "mode", "value": "away"}})"));
  EXPECT_EQ(Ok(Do(R"({"get": {"key": "mode"}})")), "away");
}

TEST_F(ApiTest, GetOfADefinedKeyWithoutValueIsNull) {
  Ok(Do(R"({"define": {"d": {"type": "numeric"}}})"));
  EXPECT_TRUE(Ok(Do(R"({"get": {"key": "d"}})")).is_null());
  EXPECT_TRUE(Ok(Do(R"({"last": {"key": "d"}})")).is_null());
  EXPECT_TRUE(Ok(Do(R"({"previous": {"key": "d"}})")).is_null());
}

TEST_F(ApiTest, PutRefusals) {
  EXPECT_EQ(Code(Do(R"({"put": {"value": 1}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"put": {"key": 5, "value": 1}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "x"}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "x", "value": [1]}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "x", "value": null}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "a#b", "value": 1}})")), "bad_key");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "x", "value": 1, "time": "yesterday"}})")), "bad_time");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "x", "value": 1, "time": -5}})")), "bad_time");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "x", "value": 1, "time": true}})")), "bad_time");
  EXPECT_EQ(Code(Do(R"({"put": {"key": "x", "value": 1, "time": "+2d"}})")), "bad_time");
  EXPECT_TRUE(store_->Keys().empty());

  Ok(Do(R"({"put": {"key": "n", "value": 1}})"));
  json a = Do(R"({"put": {"key": "n", "value": "abc"}})");
  EXPECT_EQ(Code(a), "wrong_type");
  EXPECT_NE(Message(a).find("'n'"), std::string::npos) << a.dump();
  EXPECT_EQ(Refused("wrong_type"), 1);
  EXPECT_EQ(Ok(Do(R"({"get": {"key": "n"}})")), 1.0);
}

TEST_F(ApiTest, UnknownKeyForReads) {
  for (const char* op : {"get", "last", "previous", "fetch"}) {
    SCOPED_TRACE(op);
    json a = Do(std::string("{\"") + op + R"(": {"key": "nope"}})");
    EXPECT_EQ(Code(a), "unknown_key");
    EXPECT_NE(Message(a).find("nope"), std::string::npos) << a.dump();
  }
}

TEST_F(ApiTest, IncrementAndDecrement) {
  json r = Ok(Do(R"({"increment": {"key": "rain"}})"));
  EXPECT_EQ(r["value"], 1.0);
  EXPECT_EQ(r["type"], "counter");
  EXPECT_EQ(r["created"], true);
  clock_.Set(kNow + 1);
  r = Ok(Do(R"({"increment": {"key": "rain", "step": 2.5}})"));
  EXPECT_EQ(r["value"], 3.5);
  clock_.Set(kNow + 2);
  r = Ok(Do(R"({"decrement": {"key": "rain"}})"));
  EXPECT_EQ(r["value"], 2.5);
  clock_.Set(kNow + 3);
  r = Ok(Do(R"({"decrement": {"key": "rain", "step": 0.5, "time": "now"}})"));
  EXPECT_EQ(r["value"], 2.0);

  EXPECT_EQ(Code(Do(R"({"increment": {"key": "rain", "step": "2"}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"increment": {"key": "rain", "by": 2}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"increment": {}})")), "bad_request");
  Ok(Do(R"({"put": {"key": "s", "value": "text"}})"));
  EXPECT_EQ(Code(Do(R"({"increment": {"key": "s"}})")), "wrong_type");
  EXPECT_EQ(Code(Do(R"({"decrement": {"key": "s"}})")), "wrong_type");
}

TEST_F(ApiTest, Keys) {
  EXPECT_EQ(Ok(Do(R"({"keys": {}})")), json::array());
  Ok(Do(R"({"put": {"key": "b", "value": 1}})"));
  Ok(Do(R"({"define": {"a": {"type": "uptime", "opts": {"max_time": 30}}}})"));
  json keys = Ok(Do(R"({"keys": null})"));
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0]["key"], "a");
  EXPECT_EQ(keys[0]["type"], "uptime");
  EXPECT_EQ(keys[0]["opts"]["max_time"], 30.0);
  EXPECT_FALSE(keys[0].contains("value"));
  EXPECT_EQ(keys[1]["key"], "b");
  keys = Ok(Do(R"({"keys": {"values": true}})"));
  EXPECT_TRUE(keys[0]["value"].is_null());
  EXPECT_TRUE(keys[0]["time"].is_null());
  EXPECT_EQ(keys[1]["value"], 1.0);
  EXPECT_EQ(keys[1]["time"], kNowS);
  EXPECT_EQ(Code(Do(R"({"keys": {"values": 1}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"keys": {"value": true}})")), "bad_request");
}

TEST_F(ApiTest, Define) {
  json r = Ok(Do(R"({"define": {"hb": {"type": "uptime", "opts": {"max_time": 30}},
                                 "mode": {"type": "string", "opts": {"values": ["a", "b"]}}}})"));
  EXPECT_EQ(r["hb"]["type"], "uptime");
  EXPECT_EQ(r["hb"]["opts"]["max_time"], 30.0);
  EXPECT_EQ(r["mode"]["opts"]["values"], json::parse(R"(["a", "b"])"));
  EXPECT_EQ(Code(Do(R"({"put": {"key": "mode", "value": "c"}})")), "value_not_allowed");
  // Options only, on an existing key.
  r = Ok(Do(R"({"define": {"hb": {"opts": {"max_time": 10}}}})"));
  EXPECT_EQ(r["hb"]["opts"]["max_time"], 10.0);

  EXPECT_EQ(Code(Do(R"({"define": {}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"define": {"x": 1}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"define": {"x": {"type": "numeric", "option": {}}}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"define": {"x": {"type": 1}}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"define": {"x": {"type": "float"}}})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({"define": {"x": {"opts": {}}}})")), "unknown_key");
  EXPECT_EQ(Code(Do(R"({"define": {"x": {"type": "numeric", "opts": {"min_resolution": 1}}}})")),
            "bad_option");
  EXPECT_EQ(Code(Do(R"({"define": {"x+": {"type": "numeric"}}})")), "bad_key");

  Ok(Do(R"({"put": {"key": "n", "value": 1}})"));
  json a = Do(R"({"define": {"n": {"type": "string"}}})");
  EXPECT_EQ(Code(a), "type_change");
  Ok(Do(R"({"define": {"n": {"type": "counter"}}})"));
}

TEST_F(ApiTest, ARefusedDefineOfSeveralKeysChangesNothing) {
  // "Every refused operation ... changes nothing": a define naming two keys
  // whose second definition is bad must not leave the first one defined.
  json a = Do(R"({"define": {"a": {"type": "numeric"}, "b": {"type": "float"}}})");
  EXPECT_EQ(Code(a), "bad_request");
  EXPECT_FALSE(store_->Get("a").ok()) << "key 'a' was created by a refused define";
}

TEST_F(ApiTest, DeleteNeedsConfirmation) {
  Ok(Do(R"({"put": {"key": "t", "value": 1}})"));
  for (const char* bad :
       {R"({"delete": {"key": "t"}})", R"({"delete": {"key": "t", "confirm": "yes"}})",
        R"({"delete": {"key": "t", "confirm": false}})",
        R"({"delete": {"key": "t", "confirm": 1}})"}) {
    SCOPED_TRACE(bad);
    json a = Do(bad);
    EXPECT_EQ(Code(a), "not_confirmed");
    EXPECT_NE(Message(a).find("\"confirm\": true"), std::string::npos) << a.dump();
  }
  EXPECT_EQ(Refused("not_confirmed"), 4);
  EXPECT_TRUE(store_->Get("t").ok());
  EXPECT_EQ(Ok(Do(R"({"delete": {"key": "t", "confirm": true}})")),
            json::parse(R"({"deleted": "t"})"));
  EXPECT_FALSE(store_->Get("t").ok());
  EXPECT_EQ(Code(Do(R"({"delete": {"key": "t", "confirm": true}})")), "unknown_key");
  EXPECT_EQ(Code(Do(R"({"delete": {"key": "t", "confirm": true, "really": true}})")),
            "bad_request");
}

TEST_F(ApiTest, Fetch) {
  for (int i = 0; i < 5; ++i) {
    Ok(Do(R"({"put": {"key": "t", "value": )" + std::to_string(i) + R"(, "time": )" +
          std::to_string(1700000000 - 100 + i * 10) + "}}"));
  }
  json rows = Ok(Do(R"({"fetch": {"key": "t"}})"));
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], json::parse("[1699999900.0, 0.0]"));
  EXPECT_EQ(rows[4], json::parse("[1699999940.0, 4.0]"));
  // from inclusive, to exclusive; relative and ISO forms.
  rows = Ok(Do(R"({"fetch": {"key": "t", "from": 1699999910, "to": 1699999930}})"));
  EXPECT_EQ(rows, json::parse("[[1699999910.0, 1.0], [1699999920.0, 2.0]]"));
  rows = Ok(Do(R"({"fetch": {"key": "t", "from": "-75s", "to": "now"}})"));
  EXPECT_EQ(rows, json::parse("[[1699999930.0, 3.0], [1699999940.0, 4.0]]"));
  rows = Ok(Do(R"({"fetch": {"key": "t", "from": "2023-11-14T22:11:50Z"}})"));
  EXPECT_EQ(rows.size(), 4u);
  rows = Ok(Do(R"({"fetch": {"key": "t", "limit": 5}})"));
  EXPECT_EQ(rows.size(), 5u);

  json a = Do(R"({"fetch": {"key": "t", "limit": 4}})");
  EXPECT_EQ(Code(a), "too_many_points");
  EXPECT_NE(Message(a).find("more than 4"), std::string::npos) << a.dump();
  for (const char* bad :
       {R"({"fetch": {"key": "t", "limit": 0}})", R"({"fetch": {"key": "t", "limit": -1}})",
        R"({"fetch": {"key": "t", "limit": 1.5}})", R"({"fetch": {"key": "t", "limit": 10001}})",
        R"({"fetch": {"key": "t", "from": 1699999930, "to": 1699999910}})",
        R"({"fetch": {"key": "t", "step": 60}})"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(Code(Do(bad)), "bad_request");
  }
  EXPECT_EQ(Code(Do(R"({"fetch": {"key": "t", "from": "last week"}})")), "bad_time");
  EXPECT_EQ(Code(Do(R"({"fetch": {"key": "t", "to": [1]}})")), "bad_time");
}

TEST_F(ApiTest, SubWithoutAHandlerIsRefused) {
  json a = Do(R"({"sub": {"key": "t"}})");
  EXPECT_EQ(Code(a), "bad_request");
  EXPECT_NE(Message(a).find("not available"), std::string::npos) << a.dump();
  EXPECT_EQ(Code(Do(R"({"unsub": {"key": "t"}})")), "bad_request");
}

TEST_F(ApiTest, SubAndUnsubGoToTheHandler) {
  std::vector<std::pair<bool, std::string>> calls;
  Api api(store_.get(), [&](bool subscribe, const std::string& key) -> Result<json> {
    calls.emplace_back(subscribe, key);
    if (key == "refuse") return Status::InvalidArgument("no such topic").WithReason("nope");
    return json{{"topic", "komoku/state/" + key}};
  });
  json a = api.HandleText(R"({"sub": {"key": "a/b"}, "query_id": 1})");
  EXPECT_EQ(a, json::parse(R"({"query_id": 1, "result": {"topic": "komoku/state/a/b"}})"));
  a = api.HandleText(R"({"unsub": {"key": "a/b"}})");
  EXPECT_EQ(Ok(a)["topic"], "komoku/state/a/b");
  a = api.HandleText(R"({"sub": {"key": "refuse"}})");
  EXPECT_EQ(Code(a), "nope");
  // A key that could never exist does not reach the handler.
  EXPECT_EQ(Code(api.HandleText(R"({"sub": {"key": "a/+"}})")), "bad_key");
  EXPECT_EQ(Code(api.HandleText(R"({"sub": {}})")), "bad_request");
  EXPECT_EQ(Code(api.HandleText(R"({"sub": {"key": "x", "since": 0}})")), "bad_request");
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], std::make_pair(true, std::string("a/b")));
  EXPECT_EQ(calls[1], std::make_pair(false, std::string("a/b")));
}

TEST_F(ApiTest, BadJson) {
  for (const char* bad : {"", "{", "not json", R"({"ping": {}} trailing)", "1e400"}) {
    SCOPED_TRACE(bad);
    json a = Do(bad);
    EXPECT_EQ(Code(a), "bad_json");
    EXPECT_FALSE(a.contains("query_id"));
  }
  for (const char* not_object : {"[]", "1", "\"ping\"", "null", "[{\"ping\": {}}]"}) {
    SCOPED_TRACE(not_object);
    EXPECT_EQ(Code(Do(not_object)), "bad_json");
  }
  EXPECT_EQ(Refused("bad_json"), 10);
}

TEST_F(ApiTest, OversizedRequestIsRefusedBeforeParsing) {
  std::string big =
      R"({"ping": {}, "query_id": ")" + std::string(Api::kMaxRequestBytes, 'x') + "\"}";
  json a = Do(big);
  EXPECT_EQ(Code(a), "bad_json");
  EXPECT_NE(Message(a).find("over the limit"), std::string::npos) << a.dump();
}

TEST_F(ApiTest, UnknownOperation) {
  json a = Do(R"({"gte": {"key": "x"}})");
  EXPECT_EQ(Code(a), "unknown_operation");
  EXPECT_NE(Message(a).find("\"gte\""), std::string::npos) << a.dump();
  EXPECT_NE(Message(a).find("known:"), std::string::npos) << a.dump();
  EXPECT_EQ(Refused("unknown_operation"), 1);
}

TEST_F(ApiTest, OneOperationPerRequest) {
  json a = Do(R"({"get": {"key": "x"}, "ping": {}, "query_id": 3})");
  EXPECT_EQ(Code(a), "bad_request");
  EXPECT_NE(Message(a).find("one operation per request"), std::string::npos) << a.dump();
  EXPECT_EQ(a["query_id"], 3);
  EXPECT_EQ(Code(Do(R"({"query_id": 3})")), "bad_request");
  EXPECT_EQ(Code(Do(R"({})")), "bad_request");
}

TEST_F(ApiTest, UnknownArgumentIsRefusedNamingIt) {
  json a = Do(R"({"get": {"key": "x", "kye": "y"}})");
  EXPECT_EQ(Code(a), "bad_request");
  EXPECT_NE(Message(a).find("unknown argument \"kye\""), std::string::npos) << a.dump();
}

TEST_F(ApiTest, ArgumentsMustBeAnObject) {
  for (const char* bad : {R"({"get": "x"})", R"({"get": ["x"]})", R"({"put": 1})"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(Code(Do(bad)), "bad_request");
  }
}

TEST_F(ApiTest, HandleTakesParsedJsonLikeHandleText) {
  json a = api_->Handle(json::parse(R"({"put": {"key": "k", "value": 2}, "query_id": [1]})"));
  EXPECT_EQ(a["query_id"], json::parse("[1]"));
  EXPECT_EQ(Ok(a)["value"], 2.0);
  EXPECT_EQ(Code(api_->Handle(json::array())), "bad_json");
  EXPECT_EQ(Code(api_->Handle(json(nullptr))), "bad_json");
}

TEST_F(ApiTest, EveryAnswerSerializes) {
  // Transports dump() the answer; a message must stay valid UTF-8 even when
  // it quotes a long value cut short.
  Ok(Do(R"({"put": {"key": "n", "value": 1}})"));
  std::string value = "x";
  for (int i = 0; i < 30; ++i) value += "\xc3\xa9";  // é: cut at byte 40 falls inside one
  json request = {{"put", {{"key", "n"}, {"value", value}}}};
  json a = api_->Handle(request);
  EXPECT_EQ(Code(a), "wrong_type");
  std::string dumped;
  EXPECT_NO_THROW(dumped = a.dump()) << "the error message is not valid UTF-8";
}

// With an AliasSource, every operation may name a key by its alias; a real
// key of that name wins; an unknown name stays unknown.
TEST_F(ApiTest, AKeyMayBeNamedByItsAlias) {
  std::map<std::string, std::string> aliases = {{"z/kitchen_sensor/t", "z/kitchen/t"},
                                                {"z/kitchen_sensor/h", "z/kitchen/h"}};
  Api api(
      store_.get(), [](bool, const std::string& key) { return Result<json>(json(key)); },
      [&] { return aliases; });
  const auto run = [&](const std::string& text) { return api.HandleText(text); };
  Ok(run(R"({"put": {"key": "z/kitchen_sensor/t", "value": 21.5}})"));
  clock_.Set(kNow + 1000);
  EXPECT_EQ(Ok(run(R"({"put": {"key": "z/kitchen/t", "value": 22.5}})"))["key"],
            "z/kitchen_sensor/t");
  EXPECT_EQ(Ok(run(R"({"get": {"key": "z/kitchen/t"}})")), 22.5);
  EXPECT_EQ(Ok(run(R"({"fetch": {"key": "z/kitchen/t", "from": 0}})")).size(), 2u);
  EXPECT_EQ(Ok(run(R"({"increment": {"key": "z/kitchen/t"}})"))["value"], 23.5);
  EXPECT_EQ(Ok(run(R"({"sub": {"key": "z/kitchen/t"}})")), "z/kitchen_sensor/t");
  json defined = Ok(run(R"({"define": {"z/kitchen/t": {"opts": {"same_value_resolution": 0}}}})"));
  EXPECT_TRUE(defined.contains("z/kitchen_sensor/t")) << defined.dump();
  // No key was made under the alias.
  for (const KeyInfo& k : store_->Keys()) EXPECT_NE(k.name, "z/kitchen/t");
  // A real key of the alias's name wins.
  Ok(run(R"({"put": {"key": "z/kitchen_sensor/h", "value": 48}})"));
  ASSERT_TRUE(store_->Put("z/kitchen/h", InputValue(99.0)).ok());
  EXPECT_EQ(Ok(run(R"({"get": {"key": "z/kitchen/h"}})")), 99.0);
  EXPECT_EQ(Code(run(R"({"get": {"key": "z/kitchen/x"}})")), "unknown_key");
  EXPECT_EQ(Ok(run(R"({"delete": {"key": "z/kitchen/t", "confirm": true}})"))["deleted"],
            "z/kitchen_sensor/t");
  // Without an AliasSource (the default) an alias is just an unknown name.
  Ok(run(R"({"put": {"key": "z/kitchen_sensor/t", "value": 1}})"));
  EXPECT_EQ(Code(Do(R"({"get": {"key": "z/kitchen/t"}})")), "unknown_key");
}

}  // namespace
}  // namespace komoku::store

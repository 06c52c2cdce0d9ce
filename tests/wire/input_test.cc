// Payloads as the MQTT bridge and the HTTP server hand them over: bare
// values, JSON strings and JSON {"value", "time"} objects, and every refusal.
#include "wire/input.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace komoku::store {
namespace {

constexpr size_t kMax = 65536;

struct GoodCase {
  const char* what;
  std::string payload;
  InputValue want;
  std::optional<int64_t> want_time_ms;
};

std::string Describe(const InputValue& v) {
  if (const double* d = std::get_if<double>(&v)) return "number " + std::to_string(*d);
  if (const bool* b = std::get_if<bool>(&v)) return *b ? "bool true" : "bool false";
  return "text '" + std::get<std::string>(v) + "'";
}

TEST(ParseValuePayloadTest, Accepts) {
  const std::vector<GoodCase> cases = {
      // Bare values stay text, as sent; the key's type decides later.
      {"bare number", "21.5", InputValue(std::string("21.5")), std::nullopt},
      {"bare word", "on", InputValue(std::string("on")), std::nullopt},
      {"bare text with spaces kept", " armed away ", InputValue(std::string(" armed away ")),
       std::nullopt},
      {"bare JSON-looking array is text", "[1,2]", InputValue(std::string("[1,2]")), std::nullopt},
      {"bare true is text", "true", InputValue(std::string("true")), std::nullopt},
      // A JSON string is its content.
      {"JSON string", "\"hello world\"", InputValue(std::string("hello world")), std::nullopt},
      {"JSON string with escapes", R"("a\"b\u00fc")", InputValue(std::string("a\"b\xC3\xBC")),
       std::nullopt},
      {"JSON string of a number stays text", "\"21.5\"", InputValue(std::string("21.5")),
       std::nullopt},
      // JSON objects keep the JSON type.
      {"object number", R"({"value": 21.5})", InputValue(21.5), std::nullopt},
      {"object integer", R"({"value": -3})", InputValue(-3.0), std::nullopt},
      {"object true", R"({"value": true})", InputValue(true), std::nullopt},
      {"object false", R"({"value": false})", InputValue(false), std::nullopt},
      {"object string", R"({"value": "open"})", InputValue(std::string("open")), std::nullopt},
      {"object with leading blanks", " \n\t{\"value\": 1}", InputValue(1.0), std::nullopt},
      {"time in whole seconds", R"({"value": 1, "time": 1700000000})", InputValue(1.0),
       1700000000000},
      {"time with fraction", R"({"time": 1700000000.25, "value": true})", InputValue(true),
       1700000000250},
      {"time rounds to the millisecond", R"({"value": 1, "time": 1.0006})", InputValue(1.0), 1001},
      {"time zero", R"({"value": 1, "time": 0})", InputValue(1.0), 0},
      {"time at the upper bound", R"({"value": 1, "time": 100000000000})", InputValue(1.0),
       100000000000000},
  };
  for (const GoodCase& c : cases) {
    Result<ValueMessage> r = ParseValuePayload(c.payload, kMax);
    ASSERT_TRUE(r.ok()) << c.what << ": " << r.status().ToString();
    EXPECT_EQ(r->value.index(), c.want.index()) << c.what << ": got " << Describe(r->value);
    EXPECT_EQ(r->value, c.want) << c.what << ": got " << Describe(r->value);
    EXPECT_EQ(r->time_ms, c.want_time_ms) << c.what;
  }
}

struct BadCase {
  const char* what;
  std::string payload;
  const char* message_part;  // the message must say this
};

TEST(ParseValuePayloadTest, Refuses) {
  const std::vector<BadCase> cases = {
      {"empty", "", "empty"},
      {"blank", "  \t\r\n ", "empty"},
      {"malformed object", R"({"value": )", "not valid JSON"},
      {"object with trailing text", R"({"value": 1} x)", "not valid JSON"},
      {"unterminated string", "\"abc", "not valid JSON"},
      {"unknown field", R"({"value": 1, "unit": "C"})", "unknown field \"unit\""},
      {"unknown field only", R"({"val": 1})", "no \"value\""},
      {"missing value", R"({"time": 1700000000})", "no \"value\""},
      {"empty object", "{}", "no \"value\""},
      {"value null", R"({"value": null})", "\"value\" must be"},
      {"value array", R"({"value": [1, 2]})", "\"value\" must be"},
      {"value object", R"({"value": {"x": 1}})", "\"value\" must be"},
      {"value overflows to infinity", R"({"value": 1e400})", ""},  // any refusal
      {"time as text", R"({"value": 1, "time": "yesterday"})", "\"time\""},
      {"time as bool", R"({"value": 1, "time": true})", "\"time\""},
      {"time null", R"({"value": 1, "time": null})", "\"time\""},
      {"negative time", R"({"value": 1, "time": -1})", "out of range"},
      {"slightly negative time", R"({"value": 1, "time": -0.001})", "out of range"},
      {"huge time", R"({"value": 1, "time": 100000000001})", "out of range"},
      {"time 1e300", R"({"value": 1, "time": 1e300})", "out of range"},
      {"time overflows to infinity", R"({"value": 1, "time": 1e400})", ""},
  };
  for (const BadCase& c : cases) {
    Result<ValueMessage> r = ParseValuePayload(c.payload, kMax);
    ASSERT_FALSE(r.ok()) << c.what << " was accepted as " << Describe(r->value);
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c.what;
    EXPECT_NE(r.status().message().find(c.message_part), std::string::npos)
        << c.what << ": " << r.status().message();
  }
}

TEST(ParseValuePayloadTest, SizeLimitIsInclusive) {
  std::string at_limit(16, '7');
  Result<ValueMessage> r = ParseValuePayload(at_limit, 16);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->value, InputValue(at_limit));

  Result<ValueMessage> over = ParseValuePayload(at_limit + "7", 16);
  ASSERT_FALSE(over.ok());
  EXPECT_TRUE(over.status().IsInvalidArgument());
  EXPECT_NE(over.status().message().find("17 bytes"), std::string::npos) << over.status().message();

  // The limit applies before any parsing: an over-long JSON object is refused
  // for its size, not looked into.
  std::string json = R"({"value": ")" + std::string(100, 'x') + "\"}";
  Result<ValueMessage> big = ParseValuePayload(json, 64);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("limit"), std::string::npos) << big.status().message();
}

TEST(ParseValuePayloadTest, DeepNestingIsRefusedNotACrash) {
  // A hostile payload: nesting deep enough to overflow a recursive parser's
  // stack if it were not refused or handled.
  std::string deep = R"({"value": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  Result<ValueMessage> r = ParseValuePayload(deep, 1 << 20);
  EXPECT_FALSE(r.ok());
}

TEST(JsonSecondsToMsTest, ConvertsAndRefuses) {
  EXPECT_EQ(*JsonSecondsToMs(nlohmann::json(1.5)), 1500);
  EXPECT_EQ(*JsonSecondsToMs(nlohmann::json(int64_t{1700000000})), 1700000000000);
  EXPECT_FALSE(JsonSecondsToMs(nlohmann::json("1")).ok());
  EXPECT_FALSE(JsonSecondsToMs(nlohmann::json(-5)).ok());
}

TEST(ValueToJsonTest, KeepsTheType) {
  EXPECT_EQ(ValueToJson(Value(21.5)).dump(), "21.5");
  EXPECT_EQ(ValueToJson(Value(true)).dump(), "true");
  EXPECT_EQ(ValueToJson(Value(std::string("a\"b"))).dump(), R"("a\"b")");
  EXPECT_DOUBLE_EQ(MsToSeconds(1700000000250), 1700000000.25);
}

}  // namespace
}  // namespace komoku::store

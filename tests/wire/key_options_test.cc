// Per-key options as JSON (wire/key_options_json.h, parsed and applied by
// core/key_options.h): every option on every type, nulls that
// reset, the refusals (unknown option, wrong JSON type, out of range, an
// option the type does not take, min_resolution), and the round trip through
// KeyOptionsToJson that a reopen relies on.
#include "core/key_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "wire/key_options_json.h"

namespace komoku::store {
namespace {

using nlohmann::json;

constexpr KeyType kAllTypes[] = {KeyType::kNumeric, KeyType::kCounter, KeyType::kBoolean,
                                 KeyType::kUptime, KeyType::kString};

Result<KeyOptions> Apply(KeyType type, const char* text, KeyOptions base = {}) {
  return ApplyKeyOptions(base, type, json::parse(text));
}

// The message of a refusal, checking that it is a bad_option.
std::string Refusal(const Result<KeyOptions>& r) {
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "accepted";
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_EQ(r.status().reason(), "bad_option") << r.status().ToString();
  return r.status().message();
}

TEST(KeyOptionsTest, DefaultsAreSixtySecondsAndNoValues) {
  KeyOptions o;
  EXPECT_EQ(o.same_value_resolution_ms, 60000);
  EXPECT_EQ(o.max_time_ms, 60000);
  EXPECT_FALSE(o.values.has_value());
}

TEST(KeyOptionsTest, NullOrEmptyObjectKeepsTheBase) {
  KeyOptions base;
  base.same_value_resolution_ms = 5;
  for (KeyType type : kAllTypes) {
    SCOPED_TRACE(KeyTypeName(type));
    Result<KeyOptions> a = ApplyKeyOptions(base, type, json(nullptr));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ(*a, base);
    Result<KeyOptions> b = ApplyKeyOptions(base, type, json::object());
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(*b, base);
  }
}

TEST(KeyOptionsTest, SameValueResolutionAppliesToEveryType) {
  for (KeyType type : kAllTypes) {
    SCOPED_TRACE(KeyTypeName(type));
    Result<KeyOptions> r = Apply(type, R"({"same_value_resolution": 2.5})");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->same_value_resolution_ms, 2500);
    r = Apply(type, R"({"same_value_resolution": 0})");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->same_value_resolution_ms, 0);
    r = Apply(type, R"({"same_value_resolution": 3600})");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->same_value_resolution_ms, 3600000);
    // Milliseconds are kept; finer is rounded.
    r = Apply(type, R"({"same_value_resolution": 0.0016})");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->same_value_resolution_ms, 2);
  }
}

TEST(KeyOptionsTest, MaxTimeAppliesOnlyToUptime) {
  Result<KeyOptions> r = Apply(KeyType::kUptime, R"({"max_time": 30})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->max_time_ms, 30000);
  for (KeyType type : {KeyType::kNumeric, KeyType::kCounter, KeyType::kBoolean, KeyType::kString}) {
    SCOPED_TRACE(KeyTypeName(type));
    std::string m = Refusal(Apply(type, R"({"max_time": 30})"));
    EXPECT_NE(m.find("max_time"), std::string::npos) << m;
    EXPECT_NE(m.find("uptime"), std::string::npos) << m;
    EXPECT_NE(m.find(KeyTypeName(type)), std::string::npos) << m;
  }
}

// Durations take the grammar of steps and windows too ("10m", "24h"),
// beside seconds as a number.
TEST(KeyOptionsTest, DurationsTakeUnits) {
  Result<KeyOptions> r =
      Apply(KeyType::kUptime,
            R"({"stale_after": "10m", "max_time": "2h", "same_value_resolution": "30s"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stale_after_ms, 600'000);
  EXPECT_EQ(r->max_time_ms, 7'200'000);
  EXPECT_EQ(r->same_value_resolution_ms, 30'000);
  r = Apply(KeyType::kNumeric, R"({"stale_after": "1d"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stale_after_ms, 86'400'000);
  std::string m = Refusal(Apply(KeyType::kNumeric, R"({"stale_after": "ten minutes"})"));
  EXPECT_NE(m.find("option 'stale_after': 'ten minutes' is not a duration"), std::string::npos)
      << m;
  Refusal(Apply(KeyType::kNumeric, R"({"stale_after": "1.5h"})"));
  Refusal(Apply(KeyType::kNumeric, R"({"stale_after": "9999999999w"})"));
  Refusal(Apply(KeyType::kNumeric, R"({"stale_after": [10]})"));
}

TEST(KeyOptionsTest, MaxTimeMustBeMoreThanZero) {
  std::string m = Refusal(Apply(KeyType::kUptime, R"({"max_time": 0})"));
  EXPECT_NE(m.find("more than 0"), std::string::npos) << m;
  // 0.0004 s rounds to 0 ms: also refused rather than a timer that never waits.
  Refusal(Apply(KeyType::kUptime, R"({"max_time": 0.0004})"));
  Result<KeyOptions> r = Apply(KeyType::kUptime, R"({"max_time": 0.001})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->max_time_ms, 1);
}

TEST(KeyOptionsTest, ValuesApplyOnlyToString) {
  Result<KeyOptions> r = Apply(KeyType::kString, R"({"values": ["home", "away", "night"]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->values.has_value());
  EXPECT_EQ(*r->values, (std::vector<std::string>{"home", "away", "night"}));
  for (KeyType type : {KeyType::kNumeric, KeyType::kCounter, KeyType::kBoolean, KeyType::kUptime}) {
    SCOPED_TRACE(KeyTypeName(type));
    std::string m = Refusal(Apply(type, R"({"values": ["a"]})"));
    EXPECT_NE(m.find("values"), std::string::npos) << m;
    EXPECT_NE(m.find("string"), std::string::npos) << m;
  }
}

TEST(KeyOptionsTest, ValuesMustBeANonEmptyListOfUtf8Strings) {
  for (const char* bad : {R"({"values": []})", R"({"values": "a"})", R"({"values": [1]})",
                          R"({"values": ["a", null]})", R"({"values": {"a": 1}})",
                          R"({"values": [["a"]]})", R"({"values": true})"}) {
    SCOPED_TRACE(bad);
    std::string m = Refusal(Apply(KeyType::kString, bad));
    EXPECT_NE(m.find("values"), std::string::npos) << m;
  }
  json bad_utf8 = {{"values", json::array({std::string("ok"), std::string("\xff\xfe")})}};
  Refusal(ApplyKeyOptions({}, KeyType::kString, bad_utf8));
}

TEST(KeyOptionsTest, NullResetsEachOptionToItsDefault) {
  KeyOptions base;
  base.same_value_resolution_ms = 1;
  base.max_time_ms = 2;
  base.values = std::vector<std::string>{"x"};

  Result<KeyOptions> r = Apply(KeyType::kString, R"({"same_value_resolution": null})", base);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->same_value_resolution_ms, 60000);
  EXPECT_EQ(r->values, base.values);

  r = Apply(KeyType::kUptime, R"({"max_time": null})", base);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->max_time_ms, 60000);
  EXPECT_EQ(r->same_value_resolution_ms, 1);

  r = Apply(KeyType::kString, R"({"values": null})", base);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->values.has_value());
  EXPECT_EQ(r->same_value_resolution_ms, 1);
}

TEST(KeyOptionsTest, OptionsNotGivenKeepTheirBaseValue) {
  KeyOptions base;
  base.same_value_resolution_ms = 7;
  base.max_time_ms = 9;
  Result<KeyOptions> r = Apply(KeyType::kUptime, R"({"max_time": 1})", base);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->same_value_resolution_ms, 7);
  EXPECT_EQ(r->max_time_ms, 1000);
}

TEST(KeyOptionsTest, DurationsOfTheWrongTypeOrOutOfRangeAreRefused) {
  for (const char* name : {"same_value_resolution", "max_time", "stale_after", "raw_retention"}) {
    for (const char* value :
         {"\"sixty\"", "true", "[1]", "{}", "-1", "-0.5", "1e12", "316224001"}) {
      std::string text = std::string("{\"") + name + "\": " + value + "}";
      SCOPED_TRACE(text);
      std::string m = Refusal(Apply(KeyType::kUptime, text.c_str()));
      EXPECT_NE(m.find(name), std::string::npos) << m;
    }
  }
  // Ten years is the most.
  Result<KeyOptions> r = Apply(KeyType::kUptime, R"({"max_time": 316224000})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->max_time_ms, 316224000000);
}

TEST(KeyOptionsTest, UnknownOptionIsRefusedNamingIt) {
  for (KeyType type : kAllTypes) {
    SCOPED_TRACE(KeyTypeName(type));
    std::string m = Refusal(Apply(type, R"({"same_value_resolutoin": 5})"));
    EXPECT_NE(m.find("unknown option 'same_value_resolutoin'"), std::string::npos) << m;
    EXPECT_NE(m.find("known:"), std::string::npos) << m;
  }
}

TEST(KeyOptionsTest, OptionsThatAreNotAnObjectAreRefused) {
  for (const char* bad : {"[]", "1", "\"x\"", "true"}) {
    SCOPED_TRACE(bad);
    std::string m = Refusal(Apply(KeyType::kNumeric, bad));
    EXPECT_NE(m.find("object"), std::string::npos) << m;
  }
}

TEST(KeyOptionsTest, MinResolutionIsRefusedWithAClearMessage) {
  for (KeyType type : kAllTypes) {
    SCOPED_TRACE(KeyTypeName(type));
    std::string m = Refusal(Apply(type, R"({"min_resolution": 10})"));
    EXPECT_NE(m.find("min_resolution"), std::string::npos) << m;
    EXPECT_NE(m.find("not supported yet"), std::string::npos) << m;
  }
}

TEST(KeyOptionsTest, ARefusalLeavesNoHalfAppliedOptions) {
  // The result is all or nothing: a good option before a bad one is not
  // returned applied (the Result holds no value at all).
  Result<KeyOptions> r = Apply(KeyType::kNumeric, R"({"same_value_resolution": 1, "bogus": 2})");
  EXPECT_FALSE(r.ok());
}

TEST(KeyOptionsTest, ToJsonNamesTheOptionsOfTheType) {
  KeyOptions o;
  EXPECT_EQ(KeyOptionsToJson(o, KeyType::kNumeric),
            json::parse(R"({"same_value_resolution": 60})"));
  EXPECT_EQ(KeyOptionsToJson(o, KeyType::kUptime),
            json::parse(R"({"same_value_resolution": 60, "max_time": 60})"));
  o.values = std::vector<std::string>{"a", "b"};
  o.same_value_resolution_ms = 1500;
  EXPECT_EQ(KeyOptionsToJson(o, KeyType::kString),
            json::parse(R"({"same_value_resolution": 1.5, "values": ["a", "b"]})"));
}

TEST(KeyOptionsTest, ToJsonRoundTripsThroughApply) {
  struct Case {
    KeyType type;
    const char* options;
  } cases[] = {
      {KeyType::kNumeric, R"({})"},
      {KeyType::kNumeric, R"({"same_value_resolution": 0})"},
      {KeyType::kCounter, R"({"same_value_resolution": 0.001})"},
      {KeyType::kBoolean, R"({"same_value_resolution": 86400})"},
      {KeyType::kUptime, R"({"max_time": 30, "same_value_resolution": 5})"},
      {KeyType::kUptime, R"({"max_time": 0.25})"},
      {KeyType::kUptime, R"({"max_time": 316224000})"},
      {KeyType::kString, R"({"values": ["on air", "off", "ünïcödé"]})"},
      {KeyType::kString, R"({"same_value_resolution": 12.345})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(KeyTypeName(c.type)) + " " + c.options);
    Result<KeyOptions> first = Apply(c.type, c.options);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    json j = KeyOptionsToJson(*first, c.type);
    // As stored in the keys table and parsed back on open.
    Result<KeyOptions> again = ApplyKeyOptions(KeyOptions{}, c.type, json::parse(j.dump()));
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(*again, *first) << j.dump();
  }
}

}  // namespace
}  // namespace komoku::store

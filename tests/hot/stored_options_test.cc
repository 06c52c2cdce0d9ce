// How the keys table keeps options (hot/stored_options.h): the text is the
// form the API answers, so every database written before reads unchanged;
// it round-trips; a damaged text is refused as corruption, naming what is
// wrong.
#include "hot/stored_options.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "wire/key_options_json.h"

namespace komoku::store {
namespace {

using nlohmann::json;

TEST(StoredOptionsTest, TextIsTheApiFormAndRoundTrips) {
  struct Case {
    KeyType type;
    const char* options;
  } cases[] = {
      {KeyType::kNumeric, R"({})"},
      {KeyType::kNumeric, R"({"same_value_resolution": 0, "stale_after": 600})"},
      {KeyType::kCounter, R"({"same_value_resolution": 0.001, "reset_tolerance": 0.5})"},
      {KeyType::kBoolean, R"({"same_value_resolution": 86400, "raw_retention": 0})"},
      {KeyType::kUptime, R"({"max_time": 30, "same_value_resolution": 5})"},
      {KeyType::kUptime, R"({"max_time": 0.25, "raw_retention": 172800})"},
      {KeyType::kString, R"({"values": ["on air", "off", "ünïcödé"]})"},
      {KeyType::kString, R"({"same_value_resolution": 12.345})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(KeyTypeName(c.type)) + " " + c.options);
    Result<KeyOptions> options = ApplyKeyOptions(KeyOptions{}, c.type, json::parse(c.options));
    ASSERT_TRUE(options.ok()) << options.status().ToString();
    const std::string text = EncodeStoredOptions(*options, c.type);
    EXPECT_EQ(text, KeyOptionsToJson(*options, c.type).dump());
    Result<KeyOptions> again = DecodeStoredOptions(text, c.type);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(*again, *options) << text;
  }
}

TEST(StoredOptionsTest, TextsOfEarlierVersionsRead) {
  // As the first schema's Komoku wrote them (doubles, keys in order).
  Result<KeyOptions> up =
      DecodeStoredOptions(R"({"max_time":60.0,"same_value_resolution":60.0})", KeyType::kUptime);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->max_time_ms, 60000);
  Result<KeyOptions> mode = DecodeStoredOptions(
      R"({"same_value_resolution":0.0,"values":["auto","off"]})", KeyType::kString);
  ASSERT_TRUE(mode.ok()) << mode.status().ToString();
  EXPECT_EQ(mode->same_value_resolution_ms, 0);
  EXPECT_EQ(mode->values, (std::vector<std::string>{"auto", "off"}));
}

TEST(StoredOptionsTest, DamagedTextIsCorruptionNamingWhat) {
  struct Case {
    KeyType type;
    const char* text;
    const char* names;
  } cases[] = {
      {KeyType::kNumeric, "", "not a JSON object"},
      {KeyType::kNumeric, "[1]", "not a JSON object"},
      {KeyType::kNumeric, R"({"bogus": 1})", "bogus"},
      {KeyType::kUptime, R"({"max_time": "1m"})", "max_time"},
      {KeyType::kNumeric, R"({"stale_after": -5})", "stale_after"},
      {KeyType::kString, R"({"values": [1]})", "values"},
      {KeyType::kNumeric, R"({"max_time": 5})", "max_time"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Result<KeyOptions> r = DecodeStoredOptions(c.text, c.type);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
    EXPECT_NE(r.status().message().find(c.names), std::string::npos) << r.status().ToString();
  }
}

}  // namespace
}  // namespace komoku::store

// Key names, value parsing, type guessing, coercion and canonical text.
#include "core/value.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace komoku::store {
namespace {

// ---------------------------------------------------------------- key names

TEST(ValidateKeyNameTest, AcceptsOrdinaryNames) {
  for (const char* name : {"t", "living_room/temperature", "a b c",
                           "K\xC3\xBC"
                           "che/temp",                  // Küche
                           "\xE6\xB8\xA9\xE5\xBA\xA6",  // 温度
                           "smile/\xF0\x9F\x98\x80",    // U+1F600
                           "max/\xF4\x8F\xBF\xBD"}) {   // U+10FFFD (U+10FFFF is a noncharacter)
    EXPECT_TRUE(ValidateKeyName(name).ok()) << name << ": " << ValidateKeyName(name).ToString();
  }
}

TEST(ValidateKeyNameTest, RefusesWhatMqttTopicsMustNotHold) {
  // Control characters (C0, DEL, C1) and Unicode noncharacters: Mosquitto
  // disconnects a client that publishes a topic with one.
  for (const char* bad :
       {"a\x01b", "tab\tkey", "new\nline", "del\x7f", "c1\xc2\x85x", "c1\xc2\x9f", "nc\xef\xb7\x90",
        "nc\xef\xbf\xbe", "nc\xef\xbf\xbf", "nc\xf0\x9f\xbf\xbf", "max\xf4\x8f\xbf\xbf"}) {
    Status st = ValidateKeyName(bad);
    EXPECT_TRUE(st.IsInvalidArgument()) << bad;
    EXPECT_NE(st.message().find("not allowed in MQTT topics"), std::string::npos) << st.message();
  }
  // Ordinary text around them is fine: accents, CJK, emoji, U+00A0.
  for (const char* good : {"caf\xc3\xa9", "\xe6\xb8\xa9\xe5\xba\xa6", "\xf0\x9f\x8c\xa1",
                           "nb\xc2\xa0sp", "\xef\xbf\xbd"}) {
    EXPECT_TRUE(ValidateKeyName(good).ok()) << good << ": " << ValidateKeyName(good).ToString();
  }
}

TEST(ValidateKeyNameTest, RefusesEmpty) {
  Status st = ValidateKeyName("");
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("empty"), std::string::npos) << st.message();
}

TEST(ValidateKeyNameTest, LengthLimitIs255Bytes) {
  EXPECT_TRUE(ValidateKeyName(std::string(255, 'a')).ok());
  Status st = ValidateKeyName(std::string(256, 'a'));
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("256 bytes"), std::string::npos) << st.message();
  // Bytes, not characters: 127 two-byte characters are 254 bytes, 128 are 256.
  std::string two_byte;
  for (int i = 0; i < 127; ++i) two_byte += "\xC3\xBC";
  EXPECT_TRUE(ValidateKeyName(two_byte).ok());
  EXPECT_TRUE(ValidateKeyName(two_byte + "a").ok());
  EXPECT_TRUE(ValidateKeyName(two_byte + "\xC3\xBC").IsInvalidArgument());
}

TEST(ValidateKeyNameTest, RefusesNulWithOffset) {
  Status st = ValidateKeyName(std::string("ab\0c", 4));
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("NUL"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("offset 2"), std::string::npos) << st.message();
  EXPECT_TRUE(ValidateKeyName(std::string(1, '\0')).IsInvalidArgument());
}

TEST(ValidateKeyNameTest, RefusesMqttWildcardsWithOffset) {
  struct Case {
    std::string name;
    std::string offset;
  };
  for (const Case& c : std::vector<Case>{{"+", "offset 0"},
                                         {"#", "offset 0"},
                                         {"home/+/temp", "offset 5"},
                                         {"home/#", "offset 5"},
                                         {"a+b", "offset 1"}}) {
    Status st = ValidateKeyName(c.name);
    EXPECT_TRUE(st.IsInvalidArgument()) << c.name;
    EXPECT_NE(st.message().find("wildcard"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(c.offset), std::string::npos) << st.message();
  }
}

struct BadUtf8Case {
  const char* what;
  std::string bytes;
};

TEST(ValidateKeyNameTest, RefusesInvalidUtf8) {
  const std::vector<BadUtf8Case> cases = {
      {"lone continuation byte", "a\x80"},
      {"0xFF", "\xFF"},
      {"0xFE", "x\xFE"},
      {"5-byte lead", "\xF8\x88\x80\x80\x80"},
      {"overlong '/' in 2 bytes", "\xC0\xAF"},
      {"overlong NUL in 2 bytes", "\xC0\x80"},
      {"overlong U+007F in 2 bytes", "\xC1\xBF"},
      {"overlong '/' in 3 bytes", "\xE0\x80\xAF"},
      {"overlong U+07FF in 3 bytes", "\xE0\x9F\xBF"},
      {"overlong '/' in 4 bytes", "\xF0\x80\x80\xAF"},
      {"overlong U+FFFF in 4 bytes", "\xF0\x8F\xBF\xBF"},
      {"high surrogate U+D800", "\xED\xA0\x80"},
      {"low surrogate U+DFFF", "\xED\xBF\xBF"},
      {"surrogate pair as CESU-8", "\xED\xA0\xBD\xED\xB8\x80"},
      {"above U+10FFFF", "\xF4\x90\x80\x80"},
      {"0xF5 lead", "\xF5\x80\x80\x80"},
      {"truncated 2-byte at end", "abc\xC3"},
      {"truncated 3-byte at end", "abc\xE2\x82"},
      {"truncated 4-byte at end", "abc\xF0\x9F\x98"},
      {"truncated 3-byte mid-string", "\xE2\x82x"},
      {"continuation replaced by ASCII", "\xC3(a"},
  };
  for (const BadUtf8Case& c : cases) {
    EXPECT_FALSE(IsValidUtf8(c.bytes)) << c.what;
    Status st = ValidateKeyName(c.bytes);
    EXPECT_TRUE(st.IsInvalidArgument()) << c.what;
    EXPECT_NE(st.message().find("UTF-8"), std::string::npos) << c.what << ": " << st.message();
  }
}

TEST(IsValidUtf8Test, AcceptsBoundaryCodePoints) {
  for (const std::string& s : {std::string(), std::string("\x7F"), std::string("\xC2\x80"),
                               std::string("\xDF\xBF"), std::string("\xE0\xA0\x80"),
                               std::string("\xED\x9F\xBF"),  // U+D7FF, just below surrogates
                               std::string("\xEE\x80\x80"),  // U+E000, just above
                               std::string("\xEF\xBF\xBF"), std::string("\xF0\x90\x80\x80"),
                               std::string("\xF4\x8F\xBF\xBF")}) {
    EXPECT_TRUE(IsValidUtf8(s)) << ::testing::PrintToString(s);
  }
}

// ---------------------------------------------------------------- numbers

TEST(ParseNumberTest, Accepts) {
  struct Case {
    std::string text;
    double want;
  };
  for (const Case& c : std::vector<Case>{{"21.5", 21.5},
                                         {"-3", -3},
                                         {"+7", 7},
                                         {"1e3", 1000},
                                         {"1E-2", 0.01},
                                         {" 4 ", 4},
                                         {"\t\r\n4.25\n", 4.25},
                                         {".5", 0.5},
                                         {"0", 0},
                                         {"007", 7},
                                         {"1.7976931348623157e308", 1.7976931348623157e308}}) {
    Result<double> r = ParseNumber(c.text);
    ASSERT_TRUE(r.ok()) << "'" << c.text << "': " << r.status().ToString();
    EXPECT_EQ(*r, c.want) << c.text;
  }
}

TEST(ParseNumberTest, Refuses) {
  for (const std::string& text : std::vector<std::string>{
           "",         " ",    "\t\n",  "abc",   "1.5x",  "1.5 x",  "1 2",
           "x1",       "nan",  "NaN",   "-nan",  "inf",   "-inf",   "+Infinity",
           "infinity", "0x10", "0X1p3", "-0x10", "1e999", "-1e999", "-",
           "+",        ".",    "e3",    "1e",    "--1",   "1,5",    std::string("1\0", 2)}) {
    Result<double> r = ParseNumber(text);
    EXPECT_FALSE(r.ok()) << "'" << text << "' gave " << (r.ok() ? *r : 0.0);
    if (!r.ok()) {
      EXPECT_TRUE(r.status().IsInvalidArgument()) << text;
    }
  }
}

TEST(ParseNumberTest, MessageQuotesTheTextShortened) {
  std::string long_text(1000, 'z');
  Result<double> r = ParseNumber(long_text);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'zzzz"), std::string::npos);
  EXPECT_LT(r.status().message().size(), 200u) << "a long payload must not become a long message";
}

// ---------------------------------------------------------------- booleans

TEST(ParseBooleanTest, Vocabulary) {
  struct Case {
    const char* text;
    bool want;
  };
  for (const Case& c :
       std::vector<Case>{{"true", true},     {"TRUE", true}, {"True", true},    {"1", true},
                         {"on", true},       {"ON", true},   {"yes", true},     {"Yes", true},
                         {"open", true},     {"OPEN", true}, {" on\n", true},   {"false", false},
                         {"FALSE", false},   {"0", false},   {"off", false},    {"Off", false},
                         {"no", false},      {"NO", false},  {"closed", false}, {"Closed", false},
                         {"\tfalse ", false}}) {
    Result<bool> r = ParseBoolean(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(*r, c.want) << c.text;
  }
}

TEST(ParseBooleanTest, ConfiguredWordsReplaceTheDefaults) {
  BooleanWords words;
  words.true_words = {"an"};
  words.false_words = {"aus"};
  EXPECT_TRUE(*ParseBoolean("AN", words));
  EXPECT_FALSE(*ParseBoolean("aus", words));
  EXPECT_TRUE(*ParseBoolean("true", words));  // always read
  EXPECT_FALSE(*ParseBoolean("0", words));
  Result<bool> on = ParseBoolean("on", words);
  ASSERT_FALSE(on.ok());
  EXPECT_NE(on.status().message().find("an/aus"), std::string::npos) << on.status().message();
  EXPECT_TRUE(*CoerceValue(KeyType::kBoolean, InputValue(std::string("an")), words) == Value(true));
}

TEST(ParseBooleanTest, RefusesEverythingElse) {
  for (const char* text : {"", " ", "2", "-1", "1.0", "0.0", "t", "f", "y", "n", "truee", "nope",
                           "enabled", "close", "opened", "o n", "10"}) {
    Result<bool> r = ParseBoolean(text);
    EXPECT_FALSE(r.ok()) << "'" << text << "'";
    if (!r.ok()) {
      EXPECT_TRUE(r.status().IsInvalidArgument());
      EXPECT_NE(r.status().message().find("true/false"), std::string::npos)
          << "the message says what was expected: " << r.status().message();
    }
  }
}

// ---------------------------------------------------------------- types

TEST(KeyTypeTest, NamesRoundTrip) {
  for (KeyType t : {KeyType::kNumeric, KeyType::kCounter, KeyType::kBoolean, KeyType::kUptime,
                    KeyType::kString}) {
    Result<KeyType> parsed = ParseKeyType(KeyTypeName(t));
    ASSERT_TRUE(parsed.ok()) << KeyTypeName(t);
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_STREQ(KeyTypeName(KeyType::kNumeric), "numeric");
  EXPECT_STREQ(KeyTypeName(KeyType::kUptime), "uptime");
  EXPECT_TRUE(ParseKeyType("Numeric").status().IsInvalidArgument());
  EXPECT_TRUE(ParseKeyType("").status().IsInvalidArgument());
  EXPECT_TRUE(ParseKeyType("gauge").status().IsInvalidArgument());
}

TEST(GuessTypeTest, Table) {
  struct Case {
    const char* what;
    InputValue input;
    KeyType want;
  };
  const std::vector<Case> cases = {
      {"JSON number", InputValue(21.5), KeyType::kNumeric},
      {"JSON 0", InputValue(0.0), KeyType::kNumeric},
      {"JSON true", InputValue(true), KeyType::kBoolean},
      {"JSON false", InputValue(false), KeyType::kBoolean},
      {"text number", InputValue(std::string("21.5")), KeyType::kNumeric},
      {"text with spaces", InputValue(std::string(" -3 ")), KeyType::kNumeric},
      {"text 1 is a number, not a boolean", InputValue(std::string("1")), KeyType::kNumeric},
      {"text 0", InputValue(std::string("0")), KeyType::kNumeric},
      {"text true", InputValue(std::string("true")), KeyType::kBoolean},
      {"text FALSE", InputValue(std::string("FALSE")), KeyType::kBoolean},
      {"text ' true '", InputValue(std::string(" true ")), KeyType::kBoolean},
      // Only true/false make a boolean key; the rest of the vocabulary is text.
      {"text on", InputValue(std::string("on")), KeyType::kString},
      {"text open", InputValue(std::string("open")), KeyType::kString},
      {"text yes", InputValue(std::string("yes")), KeyType::kString},
      {"text hello", InputValue(std::string("hello")), KeyType::kString},
      {"text nan", InputValue(std::string("nan")), KeyType::kString},
      {"text 0x10", InputValue(std::string("0x10")), KeyType::kString},
      {"empty text", InputValue(std::string()), KeyType::kString},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(GuessType(c.input), c.want) << c.what << ": got " << KeyTypeName(GuessType(c.input));
  }
}

// ---------------------------------------------------------------- coercion

struct CoerceCase {
  const char* what;
  KeyType type;
  InputValue input;
  std::optional<Value> want;  // nullopt: refused
};

std::string Describe(const Value& v) {
  if (std::holds_alternative<double>(v)) return "double " + ValueToText(v);
  if (std::holds_alternative<bool>(v)) return "bool " + ValueToText(v);
  return "string '" + ValueToText(v) + "'";
}

TEST(CoerceValueTest, Table) {
  const double kNan = std::numeric_limits<double>::quiet_NaN();
  const double kInf = std::numeric_limits<double>::infinity();
  const std::vector<CoerceCase> cases = {
      // numeric and counter: numbers only.
      {"numeric from number", KeyType::kNumeric, InputValue(21.5), Value(21.5)},
      {"numeric from text", KeyType::kNumeric, InputValue(std::string(" 21.5 ")), Value(21.5)},
      {"numeric from text 1e3", KeyType::kNumeric, InputValue(std::string("1e3")), Value(1000.0)},
      {"numeric from bool", KeyType::kNumeric, InputValue(true), std::nullopt},
      {"numeric from text true", KeyType::kNumeric, InputValue(std::string("true")), std::nullopt},
      {"numeric from abc", KeyType::kNumeric, InputValue(std::string("abc")), std::nullopt},
      {"numeric from NaN", KeyType::kNumeric, InputValue(kNan), std::nullopt},
      {"numeric from inf", KeyType::kNumeric, InputValue(kInf), std::nullopt},
      {"numeric from -inf", KeyType::kNumeric, InputValue(-kInf), std::nullopt},
      {"counter from number", KeyType::kCounter, InputValue(12345.0), Value(12345.0)},
      {"counter from text", KeyType::kCounter, InputValue(std::string("7")), Value(7.0)},
      {"counter from bool", KeyType::kCounter, InputValue(false), std::nullopt},
      {"counter from text", KeyType::kCounter, InputValue(std::string("lots")), std::nullopt},
      // boolean and uptime: booleans, 0/1 and the vocabulary.
      {"boolean from true", KeyType::kBoolean, InputValue(true), Value(true)},
      {"boolean from false", KeyType::kBoolean, InputValue(false), Value(false)},
      {"boolean from 1", KeyType::kBoolean, InputValue(1.0), Value(true)},
      {"boolean from 0", KeyType::kBoolean, InputValue(0.0), Value(false)},
      {"boolean from -0", KeyType::kBoolean, InputValue(-0.0), Value(false)},
      {"boolean from 2", KeyType::kBoolean, InputValue(2.0), std::nullopt},
      {"boolean from 0.5", KeyType::kBoolean, InputValue(0.5), std::nullopt},
      {"boolean from NaN", KeyType::kBoolean, InputValue(kNan), std::nullopt},
      {"boolean from on", KeyType::kBoolean, InputValue(std::string("on")), Value(true)},
      {"boolean from Closed", KeyType::kBoolean, InputValue(std::string("Closed")), Value(false)},
      {"boolean from maybe", KeyType::kBoolean, InputValue(std::string("maybe")), std::nullopt},
      {"uptime from true", KeyType::kUptime, InputValue(true), Value(true)},
      {"uptime from 0", KeyType::kUptime, InputValue(0.0), Value(false)},
      {"uptime from yes", KeyType::kUptime, InputValue(std::string("yes")), Value(true)},
      {"uptime from 3", KeyType::kUptime, InputValue(3.0), std::nullopt},
      {"uptime from text", KeyType::kUptime, InputValue(std::string("up")), std::nullopt},
      // string: anything, as canonical text; only valid UTF-8.
      {"string from text", KeyType::kString, InputValue(std::string("armed away")),
       Value(std::string("armed away"))},
      {"string keeps spaces", KeyType::kString, InputValue(std::string(" x ")),
       Value(std::string(" x "))},
      {"string from empty", KeyType::kString, InputValue(std::string()), Value(std::string())},
      {"string from true", KeyType::kString, InputValue(true), Value(std::string("true"))},
      {"string from false", KeyType::kString, InputValue(false), Value(std::string("false"))},
      {"string from 21.5", KeyType::kString, InputValue(21.5), Value(std::string("21.5"))},
      {"string from 1000", KeyType::kString, InputValue(1000.0), Value(std::string("1000"))},
      {"string from bad UTF-8", KeyType::kString, InputValue(std::string("a\xFF")), std::nullopt},
      {"string from surrogate", KeyType::kString, InputValue(std::string("\xED\xA0\x80")),
       std::nullopt},
  };
  for (const CoerceCase& c : cases) {
    Result<Value> r = CoerceValue(c.type, c.input);
    if (!c.want) {
      EXPECT_FALSE(r.ok()) << c.what << " was accepted as " << Describe(*r);
      if (!r.ok()) {
        EXPECT_TRUE(r.status().IsInvalidArgument()) << c.what;
      }
      continue;
    }
    ASSERT_TRUE(r.ok()) << c.what << ": " << r.status().ToString();
    EXPECT_EQ(r->index(), c.want->index()) << c.what << ": got " << Describe(*r);
    EXPECT_EQ(*r, *c.want) << c.what << ": got " << Describe(*r);
  }
}

TEST(CoerceValueTest, RefusalNamesTheKeyType) {
  Result<Value> r = CoerceValue(KeyType::kCounter, InputValue(true));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("counter"), std::string::npos) << r.status().message();
  r = CoerceValue(KeyType::kUptime, InputValue(5.0));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("uptime"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("0 or 1"), std::string::npos) << r.status().message();
}

// ---------------------------------------------------------------- text

TEST(ValueToTextTest, Table) {
  struct Case {
    Value value;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{{Value(21.5), "21.5"},
                                         {Value(1000.0), "1000"},
                                         {Value(-3.0), "-3"},
                                         {Value(0.0), "0"},
                                         {Value(0.1), "0.1"},
                                         {Value(1.0 / 3), "0.3333333333333333"},
                                         {Value(1e21), "1e+21"},
                                         {Value(true), "true"},
                                         {Value(false), "false"},
                                         {Value(std::string("hi there")), "hi there"},
                                         {Value(std::string()), ""}}) {
    EXPECT_EQ(ValueToText(c.value), c.want);
  }
}

TEST(ValueToTextTest, NumbersRoundTripThroughParseNumber) {
  for (double d : {21.5, 0.1, 1.0 / 3, -2.5e-300, 6.02214076e23, 1.7976931348623157e308,
                   4.9406564584124654e-324, 123456789012345.0}) {
    std::string text = ValueToText(Value(d));
    Result<double> back = ParseNumber(text);
    ASSERT_TRUE(back.ok()) << text;
    EXPECT_EQ(*back, d) << text;
  }
}

}  // namespace
}  // namespace komoku::store

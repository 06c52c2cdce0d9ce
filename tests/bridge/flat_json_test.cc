// FlatJson against its oracle, the nlohmann::json DOM of the same text:
// the same texts are refused, and every object answers with the same
// members (sorted, the last of a repeated name), kinds, type names and
// values. Hand-written edge cases, then random documents from a replayable
// seed (KOMOKU_TEST_SEED), some of them broken on purpose.
#include "bridge/flat_json.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace komoku::bridge {
namespace {

using nlohmann::json;
using Kind = FlatJson::Kind;

Kind KindOf(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return Kind::kNull;
    case json::value_t::boolean:
      return Kind::kBoolean;
    case json::value_t::number_integer:
      return Kind::kInteger;
    case json::value_t::number_unsigned:
      return Kind::kUnsigned;
    case json::value_t::number_float:
      return Kind::kFloat;
    case json::value_t::string:
      return Kind::kString;
    case json::value_t::object:
      return Kind::kObject;
    default:
      return Kind::kArray;
  }
}

// Compares node `i` of `flat` with `dom`, recursively through objects.
void ExpectSame(const json& dom, const FlatJson& flat, FlatJson::Index i, const std::string& at) {
  SCOPED_TRACE(at);
  ASSERT_EQ(static_cast<int>(flat.kind(i)), static_cast<int>(KindOf(dom)));
  EXPECT_STREQ(flat.TypeName(i), dom.type_name());
  EXPECT_EQ(flat.IsScalar(i), dom.is_primitive());
  switch (flat.kind(i)) {
    case Kind::kBoolean:
      EXPECT_EQ(flat.Boolean(i), dom.get<bool>());
      break;
    case Kind::kInteger:
    case Kind::kUnsigned:
    case Kind::kFloat:
      EXPECT_EQ(flat.Number(i), dom.get<double>());
      EXPECT_EQ(flat.NumberText(i), dom.dump());
      break;
    case Kind::kString:
      EXPECT_EQ(flat.String(i), dom.get_ref<const std::string&>());
      break;
    case Kind::kObject: {
      std::vector<FlatJson::Index> members = {42};  // appended to, not replaced
      flat.AppendMembersSorted(i, &members);
      ASSERT_EQ(members.size(), dom.size() + 1);
      size_t n = 1;
      for (auto it = dom.begin(); it != dom.end(); ++it, ++n) {
        EXPECT_EQ(flat.Name(members[n]), it.key());
        EXPECT_EQ(flat.Member(i, it.key()), members[n]) << it.key();
        ExpectSame(it.value(), flat, members[n], at + "/" + it.key());
      }
      EXPECT_EQ(flat.Member(i, "\x01not a member"), FlatJson::kNone);
      break;
    }
    case Kind::kNull:
    case Kind::kArray:
      EXPECT_EQ(flat.Member(i, ""), FlatJson::kNone);
      break;
  }
}

// Parses `text` both ways (with one FlatJson reused for every text, as
// mapping reuses it) and compares.
void Check(FlatJson& flat, const std::string& text) {
  SCOPED_TRACE("text: " + text);
  json dom = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const bool ok = flat.Parse(text);
  ASSERT_EQ(ok, !dom.is_discarded());
  if (ok) ExpectSame(dom, flat, FlatJson::kRoot, "");
}

TEST(FlatJsonTest, AnswersAsTheDomDoes) {
  const char* const cases[] = {
      // Scalars at the top, numbers of every kind.
      "21.43",
      "-7",
      "0",
      "-0",
      "18446744073709551615",
      "-9223372036854775808",
      "1e5",
      "1.0",
      "2.5E-3",
      "true",
      "false",
      "null",
      R"("text")",
      R"("")",
      " \n 12 \t",
      // Objects: nested, empty, with arrays (skipped inside) and nulls.
      R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})",
      R"({"Time":"2026-11-20T10:00:00","ENERGY":{"Total":12.345,"Power":57,"Voltage":231}})",
      R"({})",
      R"({"a":{}})",
      R"({"a":{"b":{"c":{"d":1}}}})",
      R"({"list":[1,{"x":{"y":2}},[3,[4]],"s"],"after":{"k":"v"},"n":null})",
      R"([{"a":1},{"a":2}])",
      R"([])",
      // A name given twice: the last value counts, also over an object or array.
      R"({"a":1,"a":2})",
      R"({"a":{"x":1},"b":0,"a":{"y":2}})",
      R"({"a":[1],"a":"s"})",
      R"({"a":"s","a":{"z":[{"q":1}]}})",
      R"({"d":{"k":1,"k":null},"d":{"k":3,"k":4}})",
      // Escapes in names and strings; names that sort before and after.
      R"({"a\"b":1,"c\\d":"e\nf","\u00e9t\u00e9":"caf\u00e9","\ud83d\ude00":"\u0000x"})",
      R"({"B":1,"a":2,"A":3,"b":4,"":5,"a.b":6,"a/b":7,"~":8})",
      R"({"Z":{"y":1},"Z.y":2})",
      // Refused as json::parse refuses them.
      "",
      " ",
      "{",
      R"({"a":1,})",
      R"({"a" 1})",
      "[1,]",
      "tru",
      "nul",
      "01",
      "1.",
      ".5",
      "+1",
      "1e999",
      "-1e999",
      "NaN",
      R"({"a":1} x)",
      R"({"a":1}{})",
      R"("\ud800")",
      "\"\xff\"",
      "{\"\xc3\":1}",
      R"({'a':1})",
      "/* c */ 1",
      R"("tab	in string")",
  };
  FlatJson flat;
  for (const char* text : cases) Check(flat, text);
}

// Random documents: small name alphabets make repeated names (and so
// duplicates, and names that share prefixes) common.
class RandomJson {
 public:
  explicit RandomJson(uint32_t seed) : rng_(seed) {}

  std::string Document() {
    std::string out;
    Value(&out, 0, /*top=*/true);
    if (Chance(8)) Break(&out);
    return out;
  }

 private:
  bool Chance(int one_in) { return std::uniform_int_distribution<int>(0, one_in - 1)(rng_) == 0; }
  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  void Name(std::string* out) {
    static const char* const kNames[] = {"a",  "b",   "A",       "temperature", "a.b", "",
                                         "é",  "x/y", "t~0",     "state",       "Z",   "\\\"q",
                                         "ab", "a b", "\\u00e9", "\\u0000"};
    *out += '"';
    *out += kNames[Pick(16)];
    *out += '"';
  }

  void Value(std::string* out, int depth, bool top) {
    const int kinds = depth > 5 ? 6 : 8;
    switch (top ? 6 + Pick(2) : Pick(kinds)) {
      case 0:
        *out += "null";
        break;
      case 1:
        *out += Chance(2) ? "true" : "false";
        break;
      case 2: {
        static const char* const kNumbers[] = {"0",
                                               "-1",
                                               "97",
                                               "21.43",
                                               "1e3",
                                               "-2.5E-2",
                                               "1.0",
                                               "120",
                                               "-0.0",
                                               "18446744073709551615",
                                               "1795306000000",
                                               "-9223372036854775808"};
        *out += kNumbers[Pick(12)];
        break;
      }
      case 3:
      case 4: {
        static const char* const kStrings[] = {
            "\"ON\"",     "\"\"", "\"caf\\u00e9\"", "\"a\\\"b\"", "\"2026-11-20T10:00:00\"",
            "\"\\n\\t\"", "\"é\""};
        *out += kStrings[Pick(7)];
        break;
      }
      case 5:
        *out += std::to_string(Pick(1000));
        break;
      case 6: {
        *out += '{';
        const int n = Pick(6);
        for (int i = 0; i < n; ++i) {
          if (i) *out += ',';
          Name(out);
          *out += Chance(3) ? " : " : ":";
          Value(out, depth + 1, false);
        }
        *out += '}';
        break;
      }
      default: {
        *out += '[';
        const int n = Pick(4);
        for (int i = 0; i < n; ++i) {
          if (i) *out += ',';
          Value(out, depth + 1, false);
        }
        *out += ']';
        break;
      }
    }
  }

  // Cuts the text, or puts a stray character into it.
  void Break(std::string* text) {
    if (text->empty()) return;
    const size_t at = static_cast<size_t>(Pick(static_cast<int>(text->size())));
    static const char kStray[] = {',', '}', ']', '"', ':', 'x', '\\', '{'};
    if (Chance(2)) {
      text->resize(at);
    } else {
      text->insert(text->begin() + static_cast<std::ptrdiff_t>(at), kStray[Pick(8)]);
    }
  }

  std::mt19937 rng_;
};

TEST(FlatJsonTest, RandomDocumentsAnswerAsTheDomDoes) {
  uint32_t seed = 20261122;
  if (const char* s = std::getenv("KOMOKU_TEST_SEED")) seed = static_cast<uint32_t>(std::stoul(s));
  SCOPED_TRACE("KOMOKU_TEST_SEED=" + std::to_string(seed));
  RandomJson gen(seed);
  FlatJson flat;
  for (int i = 0; i < 5000; ++i) {
    Check(flat, gen.Document());
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace komoku::bridge

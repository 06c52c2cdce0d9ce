// The mapping engine on its own: filters, key templates, fields, payload
// formats, types, vocabularies, times, availability, continue, refusals.
#include "bridge/mapping.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace komoku::bridge {
namespace {

using store::InputValue;
using store::KeyType;

constexpr int64_t kNow = 1795306000000;  // 2026-11-22

std::unique_ptr<MappingEngine> Engine(std::vector<MappingRule> rules) {
  auto e = MappingEngine::Compile(std::move(rules));
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e.value()) : nullptr;
}

MappingRule Rule(std::string topic, std::string key = "") {
  MappingRule r;
  r.topics = {std::move(topic)};
  r.key = std::move(key);
  return r;
}

std::string CompileError(MappingRule r) {
  auto e = MappingEngine::Compile({std::move(r)});
  return e.ok() ? "" : e.status().message();
}

// "key=value" lines, values in their JSON form with their C++ kind:
// 21.5 (d), true (b), "x" (s).
std::string Show(const MappingResult& r) {
  if (r.refusal) return "refused " + r.refusal->reason + ": " + r.refusal->message;
  std::string out;
  for (const MappedChange& c : r.changes) {
    out += c.key + "=";
    if (auto* d = std::get_if<double>(&c.value)) {
      std::string n = std::to_string(*d);
      n.erase(n.find_last_not_of('0') + 1);
      if (n.back() == '.') n.pop_back();
      out += n + "(d)";
    } else if (auto* b = std::get_if<bool>(&c.value)) {
      out += *b ? "true(b)" : "false(b)";
    } else {
      out += "\"" + std::get<std::string>(c.value) + "\"(s)";
    }
    if (c.time_ms) out += "@" + std::to_string(*c.time_ms);
    out += ";";
  }
  return out;
}

TEST(MappingFilterTest, MatchesLikeMqtt) {
  struct Case {
    const char* filter;
    const char* topic;
    bool match;
  };
  const Case cases[] = {
      {"a/b", "a/b", true},    {"a/b", "a/c", false},    {"a/+", "a/b", true},
      {"a/+", "a/b/c", false}, {"a/+", "a", false},      {"a/+", "a/", true},
      {"a/#", "a", true},      {"a/#", "a/b/c", true},   {"#", "a/b", true},
      {"+/+", "a/b", true},    {"+/b/#", "x/b", true},   {"+/b/#", "x/c/d", false},
      {"#", "$SYS/x", false},  {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true},
      {"a/b", "a/b/", false},  {"/+", "/x", true},       {"+", "a", true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(TopicMatchesFilter(c.filter, c.topic), c.match) << c.filter << " vs " << c.topic;
  }
}

TEST(MappingFilterTest, SeveralTopicsAndExclude) {
  MappingRule r = Rule("zigbee2mqtt/+", "{1}");
  r.topics.push_back("z2m/+");
  r.exclude = {"zigbee2mqtt/bridge/#", "z2m/$*"};
  auto e = Engine({r});
  EXPECT_EQ(Show(e->Map("zigbee2mqtt/lamp", "1", kNow)), "lamp=1(d);");
  EXPECT_EQ(Show(e->Map("z2m/lamp", "2", kNow)), "lamp=2(d);");
  EXPECT_TRUE(e->Map("zigbee2mqtt/bridge", "x", kNow).matched.empty());
  EXPECT_TRUE(e->Map("z2m/$state", "x", kNow).matched.empty());
  EXPECT_TRUE(e->Map("other/lamp", "1", kNow).matched.empty());
  EXPECT_EQ(e->Filters(), (std::vector<std::string>{"zigbee2mqtt/+", "z2m/+"}));
}

// Komoku's extensions: a # inside a filter is one or more levels (then only
// literal levels); a level ending in * in a rule's topic is a wildcard of
// its own ({N} is the whole level) subscribed as +.
TEST(MappingFilterTest, HashInsideAndPrefixLevels) {
  auto e = Engine(
      {Rule("z/#/availability", "{1}:a"), Rule("stat/+/POWER*", "{1}/{2}"), Rule("z/#", "{1}")});
  EXPECT_EQ(Show(e->Map("z/lamp/availability", "1", kNow)), "lamp:a=1(d);");
  EXPECT_EQ(Show(e->Map("z/first/floor/lamp/availability", "1", kNow)), "first/floor/lamp:a=1(d);");
  EXPECT_EQ(Show(e->Map("z/availability", "1", kNow)), "availability=1(d);");  // # is >= 1 level
  EXPECT_EQ(Show(e->Map("z/a/availability/x", "1", kNow)), "a/availability/x=1(d);");
  EXPECT_EQ(Show(e->Map("stat/plug/POWER", "1", kNow)), "plug/POWER=1(d);");
  EXPECT_EQ(Show(e->Map("stat/plug/POWER12", "1", kNow)), "plug/POWER12=1(d);");
  EXPECT_TRUE(e->Map("stat/plug/RESULT", "1", kNow).matched.empty());
  EXPECT_TRUE(e->Map("stat/plug/POWER/x", "1", kNow).matched.empty());
  EXPECT_EQ(e->Filters(), (std::vector<std::string>{"z/#", "stat/+/+"}));

  MappingRule ex = Rule("z/#", "{1}");
  ex.exclude = {"z/#/set", "z/bridge/#"};
  auto x = Engine({ex});
  EXPECT_TRUE(x->Map("z/a/b/set", "1", kNow).matched.empty());
  EXPECT_TRUE(x->Map("z/bridge/state", "1", kNow).matched.empty());
  EXPECT_EQ(Show(x->Map("z/a/b/settings", "1", kNow)), "a/b/settings=1(d);");
}

TEST(MappingFilterTest, BadFiltersAreRefused) {
  EXPECT_NE(CompileError(Rule("a/#/+/b")), "");
  EXPECT_NE(CompileError(Rule("a/#/b/#")), "");
  EXPECT_NE(CompileError(Rule("a/b+")), "");
  EXPECT_NE(CompileError(Rule("")), "");
  EXPECT_NE(CompileError(MappingRule{}).find("topic"), std::string::npos);
}

TEST(MappingTemplateTest, WildcardsTopicAndField) {
  auto e = Engine({Rule("home/+/+/#", "{2}@{1}/{3}|{topic}")});
  EXPECT_EQ(Show(e->Map("home/kitchen/temp/a/b", "1", kNow)),
            "temp@kitchen/a/b|home/kitchen/temp/a/b=1(d);");
  // # matching the parent level captures nothing.
  EXPECT_EQ(Show(e->Map("home/kitchen/temp", "1", kNow)), "temp@kitchen/|home/kitchen/temp=1(d);");
  auto def = Engine({Rule("x/+")});
  EXPECT_EQ(Show(def->Map("x/y", "on", kNow)), "x/y=\"on\"(s);");
}

TEST(MappingTemplateTest, BadTemplatesAreRefused) {
  EXPECT_NE(CompileError(Rule("a/+", "{2}")).find("has 1 wildcards"), std::string::npos);
  EXPECT_NE(CompileError(Rule("a/+", "{0}")).find("unknown placeholder"), std::string::npos);
  EXPECT_NE(CompileError(Rule("a/+", "{name}")).find("unknown placeholder"), std::string::npos);
  EXPECT_NE(CompileError(Rule("a/+", "{1")).find("without '}'"), std::string::npos);
  EXPECT_NE(CompileError(Rule("a/+", "1}")).find("without '{'"), std::string::npos);
  MappingRule several = Rule("a/+", "{1}");
  several.all_fields = true;
  EXPECT_NE(CompileError(several).find("needs {field}"), std::string::npos);
  MappingRule named = Rule("a/+", "{1}");
  named.name = "mine";
  named.where = "k.yaml:7";
  named.key = "{9}";
  EXPECT_EQ(CompileError(named).rfind("k.yaml:7: mappings[0].key: ", 0), 0u) << CompileError(named);
}

// Fields come in the order nlohmann::json keeps them: sorted by name.
TEST(MappingFieldsTest, StarExpandsNestedScalars) {
  MappingRule r = Rule("t/+", "{1}/{field}");
  r.all_fields = true;
  r.ignore = {"linkquality", "update", "/a/skip"};
  auto e = Engine({r});
  EXPECT_EQ(Show(e->Map("t/d",
                        R"({"temperature":21.43,"on":true,"mode":"eco","linkquality":120,)"
                        R"("AM2301":{"Temperature":20.1,"Humidity":40},"update":{"state":"idle"},)"
                        R"("list":[1,2],"gone":null,"a":{"skip":1,"keep":2}})",
                        kNow)),
            "d/AM2301.Humidity=40(d);d/AM2301.Temperature=20.1(d);d/a.keep=2(d);"
            "d/mode=\"eco\"(s);d/on=true(b);d/temperature=21.43(d);");
}

TEST(MappingFieldsTest, MapOfPathsToSuffixes) {
  MappingRule r = Rule("tele/+/SENSOR", "{1}/{field}");
  r.fields = {{"ENERGY.Total", "energy"},
              {"/ENERGY/Power", "power"},
              {"ENERGY.Missing", "x"},
              {"Plain", ""}};
  auto e = Engine({r});
  EXPECT_EQ(
      Show(e->Map("tele/p/SENSOR", R"({"ENERGY":{"Total":1.5,"Power":57},"Plain":"y"})", kNow)),
      "p/energy=1.5(d);p/power=57(d);p/Plain=\"y\"(s);");
  // A field that is an object, a scalar payload, and no JSON at all.
  EXPECT_EQ(Show(e->Map("tele/p/SENSOR", R"({"ENERGY":{"Total":{"a":1}}})", kNow)).substr(0, 19),
            "refused not_scalar:");
  EXPECT_EQ(Show(e->Map("tele/p/SENSOR", "21", kNow)).substr(0, 19), "refused not_object:");
  EXPECT_EQ(Show(e->Map("tele/p/SENSOR", "{bad", kNow)).substr(0, 17), "refused bad_json:");
  // A single mapped field may go to a key without {field}.
  MappingRule one = Rule("tele/+/SENSOR", "{1}/power");
  one.fields = {{"ENERGY.Power", ""}};
  EXPECT_EQ(Show(Engine({one})->Map("tele/p/SENSOR", R"({"ENERGY":{"Power":5}})", kNow)),
            "p/power=5(d);");
}

TEST(MappingFieldsTest, JsonPointerEscapes) {
  MappingRule r = Rule("t", "k/{field}");
  r.fields = {{"/a~1b/c~0d", "x"}};
  EXPECT_EQ(Show(Engine({r})->Map("t", R"({"a/b":{"c~d":3}})", kNow)), "k/x=3(d);");
  r.fields = {{"/a~2", "x"}};
  EXPECT_NE(CompileError(r).find("escape"), std::string::npos);
}

// The payload is read by SAX (not into a DOM), but answers as the DOM did:
// a name given twice counts with its last value, arrays are never entered,
// escapes are undone before names become keys.
TEST(MappingFieldsTest, EdgesOfJsonPayloads) {
  MappingRule star = Rule("t", "k/{field}");
  star.all_fields = true;
  auto e = Engine({star});
  // Arrays (with objects inside them) are skipped, at any depth.
  EXPECT_EQ(
      Show(e->Map("t", R"({"a":[{"b":1},[2]],"c":{"d":[{"e":{"f":3}}],"g":4},"h":[]})", kNow)),
      "k/c.g=4(d);");
  // Duplicates: the last value, in the place of its name; also when the
  // last is an array (skipped) or an object (its members), or null.
  EXPECT_EQ(Show(e->Map("t", R"({"t":1,"s":"x","t":2})", kNow)), "k/s=\"x\"(s);k/t=2(d);");
  EXPECT_EQ(Show(e->Map("t", R"({"t":1,"t":[5]})", kNow)), "");
  EXPECT_EQ(Show(e->Map("t", R"({"t":{"a":1},"t":{"b":2}})", kNow)), "k/t.b=2(d);");
  EXPECT_EQ(Show(e->Map("t", R"({"t":1,"t":null})", kNow)), "");
  // Escaped names and values; a name that becomes a wildcard is refused.
  EXPECT_EQ(Show(e->Map("t", R"({"caf\u00e9":"\u00e9t\u00e9","a\"b":"\u0031"})", kNow)),
            "k/a\"b=1(d);k/café=\"été\"(s);");
  EXPECT_EQ(Show(e->Map("t", R"({"\u002b":1})", kNow)).substr(0, 16), "refused bad_key:");
  EXPECT_EQ(Show(e->Map("t", R"({"\u0000":1})", kNow)).substr(0, 16), "refused bad_key:");
  // Names with dots and slashes are dotted as they are.
  EXPECT_EQ(Show(e->Map("t", R"({"a.b":1,"a":{"b":2},"x/y":3})", kNow)),
            "k/a.b=2(d);k/a.b=1(d);k/x/y=3(d);");

  MappingRule fields = Rule("t", "k/{field}");
  fields.fields = {
      {"/list", "l"}, {"/list/0", "first"}, {"/a.b", "dot"}, {"a.b", "nested"}, {"/t", "t"}};
  auto f = Engine({fields});
  // A path into an array is missing; one naming an array is refused.
  EXPECT_EQ(Show(f->Map("t", R"({"a.b":1,"a":{"b":2},"t":3,"t":4})", kNow)),
            "k/dot=1(d);k/nested=2(d);k/t=4(d);");
  // An array of scalars: one change per element, /1, /2, ...; a null
  // element skipped; an element that is an object or array refused.
  EXPECT_EQ(Show(f->Map("t", R"({"list":[1,null,"on",true]})", kNow)),
            "k/l/1=1(d);k/l/3=\"on\"(s);k/l/4=true(b);");
  EXPECT_EQ(Show(f->Map("t", R"({"list":[]})", kNow)), "");
  MappingResult r = f->Map("t", R"({"list":[1,[2]]})", kNow);
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->reason, "not_scalar");
  EXPECT_EQ(r.refusal->message, "field 'list[1]' is array, not a number, boolean or string");
  r = f->Map("t", R"({"list":[{"a":1}],"t":1})", kNow);
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->message, "field 'list[0]' is object, not a number, boolean or string");
  // "*" still skips arrays.
  MappingRule all = Rule("t", "k/{field}");
  all.all_fields = true;
  EXPECT_EQ(Show(Engine({all})->Map("t", R"({"a":[1,2],"b":{"c":[3]},"d":4})", kNow)), "k/d=4(d);");

  // A time field given twice: the last; a payload of one escaped string.
  MappingRule timed = Rule("t", "k/{field}");
  timed.all_fields = true;
  timed.time_field = "ts";
  EXPECT_EQ(Show(Engine({timed})->Map("t", R"({"ts":1,"v":1,"ts":1795300000})", kNow)),
            "k/v=1(d)@1795300000000;");
  EXPECT_EQ(Show(Engine({Rule("t")})->Map("t", R"("\u0032\u0031.5")", kNow)), "t=21.5(d);");

  // Strict words (Home Assistant's payload_on) read a number as JSON writes it.
  MappingRule strict = Rule("t", "k");
  strict.payload = PayloadFormat::kJson;
  strict.type = KeyType::kBoolean;
  strict.true_words = {"1"};
  strict.false_words = {"0"};
  strict.strict_words = true;
  auto st = Engine({strict});
  EXPECT_EQ(Show(st->Map("t", "1", kNow)), "k=true(b);");
  EXPECT_EQ(Show(st->Map("t", "0", kNow)), "k=false(b);");
  EXPECT_EQ(Show(st->Map("t", "1.0", kNow)).substr(0, 20), "refused bad_boolean:");
}

// Mapping into one result message after message (as the bridge does)
// gives what a new result gives, whatever the message before it was.
TEST(MappingFieldsTest, AReusedResultMapsAsANewOne) {
  MappingRule star = Rule("t/+", "{1}/{field}");
  star.all_fields = true;
  star.ignore = {"linkquality"};
  auto e = Engine({star, Rule("s/+", "{1}")});
  const std::pair<const char*, const char*> messages[] = {
      {"t/a", R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})"},
      {"t/b", R"({"x":{"y":{"z":1}},"list":[{"q":1}],"s":"text"})"},
      {"t/c", "{bad"},
      {"s/d", "heating"},
      {"t/e", R"({"a+b":1})"},
      {"t/f", R"({"n":1,"n":2})"},
      {"t/a", R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})"},
  };
  MappingResult reused;
  for (const auto& [topic, payload] : messages) {
    e->MapInto(topic, payload, kNow, &reused);
    EXPECT_EQ(Show(reused), Show(e->Map(topic, payload, kNow))) << topic << " " << payload;
  }
}

TEST(MappingPayloadTest, AutoJsonAndText) {
  auto e = Engine({Rule("t")});
  EXPECT_EQ(Show(e->Map("t", "21.50", kNow)), "t=21.5(d);");
  EXPECT_EQ(Show(e->Map("t", " heating\n", kNow)), "t=\"heating\"(s);");
  EXPECT_EQ(Show(e->Map("t", "\"21\"", kNow)), "t=21(d);");
  EXPECT_EQ(Show(e->Map("t", "true", kNow)), "t=\"true\"(s);");  // the store guesses boolean
  EXPECT_EQ(Show(e->Map("t", "{\"a\":1}", kNow)).substr(0, 19), "refused not_scalar:");
  EXPECT_EQ(Show(e->Map("t", "[1]", kNow)).substr(0, 19), "refused not_scalar:");
  EXPECT_EQ(Show(e->Map("t", "", kNow)), "");  // clears a retained message: nothing to store
  EXPECT_EQ(e->Map("t", "", kNow).refusal, std::nullopt);
  MappingRule text = Rule("t");
  text.payload = PayloadFormat::kText;
  EXPECT_EQ(Show(Engine({text})->Map("t", "{\"a\":1}", kNow)), "t=\"{\"a\":1}\"(s);");
  MappingRule json = Rule("t");
  json.payload = PayloadFormat::kJson;
  EXPECT_EQ(Show(Engine({json})->Map("t", "hello", kNow)).substr(0, 17), "refused bad_json:");
  EXPECT_EQ(Show(Engine({json})->Map("t", "12", kNow)), "t=12(d);");
  e->set_max_payload_bytes(4);
  EXPECT_EQ(Show(e->Map("t", "12345", kNow)).substr(0, 18), "refused too_large:");
}

TEST(MappingTypeTest, TypesVocabularyScaleOffset) {
  MappingRule b = Rule("b");
  b.type = KeyType::kBoolean;
  auto eb = Engine({b});
  EXPECT_EQ(Show(eb->Map("b", "ON", kNow)), "b=true(b);");
  EXPECT_EQ(Show(eb->Map("b", "off", kNow)), "b=false(b);");
  EXPECT_EQ(Show(eb->Map("b", "maybe", kNow)).substr(0, 20), "refused bad_boolean:");

  MappingRule v = Rule("v");
  v.true_words = {"open", "ON"};
  v.false_words = {"closed", "OFF"};
  auto ev = Engine({v});
  EXPECT_EQ(Show(ev->Map("v", "ON", kNow)), "v=true(b);");
  EXPECT_EQ(Show(ev->Map("v", "Closed", kNow)), "v=false(b);");
  EXPECT_EQ(Show(ev->Map("v", "ajar", kNow)), "v=\"ajar\"(s);");  // no type: stays text
  v.type = KeyType::kBoolean;
  EXPECT_EQ(Show(Engine({v})->Map("v", "ajar", kNow)).substr(0, 20), "refused bad_boolean:");
  EXPECT_NE(Show(Engine({v})->Map("v", "ajar", kNow)).find("open, ON / closed, OFF"),
            std::string::npos);

  MappingRule n = Rule("n");
  n.type = KeyType::kNumeric;
  n.scale = 0.1;
  n.offset = -1;
  auto en = Engine({n});
  EXPECT_EQ(Show(en->Map("n", "215", kNow)), "n=20.5(d);");
  EXPECT_EQ(Show(en->Map("n", "warm", kNow)).substr(0, 19), "refused wrong_type:");

  MappingRule s = Rule("s");
  s.type = KeyType::kString;
  EXPECT_EQ(Show(Engine({s})->Map("s", "21.5", kNow)), "s=\"21.5\"(s);");

  MappingRule bad = Rule("x");
  bad.type = KeyType::kNumeric;
  bad.true_words = {"on"};
  EXPECT_NE(CompileError(bad).find("boolean words"), std::string::npos);
  bad = Rule("x");
  bad.type = KeyType::kString;
  bad.scale = 2;
  EXPECT_NE(CompileError(bad).find("scale"), std::string::npos);
  bad = Rule("x");
  bad.true_words = {"a"};
  bad.false_words = {"a"};
  EXPECT_NE(CompileError(bad).find("both true and false"), std::string::npos);
  bad = Rule("x");
  bad.options = {{"max_time", 30}};
  EXPECT_NE(CompileError(bad).find("max_time"), std::string::npos);
  bad.type = KeyType::kUptime;
  EXPECT_EQ(CompileError(bad), "");
}

TEST(MappingTimeTest, EpochSecondsMillisecondsIso) {
  MappingRule r = Rule("t", "k/{field}");
  r.all_fields = true;
  r.time_field = "ts";
  auto e = Engine({r});
  EXPECT_EQ(Show(e->Map("t", R"({"ts":1795300000,"v":1})", kNow)), "k/v=1(d)@1795300000000;");
  EXPECT_EQ(Show(e->Map("t", R"({"ts":1795300000123,"v":1})", kNow)), "k/v=1(d)@1795300000123;");
  EXPECT_EQ(Show(e->Map("t", R"({"ts":"2026-11-20T10:00:00","v":1})", kNow)),
            "k/v=1(d)@1795168800000;");
  EXPECT_EQ(Show(e->Map("t", R"({"ts":"2026-11-20T10:00:00+01:00","v":1})", kNow)),
            "k/v=1(d)@1795165200000;");
  EXPECT_EQ(Show(e->Map("t", R"({"v":1})", kNow)), "k/v=1(d);");  // arrival time
  EXPECT_EQ(Show(e->Map("t", R"({"ts":"yesterday","v":1})", kNow)).substr(0, 17),
            "refused bad_time:");
  EXPECT_EQ(Show(e->Map("t", R"({"ts":[1],"v":1})", kNow)).substr(0, 17), "refused bad_time:");
  EXPECT_EQ(Show(e->Map("t", R"({"ts":-5,"v":1})", kNow)).substr(0, 17), "refused bad_time:");
}

// Tasmota before NTP has synced says "1970-01-01T00:00:23": a clock not set
// yet. Such a change takes the arrival time, flagged (the bridge counts it);
// 2000-01-01 itself is a time.
TEST(MappingTimeTest, ATimeBefore2000IsAClockNotSetYet) {
  MappingRule r = Rule("tele/+/SENSOR", "{1}/{field}");
  r.fields = {{"ENERGY.Power", "power"}};
  r.time_field = "Time";
  auto e = Engine({r});
  MappingResult m =
      e->Map("tele/plug1/SENSOR", R"({"Time":"1970-01-01T00:00:23","ENERGY":{"Power":57}})", kNow);
  EXPECT_EQ(Show(m), "plug1/power=57(d);");  // arrival time
  ASSERT_EQ(m.changes.size(), 1u);
  EXPECT_TRUE(m.changes[0].clock_unset);
  EXPECT_EQ(Show(e->Map("tele/plug1/SENSOR", R"({"Time":23,"ENERGY":{"Power":57}})", kNow)),
            "plug1/power=57(d);");
  m = e->Map("tele/plug1/SENSOR", R"({"Time":"2000-01-01T00:00:00","ENERGY":{"Power":57}})", kNow);
  EXPECT_EQ(Show(m), "plug1/power=57(d)@946684800000;");
  EXPECT_FALSE(m.changes[0].clock_unset);
}

TEST(MappingAvailabilityTest, OnlineOfflineLwtAndJsonState) {
  MappingRule r = Rule("+/status", "{1}/online");
  r.availability = true;
  auto e = Engine({r});
  EXPECT_EQ(Show(e->Map("dev/status", "online", kNow)), "dev/online=true(b);");
  EXPECT_EQ(Show(e->Map("dev/status", "Offline", kNow)), "dev/online=false(b);");
  EXPECT_EQ(Show(e->Map("dev/status", R"({"state":"online"})", kNow)), "dev/online=true(b);");
  EXPECT_EQ(Show(e->Map("dev/status", "lost", kNow)), "dev/online=false(b);");
  // Every Homie 4 $state other than ready.
  for (const char* state : {"init", "disconnected", "sleeping", "lost", "alert"}) {
    EXPECT_EQ(Show(e->Map("dev/status", state, kNow)), "dev/online=false(b);") << state;
  }
  EXPECT_EQ(Show(e->Map("dev/status", "perhaps", kNow)).substr(0, 20), "refused bad_boolean:");
  r.type = KeyType::kUptime;
  EXPECT_EQ(Show(Engine({r})->Map("dev/status", "ready", kNow)), "dev/online=true(b);");
  r.type = KeyType::kString;
  EXPECT_NE(CompileError(r).find("availability"), std::string::npos);
}

TEST(MappingRulesTest, FirstMatchWinsUnlessContinue) {
  MappingRule a = Rule("x/+", "a/{1}");
  MappingRule b = Rule("x/#", "b/{1}");
  auto e = Engine({a, b});
  EXPECT_EQ(Show(e->Map("x/y", "1", kNow)), "a/y=1(d);");
  EXPECT_EQ(Show(e->Map("x/y/z", "1", kNow)), "b/y/z=1(d);");
  a.continue_matching = true;
  auto c = Engine({a, b});
  MappingResult r = c->Map("x/y", "1", kNow);
  EXPECT_EQ(Show(r), "a/y=1(d);b/y=1(d);");
  EXPECT_EQ(r.matched, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(r.changes[1].rule, 1u);
}

TEST(MappingRulesTest, ARefusalDropsEveryChangeOfTheMessage) {
  MappingRule a = Rule("x/+", "a/{1}/{field}");
  a.all_fields = true;
  a.type = KeyType::kNumeric;
  auto e = Engine({a});
  MappingResult r = e->Map("x/y", R"({"t":1,"u":2,"mode":"eco"})", kNow);
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->reason, "wrong_type");
  EXPECT_NE(r.refusal->message.find("mode"), std::string::npos) << r.refusal->message;
  EXPECT_TRUE(r.changes.empty());
  // Also when a later rule (continue) refuses.
  MappingRule first = Rule("x/+", "ok/{1}");
  first.continue_matching = true;
  MappingRule second = Rule("x/+", "b/{1}");
  second.type = KeyType::kBoolean;
  second.name = "strict";
  auto e2 = Engine({first, second});
  MappingResult r2 = e2->Map("x/y", "7.5", kNow);
  ASSERT_TRUE(r2.refusal);
  EXPECT_EQ(r2.refusal->rule, 1u);
  EXPECT_EQ(e2->RuleLabel(1), "strict");
  EXPECT_EQ(e2->RuleLabel(0), "0");
  EXPECT_TRUE(r2.changes.empty());
}

TEST(MappingRulesTest, BadKeysAreRefused) {
  MappingRule r = Rule("t", "k/{field}");
  r.all_fields = true;
  auto e = Engine({r});
  EXPECT_EQ(Show(e->Map("t", R"({"a+b":1})", kNow)).substr(0, 16), "refused bad_key:");
  EXPECT_EQ(Show(e->Map("t", "{\"" + std::string(300, 'x') + "\":1}", kNow)).substr(0, 16),
            "refused bad_key:");
}

}  // namespace
}  // namespace komoku::bridge

namespace komoku::bridge {
namespace {

TEST(MappingInvertTest, NamedFieldsAreNegated) {
  MappingRule r = Rule("z/+", "{1}/{field}");
  r.all_fields = true;
  r.invert = {"contact", "/a/b"};
  auto e = Engine({r});
  EXPECT_EQ(Show(e->Map("z/door", R"({"contact":false,"other":false,"a":{"b":true}})", kNow)),
            "door/a.b=false(b);door/contact=true(b);door/other=false(b);");
  MappingResult bad = e->Map("z/door", R"({"contact":"maybe"})", kNow);
  ASSERT_TRUE(bad.refusal);
  EXPECT_EQ(bad.refusal->reason, "bad_boolean");
  r.type = store::KeyType::kNumeric;
  EXPECT_NE(CompileError(r).find("invert"), std::string::npos);
}

TEST(MappingUnknownTest, NanIsSkippedAndCountedNotRefused) {
  MappingRule numeric = Rule("n", "n");
  numeric.type = store::KeyType::kNumeric;
  MappingRule guessed = Rule("g/+", "g/{field}");
  guessed.all_fields = true;
  MappingRule text = Rule("s", "s");
  text.type = store::KeyType::kString;
  auto e = Engine({numeric, guessed, text});
  for (const char* nan : {"nan", "NaN", " nan\n"}) {
    MappingResult r = e->Map("n", nan, kNow);
    EXPECT_FALSE(r.refusal) << nan;
    EXPECT_TRUE(r.changes.empty()) << nan;
    EXPECT_EQ(r.unknown_skipped, 1u) << nan;
  }
  MappingResult g = e->Map("g/x", R"({"t":"nan","h":40})", kNow);
  EXPECT_EQ(Show(g), "g/h=40(d);");
  EXPECT_EQ(g.unknown_skipped, 1u);
  // A string key keeps the text.
  EXPECT_EQ(Show(e->Map("s", "nan", kNow)), "s=\"nan\"(s);");
  // A refused message counts nothing as skipped.
  MappingResult refused = e->Map("g/x", R"({"t":"nan","a+b":1})", kNow);
  EXPECT_EQ(refused.unknown_skipped, 0u);
  // A reused result starts again from zero.
  MappingResult reused;
  e->MapInto("n", "nan", kNow, &reused);
  e->MapInto("n", "1", kNow, &reused);
  EXPECT_EQ(reused.unknown_skipped, 0u);
}

}  // namespace
}  // namespace komoku::bridge

// 42: the device corpus (integration/corpus/, docs/mapping.md#the-device-corpus).
// One capture per device family, `topic payload` per line as `mosquitto_sub
// -v` prints it, every payload from the document or source its header names,
// and beside it the keys it must make: their types, last values, times and
// numbers of changes. Each family runs on the packaged config/komoku.yaml
// (its example rules uncommented when the capture says so, as a user would),
// a real Mosquitto and the real binary: every line is published in order
// (retained when the capture's `# retained:` filters match its topic), and
// then every key is checked over HTTP, and no other key may exist; after a
// restart (the retained messages handed again) nothing has changed. Then
// `komoku mappings test --log` reads the same capture with the same config
// and must report the same keys, types, values and device times.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

const std::string kCorpusDir = std::string(KOMOKU_SOURCE_DIR) + "/integration/corpus";

// Whether MQTT topic filter `filter` (with + and #) matches `topic`.
bool FilterMatches(const std::string& filter, const std::string& topic) {
  std::vector<std::string> f, t;
  std::stringstream fs(filter), ts(topic);
  for (std::string level; std::getline(fs, level, '/');) f.push_back(level);
  for (std::string level; std::getline(ts, level, '/');) t.push_back(level);
  if (!topic.empty() && topic.back() == '/') t.emplace_back();
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == "#") return true;
    if (i >= t.size()) return false;
    if (f[i] != "+" && f[i] != t[i]) return false;
  }
  return f.size() == t.size();
}

std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// A capture: its directives and its messages.
struct Capture {
  std::string path;
  std::string config = "packaged";  // or "packaged+example-rules"
  std::vector<std::string> retained;
  struct Message {
    int line;
    std::string topic;
    std::string payload;
    bool retained;
  };
  std::vector<Message> messages;
  std::string error;  // file:line: what is wrong; empty when it was read
};

Capture ReadCapture(const std::string& path) {
  Capture c;
  c.path = path;
  std::ifstream in(path);
  if (!in) {
    c.error = path + ": cannot be read";
    return c;
  }
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    const std::string at = path + ":" + std::to_string(number) + ": ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      const std::string body = line.substr(1);
      const size_t colon = body.find(':');
      const std::vector<std::string> head = Words(body.substr(0, colon));
      if (colon == std::string::npos || head.size() != 1) continue;  // a plain comment
      const std::vector<std::string> values = Words(body.substr(colon + 1));
      if (head[0] == "config") {
        if (values.size() != 1 ||
            (values[0] != "packaged" && values[0] != "packaged+example-rules")) {
          c.error = at + "config: must be 'packaged' or 'packaged+example-rules'";
          return c;
        }
        c.config = values[0];
      } else if (head[0] == "retained") {
        c.retained.insert(c.retained.end(), values.begin(), values.end());
      }
      continue;
    }
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0) {
      c.error = at + "expected 'topic payload'";
      return c;
    }
    Capture::Message m{number, line.substr(0, space), line.substr(space + 1), false};
    if (m.payload == "(null)") m.payload.clear();
    for (const std::string& f : c.retained) m.retained = m.retained || FilterMatches(f, m.topic);
    c.messages.push_back(std::move(m));
  }
  return c;
}

// "2026-11-20T10:00:00Z" (or with .fff) as ms since the epoch.
std::optional<int64_t> ParseUtc(const std::string& text) {
  std::tm tm{};
  int ms = 0;
  char z = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &z) != 8 &&
      std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z) != 7) {
    return std::nullopt;
  }
  if (z != 'Z') return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

// One line of an expected file: KEY TYPE VALUE [at TIME|arrival] [changes N].
struct Expected {
  int line;
  std::string key;
  std::string type;
  nlohmann::json value;
  std::optional<int64_t> time_ms;  // a device time; none: the arrival time
  std::optional<size_t> changes;
  // `mappings_test missed`: the service records it, `mappings test` cannot
  // (a retained message that came before the discovery config that reads
  // it: the broker hands it to Komoku again when it subscribes).
  bool log_misses = false;
};

struct ExpectedFile {
  std::vector<Expected> keys;
  // `# metric: NAME VALUE`: a family of /metrics summed over its series,
  // or one series (`NAME{label="..."}`), after the replay.
  std::map<std::string, long long> metrics;
  std::string error;
};

// Unless the expected file names them, nothing is refused.
const char* const kRefusalFamilies[] = {"komoku_refused_total", "komoku_mapping_refused_total",
                                        "komoku_discovery_refused_total"};

ExpectedFile ReadExpected(const std::string& path) {
  ExpectedFile out;
  std::ifstream in(path);
  if (!in) {
    out.error = path + ": cannot be read";
    return out;
  }
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    const std::string at = path + ":" + std::to_string(number) + ": ";
    if (line.rfind("# metric:", 0) == 0) {
      const std::vector<std::string> w = Words(line.substr(9));
      char* end = nullptr;
      const long long v = w.size() == 2 ? std::strtoll(w[1].c_str(), &end, 10) : 0;
      if (w.size() != 2 || *end != '\0') {
        out.error = at + "expected '# metric: NAME VALUE'";
        return out;
      }
      out.metrics[w[0]] = v;
      continue;
    }
    std::istringstream words(line);
    Expected e{number, "", "", nullptr, std::nullopt, std::nullopt, false};
    if (!(words >> e.key) || e.key[0] == '#') continue;
    if (!(words >> e.type)) {
      out.error = at + "expected KEY TYPE VALUE";
      return out;
    }
    // The value: JSON, a quoted string may hold spaces.
    std::string rest;
    std::getline(words, rest);
    rest.erase(0, rest.find_first_not_of(' '));
    size_t end = rest.find(' ');
    if (!rest.empty() && rest[0] == '"') {
      end = 1;
      while (end < rest.size() && rest[end] != '"') end += rest[end] == '\\' ? 2 : 1;
      end = end < rest.size() ? end + 1 : std::string::npos;
    }
    e.value = nlohmann::json::parse(rest.substr(0, end), nullptr, false);
    if (e.value.is_discarded() || e.value.is_null()) {
      out.error = at + "value '" + rest.substr(0, end) + "' is not JSON";
      return out;
    }
    const std::vector<std::string> tail =
        end == std::string::npos ? std::vector<std::string>{} : Words(rest.substr(end));
    for (size_t i = 0; i < tail.size(); i += 2) {
      if (i + 1 >= tail.size()) {
        out.error = at + "'" + tail[i] + "' needs a value";
        return out;
      }
      if (tail[i] == "at") {
        if (tail[i + 1] == "arrival") continue;
        e.time_ms = ParseUtc(tail[i + 1]);
        if (!e.time_ms) {
          out.error = at + "time '" + tail[i + 1] + "' is not YYYY-MM-DDTHH:MM:SS[.fff]Z";
          return out;
        }
      } else if (tail[i] == "changes") {
        e.changes = std::stoul(tail[i + 1]);
      } else if (tail[i] == "mappings_test" && tail[i + 1] == "missed") {
        e.log_misses = true;
      } else {
        out.error = at + "unknown '" + tail[i] + " " + tail[i + 1] +
                    "' (at TIME, changes N, mappings_test missed)";
        return out;
      }
    }
    out.keys.push_back(std::move(e));
  }
  return out;
}

// The families: every capture in the corpus folder.
std::vector<std::string> Families() {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpusDir)) {
    if (entry.path().extension() == ".log") out.push_back(entry.path().stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The packaged config/komoku.yaml after the harness's broker, data dir and
// port, less its section lines that the harness writes itself (as
// FreshConfigTest in 40 has it): what `make run` and the Debian package
// start with; and, when the capture says so, its commented mappings:
// block uncommented.
std::string PackagedConfig(bool example_rules) {
  std::ifstream in(std::string(KOMOKU_SOURCE_DIR) + "/config/komoku.yaml");
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line == "mqtt:" || line == "store:" || line == "http:" || line == "log:") continue;
    out += line + "\n";
  }
  return example_rules ? out + ExampleMappings() : out;
}

const char kBarrierKey[] = "it/corpus_barrier";

class CorpusTest : public KomokuTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    capture_ = ReadCapture(kCorpusDir + "/" + GetParam() + ".log");
    ASSERT_EQ(capture_.error, "");
    KomokuTest::SetUp();
  }
  std::string ExtraConfig() const override {
    return PackagedConfig(capture_.config == "packaged+example-rules");
  }
  // Every message published before this one has been handled (komoku
  // reads its subscriptions in order on one connection), so the
  // subscriptions of the topics discovered so far have been sent.
  void Barrier() {
    const int n = ++barriers_;
    mqtt_->Publish(std::string("komoku/set/") + kBarrierKey, std::to_string(n));
    ASSERT_TRUE(WaitForValue(kBarrierKey, n)) << komoku_->Output();
  }

  // Publishes the capture's messages in order, each handled before the
  // next is sent (as a real device's messages come seconds apart).
  void Replay() {
    for (const Capture::Message& m : capture_.messages) {
      mqtt_->Publish(m.topic, m.payload, 1, m.retained);
      ASSERT_NO_FATAL_FAILURE(Barrier()) << capture_.path << ":" << m.line;
    }
  }
  // Every key but the barrier's, with its number of changes and value.
  std::map<std::string, std::pair<size_t, nlohmann::json>> Keys() {
    std::map<std::string, std::pair<size_t, nlohmann::json>> out;
    const nlohmann::json listed = komoku_->Get("/api/v1/keys").Json();
    for (const auto& k : listed["keys"]) {
      const std::string key = k["key"].get<std::string>();
      if (key != kBarrierKey) out[key] = {HistorySize(key), Value(key)["value"]};
    }
    return out;
  }

  // A /metrics series, or the sum of a family's series.
  long long MetricSum(const std::string& name) {
    if (name.find('{') != std::string::npos) return komoku_->Metric(name);
    long long sum = 0;
    std::istringstream in(komoku_->Get("/metrics").body);
    for (std::string line; std::getline(in, line);) {
      if (line.compare(0, name.size(), name) != 0 || line.size() == name.size()) continue;
      if (line[name.size()] != ' ' && line[name.size()] != '{') continue;
      sum += static_cast<long long>(std::stod(line.substr(line.rfind(' ') + 1)));
    }
    return sum;
  }

  // `komoku mappings test --log` on the capture with the config the
  // service runs on: its output.
  std::string MappingsTest() {
    std::string out;
    EXPECT_EQ(RunTool(dir_,
                      {KOMOKU_BINARY, "mappings", "test", "-c", komoku_->config_path(), "--log",
                       capture_.path},
                      "mappings-test.log", &out),
              0)
        << out;
    return out;
  }

  Capture capture_;
  int barriers_ = 0;
};

// One change `mappings test --log` reports:
// "<line>: <topic>: <key> = <value> (<type>)[ at <time>]".
struct LogChange {
  int line;
  std::string topic, key, value, type, at;
};

std::vector<LogChange> LogChanges(const std::string& out) {
  static const std::regex change(
      R"(^(\d+): (\S+): (\S+) = (.*) \((numeric|counter|boolean|string|uptime)\)(?: at (\S+))?$)");
  std::vector<LogChange> changes;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, change)) {
      changes.push_back({std::stoi(m[1]), m[2], m[3], m[4], m[5], m[6]});
    }
  }
  return changes;
}

// A value as `mappings test` prints it: text as JSON, others as Komoku
// writes them (true, 21.5).
nlohmann::json ShownValue(const std::string& text) {
  nlohmann::json v = nlohmann::json::parse(text, nullptr, false);
  return v.is_discarded() ? nlohmann::json(text) : v;
}

TEST_P(CorpusTest, RecordsEveryExpectedKey) {
  const ExpectedFile expected = ReadExpected(kCorpusDir + "/" + GetParam() + ".expected");
  ASSERT_EQ(expected.error, "");
  ASSERT_FALSE(expected.keys.empty()) << GetParam() << ".expected lists no key";

  const int64_t start_ms = NowMs();
  ASSERT_NO_FATAL_FAILURE(Replay());
  const int64_t end_ms = NowMs();

  // Exactly the expected keys.
  std::set<std::string> want, got;
  for (const Expected& e : expected.keys) {
    EXPECT_TRUE(want.insert(e.key).second)
        << GetParam() << ".expected:" << e.line << ": key listed twice: " << e.key;
  }
  const nlohmann::json listed = komoku_->Get("/api/v1/keys").Json();
  for (const auto& k : listed["keys"]) {
    if (k["key"] != kBarrierKey) got.insert(k["key"].get<std::string>());
  }
  for (const std::string& k : want) {
    EXPECT_TRUE(got.count(k)) << "missing key " << k;
  }
  for (const std::string& k : got) {
    EXPECT_TRUE(want.count(k)) << "unexpected key " << k << ": " << Value(k).dump();
  }

  for (const Expected& e : expected.keys) {
    SCOPED_TRACE(GetParam() + ".expected:" + std::to_string(e.line) + ": " + e.key);
    const nlohmann::json v = Value(e.key);
    if (!v.is_object()) continue;  // reported as missing above
    EXPECT_EQ(v["type"], e.type) << v.dump();
    EXPECT_EQ(v["value"], e.value) << v.dump();
    const int64_t time_ms = std::llround(v["time"].get<double>() * 1000);
    if (e.time_ms) {
      EXPECT_EQ(time_ms, *e.time_ms) << v.dump();
    } else {
      EXPECT_GE(time_ms, start_ms) << "not the arrival time: " << v.dump();
      EXPECT_LE(time_ms, end_ms) << "not the arrival time: " << v.dump();
    }
    if (e.changes) {
      EXPECT_EQ(HistorySize(e.key), *e.changes);
    }
  }

  // A refusal family not named as a whole holds the series named, no more.
  std::map<std::string, long long> metrics = expected.metrics;
  for (const std::string family : kRefusalFamilies) {
    if (metrics.count(family)) continue;
    long long named = 0;
    for (const auto& [name, value] : expected.metrics) {
      if (name.rfind(family + "{", 0) == 0) named += value;
    }
    metrics[family] = named;
  }
  for (const auto& [name, value] : metrics) {
    long long got = MetricSum(name);
    // The test's own polls for a key not there yet are answered 404, and
    // counted as refused requests: not the devices' doing.
    if (name == "komoku_refused_total") {
      got -= komoku_->Metric("komoku_refused_total{reason=\"unknown_key\"}");
    }
    EXPECT_EQ(got, value) << name << "\n"
                          << komoku_->Get("/api/v1/discovery").body << komoku_->Output();
  }
}

// A restart: the broker hands the retained messages (discovery configs,
// availability, retained states) to Komoku again when it subscribes, and
// they add no change; the keys stay as they were.
TEST_P(CorpusTest, ARestartAddsNoChange) {
  ASSERT_NO_FATAL_FAILURE(Replay());
  const auto before = Keys();
  ASSERT_FALSE(before.empty());
  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  // Retained messages come before the barrier: it is published after the
  // subscriptions, the discovered topics' included, were acknowledged...
  ASSERT_NO_FATAL_FAILURE(Barrier());
  // ...and again once those were handled.
  ASSERT_NO_FATAL_FAILURE(Barrier());
  EXPECT_EQ(Keys(), before);
  // Not for want of retained messages: each retained topic whose last
  // message made a change (as mappings test reports it) came again and
  // was skipped as equal to its key's value.
  std::set<std::string> retained;
  for (const LogChange& c : LogChanges(MappingsTest())) {
    const auto& m = std::find_if(capture_.messages.begin(), capture_.messages.end(),
                                 [&](const Capture::Message& x) { return x.line == c.line; });
    if (m != capture_.messages.end() && m->retained) retained.insert(c.topic);
  }
  EXPECT_GE(komoku_->Metric("komoku_mapping_retained_skipped_total"),
            static_cast<long long>(retained.size()))
      << retained.size() << " retained topics made changes";
}

// `komoku mappings test --log` on the same capture, with the config the
// service ran on, reports the same keys with the same types, last values
// and device times. It does not know the keys' current values, so it
// cannot drop repeats (same_value_resolution): the numbers of changes are
// not compared.
TEST_P(CorpusTest, MappingsTestReportsTheSameKeys) {
  const ExpectedFile expected = ReadExpected(kCorpusDir + "/" + GetParam() + ".expected");
  ASSERT_EQ(expected.error, "");
  const std::string out = MappingsTest();
  std::map<std::string, LogChange> seen;  // the last change of each key
  for (const LogChange& c : LogChanges(out)) seen[c.key] = c;
  // Every message counted, no comment line read as one, and each said
  // what became of it.
  EXPECT_NE(out.find("\n" + std::to_string(capture_.messages.size()) + " messages: "),
            std::string::npos)
      << out;
  for (const Capture::Message& m : capture_.messages) {
    const std::string said = std::to_string(m.line) + ": " + m.topic + ": ";
    EXPECT_TRUE(out.compare(0, said.size(), said) == 0 ||
                out.find("\n" + said) != std::string::npos)
        << "mappings test says nothing of " << capture_.path << ":" << m.line << "\n"
        << out;
  }
  std::set<std::string> want;
  for (const Expected& e : expected.keys) {
    want.insert(e.key);
    SCOPED_TRACE(GetParam() + ".expected:" + std::to_string(e.line) + ": " + e.key);
    auto it = seen.find(e.key);
    if (e.log_misses) {
      // A known difference, checked so that it is noticed once it is gone.
      EXPECT_TRUE(it == seen.end())
          << "mappings test now reports " << e.key << ": drop 'mappings_test missed'";
      continue;
    }
    if (it == seen.end()) {
      ADD_FAILURE() << "mappings test reports no change of " << e.key << "\n" << out;
      continue;
    }
    EXPECT_EQ(it->second.type, e.type);
    EXPECT_EQ(ShownValue(it->second.value), e.value);
    if (e.time_ms) {
      EXPECT_EQ(ParseUtc(it->second.at), e.time_ms) << "at '" << it->second.at << "'";
    } else {
      EXPECT_EQ(it->second.at, "") << "a device time where the arrival time is expected";
    }
  }
  for (const auto& [key, s] : seen) {
    EXPECT_TRUE(want.count(key)) << "mappings test reports an unexpected key " << key << "\n"
                                 << out;
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, CorpusTest, ::testing::ValuesIn(Families()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name;
                           for (char c : info.param) name += std::isalnum(c) ? c : '_';
                           return name;
                         });

}  // namespace
}  // namespace komoku::testing

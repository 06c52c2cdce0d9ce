// The configuration table: defaults, validation with file:line: field errors,
// secrets from files, and the generated example and reference kept in step
// with the code.
#include "app/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "query/server.h"
#include "temp_dir.h"

namespace komoku::app {
namespace {

const char kName[] = "k.yaml";

using store::testing::TempDir;

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every field of a Config, one per line, so two configs compare with a diff.
std::string Dump(const Config& c) {
  std::ostringstream out;
  out << "mqtt.broker=" << c.mqtt_broker << "\n"
      << "mqtt.client_id=" << c.mqtt_client_id << "\n"
      << "mqtt.username=" << c.mqtt_username << "\n"
      << "mqtt.password=" << c.mqtt_password << "\n"
      << "mqtt.password_file=" << c.mqtt_password_file << "\n"
      << "mqtt.prefix=" << c.mqtt_prefix << "\n"
      << "mqtt.session_expiry=" << c.mqtt_session_expiry_s << "\n"
      << "mqtt.keep_alive=" << c.mqtt_keep_alive_s << "\n"
      << "mqtt.max_payload_bytes=" << c.mqtt_max_payload_bytes << "\n"
      << "mqtt.tls.ca_file=" << c.mqtt_tls_ca_file << "\n"
      << "mqtt.tls.cert_file=" << c.mqtt_tls_cert_file << "\n"
      << "mqtt.tls.key_file=" << c.mqtt_tls_key_file << "\n"
      << "mqtt.tls.key_password_file=" << c.mqtt_tls_key_password_file << "\n"
      << "mqtt.tls.verify=" << c.mqtt_tls_verify << "\n"
      << "store.data_dir=" << c.store_data_dir << "\n"
      << "store.commit_interval_ms=" << c.store_commit_interval_ms << "\n"
      << "store.commit_max_rows=" << c.store_commit_max_rows << "\n"
      << "store.checkpoint_interval=" << c.store_checkpoint_interval_s << "\n"
      << "http.listen=" << c.http_listen << "\n"
      << "http.max_points=" << c.http_max_points << "\n"
      << "log.level=" << c.log_level << "\n"
      << "discovery.enabled=" << c.discovery_enabled << "\n"
      << "discovery.home_assistant=" << c.discovery_home_assistant << "\n"
      << "discovery.prefix=" << c.discovery_prefix << "\n"
      << "discovery.homie=" << c.discovery_homie << "\n"
      << "discovery.homie_prefix=" << c.discovery_homie_prefix << "\n"
      << "discovery.tasmota=" << c.discovery_tasmota << "\n"
      << "discovery.key_prefix=" << c.discovery_key_prefix << "\n"
      << "http_host=" << c.http_host << "\n"
      << "http_port=" << c.http_port << "\n";
  return out.str();
}

Config ParseOk(const std::string& text) {
  Result<Config> c = ParseConfig(text, kName);
  EXPECT_TRUE(c.ok()) << text << "\n-> " << c.status().ToString();
  return c.ok() ? *c : Config{};
}

TEST(ConfigTest, DefaultValues) {
  Config c = DefaultConfig();
  EXPECT_EQ(c.mqtt_broker, "tcp://localhost:1883");
  EXPECT_EQ(c.mqtt_client_id, "komoku");
  EXPECT_EQ(c.mqtt_username, "");
  EXPECT_EQ(c.mqtt_password, "");
  EXPECT_EQ(c.mqtt_password_file, "");
  EXPECT_EQ(c.mqtt_prefix, "komoku");
  EXPECT_EQ(c.mqtt_session_expiry_s, 604800);
  EXPECT_EQ(c.mqtt_keep_alive_s, 30);
  EXPECT_EQ(c.mqtt_max_payload_bytes, 65536);
  EXPECT_EQ(c.store_data_dir, "./komoku-data");
  EXPECT_EQ(c.store_commit_interval_ms, 1000);
  EXPECT_EQ(c.store_commit_max_rows, 4000);
  EXPECT_EQ(c.store_checkpoint_interval_s, 10);
  EXPECT_EQ(c.http_listen, "127.0.0.1:8080");
  EXPECT_EQ(c.http_host, "127.0.0.1");
  EXPECT_EQ(c.http_port, 8080);
  EXPECT_EQ(c.http_max_points, 10000);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.source, "built-in defaults");
}

TEST(ConfigTest, EmptyDocumentsGiveTheDefaults) {
  const std::string defaults = Dump(DefaultConfig());
  for (const char* text : {"", "\n", "# only a comment\n", "---\n", "mqtt:\n", "mqtt:\nstore:\n"}) {
    Config c = ParseOk(text);
    EXPECT_EQ(Dump(c), defaults) << "'" << text << "'";
    EXPECT_EQ(c.source, kName);
  }
}

TEST(ConfigTest, SetsEveryField) {
  Config c = ParseOk(
      "mqtt:\n"
      "  broker: ssl://broker.lan:8883\n"
      "  client_id: komoku-2\n"
      "  username: ko\n"
      "  password: s3cret\n"
      "  prefix: home/komoku\n"
      "  session_expiry: 0\n"
      "  keep_alive: 5\n"
      "  max_payload_bytes: 16777216\n"
      "  tls:\n"
      "    verify: false\n"
      "store:\n"
      "  data_dir: /var/lib/komoku\n"
      "  commit_interval_ms: 60000\n"
      "  commit_max_rows: 1\n"
      "  checkpoint_interval: 3600\n"
      "http:\n"
      "  listen: 0.0.0.0:9000\n"
      "  max_points: 5\n"
      "log:\n"
      "  level: debug\n"
      "discovery:\n"
      "  enabled: true\n"
      "  home_assistant: false\n"
      "  prefix: ha\n"
      "  homie: false\n"
      "  homie_prefix: devices/homie\n"
      "  key_prefix: found/\n");
  EXPECT_EQ(Dump(c),
            "mqtt.broker=ssl://broker.lan:8883\n"
            "mqtt.client_id=komoku-2\n"
            "mqtt.username=ko\n"
            "mqtt.password=s3cret\n"
            "mqtt.password_file=\n"
            "mqtt.prefix=home/komoku\n"
            "mqtt.session_expiry=0\n"
            "mqtt.keep_alive=5\n"
            "mqtt.max_payload_bytes=16777216\n"
            "mqtt.tls.ca_file=\n"
            "mqtt.tls.cert_file=\n"
            "mqtt.tls.key_file=\n"
            "mqtt.tls.key_password_file=\n"
            "mqtt.tls.verify=0\n"
            "store.data_dir=/var/lib/komoku\n"
            "store.commit_interval_ms=60000\n"
            "store.commit_max_rows=1\n"
            "store.checkpoint_interval=3600\n"
            "http.listen=0.0.0.0:9000\n"
            "http.max_points=5\n"
            "log.level=debug\n"
            "discovery.enabled=1\n"
            "discovery.home_assistant=0\n"
            "discovery.prefix=ha\n"
            "discovery.homie=0\n"
            "discovery.homie_prefix=devices/homie\n"
            "discovery.tasmota=1\n"
            "discovery.key_prefix=found/\n"
            "http_host=0.0.0.0\n"
            "http_port=9000\n");
}

struct ErrorCase {
  const char* what;
  std::string text;
  std::vector<std::string> parts;  // the message must contain each
};

void ExpectErrors(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    Result<Config> r = ParseConfig(c.text, kName);
    if (r.ok()) {
      ADD_FAILURE() << c.what << " was accepted";
      continue;
    }
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c.what << ": " << r.status().ToString();
    for (const std::string& part : c.parts) {
      EXPECT_NE(r.status().message().find(part), std::string::npos)
          << c.what << ": '" << part << "' not in: " << r.status().message();
    }
  }
}

TEST(ConfigTest, UnknownSectionsAndFieldsNameTheLine) {
  ExpectErrors({
      {"unknown section",
       "mqtt:\n  broker: tcp://a:1\nmqqt:\n  broker: x\n",
       {"k.yaml:3:", "unknown section 'mqqt'"}},
      {"unknown field",
       "mqtt:\n  keepalive: 30\n",
       {"k.yaml:2:", "unknown field 'mqtt.keepalive'"}},
      {"field in the wrong section",
       "store:\n  data_dir: d\n\n  listen: 1.2.3.4:5\n",
       {"k.yaml:4:", "store.listen"}},
      {"field in the wrong case", "log:\n  Level: info\n", {"k.yaml:2:", "log.Level"}},
  });
}

TEST(ConfigTest, WrongTypesAndRangesNameTheLineAndField) {
  ExpectErrors({
      {"word for an integer",
       "mqtt:\n  keep_alive: often\n",
       {"k.yaml:2:", "mqtt.keep_alive", "expected seconds or a duration", "'often'"}},
      {"word for a plain integer",
       "http:\n  max_points: many\n",
       {"k.yaml:2:", "http.max_points", "expected an integer", "'many'"}},
      {"fraction",
       "store:\n  commit_interval_ms: 2.5\n",
       {"k.yaml:2:", "store.commit_interval_ms"}},
      {"unit suffix on a count",
       "store:\n  commit_max_rows: 10s\n",
       {"k.yaml:2:", "store.commit_max_rows"}},
      {"hex", "http:\n  max_points: 0x10\n", {"k.yaml:2:", "http.max_points"}},
      {"empty string", "mqtt:\n  keep_alive: \"\"\n", {"k.yaml:2:", "mqtt.keep_alive"}},
      {"past int64",
       "mqtt:\n  session_expiry: 99999999999999999999\n",
       {"k.yaml:2:", "mqtt.session_expiry"}},
      {"below the minimum",
       "mqtt:\n  keep_alive: 4\n",
       {"k.yaml:2:", "mqtt.keep_alive", "out of range 5..3600"}},
      {"above the maximum",
       "\n\nmqtt:\n  keep_alive: 3601\n",
       {"k.yaml:4:", "mqtt.keep_alive", "out of range"}},
      {"negative", "mqtt:\n  session_expiry: -1\n", {"k.yaml:2:", "mqtt.session_expiry"}},
      {"zero rows", "store:\n  commit_max_rows: 0\n", {"k.yaml:2:", "store.commit_max_rows"}},
      {"huge payload limit",
       "mqtt:\n  max_payload_bytes: 16777217\n",
       {"k.yaml:2:", "mqtt.max_payload_bytes"}},
      {"a list for a value",
       "mqtt:\n  broker: [a, b]\n",
       {"k.yaml:2:", "mqtt.broker", "single value"}},
      {"a map for a value", "mqtt:\n  broker:\n    host: a\n", {"k.yaml:", "mqtt.broker"}},
      {"a section that is not a map", "mqtt: 5\n", {"k.yaml:1:", "mqtt", "map"}},
      {"a document that is not a map", "just text\n", {"k.yaml:1:", "sections"}},
  });
}

TEST(ConfigTest, ErrorMessageHasTheDocumentedShape) {
  Result<Config> r =
      ParseConfig("mqtt:\n  broker: tcp://a:1\n  keep_alive: often\n", "komoku.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "komoku.yaml:3: mqtt.keep_alive: expected seconds or a duration (e.g. 500ms, 30s, 10m, "
            "24h, 7d, 1w), got 'often'");
}

TEST(ConfigTest, RangeEdgesAreAccepted) {
  Config c = ParseOk(
      "mqtt:\n  keep_alive: 3600\n  session_expiry: 4294967295\n  max_payload_bytes: 16\n"
      "store:\n  commit_interval_ms: 1\n  commit_max_rows: 1000000\n  checkpoint_interval: 1\n"
      "http:\n  max_points: 10000000\n");
  EXPECT_EQ(c.mqtt_keep_alive_s, 3600);
  EXPECT_EQ(c.mqtt_session_expiry_s, 4294967295);
  EXPECT_EQ(c.mqtt_max_payload_bytes, 16);
  EXPECT_EQ(c.store_commit_interval_ms, 1);
  EXPECT_EQ(c.store_commit_max_rows, 1000000);
  EXPECT_EQ(c.store_checkpoint_interval_s, 1);
  EXPECT_EQ(c.http_max_points, 10000000);
}

// Every duration of the file takes what key options (stale_after: 10m),
// steps and windows take (store::ParseDuration); a bare number keeps the
// unit the field always had.
TEST(ConfigTest, DurationFieldsTakeTheOneDurationGrammar) {
  struct Case {
    const char* section;
    const char* field;
    const char* text;
    int64_t Config::*member;
    int64_t want;
  };
  for (const Case& c : std::vector<Case>{
           {"mqtt", "keep_alive", "2m", &Config::mqtt_keep_alive_s, 120},
           {"mqtt", "keep_alive", "45", &Config::mqtt_keep_alive_s, 45},
           {"mqtt", "session_expiry", "7d", &Config::mqtt_session_expiry_s, 604800},
           {"mqtt", "session_expiry", "1w", &Config::mqtt_session_expiry_s, 604800},
           {"mqtt", "session_expiry", "0s", &Config::mqtt_session_expiry_s, 0},
           {"store", "commit_interval_ms", "2s", &Config::store_commit_interval_ms, 2000},
           {"store", "commit_interval_ms", "250", &Config::store_commit_interval_ms, 250},
           {"store", "commit_interval_ms", "250ms", &Config::store_commit_interval_ms, 250},
           {"http", "idle_timeout", "3000ms", &Config::http_idle_timeout_s, 3},
           {"store", "checkpoint_interval", "10s", &Config::store_checkpoint_interval_s, 10},
           {"store", "checkpoint_interval", "1m", &Config::store_checkpoint_interval_s, 60},
           {"store", "hot_window_hours", "2d", &Config::store_hot_window_h, 48},
           {"store", "hot_window_hours", "36h", &Config::store_hot_window_h, 36},
           {"store", "hot_window_hours", "72", &Config::store_hot_window_h, 72},
           {"store", "hot_window_hours", "120m", &Config::store_hot_window_h, 2},
           {"store", "compact_interval", "1h", &Config::store_compact_interval_s, 3600},
           {"store", "compact_interval", "0", &Config::store_compact_interval_s, 0},
           {"http", "idle_timeout", "2m", &Config::http_idle_timeout_s, 120},
           {"http", "header_timeout", "15s", &Config::http_header_timeout_s, 15},
           {"http", "body_timeout", "1m", &Config::http_body_timeout_s, 60},
           {"http", "write_timeout", "45", &Config::http_write_timeout_s, 45},
           {"store", "raw_retention_days", "52w", &Config::store_raw_retention_d, 364},
           {"store", "raw_retention_days", "720h", &Config::store_raw_retention_d, 30},
           {"store", "raw_retention_days", "90", &Config::store_raw_retention_d, 90},
           {"store", "rollup_5m_retention_days", "2w", &Config::store_rollup_5m_retention_d, 14},
       }) {
    const std::string yaml = std::string(c.section) + ":\n  " + c.field + ": " + c.text + "\n";
    Config config = ParseOk(yaml);
    EXPECT_EQ(config.*c.member, c.want) << yaml;
  }
  ExpectErrors({
      {"part of an hour",
       "store:\n  hot_window_hours: 90m\n",
       {"k.yaml:2:", "store.hot_window_hours", "'90m' is not a whole number of hours"}},
      {"part of a day",
       "store:\n  raw_retention_days: 36h\n",
       {"k.yaml:2:", "store.raw_retention_days", "whole number of days"}},
      {"a duration out of range",
       "mqtt:\n  keep_alive: 2h\n",
       {"k.yaml:2:", "mqtt.keep_alive", "'2h' (7200 seconds) is out of range 5..3600"}},
      {"part of a second",
       "mqtt:\n  keep_alive: 1500ms\n",
       {"k.yaml:2:", "mqtt.keep_alive", "'1500ms' is not a whole number of seconds"}},
      {"milliseconds without a number",
       "store:\n  commit_interval_ms: ms\n",
       {"k.yaml:2:", "store.commit_interval_ms", "'ms'"}},
      {"a fraction with a unit",
       "store:\n  commit_interval_ms: 1.5s\n",
       {"k.yaml:2:", "store.commit_interval_ms", "'1.5s'"}},
      {"an unknown unit",
       "store:\n  compact_interval: 1y\n",
       {"k.yaml:2:", "store.compact_interval", "'1y'"}},
      {"a capital unit", "mqtt:\n  keep_alive: 10M\n", {"k.yaml:2:", "mqtt.keep_alive"}},
      {"a negative duration",
       "store:\n  compact_interval: -1h\n",
       {"k.yaml:2:", "store.compact_interval"}},
      {"a refresh past a day",
       "derived:\n  rolling:\n    - key: a\n      stat: max\n      window: 1h\n"
       "      refresh: 2d\n",
       {"k.yaml:3:", "derived.rolling[0].refresh", "'2d'"}},
  });
  // A rolling statistic's refresh: seconds (fractions too) or a duration.
  for (const auto& [text, ms] : std::vector<std::pair<std::string, int64_t>>{
           {"5m", 300000}, {"30", 30000}, {"1.5", 1500}, {"0", 0}, {"1d", 86400000}}) {
    Config config = ParseOk(
        "derived:\n  rolling:\n    - key: a\n      stat: max\n"
        "      window: 1h\n      refresh: " +
        text + "\n");
    ASSERT_EQ(config.derived_rolling.size(), 1u) << text;
    EXPECT_EQ(config.derived_rolling[0].refresh_ms, ms) << text;
  }
}

TEST(ConfigTest, HttpListen) {
  struct Case {
    const char* listen;
    const char* host;
    int port;
  };
  for (const Case& c : std::vector<Case>{
           {"127.0.0.1:8080", "127.0.0.1", 8080},
           {"0.0.0.0:0", "0.0.0.0", 0},  // the OS picks the port
           {"localhost:65535", "localhost", 65535},
           {"komoku.lan:1", "komoku.lan", 1},
           {"\"[::1]:8080\"", "::1", 8080},
           {"\"[::]:0\"", "::", 0},
       }) {
    Config config = ParseOk(std::string("http:\n  listen: ") + c.listen + "\n");
    EXPECT_EQ(config.http_host, c.host) << c.listen;
    EXPECT_EQ(config.http_port, c.port) << c.listen;
  }
}

TEST(ConfigTest, BadHttpListenIsRefused) {
  for (const char* listen : {"localhost", ":8080", "localhost:", "localhost:65536",
                             "localhost:99999", "localhost:123456", "localhost:http",
                             "localhost:-1", "localhost:80a", "localhost:+80", "[::1]"}) {
    Result<Config> r = ParseConfig(std::string("http:\n  listen: \"") + listen + "\"\n", kName);
    ASSERT_FALSE(r.ok()) << listen << " was accepted, port " << r->http_port;
    EXPECT_TRUE(r.status().IsInvalidArgument());
    EXPECT_NE(r.status().message().find("http.listen"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(kName), std::string::npos) << r.status().message();
  }
}

// config.h promises "file:line: field" for every error. The checks that look at
// a value after parsing (http.listen, log.level, mqtt.broker, ...) must say the
// line too, or a user with a long file has to search for it.
TEST(ConfigTest, ValueChecksNameTheLineToo) {
  ExpectErrors({
      {"bad port",
       "mqtt:\n  client_id: x\nhttp:\n  listen: localhost:99999\n",
       {"k.yaml:4:", "http.listen"}},
      {"no port", "http:\n  max_points: 5\n  listen: localhost\n", {"k.yaml:3:", "http.listen"}},
      {"bad level", "log:\n  level: verbose\n", {"k.yaml:2:", "log.level", "verbose"}},
      {"bad broker", "mqtt:\n  broker: http://x\n", {"k.yaml:2:", "mqtt.broker"}},
      {"bad prefix", "mqtt:\n  prefix: a/#\n", {"k.yaml:2:", "mqtt.prefix"}},
      {"empty data_dir", "store:\n  data_dir: \"\"\n", {"k.yaml:2:", "store.data_dir"}},
  });
}

TEST(ConfigTest, OtherValueChecks) {
  ExpectErrors({
      {"bad level", "log:\n  level: verbose\n", {"log.level", "verbose"}},
      {"level in capitals", "log:\n  level: INFO\n", {"log.level"}},
      {"broker without scheme", "mqtt:\n  broker: localhost:1883\n", {"mqtt.broker"}},
      {"empty client id", "mqtt:\n  client_id: \"\"\n", {"mqtt.client_id"}},
      {"long client id", "mqtt:\n  client_id: " + std::string(129, 'c') + "\n", {"mqtt.client_id"}},
      {"prefix with +", "mqtt:\n  prefix: a/+/b\n", {"mqtt.prefix"}},
      {"empty prefix", "mqtt:\n  prefix: \"\"\n", {"mqtt.prefix"}},
      {"empty data_dir", "store:\n  data_dir: \"\"\n", {"store.data_dir"}},
  });
  for (const char* broker : {"tcp://a:1", "ssl://a:1", "mqtt://a", "mqtts://a"}) {
    EXPECT_EQ(ParseOk(std::string("mqtt:\n  broker: ") + broker + "\n").mqtt_broker, broker);
  }
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    EXPECT_EQ(ParseOk(std::string("log:\n  level: ") + level + "\n").log_level, level);
  }
  EXPECT_EQ(ParseOk("mqtt:\n  client_id: " + std::string(128, 'c') + "\n").mqtt_client_id.size(),
            128u);
}

TEST(ConfigTest, PasswordFileIsReadWithoutTheTrailingNewline) {
  TempDir dir;
  struct Case {
    const char* content;
    const char* want;
  };
  for (const Case& c : std::vector<Case>{{"s3cret\n", "s3cret"},
                                         {"s3cret", "s3cret"},
                                         {"s3cret\r\n", "s3cret"},
                                         {"s3cret\n\n", "s3cret"},
                                         {" two words \n", " two words "},
                                         {"line1\nline2\n", "line1\nline2"}}) {
    const std::string path = dir.File("password");
    WriteFile(path, c.content);
    Config config = ParseOk("mqtt:\n  password_file: " + path + "\n");
    EXPECT_EQ(config.mqtt_password, c.want) << ::testing::PrintToString(std::string(c.content));
    EXPECT_EQ(config.mqtt_password_file, path);
  }
}

TEST(ConfigTest, PasswordFileProblemsAreErrors) {
  TempDir dir;
  const std::string path = dir.File("password");
  WriteFile(path, "s3cret\n");
  ExpectErrors({
      {"both password and password_file",
       "mqtt:\n  password: inline\n  password_file: " + path + "\n",
       {"mqtt.password", "mqtt.password_file", "both"}},
      {"missing file",
       "mqtt:\n  password_file: " + dir.File("nope") + "\n",
       {"mqtt.password_file", dir.File("nope")}},
  });
}

TEST(ConfigTest, YamlSyntaxErrorsNameTheLine) {
  ExpectErrors({
      {"unclosed flow sequence",
       "mqtt:\n  broker: tcp://a:1\n  keep_alive: [30\n",
       {"k.yaml:4:", "end of sequence flow not found"}},
      {"unclosed flow map", "mqtt: {broker: tcp://a:1\n", {"k.yaml:2:"}},
      {"sequence and map mixed", "mqtt:\n  - a\n  b: c\n", {"k.yaml:3:"}},
      {"bad indentation", "mqtt:\n  broker: tcp://a:1\n keep_alive: 30\n", {"k.yaml:3:"}},
      {"tab indentation", "mqtt:\n\tbroker: tcp://a:1\n", {"k.yaml:2:"}},
  });
}

// yaml-cpp reads only the first document and lets a later duplicate key win.
// Either way a line the user wrote is silently ignored; the strict loader
// should refuse it like an unknown field.
TEST(ConfigTest, NothingTheUserWroteIsSilentlyIgnored) {
  ExpectErrors({
      {"a second document", "mqtt:\n  keep_alive: 30\n---\nlog:\n  level: debug\n", {"k.yaml:3:"}},
      {"a field set twice",
       "mqtt:\n  broker: tcp://a:1\n  broker: tcp://b:1\n",
       {"k.yaml:3:", "mqtt.broker"}},
      {"a section given twice",
       "log:\n  level: warn\nhttp:\n  max_points: 5\nlog:\n  level: debug\n",
       {"k.yaml:5:", "log"}},
  });
}

TEST(ConfigTest, BooleanWords) {
  Config c = ParseOk("booleans:\n  true: [an, Ein]\n");
  EXPECT_EQ(c.boolean_words.true_words, (std::vector<std::string>{"an", "Ein"}));
  EXPECT_EQ(c.boolean_words.false_words, store::BooleanWords().false_words);
  ExpectErrors({
      {"unknown field", "booleans:\n  maybe: [x]\n", {"k.yaml:2:", "booleans.maybe"}},
      {"not a list", "booleans:\n  true: on\n", {"k.yaml:2:", "booleans.true"}},
      {"a word twice", "booleans:\n  true: [an]\n  false: [AN]\n", {"k.yaml:3:", "listed twice"}},
  });
}

// The derived section's lists, as the example config shows them uncommented.
TEST(ConfigTest, DerivedDefinitions) {
  std::string example;
  bool in_derived = false;
  std::istringstream lines(ConfigExample());
  for (std::string line; std::getline(lines, line);) {
    if (line == "#  aggregates:") in_derived = true;
    if (in_derived && line.empty()) break;
    if (in_derived) example += line.substr(1) + "\n";
  }
  ASSERT_FALSE(example.empty());
  Config c = ParseOk("derived:\n  discovery: true\n" + example);
  EXPECT_TRUE(c.derived_discovery);
  ASSERT_EQ(c.derived_aggregates.size(), 3u);  // 1m and 1h, then 1d
  EXPECT_EQ(c.derived_aggregates[1].resolution, "1h");
  EXPECT_EQ(c.derived_aggregates[1].step_ms, 3600000);
  EXPECT_EQ(c.derived_aggregates[0].unit, "\u00b0C");
  ASSERT_EQ(c.derived_rolling.size(), 3u);
  EXPECT_EQ(c.derived_rolling[0].name, "open_share_24h");
  EXPECT_EQ(c.derived_rolling[1].name, "max_24h");  // the default name
  EXPECT_EQ(c.derived_rolling[2].window_ms, 0);     // today
  ASSERT_EQ(c.derived_discovery_keys.size(), 1u);
  EXPECT_EQ(c.derived_discovery_keys[0].device_class, "temperature");

  ExpectErrors({
      {"bad window",
       "derived:\n  rolling:\n    - key: a\n      stat: max\n      window: soon\n",
       {"k.yaml:3:", "derived.rolling[0].window", "soon"}},
      {"unknown stat",
       "derived:\n  rolling:\n    - key: a\n      stat: median\n      window: 1h\n",
       {"k.yaml:3:", "derived.rolling[0].stat", "median"}},
      {"unknown field",
       "derived:\n  aggregates:\n    - key: a\n      every: 1m\n      agg: x\n",
       {"k.yaml:5:", "derived.aggregates[0].agg"}},
      {"bad resolution",
       "derived:\n  aggregates:\n    - key: a\n      every: [1m, 7m]\n",
       {"k.yaml:3:", "derived.aggregates[0]", "7m"}},
      {"no every", "derived:\n  aggregates:\n    - key: a\n", {"derived.aggregates[0].every"}},
      {"stat that does not fit the type under keys:",
       "keys:\n  t:\n    type: numeric\nderived:\n  rolling:\n    - key: t\n"
       "      stat: share\n      value: true\n      window: 24h\n",
       {"k.yaml:6:", "derived.rolling[0]", "share", "not numeric"}},
      {"value that does not fit the type under keys:",
       "keys:\n  d:\n    type: boolean\nderived:\n  rolling:\n    - key: d\n"
       "      stat: share\n      value: ajar\n      window: 24h\n",
       {"k.yaml:6:", "ajar"}},
      {"a topic twice",
       "derived:\n  aggregates:\n    - key: a\n      every: [1m, 1m]\n",
       {"derived.aggregates[0]", "already published"}},
      {"bad tz", "derived:\n  tz: Mars/Olympus\n", {"k.yaml:2:", "derived.tz"}},
      {"bad retain", "derived:\n  retain: maybe\n", {"k.yaml:2:", "derived.retain"}},
  });
}

TEST(ConfigTest, LoadConfigReadsTheFileAndNamesIt) {
  TempDir dir;
  const std::string path = dir.File("komoku.yaml");
  WriteFile(path, "log:\n  level: warn\n");
  Result<Config> c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->log_level, "warn");
  EXPECT_EQ(c->source, path);

  WriteFile(path, "log:\n  level: warn\n  colour: yes\n");
  c = LoadConfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path + ":3:"), std::string::npos) << c.status().message();

  Result<Config> missing = LoadConfig(dir.File("nope.yaml"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);
}

// Uncommenting every key of the example gives exactly the defaults: the
// example shows the real defaults, and every default passes validation.
TEST(ConfigTest, ExampleUncommentedParsesToTheDefaults) {
  std::istringstream in(ConfigExample());
  std::string line, uncommented;
  int keys = 0;
  while (std::getline(in, line)) {
    // "  #name: value" is a key, "    #name: value" one of a subsection
    // (mqtt.tls); "  # text" and "    # text" are help.
    const size_t hash = line.find_first_not_of(' ');
    if ((hash == 2 || hash == 4) && line[hash] == '#' && line.size() > hash + 1 &&
        line[hash + 1] != ' ') {
      uncommented += line.substr(0, hash) + line.substr(hash + 1) + "\n";
      ++keys;
    } else {
      uncommented += line + "\n";
    }
  }
  EXPECT_EQ(keys, 65);  // 64 keys and the tls: of mqtt.tls
  EXPECT_NE(uncommented.find("\n  tls:\n    # PEM file"), std::string::npos) << uncommented;
  Config c = ParseOk(uncommented);
  EXPECT_EQ(Dump(c), Dump(DefaultConfig())) << uncommented;
}

TEST(ConfigTest, RemoteWrite) {
  const std::string base = "store:\n  data_dir: /tmp/x\nremote_write:\n";
  Config off = ParseOk(base + "  batch_size: 10\n");
  EXPECT_EQ(off.remote_write_url, "");
  Config on = ParseOk(base + "  url: http://127.0.0.1:9090/api/v1/write\n  include: a/*, b/*\n" +
                      "  username: u\n  password: p\n  send_interval: 2s\n  timeout: 30s\n");
  EXPECT_EQ(on.remote_write_include, "a/*, b/*");
  EXPECT_EQ(on.remote_write_send_interval_ms, 2000);
  EXPECT_EQ(on.remote_write_batch_size, 2000);
  EXPECT_EQ(on.remote_write_timeout_ms, 30000);
  EXPECT_EQ(off.remote_write_timeout_ms, 10000);
  struct Bad {
    std::string yaml, message;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"  url: ftp://x\n", "remote_write.url: 'ftp://x' must be http://"},
           {"  password: p\n", "remote_write.password: set, but remote_write.url is empty"},
           {"  url: http://h/w\n  bearer_token: t\n  username: u\n",
            "remote_write.username: give a bearer token or basic auth, not both"},
           {"  url: http://h/w\n  password: p\n", "remote_write.password: set without"},
           {"  url: http://h/w\n  ca_file: /etc/hostname\n", "remote_write.ca_file: set, but"},
           {"  url: http://h/w\n  password_file: /nonexistent/pw\n  username: u\n",
            "remote_write.password_file: cannot read"},
           {"  url: http://h/w\n  batch_size: 0\n", "remote_write.batch_size"},
       }) {
    Result<Config> c = ParseConfig(base + bad.yaml, kName);
    ASSERT_FALSE(c.ok()) << bad.yaml;
    EXPECT_NE(c.status().message().find(bad.message), std::string::npos)
        << bad.yaml << " -> " << c.status().message();
  }
}

TEST(ConfigTest, DocsListEveryKey) {
  const std::string docs = ConfigDocs();
  for (const char* key : {"mqtt.broker",
                          "mqtt.client_id",
                          "mqtt.username",
                          "mqtt.password",
                          "mqtt.password_file",
                          "mqtt.prefix",
                          "mqtt.session_expiry",
                          "mqtt.keep_alive",
                          "mqtt.max_payload_bytes",
                          "store.data_dir",
                          "store.commit_interval_ms",
                          "store.commit_max_rows",
                          "store.checkpoint_interval",
                          "store.hot_window_hours",
                          "store.compact_interval",
                          "store.raw_retention_days",
                          "store.rollup_5m_retention_days",
                          "http.listen",
                          "http.max_points",
                          "log.level",
                          "discovery.enabled",
                          "discovery.home_assistant",
                          "discovery.prefix",
                          "discovery.homie",
                          "discovery.homie_prefix",
                          "discovery.tasmota",
                          "discovery.disabled_entities",
                          "discovery.key_prefix",
                          "mqtt.tls.ca_file",
                          "mqtt.tls.cert_file",
                          "mqtt.tls.key_file",
                          "mqtt.tls.key_password_file",
                          "mqtt.tls.verify"}) {
    EXPECT_NE(docs.find(std::string("| `") + key + "` |"), std::string::npos) << key;
  }
  EXPECT_NE(docs.find("| `mqtt.keep_alive` | duration (s) | `30` | 5..3600 |"), std::string::npos);
  EXPECT_NE(docs.find("| `http.max_points` | integer | `10000` |"), std::string::npos);
  EXPECT_NE(docs.find("| `discovery.enabled` | boolean | `true` |  |"), std::string::npos);
}

TEST(ConfigTest, DiscoverySection) {
  Config c = ParseOk(
      "discovery:\n  enabled: true\n  prefix: ha\n  homie: false\n"
      "  key_prefix: dev/\n");
  EXPECT_TRUE(c.discovery_enabled);
  EXPECT_TRUE(c.discovery_home_assistant);
  EXPECT_EQ(c.discovery_prefix, "ha");
  EXPECT_FALSE(c.discovery_homie);
  EXPECT_EQ(c.discovery_key_prefix, "dev/");
  // On out of the box (issue 24): a fresh install records a house announced
  // to Home Assistant; false turns it off.
  EXPECT_TRUE(DefaultConfig().discovery_enabled);
  EXPECT_FALSE(ParseOk("discovery:\n  enabled: false\n").discovery_enabled);
  auto bad = ParseConfig("discovery:\n  enabled: yes\n", "k.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "k.yaml:2: discovery.enabled: expected true or false, got 'yes'");
  bad = ParseConfig("discovery:\n  prefix: ha/#\n", "k.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("k.yaml:2: discovery.prefix: must be a topic"),
            std::string::npos)
      << bad.status().message();
}

// config/komoku.yaml and docs/config.md are generated (`komoku config-example`,
// `komoku config-docs`); a change to the table must regenerate them.
TEST(ConfigTest, CheckedInExampleAndDocsAreUpToDate) {
  const std::string root = KOMOKU_SOURCE_DIR;
  ASSERT_TRUE(std::filesystem::exists(root + "/config/komoku.yaml"));
  ASSERT_TRUE(std::filesystem::exists(root + "/docs/config.md"));
  EXPECT_EQ(ReadFile(root + "/config/komoku.yaml"), ConfigExample())
      << "run: ./build/src/app/komoku config-example > config/komoku.yaml";
  EXPECT_EQ(ReadFile(root + "/docs/config.md"), ConfigDocs())
      << "run: ./build/src/app/komoku config-docs > docs/config.md";
}

// SIGHUP applies log.level, keys:, mappings: and derived:; everything else
// waits for a restart and is named.
TEST(ConfigTest, RestartOnlyChangesNameWhatAReloadLeaves) {
  Config running = ParseOk("mqtt:\n  broker: tcp://a:1\n");
  EXPECT_TRUE(RestartOnlyChanges(running, running).empty());
  Config reloadable = ParseOk(
      "mqtt:\n  broker: tcp://a:1\nlog:\n  level: debug\n"
      "keys:\n  t:\n    type: numeric\n"
      "mappings:\n  - topic: a/+\n    key: \"{1}\"\n"
      "derived:\n  tz: Europe/Berlin\n  aggregates:\n    - key: t\n      every: 1h\n");
  EXPECT_TRUE(RestartOnlyChanges(running, reloadable).empty());
  Config restart = ParseOk(
      "mqtt:\n  broker: tcp://b:1\n  keep_alive: 7\nhttp:\n  max_points: 5\n"
      "store:\n  hot_window_hours: 24\ndiscovery:\n  enabled: false\n"
      "booleans:\n  true: [ja]\n");
  EXPECT_EQ(RestartOnlyChanges(running, restart),
            (std::vector<std::string>{"mqtt.broker", "mqtt.keep_alive", "store.hot_window_hours",
                                      "http.max_points", "discovery.enabled", "booleans"}));
}

// mqtt.tls: a map inside mqtt:, only with an ssl:// or mqtts:// broker, its
// files checked at load. (Real certificates and a TLS broker: integration 26.)
TEST(ConfigTest, TlsSettings) {
  TempDir dir;
  const std::string cert = dir.File("c.crt");
  const std::string key = dir.File("c.key");
  const std::string both = dir.File("both.pem");
  const std::string encrypted = dir.File("enc.key");
  const std::string password = dir.File("password");
  // Headers right, content not: passes the quick look, fails OpenSSL's load.
  WriteFile(cert, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
  WriteFile(key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
  WriteFile(both,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
            "-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----\n");
  WriteFile(encrypted,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n"
            "-----END ENCRYPTED PRIVATE KEY-----\n");
  WriteFile(password, "pw\n");

  // No files: the system's CA store; ssl:// and mqtts:// alike.
  Config c = ParseOk("mqtt:\n  broker: mqtts://b:8883\n  tls:\n");
  EXPECT_TRUE(c.mqtt_tls_verify);
  EXPECT_EQ(c.mqtt_tls_ca_file, "");
  EXPECT_FALSE(ParseOk("mqtt:\n  broker: ssl://b:8883\n  tls: {verify: false}\n").mqtt_tls_verify);

  const std::string tls = "mqtt:\n  broker: ssl://b:8883\n  tls:\n";
  ExpectErrors({
      {"tls with tcp://",
       "mqtt:\n  broker: tcp://b:1883\n  tls:\n    ca_file: " + cert + "\n",
       {"k.yaml:4:", "mqtt.tls.ca_file: set, but mqtt.broker 'tcp://b:1883' is not a TLS URL"}},
      {"verify: false with mqtt://",
       "mqtt:\n  broker: mqtt://b:1883\n  tls:\n    verify: false\n",
       {"k.yaml:4:", "mqtt.tls.verify: set, but"}},
      {"unknown tls field", tls + "    ca: x\n", {"k.yaml:4:", "unknown field 'mqtt.tls.ca'"}},
      {"tls not a map",
       tls.substr(0, tls.size() - 1) + " yes\n",
       {"k.yaml:3:", "mqtt.tls: expected a map"}},
      {"tls twice",
       tls + "    verify: true\n  tls:\n    verify: true\n",
       {"k.yaml:5:", "mqtt.tls: set twice"}},
      {"tls field twice",
       tls + "    verify: true\n    verify: false\n",
       {"k.yaml:5:", "mqtt.tls.verify: set twice"}},
      {"tls as a top-level section", "mqtt.tls:\n  verify: true\n", {"unknown section 'mqtt.tls'"}},
      {"verify not a boolean", tls + "    verify: maybe\n", {"k.yaml:4:", "mqtt.tls.verify"}},
      {"missing ca file",
       tls + "    ca_file: " + dir.File("nope") + "\n",
       {"k.yaml:4:", "mqtt.tls.ca_file: cannot read '" + dir.File("nope") + "'"}},
      {"a key as the ca file",
       tls + "    ca_file: " + key + "\n",
       {"k.yaml:4:", "mqtt.tls.ca_file: '" + key + "' holds no PEM certificate"}},
      {"a certificate as the key",
       tls + "    cert_file: " + cert + "\n    key_file: " + cert + "\n",
       {"k.yaml:5:", "mqtt.tls.key_file: '" + cert + "' holds no PEM private key"}},
      {"cert without key",
       tls + "    cert_file: " + cert + "\n",
       {"k.yaml:4:", "mqtt.tls.cert_file: give mqtt.tls.key_file too"}},
      {"key without cert",
       tls + "    key_file: " + key + "\n",
       {"k.yaml:4:", "mqtt.tls.key_file: give mqtt.tls.cert_file too"}},
      {"password without key",
       tls + "    key_password_file: " + password + "\n",
       {"k.yaml:4:", "mqtt.tls.key_password_file: set without a key"}},
      {"encrypted key without password",
       tls + "    cert_file: " + cert + "\n    key_file: " + encrypted + "\n",
       {"k.yaml:5:", "mqtt.tls.key_file: the key is encrypted"}},
      {"missing password file",
       tls + "    cert_file: " + cert + "\n    key_file: " + encrypted +
           "\n    key_password_file: " + dir.File("nope") + "\n",
       {"k.yaml:6:", "mqtt.tls.key_password_file: cannot read"}},
      {"a CA file OpenSSL cannot load",
       tls + "    ca_file: " + cert + "\n",
       {"k.yaml:4:", "mqtt.tls.ca_file: '" + cert + "': no CA certificate loaded"}},
      {"a certificate OpenSSL cannot load (key in the same file)",
       tls + "    cert_file: " + both + "\n",
       {"k.yaml:4:", "mqtt.tls.cert_file: '" + both + "': no certificate loaded"}},
  });
}

TEST(ConfigTest, HttpTokenRules) {
  EXPECT_EQ(ParseOk("http:\n  token: abcdefghijklmnop\n").http_token, "abcdefghijklmnop");
  Result<Config> r = ParseConfig("http:\n  token: short\n", kName);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("k.yaml:2: http.token: the token must have at least 16"),
            std::string::npos)
      << r.status().message();
  r = ParseConfig("http:\n  token: \"abcdefgh ijklmnop\"\n", kName);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("spaces"), std::string::npos);
  r = ParseConfig("http:\n  token: abcdefghijklmnop\n  token_file: /nonexistent\n", kName);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("both set"), std::string::npos);
  r = ParseConfig("http:\n  token_file: /nonexistent/komoku-token\n", kName);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot read '/nonexistent/komoku-token'"),
            std::string::npos);
}

// The start warns about an open API on any address but these.
TEST(ConfigTest, LoopbackHostsNeedNoToken) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) {
    EXPECT_TRUE(query::IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "192.168.1.10", "::", "", "128.0.0.1", "example.org"}) {
    EXPECT_FALSE(query::IsLoopbackHost(host)) << host;
  }
}

}  // namespace
}  // namespace komoku::app

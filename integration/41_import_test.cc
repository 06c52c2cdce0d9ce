// 41: `komoku import` and `komoku export` with the real binary on real
// files.
// - Round trip: numeric, boolean, string and counter keys written through
//   the real service over MQTT, part of them compacted into segments; `komoku
//   export` while the service runs (over its HTTP API) and after it stopped
//   (from the files) agree; the CSV imported into a fresh data directory
//   gives a komoku whose GET /api/v1/history answers equal the original's,
//   key by key; importing it again stores nothing; line protocol does the
//   same for every key it can hold. An import while the service runs is
//   refused, naming its pid. With http.max_points small, an export from the
//   running service halves its ranges until each fits, and equals the
//   export of the stopped service's files.
// - A CSV file with a BOM, CRLF, quoting and bad rows: each bad row named
//   by file and line, every other row imported, exit status 1; late rows
//   merge with the history a running komoku wrote, and a value that does
//   not fit an existing key's type is a bad row.
// - InfluxDB line protocol: Debian 12's influxdb package (1.6.7) has influxd
//   but neither influx_inspect nor a client that writes line protocol, so
//   the file is written here by hand following InfluxDB 1.x's documented
//   format (tags, escapes, 12i, t/F, strings, the DML header of
//   influx_inspect export). A real influxd 1.6 then checks it: it accepts
//   the same file on /write, and its /query answers equal the history
//   komoku imported from it; it accepts komoku's own line-protocol export
//   too.
// - Old rows: rows older than the hot window go straight into segments
//   (nothing of them in SQLite) and answer exactly as the same rows put
//   through the hot store and compacted (--no-cold); imported twice, nothing
//   is added; an overlapping file merges alike.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kMin = 60'000;
constexpr int64_t kDay = 24 * 60 * kMin;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Runs `argv`; stdout and stderr go to `log` (or stdout alone to `out`
// when given, through the shell), and returns the exit status.
int RunTool(const TempDir& dir, std::vector<std::string> argv, const std::string& log,
            const std::string& out = "") {
  if (!out.empty()) {
    std::string cmd = "exec";
    for (const std::string& a : argv) cmd += " '" + a + "'";
    cmd += " > '" + out + "'";
    argv = {"/bin/sh", "-c", cmd};
  }
  Process p(argv, dir.File(log));
  return p.Wait(std::chrono::seconds(300));
}

// Runs komoku with `args`, as RunTool.
int RunKomoku(const TempDir& dir, const std::vector<std::string>& args, const std::string& log,
              const std::string& out = "") {
  std::vector<std::string> argv = {KOMOKU_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunTool(dir, argv, log, out);
}

json History(const Komoku& k, const std::string& key) {
  auto r = k.Get("/api/v1/history?key=" + key + "&from=0&limit=10000");
  EXPECT_EQ(r.status, 200) << key << ": " << r.body;
  if (r.status != 200) return json();
  json j = r.Json();
  return json{{"type", j["type"]}, {"rows", j["rows"]}};
}

json Keys(const Komoku& k) { return k.Get("/api/v1/keys").Json()["keys"]; }

// The komoku of a data directory of its own, for an import into it.
struct Fresh {
  TempDir dir;
  Broker broker{dir};
  Komoku komoku{dir, broker};
};

TEST(ImportTest, ExportThenImportGivesIdenticalHistory) {
  TempDir dir;
  Broker broker(dir);
  Komoku komoku(dir, broker, "", "  hot_window_hours: 24\n  compact_interval: 0\n");
  ASSERT_TRUE(komoku.Start()) << komoku.Output();
  ASSERT_EQ(komoku.Post("/api/v1/define?key=rt/energy", R"({"type": "counter"})").status, 200);

  // Five days: the first three go to segments, the rest stays hot.
  const int64_t now = NowMs();
  const int64_t start = (now - 5 * kDay) / kMin * kMin;
  std::map<std::string, size_t> sent;
  {
    MqttClient mqtt(broker.url(), "it-import-rt");
    int i = 0;
    for (int64_t t = start; t < now - kMin; t += 37 * kMin, ++i) {
      auto set = [&](const std::string& key, const std::string& value) {
        mqtt.Publish("komoku/set/" + key,
                     R"({"value": )" + value + R"(, "time": )" + Seconds(t + i % 7) + "}");
        ++sent[key];
      };
      set("rt/temp", std::to_string(18 + (i * 7919 % 1000) / 100.0));
      set("rt/energy", std::to_string(1000 + i * 0.25));
      if (i % 3 == 0) set("rt/door", i % 2 ? "true" : "false");
      if (i % 5 == 0) {
        set("rt/mode", i % 2 ? R"("away, \"long\"")" : R"("21")");  // a number as a string
      }
      if (i % 11 == 0) set("rt/log", R"("line one\nline two")");
    }
  }
  for (const auto& entry : sent) {
    const std::string& key = entry.first;
    const auto n = entry.second;
    ASSERT_TRUE(WaitFor([&] { return History(komoku, key)["rows"].size() == n; },
                        std::chrono::seconds(120)))
        << key << ": " << History(komoku, key).dump();
  }
  auto compacted = komoku.Post("/api/v1/compact", "");
  ASSERT_EQ(compacted.status, 200) << compacted.body;
  ASSERT_GT(compacted.Json()["changes"].get<int>(), 0) << compacted.body;
  std::map<std::string, json> original;
  for (const auto& [key, n] : sent) original[key] = History(komoku, key);
  const json keys = Keys(komoku);

  // While the service runs, export asks it; an import is refused.
  ASSERT_EQ(RunKomoku(dir, {"export", "-c", komoku.config_path()}, "export-live.log",
                      dir.File("live.csv")),
            0)
      << ReadFile(dir.File("export-live.log"));
  const std::string pid = std::to_string(komoku.process()->pid());
  EXPECT_EQ(
      RunKomoku(dir, {"import", dir.File("live.csv"), "-c", komoku.config_path()}, "busy.log"), 1);
  EXPECT_NE(ReadFile(dir.File("busy.log")).find("pid " + pid), std::string::npos)
      << ReadFile(dir.File("busy.log"));
  ASSERT_EQ(komoku.Stop(), 0);

  ASSERT_EQ(
      RunKomoku(dir, {"export", "-c", komoku.config_path()}, "export.log", dir.File("all.csv")), 0)
      << ReadFile(dir.File("export.log"));
  EXPECT_EQ(ReadFile(dir.File("all.csv")), ReadFile(dir.File("live.csv")));
  // Line protocol cannot hold rt/log's line break: left out, named, exit 1.
  EXPECT_EQ(RunKomoku(dir, {"export", "--format=line", "-c", komoku.config_path()}, "export-lp.log",
                      dir.File("all.lp")),
            1);
  EXPECT_NE(ReadFile(dir.File("export-lp.log")).find("'rt/log'"), std::string::npos);
  // --key and --from/--to choose.
  ASSERT_EQ(RunKomoku(dir,
                      {"export", "--key=rt/d*", "--from", Seconds(start + kDay), "--to",
                       Seconds(start + 2 * kDay), "-c", komoku.config_path()},
                      "export-some.log", dir.File("some.csv")),
            0);
  {
    std::istringstream some(ReadFile(dir.File("some.csv")));
    std::string line;
    size_t rows = 0;
    std::getline(some, line);
    EXPECT_EQ(line, "key,time,value,type");
    while (std::getline(some, line)) {
      EXPECT_EQ(line.rfind("rt/door,", 0), 0u) << line;
      ++rows;
    }
    size_t expected = 0;
    for (const auto& row : original["rt/door"]["rows"]) {
      const int64_t t = std::llround(row[0].get<double>() * 1000);
      expected += t >= start + kDay && t < start + 2 * kDay;
    }
    EXPECT_EQ(rows, expected);
    EXPECT_GT(rows, 0u);
  }

  // CSV into an empty data directory: the same answers, key by key.
  Fresh csv;
  ASSERT_EQ(RunKomoku(csv.dir, {"import", dir.File("all.csv"), "-c", csv.komoku.config_path()},
                      "import.log"),
            0)
      << ReadFile(csv.dir.File("import.log"));
  ASSERT_EQ(RunKomoku(csv.dir, {"import", dir.File("all.csv"), "-c", csv.komoku.config_path()},
                      "import-again.log"),
            0);
  EXPECT_NE(ReadFile(csv.dir.File("import-again.log")).find(" 0 stored"), std::string::npos)
      << ReadFile(csv.dir.File("import-again.log"));
  ASSERT_TRUE(csv.komoku.Start()) << csv.komoku.Output();
  EXPECT_EQ(Keys(csv.komoku), keys);
  for (const auto& [key, want] : original) EXPECT_EQ(History(csv.komoku, key), want) << key;

  // Line protocol: the same for every key but rt/log.
  Fresh lp;
  ASSERT_EQ(RunKomoku(lp.dir, {"import", dir.File("all.lp"), "-c", lp.komoku.config_path()},
                      "import.log"),
            0)
      << ReadFile(lp.dir.File("import.log"));
  ASSERT_TRUE(lp.komoku.Start()) << lp.komoku.Output();
  for (const auto& [key, want] : original) {
    if (key != "rt/log") {
      EXPECT_EQ(History(lp.komoku, key), want) << key;
    }
  }
  EXPECT_EQ(lp.komoku.Get("/api/v1/history?key=rt/log").status, 404);
}

TEST(ImportTest, BadRowsAreNamedByLineAndTheRestMergesWithHistory) {
  TempDir dir;
  Broker broker(dir);
  Komoku komoku(dir, broker);
  ASSERT_TRUE(komoku.Start()) << komoku.Output();
  const int64_t now = NowMs() / 1000 * 1000;
  // What komoku has: a temperature now, which the import's older rows
  // must not replace as the current value.
  const int put = komoku.Put("/api/v1/value?key=house/temp", "20").status;
  ASSERT_TRUE(put == 200 || put == 201) << put;
  ASSERT_TRUE(WaitFor([&] { return History(komoku, "house/temp")["rows"].size() == 1; }));
  ASSERT_EQ(komoku.Stop(), 0);

  const std::string t1 = Seconds(now - 3 * 3600'000), t2 = Seconds(now - 2 * 3600'000);
  const std::string file = dir.File("history.csv");
  WriteFile(file,
            "\xEF\xBB\xBF"
            "key,time,value\r\n"  // 1
            "house/temp," +
                t1 +
                ",18.5\r\n"  // 2
                "house/temp," +
                t2 +
                ",19\r\n"  // 3
                "house/temp," +
                t2 +
                ",warm\r\n"  // 4: not a number
                "\r\n"       // 5
                "\"house/door, front\"," +
                t1 +
                ",true\r\n"  // 6
                "house/note," +
                t1 +
                ",\"said \"\"hi\"\",\r\nthen left\"\r\n"  // 7-8
                "house/temp,yesterday,1\r\n"              // 9: bad time
                "house/temp," +
                t1 +
                "\r\n"  // 10: two fields
                "house/+bad," +
                t1 +
                ",1\r\n"  // 11: bad key
                "house/temp," +
                t1 + ",\"1\"x\r\n");  // 12: bad quoting
  ASSERT_EQ(RunKomoku(dir, {"import", file, "-c", komoku.config_path()}, "import.log"), 1);
  const std::string log = ReadFile(dir.File("import.log"));
  for (int line : {4, 9, 10, 11, 12}) {
    EXPECT_NE(log.find(file + ":" + std::to_string(line) + ": "), std::string::npos) << line << "\n"
                                                                                     << log;
  }
  for (int line : {2, 3, 5, 6, 7, 8}) {
    EXPECT_EQ(log.find(file + ":" + std::to_string(line) + ": "), std::string::npos) << line << "\n"
                                                                                     << log;
  }
  EXPECT_NE(log.find("warm"), std::string::npos) << log;
  EXPECT_NE(log.find("4 stored, 0 already there, 5 rows refused"), std::string::npos) << log;

  ASSERT_TRUE(komoku.Start()) << komoku.Output();
  const json temp = History(komoku, "house/temp");
  ASSERT_EQ(temp["rows"].size(), 3u) << temp.dump();
  EXPECT_EQ(temp["rows"][0][1], 18.5);
  EXPECT_EQ(temp["rows"][1][1], 19);
  EXPECT_EQ(temp["rows"][2][1], 20);
  EXPECT_EQ(komoku.Get("/api/v1/value?key=house/temp").Json()["value"], 20);
  const json door = History(komoku, "house/door,%20front");
  EXPECT_EQ(door["type"], "boolean");
  EXPECT_EQ(door["rows"][0][1], true);
  const json note = History(komoku, "house/note");
  EXPECT_EQ(note["type"], "string");
  EXPECT_EQ(note["rows"][0][1], "said \"hi\",\nthen left");
}

// An export while the service runs asks its HTTP API a range at a time;
// a range with more changes than http.max_points is halved until each
// fits, and the result is the export of the stopped service's files.
TEST(ImportTest, ExportFromARunningServiceHalvesLargeRanges) {
  TempDir dir;
  Broker broker(dir);
  Komoku komoku(dir, broker, "", "", "  max_points: 7\n");
  const int64_t start = NowMs() / 1000 * 1000 - 3600'000;
  std::string csv;
  for (int i = 0; i < 100; ++i) {
    csv += "a/b," + Seconds(start + i * 13'001) + "," + std::to_string(i) + "\n";
    csv += "c," + Seconds(start + i * 7'003) + ",x" + std::to_string(i) + "\n";
  }
  WriteFile(dir.File("in.csv"), csv);
  ASSERT_EQ(
      RunKomoku(dir, {"import", dir.File("in.csv"), "-c", komoku.config_path()}, "import.log"), 0)
      << ReadFile(dir.File("import.log"));
  ASSERT_EQ(
      RunKomoku(dir, {"export", "-c", komoku.config_path()}, "export.log", dir.File("stopped.csv")),
      0);
  ASSERT_TRUE(komoku.Start()) << komoku.Output();
  ASSERT_EQ(RunKomoku(dir, {"export", "-c", komoku.config_path()}, "export-live.log",
                      dir.File("live.csv")),
            0)
      << ReadFile(dir.File("export-live.log"));
  EXPECT_EQ(ReadFile(dir.File("live.csv")), ReadFile(dir.File("stopped.csv")));
  EXPECT_NE(ReadFile(dir.File("live.csv")).find("c,"), std::string::npos);
  const std::string live = ReadFile(dir.File("live.csv"));
  EXPECT_EQ(std::count(live.begin(), live.end(), '\n'), 201);  // the header and every change
}

// Home Assistant's recorder schema 41 (homeassistant/components/recorder/
// db_schema.py, SCHEMA_VERSION = 41, the tables of states and long-term
// statistics as SQLAlchemy creates them on SQLite; the events tables and
// the legacy columns HA no longer writes are left out).
constexpr const char* kRecorderSchema41 = R"sql(
CREATE TABLE states_meta (metadata_id INTEGER NOT NULL, entity_id VARCHAR(255),
  PRIMARY KEY (metadata_id));
CREATE UNIQUE INDEX ix_states_meta_entity_id ON states_meta (entity_id);
CREATE TABLE state_attributes (attributes_id INTEGER NOT NULL, hash BIGINT, shared_attrs TEXT,
  PRIMARY KEY (attributes_id));
CREATE INDEX ix_state_attributes_hash ON state_attributes (hash);
CREATE TABLE states (state_id INTEGER NOT NULL, entity_id CHAR(0), state VARCHAR(255),
  attributes CHAR(0), event_id SMALLINT, last_changed DATETIME, last_changed_ts FLOAT,
  last_updated DATETIME, last_updated_ts FLOAT, old_state_id INTEGER, attributes_id INTEGER,
  context_id CHAR(0), context_user_id CHAR(0), context_parent_id CHAR(0), origin_idx SMALLINT,
  context_id_bin BLOB, context_user_id_bin BLOB, context_parent_id_bin BLOB, metadata_id INTEGER,
  PRIMARY KEY (state_id),
  FOREIGN KEY(old_state_id) REFERENCES states (state_id),
  FOREIGN KEY(attributes_id) REFERENCES state_attributes (attributes_id),
  FOREIGN KEY(metadata_id) REFERENCES states_meta (metadata_id));
CREATE INDEX ix_states_metadata_id_last_updated_ts ON states (metadata_id, last_updated_ts);
CREATE INDEX ix_states_last_updated_ts ON states (last_updated_ts);
CREATE TABLE statistics_meta (id INTEGER NOT NULL, statistic_id VARCHAR(255),
  source VARCHAR(32), unit_of_measurement VARCHAR(255), has_mean BOOLEAN, has_sum BOOLEAN,
  name VARCHAR(255), PRIMARY KEY (id));
CREATE UNIQUE INDEX ix_statistics_meta_statistic_id ON statistics_meta (statistic_id);
CREATE TABLE statistics (id INTEGER NOT NULL, created DATETIME, created_ts FLOAT,
  metadata_id INTEGER, start DATETIME, start_ts FLOAT, mean FLOAT, min FLOAT, max FLOAT,
  last_reset DATETIME, last_reset_ts FLOAT, state FLOAT, sum FLOAT, PRIMARY KEY (id),
  FOREIGN KEY(metadata_id) REFERENCES statistics_meta (id) ON DELETE CASCADE);
CREATE UNIQUE INDEX ix_statistics_statistic_id_start_ts ON statistics (metadata_id, start_ts);
CREATE TABLE schema_changes (change_id INTEGER NOT NULL, schema_version INTEGER,
  changed DATETIME NOT NULL, PRIMARY KEY (change_id));
INSERT INTO schema_changes (schema_version, changed) VALUES (41, '2026-12-01 00:00:00');
)sql";

TEST(ImportTest, HomeAssistantRecorderDatabase) {
  TempDir dir;
  const std::string db_path = dir.File("home-assistant_v2.db");
  const int64_t hour = 3600'000;
  const int64_t t0 = NowMs() / hour * hour - 48 * hour;  // statistics before the states
  const int64_t s0 = t0 + 24 * hour;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
    auto exec = [&](const std::string& sql) {
      char* err = nullptr;
      EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
          << (err ? err : "") << "\n"
          << sql;
      sqlite3_free(err);
    };
    exec(kRecorderSchema41);
    auto ts = [](int64_t ms) { return Seconds(ms); };
    exec(R"(INSERT INTO states_meta VALUES (1, 'sensor.kitchen_temperature'),
             (2, 'binary_sensor.front_door'), (3, 'sensor.energy_meter'), (4, 'input_select.mode'))");
    exec(R"(INSERT INTO state_attributes VALUES
      (1, 11, '{"state_class":"measurement","unit_of_measurement":"°C","device_class":"temperature"}'),
      (2, 22, '{"device_class":"door"}'),
      (3, 33, '{"state_class":"total_increasing","unit_of_measurement":"kWh","device_class":"energy"}'),
      (4, 44, '{"options":["home","away"]}'))");
    exec(
        "INSERT INTO states (state_id, state, last_updated_ts, attributes_id, metadata_id) VALUES "
        "(1, '21.5', " +
        ts(s0) + ", 1, 1), (2, 'unavailable', " + ts(s0 + 60'000) +
        ", 1, 1), "
        "(3, '22.25', " +
        ts(s0 + 120'000) + ", 1, 1), (4, 'warm', " + ts(s0 + 180'000) + ", 1, 1), (5, 'on', " +
        ts(s0) + ", 2, 2), (6, 'off', " + ts(s0 + 90'000) +
        ", 2, 2), "
        "(7, '1200.5', " +
        ts(s0) + ", 3, 3), (8, '1201.25', " + ts(s0 + 3600'000) +
        ", 3, 3), "
        "(9, 'home', " +
        ts(s0) + ", 4, 4), (10, 'away', " + ts(s0 + 600'000) + ", 4, 4)");
    exec(R"(INSERT INTO statistics_meta VALUES
      (1, 'sensor.kitchen_temperature', 'recorder', '°C', 1, 0, NULL),
      (2, 'sensor.energy_meter', 'recorder', 'kWh', 0, 1, NULL))");
    // Two hours before the first state of each, and one at it (which the
    // states tell instead).
    exec(
        "INSERT INTO statistics (metadata_id, start_ts, mean, min, max, state, sum) VALUES "
        "(1, " +
        ts(t0) + ", 19.5, 19, 20, NULL, NULL), (1, " + ts(t0 + hour) +
        ", 20.25, 20, 21, NULL, NULL), (1, " + ts(s0) +
        ", 21.5, 21, 22, NULL, NULL), "
        "(2, " +
        ts(t0) + ", NULL, NULL, NULL, 1190, 0), (2, " + ts(t0 + hour) +
        ", NULL, NULL, NULL, 1191.5, 1.5), (2, " + ts(s0) + ", NULL, NULL, NULL, 1200.5, 10.5)");
    sqlite3_close(db);
  }
  Fresh fresh;
  ASSERT_EQ(
      RunKomoku(fresh.dir, {"import", db_path, "-c", fresh.komoku.config_path()}, "import.log"), 1);
  const std::string log = ReadFile(fresh.dir.File("import.log"));
  EXPECT_NE(log.find(db_path + ":states:4: "), std::string::npos) << log;  // 'warm'
  ASSERT_TRUE(fresh.komoku.Start()) << fresh.komoku.Output();
  auto rows = [&](const std::string& key) {
    json out = json::array();
    const json h = History(fresh.komoku, key);
    for (const auto& r : h["rows"]) {
      out.push_back({std::llround(r[0].get<double>() * 1000), r[1]});
    }
    return out;
  };
  EXPECT_EQ(History(fresh.komoku, "sensor/kitchen_temperature")["type"], "numeric");
  EXPECT_EQ(rows("sensor/kitchen_temperature"),
            (json{{t0, 19.5}, {t0 + hour, 20.25}, {s0, 21.5}, {s0 + 120'000, 22.25}}));
  EXPECT_EQ(History(fresh.komoku, "binary_sensor/front_door")["type"], "boolean");
  EXPECT_EQ(rows("binary_sensor/front_door"), (json{{s0, true}, {s0 + 90'000, false}}));
  EXPECT_EQ(History(fresh.komoku, "sensor/energy_meter")["type"], "counter");
  EXPECT_EQ(rows("sensor/energy_meter"),
            (json{{t0, 1190}, {t0 + hour, 1191.5}, {s0, 1200.5}, {s0 + hour, 1201.25}}));
  EXPECT_EQ(History(fresh.komoku, "input_select/mode")["type"], "string");
  EXPECT_EQ(rows("input_select/mode"), (json{{s0, "home"}, {s0 + 600'000, "away"}}));
}

// A real influxd 1.6 on free loopback ports, its files in `dir`.
class Influxd {
 public:
  explicit Influxd(const TempDir& dir) : port_(FreeLoopbackPort()) {
    const std::string conf = dir.File("influxdb.conf");
    WriteFile(conf,
              "reporting-disabled = true\n"
              "bind-address = \"127.0.0.1:" +
                  std::to_string(FreeLoopbackPort()) +
                  "\"\n"
                  "[meta]\n  dir = \"" +
                  dir.File("influx/meta") +
                  "\"\n"
                  "[data]\n  dir = \"" +
                  dir.File("influx/data") + "\"\n  wal-dir = \"" + dir.File("influx/wal") +
                  "\"\n  query-log-enabled = false\n"
                  "[http]\n  bind-address = \"127.0.0.1:" +
                  std::to_string(port_) + "\"\n  log-enabled = false\n");
    process_ = std::make_unique<Process>(std::vector<std::string>{INFLUXD_BINARY, "-config", conf},
                                         dir.File("influxd.log"));
  }
  bool Ready() {
    return WaitFor(
        [&] {
          httplib::Client c("127.0.0.1", port_);
          auto r = c.Get("/ping");
          return r && r->status == 204;
        },
        std::chrono::seconds(60));
  }
  httplib::Result Post(const std::string& path, const std::string& body) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c.Post(path, body, "text/plain");
  }
  // The rows of `q` in epoch milliseconds: [[time, value], ...].
  json Query(const std::string& db, const std::string& q) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    auto r =
        c.Get("/query", httplib::Params{{"db", db}, {"q", q}, {"epoch", "ms"}}, httplib::Headers{});
    if (!r || r->status != 200) return json();
    json j = json::parse(r->body, nullptr, false);
    return j["results"][0]["series"][0]["values"];
  }
  std::string Output() const { return process_->Output(); }
  int port() const { return port_; }

 private:
  int port_;
  std::unique_ptr<Process> process_;
};

// A key of komoku and the InfluxQL query of the same series in database
// "home".
struct KeyAndQuery {
  std::string key, query;
  const char* type = "numeric";  // the type the import gave the key
};

// The key's history holds the times and values InfluxDB answers, under
// the type the import gave it.
void ExpectAsInfluxAnswers(Influxd& influx, const Komoku& komoku, const KeyAndQuery& p) {
  const json theirs = influx.Query("home", p.query);
  const json history = History(komoku, p.key);
  const json& ours = history["rows"];
  ASSERT_TRUE(theirs.is_array()) << p.query << ": " << theirs.dump();
  EXPECT_EQ(history["type"], p.type) << p.key;
  ASSERT_EQ(ours.size(), theirs.size()) << p.key << ": " << ours.dump() << " " << theirs.dump();
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(std::llround(ours[i][0].get<double>() * 1000), theirs[i][0].get<int64_t>());
    EXPECT_EQ(ours[i][1], theirs[i][1]) << p.key;
  }
}

TEST(ImportTest, LineProtocolAsInfluxDbReadsIt) {
  TempDir dir;
  Influxd influx(dir);
  ASSERT_TRUE(influx.Ready()) << influx.Output();

  // InfluxDB 1.x line protocol, by hand: the header influx_inspect export
  // writes, tags (one with an escaped space), integer, float, boolean and
  // string fields with escapes, nanosecond timestamps; and one bad line.
  const int64_t base = NowMs() / 1000 * 1000 - 3600'000;
  auto ns = [&](int64_t offset_ms) { return std::to_string((base + offset_ms) * 1'000'000); };
  const std::string points =
      "weather,site=home,room=living\\ room temperature=21.5,humidity=40i " + ns(0) + "\n" +
      "weather,site=home,room=living\\ room temperature=21.75,humidity=41i " + ns(60'000) + "\n" +
      "door,site=home open=t " + ns(0) + "\n" + "door,site=home open=F " + ns(30'000) + "\n" +
      "alarm value=\"armed \\\"away\\\", all\" " + ns(0) + "\n" + "power value=-1.5e3 " + ns(0) +
      "\n";
  const std::string file = dir.File("influx.lp");
  WriteFile(file, "# DML\n# CONTEXT-DATABASE: home\n# CONTEXT-RETENTION-POLICY: autogen\n" +
                      points + "power value=oops " + ns(1000) + "\n");

  // The real InfluxDB takes the same points.
  ASSERT_TRUE(influx.Post("/query?q=CREATE%20DATABASE%20home", ""));
  auto wrote = influx.Post("/write?db=home", points);
  ASSERT_TRUE(wrote);
  ASSERT_EQ(wrote->status, 204) << wrote->body;

  Fresh fresh;
  ASSERT_EQ(RunKomoku(fresh.dir, {"import", file, "-c", fresh.komoku.config_path()}, "import.log"),
            1);
  const std::string log = ReadFile(fresh.dir.File("import.log"));
  EXPECT_NE(log.find(file + ":10: "), std::string::npos) << log;
  ASSERT_TRUE(fresh.komoku.Start()) << fresh.komoku.Output();

  // Each field of InfluxDB is a key of komoku: measurement/tag values/field.
  const KeyAndQuery pairs[] = {
      {"weather/home/living%20room/temperature", "SELECT temperature FROM weather"},
      {"weather/home/living%20room/humidity", "SELECT humidity FROM weather"},
      {"door/home/open", "SELECT open FROM door", "boolean"},
      {"alarm", "SELECT value FROM alarm", "string"},
      {"power", "SELECT value FROM power"},
  };
  for (const KeyAndQuery& p : pairs) ExpectAsInfluxAnswers(influx, fresh.komoku, p);

  // komoku's own line-protocol export is line protocol InfluxDB takes.
  ASSERT_EQ(fresh.komoku.Stop(), 0);
  ASSERT_EQ(RunKomoku(fresh.dir, {"export", "--format=line", "-c", fresh.komoku.config_path()},
                      "export.log", fresh.dir.File("out.lp")),
            0)
      << ReadFile(fresh.dir.File("export.log"));
  ASSERT_TRUE(influx.Post("/query?q=CREATE%20DATABASE%20back", ""));
  auto back = influx.Post("/write?db=back", ReadFile(fresh.dir.File("out.lp")));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->status, 204) << back->body;
  const json temps =
      influx.Query("back", "SELECT value FROM \"weather/home/living room/temperature\"");
  ASSERT_TRUE(temps.is_array()) << temps.dump();
  ASSERT_EQ(temps.size(), 2u);
  EXPECT_EQ(temps[1][1], 21.75);
}

// What InfluxDB 1.6's own CLI writes (influxdb-client 1.6.7): `influx
// -execute 'SELECT * FROM "m" GROUP BY *; ...' -format csv`, a header
// before each series, the tags in a column (none for a measurement without
// tags), imported as it is; every key answers the values InfluxDB answers.
// (One query over every measurement, FROM /.*/, loses a field whose type
// differs between measurements: InfluxDB 1.6 answers "value" of alarm, a
// string, or of power, a float, not both.)
TEST(ImportTest, InfluxCliCsvExport) {
  TempDir dir;
  Influxd influx(dir);
  ASSERT_TRUE(influx.Ready()) << influx.Output();
  const int64_t base = NowMs() / 1000 * 1000 - 3600'000;
  auto ns = [&](int64_t offset_ms) { return std::to_string((base + offset_ms) * 1'000'000); };
  ASSERT_TRUE(influx.Post("/query?q=CREATE%20DATABASE%20home", ""));
  auto wrote = influx.Post(
      "/write?db=home",
      "weather,site=home,room=living\\ room temperature=21.5,humidity=40i " + ns(0) + "\n" +
          "weather,site=home,room=living\\ room temperature=21.75 " + ns(60'000) + "\n" +
          "weather,site=home,room=kitchen temperature=19.25,humidity=55i " + ns(30'000) + "\n" +
          "door,site=home open=t " + ns(0) + "\n" + "door,site=home open=F " + ns(30'000) + "\n" +
          "alarm value=\"armed \\\"away\\\", all\" " + ns(0) + "\n" + "power value=-1.5e3 " +
          ns(0) + "\n");
  ASSERT_TRUE(wrote);
  ASSERT_EQ(wrote->status, 204) << wrote->body;
  const std::string csv = dir.File("influx.csv");
  const std::string queries =
      "SELECT * FROM weather GROUP BY *; SELECT * FROM door GROUP BY *; "
      "SELECT * FROM alarm GROUP BY *; SELECT * FROM power GROUP BY *";
  ASSERT_EQ(RunTool(dir,
                    {INFLUX_BINARY, "-host", "127.0.0.1", "-port", std::to_string(influx.port()),
                     "-database", "home", "-execute", queries, "-format", "csv"},
                    "influx.log", csv),
            0)
      << ReadFile(dir.File("influx.log"));
  const std::string exported = ReadFile(csv);
  ASSERT_NE(exported.find("name,tags,time,"), std::string::npos) << exported;
  ASSERT_NE(exported.find("name,time,value"), std::string::npos) << exported;

  Fresh fresh;
  ASSERT_EQ(RunKomoku(fresh.dir, {"import", csv, "-c", fresh.komoku.config_path()}, "import.log"),
            0)
      << ReadFile(fresh.dir.File("import.log")) << exported;
  ASSERT_TRUE(fresh.komoku.Start()) << fresh.komoku.Output();
  // The key: the measurement, the tag values sorted by tag name (as
  // InfluxDB keeps them), the field.
  const KeyAndQuery pairs[] = {
      {"weather/living%20room/home/temperature",
       "SELECT temperature FROM weather WHERE room='living room'"},
      {"weather/living%20room/home/humidity",
       "SELECT humidity FROM weather WHERE room='living room' AND humidity > 0"},
      {"weather/kitchen/home/temperature", "SELECT temperature FROM weather WHERE room='kitchen'"},
      {"door/home/open", "SELECT open FROM door", "boolean"},
      {"alarm", "SELECT value FROM alarm", "string"},
      {"power", "SELECT value FROM power"},
  };
  for (const KeyAndQuery& p : pairs) ExpectAsInfluxAnswers(influx, fresh.komoku, p);
  EXPECT_EQ(Keys(fresh.komoku).size(), 7u) << Keys(fresh.komoku).dump();
}

// Rows older than the hot window go straight into segments, never into
// SQLite, and answer exactly as the same rows put through the hot store
// and compacted (--no-cold, then `komoku compact`): raw history, buckets
// of several steps, stats. Imported twice, nothing is added; a second file
// that overlaps merges alike. Gathered a few rows at a time (--cold-rows),
// an import answers as one that hands them over at once.
TEST(ImportTest, OldRowsGoStraightToSegmentsAndAnswerAsBefore) {
  TempDir files;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  // Rows every 20 minutes from `from_days` days ago to an hour ago; `shift`
  // moves the values (an overlapping file says other things).
  auto write_csv = [&](const std::string& name, int from_days, int shift) {
    std::string text = "key,time,value,type\n";
    for (int64_t t = now - from_days * kDay; t < now - 60 * kMin; t += 20 * kMin) {
      const int64_t i = (t / (10 * kMin)) % 1000;
      text += "old/temp," + Seconds(t) + "," + std::to_string(15 + (i * 7 + shift) % 50 / 10.0) +
              ",numeric\n";
      text +=
          "old/energy," + Seconds(t + 1000) + "," + std::to_string(i * 2 + shift) + ",counter\n";
      text += "old/door," + Seconds(t + 2000) + "," + ((i + shift) % 9 < 4 ? "true" : "false") +
              ",boolean\n";
      // Repeats within same_value_resolution (60 s): the second is not kept.
      const std::string mode = (i + shift) % 13 < 6 ? "eco" : "heating";
      text += "old/mode," + Seconds(t + 3000) + "," + mode + ",string\n";
      text += "old/mode," + Seconds(t + 33000) + "," + mode + ",string\n";
    }
    WriteFile(files.File(name), text);
  };
  write_csv("first.csv", 40, 0);
  write_csv("overlap.csv", 55, 3);

  Fresh before;  // the way before: every row through SQLite, then compaction
  Fresh cold;    // old rows straight into segments
  Fresh small;   // the same, 997 rows at a time: hand-overs end mid-day, mid-key
  auto import_both = [&](const std::string& csv) {
    ASSERT_EQ(RunKomoku(before.dir,
                        {"import", "--no-cold", files.File(csv), "-c", before.komoku.config_path()},
                        "import-" + csv + ".log"),
              0)
        << ReadFile(before.dir.File("import-" + csv + ".log"));
    ASSERT_EQ(RunKomoku(before.dir, {"compact", "-c", before.komoku.config_path()},
                        "compact-" + csv + ".log"),
              0)
        << ReadFile(before.dir.File("compact-" + csv + ".log"));
    ASSERT_EQ(RunKomoku(cold.dir, {"import", files.File(csv), "-c", cold.komoku.config_path()},
                        "import-" + csv + ".log"),
              0)
        << ReadFile(cold.dir.File("import-" + csv + ".log"));
    ASSERT_EQ(RunKomoku(small.dir,
                        {"import", "--cold-rows", "997", files.File(csv), "-c",
                         small.komoku.config_path()},
                        "import-" + csv + ".log"),
              0)
        << ReadFile(small.dir.File("import-" + csv + ".log"));
  };
  // What SQLite holds of a data directory older than `before_ms`.
  auto hot_rows_before = [](const TempDir& dir, int64_t before_ms) {
    std::string db;
    for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
      if (e.path().filename() == "komoku.db") db = e.path().string();
    }
    EXPECT_FALSE(db.empty());
    sqlite3* h = nullptr;
    EXPECT_EQ(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    int64_t n = 0;
    for (const char* table : {"changes", "recent"}) {
      sqlite3_stmt* st = nullptr;
      const std::string sql = std::string("SELECT count(*) FROM ") + table + " WHERE time_ms < " +
                              std::to_string(before_ms);
      if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW) {
        n += sqlite3_column_int64(st, 0);
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return n;
  };
  auto segment_files = [](const TempDir& dir) {
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
      n += e.path().extension() == ".kkd";
    }
    return n;
  };
  auto expect_same_answers = [&](const std::string& when) {
    SCOPED_TRACE(when);
    ASSERT_TRUE(before.komoku.Start()) << before.komoku.Output();
    for (Fresh* other : {&cold, &small}) {
      ASSERT_TRUE(other->komoku.Start()) << other->komoku.Output();
      SCOPED_TRACE(other == &cold ? "imported cold" : "imported cold, 997 rows at a time");
      EXPECT_EQ(Keys(before.komoku), Keys(other->komoku));
      const std::string from = Seconds(now - 60 * kDay), to = Seconds(now);
      const std::string mid = Seconds(now - 20 * kDay - 7 * kMin);
      for (const char* key : {"old/temp", "old/energy", "old/door", "old/mode"}) {
        const json raw = History(before.komoku, key);
        EXPECT_GT(raw["rows"].size(), 1000u) << key;
        EXPECT_EQ(History(other->komoku, key), raw) << key;
        for (const std::string& q :
             {"/api/v1/history?key=" + std::string(key) + "&from=" + from + "&to=" + to +
                  "&step=1h",
              "/api/v1/history?key=" + std::string(key) + "&from=" + mid + "&to=" + to +
                  "&step=1d&tz=Europe/Berlin",
              "/api/v1/history?key=" + std::string(key) + "&from=" + from + "&to=" + mid +
                  "&step=90m",
              "/api/v1/stats?key=" + std::string(key) + "&from=" + from + "&to=" + to,
              "/api/v1/stats?key=" + std::string(key) + "&from=" + mid + "&to=" + to,
              "/api/v1/at?key=" + std::string(key) + "&time=" + mid}) {
          auto a = before.komoku.Get(q);
          auto b = other->komoku.Get(q);
          EXPECT_EQ(a.status, 200) << q << ": " << a.body;
          EXPECT_EQ(a.body, b.body) << q;
        }
      }
      ASSERT_EQ(other->komoku.Stop(), 0);
    }
    ASSERT_EQ(before.komoku.Stop(), 0);
  };

  import_both("first.csv");
  // Nothing older than the hot window (two days by default) went into SQLite.
  EXPECT_EQ(hot_rows_before(cold.dir, now - 3 * kDay), 0);
  EXPECT_GT(segment_files(cold.dir), 0u);
  EXPECT_NE(ReadFile(cold.dir.File("import-first.csv.log")).find(" 0 rows refused"),
            std::string::npos);
  expect_same_answers("first file");

  // The same file again: nothing stored.
  ASSERT_EQ(
      RunKomoku(cold.dir, {"import", files.File("first.csv"), "-c", cold.komoku.config_path()},
                "again.log"),
      0);
  EXPECT_NE(ReadFile(cold.dir.File("again.log")).find(" 0 stored"), std::string::npos)
      << ReadFile(cold.dir.File("again.log"));
  expect_same_answers("the same file again");

  import_both("overlap.csv");
  EXPECT_EQ(hot_rows_before(cold.dir, now - 3 * kDay), 0);
  EXPECT_EQ(hot_rows_before(small.dir, now - 3 * kDay), 0);
  expect_same_answers("an overlapping file");
}

}  // namespace
}  // namespace komoku::testing

// 34: the Prometheus-compatible read API (issue 23, docs/prometheus.md)
// against the real komoku binary, with real clients:
// - promtool (Debian's `prometheus` 2.42) runs `query instant`, `query
//   range`, `query labels` and `query series` against komoku and reads back
//   the keys as series: names, labels, booleans and string states as 0/1;
// - refusals come in Prometheus's error shape, naming what is unsupported;
// - a real Prometheus 2.42, fed the same samples as komoku (`promtool tsdb
//   create-blocks-from openmetrics`), answers every supported function,
//   aggregation, matcher and operator as komoku does, to 1e-9, on random
//   data with gaps and counter resets (the seed is printed to replay it).
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

std::string Encode(const std::string& s) { return httplib::detail::encode_query_param(s); }

// Runs promtool with `args`; its exit status and output.
struct ToolRun {
  int status = -1;
  std::string output;
};
ToolRun Promtool(const TempDir& dir, std::vector<std::string> args, const std::string& name) {
  args.insert(args.begin(), PROMTOOL_BINARY);
  Process p(args, dir.File(name + ".promtool.log"));
  ToolRun run;
  run.status = p.Wait(std::chrono::seconds(60));
  run.output = p.Output();
  return run;
}

class PrometheusApiTest : public KomokuTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(PROMTOOL_BINARY, X_OK), 0)
        << PROMTOOL_BINARY << " is missing: scripts/install-deps.sh test installs it";
    KomokuTest::SetUp();
  }
  void TearDown() override {
    if (prometheus_) {
      if (HasFailure()) std::cerr << "----- prometheus output -----\n" << prometheus_->Output();
      prometheus_->Stop();
    }
    KomokuTest::TearDown();
  }

  // Puts `value` into `key` at `t` seconds; the change must be stored.
  void PutAt(const std::string& key, const std::string& value, double t) {
    std::ostringstream time;
    time.precision(15);
    time << t;
    auto r = komoku_->Put("/api/v1/value?key=" + Encode(key) + "&time=" + time.str(), value);
    ASSERT_TRUE(r.status == 200 || r.status == 201) << key << " " << value << ": " << r.body;
  }
  void Define(const std::string& key, const std::string& body) {
    auto r = komoku_->Post("/api/v1/define?key=" + Encode(key), body, "application/json");
    ASSERT_EQ(r.status, 200) << key << ": " << r.body;
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(komoku_->http_port()); }

  // A GET on `port` (komoku's or Prometheus's): status and JSON body.
  static std::pair<int, json> GetJson(int port, const std::string& path) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(std::chrono::seconds(60));
    auto res = cli.Get(path);
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  // A real Prometheus 2.42 fed the samples komoku holds for `keys` (key,
  // type), by the rules of docs/prometheus.md: each stored change, read
  // back (a repeat may not be stored), of two at one time the later; a
  // string key one series per state of `states`.
  void StartPrometheusWithTheSamples(const std::vector<std::pair<std::string, std::string>>& keys,
                                     const std::vector<std::string>& states) {
    const std::string om = dir_.File("samples.om");
    {
      std::ofstream out(om);
      out.precision(17);
      for (const auto& [key, type] : keys) {
        auto h = komoku_->Get("/api/v1/history?key=" + Encode(key) + "&from=0&limit=10000");
        ASSERT_EQ(h.status, 200) << h.body;
        const json rows = h.Json()["rows"];
        ASSERT_GT(rows.size(), 5u) << key;  // at least 9 for every seed tried
        ASSERT_LT(rows.size(), 10000u) << key << ": more than one page of history";
        std::string name = key;
        std::replace(name.begin(), name.end(), '/', '_');
        for (const std::string& state : type == "string" ? states : std::vector<std::string>{""}) {
          for (size_t i = 0; i < rows.size(); ++i) {
            const json& row = rows[i];
            const int64_t t = std::llround(row[0].get<double>() * 1000);
            if (i + 1 < rows.size() && std::llround(rows[i + 1][0].get<double>() * 1000) == t) {
              continue;  // the later of two at one time stands
            }
            double v = 0;
            if (row[1].is_boolean()) {
              v = row[1].get<bool>() ? 1 : 0;
            } else if (row[1].is_string()) {
              v = row[1].get<std::string>() == state ? 1 : 0;
            } else {
              v = row[1].get<double>();
            }
            out << name << "{key=\"" << key << "\"";
            if (!state.empty()) out << ",state=\"" << state << "\"";
            out << ",type=\"" << type << "\"} " << v << " " << t / 1000 << "." << std::setw(3)
                << std::setfill('0') << t % 1000 << std::setfill(' ') << "\n";
          }
        }
      }
      out << "# EOF\n";
    }
    ToolRun blocks = Promtool(
        dir_, {"tsdb", "create-blocks-from", "openmetrics", om, dir_.File("tsdb")}, "blocks");
    ASSERT_EQ(blocks.status, 0) << blocks.output;

    PrometheusOptions o;
    o.config = "global:\n  scrape_interval: 15s\n";
    o.args = {"--storage.tsdb.retention.time=10y"};
    prometheus_ = komoku::testing::StartPrometheus(
        dir_, o, [](int port) { return GetJson(port, "/api/v1/query?query=1").first == 200; },
        &prometheus_port_);
    ASSERT_TRUE(prometheus_) << "Prometheus did not start";
  }

  std::unique_ptr<Process> prometheus_;
  int prometheus_port_ = 0;
};

TEST_F(PrometheusApiTest, PromtoolReadsKeysAsSeries) {
  const double t0 = std::floor(static_cast<double>(std::time(nullptr))) - 3600;
  Define("power/meter", R"({"type":"counter"})");
  PutAt("kitchen/temperature", "21.5", t0);
  PutAt("kitchen/temperature", "22.25", t0 + 60);
  PutAt("power/meter", "100", t0);
  PutAt("power/meter", "160", t0 + 60);
  PutAt("hall/door", "true", t0);
  PutAt("hall/door", "false", t0 + 60);
  PutAt("alarm", "armed", t0);
  PutAt("alarm", "disarmed", t0 + 60);
  const std::string at = std::to_string(static_cast<long long>(t0 + 90));

  // An instant query: the newest change within the lookback, with its labels.
  ToolRun r =
      Promtool(dir_, {"query", "instant", "--time=" + at, Url(), "kitchen_temperature"}, "instant");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(
                R"(kitchen_temperature{key="kitchen/temperature", type="numeric"} => 22.25 @[)" +
                at + "]"),
            std::string::npos)
      << r.output;

  // Booleans are 0/1; a string is one series per state.
  r = Promtool(dir_, {"query", "instant", "--time=" + at, Url(), "hall_door or alarm"}, "refused");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("unsupported"), std::string::npos) << r.output;
  r = Promtool(dir_, {"query", "instant", "--time=" + at, Url(), "{__name__=~\"hall_door|alarm\"}"},
               "states");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(R"(hall_door{key="hall/door", type="boolean"} => 0 @[)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(R"(alarm{key="alarm", state="armed", type="string"} => 0 @[)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(R"(alarm{key="alarm", state="disarmed", type="string"} => 1 @[)"),
            std::string::npos)
      << r.output;

  // A range query: increase of the counter over each 2 minutes, every 30 s.
  const std::string start = std::to_string(static_cast<long long>(t0 + 60));
  const std::string end = std::to_string(static_cast<long long>(t0 + 120));
  r = Promtool(dir_,
               {"query", "range", "--start=" + start, "--end=" + end, "--step=30s", Url(),
                "increase(power_meter[2m])"},
               "range");
  ASSERT_EQ(r.status, 0) << r.output;
  // Two samples 60 s apart (100 at t0, 160 at t0+60) seen from each step's
  // 2-minute window: 60 s of samples, extrapolated to the window's 120 s
  // (the gap to each edge is within 1.1 intervals, and the zero point, 100 s
  // before t0, is further than the start): 60 * 120/60 = 120 at every step.
  EXPECT_NE(r.output.find(R"({key="power/meter", type="counter"} =>)"), std::string::npos)
      << r.output;
  size_t steps = 0;
  for (size_t p = r.output.find("120 @["); p != std::string::npos;
       p = r.output.find("120 @[", p + 1)) {
    ++steps;
  }
  EXPECT_EQ(steps, 3u) << r.output;

  // Labels and label values, series.
  r = Promtool(dir_, {"query", "labels", Url(), "__name__"}, "labels");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* name : {"alarm", "hall_door", "kitchen_temperature", "power_meter"}) {
    EXPECT_NE(r.output.find(name), std::string::npos) << name << "\n" << r.output;
  }
  r = Promtool(dir_, {"query", "labels", Url(), "type"}, "types");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "boolean\ncounter\nnumeric\nstring\n");
  r = Promtool(dir_, {"query", "series", "--match={type=\"string\"}", Url()}, "series");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output,
            "{__name__=\"alarm\", key=\"alarm\", state=\"armed\", type=\"string\"}\n"
            "{__name__=\"alarm\", key=\"alarm\", state=\"disarmed\", type=\"string\"}\n");
}

// The value of a Prometheus answer's sample, NaN and infinities included.
double SampleValue(const json& point) {
  const std::string text = point[1].get<std::string>();
  if (text == "NaN") return NAN;
  if (text == "+Inf") return HUGE_VAL;
  if (text == "-Inf") return -HUGE_VAL;
  return std::stod(text);
}

bool Close(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
}

// Empty when komoku's answer `got` equals Prometheus's `want` (the same
// result type, series, timestamps, and values to 1e-9); otherwise what
// differs.
std::string Compare(const json& want, const json& got) {
  if (!want.is_object()) return "Prometheus did not answer";
  if (want.value("status", "") == "error") {
    // A refusal of the same class: komoku's message is its own.
    if (!got.is_object() || got.value("status", "") != "error" ||
        got.value("errorType", "") != want.value("errorType", "")) {
      return "komoku answered " + got.dump() + ", Prometheus refused: " + want.dump();
    }
    return "";
  }
  if (!got.is_object() || got.value("status", "") != "success") {
    return "komoku refused: " + got.dump();
  }
  const json& w = want["data"];
  const json& g = got["data"];
  if (w["resultType"] != g["resultType"]) {
    return "result type " + g["resultType"].dump() + ", Prometheus " + w["resultType"].dump();
  }
  const std::string type = w["resultType"];
  if (type == "scalar") {
    if (w["result"][0] != g["result"][0] ||
        !Close(SampleValue(w["result"]), SampleValue(g["result"]))) {
      return "scalar " + g["result"].dump() + ", Prometheus " + w["result"].dump();
    }
    return "";
  }
  // Series by their labels (json objects print with sorted keys).
  std::map<std::string, json> ws, gs;
  const char* points = type == "vector" ? "value" : "values";
  for (const json& s : w["result"]) ws[s["metric"].dump()] = s[points];
  for (const json& s : g["result"]) gs[s["metric"].dump()] = s[points];
  for (const auto& [metric, pts] : ws) {
    if (!gs.count(metric)) return "missing series " + metric;
  }
  for (const auto& [metric, pts] : gs) {
    if (!ws.count(metric)) return "extra series " + metric;
    json wp = ws[metric];
    json gp = pts;
    if (type == "vector") {
      wp = json::array({wp});
      gp = json::array({gp});
    }
    if (wp.size() != gp.size()) {
      return metric + ": " + std::to_string(gp.size()) + " points, Prometheus " +
             std::to_string(wp.size());
    }
    for (size_t i = 0; i < wp.size(); ++i) {
      if (wp[i][0] != gp[i][0] || !Close(SampleValue(wp[i]), SampleValue(gp[i]))) {
        return metric + ": point " + gp[i].dump() + ", Prometheus " + wp[i].dump();
      }
    }
  }
  return "";
}

// Every supported function, aggregation, matcher and operator, over the
// random keys of the test below.
const char* const kQueries[] = {
    "rand_g1",
    "rand_g1 offset 7m",
    "rand_g2 offset -2m",
    R"({key=~"rand/g.*"})",
    R"({__name__=~"rand_g[12]"})",
    R"({__name__=~"rand_.*", key!="rand/g1", type!="string"})",
    R"({type="numeric", key!~"rand/g[23]"})",
    R"({__name__=~"(?i)RAND_C.*"})",
    R"({key=~"\\pL+/[gc]\\d"})",
    R"({__name__=~"rand_(?:g|c)1", key!~"(?s).*3"})",
    "rand_s",
    R"(rand_s{state="armed"})",
    "rand_b",
    "avg_over_time(rand_g1[10m])",
    R"(min_over_time({type="numeric"}[7m]))",
    R"(max_over_time({type="numeric"}[7m] offset 3m))",
    "sum_over_time(rand_g2[15m])",
    R"(count_over_time({key=~"rand/.*"}[5m]))",
    R"(last_over_time({__name__=~"rand_.*"}[20m]))",
    R"(changes({__name__=~"rand_.*"}[15m]))",
    "increase(rand_c1[10m])",
    R"(rate({type="counter"}[5m]))",
    R"(rate({type="counter"}[90s]))",
    R"(increase({type="counter"}[30m] offset 5m))",
    R"(delta({type="numeric"}[15m]))",
    "delta(rand_b[20m])",
    R"(deriv({type="numeric"}[15m]))",
    "deriv(rand_c1[10m] offset 2m)",
    "deriv(rand_b[30m])",
    R"(avg_over_time(rand_s{state="idle"}[30m]))",
    "sum(rand_g1)",
    R"(sum by (type) ({__name__=~"rand_.*"}))",
    R"(avg by (type) ({__name__=~"rand_.*"}))",
    R"(min without (key) ({type="numeric"}))",
    R"(max without (key, state) ({__name__=~"rand_.*"}))",
    R"(count by (__name__) ({__name__=~"rand_.*"}))",
    R"(sum(rate({type="counter"}[10m])) by (type))",
    R"(avg(avg_over_time({type="numeric"}[10m])))",
    "rand_g1 * 2 + 1",
    "-rand_g1",
    "2 ^ rand_b",
    "rand_g2 / 3",
    "rand_g3 % 7",
    "100 - rand_g1",
    "time()",
    "time() - 1000",
    "1 + 2 * 3 ^ 2",
    "(rand_g1)",
    // Range vectors: a matrix from an instant query, refused by a range query.
    "rand_g1[10m]",
    R"({__name__=~"rand_[bs]"}[3m] offset 1m)",
    // Refused by both, as bad_data.
    "rate(rand_g1)",
    "sum(rand_g1[5m])",
    "{}",
    R"({key=~""})",
    "rand_g1{",
    "1 +",
    "rand_g1 offset 5m offset 1m",
    "rand_g1[5m][5m]",
    "rate(rand_c1[0s])",
    "nosuchfunction(rand_g1)",
};

TEST_F(PrometheusApiTest, AnswersAsARealPrometheusFedTheSameSamples) {
  ASSERT_EQ(access(PROMETHEUS_BINARY, X_OK), 0)
      << PROMETHEUS_BINARY << " is missing: scripts/install-deps.sh test installs it";
  const unsigned seed = std::random_device()();
  std::cout << "seed " << seed << " (replay: KOMOKU_PROM_SEED=" << seed << ")\n";
  std::mt19937 rng(getenv("KOMOKU_PROM_SEED") ? std::stoul(getenv("KOMOKU_PROM_SEED")) : seed);
  auto uniform = [&](double a, double b) { return std::uniform_real_distribution<>(a, b)(rng); };
  auto chance = [&](double p) { return uniform(0, 1) < p; };

  // 90 minutes of changes ending 10 minutes ago, at random milliseconds,
  // 5-90 s apart, with gaps of 8-20 minutes (past the lookback), counter
  // resets and repeated values.
  const int64_t end_ms = (static_cast<int64_t>(std::time(nullptr)) - 600) * 1000;
  const int64_t start_ms = end_ms - 90 * 60 * 1000;
  Define("rand/c1", R"({"type":"counter"})");
  Define("rand/c2", R"({"type":"counter"})");
  const std::vector<std::string> keys = {"rand/g1", "rand/g2", "rand/g3", "rand/c1",
                                         "rand/c2", "rand/b",  "rand/s"};
  const std::vector<std::string> states = {"idle", "armed", "triggered"};
  for (const std::string& key : keys) {
    double counter = uniform(0, 1000);
    std::string last;
    int gaps = 0;  // at most 3, so that at least 30 minutes hold changes
    for (int64_t t = start_ms + static_cast<int64_t>(uniform(0, 30000)); t < end_ms;) {
      std::string value;
      if (chance(0.15) && !last.empty()) {
        value = last;
      } else if (key[5] == 'g') {
        value = std::to_string(std::round(uniform(-50, 50) * 1000) / 1000);
      } else if (key[5] == 'c') {
        counter = chance(0.05) ? std::round(uniform(0, 20)) : counter + std::round(uniform(0, 30));
        value = std::to_string(counter);
      } else if (key[5] == 'b') {
        value = chance(0.5) ? "true" : "false";
      } else {
        value = states[std::uniform_int_distribution<size_t>(0, 2)(rng)];
      }
      PutAt(key, value, static_cast<double>(t) / 1000);
      last = value;
      const bool gap = chance(0.04) && gaps < 3;
      gaps += gap ? 1 : 0;
      t += gap ? static_cast<int64_t>(uniform(8 * 60000, 20 * 60000))
               : static_cast<int64_t>(uniform(5000, 90000));
    }
  }

  std::vector<std::pair<std::string, std::string>> typed;
  typed.reserve(keys.size());
  for (const std::string& key : keys) {
    typed.emplace_back(key, key[5] == 'g'   ? "numeric"
                            : key[5] == 'c' ? "counter"
                            : key[5] == 'b' ? "boolean"
                                            : "string");
  }
  StartPrometheusWithTheSamples(typed, states);
  if (HasFatalFailure()) return;

  // Instant queries at random times over the data and past its end (where
  // the lookback runs out), and range queries at an odd step over it all.
  std::vector<int64_t> times;
  times.reserve(7);
  for (int i = 0; i < 6; ++i) {
    times.push_back(start_ms + static_cast<int64_t>(uniform(0, (end_ms - start_ms) + 600000)));
  }
  times.push_back(end_ms + 4 * 60000);
  auto seconds = [](int64_t ms) {
    return std::to_string(ms / 1000) + "." + std::to_string(1000 + ms % 1000).substr(1);
  };
  int compared = 0;
  int non_empty = 0;  // answers with at least one series: the comparison is not vacuous
  auto count = [&](const json& want) {
    if (want.value("status", "") != "success") return;
    const json& r = want["data"]["result"];
    if (!r.empty()) ++non_empty;
  };
  for (const char* query : kQueries) {
    for (int64_t t : times) {
      const std::string path = "/api/v1/query?query=" + Encode(query) + "&time=" + seconds(t);
      auto want = GetJson(prometheus_port_, path);
      auto got = GetJson(komoku_->http_port(), path);
      std::string diff = Compare(want.second, got.second);
      EXPECT_EQ(diff, "") << query << " at " << seconds(t);
      EXPECT_EQ(got.first, want.first) << query << " at " << seconds(t);
      count(want.second);
      ++compared;
    }
    for (const char* step : {"37", "5m"}) {
      const std::string path = "/api/v1/query_range?query=" + Encode(query) +
                               "&start=" + seconds(start_ms - 300000) +
                               "&end=" + seconds(end_ms + 600000) + "&step=" + step;
      auto want = GetJson(prometheus_port_, path);
      auto got = GetJson(komoku_->http_port(), path);
      std::string diff = Compare(want.second, got.second);
      EXPECT_EQ(diff, "") << query << " range step " << step;
      EXPECT_EQ(got.first, want.first) << query << " range step " << step;
      count(want.second);
      ++compared;
    }
  }
  // Bad parameters are refused alike.
  for (const char* params :
       {"query=time()&start=100&end=50&step=10", "query=time()&start=0&end=100&step=0",
        "query=time()&start=0&end=100000&step=1", "query=time()&start=x&end=100&step=10",
        "query=time()&start=0&end=100&step=1q", "start=0&end=100&step=10"}) {
    auto want = GetJson(prometheus_port_, std::string("/api/v1/query_range?") + params);
    auto got = GetJson(komoku_->http_port(), std::string("/api/v1/query_range?") + params);
    EXPECT_EQ(Compare(want.second, got.second), "") << params;
    EXPECT_EQ(got.first, want.first) << params;
  }
  std::cout << compared << " answers compared with Prometheus, " << non_empty << " not empty\n";
  EXPECT_GT(non_empty, compared / 2);
}

// Answers from rollups (docs/prometheus.md, "Answers from rollups"): two
// days compacted into segments and asked at ranges and steps that are whole
// rollup buckets read rollups, not changes, and answer as a real Prometheus
// fed the same samples does: samples on bucket edges (a range includes both
// ends), gaps, counter resets. A key with two changes at one time (which a
// series keeps only the later of) reads its changes and answers alike.
TEST_F(PrometheusApiTest, AnswersFromRollupsAsARealPrometheusDoes) {
  ASSERT_EQ(access(PROMETHEUS_BINARY, X_OK), 0)
      << PROMETHEUS_BINARY << " is missing: scripts/install-deps.sh test installs it";
  // A 24-hour hot window and no compaction but the one asked for.
  komoku_->Stop();
  komoku_ = std::make_unique<Komoku>(dir_, *broker_, "",
                                     "  hot_window_hours: 24\n  compact_interval: 0\n");
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();

  const unsigned seed = std::random_device()();
  std::cout << "seed " << seed << " (replay: KOMOKU_PROM_SEED=" << seed << ")\n";
  std::mt19937 rng(getenv("KOMOKU_PROM_SEED") ? std::stoul(getenv("KOMOKU_PROM_SEED")) : seed);
  auto uniform = [&](double a, double b) { return std::uniform_real_distribution<>(a, b)(rng); };
  auto chance = [&](double p) { return uniform(0, 1) < p; };

  // Two whole days, ending a day before today began: cold after a compaction.
  constexpr int64_t kHourMs = 3600 * 1000;
  constexpr int64_t kDayMs = 24 * kHourMs;
  const int64_t day0 = (static_cast<int64_t>(std::time(nullptr)) * 1000 / kDayMs - 3) * kDayMs;
  const int64_t end_ms = day0 + 2 * kDayMs;
  Define("roll/g", R"({"type":"numeric","opts":{"same_value_resolution":0}})");
  Define("roll/c", R"({"type":"counter"})");
  Define("roll/d", R"({"type":"numeric","opts":{"same_value_resolution":0}})");
  const std::vector<std::pair<std::string, std::string>> keys = {
      {"roll/g", "numeric"}, {"roll/c", "counter"}, {"roll/d", "numeric"}};
  const long long stored_before = komoku_->Metric("komoku_changes_accepted_total");
  long long published = 0;
  auto publish = [&](const std::string& key, double value, int64_t t) {
    std::ostringstream payload;
    payload.precision(15);
    payload << R"({"value": )" << value << R"(, "time": )" << static_cast<double>(t) / 1000 << "}";
    mqtt_->Publish("komoku/set/" + key, payload.str());
    ++published;
  };
  for (const auto& [key, type] : keys) {
    double counter = uniform(0, 1000);
    // Every 30 s, most on the second, so that many fall on bucket edges;
    // some at a random millisecond; now and then a gap of up to 90 minutes.
    for (int64_t slot = day0; slot < end_ms; slot += 30000) {
      if (chance(0.004)) slot += static_cast<int64_t>(uniform(20, 90)) * 60000;
      if (slot >= end_ms) break;
      const int64_t t = chance(0.2) ? slot + static_cast<int64_t>(uniform(1, 29999)) : slot;
      double v = std::round(uniform(-50, 50) * 100) / 100;
      if (type == "counter") {
        counter = chance(0.01) ? std::round(uniform(0, 20)) : counter + std::round(uniform(0, 30));
        v = counter;
      }
      publish(key, v, t);
      if (key == "roll/d" && chance(0.002)) publish(key, v + 1, t);  // a second at the same time
    }
  }
  ASSERT_TRUE(WaitFor(
      [&] { return komoku_->Metric("komoku_changes_accepted_total") - stored_before >= published; },
      std::chrono::seconds(120)))
      << komoku_->Metric("komoku_changes_accepted_total") - stored_before << " of " << published;
  auto compacted = komoku_->Post("/api/v1/compact", "");
  ASSERT_EQ(compacted.status, 200) << compacted.body;

  StartPrometheusWithTheSamples(keys, {});
  if (HasFatalFailure()) return;

  auto seconds = [](int64_t ms) {
    return std::to_string(ms / 1000) + "." + std::to_string(1000 + ms % 1000).substr(1);
  };
  auto reads = [&](const char* from) {
    return komoku_->Metric(std::string("komoku_promql_read_total{from=\"") + from + "\"}");
  };
  auto compare = [&](const std::string& query, const std::string& params) {
    const std::string path = "/api/v1/query_range?query=" + Encode(query) + "&" + params;
    auto want = GetJson(prometheus_port_, path);
    auto got = GetJson(komoku_->http_port(), path);
    EXPECT_EQ(Compare(want.second, got.second), "") << query << " " << params;
    EXPECT_EQ(got.first, want.first) << query << " " << params;
    return want.second.is_object() && want.second["data"]["result"].size() > 0;
  };
  const std::string around =
      "start=" + seconds(day0 - kHourMs) + "&end=" + seconds(end_ms + kHourMs);
  int non_empty = 0;
  for (const char* f : {"avg", "min", "max", "sum", "count"}) {
    for (const char* range : {"5m", "1h", "3h", "1d"}) {
      for (const char* step : {"300", "3600"}) {
        const std::string q = std::string(f) + "_over_time({key=~\"roll/.*\"}[" + range + "])";
        non_empty += compare(q, around + "&step=" + step);
      }
    }
  }
  non_empty += compare("avg_over_time(roll_g[1h] offset 1h)", around + "&step=3600");
  non_empty +=
      compare("sum by (type) (max_over_time({key=~\"roll/.*\"}[1h]))", around + "&step=3600");
  // Not whole buckets: the changes answer, alike.
  non_empty += compare("avg_over_time(roll_g[1h])", around + "&step=1234");
  non_empty += compare("avg_over_time(roll_g[17m])", around + "&step=3600");
  EXPECT_EQ(non_empty, 5 * 4 * 2 + 4);

  // Whole hours of roll/g read rollups alone; roll/d, with two changes at one
  // time, reads its changes.
  const long long changes_before = reads("changes"), rollups_before = reads("rollups");
  compare("avg_over_time(roll_g[1h])", around + "&step=3600");
  EXPECT_EQ(reads("changes"), changes_before);
  EXPECT_GT(reads("rollups"), rollups_before);
  compare("avg_over_time(roll_d[1h])", around + "&step=3600");
  EXPECT_GT(reads("changes"), changes_before);
}

TEST_F(PrometheusApiTest, EndpointsAnswerInPrometheusShapes) {
  const double t0 = std::floor(static_cast<double>(std::time(nullptr))) - 120;
  Define("power/meter", R"({"type":"counter"})");
  PutAt("kitchen/temperature", "21.5", t0);
  PutAt("power/meter", "100", t0);
  PutAt("alarm", "armed", t0);
  const int port = komoku_->http_port();

  // An instant vector, its value a string and its time in seconds.
  auto [status, body] = GetJson(port, "/api/v1/query?query=kitchen_temperature&time=" +
                                          std::to_string(static_cast<long long>(t0)) + ".5");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["status"], "success");
  EXPECT_EQ(body["data"]["resultType"], "vector");
  ASSERT_EQ(body["data"]["result"].size(), 1u) << body.dump();
  EXPECT_EQ(body["data"]["result"][0]["metric"], json({{"__name__", "kitchen_temperature"},
                                                       {"key", "kitchen/temperature"},
                                                       {"type", "numeric"}}));
  EXPECT_EQ(body["data"]["result"][0]["value"][0].get<double>(), t0 + 0.5);
  EXPECT_EQ(body["data"]["result"][0]["value"][1], "21.5");

  // A form-encoded POST, as Grafana and the Go client send.
  auto post = komoku_->Post("/api/v1/query",
                            "query=" + Encode("{type=\"counter\"} * 2") +
                                "&time=" + std::to_string(static_cast<long long>(t0)),
                            "application/x-www-form-urlencoded");
  ASSERT_EQ(post.status, 200) << post.body;
  json answer = json::parse(post.body);
  ASSERT_EQ(answer["data"]["result"].size(), 1u) << post.body;
  EXPECT_EQ(answer["data"]["result"][0]["value"][1], "200");
  EXPECT_EQ(answer["data"]["result"][0]["metric"],
            json({{"key", "power/meter"}, {"type", "counter"}}));

  // A scalar.
  std::tie(status, body) = GetJson(port, "/api/v1/query?query=1%2B1&time=100");
  EXPECT_EQ(body["data"], json({{"resultType", "scalar"}, {"result", {100, "2"}}})) << body.dump();

  // Refusals in Prometheus's shape, naming what is unsupported.
  std::tie(status, body) = GetJson(port, "/api/v1/query?query=" + Encode("irate(power_meter[5m])"));
  EXPECT_EQ(status, 400);
  EXPECT_EQ(body["status"], "error");
  EXPECT_EQ(body["errorType"], "bad_data");
  EXPECT_NE(body["error"].get<std::string>().find("unsupported: function \"irate\""),
            std::string::npos)
      << body.dump();
  std::tie(status, body) = GetJson(port, "/api/v1/query");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(body["errorType"], "bad_data");
  std::tie(status, body) = GetJson(port, "/api/v1/series");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(body["error"], "no match[] parameter provided");
  std::tie(status, body) = GetJson(port, "/api/v1/label/bad-name/values");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(body["errorType"], "bad_data");
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"bad_data\"}"), 4);

  // Labels, values, series, metadata, buildinfo.
  std::tie(status, body) = GetJson(port, "/api/v1/labels");
  EXPECT_EQ(body["data"], json({"__name__", "key", "state", "type"})) << body.dump();
  std::tie(status, body) = GetJson(port, "/api/v1/label/key/values");
  EXPECT_EQ(body["data"], json({"alarm", "kitchen/temperature", "power/meter"})) << body.dump();
  std::tie(status, body) =
      GetJson(port, "/api/v1/label/__name__/values?match[]=" + Encode("{type=~\"num.*|counter\"}"));
  EXPECT_EQ(body["data"], json({"kitchen_temperature", "power_meter"})) << body.dump();
  std::tie(status, body) = GetJson(port, "/api/v1/series?match[]=alarm&match[]=power_meter");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["data"],
            json({{{"__name__", "alarm"}, {"key", "alarm"}, {"state", "armed"}, {"type", "string"}},
                  {{"__name__", "power_meter"}, {"key", "power/meter"}, {"type", "counter"}}}))
      << body.dump();
  std::tie(status, body) = GetJson(port, "/api/v1/metadata");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["data"]["power_meter"][0]["type"], "counter");
  EXPECT_EQ(body["data"]["kitchen_temperature"][0]["type"], "gauge");
  std::tie(status, body) = GetJson(port, "/api/v1/status/buildinfo");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["data"]["version"], "2.42.0");

  // Komoku's own routes are untouched beside them.
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=alarm").status, 200);
}

// The fenced block of `lang` in a docs page.
std::string DocBlock(const std::string& page, const std::string& lang) {
  std::ifstream in(std::string(KOMOKU_SOURCE_DIR) + "/docs/" + page);
  std::stringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  const std::string open = "```" + lang + "\n";
  size_t start = text.find(open);
  if (start == std::string::npos) return "";
  start += open.size();
  return text.substr(start, text.find("```", start) - start);
}

TEST_F(PrometheusApiTest, GrafanaExamplesParseAndRun) {
  YAML::Node sources = YAML::Load(DocBlock("grafana.md", "yaml"));
  ASSERT_TRUE(sources["datasources"].IsSequence());
  const YAML::Node ds = sources["datasources"][0];
  EXPECT_EQ(ds["type"].as<std::string>(), "prometheus");
  EXPECT_EQ(ds["uid"].as<std::string>(), "komoku");
  EXPECT_EQ(ds["jsonData"]["httpMethod"].as<std::string>(), "POST");

  json dashboard = json::parse(DocBlock("grafana.md", "json"));
  ASSERT_TRUE(dashboard["panels"].is_array());
  const double t0 = std::floor(static_cast<double>(std::time(nullptr))) - 3600;
  Define("power/meter", R"({"type":"counter"})");
  for (int i = 0; i < 60; ++i) {
    PutAt("kitchen/temperature", std::to_string(20 + i % 3), t0 + i * 60);
    PutAt("power/meter", std::to_string(1000 + i * 0.02), t0 + i * 60);
  }
  PutAt("hall/door", "true", t0);
  PutAt("alarm", "armed", t0);
  int queries = 0;
  for (const json& panel : dashboard["panels"]) {
    EXPECT_EQ(panel["datasource"]["uid"], ds["uid"].as<std::string>());
    for (const json& target : panel["targets"]) {
      std::string expr = target["expr"];
      // As Grafana fills them in for a 60 s scrape interval and a 1h interval.
      for (auto [macro, value] :
           {std::pair<std::string, std::string>{"$__rate_interval", "4m"}, {"$__interval", "1h"}}) {
        for (size_t p; (p = expr.find(macro)) != std::string::npos;)
          expr.replace(p, macro.size(), value);
      }
      auto post = komoku_->Post(
          "/api/v1/query_range",
          "query=" + Encode(expr) + "&start=" + std::to_string(static_cast<long long>(t0)) +
              "&end=" + std::to_string(static_cast<long long>(t0 + 3600)) + "&step=60",
          "application/x-www-form-urlencoded");
      ASSERT_EQ(post.status, 200) << expr << ": " << post.body;
      json answer = json::parse(post.body);
      EXPECT_FALSE(answer["data"]["result"].empty()) << expr << ": " << post.body;
      ++queries;
    }
  }
  EXPECT_EQ(queries, 6);
}

}  // namespace
}  // namespace komoku::testing

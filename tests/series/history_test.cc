// History questions: small hand-built histories with hand-computed answers,
// and random histories against a brute-force evaluation of the step function
// millisecond by millisecond.
#include "series/history.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <random>

#include "key_options_util.h"
#include "store_test_util.h"
#include "wire/api.h"
#include "wire/history_json.h"

namespace komoku::store {
namespace {

using nlohmann::json;
using testing::FakeClock;
using testing::OpenTestStore;
using testing::Opts;
using testing::TempDir;

class HistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenTestStore(dir_.path() + "/data", &clock_);
    ASSERT_NE(store_, nullptr);
  }
  void Define(const std::string& key, KeyType type, json opts = json::object()) {
    opts["same_value_resolution"] = 0;
    ASSERT_TRUE(store_->Define(key, type, Opts(opts)).ok());
  }
  void Put(const std::string& key, int64_t t, const InputValue& v) {
    PutOptions o;
    o.time_ms = t;
    Result<Change> c = store_->Put(key, v, o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
  }
  HistoryQuery Query(const std::string& key, int64_t from, int64_t to, int64_t step,
                     const std::string& tz = "") {
    HistoryQuery q;
    q.key = key;
    q.from_ms = from;
    q.to_ms = to;
    Result<std::vector<int64_t>> b = BucketStarts(from, to, step, tz, 100000);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    q.buckets = *b;
    q.from_ms = q.buckets.front();
    q.step_ms = step;
    return q;
  }

  TempDir dir_;
  FakeClock clock_{10'000'000};
  std::unique_ptr<Store> store_;
};

TEST_F(HistoryTest, NumericBucketsByHand) {
  Define("t", KeyType::kNumeric);
  Put("t", 1000, 10.0);
  Put("t", 61000, 20.0);
  Put("t", 150000, 30.0);
  std::vector<Agg> aggs = *ParseAggs("avg,twavg,min,max,first,last,count,sum", KeyType::kNumeric);
  Result<json> rows = DownsampleJson(*store_, Query("t", 0, 180000, 60000), aggs);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0], json::parse("[0, 10, 10, 10, 10, 10, 10, 1, 10]"));
  EXPECT_DOUBLE_EQ((*rows)[1][2].get<double>(), (10.0 * 1000 + 20.0 * 59000) / 60000);
  EXPECT_DOUBLE_EQ((*rows)[2][2].get<double>(), 25.0);
  EXPECT_EQ((*rows)[2][1], 30.0);
  EXPECT_EQ((*rows)[1][7], 1);
}

TEST_F(HistoryTest, EmptyBucketsAreNullNotZeroAndTheValueCarriesIn) {
  Define("t", KeyType::kNumeric);
  Put("t", 1000, 4.0);
  Result<json> rows = DownsampleJson(*store_, Query("t", 60000, 180000, 60000),
                                     *ParseAggs("avg,twavg,count,sum", KeyType::kNumeric));
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0], json::parse("[60, null, 4, 0, null]"));
  EXPECT_EQ((*rows)[1], json::parse("[120, null, 4, 0, null]"));
}

// A counter's increase is null where nothing was known (before its first
// change) and 0 where it was known and did not move.
TEST_F(HistoryTest, IncreaseIsNullWhereNothingIsKnown) {
  Define("c", KeyType::kCounter);
  Put("c", 65000, 7.0);
  Result<json> rows = DownsampleJson(*store_, Query("c", 0, 180000, 60000),
                                     *ParseAggs("increase,rate", KeyType::kCounter));
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0], json::parse("[0, null, null]"));
  EXPECT_EQ((*rows)[1], json::parse("[60, 0.0, 0.0]"));
  EXPECT_EQ((*rows)[2], json::parse("[120, 0.0, 0.0]"));
}

TEST_F(HistoryTest, CounterIncreaseHandlesResetsAndGlitches) {
  Define("c", KeyType::kCounter, {{"reset_tolerance", 0.5}});
  Put("c", 1000, 100.0);
  Put("c", 2000, 105.0);
  Put("c", 3000, 104.8);  // a glitch: within 0.5 of 105
  Put("c", 4000, 106.0);  // counts 1, not 1.2
  Put("c", 5000, 2.0);    // a reset: counts 2
  Put("c", 6000, 5.0);
  Result<json> one = DownsampleJson(*store_, Query("c", 0, 10000, 10000),
                                    *ParseAggs("increase,rate", KeyType::kCounter));
  ASSERT_TRUE(one.ok());
  EXPECT_NEAR((*one)[0][1].get<double>(), 11.0, 1e-9);
  EXPECT_NEAR((*one)[0][2].get<double>(), 1.1, 1e-9);
  Result<json> per = DownsampleJson(*store_, Query("c", 0, 10000, 2000),
                                    *ParseAggs("increase", KeyType::kCounter));
  ASSERT_TRUE(per.ok());
  std::vector<double> got;
  for (const json& row : *per) got.push_back(row[1].get<double>());
  EXPECT_EQ(got.size(), 5u);
  const double want[] = {0, 5, 3, 3, 0};
  for (size_t i = 0; i < got.size() && i < 5; ++i) EXPECT_NEAR(got[i], want[i], 1e-9) << i;
}

TEST_F(HistoryTest, BooleanStatsAndTimespansByHand) {
  clock_.Set(7'200'000);
  Define("door", KeyType::kBoolean);
  Put("door", 0, false);
  Put("door", 3'600'000, true);
  Put("door", 5'400'000, false);
  HistoryQuery whole;
  whole.key = "door";
  whole.from_ms = 0;
  whole.to_ms = 7'200'000;
  whole.buckets = {0};
  Result<json> stats = StatsJson(*store_, whole, false, "");
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ((*stats)["time"], json::parse(R"({"false": 5400, "true": 1800, "unknown": 0})"));
  EXPECT_DOUBLE_EQ((*stats)["share"]["true"].get<double>(), 0.25);
  EXPECT_EQ((*stats)["changes"], 2);

  Result<json> hourly = StatsJson(*store_, Query("door", 0, 7'200'000, 3'600'000), false, "");
  ASSERT_TRUE(hourly.ok());
  ASSERT_EQ((*hourly)["buckets"].size(), 2u);
  // Both states of a boolean, also one that never held.
  EXPECT_EQ((*hourly)["buckets"][0]["time"],
            json::parse(R"({"false": 3600, "true": 0, "unknown": 0})"));
  EXPECT_EQ((*hourly)["buckets"][1]["time"],
            json::parse(R"({"false": 1800, "true": 1800, "unknown": 0})"));
  EXPECT_EQ((*hourly)["buckets"][1]["changes"], 2);

  Result<json> on = TimespansJson(*store_, whole, InputValue(std::string("true")));
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(*on, json::parse(R"({"open": false, "spans": [[3600, 1800]]})"));
  Result<json> off = TimespansJson(*store_, whole, InputValue(std::string("off")));
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(*off, json::parse(R"({"open": true, "spans": [[0, 3600], [5400, 1800]]})"));
}

// The answers as structs, as derived/ reads them: every aggregate of a
// bucket at once, unset where the JSON says null; time in state with both
// states of a boolean; spans in milliseconds.
TEST_F(HistoryTest, AnswersAsStructs) {
  clock_.Set(7'200'000);
  Define("t", KeyType::kNumeric);
  Put("t", 1000, 10.0);
  Put("t", 61000, 20.0);
  Result<std::vector<AggregateBucket>> b = Downsample(*store_, Query("t", 0, 180000, 60000));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_EQ(b->size(), 3u);
  EXPECT_EQ((*b)[0].start_ms, 0);
  EXPECT_EQ((*b)[0].end_ms, 60000);
  EXPECT_EQ((*b)[0].count, 1);
  EXPECT_EQ((*b)[0].first, Value(10.0));
  EXPECT_EQ((*b)[0].avg, 10.0);
  EXPECT_EQ((*b)[0].twavg, 10.0);  // known from 1 s on
  EXPECT_DOUBLE_EQ((*b)[1].twavg.value(), (10.0 * 1000 + 20.0 * 59000) / 60000);
  EXPECT_EQ((*b)[1].last, Value(20.0));
  EXPECT_EQ((*b)[2].count, 0);
  EXPECT_FALSE((*b)[2].avg.has_value());
  EXPECT_FALSE((*b)[2].first.has_value());
  EXPECT_EQ((*b)[2].twavg, 20.0);

  Define("door", KeyType::kBoolean);
  Put("door", 3'600'000, true);
  HistoryQuery whole = Query("door", 0, 7'200'000, 7'200'000);
  whole.step_ms = 0;
  Result<KeyStats> stats = Stats(*store_, whole, false, "");
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_FALSE(stats->numeric);
  EXPECT_FALSE(stats->state_buckets.has_value());
  const std::map<std::string, int64_t> held = {{"false", 0}, {"true", 3'600'000}};
  EXPECT_EQ(stats->states.ms_per_value, held);
  EXPECT_EQ(stats->states.unknown_ms, 3'600'000);
  EXPECT_EQ(stats->states.Share("true"), 1.0);
  EXPECT_EQ(stats->states.Share("false"), 0.0);
  EXPECT_EQ(stats->states.Share("other"), 0.0);
  Result<Spans> spans = Timespans(*store_, whole, InputValue(true));
  ASSERT_TRUE(spans.ok());
  ASSERT_EQ(spans->spans.size(), 1u);
  EXPECT_EQ(spans->spans[0].start_ms, 3'600'000);
  EXPECT_EQ(spans->spans[0].end_ms, 7'200'000);
  EXPECT_TRUE(spans->open);
  EXPECT_FALSE(spans->raw_expired_before_ms.has_value());

  Result<KeyStats> numbers = Stats(*store_, Query("t", 0, 120000, 60000), false, "");
  ASSERT_TRUE(numbers.ok());
  EXPECT_TRUE(numbers->numeric);
  EXPECT_EQ(numbers->numbers.count, 2);
  EXPECT_EQ(numbers->numbers.min, 10.0);
  EXPECT_EQ(numbers->numbers.max, 20.0);
  EXPECT_EQ(numbers->numbers.known_ms, 119000);
  ASSERT_TRUE(numbers->number_buckets.has_value());
  EXPECT_EQ(numbers->number_buckets->size(), 2u);
}

TEST_F(HistoryTest, BeforeTheFirstChangeAndPastStaleAfterIsUnknown) {
  clock_.Set(60'000);
  Define("motion", KeyType::kBoolean, {{"stale_after", 10}});
  Put("motion", 5'000, true);
  HistoryQuery q;
  q.key = "motion";
  q.from_ms = 0;
  q.to_ms = 120'000;  // past now: the minute after now is unknown too
  q.buckets = {0};
  Result<json> stats = StatsJson(*store_, q, false, "");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["time"], json::parse(R"({"false": 0, "true": 10, "unknown": 110})"));
  EXPECT_DOUBLE_EQ((*stats)["share"]["true"].get<double>(), 1.0);
}

TEST_F(HistoryTest, DayBucketsFollowLocalMidnightAcrossDst) {
  // Europe/Warsaw springs forward on 2026-03-29: that day has 23 hours.
  Result<std::vector<int64_t>> b = BucketStarts(1774652400000 + 3'600'000, 1774821600000 + 1000,
                                                86'400'000, "Europe/Warsaw", 10);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(*b, (std::vector<int64_t>{1774652400000, 1774738800000, 1774821600000}));
  EXPECT_EQ((*b)[2] - (*b)[1], 23 * 3'600'000);
  // ... and falls back on 2026-10-25: 25 hours.
  b = BucketStarts(1792879200000, 1792969200000 + 1, 86'400'000, "Europe/Warsaw", 10);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[1] - (*b)[0], 25 * 3'600'000);
  EXPECT_FALSE(BucketStarts(0, 1000, 86'400'000, "Mars/Olympus", 10).ok());
}

TEST(BucketStartsTest, WeeksInUtcStartOnTheMondayOfFrom) {
  // Issue 19: from Wednesday 2025-04-30 (1746000000 s) the first weekly
  // bucket began on 2025-04-21, wholly before `from`; it is Monday 04-28,
  // as with tz=Etc/UTC. Every day of a week maps to that week's Monday.
  constexpr int64_t kDayMs = 86'400'000;
  constexpr int64_t kMonday0428 = 1745798400000;  // 2025-04-28T00:00:00Z
  for (int d = 0; d < 7; ++d) {
    const int64_t from = kMonday0428 + d * kDayMs + 12 * 3'600'000;
    for (const char* tz : {"", "Etc/UTC"}) {
      Result<std::vector<int64_t>> b = BucketStarts(from, from + 8 * kDayMs, 7 * kDayMs, tz, 10);
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      ASSERT_FALSE(b->empty());
      EXPECT_EQ(b->front(), kMonday0428) << "from day " << d << " tz '" << tz << "'";
      EXPECT_EQ((*b)[1], kMonday0428 + 7 * kDayMs);
    }
  }
  // The issue's own numbers.
  Result<std::vector<int64_t>> b = BucketStarts(1746000000000, 1746557041000, 7 * kDayMs, "", 10);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->front(), kMonday0428);
  // Before the epoch too.
  b = BucketStarts(-kDayMs, kDayMs, 7 * kDayMs, "", 10);  // Wednesday 1969-12-31
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->front(), -3 * kDayMs);                        // Monday 1969-12-29
  EXPECT_FALSE(BucketStarts(0, 1'000'000, 1, "", 10).ok());  // too fine
}

TEST_F(HistoryTest, HourOfDayDistribution) {
  clock_.Set(2 * 86'400'000);
  Define("light", KeyType::kBoolean);
  for (int day = 0; day < 2; ++day) {
    Put("light", day * 86'400'000, false);
    Put("light", day * 86'400'000 + 10 * 3'600'000, true);
    Put("light", day * 86'400'000 + 11 * 3'600'000, false);
  }
  HistoryQuery q;
  q.key = "light";
  q.from_ms = 0;
  q.to_ms = 2 * 86'400'000;
  q.buckets = {0};
  Result<json> stats = StatsJson(*store_, q, true, "");
  ASSERT_TRUE(stats.ok());
  const json& hours = (*stats)["hour_of_day"];
  ASSERT_EQ(hours.size(), 24u);
  EXPECT_EQ(hours[10]["share"], json::parse(R"({"true": 1.0})"));
  EXPECT_EQ(hours[9]["share"], json::parse(R"({"false": 1.0})"));
  // In Warsaw (UTC+1 in winter: the epoch's January) the lit hour is 11.
  stats = StatsJson(*store_, q, true, "Europe/Warsaw");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["hour_of_day"][11]["share"], json::parse(R"({"true": 1.0})"));
}

TEST_F(HistoryTest, AggregatesRefusedForTheWrongType) {
  EXPECT_FALSE(ParseAggs("increase", KeyType::kNumeric).ok());
  EXPECT_FALSE(ParseAggs("avg", KeyType::kBoolean).ok());
  EXPECT_TRUE(ParseAggs("last,count", KeyType::kString).ok());
  Result<std::vector<Agg>> bad = ParseAggs("median", KeyType::kNumeric);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("parameter 'agg'"), std::string::npos);
  EXPECT_FALSE(ParseStep("0m", 0, 1).ok());
  EXPECT_FALSE(ParseStep("5x", 0, 1).ok());
  EXPECT_EQ(*ParseStep("auto", 0, 86'400'000), 5 * 60'000);
}

TEST_F(HistoryTest, FetchWithAStepOverTheJsonApi) {
  Define("t", KeyType::kNumeric);
  Put("t", 1000, 10.0);
  Put("t", 61000, 20.0);
  Api api(store_.get(), nullptr);
  json a = api.HandleText(
      R"({"fetch": {"key": "t", "from": 0, "to": 120, "step": "1m", "agg": "max,count"}})");
  EXPECT_EQ(a, json::parse(R"({"result": [[0, 10, 1], [60, 20, 1]]})")) << a.dump();
  a = api.HandleText(R"({"fetch": {"key": "t", "from": 0, "to": 120, "agg": "max"}})");
  EXPECT_EQ(a["error"]["code"], "bad_request") << a.dump();
  a = api.HandleText(
      R"({"fetch": {"key": "t", "from": 0, "to": 120, "step": "1m", "tz": "Nowhere/Land"}})");
  EXPECT_NE(a["error"]["message"].get<std::string>().find("tz"), std::string::npos) << a.dump();
}

// Random histories, out-of-order puts included, against the step function
// evaluated at every millisecond.
TEST_F(HistoryTest, RandomHistoriesMatchBruteForce) {
  unsigned seed = std::getenv("KOMOKU_TEST_SEED") ? std::atoi(std::getenv("KOMOKU_TEST_SEED"))
                                                  : std::random_device{}();
  SCOPED_TRACE("KOMOKU_TEST_SEED=" + std::to_string(seed));
  std::mt19937 rng(seed);
  constexpr int64_t kRange = 20'000;
  clock_.Set(kRange);
  for (int round = 0; round < 20; ++round) {
    std::string num = "n" + std::to_string(round), flag = "b" + std::to_string(round);
    Define(num, KeyType::kNumeric);
    Define(flag, KeyType::kBoolean);
    std::map<int64_t, double> nums;  // time -> value (last put wins a tie)
    std::map<int64_t, bool> flags;
    int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {  // times in random order
      int64_t t = static_cast<int64_t>(rng() % kRange);
      double v = static_cast<int>(rng() % 100) / 4.0;
      bool b = rng() % 2;
      Put(num, t, v);
      Put(flag, t, b);
      nums[t] = v;
      flags[t] = b;
    }
    const int64_t from = static_cast<int64_t>(rng() % (kRange / 2));
    const int64_t step = 500 + static_cast<int64_t>(rng() % 3000);
    HistoryQuery q = Query(num, from, kRange, step);
    Result<json> rows =
        DownsampleJson(*store_, q, *ParseAggs("twavg,count,min,max", KeyType::kNumeric));
    ASSERT_TRUE(rows.ok());
    q.key = flag;
    Result<json> stats = StatsJson(*store_, q, false, "");
    ASSERT_TRUE(stats.ok());
    for (size_t i = 0; i < q.buckets.size(); ++i) {
      int64_t b0 = q.buckets[i], b1 = i + 1 < q.buckets.size() ? q.buckets[i + 1] : kRange;
      double integral = 0;
      int64_t known = 0, on = 0, off = 0, count = 0;
      double mn = 1e9, mx = -1e9;
      for (int64_t t = b0; t < b1; ++t) {
        auto it = nums.upper_bound(t);
        if (it != nums.begin()) {
          integral += std::prev(it)->second;
          ++known;
          (std::prev(flags.upper_bound(t))->second ? on : off) += 1;
        }
        if (nums.count(t)) {
          ++count;
          mn = std::min(mn, nums[t]);
          mx = std::max(mx, nums[t]);
        }
      }
      const json& row = (*rows)[i];
      if (known) {
        EXPECT_NEAR(row[1].get<double>(), integral / known, 1e-9) << "bucket " << i;
      } else {
        EXPECT_TRUE(row[1].is_null()) << "bucket " << i;
      }
      // Puts at the same time are all stored; the oracle keeps one per time.
      EXPECT_GE(row[2].get<int64_t>(), count) << "bucket " << i;
      if (count) {
        EXPECT_LE(row[3].get<double>(), mn);
        EXPECT_GE(row[4].get<double>(), mx);
      }
      const json& time = (*stats)["buckets"][i]["time"];
      EXPECT_NEAR(time.value("true", 0.0), on / 1000.0, 1e-9) << "bucket " << i;
      EXPECT_NEAR(time.value("false", 0.0), off / 1000.0, 1e-9) << "bucket " << i;
      EXPECT_NEAR(time["unknown"].get<double>(), (b1 - b0 - known) / 1000.0, 1e-9);
    }
  }
}

// Time in state per bucket (agg=states) by hand: a change exactly on a
// bucket's edge counts in the bucket it starts, the range starts before the
// first change (unknown), and its end lies after now (unknown too).
TEST_F(HistoryTest, StateBucketsByHand) {
  clock_.Set(8'000'000);
  Define("door", KeyType::kBoolean);
  Put("door", 1'000'000, false);
  Put("door", 3'600'000, true);
  Put("door", 4'000'000, false);
  Result<json> got = StateBucketsJson(*store_, Query("door", 0, 9'000'000, 1'800'000));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["columns"], json::parse(R"(["time", "changes", "unknown", "false", "true"])"));
  EXPECT_EQ((*got)["states"], json::parse(R"(["false", "true"])"));
  EXPECT_EQ((*got)["rows"], json::parse(R"([[0, 0, 1000, 800, 0],
                                            [1800, 0, 0, 1800, 0],
                                            [3600, 2, 0, 1400, 400],
                                            [5400, 0, 0, 1800, 0],
                                            [7200, 0, 1000, 800, 0]])"));
  // A string key's columns are the values held anywhere in the range; a
  // bucket without one of them says 0.
  Define("mode", KeyType::kString);
  Put("mode", 0, std::string("away"));
  Put("mode", 2'000'000, std::string("home"));
  got = StateBucketsJson(*store_, Query("mode", 0, 3'600'000, 1'800'000));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["states"], json::parse(R"(["away", "home"])"));
  EXPECT_EQ((*got)["rows"], json::parse(R"([[0, 0, 0, 1800, 0], [1800, 1, 0, 200, 1600]])"));
  // An uptime key has a boolean's two states, held or not. Its timeout is
  // past the clock's now: one already due would be recorded by the store's
  // timer thread at a moment of its own, racing the query.
  Define("beat", KeyType::kUptime, {{"max_time", 10'000}});
  Put("beat", 600'000, true);
  got = StateBucketsJson(*store_, Query("beat", 0, 1'800'000, 1'800'000));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["states"], json::parse(R"(["false", "true"])"));
  EXPECT_EQ((*got)["rows"], json::parse(R"([[0, 0, 600, 0, 1200]])"));
  // Numbers have no states.
  Define("t", KeyType::kNumeric);
  Put("t", 0, 1.0);
  Result<json> refused = StateBucketsJson(*store_, Query("t", 0, 3'600'000, 1'800'000));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("'states' does not apply to a numeric key"),
            std::string::npos)
      << refused.status().ToString();
}

// Random string histories with changes on bucket edges: each bucket's time
// per state and unknown time is the brute-force step function's, adds up to
// the bucket's length, and summed over the buckets equals Stats over the
// same range without a step.
TEST_F(HistoryTest, RandomStateBucketsAddUpToStats) {
  unsigned seed = std::getenv("KOMOKU_TEST_SEED") ? std::atoi(std::getenv("KOMOKU_TEST_SEED"))
                                                  : std::random_device{}();
  SCOPED_TRACE("KOMOKU_TEST_SEED=" + std::to_string(seed));
  std::mt19937 rng(seed);
  constexpr int64_t kRange = 20'000;
  const std::vector<std::string> kValues = {"a", "b", "c"};
  for (int round = 0; round < 20; ++round) {
    // Now is inside the range or past it: time after now is unknown.
    const int64_t now = kRange / 2 + static_cast<int64_t>(rng() % kRange);
    clock_.Set(now);
    const std::string key = "s" + std::to_string(round);
    Define(key, KeyType::kString);
    const int64_t step = 500 + static_cast<int64_t>(rng() % 3000);
    std::map<int64_t, std::string> changes;  // time -> value
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      // Half of them exactly on a bucket's edge; none before 1,000, so the
      // range may start before the first change.
      int64_t t = 1000 + static_cast<int64_t>(rng() % (kRange - 1000));
      if (rng() % 2) t = t / step * step;
      // One change a time: two at the same time would both be stored.
      if (t >= now || changes.count(t)) continue;
      const std::string& v = kValues[rng() % kValues.size()];
      Put(key, t, v);
      changes[t] = v;
    }
    const int64_t from = static_cast<int64_t>(rng() % (kRange / 2));
    HistoryQuery q = Query(key, from, kRange, step);
    std::map<std::string, int64_t> sum;
    int64_t sum_unknown = 0, sum_changes = 0;
    size_t i = 0;
    Status st = StateBuckets(
        *store_, q, [](const StateStats&) {},
        [&](const StateStats& b) {
          ASSERT_LT(i, q.buckets.size());
          const int64_t b0 = q.buckets[i];
          const int64_t b1 = i + 1 < q.buckets.size() ? q.buckets[i + 1] : kRange;
          EXPECT_EQ(b.start_ms, b0);
          EXPECT_EQ(b.end_ms, b1);
          std::map<std::string, int64_t> want;
          int64_t unknown = 0, changed = 0;
          for (int64_t t = b0; t < b1; ++t) {
            auto it = changes.upper_bound(t);
            if (it == changes.begin() || t >= now) {
              ++unknown;
            } else {
              ++want[std::prev(it)->second];
            }
            auto at = changes.find(t);
            if (at != changes.end() && at != changes.begin() &&
                std::prev(at)->second != at->second) {
              ++changed;
            }
          }
          std::map<std::string, int64_t> got;
          for (const auto& [v, ms] : b.ms_per_value) {
            if (ms) got[v] = ms;
          }
          EXPECT_EQ(got, want) << "bucket " << i;
          EXPECT_EQ(b.unknown_ms, unknown) << "bucket " << i;
          EXPECT_EQ(b.changes, changed) << "bucket " << i;
          EXPECT_EQ(b.KnownMs() + b.unknown_ms, b1 - b0) << "bucket " << i;
          for (const auto& [v, ms] : b.ms_per_value) sum[v] += ms;
          sum_unknown += b.unknown_ms;
          sum_changes += b.changes;
          ++i;
        });
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(i, q.buckets.size());
    HistoryQuery whole = q;
    whole.buckets = {q.from_ms};
    whole.step_ms = 0;
    Result<KeyStats> stats = Stats(*store_, whole, false, "");
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    std::map<std::string, int64_t> total;
    for (const auto& [v, ms] : stats->states.ms_per_value) {
      if (ms) total[v] = ms;
    }
    for (auto it = sum.begin(); it != sum.end();) it = it->second ? std::next(it) : sum.erase(it);
    EXPECT_EQ(sum, total);
    EXPECT_EQ(sum_unknown, stats->states.unknown_ms);
    EXPECT_EQ(sum_changes, stats->states.changes);
  }
}

}  // namespace
}  // namespace komoku::store

// The derived publisher over a real Store with a FakeClock; the test drives
// RunDue and Flush and captures what would go to the broker. Bucket values
// are checked by hand and against store::Downsample / store::Stats, the
// code behind GET /api/v1/history and /stats.
#include "derived/derived.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "key_options_util.h"
#include "series/history.h"
#include "store/store.h"
#include "store_test_util.h"
#include "wire/history_json.h"

namespace komoku::derived {
namespace {

using nlohmann::json;
using store::testing::FakeClock;
using store::testing::OpenTestStore;
using store::testing::Opts;
using store::testing::TempDir;

constexpr int64_t kMinute = 60 * 1000;
// A minute boundary: 2023-11-14T22:14:00Z.
constexpr int64_t kT0 = 1700000040000;

struct Sent {
  std::string topic;
  json payload;
  bool retain;
};

class DerivedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenTestStore(dir_.File("data"), &clock_);
    ASSERT_NE(store_, nullptr);
  }

  void Define(const std::string& key, store::KeyType type, const json& options = json::object()) {
    Result<store::KeyInfo> r = store_->Define(key, type, Opts(options));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  void Put(const std::string& key, int64_t t, const store::InputValue& v) {
    store::PutOptions o;
    o.time_ms = t;
    Result<store::Change> c = store_->Put(key, v, o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
  }

  static AggregateDef Aggregate(const std::string& key, const std::string& res) {
    AggregateDef a;
    a.key = key;
    a.resolution = res;
    a.step_ms = *ParseResolution(res);
    a.where = "test: " + key + "/" + res;
    return a;
  }

  DerivedOptions Options() {
    DerivedOptions o;
    o.start_threads = false;
    o.close_delay_ms = 100;
    o.state_path = dir_.File("derived-state.json");
    return o;
  }

  Result<std::unique_ptr<Publisher>> Make(DerivedOptions o, const KeyTypeFn& key_type = nullptr) {
    return Publisher::Create(
        std::move(o), store_.get(),
        [this](const std::string& topic, const std::string& payload, bool retain) {
          std::lock_guard<std::mutex> lock(mu_);
          if (!broker_up_) return Status::Busy("broker away");
          json p = json::parse(payload, nullptr, false);
          sent_.push_back({topic, p.is_discarded() ? json(payload) : p, retain});
          return Status::Ok();
        },
        nullptr, key_type);
  }

  std::unique_ptr<Publisher> Started(DerivedOptions o) {
    Result<std::unique_ptr<Publisher>> p = Make(std::move(o));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return nullptr;
    Status st = (*p)->Start();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return std::move(p).value();
  }

  // Moves the clock, runs what is due and sends it; returns what was sent.
  std::vector<Sent> At(Publisher& p, int64_t now) {
    clock_.Set(now);
    p.RunDue();
    p.Flush();
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Sent> out;
    out.swap(sent_);
    return out;
  }

  static std::vector<Sent> On(const std::vector<Sent>& all, const std::string& topic) {
    std::vector<Sent> out;
    for (const Sent& s : all) {
      if (s.topic == topic) out.push_back(s);
    }
    return out;
  }

  // GET /api/v1/history?key=&from=start&to=end&step=<res>&agg=... in the
  // server's terms.
  json History(const std::string& key, int64_t start, int64_t end, const std::string& step,
               const std::string& aggs) {
    Result<store::KeyInfo> info = store_->Get(key);
    Result<store::HistoryQuery> q = store::PlanBuckets(key, start, end, step, "", 10000);
    EXPECT_TRUE(q.ok());
    Result<std::vector<store::Agg>> a = store::ParseAggs(aggs, info->type);
    EXPECT_TRUE(a.ok());
    Result<json> rows = store::DownsampleJson(*store_, *q, *a);
    EXPECT_TRUE(rows.ok());
    return *rows;
  }

  // GET /api/v1/stats?key=&from=&to= (no step).
  json StatsOf(const std::string& key, int64_t from, int64_t to) {
    Result<json> s =
        store::StatsJson(*store_, store::HistoryQuery{key, from, to, {from}, 0}, false, "");
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return *s;
  }

  TempDir dir_;
  FakeClock clock_{kT0};
  std::unique_ptr<store::Store> store_;
  std::mutex mu_;
  bool broker_up_ = true;
  std::vector<Sent> sent_;
};

TEST_F(DerivedTest, NumericBucketAtCloseByHandAndEqualToHistory) {
  Define("t", store::KeyType::kNumeric);
  Put("t", kT0 - 30000, 20.0);  // in force when the bucket starts
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("t", "1m")};
  auto p = Started(o);
  ASSERT_NE(p, nullptr);
  Put("t", kT0 + 15000, 22.0);
  Put("t", kT0 + 45000, 21.0);
  // Not before the bucket closes (plus the close delay).
  EXPECT_TRUE(On(At(*p, kT0 + kMinute + 50), "komoku/derived/t/1m").empty());
  std::vector<Sent> sent = On(At(*p, kT0 + kMinute + 100), "komoku/derived/t/1m");
  ASSERT_EQ(sent.size(), 1u);
  const json& b = sent[0].payload;
  EXPECT_TRUE(sent[0].retain);
  EXPECT_EQ(b["start"], kT0 / 1000.0);
  EXPECT_EQ(b["end"], (kT0 + kMinute) / 1000.0);
  EXPECT_DOUBLE_EQ(b["avg"].get<double>(), 21.5);
  // 15 s of 20, 30 s of 22, 15 s of 21.
  EXPECT_DOUBLE_EQ(b["twavg"].get<double>(), (15 * 20.0 + 30 * 22.0 + 15 * 21.0) / 60);
  EXPECT_EQ(b["min"], 21.0);
  EXPECT_EQ(b["max"], 22.0);
  EXPECT_EQ(b["count"], 2);
  EXPECT_FALSE(b.contains("correction"));
  EXPECT_FALSE(b.contains("catchup"));
  json h = History("t", kT0, kT0 + kMinute, "1m", "avg,twavg,min,max,count");
  EXPECT_EQ(h, json::array({{kT0 / 1000.0, b["avg"], b["twavg"], b["min"], b["max"], b["count"]}}));
  // Nothing twice.
  EXPECT_TRUE(On(At(*p, kT0 + kMinute + 5000), "komoku/derived/t/1m").empty());
}

TEST_F(DerivedTest, LateChangeRepublishesTheClosedBucketAsCorrection) {
  Define("t", store::KeyType::kNumeric);
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("t", "1m")};
  auto p = Started(o);
  Put("t", kT0 + 10000, 10.0);
  ASSERT_EQ(On(At(*p, kT0 + kMinute + 200), "komoku/derived/t/1m").size(), 1u);
  ASSERT_EQ(On(At(*p, kT0 + 2 * kMinute + 200), "komoku/derived/t/1m").size(), 1u);
  // A late change for the first bucket: not retained (the retained message
  // stays the newest bucket).
  Put("t", kT0 + 20000, 30.0);
  std::vector<Sent> sent = On(At(*p, kT0 + 2 * kMinute + 300), "komoku/derived/t/1m");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].payload["start"], kT0 / 1000.0);
  EXPECT_EQ(sent[0].payload["correction"], true);
  EXPECT_EQ(sent[0].payload["count"], 2);
  EXPECT_EQ(sent[0].payload["max"], 30.0);
  EXPECT_FALSE(sent[0].retain);
  // A late change for the newest bucket replaces the retained message.
  Put("t", kT0 + kMinute + 5000, 40.0);
  sent = On(At(*p, kT0 + 2 * kMinute + 400), "komoku/derived/t/1m");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].payload["start"], (kT0 + kMinute) / 1000.0);
  EXPECT_TRUE(sent[0].retain);
  EXPECT_EQ(store_->metrics().Get("komoku_derived_corrections_total"), 2);
}

TEST_F(DerivedTest, BooleanStringAndCounterBucketsEqualStatsAndHistory) {
  Define("door", store::KeyType::kBoolean);
  Define("mode", store::KeyType::kString);
  Define("energy", store::KeyType::kCounter);
  Put("door", kT0 - 1000, false);
  Put("mode", kT0 - 1000, std::string("eco"));
  Put("energy", kT0 - 1000, 100.0);
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("door", "1m"), Aggregate("mode", "1m"), Aggregate("energy", "1m")};
  auto p = Started(o);
  Put("door", kT0 + 10000, true);
  Put("door", kT0 + 25000, false);
  Put("mode", kT0 + 30000, std::string("comfort"));
  Put("energy", kT0 + 20000, 101.5);
  Put("energy", kT0 + 40000, 0.5);  // a reset: counts 0.5
  std::vector<Sent> all = At(*p, kT0 + kMinute + 100);

  std::vector<Sent> door = On(all, "komoku/derived/door/1m");
  ASSERT_EQ(door.size(), 1u);
  EXPECT_EQ(door[0].payload["time"]["true"], 15.0);
  EXPECT_EQ(door[0].payload["time"]["false"], 45.0);
  EXPECT_EQ(door[0].payload["time"]["unknown"], 0.0);
  EXPECT_EQ(door[0].payload["changes"], 2);
  json stats = StatsOf("door", kT0, kT0 + kMinute);
  EXPECT_EQ(door[0].payload["time"], stats["time"]);
  EXPECT_EQ(door[0].payload["share"], stats["share"]);
  EXPECT_EQ(door[0].payload["changes"], stats["changes"]);

  std::vector<Sent> mode = On(all, "komoku/derived/mode/1m");
  ASSERT_EQ(mode.size(), 1u);
  EXPECT_EQ(mode[0].payload["time"], (json{{"eco", 30.0}, {"comfort", 30.0}, {"unknown", 0.0}}));
  EXPECT_EQ(mode[0].payload["changes"], 1);
  EXPECT_EQ(mode[0].payload["time"], StatsOf("mode", kT0, kT0 + kMinute)["time"]);

  std::vector<Sent> energy = On(all, "komoku/derived/energy/1m");
  ASSERT_EQ(energy.size(), 1u);
  EXPECT_DOUBLE_EQ(energy[0].payload["increase"].get<double>(), 2.0);
  json h = History("energy", kT0, kT0 + kMinute, "1m", "increase,rate");
  EXPECT_EQ(h[0][1], energy[0].payload["increase"]);
  EXPECT_EQ(h[0][2], energy[0].payload["rate"]);
}

TEST_F(DerivedTest, RestartPublishesMissedBucketsOnceInOrderAsCatchUp) {
  Define("t", store::KeyType::kNumeric);
  Put("t", kT0 - 1000, 1.0);
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("t", "1m")};
  {
    auto p = Started(o);
    ASSERT_EQ(On(At(*p, kT0 + kMinute + 200), "komoku/derived/t/1m").size(), 1u);
    // Stopped inside the second bucket.
    clock_.Set(kT0 + kMinute + 30000);
    p->Stop();
  }
  {
    // Back inside the same bucket: nothing now, that bucket once at its close.
    clock_.Set(kT0 + kMinute + 40000);
    auto p = Started(o);
    EXPECT_TRUE(On(At(*p, kT0 + kMinute + 40000), "komoku/derived/t/1m").empty());
    std::vector<Sent> sent = On(At(*p, kT0 + 2 * kMinute + 200), "komoku/derived/t/1m");
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].payload["start"], (kT0 + kMinute) / 1000.0);
    EXPECT_FALSE(sent[0].payload.contains("catchup"));
    clock_.Set(kT0 + 2 * kMinute + 500);
    p->Stop();
  }
  {
    // Down for three whole buckets: each once, in order, marked catch-up.
    clock_.Set(kT0 + 5 * kMinute + 20000);
    auto p = Started(o);
    std::vector<Sent> sent = On(At(*p, kT0 + 5 * kMinute + 20000), "komoku/derived/t/1m");
    ASSERT_EQ(sent.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(sent[i].payload["start"], (kT0 + (2 + i) * kMinute) / 1000.0);
      EXPECT_EQ(sent[i].payload["catchup"], true);
    }
    EXPECT_TRUE(On(At(*p, kT0 + 5 * kMinute + 30000), "komoku/derived/t/1m").empty());
    sent = On(At(*p, kT0 + 6 * kMinute + 200), "komoku/derived/t/1m");
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_FALSE(sent[0].payload.contains("catchup"));
  }
}

TEST_F(DerivedTest, BucketsNotSentBeforeStopAreCaughtUpNotLost) {
  Define("t", store::KeyType::kNumeric);
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("t", "1m")};
  {
    auto p = Started(o);
    broker_up_ = false;
    EXPECT_TRUE(At(*p, kT0 + kMinute + 200).empty());
    EXPECT_EQ(p->QueueDepth(), 1u);
    p->Stop();
  }
  broker_up_ = true;
  clock_.Set(kT0 + kMinute + 500);
  auto p = Started(o);
  std::vector<Sent> sent = On(At(*p, kT0 + kMinute + 500), "komoku/derived/t/1m");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].payload["start"], kT0 / 1000.0);
  EXPECT_EQ(sent[0].payload["catchup"], true);
}

// A reload checks the new definitions against the types the keys will have
// and may throw the checked publisher away: one never started must leave the
// running one's state file alone.
TEST_F(DerivedTest, PlannedKeyTypesAndAPublisherNeverStartedTouchNothing) {
  Define("t", store::KeyType::kNumeric);
  Put("t", kT0 - 1000, 1.0);
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("t", "1m")};
  auto running = Started(o);
  ASSERT_EQ(On(At(*running, kT0 + kMinute + 200), "komoku/derived/t/1m").size(), 1u);
  std::string state;
  {
    std::ifstream in(o.state_path);
    state.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_FALSE(state.empty());

  RollingDef increase;
  increase.key = "t";
  increase.name = "increase_24h";
  increase.stat = RollingStat::kIncrease;
  increase.window = "24h";
  increase.window_ms = 86400000;
  increase.where = "test: rolling";
  DerivedOptions next = Options();
  next.aggregates = {Aggregate("t", "1m"), Aggregate("planned", "1h")};
  next.rolling = {increase};
  // Against the store: 'planned' is unknown and increase needs a counter.
  EXPECT_FALSE(Make(next).ok());
  KeyTypeFn planned = [](const std::string& key) -> std::optional<store::KeyType> {
    if (key == "t") return store::KeyType::kCounter;
    if (key == "planned") return store::KeyType::kNumeric;
    return std::nullopt;
  };
  {
    Result<std::unique_ptr<Publisher>> checked = Make(next, planned);
    ASSERT_TRUE(checked.ok()) << checked.status().ToString();
    // Destroyed unstarted.
  }
  // Unknown to both the plan and the store.
  next.aggregates.push_back(Aggregate("nope", "1m"));
  EXPECT_FALSE(Make(next, planned).ok());

  std::string after;
  {
    std::ifstream in(o.state_path);
    after.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  EXPECT_EQ(after, state);
  // The running publisher goes on from where it was.
  EXPECT_EQ(On(At(*running, kT0 + 2 * kMinute + 200), "komoku/derived/t/1m").size(), 1u);
}

TEST_F(DerivedTest, QueueWhileBrokerAwayIsBoundedAndDrainsInOrder) {
  Define("t", store::KeyType::kNumeric);
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("t", "1m")};
  o.queue_max = 3;
  auto p = Started(o);
  broker_up_ = false;
  for (int i = 1; i <= 5; ++i) EXPECT_TRUE(At(*p, kT0 + i * kMinute + 200).empty());
  EXPECT_EQ(p->QueueDepth(), 3u);
  EXPECT_EQ(store_->metrics().Get("komoku_derived_dropped_total"), 2);
  broker_up_ = true;
  std::vector<Sent> sent = At(*p, kT0 + 5 * kMinute + 300);
  ASSERT_EQ(sent.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sent[i].payload["start"], (kT0 + (2 + i) * kMinute) / 1000.0) << "oldest dropped";
  }
  EXPECT_EQ(p->QueueDepth(), 0u);
}

TEST_F(DerivedTest, RollingStatisticsEqualStats) {
  Define("door", store::KeyType::kBoolean);
  Define("temp", store::KeyType::kNumeric);
  Define("boiler", store::KeyType::kBoolean);
  Put("door", kT0 - 3600 * 1000, false);
  Put("door", kT0 - 1800 * 1000, true);
  Put("door", kT0 - 900 * 1000, false);
  Put("temp", kT0 - 7200 * 1000, 19.0);
  Put("temp", kT0 - 600 * 1000, 23.5);
  Put("boiler", kT0 - 7200 * 1000, true);
  DerivedOptions o = Options();
  RollingDef share;
  share.key = "door";
  share.name = "open_share_24h";
  share.stat = RollingStat::kShare;
  share.value = "open";  // normalised to "true"
  share.window = "24h";
  share.window_ms = *ParseWindow("24h");
  RollingDef max = share;
  max.key = "temp";
  max.name = "max_24h";
  max.stat = RollingStat::kMax;
  max.value = "";
  RollingDef hours = share;
  hours.key = "boiler";
  hours.name = "heating_hours_today";
  hours.stat = RollingStat::kHours;
  hours.value = "true";
  hours.window = "today";
  hours.window_ms = 0;
  o.rolling = {share, max, hours};
  auto p = Started(o);
  std::vector<Sent> all = At(*p, kT0);
  std::vector<Sent> s = On(all, "komoku/derived/door/open_share_24h");
  ASSERT_EQ(s.size(), 1u);
  const int64_t from = kT0 - 24 * 3600 * 1000LL;
  EXPECT_EQ(s[0].payload["from"], from / 1000.0);
  EXPECT_DOUBLE_EQ(s[0].payload["value"].get<double>(), 0.25);  // 15 of 60 known minutes
  EXPECT_EQ(s[0].payload["value"], StatsOf("door", from, kT0)["share"]["true"]);
  std::vector<Sent> m = On(all, "komoku/derived/temp/max_24h");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].payload["value"], 23.5);
  std::vector<Sent> h = On(all, "komoku/derived/boiler/heating_hours_today");
  ASSERT_EQ(h.size(), 1u);
  // kT0 is 22:14 UTC; the boiler is known (true) for the last 2 hours only.
  EXPECT_NEAR(h[0].payload["value"].get<double>(), 2.0, 1e-9);
  // On change (at most once a second), not otherwise before the refresh.
  EXPECT_TRUE(On(At(*p, kT0 + 2000), "komoku/derived/door/open_share_24h").empty());
  Put("door", kT0 + 2500, true);
  s = On(At(*p, kT0 + 3000), "komoku/derived/door/open_share_24h");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].payload["value"],
            StatsOf("door", kT0 + 3000 - 24 * 3600 * 1000LL, kT0 + 3000)["share"]["true"]);
  // And at the refresh interval.
  EXPECT_EQ(On(At(*p, kT0 + 61000), "komoku/derived/temp/max_24h").size(), 1u);
}

TEST_F(DerivedTest, StaleTurnsTrueAndFalseAsHistoryDoes) {
  Define("hb", store::KeyType::kNumeric, json{{"stale_after", 30}});
  Put("hb", kT0, 1.0);
  auto p = Started(Options());
  std::vector<Sent> s = On(At(*p, kT0 + 1000), "komoku/derived/hb/stale");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].payload, false);
  EXPECT_TRUE(On(At(*p, kT0 + 29999), "komoku/derived/hb/stale").empty());
  s = On(At(*p, kT0 + 30000), "komoku/derived/hb/stale");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].payload, true);
  Result<std::optional<store::Sample>> at = store_->At("hb", kT0 + 30000);
  ASSERT_TRUE(at.ok());
  Put("hb", kT0 + 40000, 2.0);
  s = On(At(*p, kT0 + 40001), "komoku/derived/hb/stale");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].payload, false);
}

TEST_F(DerivedTest, RefusesUnknownKeysAndDefinitionsThatDoNotFit) {
  Define("t", store::KeyType::kNumeric);
  Define("door", store::KeyType::kBoolean);
  DerivedOptions o = Options();
  o.aggregates = {Aggregate("nope", "1m")};
  Result<std::unique_ptr<Publisher>> p = Make(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("unknown key 'nope'"), std::string::npos);
  EXPECT_NE(p.status().message().find("test: nope/1m"), std::string::npos);

  o = Options();
  o.aggregates = {Aggregate("t", "7m")};
  p = Make(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("does not divide a day"), std::string::npos);

  RollingDef r;
  r.key = "t";
  r.name = "share";
  r.stat = RollingStat::kShare;
  r.value = "true";
  r.window = "24h";
  r.window_ms = 86400000;
  r.where = "test: rolling";
  o = Options();
  o.rolling = {r};
  p = Make(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("not numeric"), std::string::npos) << p.status().message();

  r.key = "door";
  r.value = "maybe";
  o.rolling = {r};
  p = Make(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("value 'maybe'"), std::string::npos) << p.status().message();

  r.stat = RollingStat::kIncrease;
  r.value = "";
  o.rolling = {r};
  p = Make(o);
  ASSERT_FALSE(p.ok());

  EXPECT_FALSE(ParseWindow("auto").ok());
  EXPECT_FALSE(ParseWindow("0").ok());
  EXPECT_FALSE(ParseWindow("400d").ok());
  EXPECT_FALSE(ParseResolution("often").ok());
  EXPECT_EQ(*ParseWindow("today"), 0);
}

TEST_F(DerivedTest, HomeAssistantDiscoveryConfigs) {
  Define("living/temp", store::KeyType::kNumeric);
  Define("door", store::KeyType::kBoolean, json{{"stale_after", 600}});
  DerivedOptions o = Options();
  AggregateDef a = Aggregate("living/temp", "1h");
  a.unit = "\u00b0C";
  a.device_class = "temperature";
  o.aggregates = {a};
  o.discovery = true;
  o.discovery_keys = {{"door", "", "door", "test"}};
  auto p = Started(o);
  std::vector<Sent> all = At(*p, kT0);
  std::vector<Sent> agg = On(all, "homeassistant/sensor/komoku_living_temp_1h/config");
  ASSERT_EQ(agg.size(), 1u);
  const json& c = agg[0].payload;
  EXPECT_TRUE(agg[0].retain);
  EXPECT_EQ(c["unique_id"], "komoku_living_temp_1h");
  EXPECT_EQ(c["state_topic"], "komoku/derived/living/temp/1h");
  EXPECT_EQ(c["availability_topic"], "komoku/status");
  EXPECT_EQ(c["unit_of_measurement"], "\u00b0C");
  EXPECT_EQ(c["device_class"], "temperature");
  EXPECT_EQ(c["state_class"], "measurement");
  EXPECT_TRUE(c["name"].is_string());
  EXPECT_TRUE(c["value_template"].is_string());
  EXPECT_TRUE(c["device"]["identifiers"].is_array());
  std::vector<Sent> key = On(all, "homeassistant/binary_sensor/komoku_door_state/config");
  ASSERT_EQ(key.size(), 1u);
  EXPECT_EQ(key[0].payload["state_topic"], "komoku/state/door");
  EXPECT_EQ(key[0].payload["device_class"], "door");
  std::vector<Sent> stale = On(all, "homeassistant/binary_sensor/komoku_door_stale/config");
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0].payload["payload_on"], "true");
}

// A definition removed (by a reload or a restart with another config) takes
// its Home Assistant config with it: an empty retained message on its topic,
// sent once, and kept in the state file until sent.
TEST_F(DerivedTest, HomeAssistantConfigsOfRemovedDefinitionsAreCleared) {
  Define("t", store::KeyType::kNumeric);
  Define("u", store::KeyType::kNumeric);
  const std::string t_topic = "homeassistant/sensor/komoku_t_1h/config";
  const std::string u_topic = "homeassistant/sensor/komoku_u_1h/config";
  DerivedOptions both = Options();
  both.discovery = true;
  both.aggregates = {Aggregate("t", "1h"), Aggregate("u", "1h")};
  {
    auto p = Started(both);
    std::vector<Sent> all = At(*p, kT0);
    ASSERT_EQ(On(all, t_topic).size(), 1u);
    ASSERT_EQ(On(all, u_topic).size(), 1u);
  }
  DerivedOptions only_t = Options();
  only_t.discovery = true;
  only_t.aggregates = {Aggregate("t", "1h")};
  {
    // The broker is away at first: the clear waits, also across a stop.
    broker_up_ = false;
    auto p = Started(only_t);
    EXPECT_TRUE(At(*p, kT0 + 1000).empty());
    p->Stop();
  }
  broker_up_ = true;
  {
    auto p = Started(only_t);
    std::vector<Sent> all = At(*p, kT0 + 2000);
    std::vector<Sent> cleared = On(all, u_topic);
    ASSERT_EQ(cleared.size(), 1u);
    EXPECT_TRUE(cleared[0].retain);
    EXPECT_EQ(cleared[0].payload, json("")) << "an empty payload removes the config";
    EXPECT_EQ(On(all, t_topic).size(), 1u);
    EXPECT_EQ(On(all, t_topic)[0].payload["state_topic"], "komoku/derived/t/1h");
  }
  {
    // Cleared once: not again at the next start.
    auto p = Started(only_t);
    EXPECT_TRUE(On(At(*p, kT0 + 3000), u_topic).empty());
  }
  // Discovery turned off clears every config published.
  DerivedOptions off = Options();
  off.aggregates = {Aggregate("t", "1h")};
  auto p = Started(off);
  std::vector<Sent> all = At(*p, kT0 + 4000);
  ASSERT_EQ(On(all, t_topic).size(), 1u);
  EXPECT_EQ(On(all, t_topic)[0].payload, json(""));
}

// The worker and sender threads, as the service runs them, with the manual
// clock: nothing is published while the clock stands before the close, and
// the bucket and the staleness follow within the worker's poll (a second)
// once the clock passes them. Real waits are bounded generously; the clock
// decides what is due.
TEST_F(DerivedTest, TheWorkerPublishesWhenTheManualClockPassesTheClose) {
  Define("t", store::KeyType::kNumeric, json{{"stale_after", 90}});
  Put("t", kT0 + 1000, 20.0);
  DerivedOptions o = Options();
  o.start_threads = true;
  o.aggregates = {Aggregate("t", "1m")};
  auto p = Started(o);
  ASSERT_NE(p, nullptr);
  auto sent_on = [&](const std::string& topic) {
    std::lock_guard<std::mutex> lock(mu_);
    return On(sent_, topic);
  };
  auto wait_for = [&](const std::string& topic, size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (sent_on(topic).size() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return sent_on(topic);
  };
  ASSERT_EQ(wait_for("komoku/derived/t/stale", 1).size(), 1u);
  EXPECT_EQ(sent_on("komoku/derived/t/stale")[0].payload, false);
  clock_.Set(kT0 + 59000);
  // Two polls of the worker with the clock before the close: nothing.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_TRUE(sent_on("komoku/derived/t/1m").empty());
  clock_.Set(kT0 + kMinute + 100);
  std::vector<Sent> b = wait_for("komoku/derived/t/1m", 1);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].payload["start"], kT0 / 1000.0);
  EXPECT_EQ(b[0].payload["count"], 1);
  EXPECT_EQ(b[0].payload["max"], 20.0);
  // Stale at the last change + 90 s.
  clock_.Set(kT0 + 1000 + 90000);
  std::vector<Sent> s = wait_for("komoku/derived/t/stale", 2);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].payload, true);
  p->Stop();
}

}  // namespace
}  // namespace komoku::derived

// Komoku's keys as series over a real Store (docs/prometheus.md, "Keys as
// series").
#include "promql/store_source.h"

#include <gtest/gtest.h>

#include "key_options_util.h"
#include "store/store.h"
#include "store_test_util.h"

namespace komoku::promql {
namespace {

using store::testing::FakeClock;
using store::testing::OpenTestStore;
using store::testing::Opts;
using store::testing::TempDir;

TEST(PromqlMetricName, SanitisesTheKey) {
  EXPECT_EQ(MetricName("kitchen/temperature"), "kitchen_temperature");
  EXPECT_EQ(MetricName("1st/floor"), "_1st_floor");
  EXPECT_EQ(MetricName("a-b.c d:e"), "a_b_c_d_e");
  EXPECT_EQ(MetricName("caf\xc3\xa9"), "caf__");  // one '_' per byte
  EXPECT_EQ(MetricName("Ok_9"), "Ok_9");
}

class PromqlStoreSource : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenTestStore(dir_.path(), &clock_);
    ASSERT_TRUE(store_);
  }
  void Put(const std::string& key, const store::InputValue& v, int64_t t) {
    store::PutOptions o;
    o.time_ms = t;
    ASSERT_TRUE(store_->Put(key, v, o).ok()) << key;
  }

  TempDir dir_;
  FakeClock clock_{1'000'000'000'000};
  std::unique_ptr<store::Store> store_;
};

TEST_F(PromqlStoreSource, EachTypeAsSamples) {
  const int64_t t = 999'000'000'000;
  ASSERT_TRUE(store_->Define("power", store::KeyType::kCounter).ok());
  Put("kitchen/temp", 21.5, t);
  Put("kitchen/temp", 22.0, t + 1000);
  Put("power", 5.0, t);
  Put("door", true, t);
  Put("door", false, t + 1000);
  Put("alarm", std::string("armed"), t);
  Put("alarm", std::string("off duty"), t + 1000);
  StoreSource source(store_.get());
  Result<std::vector<Series>> all =
      source.Select({*Matcher::Make(Matcher::Op::kRegex, "key", ".+")}, t, t + 1000, 0);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  std::map<Labels, std::vector<std::pair<int64_t, double>>> got;
  for (const Series& s : *all) {
    for (const Point& p : s.points) got[s.labels].emplace_back(p.t - t, p.v);
  }
  using Pts = std::vector<std::pair<int64_t, double>>;
  std::map<Labels, Pts> want = {
      {{{kMetricName, "kitchen_temp"}, {"key", "kitchen/temp"}, {"type", "numeric"}},
       Pts{{0, 21.5}, {1000, 22}}},
      {{{kMetricName, "power"}, {"key", "power"}, {"type", "counter"}}, Pts{{0, 5}}},
      {{{kMetricName, "door"}, {"key", "door"}, {"type", "boolean"}}, Pts{{0, 1}, {1000, 0}}},
      {{{kMetricName, "alarm"}, {"key", "alarm"}, {"state", "armed"}, {"type", "string"}},
       Pts{{0, 1}, {1000, 0}}},
      {{{kMetricName, "alarm"}, {"key", "alarm"}, {"state", "off duty"}, {"type", "string"}},
       Pts{{0, 0}, {1000, 1}}},
  };
  EXPECT_EQ(got, want);

  // The window includes both ends; the state matcher picks one series.
  Result<std::vector<Series>> one =
      source.Select({*Matcher::Make(Matcher::Op::kEqual, "state", "armed")}, t + 1000, t + 1000, 0);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].points.size(), 1u);

  Result<std::vector<Labels>> sets =
      source.Labelsets({*Matcher::Make(Matcher::Op::kEqual, "type", "string")});
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(sets->size(), 2u);

  // Through the engine: the state in force, as 0/1.
  Engine engine(&source);
  Result<InstantResult> r = engine.Instant("alarm{state=\"off duty\"}", t + 2000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->series.size(), 1u);
  EXPECT_EQ(r->series[0].points[0].v, 1);
}

TEST_F(PromqlStoreSource, AllowedValuesAreStatesBeforeTheyAreSeen) {
  ASSERT_TRUE(
      store_->Define("mode", store::KeyType::kString, Opts({{"values", {"home", "away"}}})).ok());
  Put("mode", std::string("home"), 999'000'000'000);
  StoreSource source(store_.get());
  Result<std::vector<Labels>> sets = source.Labelsets({});
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(sets->size(), 2u);
}

TEST_F(PromqlStoreSource, AStringKeyWithTooManyValuesIsNoSeries) {
  for (size_t i = 0; i <= kMaxStringStates; ++i) {
    Put("log", "line " + std::to_string(i), 999'000'000'000 + static_cast<int64_t>(i));
  }
  Put("mode", std::string("home"), 999'000'000'000);
  StoreSource source(store_.get());
  Result<std::vector<Labels>> sets = source.Labelsets({});
  ASSERT_TRUE(sets.ok());
  ASSERT_EQ(sets->size(), 1u);
  EXPECT_EQ(LabelValue((*sets)[0], "key"), "mode");
}

}  // namespace
}  // namespace komoku::promql

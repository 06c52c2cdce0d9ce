// The evaluator on hand-computed cases: what Prometheus 2.42 answers for
// the same samples (its lookback and range windows include both ends; its
// extrapolation of rate/increase/delta), over an in-memory source.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "promql/promql.h"

namespace komoku::promql {
namespace {

constexpr int64_t kS = 1000;
constexpr int64_t kM = 60 * kS;

class MemorySource final : public Source {
 public:
  void Add(Labels labels, std::vector<Point> points) {
    series_.push_back(Series{std::move(labels), std::move(points)});
  }
  // Buckets of this resolution, over [buckets_from, buckets_to) (multiples
  // of it), stand in for the points where a caller can take them; 0: never.
  void SetBuckets(int64_t bucket_ms, int64_t buckets_from, int64_t buckets_to) {
    bucket_ms_ = bucket_ms;
    buckets_from_ = buckets_from;
    buckets_to_ = buckets_to;
  }
  int selects_with_buckets() const { return selects_with_buckets_; }

  Result<std::vector<Series>> Select(const std::vector<Matcher>& matchers, int64_t from_ms,
                                     int64_t to_ms, int64_t align_ms) const override {
    const bool bucketed = bucket_ms_ > 0 && align_ms > 0 && align_ms % bucket_ms_ == 0;
    const int64_t r = std::max<int64_t>(bucket_ms_, 1);
    // Whole buckets of the stretch that has them, from from_ms on; the one
    // holding to_ms counts too (as the store's rollups do).
    const int64_t bf = std::max(buckets_from_, (from_ms + r - 1) / r * r);
    const int64_t bt = std::min(buckets_to_, (to_ms + r) / r * r);
    std::vector<Series> out;
    for (const Series& s : series_) {
      if (!MatchesAll(matchers, s.labels)) continue;
      Series copy{s.labels, {}};
      if (bucketed && bf < bt) {
        copy.bucket_ms = bucket_ms_;
        copy.buckets_from = bf;
        copy.buckets_to = bt;
      }
      for (const Point& p : s.points) {
        if (p.t < copy.buckets_from || p.t >= copy.buckets_to) {
          if (p.t >= from_ms && p.t <= to_ms) copy.points.push_back(p);
          continue;
        }
        const int64_t start = p.t / bucket_ms_ * bucket_ms_;
        if (copy.buckets.empty() || copy.buckets.back().start_ms != start) {
          copy.buckets.push_back(Bucket{start, 0, 0, p.v, p.v, p});
        }
        Bucket& b = copy.buckets.back();
        ++b.count;
        b.sum += p.v;
        b.min = std::min(b.min, p.v);
        b.max = std::max(b.max, p.v);
      }
      if (!copy.buckets.empty()) ++selects_with_buckets_;
      out.push_back(std::move(copy));
    }
    return out;
  }
  Result<std::vector<Labels>> Labelsets(const std::vector<Matcher>& matchers) const override {
    std::vector<Labels> out;
    for (const Series& s : series_) {
      if (MatchesAll(matchers, s.labels)) out.push_back(s.labels);
    }
    return out;
  }

 private:
  std::vector<Series> series_;
  int64_t bucket_ms_ = 0, buckets_from_ = 0, buckets_to_ = 0;
  mutable int selects_with_buckets_ = 0;
};

Labels L(const std::string& name, const std::string& key, const std::string& type = "numeric") {
  return {{kMetricName, name}, {"key", key}, {"type", type}};
}

class PromqlEngine : public ::testing::Test {
 protected:
  // The one value of an instant query giving one series (NaN when none).
  double One(const std::string& q, int64_t t) {
    Result<InstantResult> r = engine_.Instant(q, t);
    EXPECT_TRUE(r.ok()) << q << ": " << r.status().ToString();
    if (!r.ok()) return -12345;
    if (r->type == InstantResult::Type::kScalar) return r->scalar;
    EXPECT_EQ(r->series.size(), 1u) << q << " at " << t;
    if (r->series.size() != 1) return NAN;
    return r->series[0].points[0].v;
  }
  size_t Count(const std::string& q, int64_t t) {
    Result<InstantResult> r = engine_.Instant(q, t);
    EXPECT_TRUE(r.ok()) << q << ": " << r.status().ToString();
    return r.ok() ? r->series.size() : 0;
  }

  MemorySource source_;
  Engine engine_{&source_};
};

TEST_F(PromqlEngine, LookbackIncludesBothEnds) {
  source_.Add(L("x", "x"), {{0, 1}, {10 * kM, 2}});
  EXPECT_EQ(One("x", 0), 1);
  EXPECT_EQ(One("x", 5 * kM), 1);         // exactly 5 minutes old: still seen
  EXPECT_EQ(Count("x", 5 * kM + 1), 0u);  // past the lookback: gone
  EXPECT_EQ(Count("x", -1), 0u);          // before the first sample
  EXPECT_EQ(One("x", 10 * kM), 2);
  EXPECT_EQ(One("x offset 10m", 10 * kM), 1);
  EXPECT_EQ(One("x offset -10m", 0), 2);
}

TEST_F(PromqlEngine, RangeWindowIncludesBothEnds) {
  source_.Add(L("x", "x"), {{0, 1}, {30 * kS, 2}, {60 * kS, 4}});
  EXPECT_EQ(One("count_over_time(x[1m])", 60 * kS), 3);
  EXPECT_EQ(One("count_over_time(x[1m])", 60 * kS + 1), 2);
  EXPECT_EQ(One("sum_over_time(x[1m])", 60 * kS), 7);
  EXPECT_DOUBLE_EQ(One("avg_over_time(x[1m])", 60 * kS), 7.0 / 3);
  EXPECT_EQ(One("min_over_time(x[1m])", 60 * kS), 1);
  EXPECT_EQ(One("max_over_time(x[1m])", 60 * kS), 4);
  EXPECT_EQ(One("last_over_time(x[1m] offset 30s)", 60 * kS), 2);
  EXPECT_EQ(One("changes(x[1m])", 60 * kS), 2);
  // The instant query of a range selector is the matrix itself.
  Result<InstantResult> m = engine_.Instant("x[30s]", 60 * kS);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->type, InstantResult::Type::kMatrix);
  ASSERT_EQ(m->series.size(), 1u);
  EXPECT_EQ(m->series[0].points.size(), 2u);
  EXPECT_EQ(LabelValue(m->series[0].labels, kMetricName), "x");
}

TEST_F(PromqlEngine, RateExtrapolatesAsPrometheus) {
  source_.Add(L("c", "c", "counter"), {{0, 0}, {10 * kS, 10}, {20 * kS, 20}});
  // rate(c[30s]) at 25 s: samples cover 0..20 s of the window -5..25 s. The
  // counter's zero point is at 0 s, so the start is not extrapolated before
  // it; the end (5 s away, under 1.1 x the 10 s interval) is: 20 x 25/20.
  EXPECT_DOUBLE_EQ(One("increase(c[30s])", 25 * kS), 25);
  EXPECT_DOUBLE_EQ(One("rate(c[30s])", 25 * kS), 25.0 / 30);
  // delta knows no zero point: both ends extrapolated, 20 x 30/20.
  EXPECT_DOUBLE_EQ(One("delta(c[30s])", 25 * kS), 30);
  // A window with the first sample far from its start (45 s, over 1.1 x
  // 10 s): extrapolated by half an interval only. increase(c[65s]) at 20 s:
  // window -45..20 s; to the start 45 s -> 5 s; to the end 0 s: 20 x 25/20.
  EXPECT_DOUBLE_EQ(One("delta(c[65s])", 20 * kS), 25);
  // One sample: no rate.
  EXPECT_EQ(Count("rate(c[5s])", 20 * kS), 0u);
}

TEST_F(PromqlEngine, CounterResetsAddTheValueBeforeThem) {
  source_.Add(L("c", "c", "counter"), {{0, 10}, {10 * kS, 20}, {20 * kS, 5}});
  // 20 - 10 + 5 = 15 over 20 s sampled, the window [0, 20 s] exactly.
  EXPECT_DOUBLE_EQ(One("increase(c[20s])", 20 * kS), 15);
  // delta ignores resets: 5 - 10.
  EXPECT_DOUBLE_EQ(One("delta(c[20s])", 20 * kS), -5);
}

TEST_F(PromqlEngine, DerivIsTheLeastSquaresSlope) {
  source_.Add(L("x", "x"), {{0, 2}, {10 * kS, 7.5}, {20 * kS, 12}, {30 * kS, 17.5}});
  // Through (0,2) (10,7.5) (20,12) (30,17.5), x in seconds: sum x 60, sum y
  // 39, sum xy 840, sum x2 1400; cov 840 - 60*39/4 = 255, var 1400 - 900 = 500.
  EXPECT_DOUBLE_EQ(One("deriv(x[30s])", 30 * kS), 255.0 / 500);
  source_.Add(L("k", "k"), {{0, 3}, {10 * kS, 3}, {20 * kS, 3}});
  EXPECT_EQ(One("deriv(k[1m])", 20 * kS), 0);     // constant: exactly 0
  EXPECT_EQ(Count("deriv(x[5s])", 10 * kS), 0u);  // one point: none
}

TEST_F(PromqlEngine, FunctionsDropTheNameButLastOverTimeKeepsIt) {
  source_.Add(L("x", "x"), {{0, 1}});
  Result<InstantResult> r = engine_.Instant("max_over_time(x[1m])", 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(LabelValue(r->series[0].labels, kMetricName), "");
  r = engine_.Instant("last_over_time(x[1m])", 0);
  EXPECT_EQ(LabelValue(r->series[0].labels, kMetricName), "x");
  r = engine_.Instant("x * 2", 0);
  EXPECT_EQ(LabelValue(r->series[0].labels, kMetricName), "");
  EXPECT_EQ(r->series[0].points[0].v, 2);
  r = engine_.Instant("(x)", 0);
  EXPECT_EQ(LabelValue(r->series[0].labels, kMetricName), "x");
}

TEST_F(PromqlEngine, AggregatesByAndWithout) {
  source_.Add(L("t", "a/t"), {{0, 1}});
  source_.Add(L("t", "b/t"), {{0, 3}});
  source_.Add(L("h", "a/h", "counter"), {{0, 10}});
  EXPECT_EQ(One("sum({key=~\".+\"})", 0), 14);
  EXPECT_EQ(One("count({key=~\".+\"})", 0), 3);
  EXPECT_EQ(One("avg(t)", 0), 2);
  EXPECT_EQ(One("min(t)", 0), 1);
  EXPECT_EQ(One("max(t) - 1", 0), 2);
  Result<InstantResult> r = engine_.Instant("sum by (type) ({key=~\".+\"})", 0);
  ASSERT_TRUE(r.ok());
  std::map<Labels, double> got;
  for (const Series& s : r->series) got[s.labels] = s.points[0].v;
  EXPECT_EQ(
      got, (std::map<Labels, double>{{{{"type", "numeric"}}, 4.0}, {{{"type", "counter"}}, 10.0}}));
  r = engine_.Instant("max without (key) ({key=~\".+\"})", 0);
  got.clear();
  for (const Series& s : r->series) got[s.labels] = s.points[0].v;
  EXPECT_EQ(
      got, (std::map<Labels, double>{{{{"type", "numeric"}}, 3.0}, {{{"type", "counter"}}, 10.0}}));
  r = engine_.Instant("count by (__name__) ({key=~\".+\"})", 0);
  got.clear();
  for (const Series& s : r->series) got[s.labels] = s.points[0].v;
  EXPECT_EQ(got,
            (std::map<Labels, double>{{{{kMetricName, "t"}}, 2.0}, {{{kMetricName, "h"}}, 1.0}}));
}

TEST_F(PromqlEngine, ScalarArithmeticAndTime) {
  EXPECT_EQ(One("1 + 2 * 3 ^ 2", 0), 19);
  EXPECT_EQ(One("2 ^ 3 ^ 2", 0), 512);  // right-associative
  EXPECT_EQ(One("-2 ^ 2", 0), -4);
  EXPECT_EQ(One("7 % 3", 0), 1);
  EXPECT_EQ(One("-7 % 3", 0), -1);
  EXPECT_EQ(One("time()", 1500), 1.5);
  EXPECT_EQ(One("time() - 1", 1500), 0.5);
  EXPECT_TRUE(std::isinf(One("1 / 0", 0)));
}

TEST_F(PromqlEngine, RangeQueriesStepFromTheStart) {
  source_.Add(L("x", "x"), {{0, 1}, {10 * kM, 2}});
  Result<std::vector<Series>> r = engine_.Range("x", 0, 12 * kM, 4 * kM);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  // Steps at 0, 4, 8, 12 minutes: 8 is past the lookback of the first
  // sample and before the second.
  std::vector<std::pair<int64_t, double>> got;
  for (const Point& p : (*r)[0].points) got.emplace_back(p.t, p.v);
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, double>>{{0, 1}, {4 * kM, 1}, {12 * kM, 2}}));
  // A scalar is one series with no labels.
  r = engine_.Range("time()", 0, 2000, 1000);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_TRUE((*r)[0].labels.empty());
  EXPECT_EQ((*r)[0].points.size(), 3u);
  // Refusals as Prometheus's.
  EXPECT_FALSE(engine_.Range("x", 10, 0, 1).ok());
  EXPECT_FALSE(engine_.Range("x", 0, 10, 0).ok());
  EXPECT_TRUE(engine_.Range("x", 0, 11000, 1).ok());
  EXPECT_FALSE(engine_.Range("x", 0, 11001, 1).ok());
  Result<std::vector<Series>> m = engine_.Range("x[5m]", 0, 10, 1);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("range vector"), std::string::npos);
}

// Buckets stand in for samples only where the answer stays the same: every
// *_over_time over windows that start before, inside and after the
// bucketed stretch, with samples on bucket edges (the sample at a window's
// end opens the next bucket and must still count). Some stretches have no
// sample for up to an hour, so that buckets are missing (the engine's search
// for a window's buckets counts on their starts being bucket_ms apart at
// least, never on their being adjacent).
TEST(PromqlEngineBuckets, AnswerAsTheSamplesDo) {
  constexpr int64_t kH = 60 * kM;
  std::mt19937_64 rng(7);
  std::vector<Point> points;
  for (int64_t t = 0; t < 48 * kH; t += 10 * kS) {
    if (rng() % 10 == 0) continue;  // gaps
    const int64_t stretch = t / (37 * kM);
    if (stretch % 4 == 1 && t % (37 * kM) < (stretch % 7) * 9 * kM) continue;  // no bucket
    points.push_back(Point{t, static_cast<double>(rng() % 2000) / 100 - 5});
  }
  MemorySource plain, bucketed;
  plain.Add(L("x", "x"), points);
  bucketed.Add(L("x", "x"), points);
  bucketed.SetBuckets(5 * kM, 6 * kH, 30 * kH);
  Engine by_samples(&plain), by_buckets(&bucketed);
  for (const char* f : {"avg", "min", "max", "sum", "count"}) {
    for (const char* range : {"1h", "5m", "2h"}) {
      const std::string q = std::string(f) + "_over_time(x[" + range + "])";
      Result<std::vector<Series>> want = by_samples.Range(q, 2 * kH, 40 * kH, kH);
      Result<std::vector<Series>> got = by_buckets.Range(q, 2 * kH, 40 * kH, kH);
      ASSERT_TRUE(want.ok() && got.ok()) << q;
      ASSERT_EQ(want->size(), 1u) << q;
      ASSERT_EQ(got->size(), 1u) << q;
      ASSERT_EQ((*got)[0].points.size(), (*want)[0].points.size()) << q;
      for (size_t i = 0; i < (*want)[0].points.size(); ++i) {
        const Point& w = (*want)[0].points[i];
        const Point& g = (*got)[0].points[i];
        EXPECT_EQ(g.t, w.t) << q;
        EXPECT_NEAR(g.v, w.v, 1e-9 * std::max(1.0, std::fabs(w.v))) << q << " at " << w.t;
      }
    }
  }
  // Step by step (an aggregation) and at one time (an instant query) the
  // same.
  for (const char* q : {"sum(avg_over_time(x[1h]))", "max(count_over_time(x[2h]))"}) {
    Result<std::vector<Series>> want = by_samples.Range(q, 2 * kH, 40 * kH, 5 * kM);
    Result<std::vector<Series>> got = by_buckets.Range(q, 2 * kH, 40 * kH, 5 * kM);
    ASSERT_TRUE(want.ok() && got.ok()) << q;
    ASSERT_EQ(want->size(), 1u) << q;
    ASSERT_EQ(got->size(), 1u) << q;
    ASSERT_EQ((*got)[0].points.size(), (*want)[0].points.size()) << q;
    for (size_t i = 0; i < (*want)[0].points.size(); ++i) {
      EXPECT_NEAR((*got)[0].points[i].v, (*want)[0].points[i].v,
                  1e-9 * std::max(1.0, std::fabs((*want)[0].points[i].v)))
          << q << " at " << (*want)[0].points[i].t;
    }
  }
  for (int64_t t = 7 * kH; t < 30 * kH; t += 25 * kM) {
    Result<InstantResult> want = by_samples.Instant("sum_over_time(x[1h])", t);
    Result<InstantResult> got = by_buckets.Instant("sum_over_time(x[1h])", t);
    ASSERT_TRUE(want.ok() && got.ok());
    ASSERT_EQ(got->series.size(), want->series.size()) << t;
    if (want->series.empty()) continue;
    EXPECT_NEAR(got->series[0].points[0].v, want->series[0].points[0].v, 1e-9) << t;
  }
  EXPECT_GT(bucketed.selects_with_buckets(), 0);
  // A step that is no multiple of a bucket reads the samples.
  const int before = bucketed.selects_with_buckets();
  ASSERT_TRUE(by_buckets.Range("avg_over_time(x[1h])", 2 * kH, 40 * kH, 17 * kS).ok());
  EXPECT_EQ(bucketed.selects_with_buckets(), before);
}

}  // namespace
}  // namespace komoku::promql

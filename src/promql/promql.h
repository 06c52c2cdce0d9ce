// A documented subset of PromQL (docs/prometheus.md), exact to Prometheus
// 2.42's semantics for everything it accepts and refusing the rest with an
// error that names what is unsupported: the parser (Parse) and the
// evaluator (Engine) over any Source of labelled series. Komoku's keys as
// series are in promql/store_source.h. No HTTP, no JSON: answers are structs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace komoku::promql {

// Label pairs sorted by name, names unique; "__name__" is the metric name.
using Labels = std::vector<std::pair<std::string, std::string>>;

inline constexpr const char* kMetricName = "__name__";

// The value of `name` in `labels`, "" when absent (as Prometheus reads it).
const std::string& LabelValue(const Labels& labels, const std::string& name);

struct Point {
  int64_t t = 0;  // milliseconds since the epoch
  double v = 0;
};

// What the *_over_time functions need of the samples of one series in one
// bucket [start_ms, start_ms + the resolution): a summary a source may give
// instead of the samples themselves (Source::Select).
struct Bucket {
  int64_t start_ms = 0;
  int64_t count = 0;  // at least 1: a bucket without samples is left out
  double sum = 0;
  double min = 0;
  double max = 0;
  Point first;  // the bucket's first sample
};

struct Series {
  Series() = default;
  Series(Labels l, std::vector<Point> p) : labels(std::move(l)), points(std::move(p)) {}

  Labels labels;
  std::vector<Point> points;  // by time, no two at the same time
  // Where buckets stand in for the points: none of `points` lies in
  // [buckets_from, buckets_to), and `buckets` (by start, each bucket_ms
  // long, both ends multiples of bucket_ms) summarize the samples there.
  // Empty (buckets_from == buckets_to) when the points are all there is.
  int64_t bucket_ms = 0;
  int64_t buckets_from = 0;
  int64_t buckets_to = 0;
  std::vector<Bucket> buckets;
};

// A label matcher: =, !=, =~ (the regular expression must match the whole
// value), !~.
class Matcher {
 public:
  enum class Op { kEqual, kNotEqual, kRegex, kNotRegex };
  // InvalidArgument for a regular expression that does not compile.
  static Result<Matcher> Make(Op op, std::string name, std::string value);
  bool Matches(const std::string& value) const;
  const std::string& name() const { return name_; }
  const std::string& value() const { return value_; }
  Op op() const { return op_; }

 private:
  struct Regex;
  Op op_ = Op::kEqual;
  std::string name_;
  std::string value_;
  std::shared_ptr<const Regex> regex_;  // immutable, shared by copies
};

// True when every matcher matches `labels` (an absent label reads as "").
bool MatchesAll(const std::vector<Matcher>& matchers, const Labels& labels);

// Where the series come from. Implementations are called from one thread
// per query and must be safe to call from several queries at once.
class Source {
 public:
  virtual ~Source() = default;
  // Every series whose labels match all `matchers`, with its points in
  // [from_ms, to_ms] (both ends included); a series with no point there may
  // be left out. With `align_ms` > 0 the caller can also take buckets
  // (Series::buckets) of any resolution that divides align_ms, and the
  // source may give them in place of points where it has them exact, so
  // that the samples need not be read: the caller only asks so when
  // from_ms and every range it will sum over are multiples of align_ms.
  virtual Result<std::vector<Series>> Select(const std::vector<Matcher>& matchers, int64_t from_ms,
                                             int64_t to_ms, int64_t align_ms) const = 0;
  // The label sets of every series matching all `matchers` (all series when
  // `matchers` is empty), points left empty.
  virtual Result<std::vector<Labels>> Labelsets(const std::vector<Matcher>& matchers) const = 0;
};

// A parsed query. Immutable once parsed; Evaluate may be called on it from
// one thread at a time.
class Expr;

// The answer of an instant query: a scalar, an instant vector (one value per
// series) or, for a range vector selector, a matrix.
struct InstantResult {
  enum class Type { kScalar, kVector, kMatrix };
  Type type = Type::kVector;
  double scalar = 0;
  int64_t time_ms = 0;
  std::vector<Series> series;  // vector: one point each, at time_ms
};

struct Options {
  int64_t lookback_ms = 5 * 60 * 1000;  // Prometheus's default lookback delta
  // The most steps past the start a range query may have (Prometheus: 11,000).
  int64_t max_points = 11000;
  // The most samples one query may hold in memory at once.
  size_t max_samples = 50'000'000;
};

// Parses `query` against the subset. InvalidArgument with "parse error:
// ..." and the character position, or "unsupported: ..." naming the feature
// Komoku does not evaluate.
Result<std::shared_ptr<const Expr>> Parse(const std::string& query);

// The matchers of a series selector (the match[] of /api/v1/series):
// `name{...}` or `{...}` and nothing more.
Result<std::vector<Matcher>> ParseSeriesSelector(const std::string& text);

class Engine {
 public:
  // `source` must outlive the Engine.
  explicit Engine(const Source* source, Options options = {});

  // The query at one time. Errors are InvalidArgument (bad query, Prometheus's
  // bad_data) or the source's own.
  Result<InstantResult> Instant(const std::string& query, int64_t time_ms) const;

  // The query at start, start+step, ... <= end: one series per label set,
  // sorted by labels (a scalar gives one series with no labels).
  Result<std::vector<Series>> Range(const std::string& query, int64_t start_ms, int64_t end_ms,
                                    int64_t step_ms) const;

 private:
  const Source* const source_;
  const Options options_;
};

// Prometheus's duration: "1h30m", "5m", "10s", "250ms", "1d", "1w", "1y"
// (units largest first, each at most once). InvalidArgument otherwise.
Result<int64_t> ParseDurationMs(const std::string& text);

}  // namespace komoku::promql

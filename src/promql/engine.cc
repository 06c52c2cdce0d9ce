// The evaluator: Prometheus 2.42's semantics for the subset (docs/prometheus.md).
// - An instant vector selector at t takes each series' newest point in
//   [t - offset - lookback, t - offset] (both ends included, as 2.42 does).
// - A range vector selector takes the points in [t - offset - range,
//   t - offset], both ends included.
// - rate, increase and delta extrapolate as Prometheus's extrapolatedRate;
//   sum_over_time and avg_over_time use its Kahan-Neumaier summation; avg
//   and the other aggregations follow its aggregation() step by step, so
//   answers agree to the last bits where Prometheus is deterministic.
// A query's series are read once, over the whole window every step needs,
// and each step then works on slices of them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "promql/expr.h"
#include "promql/promql.h"

namespace komoku::promql {

namespace {

struct Sample {
  Labels labels;
  double v = 0;
};
using Vector = std::vector<Sample>;

struct Value {
  ValueType type = ValueType::kScalar;
  double scalar = 0;
  Vector vector;
};

Labels DropName(Labels labels) {
  labels.erase(std::remove_if(labels.begin(), labels.end(),
                              [](const auto& l) { return l.first == kMetricName; }),
               labels.end());
  return labels;
}

// Prometheus's kahanSumInc: one step of Kahan-Neumaier summation.
void KahanInc(double inc, double& sum, double& c) {
  double t = sum + inc;
  if (std::fabs(sum) >= std::fabs(inc)) {
    c += (sum - t) + inc;
  } else {
    c += (inc - t) + sum;
  }
  sum = t;
}

// The points of `s` with from <= t <= to.
std::pair<const Point*, const Point*> Slice(const Series& s, int64_t from, int64_t to) {
  auto lo = std::lower_bound(s.points.begin(), s.points.end(), from,
                             [](const Point& p, int64_t t) { return p.t < t; });
  auto hi =
      std::upper_bound(lo, s.points.end(), to, [](int64_t t, const Point& p) { return t < p.t; });
  return {s.points.data() + (lo - s.points.begin()), s.points.data() + (hi - s.points.begin())};
}

// Prometheus's extrapolatedRate over the points [b, e) of a range
// [range_start, range_end]; false when there are fewer than two points.
bool ExtrapolatedRate(const Point* b, const Point* e, int64_t range_start, int64_t range_end,
                      int64_t range_ms, bool is_counter, bool is_rate, double* out) {
  const size_t n = static_cast<size_t>(e - b);
  if (n < 2) return false;
  const Point& first = b[0];
  const Point& last = e[-1];
  double result = last.v - first.v;
  if (is_counter) {
    double prev = first.v;
    for (const Point* p = b + 1; p != e; ++p) {
      if (p->v < prev) result += prev;  // a reset: the counter started again
      prev = p->v;
    }
  }
  double to_start = static_cast<double>(first.t - range_start) / 1000;
  double to_end = static_cast<double>(range_end - last.t) / 1000;
  double sampled = static_cast<double>(last.t - first.t) / 1000;
  double average = sampled / static_cast<double>(n - 1);
  if (is_counter && result > 0 && first.v >= 0) {
    double to_zero = sampled * (first.v / result);
    if (to_zero < to_start) to_start = to_zero;
  }
  double threshold = average * 1.1;
  double interval = sampled;
  interval += to_start < threshold ? to_start : average / 2;
  interval += to_end < threshold ? to_end : average / 2;
  double factor = interval / sampled;
  if (is_rate) factor /= static_cast<double>(range_ms) / 1000;
  *out = result * factor;
  return true;
}

// Prometheus's deriv: the slope of the least-squares line through the
// points [b, e) (at least two), times in seconds from the first point's (so
// that the sums stay small), each sum a Kahan-Neumaier sum; 0 for a
// constant series, NaN for a constant infinite one.
bool Deriv(const Point* b, const Point* e, double* out) {
  if (e - b < 2) return false;
  double n = 0, sum_x = 0, c_x = 0, sum_y = 0, c_y = 0, sum_xy = 0, c_xy = 0, sum_x2 = 0, c_x2 = 0;
  const double first = b->v;
  bool constant = true;
  for (const Point* p = b; p != e; ++p) {
    if (p->v != first) constant = false;
    n += 1;
    const double x = static_cast<double>(p->t - b->t) / 1000;
    KahanInc(x, sum_x, c_x);
    KahanInc(p->v, sum_y, c_y);
    KahanInc(x * p->v, sum_xy, c_xy);
    KahanInc(x * x, sum_x2, c_x2);
  }
  if (constant) {
    *out = std::isinf(first) ? std::numeric_limits<double>::quiet_NaN() : 0;
    return true;
  }
  sum_x += c_x;
  sum_y += c_y;
  sum_xy += c_xy;
  sum_x2 += c_x2;
  const double cov_xy = sum_xy - sum_x * sum_y / n;
  const double var_x = sum_x2 - sum_x * sum_x / n;
  *out = cov_xy / var_x;
  return true;
}

// The value of `f` over the points [b, e) (at least one); false when the
// function gives no value (rate and friends with one point).
bool CallRange(RangeFunc f, const Point* b, const Point* e, int64_t range_start, int64_t range_end,
               int64_t range_ms, double* out) {
  switch (f) {
    case RangeFunc::kRate:
      return ExtrapolatedRate(b, e, range_start, range_end, range_ms, true, true, out);
    case RangeFunc::kIncrease:
      return ExtrapolatedRate(b, e, range_start, range_end, range_ms, true, false, out);
    case RangeFunc::kDelta:
      return ExtrapolatedRate(b, e, range_start, range_end, range_ms, false, false, out);
    case RangeFunc::kChanges: {
      double changes = 0;
      for (const Point* p = b + 1; p != e; ++p) {
        double prev = p[-1].v;
        if (p->v != prev && !(std::isnan(p->v) && std::isnan(prev))) ++changes;
      }
      *out = changes;
      return true;
    }
    case RangeFunc::kDeriv:
      return Deriv(b, e, out);
    case RangeFunc::kAvgOverTime: {
      double mean = 0, c = 0, count = 0;
      for (const Point* p = b; p != e; ++p) {
        ++count;
        if (std::isinf(mean)) {
          if (std::isinf(p->v) && (mean > 0) == (p->v > 0)) continue;
          if (!std::isinf(p->v) && !std::isnan(p->v)) continue;
        }
        KahanInc(p->v / count - mean / count, mean, c);
      }
      *out = std::isinf(mean) ? mean : mean + c;
      return true;
    }
    case RangeFunc::kMinOverTime: {
      double m = b->v;
      for (const Point* p = b; p != e; ++p) {
        if (p->v < m || std::isnan(m)) m = p->v;
      }
      *out = m;
      return true;
    }
    case RangeFunc::kMaxOverTime: {
      double m = b->v;
      for (const Point* p = b; p != e; ++p) {
        if (p->v > m || std::isnan(m)) m = p->v;
      }
      *out = m;
      return true;
    }
    case RangeFunc::kSumOverTime: {
      double sum = 0, c = 0;
      for (const Point* p = b; p != e; ++p) KahanInc(p->v, sum, c);
      *out = std::isinf(sum) ? sum : sum + c;
      return true;
    }
    case RangeFunc::kCountOverTime:
      *out = static_cast<double>(e - b);
      return true;
    case RangeFunc::kLastOverTime:
      *out = e[-1].v;
      return true;
  }
  return false;
}

// The functions whose value over a range follows from count, sum, minimum
// and maximum, so that buckets (Series::buckets) can stand in for samples.
bool Summable(RangeFunc f) {
  return f == RangeFunc::kAvgOverTime || f == RangeFunc::kMinOverTime ||
         f == RangeFunc::kMaxOverTime || f == RangeFunc::kSumOverTime ||
         f == RangeFunc::kCountOverTime;
}

int64_t Gcd(int64_t a, int64_t b) {
  a = a < 0 ? -a : a;
  b = b < 0 ? -b : b;
  while (b != 0) {
    int64_t r = a % b;
    a = b;
    b = r;
  }
  return a;
}

// Count, sum, minimum and maximum of samples and of buckets of samples.
class Summary {
 public:
  void Add(double v) {
    if (count_ == 0 || v < min_) min_ = v;
    if (count_ == 0 || v > max_) max_ = v;
    KahanInc(v, sum_, c_);
    ++count_;
  }
  void Add(const Bucket& b) {
    if (count_ == 0 || b.min < min_) min_ = b.min;
    if (count_ == 0 || b.max > max_) max_ = b.max;
    KahanInc(b.sum, sum_, c_);
    count_ += b.count;
  }
  int64_t count() const { return count_; }
  double Value(RangeFunc f) const {
    const double sum = std::isinf(sum_) ? sum_ : sum_ + c_;
    switch (f) {
      case RangeFunc::kAvgOverTime:
        return sum / static_cast<double>(count_);
      case RangeFunc::kMinOverTime:
        return min_;
      case RangeFunc::kMaxOverTime:
        return max_;
      case RangeFunc::kCountOverTime:
        return static_cast<double>(count_);
      default:
        return sum;
    }
  }

 private:
  int64_t count_ = 0;
  double sum_ = 0, c_ = 0, min_ = 0, max_ = 0;
};

// A Summable function over the samples of `s` in [from, to], both multiples
// of s.bucket_ms: its points there, its buckets with a start in [from, to),
// and the sample at `to` itself, which opens the bucket at `to` (a
// Prometheus range includes both ends). False when there is no sample.
// Samples are finite (Komoku stores no NaN), so the order they are taken in
// changes no minimum or maximum, and sums only in the last bits.
// `*hint` (0 at first) is where the search for the buckets starts and is
// left where the next range, later than this one, will start: starts are
// distinct multiples of bucket_ms, so the first bucket at or after a time
// lies at most (time - a start) / bucket_ms places past that start, and a
// year of steps costs no binary searches over the whole year.
bool CallSummarized(RangeFunc f, const Series& s, int64_t from, int64_t to, size_t* hint,
                    double* out) {
  Summary sum;
  auto [b, e] = Slice(s, from, to);
  for (const Point* p = b; p != e; ++p) sum.Add(p->v);
  auto by_start = [](const Bucket& x, int64_t t) { return x.start_ms < t; };
  const auto end = s.buckets.end();
  // The first bucket at or after t, searched from `at`.
  auto seek = [&](std::vector<Bucket>::const_iterator at, int64_t t) {
    if (at == end || at->start_ms >= t) return at;
    if (s.bucket_ms <= 0) return std::lower_bound(at, end, t, by_start);
    const int64_t most = (t - at->start_ms) / s.bucket_ms + 1;
    auto last = end - at > most ? at + most : end;
    return std::lower_bound(at, last, t, by_start);
  };
  auto at = s.buckets.begin() + static_cast<std::ptrdiff_t>(std::min(*hint, s.buckets.size()));
  if (at != s.buckets.begin() && at[-1].start_ms >= from) at = s.buckets.begin();
  auto lo = seek(at, from);
  auto hi = seek(lo, to);
  *hint = static_cast<size_t>(lo - s.buckets.begin());
  for (auto it = lo; it != hi; ++it) sum.Add(*it);
  if (hi != s.buckets.end() && hi->start_ms == to && hi->first.t == to) sum.Add(hi->first.v);
  if (sum.count() == 0) return false;
  *out = sum.Value(f);
  return true;
}

double Arithmetic(char op, double l, double r) {
  switch (op) {
    case '+':
      return l + r;
    case '-':
      return l - r;
    case '*':
      return l * r;
    case '/':
      return l / r;
    case '%':
      return std::fmod(l, r);
    case '^':
      return std::pow(l, r);
  }
  return NAN;
}

Vector Aggregate(const Expr& e, const Vector& in) {
  struct Group {
    Labels labels;
    double value = 0;
    double mean = 0;
    double count = 0;
  };
  std::vector<Group> groups;  // in the order first seen, as Prometheus
  std::map<Labels, size_t> index;
  for (const Sample& s : in) {
    Labels key;
    if (e.without) {
      for (const auto& l : s.labels) {
        if (l.first == kMetricName) continue;
        if (std::find(e.grouping.begin(), e.grouping.end(), l.first) != e.grouping.end()) continue;
        key.push_back(l);
      }
    } else {
      for (const auto& l : s.labels) {
        if (std::find(e.grouping.begin(), e.grouping.end(), l.first) != e.grouping.end()) {
          key.push_back(l);
        }
      }
    }
    auto [it, fresh] = index.emplace(key, groups.size());
    if (fresh) {
      groups.push_back(Group{std::move(key), s.v, s.v, 1});
      continue;
    }
    Group& g = groups[it->second];
    switch (e.agg) {
      case AggOp::kSum:
        g.value += s.v;
        break;
      case AggOp::kAvg:
        ++g.count;
        if (std::isinf(g.mean)) {
          if (std::isinf(s.v) && (g.mean > 0) == (s.v > 0)) break;
          if (!std::isinf(s.v) && !std::isnan(s.v)) break;
        }
        g.mean += s.v / g.count - g.mean / g.count;
        break;
      case AggOp::kMax:
        if (g.value < s.v || std::isnan(g.value)) g.value = s.v;
        break;
      case AggOp::kMin:
        if (g.value > s.v || std::isnan(g.value)) g.value = s.v;
        break;
      case AggOp::kCount:
        ++g.count;
        break;
    }
  }
  Vector out;
  out.reserve(groups.size());
  for (Group& g : groups) {
    double v = g.value;
    if (e.agg == AggOp::kAvg) v = g.mean;
    if (e.agg == AggOp::kCount) v = g.count;
    out.push_back(Sample{std::move(g.labels), v});
  }
  return out;
}

class Evaluator {
 public:
  Evaluator(const Source* source, const Options& options) : source_(source), options_(options) {}

  // Reads every selector's series over the window the steps start, start +
  // step, ... <= end need (step 0: start alone).
  Status Load(const Expr& e, int64_t start, int64_t end, int64_t step) {
    if (e.kind == Expr::Kind::kRangeCall && Summable(e.func)) {
      // Every range [t - offset - range, t - offset] starts and ends on a
      // multiple of `align`: buckets that divide it can stand in for samples.
      const Expr& sel = *e.args[0];
      int64_t align = Gcd(sel.range_ms, start - sel.offset_ms - sel.range_ms);
      if (step > 0) align = Gcd(align, step);
      return LoadSelector(sel, start, end, align);
    }
    if (e.kind == Expr::Kind::kSelector) return LoadSelector(e, start, end, 0);
    for (const auto& a : e.args) KOMOKU_RETURN_IF_ERROR(Load(*a, start, end, step));
    return Status::Ok();
  }

  Status LoadSelector(const Expr& e, int64_t start, int64_t end, int64_t align) {
    int64_t back = e.range_ms > 0 ? e.range_ms : options_.lookback_ms;
    Result<std::vector<Series>> series =
        source_->Select(e.matchers, start - e.offset_ms - back, end - e.offset_ms, align);
    if (!series.ok()) return series.status();
    for (const Series& s : *series) loaded_points_ += s.points.size() + s.buckets.size();
    if (loaded_points_ > options_.max_samples) {
      return Status::InvalidArgument(
          "query processing would load too many samples into memory in query execution");
    }
    data_[&e] = std::move(*series);
    return Status::Ok();
  }

  // The series of a range vector selector at t (an instant query's matrix).
  std::vector<Series> Matrix(const Expr& e, int64_t t) const {
    std::vector<Series> out;
    int64_t to = t - e.offset_ms;
    for (const Series& s : data_.at(&e)) {
      auto [b, en] = Slice(s, to - e.range_ms, to);
      if (b == en) continue;
      out.push_back(Series{s.labels, std::vector<Point>(b, en)});
    }
    return out;
  }

  Value Eval(const Expr& e, int64_t t) const {
    Value out;
    out.type = e.type;
    switch (e.kind) {
      case Expr::Kind::kNumber:
        out.scalar = e.number;
        break;
      case Expr::Kind::kTime:
        out.scalar = static_cast<double>(t) / 1000;
        break;
      case Expr::Kind::kSelector:
      case Expr::Kind::kRangeCall:
        for (const Series& s : Loaded(e)) {
          double v = 0;
          if (SeriesValue(e, s, t, &v)) out.vector.push_back(Sample{ResultLabels(e, s), v});
        }
        break;
      case Expr::Kind::kAggregate:
        out.vector = Aggregate(e, Eval(*e.args[0], t).vector);
        break;
      case Expr::Kind::kNegate: {
        Value in = Eval(*e.args[0], t);
        out.scalar = -in.scalar;
        for (Sample& s : in.vector)
          out.vector.push_back(Sample{DropName(std::move(s.labels)), -s.v});
        break;
      }
      case Expr::Kind::kBinary: {
        Value l = Eval(*e.args[0], t);
        Value r = Eval(*e.args[1], t);
        if (l.type == ValueType::kScalar && r.type == ValueType::kScalar) {
          out.scalar = Arithmetic(e.op, l.scalar, r.scalar);
        } else if (l.type == ValueType::kVector) {
          for (Sample& s : l.vector) {
            out.vector.push_back(
                Sample{DropName(std::move(s.labels)), Arithmetic(e.op, s.v, r.scalar)});
          }
        } else {
          for (Sample& s : r.vector) {
            out.vector.push_back(
                Sample{DropName(std::move(s.labels)), Arithmetic(e.op, l.scalar, s.v)});
          }
        }
        break;
      }
    }
    return out;
  }

  // The series a selector, or a range function of one, reads.
  const std::vector<Series>& Loaded(const Expr& e) const {
    return data_.at(e.kind == Expr::Kind::kRangeCall ? e.args[0].get() : &e);
  }

  // The value at t that selector or range function `e` takes from one of
  // its series `s`; false when it has none there.
  // `hint` as CallSummarized's, for a caller that walks the steps in order.
  bool SeriesValue(const Expr& e, const Series& s, int64_t t, double* v,
                   size_t* hint = nullptr) const {
    if (e.kind == Expr::Kind::kSelector) {
      const int64_t ref = t - e.offset_ms;
      auto [b, en] = Slice(s, ref - options_.lookback_ms, ref);
      if (b == en) return false;
      *v = en[-1].v;
      return true;
    }
    const Expr& sel = *e.args[0];
    const int64_t range_end = t - sel.offset_ms;
    const int64_t range_start = range_end - sel.range_ms;
    if (!s.buckets.empty()) {
      size_t from_start = 0;
      return CallSummarized(e.func, s, range_start, range_end, hint ? hint : &from_start, v);
    }
    auto [b, en] = Slice(s, range_start, range_end);
    if (b == en) return false;
    return CallRange(e.func, b, en, range_start, range_end, sel.range_ms, v);
  }

  // The labels of what SeriesValue gives: a selector's series keeps its
  // labels, and so does last_over_time (it acts as an offset); the other
  // functions drop the name.
  static Labels ResultLabels(const Expr& e, const Series& s) {
    if (e.kind == Expr::Kind::kSelector || e.func == RangeFunc::kLastOverTime) return s.labels;
    return DropName(s.labels);
  }

 private:
  const Source* const source_;
  const Options& options_;
  std::map<const Expr*, std::vector<Series>> data_;
  size_t loaded_points_ = 0;
};

}  // namespace

Engine::Engine(const Source* source, Options options) : source_(source), options_(options) {}

Result<InstantResult> Engine::Instant(const std::string& query, int64_t time_ms) const {
  Result<std::shared_ptr<const Expr>> parsed = Parse(query);
  if (!parsed.ok()) return parsed.status();
  const Expr& e = **parsed;
  Evaluator ev(source_, options_);
  KOMOKU_RETURN_IF_ERROR(ev.Load(e, time_ms, time_ms, 0));
  InstantResult out;
  out.time_ms = time_ms;
  if (e.type == ValueType::kMatrix) {
    out.type = InstantResult::Type::kMatrix;
    out.series = ev.Matrix(e, time_ms);
    std::sort(out.series.begin(), out.series.end(),
              [](const Series& a, const Series& b) { return a.labels < b.labels; });
    return out;
  }
  Value v = ev.Eval(e, time_ms);
  if (v.type == ValueType::kScalar) {
    out.type = InstantResult::Type::kScalar;
    out.scalar = v.scalar;
    return out;
  }
  out.type = InstantResult::Type::kVector;
  for (Sample& s : v.vector) {
    out.series.push_back(Series{std::move(s.labels), {Point{time_ms, s.v}}});
  }
  return out;
}

Result<std::vector<Series>> Engine::Range(const std::string& query, int64_t start_ms,
                                          int64_t end_ms, int64_t step_ms) const {
  if (end_ms < start_ms)
    return Status::InvalidArgument("end timestamp must not be before start time");
  if (step_ms <= 0) {
    return Status::InvalidArgument(
        "zero or negative query resolution step widths are not accepted. Try a positive integer");
  }
  if ((end_ms - start_ms) / step_ms > options_.max_points) {  // as Prometheus: 11,001 pass
    return Status::InvalidArgument(
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
        "resolution (?step=XX)");
  }
  Result<std::shared_ptr<const Expr>> parsed = Parse(query);
  if (!parsed.ok()) return parsed.status();
  const Expr& e = **parsed;
  if (e.type == ValueType::kMatrix) {
    return Status::InvalidArgument(
        "invalid expression type \"range vector\" for range query, must be Scalar or instant "
        "Vector");
  }
  Evaluator ev(source_, options_);
  KOMOKU_RETURN_IF_ERROR(ev.Load(e, start_ms, end_ms, step_ms));
  const size_t steps = static_cast<size_t>((end_ms - start_ms) / step_ms + 1);
  const auto too_many = [] {
    return Status::InvalidArgument(
        "query processing would load too many samples into memory in query execution");
  };
  std::map<Labels, std::vector<Point>> series;
  size_t points = 0;
  // A selector, or a range function of one (what most dashboards ask): series
  // by series, so that each result series is named once rather than at each
  // step. Two series that become one after the name is dropped (as
  // Prometheus, the result may not hold two) take the step-by-step way.
  if (e.kind == Expr::Kind::kSelector ||
      (e.kind == Expr::Kind::kRangeCall && e.args[0]->kind == Expr::Kind::kSelector)) {
    bool merged = false;
    for (const Series& s : ev.Loaded(e)) {
      std::vector<Point> pts;
      size_t hint = 0;
      for (int64_t t = start_ms; t <= end_ms; t += step_ms) {
        double v = 0;
        if (!ev.SeriesValue(e, s, t, &v, &hint)) continue;
        // Every step at once: growing by doubling would copy and, past
        // malloc's mmap threshold, map fresh pages each time.
        if (pts.empty()) pts.reserve(steps - static_cast<size_t>((t - start_ms) / step_ms));
        pts.push_back(Point{t, v});
      }
      if (pts.empty()) continue;
      points += pts.size();
      if (points > options_.max_samples) return too_many();
      if (!series.emplace(Evaluator::ResultLabels(e, s), std::move(pts)).second) {
        merged = true;
        break;
      }
    }
    if (!merged) {
      std::vector<Series> out;
      out.reserve(series.size());
      for (auto& [labels, pts] : series) out.push_back(Series{labels, std::move(pts)});
      return out;
    }
    series.clear();
    points = 0;
  }
  for (int64_t t = start_ms; t <= end_ms; t += step_ms) {
    Value v = ev.Eval(e, t);
    if (v.type == ValueType::kScalar) {
      series[Labels{}].push_back(Point{t, v.scalar});
      ++points;
      continue;
    }
    for (Sample& s : v.vector) {
      std::vector<Point>& points = series[std::move(s.labels)];
      if (points.empty()) points.reserve(static_cast<size_t>((end_ms - t) / step_ms + 1));
      points.push_back(Point{t, s.v});
    }
    points += v.vector.size();
    if (points > options_.max_samples) return too_many();
  }
  std::vector<Series> out;
  out.reserve(series.size());
  for (auto& [labels, pts] : series) out.push_back(Series{labels, std::move(pts)});
  return out;
}

}  // namespace komoku::promql

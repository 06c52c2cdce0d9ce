#include "series/history.h"

#include <date/tz.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace komoku::store {
namespace {

constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kWeek = 7 * kDay;
// The coarsest rollup a query may be answered from.
constexpr int64_t kMaxRollupMs = kDay;

Status BadParam(const std::string& name, const std::string& why) {
  return Status::InvalidArgument("parameter '" + name + "': " + why).WithReason("bad_request");
}

bool IsNumeric(KeyType t) { return t == KeyType::kNumeric || t == KeyType::kCounter; }

int64_t FloorTo(int64_t t, int64_t r) { return t >= 0 ? t / r * r : -((-t + r - 1) / r) * r; }
int64_t CeilTo(int64_t t, int64_t r) { return -FloorTo(-t, r); }

// The step function of a key: changes as points, and the time between them
// as segments holding a value (or unknown); where rollups answer, whole
// rollup buckets as chunks.
class Visitor {
 public:
  virtual ~Visitor() = default;
  // A change at t; `prev` is the value in force just before it, if known.
  virtual void Point(int64_t t, const Value& v, const Value* prev) = 0;
  // [start, end) holds `v`; null means unknown.
  virtual void Segment(int64_t start, int64_t end, const Value* v) = 0;
  // The value in force just before the range, if any; called first.
  virtual void Carry(const Value*) {}
  // [start, end) summed up by a rollup: the points and segments in it, as
  // one. Only visitors that accept chunks (max_rollup_ms > 0) get them, and
  // a chunk always lies inside one of their buckets.
  virtual void Chunk(int64_t /*start*/, int64_t /*end*/, const Rollup& /*r*/) {}
};

// Where a walk reads a key's history: raw changes everywhere, rollups where
// they are exact.
class WalkSource {
 public:
  virtual ~WalkSource() = default;
  // The change in force at t (the last at or before it).
  virtual Result<std::optional<Sample>> At(int64_t t) const = 0;
  virtual Status Scan(int64_t from, int64_t to,
                      const std::function<bool(const Sample&)>& fn) const = 0;
  // Where rollups answer, oldest first (Store::RollupCoverage); empty for
  // nowhere.
  virtual std::vector<RollupStretch> RollupCoverage() const { return {}; }
  virtual Status ScanRollups(int64_t, int64_t, int64_t,
                             const std::function<bool(const Rollup&)>&) const {
    return Status::Ok();
  }
};

class StoreSource : public WalkSource {
 public:
  StoreSource(const ChangeSource& store, const std::string& key) : store_(store), key_(key) {}
  Result<std::optional<Sample>> At(int64_t t) const override { return store_.At(key_, t); }
  Status Scan(int64_t from, int64_t to,
              const std::function<bool(const Sample&)>& fn) const override {
    return store_.Scan(key_, from, to, fn);
  }
  std::vector<RollupStretch> RollupCoverage() const override { return store_.RollupCoverage(key_); }
  Status ScanRollups(int64_t res, int64_t from, int64_t to,
                     const std::function<bool(const Rollup&)>& fn) const override {
    return store_.ScanRollups(key_, res, from, to, fn);
  }

 private:
  const ChangeSource& store_;
  const std::string& key_;
};

// Changes held in memory, with the one in force before them.
class VectorSource : public WalkSource {
 public:
  VectorSource(const std::optional<Sample>& carry, const std::vector<Sample>& changes)
      : carry_(carry), changes_(changes) {}
  Result<std::optional<Sample>> At(int64_t t) const override {
    auto it = std::upper_bound(changes_.begin(), changes_.end(), t,
                               [](int64_t v, const Sample& s) { return v < s.time_ms; });
    if (it != changes_.begin()) return std::optional<Sample>(*std::prev(it));
    if (carry_ && carry_->time_ms <= t) return carry_;
    return std::optional<Sample>();
  }
  Status Scan(int64_t from, int64_t to,
              const std::function<bool(const Sample&)>& fn) const override {
    auto it = std::lower_bound(changes_.begin(), changes_.end(), from,
                               [](const Sample& s, int64_t v) { return s.time_ms < v; });
    for (; it != changes_.end() && it->time_ms < to; ++it) {
      if (!fn(*it)) break;
    }
    return Status::Ok();
  }

 private:
  const std::optional<Sample>& carry_;
  const std::vector<Sample>& changes_;
};

// A stretch of a walk: raw changes (res 0) or rollups of `res` computed
// with `stale` as the key's stale_after (which says what a missing rollup
// bucket held).
struct Region {
  int64_t start, end, res;
  int64_t stale = 0;
};

void Push(std::vector<Region>& out, Region r) {
  if (r.start >= r.end) return;
  if (!out.empty() && out.back().end == r.start && out.back().res == r.res &&
      out.back().stale == r.stale) {
    out.back().end = r.end;
  } else {
    out.push_back(r);
  }
}

// Covers [s, e) with the coarsest rollups that fit inside `cover`, finer
// ones at the edges, and raw changes where none fit.
void Cover(std::vector<Region>& out, int64_t s, int64_t e, const std::vector<int64_t>& res,
           size_t levels, const RollupStretch& cover) {
  if (s >= e) return;
  if (levels == 0) {
    Push(out, {s, e, 0});
    return;
  }
  const int64_t r = res[levels - 1];
  const int64_t a = CeilTo(std::max(s, cover.from_ms), r);
  const int64_t b = FloorTo(std::min(e, cover.to_ms), r);
  if (a >= b) {
    Cover(out, s, e, res, levels - 1, cover);
    return;
  }
  Cover(out, s, a, res, levels - 1, cover);
  Push(out, {a, b, r, cover.stale_after_ms});
  Cover(out, b, e, res, levels - 1, cover);
}

// Covers [s, e) stretch by stretch (sorted, not overlapping), raw changes
// between them.
void CoverStretches(std::vector<Region>& out, int64_t s, int64_t e, const std::vector<int64_t>& res,
                    const std::vector<RollupStretch>& cover) {
  for (const RollupStretch& c : cover) {
    if (c.to_ms <= s) continue;
    if (c.from_ms >= e) break;
    Push(out, {s, c.from_ms, 0});
    const int64_t upto = std::min(c.to_ms, e);
    Cover(out, std::max(s, c.from_ms), upto, res, res.size(), c);
    s = upto;
  }
  Push(out, {s, e, 0});
}

struct WalkOptions {
  // Bucket starts: rollup chunks never straddle a bucket; empty for one
  // bucket [from, to).
  const std::vector<int64_t>* buckets = nullptr;
  // The coarsest rollup the visitor may be given; 0 for raw changes only.
  int64_t max_rollup_ms = 0;
  // Receives where the walk ended: min(to, now).
  int64_t* walked_to = nullptr;
};

// Walks [from, to) of a key: the value in force at `from` carries in; time
// after `now` is not visited; a value older than `stale` (when > 0) turns
// unknown. Where the source has exact rollups and the visitor takes them,
// whole rollup buckets go by as chunks instead of changes.
Status WalkRegions(const WalkSource& source, int64_t stale, int64_t from, int64_t to, int64_t now,
                   Visitor& visitor, const WalkOptions& opt) {
  const int64_t end = std::min(to, now);
  if (opt.walked_to) *opt.walked_to = end;
  std::vector<Region> regions;
  std::vector<RollupStretch> cover;
  if (opt.max_rollup_ms > 0) cover = source.RollupCoverage();
  if (!cover.empty()) {
    std::vector<int64_t> res;
    for (int64_t r : kRollupResolutionsMs) {
      if (r <= opt.max_rollup_ms) res.push_back(r);
    }
    std::vector<int64_t> one = {from};
    const std::vector<int64_t>& starts = opt.buckets && !opt.buckets->empty() ? *opt.buckets : one;
    for (size_t i = 0; i < starts.size(); ++i) {
      int64_t bs = std::max(from, starts[i]);
      int64_t be = i + 1 < starts.size() ? starts[i + 1] : to;
      CoverStretches(regions, bs, std::min(be, to), res, cover);
    }
  } else {
    regions.push_back({from, to, 0});
  }

  std::optional<Value> cur;
  int64_t cur_since = 0;
  int64_t cursor = from;
  bool need_carry = true;
  bool first = true;
  auto emit = [&](int64_t upto) {
    upto = std::min(upto, end);
    if (upto <= cursor) return;
    if (!cur) {
      visitor.Segment(cursor, upto, nullptr);
    } else {
      int64_t known_until = stale > 0 ? cur_since + stale : std::numeric_limits<int64_t>::max();
      if (known_until > cursor) visitor.Segment(cursor, std::min(upto, known_until), &*cur);
      if (known_until < upto) visitor.Segment(std::max(cursor, known_until), upto, nullptr);
    }
    cursor = upto;
  };
  for (const Region& region : regions) {
    if (need_carry) {
      Result<std::optional<Sample>> before = source.At(region.start - 1);
      if (!before.ok()) return before.status();
      cur.reset();
      if (*before) {
        cur = (*before)->value;
        cur_since = (*before)->time_ms;
      }
      if (first) visitor.Carry(cur ? &*cur : nullptr);
      need_carry = false;
      first = false;
    }
    cursor = region.start;
    if (region.res == 0) {
      Status st = source.Scan(region.start, region.end, [&](const Sample& s) {
        emit(s.time_ms);
        visitor.Point(s.time_ms, s.value, cur ? &*cur : nullptr);
        cur = s.value;
        cur_since = s.time_ms;
        return true;
      });
      if (!st.ok()) return st;
      emit(region.end);
      continue;
    }
    // A rollup bucket that is missing had no change in it (ComputeRollups):
    // without stale_after, the value in force held all through it (none
    // before the first change); with stale_after, nothing was known in it.
    // The stale_after is the one the rollups were computed with.
    int64_t next = region.start;
    auto gap = [&](int64_t upto) {
      if (upto > next) visitor.Segment(next, upto, region.stale == 0 && cur ? &*cur : nullptr);
    };
    Status st = source.ScanRollups(region.res, region.start, region.end, [&](const Rollup& r) {
      gap(r.start_ms);
      visitor.Chunk(r.start_ms, r.start_ms + region.res, r);
      if (r.last) cur = *r.last;
      next = r.start_ms + region.res;
      return true;
    });
    if (!st.ok()) return st;
    gap(region.end);
    cursor = region.end;
    need_carry = true;  // the next stretch starts from the value in force there
  }
  return Status::Ok();
}

WalkOptions Rollups(const HistoryQuery& q, int64_t max_rollup_ms) {
  WalkOptions o;
  o.buckets = &q.buckets;
  o.max_rollup_ms = max_rollup_ms;
  return o;
}

WalkOptions WalkedTo(int64_t* end) {
  WalkOptions o;
  o.walked_to = end;
  return o;
}

// Walks [from, to) of `key` in the store (see WalkRegions).
Status Walk(const ChangeSource& store, const std::string& key, int64_t from, int64_t to,
            Visitor& visitor, const WalkOptions& opt = {}) {
  Result<KeyInfo> info = store.Get(key);
  if (!info.ok()) return info.status();
  StoreSource source(store, key);
  return WalkRegions(source, info->options.stale_after_ms, from, to, store.clock().NowMs(), visitor,
                     opt);
}

// Buckets [b_i, b_i+1), the last ending at `to`.
class Buckets {
 public:
  Buckets(const std::vector<int64_t>& starts, int64_t to) : starts_(starts), to_(to) {}
  size_t size() const { return starts_.size(); }
  int64_t start(size_t i) const { return starts_[i]; }
  int64_t end(size_t i) const { return i + 1 < starts_.size() ? starts_[i + 1] : to_; }
  // The bucket holding t; size() when outside.
  size_t Find(int64_t t) const {
    if (starts_.empty() || t < starts_.front() || t >= to_) return size();
    return static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), t) -
                               starts_.begin()) -
           1;
  }
  // Calls fn(bucket, start, end) for the parts of [start, end) in each bucket.
  template <typename Fn>
  void Split(int64_t start, int64_t end, Fn fn) const {
    for (size_t i = Find(start); i < size() && start < end; ++i) {
      int64_t e = std::min(end, this->end(i));
      fn(i, start, e);
      start = e;
    }
  }

 private:
  const std::vector<int64_t>& starts_;
  int64_t to_;
};

struct NumericAcc {
  int64_t count = 0;
  double sum = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  std::optional<double> first, last;
  double integral = 0;  // value x ms over the known time
  int64_t known_ms = 0;
  double increase = 0;

  void Point(double v) {
    ++count;
    sum += v;
    min = std::min(min, v);
    max = std::max(max, v);
    if (!first) first = v;
    last = v;
  }
  void Segment(int64_t ms, double v) {
    integral += v * static_cast<double>(ms);
    known_ms += ms;
  }
  void Chunk(const Rollup& r) {
    count += r.count;
    sum += r.sum;
    min = std::min(min, r.min);
    max = std::max(max, r.max);
    if (!first && r.first) first = AsNumber(*r.first);
    if (r.last) last = AsNumber(*r.last);
    integral += r.integral;
    known_ms += r.known_ms;
    increase += r.increase;
  }
  // Booleans count as 0/1 and strings are not numbers: count/first/last of
  // them are answered from the text form elsewhere.
  static double AsNumber(const Value& v) {
    if (const double* d = std::get_if<double>(&v)) return *d;
    if (const bool* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
    return std::numeric_limits<double>::quiet_NaN();
  }
  // The aggregates of the bucket [start_ms, end_ms), whose length gives
  // the rate.
  AggregateBucket Get(int64_t start_ms, int64_t end_ms) const {
    const double n = static_cast<double>(count);
    AggregateBucket b;
    b.start_ms = start_ms;
    b.end_ms = end_ms;
    b.count = count;
    if (count) {
      b.avg = sum / n;
      b.min = min;
      b.max = max;
      // A point aggregate: unset without a change in the bucket, like avg.
      b.sum = sum;
    }
    if (first) b.first = Value(*first);
    if (last) b.last = Value(*last);
    // Unset where nothing was known all through the bucket (before the
    // first change, or stale); 0 where the counter was known and still.
    if (known_ms) {
      b.twavg = integral / static_cast<double>(known_ms);
      b.increase = increase;
      b.rate = increase / (static_cast<double>(end_ms - start_ms) / 1000.0);
    }
    return b;
  }
};

// Counter increase across the whole walk: rises add up, a drop is a reset
// unless within `tolerance` of the highest value since the last reset.
class IncreaseTracker {
 public:
  explicit IncreaseTracker(double tolerance) : tolerance_(tolerance) {}
  double Add(double v) {
    if (!high_) {
      high_ = v;
      return 0;
    }
    if (v >= *high_) {
      double inc = v - *high_;
      high_ = v;
      return inc;
    }
    if (*high_ - v <= tolerance_) return 0;  // a glitch
    high_ = v;                               // a reset: counts from 0
    return v;
  }
  // The highest value since the last reset; NaN before any value.
  double high() const { return high_ ? *high_ : std::numeric_limits<double>::quiet_NaN(); }
  // Continues from a rollup's state.
  void SetHigh(double high) {
    if (!std::isnan(high)) high_ = high;
  }

 private:
  double tolerance_;
  std::optional<double> high_;
};

class DownsampleVisitor : public Visitor {
 public:
  DownsampleVisitor(const Buckets& buckets, double tolerance)
      : buckets_(buckets), accs_(buckets.size()), increase_(tolerance) {}
  void Carry(const Value* v) override {
    if (v) increase_.Add(NumericAcc::AsNumber(*v));
  }
  void Point(int64_t t, const Value& v, const Value*) override {
    double d = NumericAcc::AsNumber(v);
    double inc = increase_.Add(d);
    size_t i = buckets_.Find(t);
    if (i == buckets_.size()) return;
    accs_[i].Point(d);
    accs_[i].increase += inc;
  }
  void Segment(int64_t start, int64_t end, const Value* v) override {
    if (!v) return;
    double d = NumericAcc::AsNumber(*v);
    buckets_.Split(start, end, [&](size_t i, int64_t s, int64_t e) { accs_[i].Segment(e - s, d); });
  }
  void Chunk(int64_t start, int64_t, const Rollup& r) override {
    increase_.SetHigh(r.high);
    size_t i = buckets_.Find(start);
    if (i < buckets_.size()) accs_[i].Chunk(r);
  }
  const std::vector<NumericAcc>& accs() const { return accs_; }

 private:
  const Buckets& buckets_;
  std::vector<NumericAcc> accs_;
  IncreaseTracker increase_;
};

// Point aggregates that make sense for any type: first, last, count.
class PointVisitor : public Visitor {
 public:
  explicit PointVisitor(const Buckets& buckets)
      : buckets_(buckets), first_(buckets.size()), last_(buckets.size()), count_(buckets.size()) {}
  void Point(int64_t t, const Value& v, const Value*) override {
    size_t i = buckets_.Find(t);
    if (i == buckets_.size()) return;
    if (!first_[i]) first_[i] = v;
    last_[i] = v;
    ++count_[i];
  }
  void Segment(int64_t, int64_t, const Value*) override {}
  void Chunk(int64_t start, int64_t, const Rollup& r) override {
    size_t i = buckets_.Find(start);
    if (i == buckets_.size() || r.count == 0) return;
    if (!first_[i]) first_[i] = r.first;
    last_[i] = r.last;
    count_[i] += r.count;
  }
  AggregateBucket Get(size_t i) const {
    AggregateBucket b;
    b.start_ms = buckets_.start(i);
    b.end_ms = buckets_.end(i);
    b.count = count_[i];
    b.first = first_[i];
    b.last = last_[i];
    return b;
  }

 private:
  const Buckets& buckets_;
  std::vector<std::optional<Value>> first_, last_;
  std::vector<int64_t> count_;
};

struct StateAcc {
  std::map<std::string, int64_t> ms_per_value;
  int64_t unknown_ms = 0;
  int64_t changes = 0;

  // `both_states`: a boolean (or uptime) key lists true and false even when
  // one of them never held, so `time.true` is always there to read.
  StateStats Get(int64_t start_ms, int64_t end_ms, bool both_states) const {
    StateStats s;
    s.start_ms = start_ms;
    s.end_ms = end_ms;
    s.ms_per_value = ms_per_value;
    if (both_states) {
      for (const char* v : {"false", "true"}) s.ms_per_value.emplace(v, 0);
    }
    s.unknown_ms = unknown_ms;
    s.changes = changes;
    return s;
  }
};

const date::time_zone* ZoneOrNull(std::string_view tz, Status* st) {
  if (tz.empty() || tz == "UTC") return nullptr;
  try {
    return date::locate_zone(std::string(tz));
  } catch (const std::exception&) {
    *st = BadParam("tz", "unknown time zone '" + std::string(tz) + "'");
    return nullptr;
  }
}

class StateVisitor : public Visitor {
 public:
  StateVisitor(const Buckets& buckets, const date::time_zone* zone, bool hour_of_day)
      : buckets_(buckets), accs_(buckets.size()), zone_(zone), hour_of_day_(hour_of_day) {}
  void Point(int64_t t, const Value& v, const Value* prev) override {
    if (!prev || *prev == v) return;  // the first known value is no change
    size_t i = buckets_.Find(t);
    if (i < buckets_.size()) ++accs_[i].changes;
    ++total_.changes;
  }
  void Segment(int64_t start, int64_t end, const Value* v) override {
    std::string text = v ? ValueToText(*v) : "";
    buckets_.Split(start, end, [&](size_t i, int64_t s, int64_t e) {
      Add(accs_[i], v, text, e - s);
      Add(total_, v, text, e - s);
    });
    if (hour_of_day_ && v) SplitHours(start, end, text);
  }
  // Chunks are at most 5 minutes long when hour_of_day is asked for, so each
  // lies inside one local hour (zone offsets are whole quarter hours).
  void Chunk(int64_t start, int64_t, const Rollup& r) override {
    auto add = [&r](StateAcc& acc) {
      for (const auto& [v, ms] : r.ms_per_value) acc.ms_per_value[v] += ms;
      acc.unknown_ms += r.unknown_ms;
      acc.changes += r.changes;
    };
    size_t i = buckets_.Find(start);
    if (i < accs_.size()) add(accs_[i]);
    add(total_);
    if (hour_of_day_) {
      int64_t next;
      int hour = LocalHour(start, &next);
      for (const auto& [v, ms] : r.ms_per_value) hours_[hour][v] += ms;
    }
  }
  const std::vector<StateAcc>& accs() const { return accs_; }
  const StateAcc& total() const { return total_; }
  std::array<std::map<std::string, int64_t>, 24> HourOfDay() const {
    std::array<std::map<std::string, int64_t>, 24> out;
    for (int h = 0; h < 24; ++h) out[h] = hours_[h];
    return out;
  }

 private:
  static void Add(StateAcc& acc, const Value* v, const std::string& text, int64_t ms) {
    if (v) {
      acc.ms_per_value[text] += ms;
    } else {
      acc.unknown_ms += ms;
    }
  }
  // The local hour of day holding `t`, and where the next local hour starts.
  int LocalHour(int64_t t, int64_t* next) const {
    using namespace std::chrono;
    if (!zone_) {
      *next = (t / kHour + 1) * kHour;
      return static_cast<int>((t % kDay + kDay) % kDay / kHour);
    }
    auto local = zone_->to_local(date::sys_time<milliseconds>{milliseconds(t)});
    auto hour_start = date::floor<hours>(local);
    auto next_sys = zone_->to_sys(hour_start + hours(1), date::choose::earliest);
    *next = duration_cast<milliseconds>(next_sys.time_since_epoch()).count();
    if (*next <= t) *next = t + kHour;  // never stand still at a DST edge
    return static_cast<int>(
        date::make_time(hour_start - date::floor<date::days>(hour_start)).hours().count());
  }
  // Splits a known segment at local hour boundaries.
  void SplitHours(int64_t start, int64_t end, const std::string& text) {
    while (start < end) {
      int64_t next;
      int hour = LocalHour(start, &next);
      int64_t e = std::min(end, next);
      hours_[hour][text] += e - start;
      start = e;
    }
  }

  const Buckets& buckets_;
  std::vector<StateAcc> accs_;
  StateAcc total_;
  const date::time_zone* zone_;
  bool hour_of_day_;
  std::map<std::string, int64_t> hours_[24];
};

// Sums a key's history up into rollups (segment.h), bucket by bucket, by the
// same rules as the visitors above, so a chunk equals what its changes give.
class RollupVisitor : public Visitor {
 public:
  RollupVisitor(KeyType type, const Buckets& buckets, double tolerance, double start_high)
      : start_high_(start_high),
        numeric_(IsNumeric(type)),
        counter_(type == KeyType::kCounter),
        buckets_(buckets),
        rolls_(buckets.size()),
        states_(buckets.size()),
        increase_(tolerance) {
    for (size_t i = 0; i < buckets.size(); ++i) rolls_[i].start_ms = buckets.start(i);
  }
  void Carry(const Value* v) override {
    if (counter_ && v) increase_.Add(NumericAcc::AsNumber(*v));
    if (counter_) increase_.SetHigh(start_high_);
    carry_high_ = increase_.high();
  }
  void Point(int64_t t, const Value& v, const Value* prev) override {
    double inc = counter_ ? increase_.Add(NumericAcc::AsNumber(v)) : 0;
    size_t i = buckets_.Find(t);
    if (i == buckets_.size()) return;
    Rollup& r = rolls_[i];
    ++r.count;
    if (!r.first) {
      r.first = v;
      r.first_ms = t;
    } else if (t == last_point_ms_) {
      r.shared_times = true;
    }
    last_point_ms_ = t;
    r.last = v;
    if (prev && *prev != v) ++r.changes;
    if (numeric_) {
      double d = NumericAcc::AsNumber(v);
      r.sum += d;
      r.min = std::min(r.min, d);
      r.max = std::max(r.max, d);
    }
    if (counter_) {
      r.increase += inc;
      r.high = increase_.high();
    }
  }
  void Segment(int64_t start, int64_t end, const Value* v) override {
    std::string text = v && !numeric_ ? ValueToText(*v) : "";
    buckets_.Split(start, end, [&](size_t i, int64_t s, int64_t e) {
      Rollup& r = rolls_[i];
      if (!v) {
        r.unknown_ms += e - s;
        return;
      }
      r.known_ms += e - s;
      if (numeric_) {
        r.integral += NumericAcc::AsNumber(*v) * static_cast<double>(e - s);
      } else {
        states_[i][text] += e - s;
      }
    });
  }
  // The buckets where something was known or changed.
  std::vector<Rollup> Finish() {
    std::vector<Rollup> out;
    double high = carry_high_;
    for (size_t i = 0; i < rolls_.size(); ++i) {
      Rollup& r = rolls_[i];
      if (counter_) {
        if (r.count > 0) high = r.high;
        r.high = high;
      }
      if (r.count == 0 && r.known_ms == 0) continue;
      r.ms_per_value.assign(states_[i].begin(), states_[i].end());
      out.push_back(std::move(r));
    }
    return out;
  }

 private:
  const double start_high_;
  const bool numeric_;
  const bool counter_;
  const Buckets& buckets_;
  std::vector<Rollup> rolls_;
  std::vector<std::map<std::string, int64_t>> states_;
  IncreaseTracker increase_;
  double carry_high_ = std::numeric_limits<double>::quiet_NaN();
  int64_t last_point_ms_ = 0;  // of the latest Point, within its bucket once r.first is set
};

}  // namespace

std::vector<Rollup> ComputeRollups(const RollupParams& params, const std::optional<Sample>& carry,
                                   const std::vector<Sample>& changes, int64_t from_ms,
                                   int64_t to_ms, int64_t resolution_ms) {
  // Without staleness only buckets with a change are kept (below), so a
  // range without one has none: answered without walking its buckets (a
  // quiet key's day, or the carry-only days an import fills, cost 313
  // rollups each to throw away).
  if (params.stale_after_ms == 0 && changes.empty()) return {};
  std::vector<int64_t> starts;
  for (int64_t b = FloorTo(from_ms, resolution_ms); b < to_ms; b += resolution_ms) {
    starts.push_back(std::max(b, from_ms));
  }
  Buckets buckets(starts, to_ms);
  RollupVisitor visitor(params.type, buckets, params.reset_tolerance, params.start_high);
  VectorSource source(carry, changes);
  // Everything in the range is past: nothing is cut at "now".
  (void)WalkRegions(source, params.stale_after_ms, from_ms, to_ms, to_ms, visitor, {});
  std::vector<Rollup> out = visitor.Finish();
  if (params.stale_after_ms == 0) {
    // A bucket without a change holds the value in force all through it,
    // which a reader knows from the bucket before: leaving it out makes a
    // key that changes once an hour cost 12 times fewer 5-minute rollups.
    out.erase(std::remove_if(out.begin(), out.end(), [](const Rollup& r) { return r.count == 0; }),
              out.end());
  }
  return out;
}

const char* AggName(Agg agg) {
  switch (agg) {
    case Agg::kAvg:
      return "avg";
    case Agg::kTwavg:
      return "twavg";
    case Agg::kMin:
      return "min";
    case Agg::kMax:
      return "max";
    case Agg::kFirst:
      return "first";
    case Agg::kLast:
      return "last";
    case Agg::kCount:
      return "count";
    case Agg::kSum:
      return "sum";
    case Agg::kIncrease:
      return "increase";
    case Agg::kRate:
      return "rate";
  }
  return "?";
}

Result<std::vector<Agg>> ParseAggs(std::string_view list, KeyType type) {
  std::vector<Agg> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string_view name =
        list.substr(pos, comma == std::string_view::npos ? list.npos : comma - pos);
    bool found = false;
    for (Agg a : {Agg::kAvg, Agg::kTwavg, Agg::kMin, Agg::kMax, Agg::kFirst, Agg::kLast,
                  Agg::kCount, Agg::kSum, Agg::kIncrease, Agg::kRate}) {
      if (name != AggName(a)) continue;
      found = true;
      bool point = a == Agg::kFirst || a == Agg::kLast || a == Agg::kCount;
      bool counter_only = a == Agg::kIncrease || a == Agg::kRate;
      if ((counter_only && type != KeyType::kCounter) || (!point && !IsNumeric(type))) {
        return BadParam("agg", "'" + std::string(name) + "' does not apply to a " +
                                   KeyTypeName(type) + " key" +
                                   (IsNumeric(type) ? "" : " (use agg=states for time in state)"));
      }
      if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
    if (!found && name == "states") {
      return BadParam("agg", "'states' is asked alone, of GET /api/v1/history (docs/history.md)");
    }
    if (!found) {
      return BadParam("agg",
                      "unknown aggregate '" + std::string(name) +
                          "' (avg, twavg, min, max, first, last, count, sum, increase, rate)");
    }
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

Status CheckTimeZone(std::string_view tz) {
  Status st;
  (void)ZoneOrNull(tz, &st);
  return st;
}

Result<int64_t> ParseStep(std::string_view text, int64_t from_ms, int64_t to_ms) {
  if (text == "auto") {
    for (int64_t s : {kMinute, 5 * kMinute, 15 * kMinute, kHour, 6 * kHour, kDay, kWeek}) {
      if ((to_ms - from_ms) / s <= 600) return s;
    }
    return 30 * kDay;
  }
  if (text.empty() || text.size() > 12) return BadParam("step", "expected e.g. 5m, 1h, 1d or auto");
  Result<int64_t> ms = ParseDuration(text);
  if (!ms.ok()) {
    return BadParam("step", "'" + std::string(text) + "' is not a step (e.g. 5m, 1h, 1d, auto)");
  }
  if (*ms <= 0) return BadParam("step", "must be more than 0");
  return *ms;
}

Result<std::vector<int64_t>> BucketStarts(int64_t from_ms, int64_t to_ms, int64_t step_ms,
                                          std::string_view tz, size_t max_buckets) {
  if (step_ms <= 0) return BadParam("step", "must be more than 0");
  if (to_ms <= from_ms) return BadParam("to", "must be after 'from'");
  Status st;
  const date::time_zone* zone = ZoneOrNull(tz, &st);
  if (!st.ok()) return st;
  const uint64_t estimate = static_cast<uint64_t>((to_ms - from_ms) / step_ms) + 1;
  if (estimate > max_buckets) {
    return BadParam("step", "too fine for the range: " + std::to_string(estimate) +
                                " buckets, at most " + std::to_string(max_buckets));
  }
  std::vector<int64_t> out;
  if (!zone || step_ms % kDay != 0) {
    // Buckets of whole weeks start on a Monday: they count from Monday
    // 1970-01-05, as others count from the epoch (a Thursday). Flooring to
    // the epoch's weeks first and then going back to Monday started a week
    // early whenever `from` fell on a Monday to Wednesday.
    const int64_t origin = step_ms % kWeek == 0 ? 4 * kDay : 0;
    const int64_t rel = from_ms - origin;
    int64_t b =
        (rel >= 0 ? rel / step_ms * step_ms : -((-rel + step_ms - 1) / step_ms) * step_ms) + origin;
    for (; b < to_ms; b += step_ms) out.push_back(b);
    return out;
  }
  // Whole days in local time: buckets start at local midnight.
  using namespace std::chrono;
  const int64_t days = step_ms / kDay;
  auto local_from = zone->to_local(date::sys_time<milliseconds>(milliseconds(from_ms)));
  date::local_days day = date::floor<date::days>(local_from);
  if (step_ms % kWeek == 0) {
    date::weekday wd{day};
    day -= date::days((wd.c_encoding() + 6) % 7);  // back to Monday
  }
  for (;;) {
    auto start = zone->to_sys(date::local_time<milliseconds>(day.time_since_epoch()),
                              date::choose::earliest);
    int64_t ms = duration_cast<milliseconds>(start.time_since_epoch()).count();
    if (ms >= to_ms) break;
    out.push_back(ms);
    day += date::days(days);
  }
  return out;
}

Result<HistoryQuery> PlanBuckets(std::string key, int64_t from_ms, int64_t to_ms,
                                 std::string_view step, std::string_view tz, size_t max_buckets) {
  Result<int64_t> step_ms = ParseStep(step, from_ms, to_ms);
  if (!step_ms.ok()) return step_ms.status();
  Result<std::vector<int64_t>> buckets = BucketStarts(from_ms, to_ms, *step_ms, tz, max_buckets);
  if (!buckets.ok()) return buckets.status();
  HistoryQuery q;
  q.key = std::move(key);
  q.from_ms = buckets->front();
  q.to_ms = to_ms;
  q.buckets = std::move(buckets.value());
  q.step_ms = *step_ms;
  return q;
}

const char* DefaultAgg(KeyType type) {
  if (type == KeyType::kCounter) return "increase";
  return type == KeyType::kNumeric ? "avg" : "last";
}

Status Downsample(const ChangeSource& store, const HistoryQuery& q,
                  const std::function<void(const AggregateBucket&)>& each) {
  Result<KeyInfo> info = store.Get(q.key);
  if (!info.ok()) return info.status();
  Buckets buckets(q.buckets, q.to_ms);
  if (!IsNumeric(info->type)) {
    PointVisitor points(buckets);
    KOMOKU_RETURN_IF_ERROR(
        Walk(store, q.key, q.from_ms, q.to_ms, points, Rollups(q, kMaxRollupMs)));
    for (size_t i = 0; i < buckets.size(); ++i) each(points.Get(i));
    return Status::Ok();
  }
  DownsampleVisitor visitor(buckets, info->options.reset_tolerance);
  KOMOKU_RETURN_IF_ERROR(Walk(store, q.key, q.from_ms, q.to_ms, visitor, Rollups(q, kMaxRollupMs)));
  for (size_t i = 0; i < buckets.size(); ++i) {
    each(visitor.accs()[i].Get(buckets.start(i), buckets.end(i)));
  }
  return Status::Ok();
}

Result<std::vector<AggregateBucket>> Downsample(const ChangeSource& store, const HistoryQuery& q) {
  std::vector<AggregateBucket> out;
  out.reserve(q.buckets.size());
  KOMOKU_RETURN_IF_ERROR(Downsample(store, q, [&](const AggregateBucket& b) { out.push_back(b); }));
  return out;
}

namespace {

// The walk of Stats over a boolean, uptime or string key, which
// StateBuckets shares so that both answer alike to the millisecond.
Status WalkStates(const ChangeSource& store, const HistoryQuery& q, bool hour_of_day,
                  StateVisitor& visitor) {
  KOMOKU_RETURN_IF_ERROR(Walk(store, q.key, q.from_ms, q.to_ms, visitor,
                              Rollups(q, hour_of_day ? 5 * kMinute : kMaxRollupMs)));
  // The walk stops at now; what the range holds after it is not yet known,
  // and counts as unknown time (to=+1h over a door says 3,600 s unknown).
  const int64_t now = store.clock().NowMs();
  if (q.to_ms > now) visitor.Segment(std::max(q.from_ms, now), q.to_ms, nullptr);
  return Status::Ok();
}

}  // namespace

Status StateBuckets(const ChangeSource& store, const HistoryQuery& q,
                    const std::function<void(const StateStats& range)>& range,
                    const std::function<void(const StateStats& bucket)>& each) {
  Result<KeyInfo> info = store.Get(q.key);
  if (!info.ok()) return info.status();
  if (IsNumeric(info->type)) {
    return BadParam("agg", std::string("'states' does not apply to a ") + KeyTypeName(info->type) +
                               " key (it is for boolean, uptime and string keys)");
  }
  Buckets buckets(q.buckets, q.to_ms);
  StateVisitor visitor(buckets, nullptr, /*hour_of_day=*/false);
  KOMOKU_RETURN_IF_ERROR(WalkStates(store, q, /*hour_of_day=*/false, visitor));
  const bool both_states = info->type == KeyType::kBoolean || info->type == KeyType::kUptime;
  range(visitor.total().Get(q.from_ms, q.to_ms, both_states));
  for (size_t i = 0; i < buckets.size(); ++i) {
    each(visitor.accs()[i].Get(buckets.start(i), buckets.end(i), both_states));
  }
  return Status::Ok();
}

Result<KeyStats> Stats(const ChangeSource& store, const HistoryQuery& q, bool hour_of_day,
                       std::string_view tz) {
  Result<KeyInfo> info = store.Get(q.key);
  if (!info.ok()) return info.status();
  Buckets buckets(q.buckets, q.to_ms);
  if (IsNumeric(info->type)) {
    if (hour_of_day) {
      return BadParam("distribution", "hour_of_day is for boolean, uptime and string keys");
    }
    std::vector<int64_t> whole = {q.from_ms};
    Buckets one(whole, q.to_ms);
    DownsampleVisitor total(one, info->options.reset_tolerance);
    DownsampleVisitor per(buckets, info->options.reset_tolerance);
    struct Both : Visitor {
      Visitor* a;
      Visitor* b;
      void Point(int64_t t, const Value& v, const Value* p) override {
        a->Point(t, v, p);
        b->Point(t, v, p);
      }
      void Segment(int64_t s, int64_t e, const Value* v) override {
        a->Segment(s, e, v);
        b->Segment(s, e, v);
      }
      void Carry(const Value* v) override {
        a->Carry(v);
        b->Carry(v);
      }
      void Chunk(int64_t s, int64_t e, const Rollup& r) override {
        a->Chunk(s, e, r);
        b->Chunk(s, e, r);
      }
    } both;
    both.a = &total;
    both.b = &per;
    KOMOKU_RETURN_IF_ERROR(Walk(store, q.key, q.from_ms, q.to_ms, both, Rollups(q, kMaxRollupMs)));
    auto summary = [](const NumericAcc& acc, int64_t start_ms, int64_t end_ms) {
      const AggregateBucket b = acc.Get(start_ms, end_ms);
      NumericStats s;
      s.start_ms = start_ms;
      s.end_ms = end_ms;
      s.count = b.count;
      s.min = b.min;
      s.max = b.max;
      s.mean = b.avg;
      s.twavg = b.twavg;
      s.known_ms = acc.known_ms;
      return s;
    };
    KeyStats out;
    out.numeric = true;
    out.numbers = summary(total.accs()[0], q.from_ms, q.to_ms);
    // With a step, the buckets are listed, one bucket or many.
    if (q.step_ms != 0) {
      out.number_buckets.emplace();
      for (size_t i = 0; i < buckets.size(); ++i) {
        out.number_buckets->push_back(summary(per.accs()[i], buckets.start(i), buckets.end(i)));
      }
    }
    return out;
  }
  Status st;
  const date::time_zone* zone = ZoneOrNull(tz, &st);
  if (!st.ok()) return st;
  StateVisitor visitor(buckets, zone, hour_of_day);
  KOMOKU_RETURN_IF_ERROR(WalkStates(store, q, hour_of_day, visitor));
  const bool both_states = info->type == KeyType::kBoolean || info->type == KeyType::kUptime;
  KeyStats out;
  out.states = visitor.total().Get(q.from_ms, q.to_ms, both_states);
  if (q.step_ms != 0) {
    out.state_buckets.emplace();
    for (size_t i = 0; i < buckets.size(); ++i) {
      out.state_buckets->push_back(
          visitor.accs()[i].Get(buckets.start(i), buckets.end(i), both_states));
    }
  }
  if (hour_of_day) out.hour_of_day = visitor.HourOfDay();
  return out;
}

Result<Spans> Timespans(const ChangeSource& store, const HistoryQuery& q, const InputValue& value) {
  Result<KeyInfo> info = store.Get(q.key);
  if (!info.ok()) return info.status();
  if (IsNumeric(info->type)) {
    return BadParam("key", "timespans are for boolean, uptime and string keys");
  }
  Result<Value> target = CoerceValue(info->type, value, store.boolean_words());
  if (!target.ok()) return BadParam("value", target.status().message());
  struct SpanVisitor : Visitor {
    Value target;
    std::vector<std::pair<int64_t, int64_t>> spans;
    void Point(int64_t, const Value&, const Value*) override {}
    void Segment(int64_t s, int64_t e, const Value* v) override {
      if (!v || *v != target) return;
      if (!spans.empty() && spans.back().second == s) {
        spans.back().second = e;  // a repeat of the value: the same span goes on
      } else {
        spans.push_back({s, e});
      }
    }
  } visitor;
  visitor.target = *target;
  // Spans need the time of each change. Where retention dropped the raw
  // changes, rollups know how long a value held per bucket but not when in
  // the bucket it changed, so no span there can be proven: the spans start
  // where the raw changes kept begin, and the answer says where that is. A
  // span in force there starts at that time; its value (and, with a
  // stale_after, whether it was still known) comes from the last rollup
  // with a change before it, whose bucket start stands for the change's
  // time: a span is never made longer than it was.
  const std::optional<int64_t> expired = store.RawExpiredBefore(q.key);
  const int64_t from = expired ? std::max(q.from_ms, std::min(*expired, q.to_ms)) : q.from_ms;
  int64_t end = 0;
  if (from < q.to_ms) {
    KOMOKU_RETURN_IF_ERROR(Walk(store, q.key, from, q.to_ms, visitor, WalkedTo(&end)));
  }
  Spans out;
  for (const auto& [s, e] : visitor.spans) out.spans.push_back({s, e});
  out.open = !visitor.spans.empty() && visitor.spans.back().second == end;
  if (expired && *expired > q.from_ms) out.raw_expired_before_ms = *expired;
  return out;
}

std::vector<RollupStretch> RollupsUnderOldOptions(const ChangeSource& store, const std::string& key,
                                                  int64_t from_ms, int64_t to_ms) {
  std::vector<RollupStretch> out;
  for (RollupStretch s : store.RollupCoverage(key)) {
    if (s.current_options || s.to_ms <= from_ms || s.from_ms >= to_ms) continue;
    s.from_ms = std::max(s.from_ms, from_ms);
    s.to_ms = std::min(s.to_ms, to_ms);
    out.push_back(s);
  }
  return out;
}

int64_t StateStats::KnownMs() const {
  int64_t known = 0;
  for (const auto& [v, ms] : ms_per_value) known += ms;
  return known;
}

std::optional<double> StateStats::Share(const std::string& value) const {
  const int64_t known = KnownMs();
  if (!known) return std::nullopt;
  auto it = ms_per_value.find(value);
  return static_cast<double>(it == ms_per_value.end() ? 0 : it->second) /
         static_cast<double>(known);
}

}  // namespace komoku::store

#include "promql/store_source.h"

#include <algorithm>
#include <limits>
#include <set>
#include <variant>

#include "core/rollup.h"
#include "store/store.h"

namespace komoku::promql {

namespace {

constexpr int64_t kAllTimeFrom = std::numeric_limits<int64_t>::min() / 2;
constexpr int64_t kAllTimeTo = std::numeric_limits<int64_t>::max() / 2;

// The labels of a key's series, sorted by name: __name__, key, state
// (strings only), type.
Labels KeyLabels(const store::KeyInfo& info, const std::string* state) {
  Labels labels = {{kMetricName, MetricName(info.name)}, {"key", info.name}};
  if (state) labels.emplace_back("state", *state);
  labels.emplace_back("type", store::KeyTypeName(info.type));
  return labels;
}

// True when the matchers that do not name `state` match the key's labels: a
// string key's states are only read when this holds.
bool MatchesBesidesState(const std::vector<Matcher>& matchers, const Labels& labels) {
  for (const Matcher& m : matchers) {
    if (m.name() == "state") continue;
    if (!m.Matches(LabelValue(labels, m.name()))) return false;
  }
  return true;
}

// A string key's states: its allowed values when it has them, otherwise
// every value its history holds. None when there are more than
// kMaxStringStates (a log, not states): the key is then no series, and the
// scan stops as soon as that is known.
Result<std::vector<std::string>> States(const store::Store& store, const store::KeyInfo& info) {
  std::set<std::string> states;
  if (info.last) {
    if (const auto* text = std::get_if<std::string>(&info.last->value)) states.insert(*text);
  }
  if (info.options.values) {
    states.insert(info.options.values->begin(), info.options.values->end());
  } else {
    Status st = store.Scan(info.name, kAllTimeFrom, kAllTimeTo, [&](const store::Sample& s) {
      if (const auto* text = std::get_if<std::string>(&s.value)) states.insert(*text);
      return states.size() <= kMaxStringStates;
    });
    if (!st.ok()) return st;
  }
  if (states.size() > kMaxStringStates) return std::vector<std::string>();
  return std::vector<std::string>(states.begin(), states.end());
}

double Number(const store::Value& v) {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  return std::numeric_limits<double>::quiet_NaN();
}

// Appends a point, a later one at the same time replacing it (Prometheus
// keeps one sample per time).
void Append(std::vector<Point>& points, int64_t t, double v) {
  if (!points.empty() && points.back().t == t) {
    points.back().v = v;
  } else {
    points.push_back(Point{t, v});
  }
}

// The coarsest rollup resolution that divides align_ms; 0 when none does.
int64_t Resolution(int64_t align_ms) {
  int64_t best = 0;
  if (align_ms <= 0) return best;
  for (int64_t r : store::kRollupResolutionsMs) {
    if (align_ms % r == 0) best = r;
  }
  return best;
}

int64_t CeilTo(int64_t t, int64_t r) { return t >= 0 ? (t + r - 1) / r * r : -(-t / r * r); }
int64_t FloorTo(int64_t t, int64_t r) { return t >= 0 ? t / r * r : -((-t + r - 1) / r * r); }

// Fills s.buckets from the key's rollups at `res` over the longest stretch
// of [from, end) they cover (whole buckets, the last one may reach past
// `end`), so that its samples there need not be read; leaves `s` as it was when the rollups cover
// no whole bucket or cannot stand for their samples (written before rollups kept first_ms, or two
// changes at one time, of which a series keeps only the later).
Status Summarize(const store::Store& store, const store::KeyInfo& info, int64_t res, int64_t from,
                 int64_t end, Series& s) {
  // Adjacent stretches join: rollups answer across a segment border.
  std::vector<store::RollupStretch> joined;
  for (const store::RollupStretch& c : store.RollupCoverage(info.name)) {
    if (!joined.empty() && joined.back().to_ms == c.from_ms) {
      joined.back().to_ms = c.to_ms;
    } else {
      joined.push_back(c);
    }
  }
  // The bucket holding the last time asked for counts too: a range ending
  // there takes its first sample when that sample is at the range's end.
  int64_t best_from = 0, best_to = 0;
  for (const store::RollupStretch& c : joined) {
    int64_t a = CeilTo(std::max(from, c.from_ms), res);
    int64_t b = FloorTo(std::min(CeilTo(end, res), c.to_ms), res);
    if (b - a > best_to - best_from) {
      best_from = a;
      best_to = b;
    }
  }
  if (best_to <= best_from) return Status::Ok();
  std::vector<Bucket> buckets;
  buckets.reserve(static_cast<size_t>((best_to - best_from) / res));
  bool exact = true;
  Status st = store.ScanRollups(info.name, res, best_from, best_to, [&](const store::Rollup& r) {
    if (r.count == 0) return true;
    if (!r.first_ms || r.shared_times || !r.first) {
      exact = false;
      return false;
    }
    buckets.push_back(
        Bucket{r.start_ms, r.count, r.sum, r.min, r.max, Point{*r.first_ms, Number(*r.first)}});
    return true;
  });
  if (!st.ok()) return st;
  if (!exact) return Status::Ok();
  s.bucket_ms = res;
  s.buckets_from = best_from;
  s.buckets_to = best_to;
  s.buckets = std::move(buckets);
  return Status::Ok();
}

}  // namespace

std::string MetricName(std::string_view key) {
  std::string name;
  name.reserve(key.size() + 1);
  if (!key.empty() && key[0] >= '0' && key[0] <= '9') name += '_';
  for (char c : key) {
    bool keep =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    name += keep ? c : '_';
  }
  return name;
}

Result<std::vector<Series>> StoreSource::Select(const std::vector<Matcher>& matchers,
                                                int64_t from_ms, int64_t to_ms,
                                                int64_t align_ms) const {
  std::vector<Series> out;
  const int64_t end = to_ms < kAllTimeTo ? to_ms + 1 : kAllTimeTo;  // Scan's end is exclusive
  const int64_t res = Resolution(align_ms);
  for (const store::KeyInfo& info : store_->Keys()) {
    const Labels base = KeyLabels(info, nullptr);
    if (!MatchesBesidesState(matchers, base)) continue;
    if (info.type != store::KeyType::kString) {
      if (!MatchesAll(matchers, base)) continue;
      Series s{base, {}};
      // Rollups hold sums, minima and maxima of numbers only.
      const bool numeric =
          info.type == store::KeyType::kNumeric || info.type == store::KeyType::kCounter;
      Status st = Status::Ok();
      if (res > 0 && numeric) st = Summarize(*store_, info, res, from_ms, end, s);
      int64_t changes = 0;
      auto append = [&](const store::Sample& sample) {
        Append(s.points, sample.time_ms, Number(sample.value));
        ++changes;
        return true;
      };
      if (st.ok() && s.buckets_to > s.buckets_from) {
        st = store_->Scan(info.name, from_ms, s.buckets_from, append);
        if (st.ok() && s.buckets_to < end) st = store_->Scan(info.name, s.buckets_to, end, append);
      } else if (st.ok()) {
        st = store_->Scan(info.name, from_ms, end, append);
      }
      changes_read_ += changes;
      rollups_read_ += static_cast<int64_t>(s.buckets.size());
      if (st.code() == Status::Code::kNotFound) continue;  // deleted meanwhile
      if (!st.ok()) return st;
      if (!s.points.empty() || !s.buckets.empty()) out.push_back(std::move(s));
      continue;
    }
    Result<std::vector<std::string>> states = States(*store_, info);
    if (states.status().code() == Status::Code::kNotFound) continue;
    if (!states.ok()) return states.status();
    std::vector<Series> per_state;
    for (const std::string& state : *states) {
      Labels labels = KeyLabels(info, &state);
      if (MatchesAll(matchers, labels)) per_state.push_back(Series{std::move(labels), {}});
    }
    if (per_state.empty()) continue;
    Status st = store_->Scan(info.name, from_ms, end, [&](const store::Sample& sample) {
      changes_read_.fetch_add(1, std::memory_order_relaxed);
      const auto* text = std::get_if<std::string>(&sample.value);
      for (Series& s : per_state) {
        Append(s.points, sample.time_ms, text && *text == LabelValue(s.labels, "state") ? 1 : 0);
      }
      return true;
    });
    if (st.code() == Status::Code::kNotFound) continue;
    if (!st.ok()) return st;
    for (Series& s : per_state) {
      if (!s.points.empty()) out.push_back(std::move(s));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Series& a, const Series& b) { return a.labels < b.labels; });
  return out;
}

Result<std::vector<Labels>> StoreSource::Labelsets(const std::vector<Matcher>& matchers) const {
  std::vector<Labels> out;
  for (const store::KeyInfo& info : store_->Keys()) {
    const Labels base = KeyLabels(info, nullptr);
    if (!MatchesBesidesState(matchers, base)) continue;
    if (info.type != store::KeyType::kString) {
      if (MatchesAll(matchers, base)) out.push_back(base);
      continue;
    }
    Result<std::vector<std::string>> states = States(*store_, info);
    if (states.status().code() == Status::Code::kNotFound) continue;
    if (!states.ok()) return states.status();
    for (const std::string& state : *states) {
      Labels labels = KeyLabels(info, &state);
      if (MatchesAll(matchers, labels)) out.push_back(std::move(labels));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace komoku::promql

#include "promql/store_source.h"

#include <algorithm>
#include <limits>
#include <set>
#include <variant>

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
                                                int64_t from_ms, int64_t to_ms) const {
  std::vector<Series> out;
  const int64_t end = to_ms < kAllTimeTo ? to_ms + 1 : kAllTimeTo;  // Scan's end is exclusive
  for (const store::KeyInfo& info : store_->Keys()) {
    const Labels base = KeyLabels(info, nullptr);
    if (!MatchesBesidesState(matchers, base)) continue;
    if (info.type != store::KeyType::kString) {
      if (!MatchesAll(matchers, base)) continue;
      Series s{base, {}};
      Status st = store_->Scan(info.name, from_ms, end, [&](const store::Sample& sample) {
        Append(s.points, sample.time_ms, Number(sample.value));
        return true;
      });
      if (st.code() == Status::Code::kNotFound) continue;  // deleted meanwhile
      if (!st.ok()) return st;
      if (!s.points.empty()) out.push_back(std::move(s));
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

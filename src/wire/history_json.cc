#include "wire/history_json.h"

#include <optional>

#include "wire/input.h"

namespace komoku::store {
namespace {

using nlohmann::json;

json OrNull(const std::optional<double>& d) { return d ? json(*d) : json(nullptr); }

json OrNull(const std::optional<Value>& v) { return v ? ValueToJson(*v) : json(nullptr); }

}  // namespace

json AggregateJson(const AggregateBucket& b, Agg agg) {
  switch (agg) {
    case Agg::kAvg:
      return OrNull(b.avg);
    case Agg::kTwavg:
      return OrNull(b.twavg);
    case Agg::kMin:
      return OrNull(b.min);
    case Agg::kMax:
      return OrNull(b.max);
    case Agg::kFirst:
      return OrNull(b.first);
    case Agg::kLast:
      return OrNull(b.last);
    case Agg::kCount:
      return b.count;
    case Agg::kSum:
      return OrNull(b.sum);
    case Agg::kIncrease:
      return OrNull(b.increase);
    case Agg::kRate:
      return OrNull(b.rate);
  }
  return nullptr;
}

namespace {

json RowJson(const AggregateBucket& b, const std::vector<Agg>& aggs) {
  json row = json::array({MsToSeconds(b.start_ms)});
  for (Agg a : aggs) row.push_back(AggregateJson(b, a));
  return row;
}

}  // namespace

json DownsampleJson(const std::vector<AggregateBucket>& buckets, const std::vector<Agg>& aggs) {
  json rows = json::array();
  for (const AggregateBucket& b : buckets) rows.push_back(RowJson(b, aggs));
  return rows;
}

json NumericStatsJson(const NumericStats& s) {
  return json{{"min", OrNull(s.min)},   {"max", OrNull(s.max)},
              {"mean", OrNull(s.mean)}, {"twavg", OrNull(s.twavg)},
              {"count", s.count},       {"known", static_cast<double>(s.known_ms) / 1000.0}};
}

json StateStatsJson(const StateStats& s) {
  json time = json::object();
  json share = json::object();
  const int64_t known = s.KnownMs();
  for (const auto& [v, ms] : s.ms_per_value) {
    time[v] = static_cast<double>(ms) / 1000.0;
    share[v] = known ? json(static_cast<double>(ms) / static_cast<double>(known)) : json(nullptr);
  }
  time["unknown"] = static_cast<double>(s.unknown_ms) / 1000.0;
  return {{"time", time}, {"share", share}, {"changes", s.changes}};
}

json StatsJson(const KeyStats& stats) {
  json out = stats.numeric ? NumericStatsJson(stats.numbers) : StateStatsJson(stats.states);
  auto list = [&out](const auto& buckets, auto render) {
    json rows = json::array();
    for (const auto& b : buckets) {
      json row = render(b);
      row["start"] = MsToSeconds(b.start_ms);
      rows.push_back(std::move(row));
    }
    out["buckets"] = std::move(rows);
  };
  if (stats.number_buckets) list(*stats.number_buckets, NumericStatsJson);
  if (stats.state_buckets) list(*stats.state_buckets, StateStatsJson);
  if (stats.hour_of_day) {
    json hours = json::array();
    for (int h = 0; h < 24; ++h) {
      const auto& per_value = (*stats.hour_of_day)[h];
      int64_t known = 0;
      for (const auto& [v, ms] : per_value) known += ms;
      json share = json::object();
      for (const auto& [v, ms] : per_value) {
        share[v] = static_cast<double>(ms) / static_cast<double>(known);
      }
      hours.push_back({{"hour", h}, {"share", share}});
    }
    out["hour_of_day"] = std::move(hours);
  }
  return out;
}

json TimespansJson(const Spans& spans) {
  json list = json::array();
  for (const Spans::Span& s : spans.spans) {
    list.push_back(json::array(
        {MsToSeconds(s.start_ms), static_cast<double>(s.end_ms - s.start_ms) / 1000.0}));
  }
  json out = {{"spans", list}, {"open", spans.open}};
  if (spans.raw_expired_before_ms) {
    out["raw_expired_before"] = MsToSeconds(*spans.raw_expired_before_ms);
  }
  return out;
}

json RollupStretchesJson(const std::vector<RollupStretch>& stretches) {
  json out = json::array();
  for (const RollupStretch& s : stretches) {
    out.push_back({{"from", MsToSeconds(s.from_ms)},
                   {"to", MsToSeconds(s.to_ms)},
                   {"stale_after", static_cast<double>(s.stale_after_ms) / 1000.0},
                   {"reset_tolerance", s.reset_tolerance}});
  }
  return out;
}

Result<json> DownsampleJson(const ChangeSource& store, const HistoryQuery& q,
                            const std::vector<Agg>& aggs) {
  json rows = json::array();
  rows.get_ref<json::array_t&>().reserve(q.buckets.size());
  KOMOKU_RETURN_IF_ERROR(
      Downsample(store, q, [&](const AggregateBucket& b) { rows.push_back(RowJson(b, aggs)); }));
  return rows;
}

Result<json> StateBucketsJson(const ChangeSource& store, const HistoryQuery& q) {
  json states = json::array();
  json rows = json::array();
  rows.get_ref<json::array_t&>().reserve(q.buckets.size());
  std::vector<std::string> values;
  KOMOKU_RETURN_IF_ERROR(StateBuckets(
      store, q,
      [&](const StateStats& range) {
        for (const auto& [v, ms] : range.ms_per_value) values.push_back(v);
      },
      [&](const StateStats& b) {
        json row = json::array({MsToSeconds(b.start_ms), b.changes, MsToSeconds(b.unknown_ms)});
        // A bucket lists the values it held; the columns are the range's.
        for (const std::string& v : values) {
          auto it = b.ms_per_value.find(v);
          row.push_back(MsToSeconds(it == b.ms_per_value.end() ? 0 : it->second));
        }
        rows.push_back(std::move(row));
      }));
  json columns = json::array({"time", "changes", "unknown"});
  for (const std::string& v : values) {
    columns.push_back(v);
    states.push_back(v);
  }
  return json{
      {"columns", std::move(columns)}, {"states", std::move(states)}, {"rows", std::move(rows)}};
}

Result<json> StatsJson(const ChangeSource& store, const HistoryQuery& q, bool hour_of_day,
                       std::string_view tz) {
  Result<KeyStats> stats = Stats(store, q, hour_of_day, tz);
  if (!stats.ok()) return stats.status();
  return StatsJson(*stats);
}

Result<json> TimespansJson(const ChangeSource& store, const HistoryQuery& q,
                           const InputValue& value) {
  Result<Spans> spans = Timespans(store, q, value);
  if (!spans.ok()) return spans.status();
  return TimespansJson(*spans);
}

json RollupsUnderOldOptionsJson(const ChangeSource& store, const std::string& key, int64_t from_ms,
                                int64_t to_ms) {
  return RollupStretchesJson(RollupsUnderOldOptions(store, key, from_ms, to_ms));
}

}  // namespace komoku::store

// The JSON forms of history answers (history.h): the rows of a downsampled
// GET /api/v1/history and of the `fetch` query with a step, the bodies of
// GET /api/v1/stats and /timespans (without the key, type and range the
// server adds), and where rollups answer under old options. docs/http-api.md
// shows each. Times are epoch seconds, durations seconds, as floats.
//
// Part of the wire layer: the only place history meets JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "series/history.h"

namespace komoku::store {

// One aggregate of a bucket: a number (a value for first and last of a
// non-numeric key; an integer for count), or null where it has no answer.
nlohmann::json AggregateJson(const AggregateBucket& bucket, Agg agg);

// One row per bucket: [start_s, agg1, agg2, ...], in the order of `aggs`.
nlohmann::json DownsampleJson(const std::vector<AggregateBucket>& buckets,
                              const std::vector<Agg>& aggs);

// {"min", "max", "mean", "twavg", "count", "known"}: null where unset.
nlohmann::json NumericStatsJson(const NumericStats& stats);

// {"time": {value: s, ..., "unknown": s}, "share": {value: share or null},
// "changes"}.
nlohmann::json StateStatsJson(const StateStats& stats);

// The summary of the range, and with a step "buckets" (each with its
// "start"), and with hour_of_day "hour_of_day": [{"hour", "share"}, ...].
nlohmann::json StatsJson(const KeyStats& stats);

// {"spans": [[start_s, duration_s], ...], "open", "raw_expired_before"
// (only when set)}.
nlohmann::json TimespansJson(const Spans& spans);

// [{"from", "to", "stale_after", "reset_tolerance"}, ...].
nlohmann::json RollupStretchesJson(const std::vector<RollupStretch>& stretches);

// The history questions answered as JSON at once, as above.
Result<nlohmann::json> DownsampleJson(const ChangeSource& store, const HistoryQuery& q,
                                      const std::vector<Agg>& aggs);
// Time in state per bucket (StateBuckets), the answer of GET history with
// agg=states: {"columns": ["time", "changes", "unknown", v1, v2, ...],
// "states": [v1, v2, ...], "rows": [[start_s, changes, unknown_s, v1_s,
// v2_s, ...], ...]}. The states are every value held in the range, in
// order (a boolean's false and true always); the columns are positional,
// so a value named "time" or "unknown" stays apart from those columns.
Result<nlohmann::json> StateBucketsJson(const ChangeSource& store, const HistoryQuery& q);
Result<nlohmann::json> StatsJson(const ChangeSource& store, const HistoryQuery& q, bool hour_of_day,
                                 std::string_view tz);
Result<nlohmann::json> TimespansJson(const ChangeSource& store, const HistoryQuery& q,
                                     const InputValue& value);
nlohmann::json RollupsUnderOldOptionsJson(const ChangeSource& store, const std::string& key,
                                          int64_t from_ms, int64_t to_ms);

}  // namespace komoku::store

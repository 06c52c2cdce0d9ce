// History questions over a key's changes: downsampled series (avg, twavg,
// min, max, first, last, count, sum, increase, rate), the value at a time,
// timespans of a value, and time-in-state statistics, per bucket aligned to
// UTC or to local midnight in an IANA time zone. See docs/history.md.
//
// Everything is computed in one pass over the changes in time order (the
// Store's Scan), so a year of raw history needs no more memory than its
// buckets. The rules, in one place:
// - a value lasts from its change until the next change (a step function);
//   before the first change, after `now`, and past a key's stale_after the
//   value is unknown, never interpolated;
// - point aggregates (avg, min, max, first, last, count, sum) take the
//   changes inside the bucket; twavg weighs the step function by time over
//   the known part of the bucket (the value in force at its start counts);
// - counter increase adds up rises; a drop is a reset (the new value counts
//   from 0), unless it is within reset_tolerance of the highest value since
//   the last reset (a glitch, not counted twice); rate = increase / seconds.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "core/change_source.h"
#include "core/duration.h"
#include "core/rollup.h"
#include "core/value.h"

namespace komoku::store {

enum class Agg { kAvg, kTwavg, kMin, kMax, kFirst, kLast, kCount, kSum, kIncrease, kRate };

const char* AggName(Agg agg);
// Parses "avg,max"; refuses an unknown name or one that does not apply to the
// type (numbers for first/last/count only on non-numeric keys; increase and
// rate only on counters), naming it.
Result<std::vector<Agg>> ParseAggs(std::string_view list, KeyType type);

// Bucket starts for [from_ms, to_ms) every step_ms; the last bucket ends at
// to_ms. Steps of whole days (and weeks, which start on Monday) follow local
// midnight in `tz` (an IANA name; "" or "UTC" for UTC), so a bucket may last
// 23 or 25 hours; shorter steps align to the epoch in UTC. Refused when more
// than max_buckets would result, or for an unknown time zone.
Result<std::vector<int64_t>> BucketStarts(int64_t from_ms, int64_t to_ms, int64_t step_ms,
                                          std::string_view tz, size_t max_buckets);

// OK for "", "UTC" and IANA names the system's zoneinfo knows; otherwise a
// bad_request naming the parameter 'tz'.
Status CheckTimeZone(std::string_view tz);

// A step: a duration (ParseDuration), more than 0; "auto" picks the
// smallest of 1m, 5m, 15m, 1h, 6h, 1d, 1w giving at most 600 buckets.
Result<int64_t> ParseStep(std::string_view text, int64_t from_ms, int64_t to_ms);

struct HistoryQuery {
  std::string key;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  std::vector<int64_t> buckets;  // bucket starts (BucketStarts)
  int64_t step_ms = 0;           // 0: one bucket, [from, to)
};

// The query of [from_ms, to_ms) in buckets of `step` ("1h", "auto", ...; see
// ParseStep) aligned in `tz` (see BucketStarts): whole buckets, so from_ms
// moves back to the first bucket's start. The one place HTTP and the JSON
// API turn their parameters into buckets.
Result<HistoryQuery> PlanBuckets(std::string key, int64_t from_ms, int64_t to_ms,
                                 std::string_view step, std::string_view tz, size_t max_buckets);

// The aggregate a downsampled history gives when none is asked for: increase
// for counters, avg for numeric keys, last for the others.
const char* DefaultAgg(KeyType type);

// One row per bucket: [start_s, agg1, agg2, ...], null where a bucket has no
// answer (no change inside for point aggregates, nothing known for twavg).
Result<nlohmann::json> Downsample(const ChangeSource& store, const HistoryQuery& q,
                                  const std::vector<Agg>& aggs);

// Time per value (seconds, with "unknown"), share of the known time per value,
// and the number of value changes, for the whole range and, with buckets,
// per bucket. For numeric and counter keys: min, max, mean, twavg, count.
// `hour_of_day` (boolean, uptime, string) adds the average share per local
// hour of day in `tz`.
Result<nlohmann::json> Stats(const ChangeSource& store, const HistoryQuery& q, bool hour_of_day,
                             std::string_view tz);

// [[start_s, duration_s], ...] of the spans holding `value` within the
// range, and whether the last one is still open at the end of the range.
// Spans need raw changes: where retention dropped them, none is given, and
// "raw_expired_before" says from when the spans are answered.
Result<nlohmann::json> Timespans(const ChangeSource& store, const HistoryQuery& q,
                                 const InputValue& value);

// The parts of [from_ms, to_ms) that downsampled history and stats answer
// from rollups computed under options other than the key's current
// stale_after and reset_tolerance (their raw changes were dropped by
// retention before the options changed, so they cannot be recomputed):
// [{"from", "to", "stale_after", "reset_tolerance"}, ...] with the options
// they were computed with; empty when there are none.
nlohmann::json RollupsUnderOldOptions(const ChangeSource& store, const std::string& key,
                                      int64_t from_ms, int64_t to_ms);

// The rollups of [from_ms, to_ms) at `resolution_ms` (buckets aligned to the
// epoch; the first and last may be cut by the range): `carry` is the change
// in force before from_ms, `changes` those inside, oldest first. Only buckets
// with a change in them are returned, and with a stale_after also those in
// which something was known: a reader fills a missing bucket with the value
// in force (or unknown with a stale_after). The walk is the one the queries
// make, so a rollup equals what its bucket's changes give.
std::vector<Rollup> ComputeRollups(const RollupParams& params, const std::optional<Sample>& carry,
                                   const std::vector<Sample>& changes, int64_t from_ms,
                                   int64_t to_ms, int64_t resolution_ms);

}  // namespace komoku::store

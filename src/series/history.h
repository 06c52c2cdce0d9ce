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
//
// The answers are plain structs in milliseconds; history_json.h renders
// them for the wire.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
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

// One bucket of a downsampled history: every aggregate of its changes, and
// of the step function over it. An aggregate is unset where the bucket has
// no answer: the point aggregates (avg, min, max, first, last, sum) without
// a change inside, twavg, increase and rate where nothing was known.
struct AggregateBucket {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  int64_t count = 0;  // changes inside
  // The first and last change inside, as stored.
  std::optional<Value> first, last;
  // Numeric and counter keys only; unset for the others. increase and rate
  // follow the counter rules (a drop is a reset), so they mean something for
  // counters only.
  std::optional<double> avg, twavg, min, max, sum, increase, rate;
};

// The buckets of q.buckets, oldest first. history_json.h renders them as
// the rows of GET /api/v1/history.
Result<std::vector<AggregateBucket>> Downsample(const ChangeSource& store, const HistoryQuery& q);

// The same buckets handed to `each` one at a time, oldest first, without
// holding them all: a year of hourly buckets is 2 MB as a vector, which
// glibc maps and unmaps per request (main.cc sets M_MMAP_THRESHOLD), and
// its page faults cost more than the whole computation (docs/benchmarks.md,
// "History over HTTP, before and after the split").
Status Downsample(const ChangeSource& store, const HistoryQuery& q,
                  const std::function<void(const AggregateBucket&)>& each);

// The summary of a numeric or counter key over a range or a bucket.
struct NumericStats {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  int64_t count = 0;                     // changes inside
  std::optional<double> min, max, mean;  // unset without a change inside
  std::optional<double> twavg;           // unset where nothing was known
  int64_t known_ms = 0;                  // time the value was known
};

// Time in state of a boolean, uptime or string key over a range or a bucket.
struct StateStats {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  // Known time per value, by its text form (ValueToText); a boolean or
  // uptime key always lists "false" and "true", held or not.
  std::map<std::string, int64_t> ms_per_value;
  int64_t unknown_ms = 0;
  int64_t changes = 0;  // changes of value inside (a repeat is none)

  int64_t KnownMs() const;
  // The share of the known time `value` held; unset when nothing was known.
  std::optional<double> Share(const std::string& value) const;
};

// Stats of a key: one of the two halves, by its type.
struct KeyStats {
  bool numeric = false;  // numeric and counter keys: `numbers`; others: `states`
  NumericStats numbers;
  StateStats states;
  // Per bucket, when the query has a step (q.step_ms != 0).
  std::optional<std::vector<NumericStats>> number_buckets;
  std::optional<std::vector<StateStats>> state_buckets;
  // With hour_of_day: the known time per value in each local hour of day,
  // 0..23, summed over the range.
  std::optional<std::array<std::map<std::string, int64_t>, 24>> hour_of_day;
};

// Time per value (with unknown), share of the known time per value, and the
// number of value changes, for the whole range and, with a step, per
// bucket. For numeric and counter keys: min, max, mean, twavg, count.
// `hour_of_day` (boolean, uptime, string) adds the known time per local
// hour of day in `tz`. The range's time after now counts as unknown.
Result<KeyStats> Stats(const ChangeSource& store, const HistoryQuery& q, bool hour_of_day,
                       std::string_view tz);

// Time in state per bucket of a boolean, uptime or string key: the buckets
// Stats gives with a step, handed to `each` oldest first, after `range` was
// given the summary of the whole of q (so that a renderer knows every value
// held before the first bucket). A bucket's ms_per_value plus unknown_ms is
// its length (time after now is unknown), and each of them summed over the
// buckets is range's, which is what Stats answers for the same range: the
// walks are one. Refused (bad_request, naming 'agg') for numeric and
// counter keys.
Status StateBuckets(const ChangeSource& store, const HistoryQuery& q,
                    const std::function<void(const StateStats& range)>& range,
                    const std::function<void(const StateStats& bucket)>& each);

// The spans holding one value within a range.
struct Spans {
  struct Span {
    int64_t start_ms = 0;
    int64_t end_ms = 0;
  };
  std::vector<Span> spans;  // oldest first, never touching each other
  bool open = false;        // the last one still holds at the end of the range
  // Spans need raw changes: where retention dropped them, none is given,
  // and this says from when the spans are answered (set only when after
  // the range's start).
  std::optional<int64_t> raw_expired_before_ms;
};

// The spans holding `value` within the range. Refused (bad_request) for
// numeric and counter keys and for a value the key's type cannot hold.
Result<Spans> Timespans(const ChangeSource& store, const HistoryQuery& q, const InputValue& value);

// The parts of [from_ms, to_ms) that downsampled history and stats answer
// from rollups computed under options other than the key's current
// stale_after and reset_tolerance (their raw changes were dropped by
// retention before the options changed, so they cannot be recomputed),
// cut to the range, with the options they were computed with; empty when
// there are none.
std::vector<RollupStretch> RollupsUnderOldOptions(const ChangeSource& store, const std::string& key,
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

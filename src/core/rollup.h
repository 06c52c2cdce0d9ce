// Rollups: per-bucket summaries of a key's history that answer history
// questions without the raw changes. Segments store them (segment.h), the
// history mathematics computes them (history.h ComputeRollups) and the Store
// says where they answer (RollupStretch).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/value.h"

namespace komoku::store {

// A summary of one key over one bucket [start_ms, start_ms + resolution):
// what the history queries need (history.h) without the raw changes. Which
// fields are meaningful depends on the key type:
// - every type: count, first, last, unknown_ms, changes;
// - numeric and counter: sum, min, max, integral, known_ms;
// - counter: increase, high;
// - boolean, uptime, string: ms_per_value (the value's text form: "true",
//   "false", or the string) .
// The numbers follow the rules of history.h exactly (a value lasts until the
// next change; unknown before the first change and past stale_after), so a
// bucket answered from rollups equals the same bucket answered from raw.
struct Rollup {
  int64_t start_ms = 0;
  int64_t count = 0;                 // changes with a time inside the bucket
  int64_t changes = 0;               // of those, the ones whose value differs from the one before
  std::optional<Value> first, last;  // the first and last change inside
  double sum = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double integral = 0;     // value x ms over the known time
  int64_t known_ms = 0;    // time with a known value
  int64_t unknown_ms = 0;  // time with no known value
  double increase = 0;     // counter: rises, resets counted from 0
  // Counter: the highest value since the last reset, at the bucket's end
  // (the state the increase of the next bucket continues from); NaN when no
  // value was known yet.
  double high = std::numeric_limits<double>::quiet_NaN();
  // Boolean, uptime, string: ms per value's text, sorted by text.
  std::vector<std::pair<std::string, int64_t>> ms_per_value;
  // The time of the first change inside (count > 0), and whether two changes
  // inside share a time: what the samples of a Prometheus range [t - r, t]
  // need besides whole buckets (the sample at t opens the next bucket).
  // Unknown in rollups written before segment format 2 (nullopt).
  std::optional<int64_t> first_ms;
  bool shared_times = false;
};

// Field by field; a NaN `high` equals a NaN `high`.
bool operator==(const Rollup& a, const Rollup& b);
inline bool operator!=(const Rollup& a, const Rollup& b) { return !(a == b); }

// Resolutions rollups are kept at, finest first.
inline constexpr int64_t kRollupResolutionsMs[] = {5 * 60 * 1000, 60 * 60 * 1000,
                                                   24 * 60 * 60 * 1000};

// A stretch [from_ms, to_ms) of a key's cold history answered by rollups,
// and the options they were computed with (Store::RollupCoverage).
struct RollupStretch {
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  int64_t stale_after_ms = 0;
  double reset_tolerance = 0;
  // False: the key's options changed after retention dropped the raw
  // changes, so these rollups answer as under the options of their time.
  bool current_options = true;
};

// What rollups are computed from besides the changes: the key's type and the
// options that change the answers.
struct RollupParams {
  KeyType type = KeyType::kNumeric;
  int64_t stale_after_ms = 0;
  double reset_tolerance = 0;
  // Counter: the highest value since the last reset at from_ms, as the
  // rollups before it left it (Rollup::high), so that a glitch across the
  // border is judged as one walk over both would; NaN: the carry's value.
  double start_high = std::numeric_limits<double>::quiet_NaN();
};

// ComputeRollups (history.h) as a value: what computes rollups again for
// code below the history mathematics (the cold store's salvage).
using RollupFn = std::function<std::vector<Rollup>(
    const RollupParams& params, const std::optional<Sample>& carry,
    const std::vector<Sample>& changes, int64_t from_ms, int64_t to_ms, int64_t resolution_ms)>;

}  // namespace komoku::store

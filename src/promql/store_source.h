// Komoku's keys as Prometheus series (docs/prometheus.md, "Keys as series"):
// each key is a series named by MetricName(key) with the labels key="<key>"
// and type="<type>"; each stored change is a sample at its time. Numeric and
// counter values are the samples; boolean and uptime values are 1 and 0; a
// string key is one series per state (label state="<state>"), and each of
// its changes is a sample in every one of them: 1 in the state it changed
// to, 0 in the others.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "promql/promql.h"

namespace komoku::store {
class Store;
}

namespace komoku::promql {

// The key's metric name: each byte that is not an ASCII letter, digit or
// '_' becomes '_', and a name starting with a digit gets a leading '_'
// ("kitchen/temperature" -> "kitchen_temperature", "1st/floor" ->
// "_1st_floor").
std::string MetricName(std::string_view key);

// A string key with more distinct values than this (a log rather than
// states) is no series.
inline constexpr size_t kMaxStringStates = 100;

// Thread-safe as the Store is; the Store must outlive it.
class StoreSource final : public Source {
 public:
  explicit StoreSource(const store::Store* store) : store_(store) {}
  // What the Selects so far read: stored changes, and rollups that stood in
  // for changes (Series::buckets).
  int64_t changes_read() const { return changes_read_.load(std::memory_order_relaxed); }
  int64_t rollups_read() const { return rollups_read_.load(std::memory_order_relaxed); }
  // Buckets (with align_ms) come from the keys' rollups (core/rollup.h)
  // where they cover whole buckets, for numeric and counter keys.
  Result<std::vector<Series>> Select(const std::vector<Matcher>& matchers, int64_t from_ms,
                                     int64_t to_ms, int64_t align_ms) const override;
  Result<std::vector<Labels>> Labelsets(const std::vector<Matcher>& matchers) const override;

 private:
  const store::Store* const store_;
  mutable std::atomic<int64_t> changes_read_{0};
  mutable std::atomic<int64_t> rollups_read_{0};
};

}  // namespace komoku::promql

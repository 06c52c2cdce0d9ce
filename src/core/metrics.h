// Named counters and gauges shared by the store and its adapters, exported in
// the Prometheus text format. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace komoku::store {

// The upper bounds of the commit latency histogram: the hot store counts a
// commit of `micros` or less in komoku_commit_seconds_bucket{le="<le>"}
// (cumulative, as Prometheus wants); /metrics writes every bound, 0 before
// the first commit.
struct HistogramBound {
  int64_t micros;
  const char* le;
};
inline constexpr HistogramBound kCommitSecondsBounds[] = {
    {100, "0.0001"}, {250, "0.00025"}, {500, "0.0005"},  {1000, "0.001"}, {2500, "0.0025"},
    {5000, "0.005"}, {10000, "0.01"},  {25000, "0.025"}, {100000, "0.1"}, {1000000, "1"}};

class Metrics {
 public:
  // `series` is a Prometheus series name with optional labels, e.g.
  // komoku_refused_total{reason="wrong_type"}.
  // Called on the ingest path: a series already there costs no allocation.
  void Add(std::string_view series, int64_t delta = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    Slot(series) += delta;
  }
  void Set(std::string_view series, int64_t value) {
    std::lock_guard<std::mutex> lock(mu_);
    Slot(series) = value;
  }
  int64_t Get(std::string_view series) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = values_.find(series);
    return it == values_.end() ? 0 : it->second;
  }
  std::map<std::string, int64_t> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {values_.begin(), values_.end()};
  }

 private:
  // Requires mu_.
  int64_t& Slot(std::string_view series) {
    auto it = values_.find(series);
    if (it == values_.end()) it = values_.emplace(std::string(series), 0).first;
    return it->second;
  }

  mutable std::mutex mu_;
  std::map<std::string, int64_t, std::less<>> values_;  // guarded by mu_
};

}  // namespace komoku::store

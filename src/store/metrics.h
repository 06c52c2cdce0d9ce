// Named counters and gauges shared by the store and its adapters, exported in
// the Prometheus text format. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace komoku::store {

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

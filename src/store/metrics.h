// Named counters and gauges shared by the store and its adapters, exported in
// the Prometheus text format. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace komoku::store {

class Metrics {
 public:
  // `series` is a Prometheus series name with optional labels, e.g.
  // komoku_refused_total{reason="wrong_type"}.
  void Add(const std::string& series, int64_t delta = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    values_[series] += delta;
  }
  void Set(const std::string& series, int64_t value) {
    std::lock_guard<std::mutex> lock(mu_);
    values_[series] = value;
  }
  int64_t Get(const std::string& series) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = values_.find(series);
    return it == values_.end() ? 0 : it->second;
  }
  std::map<std::string, int64_t> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return values_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int64_t> values_;  // guarded by mu_
};

}  // namespace komoku::store

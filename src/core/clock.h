// The clock behind uptime timers, buckets and arrival times, narrow so that
// tests can drive time. Implementations are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace komoku::store {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  // A process-wide instance.
  static const SystemClock* Get() {
    static const SystemClock clock;
    return &clock;
  }
};

}  // namespace komoku::store

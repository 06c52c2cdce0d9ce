// A clock the test drives (core/clock.h).
#pragma once

#include <atomic>
#include <cstdint>

#include "core/clock.h"

namespace komoku::store::testing {

// A clock that stands still until the test moves it. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Set(int64_t now_ms) { now_ms_.store(now_ms); }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace komoku::store::testing

// A deterministic temperature sensor for the size benchmarks: one reading
// every 10 s for a year, times jittered by up to ±300 ms around the 10 s grid
// (a sensor on a timer, with delivery delays), values with 2 decimals made of
// a daily cycle, a slow seasonal drift and Gaussian noise.
//
// Every random number comes from a fixed-seed SplitMix64 and a Box-Muller
// transform written here, not from <random>'s distributions (whose output the
// standard leaves to each library), so every build draws the same year; only
// libm's sin/cos/log could differ in the last bit, which the rounding to 2
// decimals absorbs but for a rare reading.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace komoku::bench {

struct SensorReading {
  int64_t time_ms = 0;
  double value = 0;
};

struct SensorOptions {
  int64_t start_ms = 1'704'067'200'000;  // 2024-01-01T00:00:00Z
  int64_t interval_ms = 10'000;
  int64_t count = 365 * 8'640;  // a year at 10 s
  int64_t jitter_ms = 300;      // uniform in [-jitter, +jitter]
  double mean = 19.0;
  double daily_amplitude = 3.0;     // peak to mean, °C
  double seasonal_amplitude = 6.0;  // peak to mean over the year
  double noise_sigma = 0.05;        // °C, independent per reading
  uint64_t seed = 20240101;
};

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1): 53 random bits, never exactly 0.
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  // Uniform integer in [lo, hi].
  int64_t Between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  // Standard normal (Box-Muller, one of the pair).
  double Normal() {
    constexpr double kTwoPi = 6.283185307179586;
    return std::sqrt(-2 * std::log(Uniform())) * std::cos(kTwoPi * Uniform());
  }

 private:
  uint64_t state_;
};

inline std::vector<SensorReading> GenerateSensorYear(const SensorOptions& o = {}) {
  constexpr double kTwoPi = 6.283185307179586;
  constexpr double kDayMs = 86'400'000.0;
  constexpr double kYearMs = 365 * kDayMs;
  SplitMix64 rng(o.seed);
  std::vector<SensorReading> out;
  out.reserve(static_cast<size_t>(o.count));
  for (int64_t i = 0; i < o.count; ++i) {
    const int64_t t = o.start_ms + i * o.interval_ms + rng.Between(-o.jitter_ms, o.jitter_ms);
    const double since = static_cast<double>(t - o.start_ms);
    // Warmest mid-afternoon and mid-summer.
    const double daily = o.daily_amplitude * std::sin(kTwoPi * (since / kDayMs - 0.375));
    const double seasonal = -o.seasonal_amplitude * std::cos(kTwoPi * (since / kYearMs - 0.05));
    const double v = o.mean + daily + seasonal + o.noise_sigma * rng.Normal();
    out.push_back({t, std::round(v * 100) / 100});
  }
  return out;
}

}  // namespace komoku::bench

#include "core/rollup.h"

#include <cmath>

namespace komoku::store {

bool operator==(const Rollup& a, const Rollup& b) {
  auto same = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
  return a.start_ms == b.start_ms && a.count == b.count && a.changes == b.changes &&
         a.first == b.first && a.last == b.last && a.sum == b.sum && a.min == b.min &&
         a.max == b.max && a.integral == b.integral && a.known_ms == b.known_ms &&
         a.unknown_ms == b.unknown_ms && a.increase == b.increase && same(a.high, b.high) &&
         a.ms_per_value == b.ms_per_value && a.first_ms == b.first_ms &&
         a.shared_times == b.shared_times;
}

}  // namespace komoku::store

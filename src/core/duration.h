// Durations as text, the one grammar of steps, derived windows, relative
// times and key options.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace komoku::store {

// A duration in milliseconds: a whole number with a unit, "500ms", "30s",
// "10m", "24h", "7d", "1w", or bare seconds ("300"). The one grammar of steps,
// derived windows and key options (stale_after: 10m). InvalidArgument
// saying what it expected otherwise.
Result<int64_t> ParseDuration(std::string_view text);

}  // namespace komoku::store

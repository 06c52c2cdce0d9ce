// Times as the HTTP API takes them: epoch seconds ("1700000000.25"), "now",
// a time relative to now ("-24h", "-30m", "-7d", "-2w", "-10s", "+5m"), or
// ISO 8601 ("2026-11-21", "2026-11-21T10:00:00Z", "2026-11-21T10:00:00.5+01:00";
// no offset means UTC).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "core/civil_time.h"

namespace komoku::store {

// Milliseconds since the epoch, or InvalidArgument naming what was wrong.
Result<int64_t> ParseTimeParam(std::string_view text, int64_t now_ms);

}  // namespace komoku::store

#include "core/key_options.h"

#include <cmath>

#include "core/duration.h"

namespace komoku::store {

Result<int64_t> OptionSecondsToMs(const std::string& name, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds > kMaxOptionSeconds) {
    return Status::InvalidArgument("option '" + name + "' must be 0.." +
                                   std::to_string(static_cast<int64_t>(kMaxOptionSeconds)) +
                                   " seconds")
        .WithReason("bad_option");
  }
  return static_cast<int64_t>(std::llround(seconds * 1000.0));
}

namespace {

Status BadOption(const std::string& message) {
  return Status::InvalidArgument(message).WithReason("bad_option");
}

// Sets `to` from a patch field: kept when unset, `fallback` when reset.
template <typename T, typename U>
void Patch(const KeyOptionsPatch::Field<T>& field, U& to, const U& fallback) {
  if (!field) return;
  if (*field) {
    to = **field;
  } else {
    to = fallback;
  }
}

}  // namespace

Result<KeyOptions> ApplyKeyOptions(KeyOptions base, KeyType type, const KeyOptionsPatch& patch) {
  const KeyOptions defaults;
  // In the order of the options' names, as the JSON object lists them.
  if (patch.max_time_ms) {
    if (type != KeyType::kUptime) {
      return BadOption(std::string("option 'max_time' is for uptime keys, not ") +
                       KeyTypeName(type));
    }
    if (*patch.max_time_ms && **patch.max_time_ms == 0) {
      return BadOption("option 'max_time' must be more than 0 seconds");
    }
  }
  if (patch.reset_tolerance && type != KeyType::kCounter) {
    return BadOption(std::string("option 'reset_tolerance' is for counter keys, not ") +
                     KeyTypeName(type));
  }
  if (patch.values && type != KeyType::kString) {
    return BadOption(std::string("option 'values' is for string keys, not ") + KeyTypeName(type));
  }
  Patch(patch.same_value_resolution_ms, base.same_value_resolution_ms,
        defaults.same_value_resolution_ms);
  Patch(patch.max_time_ms, base.max_time_ms, defaults.max_time_ms);
  Patch(patch.stale_after_ms, base.stale_after_ms, defaults.stale_after_ms);
  Patch(patch.reset_tolerance, base.reset_tolerance, defaults.reset_tolerance);
  if (patch.values) base.values = *patch.values;
  if (patch.raw_retention_ms) base.raw_retention_ms = *patch.raw_retention_ms;
  return base;
}

}  // namespace komoku::store

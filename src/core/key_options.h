// Per-key options (Komoku's names), their defaults, and their one parser,
// shared by define over HTTP, over MQTT and from the config file.
// Durations are seconds (floats) on the outside, milliseconds inside.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/value.h"

namespace komoku::store {

struct KeyOptions {
  // A repeat of the current value is not stored again until this much time
  // has passed since it was stored. It still refreshes an uptime key.
  int64_t same_value_resolution_ms = 60 * 1000;
  // uptime: the key turns false this long after the last true.
  int64_t max_time_ms = 60 * 1000;
  // string: the allowed values; any value when unset.
  std::optional<std::vector<std::string>> values;
  // History treats a value older than this as unknown (a sensor that went
  // quiet); 0: a value lasts until the next change.
  int64_t stale_after_ms = 0;
  // counter: a drop smaller than this is a glitch, not a reset.
  double reset_tolerance = 0;
  // How long this key's raw changes are kept in cold history (rollups stay);
  // unset: the store's default (store.raw_retention_days); 0: forever.
  std::optional<int64_t> raw_retention_ms;

  bool operator==(const KeyOptions& o) const {
    return same_value_resolution_ms == o.same_value_resolution_ms && max_time_ms == o.max_time_ms &&
           values == o.values && stale_after_ms == o.stale_after_ms &&
           reset_tolerance == o.reset_tolerance && raw_retention_ms == o.raw_retention_ms;
  }
};

// The options as JSON: {"same_value_resolution": 60, "max_time": 60, ...};
// max_time only for uptime keys, values only when set.
nlohmann::json KeyOptionsToJson(const KeyOptions& options, KeyType type);

// Applies the fields of `json` (an object) to `base` for a key of `type`.
// Refuses (InvalidArgument, reason "bad_option") an unknown option, a wrong
// JSON type, a negative or absurd duration, an option that does not apply to
// the type (max_time for a non-uptime key, values for a non-string key), and
// min_resolution, which needs the rollups of a later stage. A null resets the
// option to its default.
Result<KeyOptions> ApplyKeyOptions(KeyOptions base, KeyType type, const nlohmann::json& json);

}  // namespace komoku::store

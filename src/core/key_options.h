// Per-key options (Komoku's names) and their defaults, typed, and a change
// to them as define asks for it (KeyOptionsPatch). Their one JSON parser
// (and their JSON form), shared by define over HTTP, over MQTT and from the
// config file, is wire/key_options_json.h. Durations are seconds (floats)
// on the outside, milliseconds inside.
#pragma once

#include <cstdint>
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

// A change to a key's options, as define asks for it. Each field is unset
// (the option is kept), set to nullopt (back to its default) or set to a
// value. Values are already valid on their own (wire/key_options_json.h
// parses them); whether an option applies to the key's type is checked by
// ApplyKeyOptions, which knows the type.
struct KeyOptionsPatch {
  template <typename T>
  using Field = std::optional<std::optional<T>>;
  Field<int64_t> same_value_resolution_ms;
  Field<int64_t> max_time_ms;
  Field<std::vector<std::string>> values;
  Field<int64_t> stale_after_ms;
  Field<double> reset_tolerance;
  Field<int64_t> raw_retention_ms;
};

// `base` with `patch` applied, for a key of `type`. Refuses
// (InvalidArgument, reason "bad_option") an option that does not apply to
// the type (max_time for a non-uptime key, values for a non-string key,
// reset_tolerance for a non-counter key) and a max_time of 0.
Result<KeyOptions> ApplyKeyOptions(KeyOptions base, KeyType type, const KeyOptionsPatch& patch);

// The longest duration an option takes: ten years. More is a mistake, and
// the limit keeps milliseconds far from overflow.
constexpr double kMaxOptionSeconds = 10 * 366 * 86400.0;

// `seconds` of option `name` as milliseconds (rounded). Refused
// (InvalidArgument, reason "bad_option") unless finite and
// 0..kMaxOptionSeconds.
Result<int64_t> OptionSecondsToMs(const std::string& name, double seconds);

}  // namespace komoku::store

// Key options (core/key_options.h) as JSON: their one parser, shared by
// define over HTTP, over MQTT and from the config file, and their JSON form,
// which the API answers. Durations are seconds (numbers) or durations such
// as "10m" (ParseDuration) on the outside. (The hot store keeps options in
// a form of its own, hot/stored_options.h.)
//
// Part of the wire layer.
#pragma once

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "core/key_options.h"
#include "core/value.h"

namespace komoku::store {

// The options as JSON: {"same_value_resolution": 60, "max_time": 60, ...};
// max_time only for uptime keys, values only when set.
nlohmann::json KeyOptionsToJson(const KeyOptions& options, KeyType type);

// The fields of `json` (an object; null: no change) as a patch. Refuses
// (InvalidArgument, reason "bad_option") an unknown option, a wrong JSON
// type, a negative or absurd duration, and min_resolution, which needs the
// rollups of a later stage. A null resets the option to its default.
Result<KeyOptionsPatch> ParseKeyOptions(const nlohmann::json& json);

// ParseKeyOptions, then ApplyKeyOptions(base, type, patch): also refuses an
// option that does not apply to the type (max_time for a non-uptime key,
// values for a non-string key).
Result<KeyOptions> ApplyKeyOptions(KeyOptions base, KeyType type, const nlohmann::json& json);

}  // namespace komoku::store

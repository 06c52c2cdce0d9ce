#include "core/key_options_json.h"

#include <cmath>

#include "core/duration.h"

namespace komoku::store {
namespace {

using nlohmann::json;

Status BadOption(const std::string& message) {
  return Status::InvalidArgument(message).WithReason("bad_option");
}

// Seconds as a number (1.5), or a duration as steps and windows take it
// ("10m", "24h"; ParseDuration).
Result<int64_t> Duration(const std::string& name, const json& value) {
  double seconds = 0;
  if (value.is_string()) {
    Result<int64_t> ms = ParseDuration(value.get<std::string>());
    if (!ms.ok()) return BadOption("option '" + name + "': " + ms.status().message());
    seconds = static_cast<double>(*ms) / 1000.0;
  } else if (value.is_number()) {
    seconds = value.get<double>();
  } else {
    return BadOption("option '" + name + "' must be seconds or a duration such as 10m");
  }
  return OptionSecondsToMs(name, seconds);
}

}  // namespace

json KeyOptionsToJson(const KeyOptions& options, KeyType type) {
  json j = {
      {"same_value_resolution", static_cast<double>(options.same_value_resolution_ms) / 1000}};
  if (type == KeyType::kUptime) j["max_time"] = static_cast<double>(options.max_time_ms) / 1000;
  if (options.values) j["values"] = *options.values;
  if (options.stale_after_ms) j["stale_after"] = static_cast<double>(options.stale_after_ms) / 1000;
  if (type == KeyType::kCounter) j["reset_tolerance"] = options.reset_tolerance;
  if (options.raw_retention_ms) {
    j["raw_retention"] = static_cast<double>(*options.raw_retention_ms) / 1000;
  }
  return j;
}

Result<KeyOptions> ApplyKeyOptions(KeyOptions base, KeyType type, const json& opts) {
  if (opts.is_null()) return base;
  if (!opts.is_object()) return BadOption("options must be an object");
  const KeyOptions defaults;
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "same_value_resolution") {
      if (value.is_null()) {
        base.same_value_resolution_ms = defaults.same_value_resolution_ms;
        continue;
      }
      Result<int64_t> ms = Duration(name, value);
      if (!ms.ok()) return ms.status();
      base.same_value_resolution_ms = *ms;
    } else if (name == "max_time") {
      if (type != KeyType::kUptime) {
        return BadOption(std::string("option 'max_time' is for uptime keys, not ") +
                         KeyTypeName(type));
      }
      if (value.is_null()) {
        base.max_time_ms = defaults.max_time_ms;
        continue;
      }
      Result<int64_t> ms = Duration(name, value);
      if (!ms.ok()) return ms.status();
      if (*ms == 0) return BadOption("option 'max_time' must be more than 0 seconds");
      base.max_time_ms = *ms;
    } else if (name == "values") {
      if (type != KeyType::kString) {
        return BadOption(std::string("option 'values' is for string keys, not ") +
                         KeyTypeName(type));
      }
      if (value.is_null()) {
        base.values.reset();
        continue;
      }
      if (!value.is_array() || value.empty()) {
        return BadOption("option 'values' must be a non-empty list of strings");
      }
      std::vector<std::string> values;
      for (const json& v : value) {
        if (!v.is_string() || !IsValidUtf8(v.get<std::string>())) {
          return BadOption("option 'values' must be a list of UTF-8 strings");
        }
        values.push_back(v.get<std::string>());
      }
      base.values = std::move(values);
    } else if (name == "stale_after") {
      if (value.is_null()) {
        base.stale_after_ms = defaults.stale_after_ms;
        continue;
      }
      Result<int64_t> ms = Duration(name, value);
      if (!ms.ok()) return ms.status();
      base.stale_after_ms = *ms;
    } else if (name == "reset_tolerance") {
      if (type != KeyType::kCounter) {
        return BadOption(std::string("option 'reset_tolerance' is for counter keys, not ") +
                         KeyTypeName(type));
      }
      if (value.is_null()) {
        base.reset_tolerance = defaults.reset_tolerance;
        continue;
      }
      if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0) {
        return BadOption("option 'reset_tolerance' must be a number >= 0");
      }
      base.reset_tolerance = value.get<double>();
    } else if (name == "raw_retention") {
      if (value.is_null()) {
        base.raw_retention_ms.reset();
        continue;
      }
      Result<int64_t> ms = Duration(name, value);
      if (!ms.ok()) return ms.status();
      base.raw_retention_ms = *ms;
    } else if (name == "min_resolution") {
      return BadOption(
          "option 'min_resolution' is not supported yet: it needs the aggregates of the "
          "rollup stage so that values in between still count");
    } else {
      return BadOption("unknown option '" + name +
                       "' (known: same_value_resolution, max_time, values, stale_after, "
                       "reset_tolerance, raw_retention)");
    }
  }
  return base;
}

}  // namespace komoku::store

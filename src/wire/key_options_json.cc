#include "wire/key_options_json.h"

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

Result<KeyOptionsPatch> ParseKeyOptions(const json& opts) {
  KeyOptionsPatch patch;
  if (opts.is_null()) return patch;
  if (!opts.is_object()) return BadOption("options must be an object");
  // A duration option: null resets it.
  auto duration = [](const std::string& name, const json& value,
                     KeyOptionsPatch::Field<int64_t>* field) -> Status {
    if (value.is_null()) {
      field->emplace();
      return Status::Ok();
    }
    Result<int64_t> ms = Duration(name, value);
    if (!ms.ok()) return ms.status();
    field->emplace(*ms);
    return Status::Ok();
  };
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "same_value_resolution") {
      KOMOKU_RETURN_IF_ERROR(duration(name, value, &patch.same_value_resolution_ms));
    } else if (name == "max_time") {
      KOMOKU_RETURN_IF_ERROR(duration(name, value, &patch.max_time_ms));
    } else if (name == "stale_after") {
      KOMOKU_RETURN_IF_ERROR(duration(name, value, &patch.stale_after_ms));
    } else if (name == "raw_retention") {
      KOMOKU_RETURN_IF_ERROR(duration(name, value, &patch.raw_retention_ms));
    } else if (name == "values") {
      if (value.is_null()) {
        patch.values.emplace();
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
      patch.values.emplace(std::move(values));
    } else if (name == "reset_tolerance") {
      if (value.is_null()) {
        patch.reset_tolerance.emplace();
        continue;
      }
      if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0) {
        return BadOption("option 'reset_tolerance' must be a number >= 0");
      }
      patch.reset_tolerance.emplace(value.get<double>());
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
  return patch;
}

Result<KeyOptions> ApplyKeyOptions(KeyOptions base, KeyType type, const json& opts) {
  Result<KeyOptionsPatch> patch = ParseKeyOptions(opts);
  if (!patch.ok()) return patch.status();
  return ApplyKeyOptions(std::move(base), type, *patch);
}

}  // namespace komoku::store

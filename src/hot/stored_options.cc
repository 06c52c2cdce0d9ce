#include "hot/stored_options.h"

#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace komoku::store {
namespace {

using nlohmann::json;

double Seconds(int64_t ms) { return static_cast<double>(ms) / 1000; }

}  // namespace

std::string EncodeStoredOptions(const KeyOptions& options, KeyType type) {
  json j = {{"same_value_resolution", Seconds(options.same_value_resolution_ms)}};
  if (type == KeyType::kUptime) j["max_time"] = Seconds(options.max_time_ms);
  if (options.values) j["values"] = *options.values;
  if (options.stale_after_ms) j["stale_after"] = Seconds(options.stale_after_ms);
  if (type == KeyType::kCounter) j["reset_tolerance"] = options.reset_tolerance;
  if (options.raw_retention_ms) j["raw_retention"] = Seconds(*options.raw_retention_ms);
  return j.dump();
}

Result<KeyOptions> DecodeStoredOptions(std::string_view text, KeyType type) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Corruption("options are not a JSON object");
  KeyOptionsPatch patch;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "values") {
      if (!value.is_array()) return Status::Corruption("option 'values' is not a list");
      std::vector<std::string> values;
      for (const json& v : value) {
        if (!v.is_string()) return Status::Corruption("option 'values' holds a non-string");
        values.push_back(v.get<std::string>());
      }
      patch.values.emplace(std::move(values));
      continue;
    }
    if (!value.is_number()) return Status::Corruption("option '" + name + "' is not a number");
    if (name == "reset_tolerance") {
      patch.reset_tolerance.emplace(value.get<double>());
      continue;
    }
    KeyOptionsPatch::Field<int64_t>* field = nullptr;
    if (name == "same_value_resolution") {
      field = &patch.same_value_resolution_ms;
    } else if (name == "max_time") {
      field = &patch.max_time_ms;
    } else if (name == "stale_after") {
      field = &patch.stale_after_ms;
    } else if (name == "raw_retention") {
      field = &patch.raw_retention_ms;
    } else {
      return Status::Corruption("unknown option '" + name + "'");
    }
    Result<int64_t> ms = OptionSecondsToMs(name, value.get<double>());
    if (!ms.ok()) return Status::Corruption(ms.status().message());
    field->emplace(*ms);
  }
  Result<KeyOptions> options = ApplyKeyOptions(KeyOptions{}, type, patch);
  if (!options.ok()) return Status::Corruption(options.status().message());
  return options;
}

}  // namespace komoku::store

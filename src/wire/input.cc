#include "wire/input.h"

#include <cmath>
#include <string>

namespace komoku::store {

using nlohmann::json;

Result<InputValue> JsonToInput(const json& j) {
  if (j.is_boolean()) return InputValue(j.get<bool>());
  if (j.is_number()) {
    double d = j.get<double>();
    if (!std::isfinite(d)) return Status::InvalidArgument("\"value\" is not a finite number");
    return InputValue(d);
  }
  if (j.is_string()) return InputValue(j.get<std::string>());
  return Status::InvalidArgument(
      std::string("\"value\" must be a number, boolean or string, not ") + j.type_name());
}

Result<int64_t> JsonSecondsToMs(const json& j) {
  if (!j.is_number()) {
    return Status::InvalidArgument("\"time\" must be a number of seconds since the epoch");
  }
  double seconds = j.get<double>();
  // 1e11 s is the year 5138: far enough, and far from int64 overflow.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e11) {
    return Status::InvalidArgument("\"time\" is out of range");
  }
  return static_cast<int64_t>(std::llround(seconds * 1000.0));
}

Result<ValueMessage> ParseValuePayload(std::string_view payload, size_t max_bytes) {
  if (payload.size() > max_bytes) {
    return Status::InvalidArgument("payload of " + std::to_string(payload.size()) +
                                   " bytes is over the limit of " + std::to_string(max_bytes));
  }
  size_t first = payload.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return Status::InvalidArgument("empty or blank payload");
  ValueMessage msg;
  if (payload[first] != '{' && payload[first] != '"') {
    msg.value = std::string(payload);
    return msg;
  }
  json j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("payload is not valid JSON");
  if (j.is_string()) {
    msg.value = j.get<std::string>();
    msg.text = true;
    return msg;
  }
  auto value = j.find("value");
  if (value == j.end()) return Status::InvalidArgument("JSON payload has no \"value\"");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "value" && it.key() != "time") {
      return Status::InvalidArgument("JSON payload has an unknown field \"" + it.key() + "\"");
    }
  }
  Result<InputValue> input = JsonToInput(*value);
  if (!input.ok()) return input.status();
  msg.value = std::move(input.value());
  msg.text = value->is_string();
  auto time = j.find("time");
  if (time != j.end()) {
    Result<int64_t> ms = JsonSecondsToMs(*time);
    if (!ms.ok()) return ms.status();
    msg.time_ms = *ms;
  }
  return msg;
}

}  // namespace komoku::store

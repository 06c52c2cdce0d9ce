// Values as they arrive from outside, whichever transport carries them: a
// bare value ("21.5", "on", "some text") or JSON {"value": ..., "time": ...}
// with the time in epoch seconds (Komoku's convention). Both the MQTT bridge
// and the HTTP server parse with this, so a put means the same either way.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "common/status.h"
#include "core/value.h"
#include "wire/value_json.h"

namespace komoku::store {

struct ValueMessage {
  InputValue value;
  std::optional<int64_t> time_ms;
  // The value was a JSON string ("1.10", or {"value": "1.10"}): text, so a
  // key it creates is a string key (PutOptions::new_key_type).
  bool text = false;
};

// Refuses (InvalidArgument, saying why) a payload over `max_bytes`, an empty
// or blank one, malformed JSON, a JSON object without "value" or with an
// unknown field, a non-scalar value, and a time that is not a finite number of
// seconds in 1970..5138.
Result<ValueMessage> ParseValuePayload(std::string_view payload, size_t max_bytes);

// A JSON scalar as an input value.
Result<InputValue> JsonToInput(const nlohmann::json& j);

// Epoch seconds (a JSON number) as milliseconds.
Result<int64_t> JsonSecondsToMs(const nlohmann::json& j);

// JSON text for the outside. Invalid UTF-8 (a key or payload quoted in an
// error message) becomes U+FFFD instead of an exception.
inline std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace komoku::store

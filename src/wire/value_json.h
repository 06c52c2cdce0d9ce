// A value's JSON form, shared by the wire forms (input.h) and the history
// answers that are still JSON (history.h).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "core/value.h"

namespace komoku::store {

// The JSON form of a value: a number, a boolean or a string.
inline nlohmann::json ValueToJson(const Value& v) {
  if (const double* d = std::get_if<double>(&v)) return *d;
  if (const bool* b = std::get_if<bool>(&v)) return *b;
  return std::get<std::string>(v);
}

// Milliseconds as epoch seconds with three decimals.
inline double MsToSeconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

}  // namespace komoku::store

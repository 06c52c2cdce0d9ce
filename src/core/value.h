// Komoku's key types and values, and the strict parsing of values and key
// names from outside text. See docs/data-model.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"

namespace komoku::store {

enum class KeyType { kNumeric, kCounter, kBoolean, kUptime, kString };

// "numeric", "counter", "boolean", "uptime", "string".
const char* KeyTypeName(KeyType type);
Result<KeyType> ParseKeyType(std::string_view name);

// A stored value: numeric and counter hold a double, boolean and uptime a
// bool, string a UTF-8 string.
using Value = std::variant<double, bool, std::string>;

// A value at a time.
struct Sample {
  int64_t time_ms = 0;
  Value value;
};

// The longest key name, in bytes.
inline constexpr size_t kMaxKeyNameBytes = 255;

// A key name is 1..255 bytes of valid UTF-8 with no NUL and no MQTT
// wildcard ('+', '#'). The message names the problem and, where it helps,
// the byte offset.
Status ValidateKeyName(std::string_view name);

// `s` without leading and trailing ASCII whitespace.
std::string_view TrimAscii(std::string_view s);

// ASCII letters compared without regard to case; other bytes exactly.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Whether `s` ends with `suffix` (C++20's ends_with).
inline bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Outside text quoted for a message: '...' around at most 40 bytes, never
// cut inside a character, control characters and bytes that are not UTF-8 as
// \xNN; the result is always valid UTF-8.
std::string QuoteForMessage(std::string_view text);

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view text);

// A double from text: "21.5", "-3", "1e3". Leading/trailing ASCII whitespace
// is ignored; anything else after the number, NaN and infinities are refused.
Result<double> ParseNumber(std::string_view text);

// The words read as booleans, compared without regard to case. "true",
// "false", "1" and "0" are always read, whatever the lists say.
struct BooleanWords {
  std::vector<std::string> true_words = {"on", "yes", "open"};
  std::vector<std::string> false_words = {"off", "no", "closed"};
  static const BooleanWords& Default();
};

// true/false, 1/0, and `words` (by default on/off, yes/no, open/closed).
Result<bool> ParseBoolean(std::string_view text,
                          const BooleanWords& words = BooleanWords::Default());

// The value as sent, before it is known what type the key has: a JSON number
// or bool keeps its type; bare text and JSON strings stay text.
using InputValue = std::variant<double, bool, std::string>;

// The type a new key gets from its first value, as Komoku guessed it:
// a number -> numeric, true/false -> boolean, other text -> string.
KeyType GuessType(const InputValue& input);

// Converts an input to the representation of `type`, or refuses it with a
// message that says what was expected.
Result<Value> CoerceValue(KeyType type, const InputValue& input,
                          const BooleanWords& words = BooleanWords::Default());

// Canonical text of a value: numbers in shortest round-trip form
// ("21.5", "1000"), booleans "true"/"false", strings as they are.
std::string ValueToText(const Value& value);

}  // namespace komoku::store

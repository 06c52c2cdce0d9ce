#include "core/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace komoku::store {
namespace {

// Quotes outside text for a message, cut short so a 1 MB payload does not
// become a 1 MB log line.
// The length of the well-formed UTF-8 sequence at p (no overlongs, no
// surrogates, at most U+10FFFF), or 0; its code point in *code_point when
// given.
size_t Utf8SequenceLength(const unsigned char* p, const unsigned char* end,
                          uint32_t* code_point = nullptr) {
  unsigned char c = *p;
  if (c < 0x80) {
    if (code_point) *code_point = c;
    return 1;
  }
  size_t extra;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    extra = 1;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    extra = 2;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    extra = 3;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (static_cast<size_t>(end - p) <= extra) return 0;
  for (size_t i = 1; i <= extra; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  if (code_point) *code_point = cp;
  return extra + 1;
}

// Quotes outside text for a message: at most 40 bytes, never cut inside a
// character, control characters and bytes that are not UTF-8 as \xNN, so
// the message is valid UTF-8 whatever came in.
std::string Quote(std::string_view text) {
  constexpr size_t kMax = 40;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = p + text.size();
  std::string out = "'";
  size_t i = 0;
  while (i < text.size() && i < kMax) {
    size_t len = Utf8SequenceLength(p + i, end);
    unsigned char c = p[i];
    if (len == 0 || c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
      ++i;
    } else if (i + len > kMax) {
      break;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  if (i < text.size()) out += "...";
  out += "'";
  return out;
}

}  // namespace

std::string QuoteForMessage(std::string_view text) { return Quote(text); }

std::string_view TrimAscii(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

const char* KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kNumeric:
      return "numeric";
    case KeyType::kCounter:
      return "counter";
    case KeyType::kBoolean:
      return "boolean";
    case KeyType::kUptime:
      return "uptime";
    case KeyType::kString:
      return "string";
  }
  return "unknown";
}

Result<KeyType> ParseKeyType(std::string_view name) {
  for (KeyType t : {KeyType::kNumeric, KeyType::kCounter, KeyType::kBoolean, KeyType::kUptime,
                    KeyType::kString}) {
    if (name == KeyTypeName(t)) return t;
  }
  return Status::InvalidArgument("unknown key type " + Quote(name) +
                                 " (expected numeric, counter, boolean, uptime or string)");
}

bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = p + text.size();
  while (p < end) {
    size_t len = Utf8SequenceLength(p, end);
    if (len == 0) return false;
    p += len;
  }
  return true;
}

Status ValidateKeyName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("key name is empty");
  if (name.size() > kMaxKeyNameBytes) {
    return Status::InvalidArgument("key name is " + std::to_string(name.size()) +
                                   " bytes long (at most " + std::to_string(kMaxKeyNameBytes) +
                                   "): " + Quote(name));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '\0') {
      return Status::InvalidArgument("key name contains a NUL byte at offset " + std::to_string(i));
    }
    if (c == '+' || c == '#') {
      return Status::InvalidArgument("key name " + Quote(name) + " contains the MQTT wildcard '" +
                                     std::string(1, c) + "' at offset " + std::to_string(i));
    }
  }
  if (!IsValidUtf8(name)) return Status::InvalidArgument("key name is not valid UTF-8");
  // A key name is part of MQTT topics (<prefix>/state/<key>): MQTT 5
  // (1.5.4) says a topic should hold no control character and no Unicode
  // noncharacter, and Mosquitto drops the connection of a client that
  // publishes one, so such a name would take Komoku off the broker.
  // One pass decodes and checks (this runs for every change stored).
  const auto* begin = reinterpret_cast<const unsigned char*>(name.data());
  const unsigned char* end = begin + name.size();
  for (const unsigned char* p = begin; p < end;) {
    uint32_t cp = 0;
    const size_t len = Utf8SequenceLength(p, end, &cp);
    const bool control = cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
    const bool noncharacter = (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE;
    if (control || noncharacter) {
      char code[16];
      std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(cp));
      return Status::InvalidArgument("key name " + Quote(name) + " contains the " +
                                     (control ? "control character " : "noncharacter ") + code +
                                     " at offset " + std::to_string(p - begin) +
                                     " (not allowed in MQTT topics)");
    }
    p += len;
  }
  return Status::Ok();
}

Result<double> ParseNumber(std::string_view text) {
  std::string_view t = TrimAscii(text);
  if (t.empty()) return Status::InvalidArgument("empty value where a number was expected");
  // strtod accepts "nan", "inf" and hex floats; the first character decides
  // before it gets the chance.
  char c0 = t[0];
  size_t sign = (c0 == '-' || c0 == '+') ? 1 : 0;
  if (t.size() <= sign || !((t[sign] >= '0' && t[sign] <= '9') || t[sign] == '.')) {
    return Status::InvalidArgument("value " + Quote(text) + " is not a number");
  }
  if (t.size() > sign + 1 && t[sign] == '0' && (t[sign + 1] == 'x' || t[sign + 1] == 'X')) {
    return Status::InvalidArgument("value " + Quote(text) + " is not a decimal number");
  }
  std::string copy(t);  // strtod needs a terminated string
  char* endp = nullptr;
  double v = std::strtod(copy.c_str(), &endp);
  if (endp != copy.c_str() + copy.size()) {
    return Status::InvalidArgument("value " + Quote(text) + " is not a number (trailing text)");
  }
  if (!std::isfinite(v)) {
    return Status::InvalidArgument("value " + Quote(text) + " is out of range");
  }
  return v;
}

const BooleanWords& BooleanWords::Default() {
  static const BooleanWords words;
  return words;
}

Result<bool> ParseBoolean(std::string_view text, const BooleanWords& words) {
  std::string_view t = TrimAscii(text);
  if (EqualsIgnoreCase(t, "true") || t == "1") return true;
  if (EqualsIgnoreCase(t, "false") || t == "0") return false;
  for (const std::string& w : words.true_words) {
    if (EqualsIgnoreCase(t, w)) return true;
  }
  for (const std::string& w : words.false_words) {
    if (EqualsIgnoreCase(t, w)) return false;
  }
  std::string known = "true/false, 1/0";
  for (size_t i = 0; i < words.true_words.size() || i < words.false_words.size(); ++i) {
    known += ", ";
    known += i < words.true_words.size() ? words.true_words[i] : "-";
    known += "/";
    known += i < words.false_words.size() ? words.false_words[i] : "-";
  }
  return Status::InvalidArgument("value " + Quote(text) + " is not a boolean (expected " + known +
                                 ")");
}

KeyType GuessType(const InputValue& input) {
  if (std::holds_alternative<double>(input)) return KeyType::kNumeric;
  if (std::holds_alternative<bool>(input)) return KeyType::kBoolean;
  const auto& s = std::get<std::string>(input);
  if (ParseNumber(s).ok()) return KeyType::kNumeric;
  std::string_view t = TrimAscii(s);
  if (EqualsIgnoreCase(t, "true") || EqualsIgnoreCase(t, "false")) return KeyType::kBoolean;
  return KeyType::kString;
}

Result<Value> CoerceValue(KeyType type, const InputValue& input, const BooleanWords& words) {
  switch (type) {
    case KeyType::kNumeric:
    case KeyType::kCounter: {
      if (const double* d = std::get_if<double>(&input)) {
        if (!std::isfinite(*d)) return Status::InvalidArgument("value is not a finite number");
        return Value(*d);
      }
      if (std::holds_alternative<bool>(input)) {
        return Status::InvalidArgument(std::string("a boolean is not a value for a ") +
                                       KeyTypeName(type) + " key");
      }
      Result<double> d = ParseNumber(std::get<std::string>(input));
      if (!d.ok()) return d.status();
      return Value(*d);
    }
    case KeyType::kBoolean:
    case KeyType::kUptime: {
      if (const bool* b = std::get_if<bool>(&input)) return Value(*b);
      if (const double* d = std::get_if<double>(&input)) {
        if (*d == 0) return Value(false);
        if (*d == 1) return Value(true);
        return Status::InvalidArgument(std::string("number is not a value for a ") +
                                       KeyTypeName(type) + " key (expected 0 or 1)");
      }
      Result<bool> b = ParseBoolean(std::get<std::string>(input), words);
      if (!b.ok()) return b.status();
      return Value(*b);
    }
    case KeyType::kString: {
      if (const auto* s = std::get_if<std::string>(&input)) {
        if (!IsValidUtf8(*s)) return Status::InvalidArgument("value is not valid UTF-8");
        return Value(*s);
      }
      if (const bool* b = std::get_if<bool>(&input)) {
        return Value(std::string(*b ? "true" : "false"));
      }
      return Value(ValueToText(Value(std::get<double>(input))));
    }
  }
  return Status::InvalidArgument("unknown key type");
}

std::string ValueToText(const Value& value) {
  if (const double* d = std::get_if<double>(&value)) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, *d);
    return std::string(buf, res.ptr);
  }
  if (const bool* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  return std::get<std::string>(value);
}

}  // namespace komoku::store

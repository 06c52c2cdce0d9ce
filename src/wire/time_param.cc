#include "wire/time_param.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <string>

#include "core/civil_time.h"
#include "core/duration.h"
#include "core/value.h"

namespace komoku::store {
namespace {

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// Reads exactly `n` digits at text[*pos].
bool Digits(std::string_view text, size_t* pos, size_t n, int* out) {
  if (*pos + n > text.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

Status Bad(std::string_view text, const char* why) {
  return Status::InvalidArgument("time " + QuoteForMessage(text) + " " + why +
                                 " (expected epoch seconds, now, -24h or ISO 8601)");
}

Result<int64_t> ParseIso(std::string_view t) {
  size_t p = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  int64_t millis = 0;
  if (!Digits(t, &p, 4, &year) || p >= t.size() || t[p++] != '-' || !Digits(t, &p, 2, &month) ||
      p >= t.size() || t[p++] != '-' || !Digits(t, &p, 2, &day)) {
    return Bad(t, "is not a date");
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12) return Bad(t, "has no such month");
  int max_day = kDays[month - 1] + (month == 2 && IsLeap(year) ? 1 : 0);
  if (day < 1 || day > max_day) return Bad(t, "has no such day");
  int64_t offset_minutes = 0;
  if (p < t.size() && (t[p] == 'T' || t[p] == ' ')) {
    ++p;
    if (!Digits(t, &p, 2, &hour) || p >= t.size() || t[p++] != ':' || !Digits(t, &p, 2, &minute)) {
      return Bad(t, "has a bad time of day");
    }
    if (p < t.size() && t[p] == ':') {
      ++p;
      if (!Digits(t, &p, 2, &second)) return Bad(t, "has bad seconds");
      if (p < t.size() && t[p] == '.') {
        ++p;
        size_t start = p;
        int64_t scale = 100;
        while (p < t.size() && std::isdigit(static_cast<unsigned char>(t[p]))) {
          millis += (t[p] - '0') * scale;
          scale /= 10;
          ++p;
        }
        if (p == start) return Bad(t, "has an empty fraction");
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return Bad(t, "has a bad time of day");
    if (p < t.size()) {
      char c = t[p];
      if (c == 'Z' || c == 'z') {
        ++p;
      } else if (c == '+' || c == '-') {
        ++p;
        int oh, om = 0;
        if (!Digits(t, &p, 2, &oh)) return Bad(t, "has a bad UTC offset");
        if (p < t.size() && t[p] == ':') ++p;
        if (p < t.size() && !Digits(t, &p, 2, &om)) return Bad(t, "has a bad UTC offset");
        if (oh > 23 || om > 59) return Bad(t, "has a bad UTC offset");
        offset_minutes = (c == '+' ? 1 : -1) * (oh * 60 + om);
      }
    }
  }
  if (p != t.size()) return Bad(t, "has trailing text");
  int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  return secs * 1000 + millis;
}

}  // namespace

Result<int64_t> ParseTimeParam(std::string_view text, int64_t now_ms) {
  if (text.empty()) return Bad(text, "is empty");
  if (text == "now") return now_ms;
  char c0 = text[0];
  // A relative time: a sign and a duration with its unit (ParseDuration, the
  // one duration grammar; the unit is required here, so "-24" is no time).
  if ((c0 == '-' || c0 == '+') && text.size() >= 2 &&
      std::isalpha(static_cast<unsigned char>(text.back()))) {
    Result<int64_t> d = ParseDuration(text.substr(1));
    if (!d.ok()) return Bad(text, "has a bad amount or unit (s, m, h, d or w)");
    return now_ms + (c0 == '-' ? -1 : 1) * *d;
  }
  if (text.size() >= 10 && text[4] == '-') return ParseIso(text);
  // Epoch seconds: decimal digits with at most one point (strtod alone would
  // also take hex, exponents, "inf" and "nan").
  if (text.find_first_not_of("0123456789.") != std::string_view::npos ||
      text.find('.') != text.rfind('.') || text == ".") {
    return Bad(text, "is not a time");
  }
  std::string copy(text);
  char* end = nullptr;
  double seconds = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size()) return Bad(text, "is not a time");
  if (!std::isfinite(seconds) || seconds > 1e11) return Bad(text, "is out of range");
  return static_cast<int64_t>(std::llround(seconds * 1000.0));
}

}  // namespace komoku::store

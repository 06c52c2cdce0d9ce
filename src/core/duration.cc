#include "core/duration.h"

#include <string>

namespace komoku::store {
namespace {

constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kWeek = 7 * kDay;

}  // namespace

Result<int64_t> ParseDuration(std::string_view text) {
  int64_t unit = 1000;
  std::string_view digits = text;
  if (text.size() > 2 && text.substr(text.size() - 2) == "ms") {
    unit = 1;
    digits.remove_suffix(2);
  } else if (!text.empty()) {
    switch (text.back()) {
      case 's':
        unit = 1000;
        digits.remove_suffix(1);
        break;
      case 'm':
        unit = kMinute;
        digits.remove_suffix(1);
        break;
      case 'h':
        unit = kHour;
        digits.remove_suffix(1);
        break;
      case 'd':
        unit = kDay;
        digits.remove_suffix(1);
        break;
      case 'w':
        unit = kWeek;
        digits.remove_suffix(1);
        break;
      default:
        break;
    }
  }
  // At most 9 digits: a billion weeks is still far from overflow.
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return Status::InvalidArgument(
        "'" + std::string(text) +
        "' is not a duration (e.g. 500ms, 30s, 10m, 24h, 7d, 1w, or seconds)");
  }
  return std::stoll(std::string(digits)) * unit;
}

}  // namespace komoku::store

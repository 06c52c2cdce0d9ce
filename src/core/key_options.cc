#include "core/key_options.h"

#include <cmath>

#include "core/duration.h"

namespace komoku::store {

Result<int64_t> OptionSecondsToMs(const std::string& name, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds > kMaxOptionSeconds) {
    return Status::InvalidArgument("option '" + name + "' must be 0.." +
                                   std::to_string(static_cast<int64_t>(kMaxOptionSeconds)) +
                                   " seconds")
        .WithReason("bad_option");
  }
  return static_cast<int64_t>(std::llround(seconds * 1000.0));
}

}  // namespace komoku::store

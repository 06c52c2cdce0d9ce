// libFuzzer target: store::ParseTimeParam, the parser of the API's time
// forms (HTTP query parameters, "from"/"to"/"time" in JSON queries).
//
// Any crash or sanitizer report (signed overflow included) is a bug; so is
// an accepted time outside what the forms can express, and a refusal whose
// message could not be sent back in a JSON answer (json::dump() throws on
// invalid UTF-8; the target lets it escape).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "fuzz_util.h"
#include "wire/time_param.h"

namespace {

using komoku::fuzz::Dump;
using komoku::fuzz::Require;

constexpr int64_t kNowMs = 1700000000000;  // a fixed "now"
// Relative forms reach +-999,999,999 weeks; ISO years 0000..9999.
constexpr int64_t kLimitMs = 999999999LL * 7 * 86400 * 1000 + kNowMs;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  komoku::Result<int64_t> t = komoku::store::ParseTimeParam(text, kNowMs);
  if (t.ok()) {
    Require(*t >= -kLimitMs && *t <= kLimitMs);
    if (text == "now") Require(*t == kNowMs);
    return 0;
  }
  Require(!t.status().message().empty());
  Dump({{"error", {{"code", "bad_time"}, {"message", t.status().message()}}}});
  return 0;
}

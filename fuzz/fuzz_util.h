// What the libFuzzer targets share: a check that traps (a crash libFuzzer
// reports with its input), and json::dump() as the transports call it.
#pragma once

#include <cstdlib>
#include <nlohmann/json.hpp>

namespace komoku::fuzz {

inline void Require(bool condition) {
  if (!condition) __builtin_trap();
}

// The transports' json::dump() throws on invalid UTF-8, so a target lets
// that escape: a message a transport cannot send is a bug. With
// KOMOKU_FUZZ_LENIENT_UTF8=1 it is replaced instead, so that a run can look
// past that one known finding (tests/wire/fuzz_regression_test.cc).
inline void Dump(const nlohmann::json& j) {
  static const bool lenient = std::getenv("KOMOKU_FUZZ_LENIENT_UTF8") != nullptr;
  (void)j.dump(
      -1, ' ', false,
      lenient ? nlohmann::json::error_handler_t::replace : nlohmann::json::error_handler_t::strict);
}

}  // namespace komoku::fuzz

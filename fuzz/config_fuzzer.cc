// libFuzzer target: app::ParseConfig, the YAML configuration (config.h).
//
// The input is the whole file. Any crash, sanitizer report, escaping
// exception or stack overflow is a bug: a bad file must become an error
// naming the line and the field, never a crash at start.
#include <cstddef>
#include <cstdint>
#include <string>

#include "app/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  komoku::Result<komoku::app::Config> config = komoku::app::ParseConfig(text, "fuzz.yaml");
  if (!config.ok() && config.status().message().empty()) __builtin_trap();
  return 0;
}

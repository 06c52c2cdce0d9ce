// libFuzzer target: pack, then read back (docs/keyka-format.md).
//
// The input is a list of keys separated by 0x0A 0x0A (so keys may hold single
// newlines and any other byte); they are sorted, de-duplicated, given values
// and packed to a scratch file. The result must verify, and every key must be
// found with its value, and every other probe must not.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "keyka/packer.h"
#include "keyka/reader.h"

namespace {

using komoku::fuzz::Require;

const std::string& ScratchPath() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/keyka-pack-fuzzer." +
           std::to_string(::getpid()) + ".keyka";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::map<std::string, uint64_t> pairs;
  uint64_t value = 0;
  while (true) {
    const size_t cut = input.find("\n\n");
    pairs.emplace(std::string(input.substr(0, cut)), value++ * 0x9E3779B97F4A7C15ull);
    if (cut == std::string_view::npos) break;
    input.remove_prefix(cut + 2);
  }
  komoku::keyka::PackerOptions options;
  options.sync = false;
  komoku::Result<komoku::keyka::Packer> packer =
      komoku::keyka::Packer::Create(ScratchPath(), options);
  Require(packer.ok());
  for (const auto& [key, v] : pairs) Require(packer->Add(key, v).ok());
  Require(packer->Finish().ok());

  komoku::Result<komoku::keyka::Reader> reader = komoku::keyka::Reader::Open(ScratchPath());
  Require(reader.ok());
  Require(reader->Verify().ok());
  for (const auto& [key, v] : pairs) {
    komoku::Result<uint64_t> got = reader->Get(key);
    Require(got.ok() && *got == v);
    const std::string longer = key + '\x01';
    Require(pairs.count(longer) != 0 || reader->Get(longer).status().IsNotFound());
  }
  size_t scanned = 0;
  for (komoku::keyka::Iterator it = reader->All(); it.Valid(); it.Next()) ++scanned;
  Require(scanned == pairs.size());
  return 0;
}

// Helpers shared by the KeyKa unit tests: temporary directories, files,
// hex, TSV golden inputs and packing a std::map.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "keyka/packer.h"

namespace komoku::keyka::testing {

using Pairs = std::vector<std::pair<std::string, uint64_t>>;

// A fresh directory under $TMPDIR (or /tmp), removed with its files.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Names of the entries in the directory.
  std::vector<std::string> List() const;

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, std::string_view bytes);

std::string HexDecode(std::string_view hex);
std::string HexEncode(std::string_view bytes);

// The golden data directory (tests/data/keyka).
std::string DataDir();
// The pairs of a golden TSV; keys are hex when `hex`.
Pairs LoadTsv(const std::string& path, bool hex);

// Packs `pairs` (sorted) into `path` without fsync.
Status PackPairs(const std::string& path, const Pairs& pairs);
Status PackMap(const std::string& path, const std::map<std::string, uint64_t>& map);
// Packs into a file of `dir` and returns the bytes.
std::string PackToBytes(const TempDir& dir, const Pairs& pairs);

}  // namespace komoku::keyka::testing

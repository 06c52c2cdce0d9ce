// libFuzzer target: keyka::Reader on arbitrary bytes (docs/keyka-format.md).
//
// The input is the file image; when it does not start with the KeyKa v0 magic
// the magic is put in front, so that random inputs reach the tree code. The
// target opens, verifies, scans forward and backward, and runs exact, nearest,
// range and prefix queries. Any crash, sanitizer report or hang is a bug; so
// is a file that Verify() accepts but whose lookups disagree with its own
// forward scan (the target then traps).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "keyka/format.h"
#include "keyka/reader.h"

namespace {

using komoku::Result;
using komoku::keyka::Entry;
using komoku::keyka::Iterator;
using komoku::keyka::Nearest;
using komoku::keyka::Reader;

using komoku::fuzz::Require;

// For a verified file: every answer matches `oracle`.
void CheckProbe(const Reader& reader, const std::map<std::string, uint64_t>& oracle,
                const std::string& probe) {
  Result<uint64_t> got = reader.Get(probe);
  auto exact = oracle.find(probe);
  Require(exact == oracle.end() ? got.status().IsNotFound() : got.ok() && *got == exact->second);
  auto ge = oracle.lower_bound(probe);
  auto gt = oracle.upper_bound(probe);
  auto check = [&](Nearest dir, std::map<std::string, uint64_t>::const_iterator want, bool none) {
    Result<Entry> e = reader.Find(probe, dir);
    if (none) {
      Require(e.status().IsNotFound());
    } else {
      Require(e.ok() && e->key == want->first && e->value == want->second);
    }
  };
  check(Nearest::kGe, ge, ge == oracle.end());
  check(Nearest::kGt, gt, gt == oracle.end());
  check(Nearest::kLe, gt == oracle.begin() ? gt : std::prev(gt), gt == oracle.begin());
  check(Nearest::kLt, ge == oracle.begin() ? ge : std::prev(ge), ge == oracle.begin());
  size_t in_prefix = 0;
  for (Iterator it = reader.Prefix(probe); it.Valid(); it.Next()) {
    Require(it.key().substr(0, probe.size()) == probe);
    ++in_prefix;
  }
  size_t want_prefix = 0;
  for (auto it = ge; it != oracle.end() && it->first.compare(0, probe.size(), probe) == 0; ++it) {
    ++want_prefix;
  }
  Require(in_prefix == want_prefix);
}

void Run(std::string_view bytes, std::string_view tail) {
  Result<Reader> opened = Reader::FromBytes(bytes, "fuzz");
  if (!opened.ok()) return;
  const Reader& reader = *opened;
  const bool sound = reader.Verify().ok();

  std::map<std::string, uint64_t> scanned;
  Iterator it = reader.All();
  for (; it.Valid(); it.Next()) scanned.emplace(std::string(it.key()), it.value());
  Require(!sound || it.status().ok());
  size_t backward = 0;
  for (it.SeekToLast(); it.Valid(); it.Prev()) ++backward;
  Require(!sound || backward == scanned.size());

  std::vector<std::string> probes = {"", std::string(tail), std::string(1, '\xff')};
  size_t taken = 0;
  for (const auto& kv : scanned) {
    if (++taken > 32) break;
    probes.push_back(kv.first);
    probes.push_back(kv.first + '\0');
    probes.push_back(kv.first.substr(0, kv.first.size() / 2));
  }
  for (const std::string& probe : probes) {
    if (sound) {
      CheckProbe(reader, scanned, probe);
    } else {
      (void)reader.Get(probe);
      for (Nearest dir : {Nearest::kGe, Nearest::kGt, Nearest::kLe, Nearest::kLt}) {
        (void)reader.Find(probe, dir);
      }
      Iterator p = reader.Prefix(probe);
      for (int steps = 0; p.Valid() && steps < 64; ++steps) p.Next();
      for (p.SeekToLast(); p.Valid(); p.Prev()) {
      }
    }
    Iterator r = reader.Range(probe, std::string(tail));
    for (int steps = 0; r.Valid() && steps < 64; ++steps) r.Next();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string_view tail = input.substr(size > 16 ? size - 16 : 0);
  if (size >= komoku::keyka::kMagicSize &&
      std::memcmp(data, komoku::keyka::kMagic, komoku::keyka::kMagicSize) == 0) {
    // Run on an exact-size copy so that any read past the end is caught.
    const std::vector<char> copy(input.begin(), input.end());
    Run(std::string_view(copy.data(), copy.size()), tail);
  } else {
    std::vector<char> framed(komoku::keyka::kMagic,
                             komoku::keyka::kMagic + komoku::keyka::kMagicSize);
    framed.insert(framed.end(), input.begin(), input.end());
    Run(std::string_view(framed.data(), framed.size()), tail);
  }
  return 0;
}

#include "oracle.h"

#include <cstdlib>
#include <iostream>
#include <iterator>
#include <optional>
#include <vector>

#include "test_util.h"

namespace komoku::keyka::testing {
namespace {

using Item = std::pair<std::string, uint64_t>;

std::string Show(std::string_view key) { return "'" + HexEncode(key) + "'"; }

std::string CompareFound(const char* what, std::string_view probe, const Result<Entry>& got,
                         Oracle::const_iterator want, const Oracle& oracle) {
  const std::string prefix = std::string(what) + " " + Show(probe) + ": ";
  if (want == oracle.end()) {
    if (got.ok()) return prefix + "found " + Show(got->key) + ", expected none";
    if (!got.status().IsNotFound()) return prefix + got.status().ToString();
    return "";
  }
  if (!got.ok()) return prefix + got.status().ToString() + ", expected " + Show(want->first);
  if (got->key != want->first || got->value != want->second) {
    return prefix + "found " + Show(got->key) + "=" + std::to_string(got->value) + ", expected " +
           Show(want->first) + "=" + std::to_string(want->second);
  }
  return "";
}

Oracle::const_iterator Before(const Oracle& oracle, Oracle::const_iterator it) {
  return it == oracle.begin() ? oracle.end() : std::prev(it);
}

// Drains `it` forward, then from its last key backward.
std::string CheckIterator(Iterator it, const std::vector<Item>& want, const std::string& what) {
  std::vector<Item> got;
  for (; it.Valid(); it.Next()) {
    got.emplace_back(std::string(it.key()), it.value());
    if (got.size() > want.size() + 1) break;
  }
  if (!it.status().ok()) return what + ": " + it.status().ToString();
  if (got != want) {
    return what + ": forward scan gave " + std::to_string(got.size()) + " keys, expected " +
           std::to_string(want.size());
  }
  got.clear();
  for (it.SeekToLast(); it.Valid(); it.Prev()) {
    got.emplace_back(std::string(it.key()), it.value());
    if (got.size() > want.size() + 1) break;
  }
  if (!it.status().ok()) return what + ": " + it.status().ToString();
  if (std::vector<Item>(got.rbegin(), got.rend()) != want) {
    return what + ": backward scan gave " + std::to_string(got.size()) + " keys, expected " +
           std::to_string(want.size());
  }
  return "";
}

}  // namespace

std::string CheckProbe(const Reader& reader, const Oracle& oracle, std::string_view probe) {
  const std::string key(probe);
  const auto exact = oracle.find(key);
  Result<uint64_t> got = reader.Get(probe);
  if (exact == oracle.end()) {
    if (!got.status().IsNotFound()) {
      return "Get " + Show(probe) + ": " + (got.ok() ? "found" : got.status().ToString()) +
             ", expected NotFound";
    }
  } else if (!got.ok() || *got != exact->second) {
    return "Get " + Show(probe) + ": " + (got.ok() ? "wrong value" : got.status().ToString());
  }
  const auto ge = oracle.lower_bound(key);
  const auto gt = oracle.upper_bound(key);
  std::string err = CompareFound("ge", probe, reader.Find(probe, Nearest::kGe), ge, oracle);
  if (err.empty()) err = CompareFound("gt", probe, reader.Find(probe, Nearest::kGt), gt, oracle);
  if (err.empty()) {
    err = CompareFound("le", probe, reader.Find(probe, Nearest::kLe), Before(oracle, gt), oracle);
  }
  if (err.empty()) {
    err = CompareFound("lt", probe, reader.Find(probe, Nearest::kLt), Before(oracle, ge), oracle);
  }
  return err;
}

std::string CheckRange(const Reader& reader, const Oracle& oracle, std::string_view from,
                       std::string_view to) {
  std::vector<Item> want;
  if (from < to) {
    for (auto it = oracle.lower_bound(std::string(from));
         it != oracle.end() && std::string_view(it->first) < to; ++it) {
      want.push_back(*it);
    }
  }
  return CheckIterator(reader.Range(from, to), want,
                       "range [" + Show(from) + ", " + Show(to) + ")");
}

std::string CheckPrefix(const Reader& reader, const Oracle& oracle, std::string_view prefix) {
  std::vector<Item> want;
  for (auto it = oracle.lower_bound(std::string(prefix));
       it != oracle.end() && std::string_view(it->first).substr(0, prefix.size()) == prefix; ++it) {
    want.push_back(*it);
  }
  return CheckIterator(reader.Prefix(prefix), want, "prefix " + Show(prefix));
}

uint64_t TestSeed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("KOMOKU_TEST_SEED");
    uint64_t s = env != nullptr ? std::strtoull(env, nullptr, 10)
                                : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
    std::cout << "[ SEED     ] KOMOKU_TEST_SEED=" << s << " replays this run\n";
    return s;
  }();
  return seed;
}

std::string RandomKey(std::mt19937_64& rng, size_t max_size) {
  static constexpr unsigned char kFavoured[] = {0x00, 0x01, 'a', 'b', 0xFE, 0xFF};
  const size_t size = rng() % (max_size + 1);
  std::string key;
  for (size_t i = 0; i < size; ++i) {
    const auto byte =
        rng() % 10 < 7 ? kFavoured[rng() % sizeof(kFavoured)] : static_cast<unsigned char>(rng());
    key.push_back(static_cast<char>(byte));
  }
  return key;
}

}  // namespace komoku::keyka::testing

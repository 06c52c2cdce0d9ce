// Oracle checks: a Reader's answers against a std::map of the same pairs.
// Each returns an empty string when everything agrees, else the first
// disagreement, so callers can add the seed or file to the failure.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>

#include "keyka/reader.h"

namespace komoku::keyka::testing {

using Oracle = std::map<std::string, uint64_t>;

// Get and the four Nearest directions for `probe`.
std::string CheckProbe(const Reader& reader, const Oracle& oracle, std::string_view probe);
// Range [from, to), forward and backward.
std::string CheckRange(const Reader& reader, const Oracle& oracle, std::string_view from,
                       std::string_view to);
// Prefix scan, forward and backward.
std::string CheckPrefix(const Reader& reader, const Oracle& oracle, std::string_view prefix);

// The seed for randomized tests: $KOMOKU_TEST_SEED when set, else random.
// Prints it so that a failing run can be replayed.
uint64_t TestSeed();

// A short random key favouring 0x00, 0xFF and a small alphabet, so that
// equal prefixes and prefix-of relations are common.
std::string RandomKey(std::mt19937_64& rng, size_t max_size = 10);

}  // namespace komoku::keyka::testing

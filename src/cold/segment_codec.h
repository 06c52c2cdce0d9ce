// The block codecs of cold segments (docs/segment-format.md): how raw
// changes, rollups and the per-key metadata become block payloads, and back.
// The container (header, block framing, checksums, the KeyKa index) lives in
// segment.cc; this file knows nothing of files.
//
// Payloads are bit streams (least significant bit first) built from a few
// coders chosen per block by the bits they cost:
// - integer series: order 0, 1 or 2 differences minus a per-block stride,
//   zigzag, Golomb-Rice with a per-block parameter;
// - doubles: scaled decimal integers (10^k, k <= 6) through the integer
//   coder, exact or with per-value ULP corrections, else Gorilla XOR;
// - booleans: one bit each; strings: a per-block dictionary, or plain.
//
// Decoders take the payload's bytes and never read past them; every count is
// checked against the bits left, so a damaged payload gives Corruption, never
// a crash or a huge allocation. The container checks a CRC first, so these
// checks guard against bugs and crafted files more than against bit rot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cold/segment.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "core/value.h"

namespace komoku::store::segment_internal {

// CRC-32C (common/crc32c.h), the checksum of every block and of the header.
using ::komoku::Crc32c;

// Everything of a key except its raw changes and rollups, as the metadata
// block stores it.
struct KeyRecord {
  // The key's name, repeated here so that a reader can tell that the index
  // record leading to this block was not damaged into another valid name.
  std::string name;
  KeyType type = KeyType::kNumeric;
  int64_t stale_after_ms = 0;
  double reset_tolerance = 0;
  std::optional<Sample> carry;
  bool raw_dropped = false;
  uint64_t changes = 0;
  int64_t first_ms = 0, last_ms = 0;  // meaningful when changes > 0
  uint64_t raw_bytes = 0;             // bytes of the raw blocks, framing included
  uint64_t rollup_bytes = 0;          // bytes of the rollup blocks, framing included
  struct Resolution {
    int64_t resolution_ms = 0;
    uint64_t rollups = 0;
  };
  // In the order the writer got them; the index names rollup blocks by the
  // position in this list.
  std::vector<Resolution> resolutions;
};

std::string EncodeKeyMeta(const KeyRecord& meta);
Result<KeyRecord> DecodeKeyMeta(std::string_view payload);

// True when `value` holds the variant `type` uses.
bool ValueMatchesType(KeyType type, const Value& value);

// Raw changes, all of `type` (the caller checked), times non-decreasing.
std::string EncodeRawBlock(KeyType type, const Sample* samples, size_t n);
// Appends the block's changes to *out.
Status DecodeRawBlock(KeyType type, std::string_view payload, std::vector<Sample>* out);

// Rollups of one resolution, starts strictly increasing, in the newest
// format; the decoder reads the block of a file of `version` (1 has no
// first_ms and shared_times: first_ms is left unknown).
std::string EncodeRollupBlock(KeyType type, const Rollup* rollups, size_t n);
// Appends the block's rollups to *out.
Status DecodeRollupBlock(KeyType type, std::string_view payload, uint32_t version,
                         std::vector<Rollup>* out);

// A rollup block decoded column by column, for a reader that walks its
// rollups once: a Rollup is ~250 bytes, so a month of hourly rollups as a
// vector is a fresh 190 KB mapping per block (main.cc's M_MMAP_THRESHOLD),
// whose page faults cost more than the decoding; its columns are a few KB
// each and their storage is reused from block to block.
class RollupColumns {
 public:
  // Decodes a whole block (nothing of a damaged block is kept: size() 0).
  Status Decode(KeyType type, std::string_view payload, uint32_t version);
  size_t size() const { return n_; }
  int64_t start_ms(size_t i) const { return static_cast<int64_t>(start_[i]); }
  // Fills *out with rollup i, reusing its storage; moves i's values and
  // texts out, so each rollup is taken once.
  void Take(size_t i, Rollup* out);

 private:
  // first_offset_ of a format-1 block: first_ms unknown.
  static constexpr uint64_t kUnknownFirst = ~uint64_t{0};

  size_t n_ = 0;
  std::vector<uint64_t> start_, count_, changes_, known_, unknown_, entries_, ms_;
  std::vector<uint64_t> first_offset_, shared_, entry_begin_;
  std::vector<std::optional<Value>> first_, last_;
  std::vector<double> sum_, min_, max_, integral_, increase_, high_;
  std::vector<std::string> texts_;
};

}  // namespace komoku::store::segment_internal

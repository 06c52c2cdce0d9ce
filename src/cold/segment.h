// Cold segments: immutable files holding the compacted history of many keys
// over one time range [from_ms, to_ms): raw changes, compactly encoded, and
// rollups (per-bucket summaries) at a few resolutions. See
// docs/segment-format.md for the bytes.
//
// A segment is two files written once and never edited:
//   <name>.kkd  the data file: a header and checksummed blocks;
//   <name>.kki  the index: a KeyKa v0 file (src/keyka) whose keys are
//               "<key name>\0<record kind><big-endian time>" and whose values
//               locate blocks in the data file.
// The cold store (cold_store.h) decides which segments are live; this file
// only writes and reads one.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "core/rollup.h"
#include "core/value.h"

namespace komoku::store {

// Everything a segment holds of one key.
struct SegmentKeyData {
  std::string key;
  KeyType type = KeyType::kNumeric;
  // The options the rollups were computed with. When the key's change, a
  // compaction computes the rollups again while the raw changes are kept;
  // until then the raw changes answer, and once they are gone these
  // rollups answer as under these options (Store::RollupCoverage).
  int64_t stale_after_ms = 0;
  double reset_tolerance = 0;
  // The change in force at the segment's from_ms (its time is before
  // from_ms), kept so that the state at the start of the segment is known
  // even when older segments are gone.
  std::optional<Sample> carry;
  // Raw changes with from_ms <= time < to_ms, oldest first (ties in the
  // order they were put). May be empty when retention dropped them
  // (raw_dropped) or the key did not change in the range.
  std::vector<Sample> changes;
  // True when the raw changes of this range were dropped by retention; the
  // rollups (and carry) are then all that is left.
  bool raw_dropped = false;
  // Rollups per resolution (kRollupResolutionsMs), each sorted by start_ms,
  // covering the buckets of [from_ms, to_ms) where the key was known or
  // changed. Resolutions retention dropped are absent.
  std::vector<std::pair<int64_t, std::vector<Rollup>>> rollups;
};

struct SegmentMeta {
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  // Every change with a sequence number up to this, and a time in the range,
  // is in the segment (or was dropped by retention).
  uint64_t max_seq = 0;
};

struct SegmentWriteOptions {
  // fsync the files (and their directory) before returning. Tests may turn it off.
  bool sync = true;
};

// Writes a segment as `<base>.kkd` and `<base>.kki`: keys are added in
// increasing order of name; each file is written under a temporary name,
// synced and renamed into place by Finish(). Destroying an unfinished writer
// removes its temporary files.
class SegmentWriter {
 public:
  static Result<std::unique_ptr<SegmentWriter>> Create(const std::string& base,
                                                       const SegmentMeta& meta,
                                                       const SegmentWriteOptions& options = {});
  virtual ~SegmentWriter() = default;
  // Refused (InvalidArgument) for a name not greater than the last one, or
  // changes out of time order or outside the range, values not of the key's
  // type, rollup starts not increasing; a refused key writes nothing and the
  // writer stays usable. An I/O error is sticky: later calls return it.
  virtual Status AddKey(const SegmentKeyData& data) = 0;
  virtual Status Finish() = 0;
  // Bytes written so far to both files.
  virtual uint64_t bytes() const = 0;
};

// What a segment holds of one key, for listings.
struct SegmentKeyInfo {
  std::string key;
  KeyType type = KeyType::kNumeric;
  uint64_t changes = 0;                      // raw changes
  uint64_t raw_bytes = 0;                    // bytes of raw blocks
  uint64_t rollup_bytes = 0;                 // bytes of rollup blocks
  std::optional<int64_t> first_ms, last_ms;  // times of the first and last raw change
  // The options the rollups were computed with, and whether retention
  // dropped the raw changes (SegmentKeyData).
  int64_t stale_after_ms = 0;
  double reset_tolerance = 0;
  bool raw_dropped = false;
};

// The per-key record of a segment: what a reader needs to know before
// using the key's rollups (were they computed with the options the key has
// now?) or its state at the start of the segment.
struct SegmentKeyMeta {
  KeyType type = KeyType::kNumeric;
  int64_t stale_after_ms = 0;
  double reset_tolerance = 0;
  bool raw_dropped = false;
  std::optional<Sample> carry;
};

// A block of a segment that failed its checks (bounds, framing, checksum,
// decoding, agreement with the index and the key's metadata), and the
// history it held, now missing from answers: `key`'s `part` over
// [from_ms, to_ms).
struct BlockDamage {
  enum class Part {
    kKey,      // the key's metadata block: all of the key in this segment
    kRaw,      // a raw block: the key's changes from its first time to the next block's
    kRollups,  // a rollup block: the key's rollups at resolution_ms over the range
  };
  std::string key;
  Part part = Part::kKey;
  int64_t resolution_ms = 0;  // kRollups only
  int64_t from_ms = 0, to_ms = 0;
  uint64_t offset = 0;  // of the block in the data file
  std::string reason;   // what failed, e.g. "checksum mismatch"
};

// "raw changes", "5 min rollups", "all history".
std::string DamagedPartName(const BlockDamage& damage);

// A segment open for reading: both files mapped. Thread-safe: immutable but
// for the record of damaged blocks found so far, which has its own lock.
//
// Damage stays small (docs/segment-format.md, "Damage"): every read checks
// the bounds and checksum of each block it decodes. A data block that fails
// is left out of the answer and recorded (Damage()); the rest of the key and
// every other key answer as before. Only damage that cannot be pinned on a
// block (the index, the header) makes reads return Corruption, naming the
// file and the place; a damaged file never crashes a reader.
class Segment {
 public:
  static Result<std::shared_ptr<const Segment>> Open(const std::string& base);
  virtual ~Segment() = default;

  virtual const SegmentMeta& meta() const = 0;
  virtual const std::string& base() const = 0;
  // The format version the files were written in: kSegmentFormatVersion, or
  // an older one still read (docs/segment-format.md, "Versions").
  virtual uint32_t format_version() const = 0;
  // Bytes of both files.
  virtual uint64_t file_bytes() const = 0;

  // Checks everything: the index is valid KeyKa, every block's checksum,
  // every block decodes and agrees with the index and the key's metadata.
  // Corruption with the place of the first problem.
  Status Verify() const { return Verify({}); }
  // The same, asking `go_on` every few hundred blocks and records whether to
  // go on: once it says no, Busy ("check stopped"), and nothing is known.
  virtual Status Verify(const std::function<bool()>& go_on) const = 0;
  // Checks everything as Verify does, and says what is lost: each damaged
  // block with the key and range it held (also recorded, see Damage()); an
  // empty list when all is well. Corruption when the damage cannot be pinned
  // on blocks (the index is not valid KeyKa, the blocks do not tile the data
  // file): then nothing of the segment can be trusted. Busy when `go_on`
  // said stop.
  virtual Result<std::vector<BlockDamage>> Check(const std::function<bool()>& go_on) const = 0;
  // The damaged blocks found so far, by Check() or by reads, in file order.
  virtual std::vector<BlockDamage> Damage() const = 0;
  // Gives back the resident pages of both mapped files (after Verify, which
  // reads them all); later reads map what they need again.
  virtual void ReleasePages() const = 0;

  // Every key in name order, from the index and each key's metadata block
  // (one lookup per key). A key whose metadata block is damaged is left out
  // (and recorded); a damaged index stops the listing.
  virtual std::vector<SegmentKeyInfo> Keys() const = 0;
  virtual bool HasKey(std::string_view key) const = 0;
  // The key's record (one index lookup and one small block); nullopt when the
  // segment lacks the key; Corruption when its block is damaged.
  virtual Result<std::optional<SegmentKeyMeta>> KeyMeta(std::string_view key) const = 0;

  // Raw changes of `key` with from_ms <= time < to_ms, oldest first, until
  // `fn` returns false. OK and nothing for a key the segment lacks.
  virtual Status Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
                      const std::function<bool(const Sample&)>& fn) const = 0;
  // The last raw change of `key` at or before `time_ms` in this segment; if
  // there is none, the key's carry when it is at or before time_ms; else
  // nullopt. When the block that would say is damaged, NotFound with reason
  // kDataLost: the value at time_ms is not known (an older segment does not
  // know better).
  virtual Result<std::optional<Sample>> At(std::string_view key, int64_t time_ms) const = 0;
  // The rollups of `key` at `resolution_ms` with from_ms <= start < to_ms,
  // oldest first, until `fn` returns false.
  virtual Status ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms,
                             int64_t to_ms, const std::function<bool(const Rollup&)>& fn) const = 0;
  // Everything of one key (for rewriting segments); NotFound when absent.
  // Corruption for a damaged block of the key, unless `skip_damaged`: then
  // damaged raw and rollup blocks are left out (and recorded), and only a
  // damaged metadata block is an error (salvage, cold_store.h).
  virtual Result<SegmentKeyData> ReadKey(std::string_view key, bool skip_damaged = false) const = 0;
};

// The segment format the writer writes. 2: rollup blocks also hold first_ms
// and shared_times; version 1 is still read (its rollups' first_ms
// unknown), and compaction rewrites its rollups (Store::RefreshRollups).
inline constexpr uint32_t kSegmentFormatVersion = 2;

// The reason (Status::reason()) of a read that cannot answer because the
// block holding the answer is damaged.
inline constexpr const char* kDataLost = "data_lost";
// The reason of a Corruption pinned on one data block.
inline constexpr const char* kDamagedBlock = "damaged_block";

}  // namespace komoku::store

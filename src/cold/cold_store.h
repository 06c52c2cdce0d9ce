// The cold store: the set of live segments (segment.h) and what they hold,
// recorded in a MANIFEST file that is the one commit point of every change to
// the set. The Store (src/store) owns it and decides what goes in
// (store/compaction.cc). See docs/storage.md, "Cold history".
//
// Crash safety: new segment files are written and synced first, then the
// manifest is replaced (temporary file, fsync, rename, fsync of the
// directory). A segment file the manifest does not name is a leftover of a
// step that did not commit, and is deleted at open; one the manifest no
// longer names is deleted after the commit. Rows of the hot store the cold
// store holds (see ColdMark) are deleted after the commit, and again at open.
#pragma once

#include <spdlog/logger.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cold/cold_listing.h"
#include "cold/segment.h"
#include "common/status.h"
#include "core/cold_mark.h"
#include "core/metrics.h"
#include "core/rollup.h"
#include "core/value.h"

namespace komoku::store {

// A key deleted while the cold store held some of its history: segments
// written before the deletion (max_seq < seq) no longer show it.
struct Tombstone {
  std::string key;
  uint64_t seq = 0;
};

// One state of the cold store, immutable once made: readers take a
// shared_ptr and keep reading it while compaction makes the next.
struct ColdState {
  // Everything with time < cold_to and sequence number <= cold_seq is here.
  int64_t cold_to = INT64_MIN;
  uint64_t cold_seq = 0;
  // Live segments sorted by from_ms; their ranges do not overlap.
  std::vector<std::shared_ptr<const Segment>> segments;
  std::vector<Tombstone> tombstones;
  // History lost to damage and left out by a salvage (recorded in the
  // manifest, so that it stays known across rewrites and restarts).
  std::vector<ColdDamage> lost;
  // The next segment file's generation number.
  uint64_t next_gen = 1;

  ColdMark mark() const { return {cold_to, cold_seq}; }
  // True when `segment` shows nothing of `key` (deleted since it was written).
  bool Hidden(const Segment& segment, std::string_view key) const;
  // True when `key`'s rollups in `segment` have a hole: a damaged rollup or
  // metadata block, or one a salvage left out in its range. Such rollups
  // must not answer (Store::RollupCoverage).
  bool RollupsDamaged(const Segment& segment, std::string_view key) const;
  // Every damaged block of the live segments found so far and every lost
  // range recorded by salvages, without keys deleted since.
  std::vector<ColdDamage> Damage() const;
  // True when the key of a salvage's record was deleted since (as Hidden).
  bool LostRecordHidden(const ColdDamage& d) const;

  // Raw changes of `key` with from <= time < to, oldest first; a damaged
  // block's changes are left out (see Damage()).
  Status Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
              const std::function<bool(const Sample&)>& fn) const;
  // The last change of `key` at or before `time_ms` (a segment's carry
  // counts); nullopt also when the block that would say is damaged.
  Result<std::optional<Sample>> At(std::string_view key, int64_t time_ms) const;
  Status ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms, int64_t to_ms,
                     const std::function<bool(const Rollup&)>& fn) const;
};

// The live segments of a state, oldest first, without hidden keys.
std::vector<SegmentListing> ListSegments(const ColdState& state);

struct ColdStoreOptions {
  // The directory of the segments and the MANIFEST; created if missing.
  std::string dir;
  // Where damaged segments are moved.
  std::string quarantine_dir;
  // fsync files and directories (tests may turn it off).
  bool sync = true;
  // Look, never touch: no leftover is removed and nothing is quarantined
  // (for `komoku segments` beside a running service).
  bool read_only = false;
};

class ColdStore {
 public:
  // Reads the manifest (none: an empty cold store), opens every segment it
  // names (a damaged one is quarantined), and deletes leftover files.
  static Result<std::unique_ptr<ColdStore>> Open(const ColdStoreOptions& options,
                                                 std::shared_ptr<spdlog::logger> log,
                                                 Metrics* metrics);

  std::shared_ptr<const ColdState> state() const;

  // The path base (without .kkd/.kki) for a new segment of [from, to).
  std::string NewSegmentBase(const ColdState& state, int64_t from_ms, int64_t to_ms) const;

  // Makes `next` the live state: writes the manifest, swaps, then deletes
  // the files of segments no longer live (after the swap, a reader still
  // holding the old state keeps its mapped files).
  Status Commit(const std::shared_ptr<const ColdState>& next);
  // Deletes the files of the segments in `next` that the live state does
  // not hold: what a step wrote and then did not commit (an error, or a stop
  // that cut it short). After a successful Commit(next) it deletes nothing.
  void DiscardUncommitted(const ColdState& next);

  // Takes a damaged segment out of the live state and moves its files to
  // the quarantine directory, with an error in the log. `why` says what
  // failed.
  void Quarantine(const Segment& segment, const Status& why);
  // Messages about quarantined segments since the start (for health checks).
  std::vector<std::string> Warnings() const;
  // Sets komoku_segment_damaged_blocks to the blocks of the live state known
  // damaged (after a check, which may have found more).
  void UpdateDamageMetric();

  // What Salvage() did.
  struct SalvageReport {
    std::string segment;            // the damaged segment
    std::string replacement;        // the segment written without the damaged blocks
    std::string kept_aside;         // where the damaged files are kept (path without extension)
    std::vector<BlockDamage> lost;  // history left out, now recorded in the manifest
    std::vector<BlockDamage> recovered;  // damaged rollups computed again from intact raw changes
    size_t keys = 0;                     // keys written to the replacement
  };
  // Rewrites the live segment `name` (a file name without extension)
  // without its damaged blocks: every intact block is kept; a key's damaged
  // rollups are computed again when its raw changes in the segment are all
  // intact; what cannot be recovered is recorded as lost. Crash-safe like a
  // compaction: the replacement is written and synced, the damaged files are
  // hard-linked into the quarantine directory as `<name>.damaged.kkd/.kki`
  // (never deleted), then the manifest commits the switch. InvalidArgument
  // when the segment has no damaged block; Corruption when its damage cannot
  // be pinned on blocks (nothing to keep). Not for a running service: the
  // caller holds the data directory (komoku segments --salvage).
  // `recompute` computes rollups again (history.h ComputeRollups: the cold
  // store sits below the history mathematics, so it is handed in).
  Result<SalvageReport> Salvage(const std::string& name, const RollupFn& recompute);

  const ColdStoreOptions& options() const { return options_; }

 private:
  ColdStore(const ColdStoreOptions& options, std::shared_ptr<spdlog::logger> log, Metrics* metrics);
  Status WriteManifest(const ColdState& state);
  // Moves a segment's files to the quarantine directory, with a log line, a
  // warning and a count.
  void MoveToQuarantine(const std::string& base, const Status& why);
  void RemoveSegmentFiles(const std::string& base);
  void UpdateMetrics(const ColdState& state);

  const ColdStoreOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  Metrics* metrics_;

  // Serializes Commit and Quarantine (the writers of the manifest).
  std::mutex commit_mu_;
  mutable std::mutex mu_;
  std::shared_ptr<const ColdState> state_;  // guarded by mu_
  std::vector<std::string> warnings_;       // guarded by mu_
};

}  // namespace komoku::store

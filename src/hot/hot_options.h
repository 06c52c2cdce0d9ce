// The hot store's tuning (hot_store.h): how often it commits, checkpoints,
// deletes and folds. Part of StoreOptions; apart from the hot store so that
// the Store's header needs none of SQLite.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace komoku::store {

struct HotStoreOptions {
  // Commit at least this often while changes wait and nobody waits for them.
  std::chrono::milliseconds commit_interval{1000};
  // Commit as soon as this many rows wait.
  size_t commit_max_rows = 4000;
  // How often the WAL is checkpointed (and so fsynced) in the background.
  std::chrono::milliseconds checkpoint_interval{10000};
  // Rows compaction made cold are deleted at most this many (by rowid
  // range) per commit, beside the changes of that commit, so a big deletion
  // never holds up ingest for long.
  int64_t delete_chunk_rows = 20000;
  // Changes land first in a table kept in arrival order without an index
  // ("recent"), where the changes of one commit share pages whatever their
  // keys; they move into the indexed table in one go ("a fold") once this
  // many wait there, or the oldest has waited fold_interval. A key's index
  // leaf is then written once for many of its changes instead of once a
  // change. See docs/storage.md, "What a change costs the disk".
  int64_t fold_rows = 20000;
  std::chrono::milliseconds fold_interval{30 * 60 * 1000};
  // Rows with a sequence number above this are kept when compaction made
  // them cold (reads skip them as usual), so a reader of changes by
  // sequence number (remote write) finds every change it has not yet taken;
  // HotStore::KeepRowsAfter moves it on. UINT64_MAX keeps nothing back.
  uint64_t keep_rows_after = UINT64_MAX;
};

}  // namespace komoku::store

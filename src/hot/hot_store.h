// The SQLite hot store: the keys table and the change history, written by one
// writer thread in group transactions, read through a separate connection.
// The Store (src/store) owns it. Thread-safe.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL and no
// automatic checkpoint on the writer connection. A commit appends to the WAL
// (a write(), no fsync), so a crash of the process loses nothing committed; a
// background thread checkpoints every `checkpoint_interval` (sooner when the
// WAL grows past kWalCheckpointBytes), which is when the WAL is fsynced, so
// a power cut may lose at most the commits of that interval. See
// docs/storage.md.
//
// Layout: a change goes first into the table `recent` (rowid = sequence
// number, no other index), whose pages fill in arrival order, so a commit
// writes one page for many changes of many keys. The writer moves them into
// `changes`, indexed by (key_id, time_ms), in one transaction (a fold) once
// HotStoreOptions::fold_rows wait or the oldest is fold_interval old, and
// before a deletion of compacted rows. A row is in one table or the other,
// never both; every read looks at both in one statement (one snapshot), and
// skips scanning `recent` when no row there can be in its time range
// (recent_min_time_).
//
// Space: the database runs with auto_vacuum=INCREMENTAL (one made without
// it is converted once at open, by a VACUUM). Pages that deletions free go
// back to the file system in bounded steps, `PRAGMA incremental_vacuum`, run
// by the writer between commits, so the file shrinks to the live rows after
// compaction without a step holding up ingest for long. See
// docs/storage.md, "Giving space back".
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <variant>
#include <vector>

#include "common/status.h"
#include "core/cold_mark.h"
#include "core/metrics.h"
#include "core/value.h"
#include "hot/hot_options.h"
#include "hot/sqlite.h"

namespace komoku::store {

class HotStore {
 public:
  // The schema version this build writes; older versions are migrated on
  // open, newer ones refused.
  static constexpr int64_t kSchemaVersion = 3;
  // The page size of a database this build creates.
  static constexpr int kPageSize = 1024;
  // Free pages the writer leaves in the file (a few are soon reused by new
  // rows); above this, after a commit that deleted rows, it gives them back.
  static constexpr int64_t kVacuumSlackPages = 256;
  // A commit of at least this many changes (a flood, a backfill) puts them
  // straight into `changes`: they share index leaves anyway, and going
  // through `recent` would write each of them twice.
  static constexpr size_t kDirectRows = 1000;
  // Pages one vacuum step gives back at most (a step is its own
  // transaction between two commits; docs/storage.md has its duration).
  static constexpr int64_t kVacuumStepPages = 1000;
  // Once the WAL holds this much, the checkpoint thread checkpoints at once
  // and the writer holds back deletion chunks and vacuum steps (not
  // changes) until that checkpoint is done; the WAL file is cut back to
  // kWalKeepBytes when a commit starts it over. Without this, deleting a
  // year's rows and giving their pages back wrote a WAL twice the size of
  // the database before the next checkpoint could catch up.
  static constexpr int64_t kWalCheckpointBytes = 32 << 20;
  static constexpr int64_t kWalKeepBytes = 1 << 20;

  struct LoadedKey {
    int64_t id = 0;
    std::string name;
    KeyType type = KeyType::kNumeric;
    std::string options_json;             // as define stored it
    std::optional<int64_t> last_seen_ms;  // uptime: the last refresh
    std::optional<Sample> last;           // newest change
    std::optional<Sample> previous;       // the one before it
  };

  // Opens or creates `path`, migrates the schema, and starts the writer and
  // checkpoint threads.
  static Result<std::unique_ptr<HotStore>> Open(const std::string& path,
                                                const HotStoreOptions& options,
                                                std::shared_ptr<spdlog::logger> log,
                                                Metrics* metrics);
  ~HotStore();
  HotStore(const HotStore&) = delete;
  HotStore& operator=(const HotStore&) = delete;

  // Every key with its last two changes not under `mark`. Called once at
  // open by the Store.
  Result<std::vector<LoadedKey>> LoadKeys(const ColdMark& mark = {});
  // The highest change sequence number stored (0 for none).
  Result<uint64_t> MaxChangeSeq();

  // A committed change with its sequence number and key, for readers in
  // sequence order (remote write).
  struct SeqChange {
    uint64_t seq = 0;
    int64_t key_id = 0;
    Sample sample;
  };
  // Committed changes with a sequence number above `after_seq`, in sequence
  // order, at most `limit`. Every change stays readable here until
  // compaction made it cold and its rowid is at or below the keep mark
  // (KeepRowsAfter); the sequence numbers have gaps (skipped duplicates,
  // deleted keys).
  Result<std::vector<SeqChange>> ReadChangesAfter(uint64_t after_seq, size_t limit);
  // Rows made cold with a sequence number above `seq` are kept (see
  // HotStoreOptions::keep_rows_after); those at or below it are deleted by
  // the next compaction's deletion. Never moves back.
  void KeepRowsAfter(uint64_t seq);

  // Queue a write; returns a sequence number for WaitCommitted. The order of
  // calls is the order of the rows in the transaction.
  // Creates the key or updates its type and options.
  uint64_t EnqueueUpsertKey(int64_t id, const std::string& name, KeyType type,
                            std::string options_json, int64_t created_ms);
  // `change_seq` becomes the row's rowid: the Store's sequence number of the
  // change, so readers can cut history exactly where a live feed begins.
  // With `skip_if_stored`, nothing is inserted when the key already has a
  // change of the same time and value (committed, or earlier in the same
  // commit); each skip counts in komoku_changes_duplicate_total.
  uint64_t EnqueueChange(int64_t key_id, uint64_t change_seq, const Sample& sample,
                         bool skip_if_stored = false);
  // Records an uptime key's last refresh (coalesced per commit).
  uint64_t EnqueueTouch(int64_t key_id, int64_t last_seen_ms);
  uint64_t EnqueueDeleteKey(int64_t key_id);
  // Deletes the rows the cold store holds now (see ColdMark).
  uint64_t EnqueueDeleteCompacted(const ColdMark& mark);
  // Moves every row of `recent` into `changes` with the next commit, and
  // waits for it. Compaction calls it first: its scans of past days then
  // skip `recent`, which a late change would otherwise make every one of
  // them scan.
  Status FoldNow();

  // Blocks until every deletion of compacted rows queued so far is done and
  // the pages it freed are given back down to kVacuumSlackPages (or the
  // store closes).
  void WaitDeletions();

  // Blocks until everything up to `seq` is committed. An IOError only when
  // the store is closing and the rows could not be committed.
  Status WaitCommitted(uint64_t seq);
  // Everything up to this sequence number is committed.
  uint64_t CommittedSeq() const;
  // Waits at most `timeout` for everything up to `seq` to be committed
  // (asking the writer to commit now); true when it is.
  bool WaitCommittedFor(uint64_t seq, std::chrono::milliseconds timeout);

  // Changes of a key with from_ms <= time < to_ms and sequence number <=
  // max_seq, in time order (ties in put order), at most `limit` of them.
  Result<std::vector<Sample>> ReadHistory(int64_t key_id, int64_t from_ms, int64_t to_ms,
                                          size_t limit, uint64_t max_seq = UINT64_MAX,
                                          const ColdMark& mark = {});

  // Calls `fn` with each change of a key with from_ms <= time < to_ms in
  // time order (ties in put order) until it returns false. Reads on a
  // connection of its own (kept for the next scan), so a long scan holds up
  // no other reader.
  Status ScanHistory(int64_t key_id, int64_t from_ms, int64_t to_ms,
                     const std::function<bool(const Sample&)>& fn, const ColdMark& mark = {},
                     uint64_t max_seq = UINT64_MAX);

  // The last change of a key at or before `time_ms` (the value in force
  // then), if any.
  Result<std::optional<Sample>> ReadAt(int64_t key_id, int64_t time_ms, const ColdMark& mark = {});

  // The earliest time of a late change: a row with time < mark.cold_to that
  // the cold store does not hold (sequence number in (cold_seq, max_seq]);
  // of one key, or of any key when key_id is 0. nullopt when none.
  Result<std::optional<int64_t>> EarliestLate(int64_t key_id, const ColdMark& mark,
                                              uint64_t max_seq = UINT64_MAX);

  // Ok while commits succeed; while the last one failed (a full disk, an
  // I/O error), an IOError with reason "disk_full" or "write_failed" that
  // says so, for the Store to refuse new changes with until one succeeds.
  Status WriteHealth() const;

  // Rows waiting for the writer.
  size_t QueueDepth() const;

  // How long the writer has held rows it could not yet commit: zero while
  // idle, growing while a commit is slow or failing and being retried.
  std::chrono::milliseconds StalledFor() const;

  // Commits everything queued, checkpoints, and stops the threads. Idempotent.
  void Close();

 private:
  struct UpsertKey {
    int64_t id;
    std::string name;
    KeyType type;
    std::string options_json;
    int64_t created_ms;
  };
  struct ChangeRow {
    int64_t key_id;
    uint64_t seq;
    Sample sample;
    bool skip_if_stored = false;
  };
  struct Touch {
    int64_t key_id;
    int64_t last_seen_ms;
  };
  struct DeleteKey {
    int64_t key_id;
  };
  struct DeleteCompacted {
    ColdMark mark;
  };
  struct FoldRecent {};
  using Op = std::variant<UpsertKey, ChangeRow, Touch, DeleteKey, DeleteCompacted, FoldRecent>;

  HotStore(const std::string& path, const HotStoreOptions& options,
           std::shared_ptr<spdlog::logger> log, Metrics* metrics);
  Status Init();
  Status Migrate(Db& db);
  // Turns a database without auto_vacuum into one with it (a VACUUM, once);
  // a failure is logged and leaves the database as it was.
  void ConvertToIncrementalVacuum();
  Status PrepareWriter();
  uint64_t Enqueue(Op op);
  void WriterLoop();
  // *freed: whether the batch deleted rows (a chunk of compacted rows or a
  // key), so pages may have become free.
  Status CommitBatch(const std::vector<Op>& batch, bool* freed);
  // Free pages of the database now, also set as the komoku_hot_free_pages
  // gauge (and komoku_hot_pages); -1 when the query failed.
  int64_t UpdateFreePages();
  // One bounded step of giving free pages back; returns whether more is due.
  bool VacuumStep();
  // VacuumStep with `lock` (on mu_) released meanwhile; updates vacuum_due_.
  void RunVacuumStep(std::unique_lock<std::mutex>& lock);
  void CheckpointLoop();
  // SQLite's WAL hook on the writer connection, called in the writer thread
  // after each commit: once the WAL holds wal_checkpoint_frames_, asks the
  // checkpoint thread for a checkpoint now and holds back background work.
  static int OnWalCommit(void* self, sqlite3* db, const char* name, int frames);
  // Whether deletion chunks and vacuum steps may go on (writer thread).
  bool BackgroundMayWrite() const;

  // Constant after construction.
  const std::string path_;
  const HotStoreOptions options_;
  const std::shared_ptr<spdlog::logger> log_;
  Metrics* const metrics_;

  // Owned by the writer thread after Init().
  std::unique_ptr<Db> writer_db_;
  Stmt upsert_key_, touch_key_, delete_changes_, delete_key_, delete_compacted_, chunk_end_;
  // Where a change goes (a batch of at least kDirectRows goes straight into
  // `changes`), and where a row of the same key, time and value is looked
  // for first (a replayed change is stored once).
  enum class InsertInto { kRecent = 0, kChanges = 1 };
  enum class DuplicateCheck { kNone = 0, kChanges = 1, kBothTables = 2 };
  static std::string InsertSql(InsertInto into, DuplicateCheck check);
  Stmt insert_[2][3];
  // The deletion of compacted rows still to do: rows with time < cold_to and
  // after_rowid < rowid <= cold_seq. One chunk goes with each commit
  // (CommitBatch); a newer mark starts it again from the first row.
  struct PendingDelete {
    ColdMark mark;
    int64_t after_rowid = 0;
  };
  std::optional<PendingDelete> pending_delete_;
  // Whether the database has auto_vacuum=INCREMENTAL (false when the
  // conversion at open failed: nothing is given back then).
  bool incremental_vacuum_ = false;
  // The WAL is full (kWalCheckpointBytes): background work waits until the
  // checkpoint thread has done wal_wait_checkpoints_ checkpoints.
  bool wal_full_ = false;
  uint64_t wal_wait_checkpoints_ = 0;
  Stmt freelist_count_, page_count_;
  // Deletes the next chunk inside the open transaction; *next is where the
  // deletion stands after it (nullopt: done).
  Status DeleteChunk(const PendingDelete& pending, std::optional<PendingDelete>* next);

  // The fold (see the top of this file). Writer thread, inside a
  // transaction.
  bool FoldDue(const std::vector<Op>& batch) const;
  Status Fold();
  Stmt delete_recent_key_, fold_move_, fold_clear_;
  // What the writer knows of `recent` (writer thread): its rows, when the
  // first of them came (steady ms; 0 when empty), and the (key_id, time_ms)
  // of each row, kept to check for a duplicate there only when one may be
  // (an entry of a row that is gone costs a scan, never an answer).
  struct KeyTime {
    int64_t key_id;
    int64_t time_ms;
    bool operator==(const KeyTime& o) const { return key_id == o.key_id && time_ms == o.time_ms; }
  };
  struct KeyTimeHash {
    size_t operator()(const KeyTime& k) const {
      return std::hash<int64_t>()(k.key_id * 1000003 ^ k.time_ms);
    }
  };
  int64_t recent_rows_ = 0;
  int64_t recent_since_ms_ = 0;
  std::unordered_set<KeyTime, KeyTimeHash> recent_times_;
  // No row of `recent` has a time below this (INT64_MAX: none there). The
  // writer lowers it before a commit adds an older row and raises it only
  // after a fold has committed, so a reader that finds its range below it
  // may leave `recent` out. Read by any thread.
  std::atomic<int64_t> recent_min_time_{INT64_MAX};
  // 1 when `recent` may hold a row with time < to_ms, for binding.
  int64_t RecentMayHoldBefore(int64_t to_ms) const;

  // The read connection and its statements, guarded by read_mu_.
  std::mutex read_mu_;
  std::unique_ptr<Db> reader_db_;
  Stmt read_history_, read_at_, read_after_;
  Stmt read_late_;  // EarliestLate of one key: asked by every rollup answer
  // See KeepRowsAfter; read by the writer in DeleteChunk.
  std::atomic<uint64_t> keep_rows_after_{UINT64_MAX};

  // Connections for ScanHistory, each with its statement prepared: a scan
  // takes an idle one (or opens one) and gives it back, so compaction's scan
  // per key and day and each history query skip opening a connection.
  struct ScanConn {
    std::unique_ptr<Db> db;
    Stmt scan;
  };
  Result<std::unique_ptr<ScanConn>> TakeScanConn();
  void ReturnScanConn(std::unique_ptr<ScanConn> conn);
  std::mutex scan_mu_;
  std::vector<std::unique_ptr<ScanConn>> idle_scans_;  // guarded by scan_mu_
  bool closed_scans_ = false;                          // guarded by scan_mu_

  mutable std::mutex mu_;
  std::condition_variable work_cv_;       // the writer waits for work
  std::condition_variable committed_cv_;  // callers wait for commits
  std::vector<Op> queue_;                 // guarded by mu_
  uint64_t next_seq_ = 1;                 // guarded by mu_; seq of the next op
  uint64_t committed_seq_ = 0;            // guarded by mu_
  uint64_t failed_seq_ = 0;               // guarded by mu_; ops <= this were given up
  // The error of the last commit while it keeps failing; ok otherwise.
  Status write_error_;  // guarded by mu_
  // Whether write_error_ holds an error: read on every put without mu_.
  std::atomic<bool> write_failing_{false};
  // Deletions of compacted rows queued, and of those the ones done (a newer
  // one supersedes the older ones still going).
  uint64_t deletions_queued_ = 0;  // guarded by mu_
  uint64_t deletions_done_ = 0;    // guarded by mu_
  uint64_t deletions_taken_ = 0;   // writer thread: in committed batches (CommitBatch)
  size_t waiters_ = 0;             // guarded by mu_
  // Free pages are to be given back (VacuumStep) between commits. Written by
  // the writer under mu_.
  bool vacuum_due_ = false;  // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  bool closed_ = false;      // guarded by mu_
  // Steady-clock ms when the writer took rows it has not committed yet; 0
  // when it holds none. Written by the writer, read by anyone.
  std::atomic<int64_t> busy_since_ms_{0};

  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_stop_ = false;  // guarded by checkpoint_mu_
  bool checkpoint_now_ = false;   // guarded by checkpoint_mu_
  std::atomic<uint64_t> checkpoints_done_{0};
  int64_t wal_checkpoint_frames_ = 0;  // constant after Init()

  std::thread writer_;
  std::thread checkpointer_;
};

}  // namespace komoku::store

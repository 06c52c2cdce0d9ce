// The Komoku core: typed keys, their current values, and their history.
// The front door of src/store; the MQTT bridge and the HTTP server are two
// adapters over this one API, so a put means the same from either side.
//
// Thread-safe: the MQTT callback thread, HTTP threads and timers call it at
// once. Nothing here knows MQTT or HTTP exists.
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cold/cold_listing.h"
#include "cold/segment.h"
#include "common/status.h"
#include "core/change.h"
#include "core/change_source.h"
#include "core/clock.h"
#include "core/key_options.h"
#include "core/metrics.h"
#include "core/rollup.h"
#include "core/value.h"
#include "hot/hot_options.h"
#include "store/backup.h"

namespace komoku::store {

class HotStore;
class ColdStore;
struct ColdState;

// Cold history: what compaction moves out of the hot store, and when. See
// docs/storage.md, "Cold history".
struct ColdOptions {
  // Changes older than this (rounded down to a UTC day) move to segments.
  int64_t hot_window_ms = 2LL * 24 * 3600 * 1000;
  // How often compaction runs in the background; 0: only when asked
  // (Store::Compact, `komoku compact`).
  std::chrono::milliseconds compact_interval{3600 * 1000};
  // Whole UTC months of day segments are merged into one segment.
  bool merge_months = true;
  // How long raw changes and 5-minute rollups are kept; 0: forever. Hourly
  // and daily rollups are kept forever.
  int64_t raw_retention_ms = 365LL * 24 * 3600 * 1000;
  int64_t rollup_5m_retention_ms = 730LL * 24 * 3600 * 1000;
  // fsync segments and the manifest (tests may turn it off).
  bool sync = true;
  // Run the background thread that verifies segments once after the start
  // and compacts every compact_interval. Tests that drive compaction
  // themselves turn it off.
  bool background = true;
  // Called before each step of a compaction or segment check, where a stop
  // is looked for (tests stop the store there).
  std::function<void()> before_step;
};

// What one compaction did.
struct CompactionReport {
  int segments_written = 0;
  int segments_removed = 0;
  uint64_t changes = 0;        // raw changes written to segments
  uint64_t bytes_written = 0;  // segment bytes written
  int64_t cold_to_ms = 0;      // everything before this is cold now
  double seconds = 0;
};

// How far the running compaction has come (Store::CompactionProgressNow;
// `komoku compact` shows it, GET /api/v1/compact answers it).
struct CompactionProgress {
  // "days": writing day segments; "months": merging whole months;
  // "retention": dropping what retention expired.
  std::string phase;
  int64_t done = 0;   // steps of the phase done: days written, months merged
  int64_t total = 0;  // steps of the phase
  int64_t at_ms = 0;  // start of the day or month last done (0 before the first)
};

// What one key costs the disk (the SD-card question): see Store::Writes.
struct KeyWrites {
  std::string key;
  KeyType type = KeyType::kNumeric;
  uint64_t changes_stored = 0;  // since this process started
  // Bytes written to the hot store for those changes: the row and its index
  // entry as SQLite stores them, before the WAL's and pages' overhead (which
  // multiply it alike for every key).
  uint64_t hot_bytes = 0;
  uint64_t cold_bytes = 0;  // bytes of the key's blocks in live segments
};

struct StoreOptions {
  // Directory of the database (komoku.db and its WAL); created if missing.
  std::string data_dir = "./komoku-data";
  HotStoreOptions hot;
  ColdOptions cold;
  // Time source; the system clock when null. Must outlive the Store.
  const Clock* clock = nullptr;
  // The words boolean and uptime keys read as true and false.
  BooleanWords boolean_words;
  // Start the uptime timer thread at open. The service starts it itself once
  // the MQTT bridge listens, so a timeout that fell while Komoku was down is
  // published too.
  bool start_timers = true;
};

struct PutOptions {
  // The change's time; now when unset. A time in the past goes into history
  // and becomes the current value only if it is the newest.
  std::optional<int64_t> time_ms;
  // Return only once the change is committed to the hot store.
  bool wait_committed = true;
  // With time_ms: a change whose key, time and value are stored already is
  // a no-op (Change::duplicate). Off for MQTT messages that have only their
  // arrival time, which are distinct events even within one millisecond.
  bool skip_duplicate = true;
  // The type a key this put creates gets, instead of the one guessed from
  // the value: a JSON string ("1.10", a firmware version) makes a string
  // key, where the same text bare would make a numeric one.
  std::optional<KeyType> new_key_type;
};

// One change for Store::ImportCold, as a file gives it.
struct ColdImportRow {
  std::string key;
  int64_t time_ms = 0;
  InputValue value;
  // The type a key this row creates gets (as PutOptions::new_key_type).
  std::optional<KeyType> new_key_type;
};

struct ColdImportOptions {
  // Also write the segments of the days from this time up to the end of
  // cold time that no row touched, as compaction writes one for every day
  // on which a key had a value (a carry-only day). The last call of an
  // import sets it to the oldest time the import touched.
  std::optional<int64_t> fill_from_ms;
};

// What Store::ImportCold did.
struct ColdImportReport {
  uint64_t stored = 0;   // changes added to history
  uint64_t already = 0;  // rows history held already (see ImportCold)
  // Rows refused, by index into the rows given, with the reason.
  std::vector<std::pair<size_t, Status>> refused;
  int segments_written = 0;
  int segments_removed = 0;
  uint64_t bytes_written = 0;
};

class Store final : public ChangeSource {
 public:
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options,
                                             std::shared_ptr<spdlog::logger> log);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Records a change. A key that does not exist is created, its type guessed
  // from the value. Refused (InvalidArgument, nothing changed, counted in
  // komoku_refused_total) for a bad key name, a value the key's type cannot
  // hold, or a bad time.
  Result<Change> Put(std::string_view key, const InputValue& value, const PutOptions& options = {});

  // Several changes at once, all or none: every change is checked as Put
  // checks it (key name, time, the value against its key's type and
  // allowed values) before any is applied, under one hold of the store's
  // lock, so a refusal changes nothing. The error names the key and the
  // reason (counted once in komoku_refused_total). Changes of one key apply
  // in order; the first creates a new key. Each change's options apply to
  // it (a wait for the commit too); listeners are called once all are
  // applied. The values must outlive the call. With `refused`, a refusal
  // of one change sets it to that change's index (the key named).
  struct KeyPut {
    std::string_view key;
    const InputValue* value = nullptr;
    PutOptions options;
  };
  Result<std::vector<Change>> PutAll(const std::vector<KeyPut>& puts, size_t* refused = nullptr);

  // Adds `delta` to a counter's current value (0 when the key is new; the
  // key is created as a counter), atomically under concurrent callers.
  // Refused with reason "wrong_type" for a key of another type.
  Result<Change> Increment(std::string_view key, double delta, const PutOptions& options = {});

  // Creates a key or updates its type and options (`options` applied over
  // the current ones; core/key_options.h, ApplyKeyOptions, which refuses an
  // option the type does not take, reason "bad_option"; the JSON form users
  // send is parsed by wire/key_options_json.h).
  // The type cannot change under existing data (reason "type_change"), except
  // between types that hold the same values (numeric and counter, boolean and
  // uptime).
  Result<KeyInfo> Define(std::string_view key, std::optional<KeyType> type,
                         const KeyOptionsPatch& options = {});
  // Several definitions at once, all or none: any refusal changes nothing.
  struct KeyDefinition {
    std::string key;
    std::optional<KeyType> type;
    KeyOptionsPatch options;
  };
  Result<std::vector<KeyInfo>> DefineAll(const std::vector<KeyDefinition>& defs);

  // Deletes a key and all its history. NotFound for an unknown key.
  Status Delete(std::string_view key);

  // The key and its current value; NotFound for an unknown key.
  Result<KeyInfo> Get(std::string_view key) const override;
  // Whether a key of that name exists, without copying its state (what
  // wire/key_alias.h asks of every name it resolves).
  bool Contains(std::string_view key) const;

  // Every key, sorted by name.
  std::vector<KeyInfo> Keys() const;

  // Changes of `key` with from_ms <= time < to_ms, oldest first, at most
  // `limit`. NotFound for an unknown key.
  // With `max_seq`, only changes up to that sequence number (see AddListener).
  Result<std::vector<Sample>> History(std::string_view key, int64_t from_ms, int64_t to_ms,
                                      size_t limit, uint64_t max_seq = UINT64_MAX) const;

  // Calls `fn` with each change of `key` with from_ms <= time < to_ms,
  // oldest first, until it returns false. NotFound for an unknown key.
  Status Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
              const std::function<bool(const Sample&)>& fn) const override;

  // The change in force at `time_ms`: the last one at or before it; nullopt
  // when the key had no value yet. NotFound for an unknown key.
  Result<std::optional<Sample>> At(std::string_view key, int64_t time_ms) const override;

  // Where `key`'s rollups answer, oldest first, not overlapping (empty:
  // nowhere): cold time with no late change since, whose rollups were
  // computed with the options the key has now, or, where retention dropped
  // the raw changes that would recompute them, with the options of their
  // time (current_options false). Cold time whose rollups are of other
  // options while its raw changes are kept is left out: the raw changes
  // answer it exactly until the next compaction recomputes its rollups.
  std::vector<RollupStretch> RollupCoverage(std::string_view key) const override;
  // Raw changes of `key` before this time were dropped by retention (their
  // rollups remain); nullopt when retention has dropped none of them.
  std::optional<int64_t> RawExpiredBefore(std::string_view key) const override;
  // The rollups of `key` at `resolution_ms` with from_ms <= start < to_ms.
  Status ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms, int64_t to_ms,
                     const std::function<bool(const Rollup&)>& fn) const override;

  // The lock file of a data directory: an open Store holds an exclusive flock
  // on it, so a second Komoku on the same data is refused (reason "locked").
  static std::string LockPath(const std::string& data_dir);

  // Moves changes older than the hot window into segments, merges whole
  // months and applies retention, now. One at a time; the background
  // compactor calls it every ColdOptions::compact_interval.
  Result<CompactionReport> Compact();
  // Rows older than this time may go to ImportCold: the start of the
  // hot window as compaction cuts it (ColdOptions::hot_window_ms, rounded
  // down to a UTC day), or the end of cold time when that is later.
  int64_t ColdImportBefore() const;
  // Bulk import of old history straight into cold segments, without the
  // hot store (cold_import.cc; docs/storage.md, "Importing old history").
  // Each row is checked as Put checks it (key name, time, the value against
  // its key's type and allowed values) and refused alone, named in
  // report.refused; a row at or after ColdImportBefore() is refused too
  // (reason "not_cold"). A key a row creates is created as Put would.
  // Per key, rows are taken in time order (ties in the order given) and
  // merged with the history held: a row equal in time and value to a change
  // held or taken before is not added, nor is a repeat of the value in
  // force at its time within same_value_resolution of that change (what a
  // put of it would do); a different value at the same time is added after
  // the changes of that time already held, and so wins At() there, as a
  // later put does. For each segment (or day, where none is) the rows
  // touch, the segment is read, merged, its rollups computed again and a
  // new one written; later segments whose carry or counter state changed
  // are rewritten too; then one manifest commit makes them live (as
  // compaction commits: nothing half-written is ever live). Hot rows older
  // than the hot window are compacted first. Listeners are not called and
  // ChangesAfter does not list the rows. Runs as one compaction step (not
  // beside Compact); the caller runs Compact afterwards for month merging
  // and retention.
  Result<ColdImportReport> ImportCold(const std::vector<ColdImportRow>& rows,
                                      const ColdImportOptions& options = {});
  // The progress of the compaction running now (nullopt when none runs),
  // for a caller polling it from another thread.
  std::optional<CompactionProgress> CompactionProgressNow() const;
  // Waits until the hot rows every compaction so far made cold are deleted
  // from SQLite (the writer deletes them a chunk per commit after each
  // compaction); for `komoku compact`, which leaves a tidy database.
  void WaitColdRowsDeleted();
  // Writes a consistent backup of the data directory to options.dir
  // (backup.h) while puts go on: no compaction runs meanwhile, so the
  // MANIFEST, the segments it names and the hot store's snapshot (taken
  // after them) agree; it holds every change accepted before it began.
  Result<BackupReport> Backup(const BackupOptions& options);
  // The live segments, oldest first.
  std::vector<SegmentListing> Segments() const;
  // Every key's writes, and the time they were counted from (this process's
  // start, ms).
  std::vector<KeyWrites> Writes(int64_t* since_ms) const;
  // Checks every live segment's blocks (the compactor does so once after the
  // start). A damaged block is recorded and left out of answers (see
  // DamagedHistory()); a segment whose damage cannot be pinned on blocks (its
  // index, its header) goes to quarantine. Returns how many segments had
  // damage of either kind.
  int VerifySegments() const;
  // Problems with cold history (quarantined segments, damaged blocks), for
  // health checks, one line each.
  std::vector<std::string> ColdWarnings() const;
  // History missing because of damage: each damaged block of a live segment
  // found so far, with its key and range, and what salvages left out.
  std::vector<ColdDamage> DamagedHistory() const;

  // Called with every accepted change (and deletion), after it is committed
  // when the put waited for that. Listeners run on the putting thread, with
  // no lock of the store held, and must be quick: they must not wait for
  // another thread (hand the change to a queue instead). They may be called
  // out of sequence order by concurrent puts.
  using Listener = std::function<void(const Change&)>;
  int AddListener(Listener listener);
  // The same, made by `make` from the sequence number S of the last change
  // accepted before the listener: a listener that drops changes numbered <= S
  // gets exactly the changes after S, and History(..., max_seq = S) exactly
  // those up to it once WaitCommitted(S) returned: no gap, no duplicate.
  // Returns the listener id and S.
  std::pair<int, uint64_t> AddListenerAtSeq(const std::function<Listener(uint64_t)>& make);
  // Removes a listener and waits until no call of it is running, so what it
  // uses may be destroyed afterwards. Must not be called from a listener.
  void RemoveListener(int id);

  // A committed change in sequence order, with its key, for a reader that
  // follows every change (remote write).
  struct SeqChange {
    uint64_t seq = 0;
    std::string key;
    KeyType type = KeyType::kNumeric;
    Sample sample;
  };
  // Committed changes with a sequence number above `after_seq`, in
  // sequence order, at most `limit`; changes of keys deleted since are left
  // out. The numbers have gaps. A change stays here after compaction made
  // it cold as long as its number is above the keep mark (KeepRowsAfter,
  // StoreOptions::hot.keep_rows_after).
  Result<std::vector<SeqChange>> ChangesAfter(uint64_t after_seq, size_t limit) const;
  // The sequence number of the newest accepted change.
  uint64_t LastChangeSeq() const;
  // Lets compaction delete the cold rows numbered up to `seq` (see
  // HotStoreOptions::keep_rows_after); never moves back.
  void KeepRowsAfter(uint64_t seq);

  // Blocks until every change up to `change_seq` is committed.
  Status WaitCommitted(uint64_t change_seq);
  // A mark covering every change accepted so far, for callers that must not
  // block on a commit (the MQTT ingest thread): Committed(mark) tells,
  // without waiting, whether they are all committed; WaitCommittedFor waits
  // at most `timeout` (true when they are).
  uint64_t CommitMark() const;
  bool Committed(uint64_t mark) const;
  bool WaitCommittedFor(uint64_t mark, std::chrono::milliseconds timeout);

  // Turns uptime keys whose max_time has run out false, each at its due time.
  // The store's timer thread calls this; tests with their own Clock may too.
  void RunDueTimers();
  // Starts the timer thread (see StoreOptions::start_timers). Idempotent.
  void StartTimers();

  // Commits everything accepted so far, then stops the writer. Idempotent;
  // puts after Close are refused. A compaction or segment check under way
  // stops at its next step (see RequestStop), so Close does not wait for it.
  void Close();
  // Asks a compaction or segment check under way, and every later one, to
  // stop at its next step: a compaction deletes what it wrote and returns
  // Busy, with nothing committed; a check leaves the rest unchecked. Close
  // does this first; callable from any thread.
  void RequestStop();
  bool stopping() const { return stopping_; }

  const Clock& clock() const override { return *clock_; }
  const BooleanWords& boolean_words() const override { return boolean_words_; }
  Metrics& metrics() { return metrics_; }
  size_t QueueDepth() const;
  // The heap SQLite holds now, all connections together (page caches,
  // prepared statements); and the most it has held since the start.
  int64_t SqliteMemoryBytes() const;
  int64_t SqliteMemoryHighwater() const;
  // How long the writer has held changes it could not yet commit: zero while
  // it keeps up. Health checks and the systemd watchdog read it.
  std::chrono::milliseconds WriterStalledFor() const;
  // Ok while commits succeed; after a failed one (a full disk: reason
  // "disk_full"; another write error: "write_failed") the error, until a
  // commit succeeds. Meanwhile Put, Increment, Define and Delete refuse with
  // it (counted), so callers fail fast instead of queueing.
  Status WriteHealth() const;
  const std::string& db_path() const { return db_path_; }

 private:
  struct KeyState {
    int64_t id = 0;
    KeyType type = KeyType::kNumeric;
    KeyOptions options;
    std::optional<Sample> last;
    std::optional<Sample> previous;
    int64_t last_seen_ms = 0;     // uptime: the last true, stored or not
    int64_t due_ms = 0;           // uptime: when it turns false; 0 when not armed
    uint64_t changes_stored = 0;  // since the start
    uint64_t hot_bytes = 0;       // see KeyWrites
  };

  Store(const StoreOptions& options, std::shared_ptr<spdlog::logger> log);
  Status Refuse(Status status);
  // The hot store's id of a key; NotFound (reason unknown_key) when none.
  Result<int64_t> IdOf(std::string_view key) const;
  // Put's check of `value` against the key's state (nullptr when the key
  // is new): the key's type (`*type`, set also on a refusal) can hold it and
  // it is one of the allowed values.
  Result<Value> CheckValue(const KeyState* state, const InputValue& value,
                           const PutOptions& options, KeyType* type) const;
  // The steps of a put: the checks before taking mu_ (key name, time,
  // write health; refusals counted); the change stored at options.time_ms
  // already, for the duplicate check; the change applied under mu_ (held by
  // the caller), with a value checked already; then counting it, waiting
  // for its commit when asked and calling the listeners, with no lock held.
  Status CheckPut(std::string_view key, const PutOptions& options);
  std::optional<Sample> StoredAtTime(std::string_view key, const PutOptions& options) const;
  Change ApplyLocked(std::string_view key, KeyType type, Value value, const PutOptions& options,
                     const std::optional<Sample>& stored_at_time, uint64_t* op_seq);
  Status FinishPut(const Change& change, const PutOptions& options, uint64_t op_seq);
  // The common path of Put and Increment. `make_value` computes the value
  // under mu_ from the key's state (nullptr when the key is new).
  using ValueFn = std::function<Result<Value>(const KeyState* state, KeyType* type)>;
  Result<Change> Apply(std::string_view key, const ValueFn& make_value, const PutOptions& options);
  // Arms or disarms an uptime key's timeout. Requires mu_.
  void ArmUptime(const std::string& name, KeyState& state);
  void Notify(const Change& change);
  void TimerLoop();
  void CompactorLoop();
  // Merged reads of hot and cold history (a shared lock on cold_rw_ held by
  // the caller): hot rows with a sequence number above max_seq are left out.
  Status ScanMerged(int64_t id, std::string_view key, const ColdState& cold, int64_t from_ms,
                    int64_t to_ms, uint64_t max_seq,
                    const std::function<bool(const Sample&)>& fn) const;
  Result<std::optional<Sample>> AtMerged(int64_t id, std::string_view key, const ColdState& cold,
                                         int64_t time_ms) const;
  // The compaction steps (compaction.cc); require compact_mu_.
  // Recomputes rollups of options a key no longer has, when a define may
  // have changed some since the last look (and once after each start).
  Status RefreshRollups(CompactionReport& report);
  Status RewriteOutdatedRollups(CompactionReport& report);
  Status CompactHot(CompactionReport& report);
  Status MergeMonths(CompactionReport& report);
  Status ApplyRetention(CompactionReport& report);

  // Constant after Open.
  const Clock* clock_;
  const BooleanWords boolean_words_;
  std::shared_ptr<spdlog::logger> log_;
  std::string db_path_;
  Metrics metrics_;
  std::unique_ptr<HotStore> hot_;
  std::unique_ptr<ColdStore> cold_;
  ColdOptions cold_options_;
  int lock_fd_ = -1;  // flock on <data_dir>/LOCK while open
  int64_t opened_ms_ = 0;
  // Bytes per key in the live segments, computed once per cold state.
  mutable std::mutex cold_bytes_mu_;
  mutable std::shared_ptr<const ColdState> cold_bytes_state_;  // guarded
  // Shared with the callers of Writes rather than copied for each.
  mutable std::shared_ptr<const std::map<std::string, uint64_t, std::less<>>>
      cold_bytes_;  // guarded
  // Readers of merged history hold it shared; switching the cold state
  // (which makes hot rows invisible) holds it exclusively, so no reader sees
  // a change twice or not at all.
  mutable std::shared_mutex cold_rw_;
  // One compaction (or tombstone) at a time.
  mutable std::mutex compact_mu_;
  // The running compaction's progress; written by it, read by pollers.
  mutable std::mutex progress_mu_;
  std::optional<CompactionProgress> progress_;  // guarded by progress_mu_
  void SetProgress(std::optional<CompactionProgress> progress);
  // Set by RequestStop: compactions and checks stop at their next step.
  std::atomic<bool> stopping_{false};
  // A define since the last RefreshRollups (true at open): segments may
  // hold rollups of options their keys no longer have.
  std::atomic<bool> rollups_may_be_outdated_{true};
  // Ok to go on with the next step of a compaction, or Busy once stopping.
  Status NextStep() const;

  mutable std::mutex mu_;
  using KeyMap = std::map<std::string, KeyState, std::less<>>;
  KeyMap keys_;  // guarded by mu_
  // The same keys by id (what the hot store's rows name), for ChangesAfter;
  // kept by AddKeyState and EraseKeyState, guarded by mu_.
  std::unordered_map<int64_t, KeyMap::const_iterator> keys_by_id_;
  KeyMap::iterator AddKeyState(std::string name, KeyState state);
  void EraseKeyState(KeyMap::iterator it);
  int64_t next_key_id_ = 1;       // guarded by mu_
  uint64_t last_change_seq_ = 0;  // guarded by mu_
  // Change sequence number -> hot store op sequence number, for
  // WaitCommitted; only the newest matters.
  uint64_t last_op_seq_ = 0;                              // guarded by mu_
  std::set<std::pair<int64_t, std::string>> uptime_due_;  // guarded by mu_
  bool closed_ = false;                                   // guarded by mu_
  std::condition_variable timer_cv_;                      // with mu_
  std::thread timer_;
  std::thread compactor_;
  std::condition_variable compactor_cv_;  // with mu_

  // Listeners are called with no lock held (a listener may take locks of
  // its own, and those locks' holders may call the store): Notify copies
  // the slots under listeners_mu_, counts the calls in flight, and calls
  // them after letting go. RemoveListener waits for a slot's calls to end.
  struct ListenerSlot {
    Listener fn;
    int calls = 0;  // guarded by listeners_mu_
  };
  std::mutex listeners_mu_;
  std::condition_variable listeners_cv_;                    // with listeners_mu_
  std::map<int, std::shared_ptr<ListenerSlot>> listeners_;  // guarded by listeners_mu_
  int next_listener_id_ = 1;                                // guarded by listeners_mu_
};

}  // namespace komoku::store

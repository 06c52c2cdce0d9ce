#include "hot/hot_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace komoku::store {
namespace {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS keys(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  created_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS changes(
  key_id INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  value ANY NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS changes_by_key_time ON changes(key_id, time_ms);
)sql";

// v2: per-key options (JSON, as define gave them) and an uptime key's last
// refresh, which a restart needs to re-arm its timeout.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE keys ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN last_seen_ms INTEGER;
)sql";

// v3: changes arrive in `recent`, in arrival order and without an index,
// and move to `changes` in folds (hot_store.h). A row is in one of the two.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE IF NOT EXISTS recent(
  key_id INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  value ANY NOT NULL
) STRICT;
)sql";

// Migrations in order: kMigrations[v] takes a database from version v to v+1.
constexpr const char* kMigrations[] = {kSchemaV1, kSchemaV2, kSchemaV3};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == HotStore::kSchemaVersion);

// A sequence number as SQLite's signed integer.
int64_t SeqParam(uint64_t seq) { return static_cast<int64_t>(std::min<uint64_t>(seq, INT64_MAX)); }

Status ApplyConnectionPragmas(Db& db) {
  KOMOKU_RETURN_IF_ERROR(db.Exec("PRAGMA busy_timeout=5000"));
  KOMOKU_RETURN_IF_ERROR(db.Exec("PRAGMA synchronous=NORMAL"));
  return Status::Ok();
}

void BindValue(Stmt& stmt, int index, const Value& value) {
  if (const double* d = std::get_if<double>(&value)) {
    stmt.BindDouble(index, *d);
  } else if (const bool* b = std::get_if<bool>(&value)) {
    stmt.BindInt64(index, *b ? 1 : 0);
  } else {
    stmt.BindText(index, std::get<std::string>(value));
  }
}

Value ColumnValue(const Stmt& stmt, int col) {
  switch (stmt.ColumnType(col)) {
    case SQLITE_FLOAT:
      return Value(stmt.ColumnDouble(col));
    case SQLITE_INTEGER:
      return Value(stmt.ColumnInt64(col) != 0);
    default:
      return Value(stmt.ColumnText(col));
  }
}

// A query over both tables of changes: `where` (with the same parameters)
// on `changes` and on `recent`, which is scanned only when parameter
// `recent_param` is 1; `tail` orders and limits the union. The columns are
// time_ms, value and the sequence number, seq.
std::string BothTables(const std::string& where, int recent_param, const std::string& tail) {
  return "SELECT time_ms, value, rowid AS seq FROM changes WHERE " + where +
         " UNION ALL SELECT time_ms, value, rowid FROM recent WHERE ?" +
         std::to_string(recent_param) + " AND " + where + " " + tail;
}

// The earliest time of a row before ?2 written after cold_seq ?3 and up to
// max_seq ?4, of key ?1 when `by_key`. With a key, the (key_id, time_ms)
// index bounds the search to the key's rows before cold_to, which are few
// once compaction has deleted its own.
std::string EarliestLateSql(bool by_key) {
  const std::string where = by_key ? "key_id=?1 AND time_ms<?2 AND rowid>?3 AND rowid<=?4"
                                   : "time_ms<?2 AND rowid>?3 AND rowid<=?4";
  return "SELECT min(t) FROM (SELECT min(time_ms) AS t FROM changes WHERE " + where +
         " UNION ALL SELECT min(time_ms) FROM recent WHERE " + where + ")";
}

}  // namespace

HotStore::HotStore(const std::string& path, const HotStoreOptions& options,
                   std::shared_ptr<spdlog::logger> log, Metrics* metrics)
    : path_(path), options_(options), log_(std::move(log)), metrics_(metrics) {
  keep_rows_after_ = options.keep_rows_after;
}

Result<std::unique_ptr<HotStore>> HotStore::Open(const std::string& path,
                                                 const HotStoreOptions& options,
                                                 std::shared_ptr<spdlog::logger> log,
                                                 Metrics* metrics) {
  std::unique_ptr<HotStore> hs(new HotStore(path, options, std::move(log), metrics));
  KOMOKU_RETURN_IF_ERROR(hs->Init());
  hs->writer_ = std::thread([p = hs.get()] { p->WriterLoop(); });
  hs->checkpointer_ = std::thread([p = hs.get()] { p->CheckpointLoop(); });
  return hs;
}

Status HotStore::Init() {
  Result<std::unique_ptr<Db>> w = Db::Open(path_, /*create=*/true);
  if (!w.ok()) return w.status();
  writer_db_ = std::move(w.value());
  Result<int64_t> mode = writer_db_->QueryInt("PRAGMA user_version");
  if (!mode.ok()) return mode.status().WithContext(path_);
  // Small pages for a new database (an existing one keeps its own; SQLite
  // ignores this then). A change rewrites one leaf of the changes table and
  // one of its index, each a WAL frame of a whole page, so the page size is
  // most of what a change costs the disk: 1 KB pages write 4.3 KB a change
  // where 4 KB pages write 13.8 KB (docs/storage.md, "What a change costs
  // the disk"). Must come before the first write and the switch to WAL.
  KOMOKU_RETURN_IF_ERROR(writer_db_->Exec("PRAGMA page_size=" + std::to_string(kPageSize)));
  // Freed pages can be given back (VacuumStep). This takes effect only on a
  // database without tables yet; one made without it is converted below.
  // It must come after page_size: setting it fixes the page size of a new
  // database.
  KOMOKU_RETURN_IF_ERROR(writer_db_->Exec("PRAGMA auto_vacuum=INCREMENTAL"));
  // journal_mode returns text; Exec is enough, and the mode is checked below.
  KOMOKU_RETURN_IF_ERROR(writer_db_->Exec("PRAGMA journal_mode=WAL"));
  KOMOKU_RETURN_IF_ERROR(ApplyConnectionPragmas(*writer_db_));
  // Checkpoints belong to the checkpoint thread, never to a commit that a
  // caller is waiting for.
  KOMOKU_RETURN_IF_ERROR(writer_db_->Exec("PRAGMA wal_autocheckpoint=0"));
  KOMOKU_RETURN_IF_ERROR(
      writer_db_->Exec("PRAGMA journal_size_limit=" + std::to_string(kWalKeepBytes)));
  KOMOKU_RETURN_IF_ERROR(Migrate(*writer_db_));
  // 0 NONE, 1 FULL, 2 INCREMENTAL. Only the writer is open: VACUUM needs no
  // other connection in the middle of a statement.
  Result<int64_t> auto_vacuum = writer_db_->QueryInt("PRAGMA auto_vacuum");
  if (!auto_vacuum.ok()) return auto_vacuum.status().WithContext(path_);
  if (*auto_vacuum == 0) {
    ConvertToIncrementalVacuum();
    auto_vacuum = writer_db_->QueryInt("PRAGMA auto_vacuum");
    if (!auto_vacuum.ok()) return auto_vacuum.status().WithContext(path_);
  }
  incremental_vacuum_ = *auto_vacuum == 2;
  KOMOKU_RETURN_IF_ERROR(PrepareWriter());
  {
    // What `recent` holds from the last run, for the writer's bookkeeping.
    Result<Stmt> q = writer_db_->Prepare("SELECT key_id, time_ms FROM recent");
    if (!q.ok()) return q.status();
    Status st;
    int64_t min_time = INT64_MAX;
    while (q->Step(&st)) {
      const KeyTime kt{q->ColumnInt64(0), q->ColumnInt64(1)};
      recent_times_.insert(kt);
      min_time = std::min(min_time, kt.time_ms);
      ++recent_rows_;
    }
    if (!st.ok()) return st.WithContext(path_);
    recent_min_time_.store(min_time);
    if (recent_rows_ > 0) recent_since_ms_ = SteadyNowMs();
    metrics_->Set("komoku_hot_recent_rows", recent_rows_);
  }
  Result<int64_t> page_size = writer_db_->QueryInt("PRAGMA page_size");
  if (!page_size.ok()) return page_size.status().WithContext(path_);
  wal_checkpoint_frames_ = kWalCheckpointBytes / std::max<int64_t>(512, *page_size);
  // Replaces the automatic checkpoint's hook, which wal_autocheckpoint=0
  // turned off.
  sqlite3_wal_hook(writer_db_->handle(), &HotStore::OnWalCommit, this);
  // Pages a stop left free (a deletion or its vacuum cut short) go back
  // from the start on.
  vacuum_due_ = UpdateFreePages() > kVacuumSlackPages && incremental_vacuum_;

  Result<std::unique_ptr<Db>> r = Db::Open(path_, /*create=*/false);
  if (!r.ok()) return r.status();
  reader_db_ = std::move(r.value());
  KOMOKU_RETURN_IF_ERROR(ApplyConnectionPragmas(*reader_db_));
  Result<Stmt> rh = reader_db_->Prepare(
      BothTables("key_id=?1 AND time_ms>=?2 AND time_ms<?3 AND rowid<=?5 AND NOT (time_ms<?6 "
                 "AND rowid<=?7)",
                 8, "ORDER BY time_ms, seq LIMIT ?4"));
  if (!rh.ok()) return rh.status();
  read_history_ = std::move(rh.value());
  Result<Stmt> ra =
      reader_db_->Prepare(BothTables("key_id=?1 AND time_ms<=?2 AND NOT (time_ms<?3 AND rowid<=?4)",
                                     5, "ORDER BY time_ms DESC, seq DESC LIMIT 1"));
  if (!ra.ok()) return ra.status();
  read_at_ = std::move(ra.value());
  Result<Stmt> rc = reader_db_->Prepare(
      "SELECT rowid, key_id, time_ms, value FROM changes WHERE rowid>?1 UNION ALL "
      "SELECT rowid, key_id, time_ms, value FROM recent WHERE rowid>?1 ORDER BY 1 LIMIT ?2");
  if (!rc.ok()) return rc.status();
  read_after_ = std::move(rc.value());
  Result<Stmt> rl = reader_db_->Prepare(EarliestLateSql(true));
  if (!rl.ok()) return rl.status();
  read_late_ = std::move(rl.value());
  return Status::Ok();
}

Status HotStore::Migrate(Db& db) {
  Result<int64_t> version = db.QueryInt("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version > kSchemaVersion) {
    return Status::InvalidArgument(path_ + ": schema version " + std::to_string(*version) +
                                   " was written by a newer Komoku (this one knows up to " +
                                   std::to_string(kSchemaVersion) + ")");
  }
  if (*version == kSchemaVersion) return Status::Ok();
  // All steps in one transaction: a crash leaves the old version whole.
  KOMOKU_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  Status st;
  for (int64_t v = *version; v < kSchemaVersion && st.ok(); ++v) st = db.Exec(kMigrations[v]);
  if (st.ok()) st = db.Exec("PRAGMA user_version=" + std::to_string(kSchemaVersion));
  if (!st.ok()) {
    (void)db.Exec("ROLLBACK");
    return st.WithContext(path_ + ": migrating schema " + std::to_string(*version) + " to " +
                          std::to_string(kSchemaVersion));
  }
  KOMOKU_RETURN_IF_ERROR(db.Exec("COMMIT"));
  if (log_) {
    log_->info("schema of {} at version {} (was {})", path_, kSchemaVersion, *version);
  }
  return Status::Ok();
}

void HotStore::ConvertToIncrementalVacuum() {
  auto megabytes = [this]() -> double {
    Result<int64_t> pages = writer_db_->QueryInt("PRAGMA page_count");
    Result<int64_t> size = writer_db_->QueryInt("PRAGMA page_size");
    return pages.ok() && size.ok() ? static_cast<double>(*pages) * *size / 1e6 : -1;
  };
  Result<int64_t> free_pages = writer_db_->QueryInt("PRAGMA freelist_count");
  const double before = megabytes();
  log_->info(
      "{}: rewriting the database once ({:.1f} MB, {} free pages) to turn on "
      "auto_vacuum=INCREMENTAL, so pages that deletions free go back to the file system",
      path_, before, free_pages.ok() ? *free_pages : -1);
  const auto start = std::chrono::steady_clock::now();
  // VACUUM writes the new database through the WAL; the checkpoint folds it
  // back, so the WAL does not stay as large as the database.
  Status st = writer_db_->Exec("PRAGMA auto_vacuum=INCREMENTAL");
  if (st.ok()) st = writer_db_->Exec("VACUUM");
  if (st.ok()) st = writer_db_->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!st.ok()) {
    log_->warn(
        "{}: turning on auto_vacuum failed after {:.1f} s (free pages stay in the file; the next "
        "start tries again): {}",
        path_, seconds, st.ToString());
    return;
  }
  log_->info("{}: auto_vacuum=INCREMENTAL on after {:.1f} s: {:.1f} MB before, {:.1f} MB after",
             path_, seconds, before, megabytes());
}

// The row is ?1 key_id, ?2 time_ms, ?3 value, ?4 rowid (its sequence
// number). A checked row goes in only where no row of the same key, time and
// value is: the index on (key_id, time_ms) finds one in `changes` at once;
// `recent` is scanned, so it is asked only when recent_times_ says it may
// hold one.
std::string HotStore::InsertSql(InsertInto into, DuplicateCheck check) {
  std::string sql = into == InsertInto::kRecent ? "INSERT INTO recent" : "INSERT INTO changes";
  sql += "(rowid, key_id, time_ms, value) ";
  if (check == DuplicateCheck::kNone) return sql + "VALUES(?4, ?1, ?2, ?3)";
  sql +=
      "SELECT ?4, ?1, ?2, ?3 WHERE NOT EXISTS "
      "(SELECT 1 FROM changes WHERE key_id=?1 AND time_ms=?2 AND value IS ?3)";
  if (check == DuplicateCheck::kBothTables) {
    sql += " AND NOT EXISTS (SELECT 1 FROM recent WHERE key_id=?1 AND time_ms=?2 AND value IS ?3)";
  }
  return sql;
}

Status HotStore::PrepareWriter() {
  struct {
    Stmt* stmt;
    const char* sql;
  } statements[] = {
      {&upsert_key_,
       "INSERT INTO keys(id, name, type, options, created_ms) VALUES(?1, ?2, ?3, ?4, ?5) "
       "ON CONFLICT(id) DO UPDATE SET type=excluded.type, options=excluded.options"},
      {&delete_recent_key_, "DELETE FROM recent WHERE key_id=?1"},
      // In rowid order: `changes` grows at its end, and the index leaves
      // each key's rows go to stay in the page cache until the commit.
      {&fold_move_,
       "INSERT INTO changes(rowid, key_id, time_ms, value) SELECT rowid, key_id, time_ms, value "
       "FROM recent ORDER BY rowid"},
      {&fold_clear_, "DELETE FROM recent"},
      {&touch_key_, "UPDATE keys SET last_seen_ms=?2 WHERE id=?1"},
      {&delete_changes_, "DELETE FROM changes WHERE key_id=?1"},
      {&delete_key_, "DELETE FROM keys WHERE id=?1"},
      {&delete_compacted_, "DELETE FROM changes WHERE rowid>?1 AND rowid<=?2 AND time_ms<?3"},
      // The rowid `?3` rows on from ?1 (the end of a chunk), if there are
      // that many up to ?2.
      {&chunk_end_,
       "SELECT rowid FROM changes WHERE rowid>?1 AND rowid<=?2 ORDER BY rowid LIMIT 1 "
       "OFFSET ?3"},
      {&freelist_count_, "PRAGMA freelist_count"},
      {&page_count_, "PRAGMA page_count"},
  };
  for (auto& s : statements) {
    Result<Stmt> stmt = writer_db_->Prepare(s.sql);
    if (!stmt.ok()) return stmt.status();
    *s.stmt = std::move(stmt.value());
  }
  for (InsertInto into : {InsertInto::kRecent, InsertInto::kChanges}) {
    for (DuplicateCheck check :
         {DuplicateCheck::kNone, DuplicateCheck::kChanges, DuplicateCheck::kBothTables}) {
      Result<Stmt> stmt = writer_db_->Prepare(InsertSql(into, check));
      if (!stmt.ok()) return stmt.status();
      insert_[static_cast<int>(into)][static_cast<int>(check)] = std::move(stmt.value());
    }
  }
  return Status::Ok();
}

Result<std::vector<HotStore::LoadedKey>> HotStore::LoadKeys(const ColdMark& mark) {
  std::lock_guard<std::mutex> lock(read_mu_);
  Result<Stmt> keys =
      reader_db_->Prepare("SELECT id, name, type, options, last_seen_ms FROM keys ORDER BY id");
  if (!keys.ok()) return keys.status();
  Result<Stmt> last = reader_db_->Prepare(
      "SELECT time_ms, value, rowid FROM changes WHERE key_id=?1 AND NOT (time_ms<?2 AND "
      "rowid<=?3) ORDER BY time_ms DESC, rowid DESC LIMIT 2");
  if (!last.ok()) return last.status();
  // The newest two of each key: from `changes` by its index, and from
  // `recent` in one scan for all keys (not one a key).
  struct Newest {
    int64_t time_ms;
    int64_t seq;
    Value value;
    bool operator>(const Newest& o) const {
      return time_ms != o.time_ms ? time_ms > o.time_ms : seq > o.seq;
    }
  };
  auto keep_two = [](std::vector<Newest>* v, Newest n) {
    v->push_back(std::move(n));
    std::sort(v->begin(), v->end(), std::greater<Newest>());
    if (v->size() > 2) v->resize(2);
  };
  std::unordered_map<int64_t, std::vector<Newest>> from_recent;
  Status st;
  {
    Result<Stmt> recent = reader_db_->Prepare(
        "SELECT key_id, time_ms, value, rowid FROM recent WHERE NOT (time_ms<?1 AND rowid<=?2)");
    if (!recent.ok()) return recent.status();
    recent->BindInt64(1, mark.cold_to);
    recent->BindInt64(2, SeqParam(mark.cold_seq));
    while (recent->Step(&st)) {
      keep_two(&from_recent[recent->ColumnInt64(0)],
               Newest{recent->ColumnInt64(1), recent->ColumnInt64(3), ColumnValue(*recent, 2)});
    }
    if (!st.ok()) return st;
  }
  std::vector<LoadedKey> out;
  while (keys->Step(&st)) {
    LoadedKey k;
    k.id = keys->ColumnInt64(0);
    k.name = keys->ColumnText(1);
    Result<KeyType> type = ParseKeyType(keys->ColumnText(2));
    if (!type.ok()) {
      return Status::Corruption(path_ + ": key '" + k.name + "': " + type.status().message());
    }
    k.type = *type;
    k.options_json = keys->ColumnText(3);
    if (keys->ColumnType(4) != SQLITE_NULL) k.last_seen_ms = keys->ColumnInt64(4);
    last->BindInt64(1, k.id);
    last->BindInt64(2, mark.cold_to);
    last->BindInt64(3, SeqParam(mark.cold_seq));
    std::vector<Newest> newest;
    if (auto it = from_recent.find(k.id); it != from_recent.end()) newest = std::move(it->second);
    while (last->Step(&st)) {
      keep_two(&newest, Newest{last->ColumnInt64(0), last->ColumnInt64(2), ColumnValue(*last, 1)});
    }
    last->Reset();
    if (!st.ok()) return st;
    // Emplaced: GCC 12 for armhf warns (maybe-uninitialized) of a Sample
    // temporary's variant moved into the optional.
    if (!newest.empty()) k.last.emplace(Sample{newest[0].time_ms, std::move(newest[0].value)});
    if (newest.size() > 1) {
      k.previous.emplace(Sample{newest[1].time_ms, std::move(newest[1].value)});
    }
    out.push_back(std::move(k));
  }
  if (!st.ok()) return st;
  return out;
}

uint64_t HotStore::Enqueue(Op op) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(std::move(op));
  if (queue_.size() >= options_.commit_max_rows) work_cv_.notify_one();
  return next_seq_++;
}

Result<uint64_t> HotStore::MaxChangeSeq() {
  std::lock_guard<std::mutex> lock(read_mu_);
  Result<int64_t> max = reader_db_->QueryInt(
      "SELECT max((SELECT coalesce(max(rowid), 0) FROM changes), "
      "(SELECT coalesce(max(rowid), 0) FROM recent))");
  if (!max.ok()) return max.status();
  return static_cast<uint64_t>(*max);
}

uint64_t HotStore::EnqueueDeleteCompacted(const ColdMark& mark) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++deletions_queued_;
  }
  return Enqueue(DeleteCompacted{mark});
}

void HotStore::WaitDeletions() {
  std::unique_lock<std::mutex> lock(mu_);
  committed_cv_.wait(
      lock, [&] { return closed_ || (deletions_done_ >= deletions_queued_ && !vacuum_due_); });
}

uint64_t HotStore::EnqueueUpsertKey(int64_t id, const std::string& name, KeyType type,
                                    std::string options_json, int64_t created_ms) {
  return Enqueue(UpsertKey{id, name, type, std::move(options_json), created_ms});
}

uint64_t HotStore::EnqueueChange(int64_t key_id, uint64_t change_seq, const Sample& sample,
                                 bool skip_if_stored) {
  return Enqueue(ChangeRow{key_id, change_seq, sample, skip_if_stored});
}

uint64_t HotStore::EnqueueTouch(int64_t key_id, int64_t last_seen_ms) {
  return Enqueue(Touch{key_id, last_seen_ms});
}

uint64_t HotStore::EnqueueDeleteKey(int64_t key_id) { return Enqueue(DeleteKey{key_id}); }

Status HotStore::FoldNow() { return WaitCommitted(Enqueue(FoldRecent{})); }

Status HotStore::WaitCommitted(uint64_t seq) {
  std::unique_lock<std::mutex> lock(mu_);
  if (committed_seq_ >= seq) return Status::Ok();
  ++waiters_;
  work_cv_.notify_one();
  committed_cv_.wait(lock, [&] { return committed_seq_ >= seq || failed_seq_ >= seq; });
  --waiters_;
  if (committed_seq_ >= seq) return Status::Ok();
  return Status::IOError(path_ + ": change could not be committed before shutdown");
}

Status HotStore::WriteHealth() const {
  if (!write_failing_.load(std::memory_order_acquire)) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  return write_error_;
}

uint64_t HotStore::CommittedSeq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return committed_seq_;
}

bool HotStore::WaitCommittedFor(uint64_t seq, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (committed_seq_ >= seq) return true;
  ++waiters_;
  work_cv_.notify_one();
  committed_cv_.wait_for(lock, timeout,
                         [&] { return committed_seq_ >= seq || failed_seq_ >= seq || closed_; });
  --waiters_;
  return committed_seq_ >= seq;
}

size_t HotStore::QueueDepth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

std::chrono::milliseconds HotStore::StalledFor() const {
  int64_t since = busy_since_ms_.load(std::memory_order_relaxed);
  if (since == 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(std::max<int64_t>(0, SteadyNowMs() - since));
}

void HotStore::WriterLoop() {
  std::vector<Op> batch;
  auto backoff = std::chrono::milliseconds(100);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Someone waiting means a caller (an MQTT acknowledgement, an HTTP
    // answer) is blocked on this commit: commit at once, taking whatever else
    // queued meanwhile. Otherwise let rows gather for commit_interval.
    // A deletion of compacted rows in progress goes on chunk by chunk
    // without waiting; whatever queues meanwhile joins the next chunk's
    // commit. Giving free pages back goes on likewise, a step after each
    // commit.
    // Both wait while the WAL is full until the checkpoint thread has
    // caught up (OnWalCommit).
    auto background = [&] { return (pending_delete_ || vacuum_due_) && BackgroundMayWrite(); };
    work_cv_.wait_for(lock, background() ? std::chrono::milliseconds(0) : options_.commit_interval,
                      [&] {
                        return stopping_ || (waiters_ > 0 && !queue_.empty()) ||
                               queue_.size() >= options_.commit_max_rows || background();
                      });
    const bool with_chunk = pending_delete_ && BackgroundMayWrite();
    if (queue_.empty() && (stopping_ || !with_chunk)) {
      // At shutdown a deletion or vacuum left unfinished is done again
      // after the next start (Store::Open queues the deletion; Init finds
      // the free pages).
      if (stopping_) break;
      if (vacuum_due_ && BackgroundMayWrite()) RunVacuumStep(lock);
      continue;
    }
    batch.swap(queue_);
    if (busy_since_ms_.load(std::memory_order_relaxed) == 0) {
      busy_since_ms_.store(std::max<int64_t>(1, SteadyNowMs()), std::memory_order_relaxed);
    }
    uint64_t last_seq = next_seq_ - 1;
    bool stopping = stopping_;
    lock.unlock();

    auto start = std::chrono::steady_clock::now();
    bool freed = false;
    Status st = CommitBatch(batch, &freed);
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
    lock.lock();
    if (st.ok() && freed && incremental_vacuum_) vacuum_due_ = true;
    if (st.ok() && !pending_delete_ && deletions_done_ < deletions_taken_) {
      deletions_done_ = deletions_taken_;
      committed_cv_.notify_all();
    }
    if (st.ok() && batch.empty()) {
      // A chunk of a deletion alone: no change was waiting for it.
      busy_since_ms_.store(0, std::memory_order_relaxed);
      backoff = std::chrono::milliseconds(100);
      if (vacuum_due_ && !stopping_ && BackgroundMayWrite()) RunVacuumStep(lock);
      continue;
    }
    if (st.ok()) {
      committed_seq_ = last_seq;
      if (!write_error_.ok()) {
        log_->info("commits succeed again; changes are taken again");
        write_error_ = Status::Ok();
        write_failing_.store(false, std::memory_order_release);
        metrics_->Set("komoku_store_write_failing", 0);
      }
      metrics_->Add("komoku_commit_batches_total");
      metrics_->Add("komoku_commit_rows_total", static_cast<int64_t>(batch.size()));
      metrics_->Add("komoku_commit_micros_total", micros);
      // Commit latency histogram (cumulative buckets, Prometheus style).
      for (const HistogramBound& b : kCommitSecondsBounds) {
        if (micros <= b.micros) {
          metrics_->Add(std::string("komoku_commit_seconds_bucket{le=\"") + b.le + "\"}");
        }
      }
      batch.clear();
      busy_since_ms_.store(0, std::memory_order_relaxed);
      backoff = std::chrono::milliseconds(100);
      committed_cv_.notify_all();
      // One step after each commit, with the callers of this one already
      // released, so a flood of changes does not starve it and it holds up
      // the next commit by one step at most.
      if (vacuum_due_ && !stopping_ && BackgroundMayWrite()) RunVacuumStep(lock);
      continue;
    }
    metrics_->Add("komoku_commit_errors_total");
    if (stopping) {
      log_->error("giving up on {} queued rows at shutdown: {}", batch.size(), st.ToString());
      failed_seq_ = last_seq;
      committed_cv_.notify_all();
      batch.clear();
      busy_since_ms_.store(0, std::memory_order_relaxed);
      continue;
    }
    // Keep the rows and try again: callers stay blocked, so nothing is
    // acknowledged that is not stored. Until a commit succeeds, the Store
    // refuses new changes (WriteHealth) instead of queueing them.
    {
      const int code = sqlite3_extended_errcode(writer_db_->handle()) & 0xFF;
      const bool full =
          code == SQLITE_FULL || st.message().find("disk is full") != std::string::npos;
      write_error_ =
          Status::IOError(path_ + ": " + (full ? "the disk is full" : "cannot write") +
                          "; changes are refused until a commit succeeds (" + st.message() + ")")
              .WithReason(full ? "disk_full" : "write_failed");
      write_failing_.store(true, std::memory_order_release);
      metrics_->Set("komoku_store_write_failing", 1);
    }
    log_->error("commit of {} rows failed, retrying in {} ms: {}", batch.size(), backoff.count(),
                st.ToString());
    batch.insert(batch.end(), std::make_move_iterator(queue_.begin()),
                 std::make_move_iterator(queue_.end()));
    queue_.swap(batch);
    batch.clear();
    committed_cv_.wait_for(lock, backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

void HotStore::RunVacuumStep(std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  const bool more = VacuumStep();
  lock.lock();
  vacuum_due_ = more;
  if (!more) committed_cv_.notify_all();  // WaitDeletions
}

int64_t HotStore::UpdateFreePages() {
  Status st;
  int64_t free_pages = -1, pages = -1;
  if (freelist_count_.Step(&st)) free_pages = freelist_count_.ColumnInt64(0);
  freelist_count_.Reset();
  if (page_count_.Step(&st)) pages = page_count_.ColumnInt64(0);
  page_count_.Reset();
  if (!st.ok() || free_pages < 0 || pages < 0) {
    log_->warn("{}: cannot count free pages: {}", path_, st.ToString());
    return -1;
  }
  metrics_->Set("komoku_hot_free_pages", free_pages);
  metrics_->Set("komoku_hot_pages", pages);
  return free_pages;
}

bool HotStore::VacuumStep() {
  if (!incremental_vacuum_) return false;
  const int64_t before = UpdateFreePages();
  if (before <= kVacuumSlackPages) return false;
  const int64_t pages = std::min(kVacuumStepPages, before - kVacuumSlackPages);
  const auto start = std::chrono::steady_clock::now();
  // Its own transaction: moves pages from the end of the file into free
  // ones and truncates the file (at the next checkpoint, in WAL mode).
  Status st = writer_db_->Exec("PRAGMA incremental_vacuum(" + std::to_string(pages) + ")");
  const int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count();
  if (!st.ok()) {
    metrics_->Add("komoku_hot_vacuum_errors_total");
    log_->warn("{}: giving free pages back failed (tried again after the next deletion): {}", path_,
               st.ToString());
    return false;
  }
  const int64_t after = UpdateFreePages();
  metrics_->Add("komoku_hot_vacuum_steps_total");
  metrics_->Add("komoku_hot_vacuumed_pages_total", std::max<int64_t>(0, before - after));
  metrics_->Add("komoku_hot_vacuum_micros_total", micros);
  // Only the writer sets it: no other update comes between Get and Set.
  if (micros > metrics_->Get("komoku_hot_vacuum_step_max_micros")) {
    metrics_->Set("komoku_hot_vacuum_step_max_micros", micros);
  }
  // A step that gave nothing back would give nothing back again.
  return after > kVacuumSlackPages && after < before;
}

Status HotStore::DeleteChunk(const PendingDelete& pending, std::optional<PendingDelete>* next) {
  // Rows a sequence reader has not yet taken stay; a later compaction's
  // deletion takes them once it has.
  const int64_t last = SeqParam(std::min<uint64_t>(pending.mark.cold_seq, keep_rows_after_.load()));
  chunk_end_.BindInt64(1, pending.after_rowid);
  chunk_end_.BindInt64(2, last);
  chunk_end_.BindInt64(3, std::max<int64_t>(0, options_.delete_chunk_rows - 1));
  Status st;
  int64_t end = last;
  if (chunk_end_.Step(&st)) end = chunk_end_.ColumnInt64(0);
  chunk_end_.Reset();
  KOMOKU_RETURN_IF_ERROR(st);
  delete_compacted_.BindInt64(1, pending.after_rowid);
  delete_compacted_.BindInt64(2, end);
  delete_compacted_.BindInt64(3, pending.mark.cold_to);
  KOMOKU_RETURN_IF_ERROR(delete_compacted_.Run());
  if (end >= last) {
    next->reset();
  } else {
    *next = PendingDelete{pending.mark, end};
  }
  return Status::Ok();
}

int64_t HotStore::RecentMayHoldBefore(int64_t to_ms) const {
  return recent_min_time_.load() < to_ms ? 1 : 0;
}

bool HotStore::FoldDue(const std::vector<Op>& batch) const {
  if (recent_rows_ >= options_.fold_rows) return true;
  if (recent_rows_ > 0 && SteadyNowMs() - recent_since_ms_ >= options_.fold_interval.count()) {
    return true;
  }
  // A deletion of compacted rows looks at `changes` alone.
  for (const Op& op : batch) {
    if (std::holds_alternative<DeleteCompacted>(op) || std::holds_alternative<FoldRecent>(op)) {
      return recent_rows_ > 0;
    }
  }
  return false;
}

Status HotStore::Fold() {
  KOMOKU_RETURN_IF_ERROR(fold_move_.Run());
  return fold_clear_.Run();
}

Status HotStore::CommitBatch(const std::vector<Op>& batch, bool* freed) {
  KOMOKU_RETURN_IF_ERROR(writer_db_->Exec("BEGIN IMMEDIATE"));
  Status st;
  // Taken over only when the commit succeeds.
  std::optional<PendingDelete> pending = pending_delete_;
  uint64_t taken = 0;  // deletions this batch starts
  // The fold goes first, in this transaction: what follows lands in an
  // empty `recent`.
  const bool fold = FoldDue(batch);
  const auto fold_start = std::chrono::steady_clock::now();
  if (fold) st = Fold();
  const int64_t fold_micros = std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::steady_clock::now() - fold_start)
                                  .count();
  // A big batch goes straight into `changes` (kDirectRows).
  const size_t change_rows =
      static_cast<size_t>(std::count_if(batch.begin(), batch.end(), [](const Op& op) {
        return std::holds_alternative<ChangeRow>(op);
      }));
  const bool direct = change_rows >= kDirectRows;
  // The rows this batch adds to `recent`, and the oldest time among them.
  std::vector<KeyTime> added;
  int64_t added_min = INT64_MAX;
  int64_t removed = 0;  // rows of `recent` a deleted key took along
  for (const Op& op : batch) {
    if (!st.ok()) break;
    if (const auto* row = std::get_if<ChangeRow>(&op)) {
      const KeyTime kt{row->key_id, row->sample.time_ms};
      // A duplicate can be in `recent` only where a row of the same key and
      // time is (or was); looked up only for rows that are checked at all.
      const bool maybe_in_recent = row->skip_if_stored && recent_times_.count(kt) != 0;
      const DuplicateCheck check = !row->skip_if_stored ? DuplicateCheck::kNone
                                   : maybe_in_recent    ? DuplicateCheck::kBothTables
                                                        : DuplicateCheck::kChanges;
      Stmt& insert = insert_[static_cast<int>(direct ? InsertInto::kChanges : InsertInto::kRecent)]
                            [static_cast<int>(check)];
      insert.BindInt64(1, row->key_id);
      insert.BindInt64(2, row->sample.time_ms);
      BindValue(insert, 3, row->sample.value);
      insert.BindInt64(4, static_cast<int64_t>(row->seq));
      st = insert.Run();
      if (!st.ok()) break;
      if (sqlite3_changes(writer_db_->handle()) == 0) {
        metrics_->Add("komoku_changes_duplicate_total");
        continue;
      }
      if (direct) continue;
      recent_times_.insert(kt);
      added.push_back(kt);
      if (kt.time_ms < added_min) {
        added_min = kt.time_ms;
        // Before the commit: a reader that sees this row also sees it in
        // its range (RecentMayHoldBefore).
        int64_t cur = recent_min_time_.load();
        while (added_min < cur && !recent_min_time_.compare_exchange_weak(cur, added_min)) {
        }
      }
    } else if (const auto* touch = std::get_if<Touch>(&op)) {
      touch_key_.BindInt64(1, touch->key_id);
      touch_key_.BindInt64(2, touch->last_seen_ms);
      st = touch_key_.Run();
    } else if (const auto* key = std::get_if<UpsertKey>(&op)) {
      upsert_key_.BindInt64(1, key->id);
      upsert_key_.BindText(2, key->name);
      upsert_key_.BindText(3, KeyTypeName(key->type));
      upsert_key_.BindText(4, key->options_json);
      upsert_key_.BindInt64(5, key->created_ms);
      st = upsert_key_.Run();
    } else if (const auto* compacted = std::get_if<DeleteCompacted>(&op)) {
      // Marks only grow: the newest covers every earlier one.
      pending = PendingDelete{compacted->mark, 0};
      ++taken;
    } else if (std::holds_alternative<FoldRecent>(op)) {
      // Done before the batch's rows (FoldDue).
    } else {
      const auto& del = std::get<DeleteKey>(op);
      *freed = true;
      delete_changes_.BindInt64(1, del.key_id);
      st = delete_changes_.Run();
      if (st.ok()) {
        delete_recent_key_.BindInt64(1, del.key_id);
        st = delete_recent_key_.Run();
        removed += sqlite3_changes(writer_db_->handle());
      }
      if (st.ok()) {
        delete_key_.BindInt64(1, del.key_id);
        st = delete_key_.Run();
      }
    }
    if (!st.ok()) break;
  }
  // While the WAL is full, the deletion waits (OnWalCommit).
  if (st.ok() && pending && BackgroundMayWrite()) {
    st = DeleteChunk(*pending, &pending);
    *freed = true;
  }
  if (st.ok()) st = writer_db_->Exec("COMMIT");
  if (!st.ok()) {
    (void)writer_db_->Exec("ROLLBACK");
    return st;
  }
  pending_delete_ = pending;
  deletions_taken_ += taken;
  if (fold) {
    metrics_->Add("komoku_hot_folds_total");
    metrics_->Add("komoku_hot_folded_rows_total", recent_rows_);
    metrics_->Add("komoku_hot_fold_micros_total", fold_micros);
    recent_rows_ = 0;
    recent_since_ms_ = 0;
    recent_times_.clear();
    recent_times_.insert(added.begin(), added.end());
    recent_min_time_.store(added_min);
  }
  recent_rows_ = std::max<int64_t>(0, recent_rows_ - removed) + static_cast<int64_t>(added.size());
  if (recent_rows_ > 0 && recent_since_ms_ == 0) recent_since_ms_ = SteadyNowMs();
  metrics_->Set("komoku_hot_recent_rows", recent_rows_);
  return st;
}

int HotStore::OnWalCommit(void* self, sqlite3*, const char*, int frames) {
  auto* hs = static_cast<HotStore*>(self);
  if (frames < hs->wal_checkpoint_frames_) {
    hs->wal_full_ = false;
    return SQLITE_OK;
  }
  // Newly full, or full still after the checkpoint waited for (it could not
  // copy everything, or began before the frames that filled it): wait for
  // the next one.
  const uint64_t done = hs->checkpoints_done_.load();
  if (!hs->wal_full_ || done >= hs->wal_wait_checkpoints_) {
    hs->wal_full_ = true;
    hs->wal_wait_checkpoints_ = done + 1;
    std::lock_guard<std::mutex> lock(hs->checkpoint_mu_);
    hs->checkpoint_now_ = true;
    hs->checkpoint_cv_.notify_all();
  }
  return SQLITE_OK;
}

bool HotStore::BackgroundMayWrite() const {
  return !wal_full_ || checkpoints_done_.load() >= wal_wait_checkpoints_;
}

void HotStore::CheckpointLoop() {
  Result<std::unique_ptr<Db>> db = Db::Open(path_, /*create=*/false);
  if (!db.ok()) {
    log_->error("checkpoint thread cannot open the database: {}", db.status().ToString());
    return;
  }
  (void)ApplyConnectionPragmas(**db);
  std::unique_lock<std::mutex> lock(checkpoint_mu_);
  while (!checkpoint_stop_) {
    checkpoint_cv_.wait_for(lock, options_.checkpoint_interval,
                            [&] { return checkpoint_stop_ || checkpoint_now_; });
    if (checkpoint_stop_) break;
    checkpoint_now_ = false;
    lock.unlock();
    // PASSIVE never blocks the writer; it copies what it can and fsyncs.
    Status st = (*db)->Exec("PRAGMA wal_checkpoint(PASSIVE)");
    if (!st.ok()) log_->warn("checkpoint failed: {}", st.ToString());
    metrics_->Add("komoku_checkpoints_total");
    checkpoints_done_.fetch_add(1);
    {
      // A writer holding back background work for this checkpoint goes on.
      std::lock_guard<std::mutex> writer_lock(mu_);
    }
    work_cv_.notify_all();
    lock.lock();
  }
}

Result<std::vector<Sample>> HotStore::ReadHistory(int64_t key_id, int64_t from_ms, int64_t to_ms,
                                                  size_t limit, uint64_t max_seq,
                                                  const ColdMark& mark) {
  std::lock_guard<std::mutex> lock(read_mu_);
  read_history_.BindInt64(1, key_id);
  read_history_.BindInt64(2, from_ms);
  read_history_.BindInt64(3, to_ms);
  read_history_.BindInt64(4, static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX)));
  read_history_.BindInt64(5, SeqParam(max_seq));
  read_history_.BindInt64(6, mark.cold_to);
  read_history_.BindInt64(7, SeqParam(mark.cold_seq));
  read_history_.BindInt64(8, RecentMayHoldBefore(to_ms));
  std::vector<Sample> out;
  Status st;
  while (read_history_.Step(&st)) {
    out.push_back({read_history_.ColumnInt64(0), ColumnValue(read_history_, 1)});
  }
  read_history_.Reset();
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<HotStore::SeqChange>> HotStore::ReadChangesAfter(uint64_t after_seq,
                                                                    size_t limit) {
  std::lock_guard<std::mutex> lock(read_mu_);
  read_after_.BindInt64(1, SeqParam(after_seq));
  read_after_.BindInt64(2, static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX)));
  std::vector<SeqChange> out;
  Status st;
  while (read_after_.Step(&st)) {
    out.push_back({static_cast<uint64_t>(read_after_.ColumnInt64(0)), read_after_.ColumnInt64(1),
                   Sample{read_after_.ColumnInt64(2), ColumnValue(read_after_, 3)}});
  }
  read_after_.Reset();
  if (!st.ok()) return st;
  return out;
}

void HotStore::KeepRowsAfter(uint64_t seq) {
  uint64_t now = keep_rows_after_.load();
  while (seq > now && !keep_rows_after_.compare_exchange_weak(now, seq)) {
  }
}

// Idle scan connections kept: the history workers and compaction rarely
// scan more at once; a connection is a few pages of cache.
constexpr size_t kMaxIdleScans = 4;

Result<std::unique_ptr<HotStore::ScanConn>> HotStore::TakeScanConn() {
  {
    std::lock_guard<std::mutex> lock(scan_mu_);
    if (!idle_scans_.empty()) {
      std::unique_ptr<ScanConn> conn = std::move(idle_scans_.back());
      idle_scans_.pop_back();
      return conn;
    }
  }
  Result<std::unique_ptr<Db>> db = Db::Open(path_, /*create=*/false);
  if (!db.ok()) return db.status();
  KOMOKU_RETURN_IF_ERROR(ApplyConnectionPragmas(**db));
  Result<Stmt> scan = (*db)->Prepare(
      BothTables("key_id=?1 AND time_ms>=?2 AND time_ms<?3 AND NOT (time_ms<?4 AND rowid<=?5) "
                 "AND rowid<=?6",
                 7, "ORDER BY time_ms, seq"));
  if (!scan.ok()) return scan.status();
  auto conn = std::make_unique<ScanConn>();
  conn->db = std::move(db.value());
  conn->scan = std::move(scan.value());
  return conn;
}

void HotStore::ReturnScanConn(std::unique_ptr<ScanConn> conn) {
  std::lock_guard<std::mutex> lock(scan_mu_);
  if (idle_scans_.size() < kMaxIdleScans && !closed_scans_) idle_scans_.push_back(std::move(conn));
}

Status HotStore::ScanHistory(int64_t key_id, int64_t from_ms, int64_t to_ms,
                             const std::function<bool(const Sample&)>& fn, const ColdMark& mark,
                             uint64_t max_seq) {
  Result<std::unique_ptr<ScanConn>> conn = TakeScanConn();
  if (!conn.ok()) return conn.status();
  Stmt& scan = (*conn)->scan;
  scan.BindInt64(1, key_id);
  scan.BindInt64(2, from_ms);
  scan.BindInt64(3, to_ms);
  scan.BindInt64(4, mark.cold_to);
  scan.BindInt64(5, SeqParam(mark.cold_seq));
  scan.BindInt64(6, SeqParam(max_seq));
  scan.BindInt64(7, RecentMayHoldBefore(to_ms));
  Status st;
  while (scan.Step(&st)) {
    if (!fn(Sample{scan.ColumnInt64(0), ColumnValue(scan, 1)})) break;
  }
  // The reset ends the statement's read transaction, so the next scan on
  // this connection sees what was committed since.
  scan.Reset();
  // A connection that failed is not trusted again.
  if (st.ok()) ReturnScanConn(std::move(conn.value()));
  return st;
}

Result<std::optional<Sample>> HotStore::ReadAt(int64_t key_id, int64_t time_ms,
                                               const ColdMark& mark) {
  std::lock_guard<std::mutex> lock(read_mu_);
  read_at_.BindInt64(1, key_id);
  read_at_.BindInt64(2, time_ms);
  read_at_.BindInt64(3, mark.cold_to);
  read_at_.BindInt64(4, SeqParam(mark.cold_seq));
  read_at_.BindInt64(5, RecentMayHoldBefore(time_ms == INT64_MAX ? time_ms : time_ms + 1));
  Status st;
  std::optional<Sample> out;
  if (read_at_.Step(&st)) out = Sample{read_at_.ColumnInt64(0), ColumnValue(read_at_, 1)};
  read_at_.Reset();
  if (!st.ok()) return st;
  return out;
}

Result<std::optional<int64_t>> HotStore::EarliestLate(int64_t key_id, const ColdMark& mark,
                                                      uint64_t max_seq) {
  if (mark.cold_to == INT64_MIN) return std::optional<int64_t>();
  std::lock_guard<std::mutex> lock(read_mu_);
  // Every key's: compaction's, once per run; one key's: prepared once.
  std::optional<Stmt> all;
  if (!key_id) {
    Result<Stmt> q = reader_db_->Prepare(EarliestLateSql(false));
    if (!q.ok()) return q.status();
    all = std::move(q.value());
  }
  Stmt& q = all ? *all : read_late_;
  if (key_id) q.BindInt64(1, key_id);
  q.BindInt64(2, mark.cold_to);
  q.BindInt64(3, SeqParam(mark.cold_seq));
  q.BindInt64(4, SeqParam(max_seq));
  Status st;
  std::optional<int64_t> out;
  if (q.Step(&st) && q.ColumnType(0) != SQLITE_NULL) out = q.ColumnInt64(0);
  q.Reset();
  if (!st.ok()) return st;
  return out;
}

void HotStore::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    stopping_ = true;
  }
  work_cv_.notify_all();
  committed_cv_.notify_all();  // WaitDeletions gives up
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
  {
    std::lock_guard<std::mutex> lock(scan_mu_);
    closed_scans_ = true;
    idle_scans_.clear();
  }
  if (!writer_db_) return;  // Open failed before there was a database
  // The last word: fold the WAL into the database so the files at rest are
  // one complete database.
  Status st = writer_db_->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  if (!st.ok()) log_->warn("final checkpoint failed: {}", st.ToString());
}

HotStore::~HotStore() { Close(); }

}  // namespace komoku::store

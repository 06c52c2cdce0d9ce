// The hot store gives freed pages back: a new database has
// auto_vacuum=INCREMENTAL, one without it is converted once at open, and the
// pages that compaction's deletions (or a deleted key) free go back to the
// file system in bounded steps, so the file shrinks to about its live rows.
// Real SQLite files in a temporary directory, inspected with raw sqlite3.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "hot/hot_store.h"
#include "key_options_util.h"
#include "store/store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

using testing::FakeClock;
using testing::ManualCompactionOptions;
using testing::OpenTestStore;
using testing::Opts;
using testing::TempDir;

constexpr int64_t kMinute = 60'000;
constexpr int64_t kDay = 24 * 60 * kMinute;
constexpr int64_t kNow = 1'773'964'800'000;  // 2026-03-20 00:00:00 UTC

// A PRAGMA's integer answer on a connection of its own (-1 on failure).
int64_t Pragma(const std::string& path, const std::string& pragma) {
  sqlite3* db = nullptr;
  int64_t v = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* stmt = nullptr;
    const std::string sql = "PRAGMA " + pragma;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      v = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return v;
}

// Runs `sql` on a connection of its own; "" or SQLite's message.
std::string Exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return "cannot open " + path;
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    out = err ? err : sqlite3_errmsg(db);
  }
  sqlite3_free(err);
  sqlite3_close(db);
  return out;
}

class VacuumTest : public ::testing::Test {
 protected:
  std::string DataDir() const { return dir_.File("data"); }
  std::string DbPath() const { return DataDir() + "/komoku.db"; }

  std::unique_ptr<Store> Open(const HotStoreOptions& hot = {}) {
    ColdOptions cold;
    cold.raw_retention_ms = 0;
    return OpenTestStore(ManualCompactionOptions(DataDir(), &clock_, cold, hot));
  }

  // `key` every `step_ms` over [from, to), committed.
  static void PutSeries(Store& store, const std::string& key, int64_t from, int64_t to,
                        int64_t step_ms) {
    PutOptions o;
    o.wait_committed = false;
    uint64_t last = 0;
    int i = 0;
    for (int64_t t = from; t < to; t += step_ms, ++i) {
      o.time_ms = t;
      Result<Change> c = store.Put(key, InputValue(20.0 + (i % 97) * 0.1), o);
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      last = c->seq;
    }
    ASSERT_TRUE(store.WaitCommitted(last).ok());
  }

  // Every sample of `key`, as "time=value" lines.
  static std::string AllHistory(const Store& store, const std::string& key) {
    Result<std::vector<Sample>> h = store.History(key, 0, INT64_MAX, 10'000'000);
    if (!h.ok()) return h.status().ToString();
    std::string out;
    for (const Sample& s : *h) out += std::to_string(s.time_ms) + "=" + ValueToText(s.value) + "\n";
    return out;
  }

  TempDir dir_;
  FakeClock clock_{kNow};
};

TEST_F(VacuumTest, ANewDatabaseHasIncrementalAutoVacuumAndSmallPages) {
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    PutOptions o;
    o.time_ms = kNow - kMinute;
    ASSERT_TRUE(store->Put("t", InputValue(1.5), o).ok());
  }
  EXPECT_EQ(Pragma(DbPath(), "auto_vacuum"), 2);  // INCREMENTAL
  EXPECT_EQ(Pragma(DbPath(), "page_size"), HotStore::kPageSize);
}

// The case at a smaller scale: 20 days of one sensor at 10 s go
// cold; after the deletion the file holds about the two hot days, and it was
// given back in steps of at most kVacuumStepPages, between commits (a delete
// chunk of 5,000 rows frees far fewer pages than a step, so steps run
// beside the chunks).
TEST_F(VacuumTest, CompactedRowsGiveTheirPagesBackInBoundedSteps) {
  HotStoreOptions hot;
  hot.delete_chunk_rows = 5000;
  std::unique_ptr<Store> store = Open(hot);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Define("temp", KeyType::kNumeric, Opts({{"same_value_resolution", 0}})).ok());
  PutSeries(*store, "temp", kNow - 20 * kDay, kNow - kMinute, 10'000);
  const std::string before_history = AllHistory(*store, "temp");
  const int64_t pages_before = Pragma(DbPath(), "page_count");
  ASSERT_GT(pages_before, 5000);  // about 7 MB of 1 KB pages
  // Free pages before compacting are those the last fold took from
  // `recent` (the next rows reuse them), far fewer than compaction frees.
  ASSERT_LT(Pragma(DbPath(), "freelist_count"), pages_before / 5);

  Result<CompactionReport> r = store->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->cold_to_ms, kNow - 2 * kDay);
  store->WaitColdRowsDeleted();  // the deletion, then the vacuum steps

  const int64_t pages = Pragma(DbPath(), "page_count");
  const int64_t free_pages = Pragma(DbPath(), "freelist_count");
  // 18 of 20 days went cold: what stays is the two hot days and the keys.
  EXPECT_LE(free_pages, HotStore::kVacuumSlackPages);
  EXPECT_LT(pages, pages_before / 5) << "before " << pages_before;
  EXPECT_LE(pages, (pages - free_pages) * 11 / 10 + HotStore::kVacuumSlackPages);

  const Metrics& m = store->metrics();
  const int64_t steps = m.Get("komoku_hot_vacuum_steps_total");
  const int64_t given = m.Get("komoku_hot_vacuumed_pages_total");
  EXPECT_GE(given, pages_before - pages - HotStore::kVacuumSlackPages);
  EXPECT_GE(steps, 2);
  EXPECT_LE(given, steps * HotStore::kVacuumStepPages);
  EXPECT_EQ(m.Get("komoku_hot_free_pages"), free_pages);
  EXPECT_EQ(m.Get("komoku_hot_pages"), pages);
  EXPECT_EQ(m.Get("komoku_hot_vacuum_errors_total"), 0);

  // Nothing was lost on the way, and after a stop (which folds the WAL in)
  // the file on disk is that small too.
  EXPECT_EQ(AllHistory(*store, "temp"), before_history);
  store.reset();
  EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(DbPath())),
            pages * HotStore::kPageSize);
  store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(AllHistory(*store, "temp"), before_history);
}

// Deleting a key frees its rows' pages; they go back the same way.
TEST_F(VacuumTest, ADeletedKeyGivesItsPagesBack) {
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  PutSeries(*store, "keep", kNow - kDay, kNow, 60'000);
  PutSeries(*store, "gone", kNow - kDay, kNow, 1'000);  // 86,400 rows
  const int64_t pages_before = Pragma(DbPath(), "page_count");
  ASSERT_GT(pages_before, 2000);
  ASSERT_TRUE(store->Delete("gone").ok());
  store->WaitColdRowsDeleted();  // waits for the vacuum of any deletion too
  EXPECT_LE(Pragma(DbPath(), "freelist_count"), HotStore::kVacuumSlackPages);
  EXPECT_LT(Pragma(DbPath(), "page_count"), pages_before / 5);
  Result<std::vector<Sample>> keep = store->History("keep", 0, INT64_MAX, 10000);
  ASSERT_TRUE(keep.ok()) << keep.status().ToString();
  EXPECT_EQ(keep->size(), 1440u);
}

// A database an earlier Komoku made (auto_vacuum=NONE, with free pages in
// it) is converted once at open: auto_vacuum on, free pages gone, every row
// and the page size kept; the next open converts nothing.
TEST_F(VacuumTest, ADatabaseWithoutAutoVacuumIsConvertedOnceAtOpen) {
  std::string before_history;
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    PutSeries(*store, "temp", kNow - 3 * kDay, kNow, 30'000);
    before_history = AllHistory(*store, "temp");
  }
  // As an earlier Komoku left it: no auto_vacuum, and pages freed by a
  // deletion (here of a table of filler) still in the file.
  ASSERT_EQ(Exec(DbPath(),
                 "PRAGMA auto_vacuum=NONE; VACUUM; CREATE TABLE filler(x); "
                 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<20000) "
                 "INSERT INTO filler SELECT randomblob(100) FROM c; DROP TABLE filler; "
                 "PRAGMA wal_checkpoint(TRUNCATE);"),
            "");
  ASSERT_EQ(Pragma(DbPath(), "auto_vacuum"), 0);
  const int64_t free_before = Pragma(DbPath(), "freelist_count");
  const int64_t pages_before = Pragma(DbPath(), "page_count");
  ASSERT_GT(free_before, 2000);

  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(AllHistory(*store, "temp"), before_history);
    // It takes changes as before.
    PutOptions o;
    o.time_ms = kNow;
    ASSERT_TRUE(store->Put("temp", InputValue(99.5), o).ok());
  }
  EXPECT_EQ(Pragma(DbPath(), "auto_vacuum"), 2);
  EXPECT_EQ(Pragma(DbPath(), "page_size"), HotStore::kPageSize);
  EXPECT_LE(Pragma(DbPath(), "freelist_count"), HotStore::kVacuumSlackPages);
  EXPECT_LE(Pragma(DbPath(), "page_count"), pages_before - free_before + 50);
  EXPECT_EQ(Pragma(DbPath(), "user_version"), HotStore::kSchemaVersion);

  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(AllHistory(*store, "temp"), before_history + std::to_string(kNow) + "=99.5\n");
  EXPECT_EQ(Pragma(DbPath(), "auto_vacuum"), 2);
}

// A database with a page size of its own (SQLite's default 4 KB, from before
// Komoku chose 1 KB) keeps it through the conversion: VACUUM in WAL mode
// cannot change it.
TEST_F(VacuumTest, AConvertedDatabaseKeepsItsPageSize) {
  ASSERT_TRUE(std::filesystem::create_directories(DataDir()));
  ASSERT_EQ(
      Exec(DbPath(), "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; CREATE TABLE older(x);"), "");
  ASSERT_EQ(Pragma(DbPath(), "auto_vacuum"), 0);
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    PutOptions o;
    o.time_ms = kNow;
    ASSERT_TRUE(store->Put("t", InputValue(2.5), o).ok());
  }
  EXPECT_EQ(Pragma(DbPath(), "page_size"), 4096);
  EXPECT_EQ(Pragma(DbPath(), "auto_vacuum"), 2);
}

}  // namespace
}  // namespace komoku::store

// The hot store's two tables of changes: a change lands in `recent` (arrival
// order, no index) and moves to the indexed `changes` in a fold. Whichever
// table a row is in, every read finds it exactly once, across a fold, a
// restart, a late change and a deleted key; and a duplicate is found in
// either.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "hot/hot_store.h"
#include "store/store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

using testing::FakeClock;
using testing::OpenTestStore;
using testing::PutAt;
using testing::TempDir;

constexpr int64_t kNow = 1700000000000;
constexpr int64_t kDay = 24LL * 3600 * 1000;

// Rows of `table` in the store's database, read on a connection of its own.
int64_t Rows(const TempDir& dir, const std::string& table) {
  sqlite3* db = nullptr;
  const std::string path = dir.File("data") + "/komoku.db";
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  const std::string sql = "SELECT count(*) FROM " + table;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
  const int64_t n = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

std::vector<double> Values(Store& store, const std::string& key, int64_t from = 0,
                           int64_t to = INT64_MAX) {
  Result<std::vector<Sample>> h = store.History(key, from, to, SIZE_MAX);
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  std::vector<double> out;
  if (h.ok()) {
    for (const Sample& s : *h) out.push_back(std::get<double>(s.value));
  }
  return out;
}

std::vector<double> Scanned(Store& store, const std::string& key, int64_t from, int64_t to) {
  std::vector<double> out;
  Status st = store.Scan(key, from, to, [&](const Sample& s) {
    out.push_back(std::get<double>(s.value));
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

TEST(RecentTableTest, ChangesWaitInRecentAndAFoldMovesThemAllAtOnce) {
  TempDir dir;
  FakeClock clock(kNow);
  HotStoreOptions hot;
  hot.fold_rows = 10;
  auto store = OpenTestStore(dir.File("data"), &clock, hot);
  ASSERT_TRUE(store);
  // 10 changes of two keys, interleaved, committed together.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(PutAt(*store, i % 2 ? "b" : "a", i, kNow - 100000 + i * 1000).ok());
  }
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(Rows(dir, "recent"), 10);
  EXPECT_EQ(Rows(dir, "changes"), 0);
  EXPECT_EQ(Values(*store, "a"), (std::vector<double>{0, 2, 4, 6, 8}));
  EXPECT_EQ(Scanned(*store, "b", 0, INT64_MAX), (std::vector<double>{1, 3, 5, 7, 9}));
  EXPECT_EQ(store->metrics().Get("komoku_hot_folds_total"), 0);

  // The next commit finds 10 waiting: it moves them, then adds its own.
  ASSERT_TRUE(PutAt(*store, "a", 10, kNow - 100000 + 10 * 1000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(Rows(dir, "changes"), 10);
  EXPECT_EQ(Rows(dir, "recent"), 1);
  EXPECT_EQ(store->metrics().Get("komoku_hot_folds_total"), 1);
  EXPECT_EQ(store->metrics().Get("komoku_hot_folded_rows_total"), 10);
  // Both tables, in time order, each row once.
  EXPECT_EQ(Values(*store, "a"), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(Scanned(*store, "a", kNow - 100000 + 3000, INT64_MAX),
            (std::vector<double>{4, 6, 8, 10}));
  Result<std::optional<Sample>> at = store->At("a", kNow - 100000 + 9500);
  ASSERT_TRUE(at.ok() && at->has_value());
  EXPECT_EQ(std::get<double>((*at)->value), 8.0);
  at = store->At("a", kNow);
  ASSERT_TRUE(at.ok() && at->has_value());
  EXPECT_EQ(std::get<double>((*at)->value), 10.0);
}

TEST(RecentTableTest, RowsInRecentSurviveARestart) {
  TempDir dir;
  FakeClock clock(kNow);
  {
    auto store = OpenTestStore(dir.File("data"), &clock);
    ASSERT_TRUE(store);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(PutAt(*store, "t", i, kNow - 20000 + i * 1000).ok());
    ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
    store->Close();
  }
  EXPECT_EQ(Rows(dir, "recent"), 5);
  HotStoreOptions hot;
  hot.fold_rows = 6;
  auto store = OpenTestStore(dir.File("data"), &clock, hot);
  ASSERT_TRUE(store);
  // The current and previous values come from `recent`.
  Result<KeyInfo> info = store->Get("t");
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(info->last && info->previous);
  EXPECT_EQ(std::get<double>(info->last->value), 4.0);
  EXPECT_EQ(std::get<double>(info->previous->value), 3.0);
  // New changes take sequence numbers after those of `recent` (a reused
  // one would fail the commit), and a fold moves old and new together.
  auto time_of = [](int i) { return kNow - 20000 + i * 1000; };
  for (int i = 5; i < 8; ++i) ASSERT_TRUE(PutAt(*store, "t", i, time_of(i)).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  for (int i = 8; i < 12; ++i) ASSERT_TRUE(PutAt(*store, "t", i, time_of(i)).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(store->metrics().Get("komoku_hot_folds_total"), 1);
  EXPECT_EQ(Rows(dir, "changes"), 8);
  EXPECT_EQ(Rows(dir, "recent"), 4);
  EXPECT_EQ(Values(*store, "t"), (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  // Repeats of rows in either table are no-ops: one in `changes` (folded),
  // one in `recent`, neither of them the current or previous value.
  const int64_t dup0 = store->metrics().Get("komoku_changes_duplicate_total");
  for (int i : {1, 6, 8}) {
    Result<Change> again = PutAt(*store, "t", i, time_of(i));
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->duplicate) << i;
  }
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(store->metrics().Get("komoku_changes_duplicate_total"), dup0 + 3);
  EXPECT_EQ(Values(*store, "t").size(), 12u);
}

TEST(RecentTableTest, ALateChangeInRecentIsFoundByOldRanges) {
  TempDir dir;
  FakeClock clock(kNow);
  HotStoreOptions hot;
  hot.fold_rows = 3;
  auto store = OpenTestStore(dir.File("data"), &clock, hot);
  ASSERT_TRUE(store);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(PutAt(*store, "t", i, kNow - 3000 + i * 1000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  // This commit folds; `recent` then holds only what is newer than kNow.
  ASSERT_TRUE(PutAt(*store, "t", 3, kNow + 1000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  ASSERT_EQ(Rows(dir, "recent"), 1);
  EXPECT_TRUE(Values(*store, "t", kNow - 10 * kDay, kNow - 9 * kDay).empty());
  // A change ten days late goes to `recent` too; ranges that end long
  // before the newest rows find it, and so does the value at a time.
  ASSERT_TRUE(PutAt(*store, "t", 42, kNow - 10 * kDay).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  ASSERT_EQ(Rows(dir, "recent"), 2);
  EXPECT_EQ(Values(*store, "t", kNow - 10 * kDay, kNow - 9 * kDay), (std::vector<double>{42}));
  EXPECT_EQ(Scanned(*store, "t", 0, kNow - 9 * kDay), (std::vector<double>{42}));
  Result<std::optional<Sample>> at = store->At("t", kNow - 10 * kDay);
  ASSERT_TRUE(at.ok() && at->has_value());
  EXPECT_EQ(std::get<double>((*at)->value), 42.0);
  at = store->At("t", kNow - 10 * kDay - 1);
  ASSERT_TRUE(at.ok());
  EXPECT_FALSE(at->has_value());
  EXPECT_EQ(Values(*store, "t"), (std::vector<double>{42, 0, 1, 2, 3}));
}

TEST(RecentTableTest, ADeletedKeyTakesItsRowsInBothTables) {
  TempDir dir;
  FakeClock clock(kNow);
  HotStoreOptions hot;
  hot.fold_rows = 4;
  auto store = OpenTestStore(dir.File("data"), &clock, hot);
  ASSERT_TRUE(store);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(PutAt(*store, "a", i, kNow - 9000 + i * 1000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  // Folds the four; these two stay in `recent`.
  ASSERT_TRUE(PutAt(*store, "a", 4, kNow - 4000).ok());
  ASSERT_TRUE(PutAt(*store, "b", 7, kNow - 4000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  ASSERT_EQ(Rows(dir, "changes"), 4);
  ASSERT_EQ(Rows(dir, "recent"), 2);
  ASSERT_TRUE(store->Delete("a").ok());
  EXPECT_EQ(Rows(dir, "changes"), 0);
  EXPECT_EQ(Rows(dir, "recent"), 1);
  // A key of the same name starts afresh; the other key keeps its row.
  ASSERT_TRUE(PutAt(*store, "a", 100, kNow).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(Values(*store, "a"), (std::vector<double>{100}));
  EXPECT_EQ(Values(*store, "b"), (std::vector<double>{7}));
}

// A flood commits thousands of changes at once: they go straight into
// `changes` (HotStore::kDirectRows), not twice through `recent`, and
// every read and duplicate check still sees both tables.
TEST(RecentTableTest, ABigBatchGoesStraightIntoChanges) {
  TempDir dir;
  FakeClock clock(kNow);
  HotStoreOptions hot;
  hot.commit_interval = std::chrono::milliseconds(60000);  // one commit, when asked
  auto store = OpenTestStore(dir.File("data"), &clock, hot);
  ASSERT_TRUE(store);
  ASSERT_TRUE(PutAt(*store, "a", -1, kNow - 900000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  ASSERT_EQ(Rows(dir, "recent"), 1);
  constexpr int kRows = static_cast<int>(HotStore::kDirectRows) + 200;
  for (int i = 0; i < kRows; ++i) {
    ASSERT_TRUE(PutAt(*store, i % 2 ? "a" : "b", i, kNow - 800000 + i * 100).ok());
  }
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(Rows(dir, "changes"), kRows);
  EXPECT_EQ(Rows(dir, "recent"), 1);
  EXPECT_EQ(store->metrics().Get("komoku_hot_folds_total"), 0);
  const std::vector<double> a = Values(*store, "a");
  ASSERT_EQ(a.size(), static_cast<size_t>(kRows / 2 + 1));
  EXPECT_EQ(a.front(), -1);
  EXPECT_EQ(a.back(), kRows - 1);
  // The row in `recent` is still found as a duplicate.
  Result<Change> again = PutAt(*store, "a", -1, kNow - 900000);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
}

TEST(RecentTableTest, TheOldestRowWaitsAtMostTheFoldInterval) {
  TempDir dir;
  FakeClock clock(kNow);
  HotStoreOptions hot;
  hot.fold_interval = std::chrono::milliseconds(50);
  auto store = OpenTestStore(dir.File("data"), &clock, hot);
  ASSERT_TRUE(store);
  ASSERT_TRUE(PutAt(*store, "t", 1, kNow - 2000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(Rows(dir, "recent"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(PutAt(*store, "t", 2, kNow - 1000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(Rows(dir, "changes"), 1);
  EXPECT_EQ(Rows(dir, "recent"), 1);
  EXPECT_EQ(Values(*store, "t"), (std::vector<double>{1, 2}));
}

}  // namespace
}  // namespace komoku::store

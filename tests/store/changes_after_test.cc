// Store::ChangesAfter (remote write's reader): committed changes in
// sequence order with their keys, and the hot rows compaction made cold
// kept for it until KeepRowsAfter lets them go.
#include <gtest/gtest.h>

#include "store_test_util.h"

namespace komoku::store {
namespace {

using testing::FakeClock;
using testing::ManualCompactionOptions;
using testing::OpenTestStore;
using testing::TempDir;

constexpr int64_t kDay = 24 * 3600 * 1000LL;
constexpr int64_t kNow = 1767225600000LL + kDay / 2;  // 2026-01-01 12:00 UTC

class ChangesAfterTest : public ::testing::Test {
 protected:
  void Open(uint64_t keep_rows_after) {
    HotStoreOptions hot;
    hot.keep_rows_after = keep_rows_after;
    store_ = OpenTestStore(ManualCompactionOptions(dir_.path(), &clock_, {}, hot));
    ASSERT_NE(store_, nullptr);
  }
  uint64_t Put(const std::string& key, int64_t t, const InputValue& v) {
    PutOptions o;
    o.time_ms = t;
    Result<Change> c = store_->Put(key, v, o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? c->seq : 0;
  }
  // Ten old changes of "a" and one of "b" (cold after a compaction), then
  // one of "a" now.
  void PutHistory() {
    for (int i = 0; i < 10; ++i) Put("a", kNow - 10 * kDay + i * 1000, static_cast<double>(i));
    Put("b", kNow - 10 * kDay + 500, true);
    Put("a", kNow, 99.0);
  }
  size_t Count() {
    Result<std::vector<Store::SeqChange>> rows = store_->ChangesAfter(0, 1000);
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? rows->size() : 0;
  }
  void CompactAndDelete() {
    Result<CompactionReport> r = store_->Compact();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    store_->WaitColdRowsDeleted();
  }

  TempDir dir_;
  FakeClock clock_{kNow};
  std::unique_ptr<Store> store_;
};

TEST_F(ChangesAfterTest, InSequenceOrderWithKeysTypesAndValues) {
  Open(UINT64_MAX);
  PutHistory();
  Result<std::vector<Store::SeqChange>> rows = store_->ChangesAfter(0, 1000);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 12u);
  for (size_t i = 1; i < rows->size(); ++i) EXPECT_GT((*rows)[i].seq, (*rows)[i - 1].seq);
  EXPECT_EQ((*rows)[10].key, "b");
  EXPECT_EQ((*rows)[10].type, KeyType::kBoolean);
  EXPECT_EQ((*rows)[10].sample.value, Value(true));
  EXPECT_EQ((*rows)[11].key, "a");
  EXPECT_EQ((*rows)[11].sample.time_ms, kNow);
  EXPECT_EQ((*rows)[11].sample.value, Value(99.0));
  EXPECT_EQ(store_->LastChangeSeq(), (*rows)[11].seq);
  // From the middle, limited.
  Result<std::vector<Store::SeqChange>> some = store_->ChangesAfter((*rows)[4].seq, 3);
  ASSERT_TRUE(some.ok());
  ASSERT_EQ(some->size(), 3u);
  EXPECT_EQ((*some)[0].seq, (*rows)[5].seq);
}

// Each row is named by its key's id: keys made by a put, by a define, and
// loaded at open; a deleted key's rows are left out, and a key made again
// under the same name is a new key with its own rows.
TEST_F(ChangesAfterTest, RowsAreNamedByTheirKeyAcrossDefineDeleteAndReopen) {
  Open(UINT64_MAX);
  Put("a", kNow - 3000, 1.0);
  ASSERT_TRUE(store_->Define("d", KeyType::kString, {}).ok());
  Put("d", kNow - 2000, std::string("on"));
  Put("gone", kNow - 1500, 5.0);
  ASSERT_TRUE(store_->Delete("gone").ok());
  Put("gone", kNow - 1000, 6.0);  // a new key of the old name
  auto names = [&] {
    std::vector<std::pair<std::string, std::string>> out;
    Result<std::vector<Store::SeqChange>> rows = store_->ChangesAfter(0, 1000);
    EXPECT_TRUE(rows.ok());
    if (!rows.ok()) return out;
    for (const Store::SeqChange& r : *rows) out.emplace_back(r.key, ValueToText(r.sample.value));
    return out;
  };
  const std::vector<std::pair<std::string, std::string>> want = {
      {"a", "1"}, {"d", "on"}, {"gone", "6"}};
  EXPECT_EQ(names(), want);
  store_.reset();
  Open(UINT64_MAX);
  EXPECT_EQ(names(), want);
  Put("e", kNow, 2.0);
  EXPECT_EQ(names().back(), (std::pair<std::string, std::string>{"e", "2"}));
}

TEST_F(ChangesAfterTest, WithoutAKeepMarkCompactionDeletesColdRows) {
  Open(UINT64_MAX);
  PutHistory();
  CompactAndDelete();
  EXPECT_EQ(Count(), 1u);  // only the hot change of now
}

TEST_F(ChangesAfterTest, CompactionKeepsRowsAfterTheMarkUntilLetGo) {
  Open(0);
  PutHistory();
  CompactAndDelete();
  EXPECT_EQ(Count(), 12u);  // nothing taken yet: all kept
  // Reads are as without the kept rows: no change twice.
  Result<std::vector<Sample>> a = store_->History("a", 0, kNow + 1, 1000);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size(), 11u);
  // Taken up to the sixth change: the next compaction (a late change gives
  // it work) deletes the cold rows up to there, and keeps the others.
  Result<std::vector<Store::SeqChange>> rows = store_->ChangesAfter(0, 1000);
  ASSERT_TRUE(rows.ok());
  store_->KeepRowsAfter((*rows)[5].seq);
  Put("a", kNow - 9 * kDay, 50.0);
  CompactAndDelete();
  Result<std::vector<Store::SeqChange>> left = store_->ChangesAfter(0, 1000);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 7u);  // 6 old ones after the mark, now, the late one
  EXPECT_EQ(left->front().seq, (*rows)[6].seq);
}

}  // namespace
}  // namespace komoku::store

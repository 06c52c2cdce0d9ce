// AddListenerAtSeq + History(max_seq) + WaitCommitted, the seam a `since=`
// stream relies on: while writer threads put, a listener added at sequence
// number S plus the history up to S hold every change exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

using testing::FakeClock;
using testing::OpenTestStore;
using testing::TempDir;

constexpr int64_t kNow = 1700000000000;
constexpr int kWriters = 4;
constexpr int kKeys = 3;
constexpr int kPerWriter = 300;
constexpr int kListeners = 6;

std::string KeyName(int k) { return "seam/" + std::to_string(k); }

// Values are unique across writers, so a value names its change.
double ValueOf(int writer, int i) { return writer * 1000000.0 + i; }

struct Seam {
  uint64_t seq = 0;
  std::mutex mu;
  std::multiset<std::pair<std::string, double>> live;     // guarded by mu
  std::multiset<std::pair<std::string, double>> history;  // filled once
};

TEST(ListenerSeqTest, HistoryUpToSeqAndTheListenerHoldEveryChangeExactlyOnce) {
  TempDir dir;
  FakeClock clock(kNow);
  auto store = OpenTestStore(dir.File("data"), &clock);
  ASSERT_TRUE(store);

  std::atomic<bool> failed{false};
  std::atomic<int> done{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        PutOptions o;
        // Odd writers take the MQTT path (wait for the commit), even ones the
        // group commit.
        o.wait_committed = (w % 2 == 1);
        if (!store->Put(KeyName((w + i) % kKeys), ValueOf(w, i), o).ok()) failed = true;
        if (i % 50 == 0) std::this_thread::yield();
      }
      ++done;
    });
  }

  std::vector<std::unique_ptr<Seam>> seams;
  for (int l = 0; l < kListeners; ++l) {
    auto seam = std::make_unique<Seam>();
    Seam* s = seam.get();
    auto [id, seq] = store->AddListenerAtSeq([s](uint64_t at) {
      return [s, at](const Change& c) {
        if (c.seq <= at) return;  // already in the history up to `at`
        std::lock_guard<std::mutex> lock(s->mu);
        s->live.insert({c.key, std::get<double>(c.sample.value)});
      };
    });
    (void)id;
    s->seq = seq;
    ASSERT_TRUE(store->WaitCommitted(seq).ok());
    for (int k = 0; k < kKeys; ++k) {
      Result<std::vector<Sample>> h = store->History(KeyName(k), 0, INT64_MAX, 1000000, seq);
      if (h.status().IsNotFound()) continue;  // no change to this key yet
      ASSERT_TRUE(h.ok()) << h.status().ToString();
      for (const Sample& smp : *h) s->history.insert({KeyName(k), std::get<double>(smp.value)});
    }
    seams.push_back(std::move(seam));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& t : writers) t.join();
  ASSERT_FALSE(failed.load());
  ASSERT_TRUE(store->WaitCommitted(1).ok());  // the newest op: everything

  std::multiset<std::pair<std::string, double>> all;
  for (int k = 0; k < kKeys; ++k) {
    Result<std::vector<Sample>> h = store->History(KeyName(k), 0, INT64_MAX, 1000000);
    ASSERT_TRUE(h.ok());
    for (const Sample& smp : *h) all.insert({KeyName(k), std::get<double>(smp.value)});
  }
  ASSERT_EQ(all.size(), static_cast<size_t>(kWriters * kPerWriter));

  for (size_t l = 0; l < seams.size(); ++l) {
    SCOPED_TRACE("listener " + std::to_string(l) + " at seq " + std::to_string(seams[l]->seq));
    std::lock_guard<std::mutex> lock(seams[l]->mu);
    std::multiset<std::pair<std::string, double>> both = seams[l]->history;
    both.insert(seams[l]->live.begin(), seams[l]->live.end());
    EXPECT_EQ(both.size(), seams[l]->history.size() + seams[l]->live.size());
    EXPECT_EQ(both, all) << "history " << seams[l]->history.size() << " live "
                         << seams[l]->live.size();
    // No value twice: the seam has no duplicate.
    std::set<std::pair<std::string, double>> unique(both.begin(), both.end());
    EXPECT_EQ(unique.size(), both.size());
  }
  // The seams were taken at growing sequence numbers.
  for (size_t l = 1; l < seams.size(); ++l) EXPECT_LE(seams[l - 1]->seq, seams[l]->seq);
}

TEST(ListenerSeqTest, SeqIsTheLastChangeAndSurvivesAReopen) {
  TempDir dir;
  FakeClock clock(kNow);
  uint64_t last = 0;
  {
    auto store = OpenTestStore(dir.File("data"), &clock);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->AddListenerAtSeq([](uint64_t) { return [](const Change&) {}; }).second, 0u);
    for (int i = 0; i < 3; ++i) {
      Result<Change> c = store->Put("x", double(i));
      ASSERT_TRUE(c.ok());
      last = c->seq;
    }
    EXPECT_EQ(store->AddListenerAtSeq([](uint64_t) { return [](const Change&) {}; }).second, last);
  }
  auto store = OpenTestStore(dir.File("data"), &clock);
  ASSERT_TRUE(store);
  auto [id, seq] = store->AddListenerAtSeq([](uint64_t) { return [](const Change&) {}; });
  store->RemoveListener(id);
  EXPECT_EQ(seq, last);
  Result<Change> c = store->Put("x", 9.0);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->seq, last + 1);
  Result<std::vector<Sample>> h = store->History("x", 0, INT64_MAX, 100, last - 1);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->size(), 2u);
}

}  // namespace
}  // namespace komoku::store

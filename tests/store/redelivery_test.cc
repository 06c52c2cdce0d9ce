// What the MQTT ingest path relies on in the store: a change with the same
// key, time and value as one already stored (a broker's redelivery, an
// ingest log read again after a crash) is a no-op, counted, whether the first
// is committed or not; and listeners run with no store lock held, so a
// listener that waits on a lock whose holder puts does not deadlock.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "store/store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

using testing::FakeClock;
using testing::OpenTestStore;
using testing::PutAt;
using testing::TempDir;

constexpr int64_t kNow = 1700000000000;

size_t CountHistory(Store& store, const std::string& key) {
  Result<std::vector<Sample>> h = store.History(key, 0, INT64_MAX, SIZE_MAX);
  EXPECT_TRUE(h.ok());
  return h.ok() ? h->size() : 0;
}

TEST(RedeliveryTest, SameKeyTimeAndValueIsStoredOnce) {
  TempDir dir;
  FakeClock clock(kNow);
  auto store = OpenTestStore(dir.File("data"), &clock);
  ASSERT_TRUE(store);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(PutAt(*store, "t", i, kNow - 10000 + i * 1000).ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());

  // The newest, the one before it, and an older one (looked up in history).
  for (int i : {5, 4, 1, 2}) {
    Result<Change> again = PutAt(*store, "t", i, kNow - 10000 + i * 1000);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_TRUE(again->duplicate) << i;
    EXPECT_FALSE(again->stored) << i;
  }
  EXPECT_EQ(store->metrics().Get("komoku_changes_duplicate_total"), 4);
  // Another value at a stored time is a change of its own.
  Result<Change> other = PutAt(*store, "t", 99, kNow - 10000 + 2000);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->duplicate);
  EXPECT_TRUE(other->stored);
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(CountHistory(*store, "t"), 6u);
  // The current value is still the newest.
  EXPECT_EQ(std::get<double>(store->Get("t")->last->value), 5.0);
}

TEST(RedeliveryTest, RepeatOfAChangeNotYetCommittedIsStoredOnce) {
  TempDir dir;
  FakeClock clock(kNow);
  HotStoreOptions hot;
  hot.commit_interval = std::chrono::milliseconds(60000);  // nothing commits by itself
  auto store = OpenTestStore(dir.File("data"), &clock, hot);
  ASSERT_TRUE(store);
  ASSERT_TRUE(PutAt(*store, "t", 9, kNow - 1000).ok());
  ASSERT_TRUE(PutAt(*store, "t", 1, kNow - 9000).ok());  // late
  ASSERT_TRUE(PutAt(*store, "t", 2, kNow - 8000).ok());  // late: now the previous value
  // Neither the current nor the previous value, and not committed: the
  // writer finds it beside its twin in the same commit.
  Result<Change> again = PutAt(*store, "t", 1, kNow - 9000);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(store->WaitCommitted(UINT64_MAX).ok());
  EXPECT_EQ(CountHistory(*store, "t"), 3u);
  EXPECT_EQ(store->metrics().Get("komoku_changes_duplicate_total"), 1);
}

TEST(RedeliveryTest, ListenerWaitingOnALockWhoseHolderPutsDoesNotDeadlock) {
  TempDir dir;
  FakeClock clock(kNow);
  auto store = OpenTestStore(dir.File("data"), &clock);
  ASSERT_TRUE(store);
  // As Paho's lock was: the listener (publishing a change of "a") needs
  // `outside`, and the thread holding `outside` puts "b" meanwhile.
  std::mutex outside;
  std::atomic<bool> in_listener{false};
  std::atomic<int> calls{0};
  store->AddListener([&](const Change& c) {
    ++calls;
    if (c.key != "a") return;
    in_listener = true;
    std::lock_guard<std::mutex> lock(outside);
  });
  auto done = std::async(std::launch::async, [&] {
    std::unique_lock<std::mutex> held(outside);
    std::thread a([&] { (void)store->Put("a", InputValue(1.0)); });
    while (!in_listener) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Result<Change> b = store->Put("b", InputValue(2.0));
    held.unlock();
    a.join();
    return b.ok();
  });
  if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "a put from the holder of a lock a listener waits for deadlocked";
    std::fflush(nullptr);
    _exit(1);  // the threads cannot be joined
  }
  EXPECT_TRUE(done.get());
  EXPECT_EQ(calls.load(), 2);
}

TEST(RedeliveryTest, RemoveListenerWaitsForACallUnderWay) {
  TempDir dir;
  FakeClock clock(kNow);
  auto store = OpenTestStore(dir.File("data"), &clock);
  ASSERT_TRUE(store);
  std::atomic<bool> started{false}, finished{false};
  int id = store->AddListener([&](const Change&) {
    started = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    finished = true;
  });
  std::thread put([&] { (void)store->Put("a", InputValue(1.0)); });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  store->RemoveListener(id);
  EXPECT_TRUE(finished.load());
  put.join();
  // Gone: later changes do not reach it.
  finished = false;
  ASSERT_TRUE(store->Put("a", InputValue(2.0)).ok());
  EXPECT_FALSE(finished.load());
}

}  // namespace
}  // namespace komoku::store

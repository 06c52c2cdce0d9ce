// Uptime keys with a FakeClock: a true that is not refreshed within max_time
// turns false at exactly last-true + max_time; repeats (stored or not)
// postpone it; across a restart the timeout is re-armed from the persisted
// last refresh, and one that fell while the store was closed is recorded at
// its due time.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "key_options_util.h"
#include "store/store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

using nlohmann::json;
using testing::FakeClock;
using testing::OpenTestStore;
using testing::Opts;
using testing::TempDir;

constexpr int64_t kNow = 1700000000000;
constexpr int64_t kMaxTime = 30000;

PutOptions At(int64_t time_ms) {
  PutOptions o;
  o.time_ms = time_ms;
  return o;
}

std::string Text(const std::vector<Sample>& samples) {
  std::string out;
  for (const Sample& s : samples) {
    out += (out.empty() ? "" : " ") + std::to_string(s.time_ms - kNow) + "=" + ValueToText(s.value);
  }
  return out;
}

class UptimeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Open() {
    auto store = OpenTestStore(dir_.File("data"), &clock_);
    if (store) {
      store->AddListener([this](const Change& c) {
        std::lock_guard<std::mutex> lock(mu_);
        changes_.push_back(c);
      });
    }
    return store;
  }

  // Defines "hb" as uptime with max_time 30 s (and the default 60 s
  // same_value_resolution, longer than max_time, so repeats are not stored).
  static void DefineHeartbeat(Store& store) {
    Result<KeyInfo> r =
        store.Define("hb", KeyType::kUptime, Opts(json{{"max_time", kMaxTime / 1000}}));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // Moves the clock and runs the timers. The store's own timer thread may
  // take a due timeout first (it polls the FakeClock about once a second);
  // either way, wait until the history shows `expected` ("-": expect no
  // change, so just run once and give a racing timer thread a moment).
  static std::string AdvanceAndRun(Store& store, FakeClock& clock, int64_t now_ms,
                                   const std::string& expected) {
    clock.Set(now_ms);
    std::string got;
    const int tries = expected == "-" ? 2 : 300;
    for (int i = 0; i < tries; ++i) {
      store.RunDueTimers();
      got = History(store);
      if (got == expected) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return got;
  }

  // "hb"'s history, times relative to kNow.
  static std::string History(const Store& store) {
    Result<std::vector<Sample>> h = store.History("hb", 0, INT64_MAX, 1000);
    if (!h.ok()) return h.status().ToString();
    return Text(*h);
  }

  static bool Current(const Store& store) { return std::get<bool>(store.Get("hb")->last->value); }

  TempDir dir_;
  FakeClock clock_{kNow};
  std::mutex mu_;
  std::vector<Change> changes_;  // guarded by mu_
};

TEST_F(UptimeTest, TrueTurnsFalseAtExactlyLastTruePlusMaxTime) {
  auto store = Open();
  ASSERT_TRUE(store);
  DefineHeartbeat(*store);
  ASSERT_TRUE(store->Put("hb", true).ok());
  // Not yet: one millisecond before the due time.
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + kMaxTime - 1, "0=true"), "0=true");
  EXPECT_TRUE(Current(*store));
  // Well past it: the false is recorded at the due time, not at now.
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + kMaxTime + 5000, "0=true 30000=false"),
            "0=true 30000=false");
  EXPECT_FALSE(Current(*store));
  EXPECT_EQ(store->Get("hb")->last->time_ms, kNow + kMaxTime);
  EXPECT_EQ(store->metrics().Get("komoku_uptime_timeouts_total"), 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_EQ(changes_.size(), 2u);
    EXPECT_EQ(changes_[1].sample.time_ms, kNow + kMaxTime);
    EXPECT_FALSE(std::get<bool>(changes_[1].sample.value));
    ASSERT_TRUE(changes_[1].previous.has_value());
    EXPECT_TRUE(std::get<bool>(changes_[1].previous->value));
  }
  // Nothing more happens later.
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 10 * kMaxTime, "-"), "0=true 30000=false");
}

TEST_F(UptimeTest, RepeatsThatAreNotStoredStillPostponeTheTimeout) {
  auto store = Open();
  ASSERT_TRUE(store);
  DefineHeartbeat(*store);
  ASSERT_TRUE(store->Put("hb", true, At(kNow)).ok());
  clock_.Set(kNow + 20000);
  Result<Change> c = store->Put("hb", true);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->stored);
  clock_.Set(kNow + 40000);
  c = store->Put("hb", true);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->stored);
  // The first due time (30 s) and the second (50 s) have passed unnoticed.
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 40000 + kMaxTime - 1, "0=true"), "0=true");
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 40000 + kMaxTime, "0=true 70000=false"),
            "0=true 70000=false");
}

TEST_F(UptimeTest, AnExplicitFalseDisarmsAndANewTrueRearms) {
  auto store = Open();
  ASSERT_TRUE(store);
  DefineHeartbeat(*store);
  ASSERT_TRUE(store->Put("hb", true, At(kNow)).ok());
  ASSERT_TRUE(store->Put("hb", false, At(kNow + 1000)).ok());
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 100000, "-"), "0=true 1000=false");
  ASSERT_TRUE(store->Put("hb", true, At(kNow + 100000)).ok());
  EXPECT_EQ(
      AdvanceAndRun(*store, clock_, kNow + 200000, "0=true 1000=false 100000=true 130000=false"),
      "0=true 1000=false 100000=true 130000=false");
}

TEST_F(UptimeTest, DefineChangesMaxTimeOfAPendingTimeout) {
  auto store = Open();
  ASSERT_TRUE(store);
  DefineHeartbeat(*store);
  ASSERT_TRUE(store->Put("hb", true, At(kNow)).ok());
  ASSERT_TRUE(store->Define("hb", std::nullopt, Opts(json{{"max_time", 5}})).ok());
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 6000, "0=true 5000=false"), "0=true 5000=false");
}

TEST_F(UptimeTest, AnUnstoredRefreshCountsAfterARestart) {
  {
    auto store = Open();
    ASSERT_TRUE(store);
    DefineHeartbeat(*store);
    ASSERT_TRUE(store->Put("hb", true, At(kNow)).ok());
    clock_.Set(kNow + 20000);
    Result<Change> c = store->Put("hb", true);
    ASSERT_TRUE(c.ok());
    ASSERT_FALSE(c->stored);
  }
  // Reopened before the refreshed due time (50 s) but after the first one (30 s).
  clock_.Set(kNow + 35000);
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 35000, "-"), "0=true");
  EXPECT_TRUE(Current(*store));
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 49999, "-"), "0=true");
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 50000, "0=true 50000=false"),
            "0=true 50000=false");
}

TEST_F(UptimeTest, AnUnwaitedRefreshIsPersistedByClose) {
  {
    auto store = Open();
    ASSERT_TRUE(store);
    DefineHeartbeat(*store);
    ASSERT_TRUE(store->Put("hb", true, At(kNow)).ok());
    PutOptions o;
    o.time_ms = kNow + 20000;
    o.wait_committed = false;
    clock_.Set(kNow + 20000);
    ASSERT_TRUE(store->Put("hb", true, o).ok());
  }
  clock_.Set(kNow + 35000);
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 50000, "0=true 50000=false"),
            "0=true 50000=false");
}

TEST_F(UptimeTest, ATimeoutThatFellWhileClosedIsRecordedAtItsDueTime) {
  {
    auto store = Open();
    ASSERT_TRUE(store);
    DefineHeartbeat(*store);
    ASSERT_TRUE(store->Put("hb", true, At(kNow)).ok());
    clock_.Set(kNow + 10000);
    ASSERT_FALSE(store->Put("hb", true)->stored);
  }
  // Down for an hour.
  clock_.Set(kNow + 3600000);
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 3600000, "0=true 40000=false"),
            "0=true 40000=false");
  EXPECT_FALSE(Current(*store));
  EXPECT_EQ(store->Get("hb")->last->time_ms, kNow + 40000);
  // Recorded once, also after another restart.
  store.reset();
  clock_.Set(kNow + 7200000);
  store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 7200000, "-"), "0=true 40000=false");
}

TEST_F(UptimeTest, ABooleanKeyRedefinedAsUptimeTimesOutFromItsLastTrue) {
  // A boolean key that was true for a while becomes an uptime key: its
  // timeout runs from the last true (kNow), not from the epoch.
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("hb", true, At(kNow)).ok());
  ASSERT_TRUE(
      store->Define("hb", KeyType::kUptime, Opts(json{{"max_time", kMaxTime / 1000}})).ok());
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + 1000, "-"), "0=true");
  EXPECT_TRUE(Current(*store));
  EXPECT_EQ(AdvanceAndRun(*store, clock_, kNow + kMaxTime, "0=true 30000=false"),
            "0=true 30000=false");
}

TEST_F(UptimeTest, TimeoutsOfManyKeysFireInDueOrder) {
  auto store = Open();
  ASSERT_TRUE(store);
  for (int i = 0; i < 5; ++i) {
    std::string key = "dev/" + std::to_string(i);
    ASSERT_TRUE(store->Define(key, KeyType::kUptime, Opts(json{{"max_time", 10 + i}})).ok());
    ASSERT_TRUE(store->Put(key, true, At(kNow)).ok());
  }
  clock_.Set(kNow + 100000);
  for (int tries = 0; tries < 300; ++tries) {
    store->RunDueTimers();
    bool all = true;
    for (int i = 0; i < 5; ++i)
      all = all && !std::get<bool>(store->Get("dev/" + std::to_string(i))->last->value);
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (int i = 0; i < 5; ++i) {
    Result<KeyInfo> k = store->Get("dev/" + std::to_string(i));
    ASSERT_TRUE(k.ok());
    EXPECT_FALSE(std::get<bool>(k->last->value)) << i;
    EXPECT_EQ(k->last->time_ms, kNow + (10 + i) * 1000) << i;
  }
}

}  // namespace
}  // namespace komoku::store

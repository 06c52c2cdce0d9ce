// The key model over a real SQLite hot store: Define (new keys, type changes
// under data, options that survive a reopen, the values option), Delete
// (history goes too, a re-created key starts empty), Increment (creates a
// counter, refuses other types, exact under 8 concurrent threads) and
// same_value_resolution.
#include <gtest/gtest.h>

#include <memory>
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

constexpr int64_t kNow = 1700000000000;  // 2023-11-14T22:13:20Z
constexpr int64_t kForever = INT64_MAX;

PutOptions At(int64_t time_ms, bool wait_committed = true) {
  PutOptions o;
  o.time_ms = time_ms;
  o.wait_committed = wait_committed;
  return o;
}

InputValue Str(const char* s) { return InputValue(std::string(s)); }

std::string Refusal(const Status& st) { return st.ok() ? "ok" : st.reason(); }
template <typename T>
std::string Refusal(const Result<T>& r) {
  return Refusal(r.status());
}

class KeyModelTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Open() { return OpenTestStore(dir_.File("data"), &clock_); }

  static size_t HistorySize(const Store& store, const std::string& key) {
    Result<std::vector<Sample>> h = store.History(key, 0, kForever, 1000000);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    return h.ok() ? h->size() : 0;
  }

  int64_t Refused(Store& store, const std::string& reason) {
    return store.metrics().Get("komoku_refused_total{reason=\"" + reason + "\"}");
  }

  TempDir dir_;
  FakeClock clock_{kNow};
};

// --- Define ---------------------------------------------------------------

TEST_F(KeyModelTest, DefineOfANewKeyNeedsAType) {
  auto store = Open();
  ASSERT_TRUE(store);
  Result<KeyInfo> r = store->Define("new", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().reason(), "unknown_key");
  EXPECT_NE(r.status().message().find("give its type"), std::string::npos) << r.status().message();
  EXPECT_FALSE(store->Get("new").ok());
  EXPECT_EQ(Refused(*store, "unknown_key"), 1);

  r = store->Define("new", KeyType::kUptime, Opts(json{{"max_time", 30}}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "new");
  EXPECT_EQ(r->type, KeyType::kUptime);
  EXPECT_EQ(r->options.max_time_ms, 30000);
  EXPECT_FALSE(r->last.has_value());
  Result<KeyInfo> got = store->Get("new");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->type, KeyType::kUptime);
  EXPECT_EQ(got->options.max_time_ms, 30000);
}

TEST_F(KeyModelTest, DefineOfAnExistingKeyWithoutATypeUpdatesOnlyTheOptions) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("t", 21.5).ok());
  Result<KeyInfo> r = store->Define("t", std::nullopt, Opts(json{{"same_value_resolution", 5}}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->type, KeyType::kNumeric);
  EXPECT_EQ(r->options.same_value_resolution_ms, 5000);
  ASSERT_TRUE(r->last.has_value());
  EXPECT_EQ(std::get<double>(r->last->value), 21.5);
}

TEST_F(KeyModelTest, DefineRefusesABadNameAndBadOptionsAndChangesNothing) {
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(Refusal(store->Define("a+b", KeyType::kNumeric)), "bad_key");
  EXPECT_EQ(Refusal(store->Define("", KeyType::kNumeric)), "bad_key");
  // Options the type does not take (the JSON parser's own refusals are
  // tests/wire/key_options_test.cc's).
  EXPECT_EQ(Refusal(store->Define("n", KeyType::kNumeric, Opts(json{{"max_time", 5}}))),
            "bad_option");
  EXPECT_EQ(Refusal(store->Define("n", KeyType::kNumeric, Opts(json{{"values", {"a"}}}))),
            "bad_option");
  EXPECT_TRUE(store->Keys().empty());
  ASSERT_TRUE(store->Define("n", KeyType::kNumeric, Opts(json{{"same_value_resolution", 1}})).ok());
  EXPECT_EQ(Refusal(store->Define("n", std::nullopt, Opts(json{{"reset_tolerance", 1}}))),
            "bad_option");
  EXPECT_EQ(store->Get("n")->options.same_value_resolution_ms, 1000);
}

TEST_F(KeyModelTest, TypeChangeUnderDataIsRefusedExceptBetweenSameRepresentations) {
  struct Case {
    KeyType from;
    InputValue first;
    KeyType to;
    bool allowed;
  } cases[] = {
      {KeyType::kNumeric, 1.0, KeyType::kCounter, true},
      {KeyType::kCounter, 1.0, KeyType::kNumeric, true},
      // A false: a true would arm a timeout (see uptime_test.cc for that case).
      {KeyType::kBoolean, false, KeyType::kUptime, true},
      {KeyType::kUptime, false, KeyType::kBoolean, true},
      {KeyType::kNumeric, 1.0, KeyType::kBoolean, false},
      {KeyType::kNumeric, 1.0, KeyType::kString, false},
      {KeyType::kNumeric, 1.0, KeyType::kUptime, false},
      {KeyType::kCounter, 1.0, KeyType::kString, false},
      {KeyType::kBoolean, true, KeyType::kNumeric, false},
      {KeyType::kBoolean, true, KeyType::kString, false},
      {KeyType::kUptime, true, KeyType::kCounter, false},
      {KeyType::kString, Str("x"), KeyType::kNumeric, false},
      {KeyType::kString, Str("x"), KeyType::kBoolean, false},
  };
  auto store = Open();
  ASSERT_TRUE(store);
  int n = 0;
  for (const Case& c : cases) {
    std::string key = "k" + std::to_string(n++);
    SCOPED_TRACE(key + ": " + KeyTypeName(c.from) + " -> " + KeyTypeName(c.to));
    ASSERT_TRUE(store->Define(key, c.from).ok());
    // Without data any type change is fine.
    ASSERT_TRUE(store->Define(key, c.to).ok());
    ASSERT_TRUE(store->Define(key, c.from).ok());
    Result<Change> put = store->Put(key, c.first);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    Result<KeyInfo> r = store->Define(key, c.to);
    if (c.allowed) {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->type, c.to);
      EXPECT_EQ(store->Get(key)->type, c.to);
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().reason(), "type_change");
      EXPECT_NE(r.status().message().find(key), std::string::npos) << r.status().message();
      EXPECT_NE(r.status().message().find(KeyTypeName(c.to)), std::string::npos)
          << r.status().message();
      EXPECT_EQ(store->Get(key)->type, c.from);
    }
    EXPECT_EQ(HistorySize(*store, key), 1u);
  }
  EXPECT_EQ(Refused(*store, "type_change"), 9);
}

TEST_F(KeyModelTest, ValuesOptionRefusesOtherValues) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(
      store->Define("alarm", KeyType::kString, Opts(json{{"values", {"armed", "disarmed"}}})).ok());
  EXPECT_TRUE(store->Put("alarm", Str("armed")).ok());
  Result<Change> r = store->Put("alarm", Str("triggered"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().reason(), "value_not_allowed");
  EXPECT_NE(r.status().message().find("triggered"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("armed, disarmed"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(Refused(*store, "value_not_allowed"), 1);
  EXPECT_EQ(std::get<std::string>(store->Get("alarm")->last->value), "armed");
  EXPECT_EQ(HistorySize(*store, "alarm"), 1u);
  // Lifting the restriction lets it through.
  ASSERT_TRUE(store->Define("alarm", std::nullopt, Opts(json{{"values", nullptr}})).ok());
  EXPECT_TRUE(store->Put("alarm", Str("triggered")).ok());
}

TEST_F(KeyModelTest, OptionsAndTypesSurviveAReopen) {
  {
    auto store = Open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store
                    ->Define("up", KeyType::kUptime,
                             Opts(json{{"max_time", 12.5}, {"same_value_resolution", 3}}))
                    .ok());
    ASSERT_TRUE(store->Define("mode", KeyType::kString, Opts(json{{"values", {"a", "b"}}})).ok());
    ASSERT_TRUE(store->Put("mode", Str("a")).ok());
    ASSERT_TRUE(store->Put("energy", 10.0).ok());
    ASSERT_TRUE(
        store->Define("energy", KeyType::kCounter, Opts(json{{"same_value_resolution", 0}})).ok());
  }
  auto store = Open();
  ASSERT_TRUE(store);
  Result<KeyInfo> up = store->Get("up");
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->type, KeyType::kUptime);
  EXPECT_EQ(up->options.max_time_ms, 12500);
  EXPECT_EQ(up->options.same_value_resolution_ms, 3000);
  Result<KeyInfo> mode = store->Get("mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(mode->options.values.has_value());
  EXPECT_EQ(*mode->options.values, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Refusal(store->Put("mode", Str("c"))), "value_not_allowed");
  Result<KeyInfo> energy = store->Get("energy");
  ASSERT_TRUE(energy.ok());
  EXPECT_EQ(energy->type, KeyType::kCounter);
  EXPECT_EQ(energy->options.same_value_resolution_ms, 0);
  EXPECT_EQ(std::get<double>(energy->last->value), 10.0);
}

// --- Delete ---------------------------------------------------------------

TEST_F(KeyModelTest, DeleteRemovesTheKeyAndItsHistory) {
  auto store = Open();
  ASSERT_TRUE(store);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->Put("t", double(i), At(kNow - 5000 + i)).ok());
  ASSERT_TRUE(store->Put("other", 1.0).ok());
  std::vector<Change> seen;
  store->AddListener([&](const Change& c) { seen.push_back(c); });
  ASSERT_TRUE(store->Delete("t").ok());
  EXPECT_EQ(store->Get("t").status().reason(), "unknown_key");
  EXPECT_EQ(store->History("t", 0, kForever, 10).status().reason(), "unknown_key");
  ASSERT_EQ(store->Keys().size(), 1u);
  EXPECT_EQ(store->Keys()[0].name, "other");
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].deleted);
  EXPECT_EQ(seen[0].key, "t");
  ASSERT_TRUE(seen[0].previous.has_value());
  EXPECT_EQ(std::get<double>(seen[0].previous->value), 4.0);

  Status again = store->Delete("t");
  EXPECT_TRUE(again.IsNotFound());
  EXPECT_EQ(again.reason(), "unknown_key");
  EXPECT_EQ(HistorySize(*store, "other"), 1u);
}

TEST_F(KeyModelTest, ARecreatedKeyStartsEmpty) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("t", 1.0, At(kNow - 2000)).ok());
  ASSERT_TRUE(store->Put("t", 2.0, At(kNow - 1000)).ok());
  ASSERT_TRUE(store->Delete("t").ok());
  // Re-created with another type: the old data does not stand in the way.
  Result<Change> c = store->Put("t", Str("text"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->created_key);
  EXPECT_FALSE(c->previous.has_value());
  EXPECT_EQ(c->type, KeyType::kString);
  Result<KeyInfo> info = store->Get("t");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->previous.has_value());
  EXPECT_EQ(HistorySize(*store, "t"), 1u);
}

TEST_F(KeyModelTest, DeleteSurvivesAReopenAndARecreatedKeyStaysEmpty) {
  {
    auto store = Open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Put("a", 1.0, At(kNow - 3000)).ok());
    ASSERT_TRUE(store->Put("b", 1.0, At(kNow - 3000)).ok());
    ASSERT_TRUE(store->Put("b", 2.0, At(kNow - 2000, /*wait_committed=*/false)).ok());
    ASSERT_TRUE(store->Delete("b").ok());
  }
  {
    auto store = Open();
    ASSERT_TRUE(store);
    EXPECT_FALSE(store->Get("b").ok());
    ASSERT_EQ(store->Keys().size(), 1u);
    // b had the highest key id; a new key may reuse it, and must not see its rows.
    ASSERT_TRUE(store->Put("b", true, At(kNow - 1000)).ok());
    ASSERT_TRUE(store->Put("c", Str("x"), At(kNow - 1000)).ok());
    EXPECT_EQ(HistorySize(*store, "b"), 1u);
    EXPECT_EQ(HistorySize(*store, "c"), 1u);
  }
  auto store = Open();
  ASSERT_TRUE(store);
  Result<KeyInfo> b = store->Get("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->type, KeyType::kBoolean);
  EXPECT_FALSE(b->previous.has_value());
  EXPECT_EQ(HistorySize(*store, "a"), 1u);
  EXPECT_EQ(HistorySize(*store, "b"), 1u);
  EXPECT_EQ(HistorySize(*store, "c"), 1u);
}

// --- Increment ------------------------------------------------------------

TEST_F(KeyModelTest, IncrementOfAMissingKeyCreatesACounter) {
  auto store = Open();
  ASSERT_TRUE(store);
  Result<Change> c = store->Increment("rain", 0.5);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->created_key);
  EXPECT_EQ(c->type, KeyType::kCounter);
  EXPECT_EQ(std::get<double>(c->sample.value), 0.5);
  c = store->Increment("rain", 2, At(kNow + 1));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(std::get<double>(c->sample.value), 2.5);
  ASSERT_TRUE(c->previous.has_value());
  EXPECT_EQ(std::get<double>(c->previous->value), 0.5);
  c = store->Increment("rain", -1, At(kNow + 2));  // decrement
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(std::get<double>(c->sample.value), 1.5);
  EXPECT_EQ(store->Get("rain")->type, KeyType::kCounter);
  EXPECT_EQ(HistorySize(*store, "rain"), 3u);
}

TEST_F(KeyModelTest, IncrementOfANumericKeyWorks) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("n", 10.0).ok());
  Result<Change> c = store->Increment("n", 5, At(kNow + 1));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(std::get<double>(c->sample.value), 15.0);
  EXPECT_EQ(c->type, KeyType::kNumeric);
}

TEST_F(KeyModelTest, IncrementOfAnotherTypeIsRefusedWithWrongType) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("s", Str("text")).ok());
  ASSERT_TRUE(store->Put("b", true).ok());
  ASSERT_TRUE(store->Define("u", KeyType::kUptime).ok());
  for (const char* key : {"s", "b", "u"}) {
    SCOPED_TRACE(key);
    Result<Change> c = store->Increment(key, 1);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().reason(), "wrong_type");
    EXPECT_NE(c.status().message().find(std::string("'") + key + "'"), std::string::npos)
        << c.status().message();
  }
  EXPECT_EQ(Refused(*store, "wrong_type"), 3);
  EXPECT_EQ(std::get<std::string>(store->Get("s")->last->value), "text");
  EXPECT_EQ(HistorySize(*store, "s"), 1u);
}

TEST_F(KeyModelTest, IncrementIsExactUnderEightConcurrentThreads) {
  auto store = Open();
  ASSERT_TRUE(store);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Half wait for the commit as MQTT does, half go through the group commit.
        PutOptions o;
        o.wait_committed = (t % 2 == 0);
        if (!store->Increment("hits", 1, o).ok()) ++failures;
        if (!store->Increment("per/" + std::to_string(t % 2), 2, o).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(std::get<double>(store->Get("hits")->last->value), kThreads * kPerThread);
  EXPECT_EQ(std::get<double>(store->Get("per/0")->last->value), kThreads / 2 * kPerThread * 2);
  EXPECT_EQ(std::get<double>(store->Get("per/1")->last->value), kThreads / 2 * kPerThread * 2);
  // Every intermediate sum was stored exactly once.
  Result<std::vector<Sample>> h = store->History("hits", 0, kForever, 100000);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < h->size(); ++i) {
    EXPECT_EQ(std::get<double>((*h)[i].value), static_cast<double>(i + 1));
  }
  store.reset();
  store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(std::get<double>(store->Get("hits")->last->value), kThreads * kPerThread);
}

// --- same_value_resolution ------------------------------------------------

TEST_F(KeyModelTest, RepeatsWithinSameValueResolutionAreNotStored) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(
      store->Define("t", KeyType::kNumeric, Opts(json{{"same_value_resolution", 10}})).ok());
  std::vector<Change> seen;
  store->AddListener([&](const Change& c) { seen.push_back(c); });

  Result<Change> c = store->Put("t", 20.0, At(kNow));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->stored);
  EXPECT_NE(c->seq, 0u);
  for (int64_t dt : {1, 5000, 9999}) {
    c = store->Put("t", 20.0, At(kNow + dt));
    ASSERT_TRUE(c.ok());
    EXPECT_FALSE(c->stored) << dt;
    EXPECT_EQ(c->seq, 0u);
  }
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(HistorySize(*store, "t"), 1u);
  EXPECT_EQ(store->Get("t")->last->time_ms, kNow);  // the stored time stays
  // At the resolution it is stored again.
  c = store->Put("t", 20.0, At(kNow + 10000));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->stored);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(store->Get("t")->last->time_ms, kNow + 10000);
  // Another value is always stored.
  c = store->Put("t", 21.0, At(kNow + 10001));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->stored);
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(HistorySize(*store, "t"), 3u);
  EXPECT_EQ(store->metrics().Get("komoku_changes_repeated_total"), 3);
}

TEST_F(KeyModelTest, ZeroSameValueResolutionStoresEveryRepeat) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Define("b", KeyType::kBoolean, Opts(json{{"same_value_resolution", 0}})).ok());
  int calls = 0;
  store->AddListener([&](const Change&) { ++calls; });
  for (int i = 0; i < 4; ++i) {
    Result<Change> c = store->Put("b", true, At(kNow + i));  // a millisecond apart
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(c->stored);
  }
  // The same time and value again is the same change, not a repeat: a
  // no-op (a broker's redelivery), whatever the resolution.
  Result<Change> twin = store->Put("b", true, At(kNow + 3));
  ASSERT_TRUE(twin.ok());
  EXPECT_FALSE(twin->stored);
  EXPECT_TRUE(twin->duplicate);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(HistorySize(*store, "b"), 4u);
}

TEST_F(KeyModelTest, DefaultSameValueResolutionIsSixtySeconds) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("s", Str("x"), At(kNow - 120000)).ok());
  EXPECT_FALSE(store->Put("s", Str("x"), At(kNow - 60001))->stored);
  EXPECT_TRUE(store->Put("s", Str("x"), At(kNow - 60000))->stored);
}

TEST_F(KeyModelTest, ALateRepeatIsStoredInHistory) {
  // Only a repeat of the current value is skipped; an older change is history.
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("t", 5.0, At(kNow)).ok());
  Result<Change> c = store->Put("t", 5.0, At(kNow - 1000));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->stored);
  EXPECT_FALSE(c->is_current);
  EXPECT_EQ(HistorySize(*store, "t"), 2u);
}

}  // namespace
}  // namespace komoku::store

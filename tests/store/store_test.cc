// The Store over a real SQLite hot store in a temporary directory: key
// creation, refusals, newest-time-wins, history ranges, reopening, the commit
// queue, listeners, concurrent puts, and databases it must refuse.
#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hot/hot_store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

using testing::FakeClock;
using testing::OpenTestStore;
using testing::TempDir;
using testing::TestStoreOptions;

constexpr int64_t kNow = 1700000000000;  // 2023-11-14T22:13:20Z
constexpr int64_t kForever = std::numeric_limits<int64_t>::max();
const std::string kBadValue = "komoku_refused_total{reason=\"wrong_type\"}";

// "1000=d:21.5", "2000=b:true", "3000=s:text", "none": a sample with the
// type of its value, so a double that comes back as a bool is a difference.
std::string Text(const std::optional<Sample>& s) {
  if (!s) return "none";
  const char* kind = std::holds_alternative<double>(s->value) ? "d"
                     : std::holds_alternative<bool>(s->value) ? "b"
                                                              : "s";
  return std::to_string(s->time_ms) + "=" + kind + ":" + ValueToText(s->value);
}

std::string Text(const std::vector<Sample>& samples) {
  std::string out;
  for (const Sample& s : samples) out += (out.empty() ? "" : " ") + Text(s);
  return out;
}

std::string Text(const KeyInfo& k) {
  return k.name + " " + KeyTypeName(k.type) + " last " + Text(k.last) + " previous " +
         Text(k.previous);
}

PutOptions At(int64_t time_ms, bool wait_committed = true) {
  PutOptions o;
  o.time_ms = time_ms;
  o.wait_committed = wait_committed;
  return o;
}

InputValue Str(const char* s) { return InputValue(std::string(s)); }

class StoreTest : public ::testing::Test {
 protected:
  std::string DataDir() const { return dir_.File("data"); }

  std::unique_ptr<Store> OpenStore(const HotStoreOptions& hot = {}) {
    return OpenTestStore(DataDir(), &clock_, hot);
  }

  Result<std::unique_ptr<Store>> TryOpen() {
    return Store::Open(TestStoreOptions(DataDir(), &clock_), nullptr);
  }

  // All of `key`'s history as text.
  static std::string AllHistory(const Store& store, const std::string& key) {
    Result<std::vector<Sample>> h = store.History(key, 0, kForever, 1000000);
    if (!h.ok()) return h.status().ToString();
    return Text(*h);
  }

  TempDir dir_;
  FakeClock clock_{kNow};
};

TEST_F(StoreTest, OpenCreatesTheDataDirAndDatabase) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->db_path(), DataDir() + "/komoku.db");
  EXPECT_TRUE(std::filesystem::is_regular_file(store->db_path()));
  EXPECT_TRUE(store->Keys().empty());
  EXPECT_TRUE(store->Get("nothing").status().IsNotFound());
  EXPECT_TRUE(store->History("nothing", 0, kForever, 10).status().IsNotFound());
}

TEST_F(StoreTest, PutCreatesTheKeyWithAGuessedType) {
  struct Case {
    const char* key;
    InputValue value;
    KeyType type;
    std::string last;
  };
  const std::vector<Case> cases = {
      {"temp", Str("21.5"), KeyType::kNumeric, "1700000000000=d:21.5"},
      {"json_number", InputValue(3.0), KeyType::kNumeric, "1700000000000=d:3"},
      {"door", Str("true"), KeyType::kBoolean, "1700000000000=b:true"},
      {"light", InputValue(false), KeyType::kBoolean, "1700000000000=b:false"},
      {"radio", Str("Radio Paradise"), KeyType::kString, "1700000000000=s:Radio Paradise"},
      {"switch", Str("on"), KeyType::kString, "1700000000000=s:on"},
  };
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const Case& c : cases) {
    Result<Change> change = store->Put(c.key, c.value);
    ASSERT_TRUE(change.ok()) << c.key << ": " << change.status().ToString();
    EXPECT_TRUE(change->created_key) << c.key;
    EXPECT_TRUE(change->is_current) << c.key;
    EXPECT_FALSE(change->previous) << c.key;
    EXPECT_EQ(change->type, c.type) << c.key;
    EXPECT_EQ(Text(change->sample), c.last) << c.key;

    Result<KeyInfo> info = store->Get(c.key);
    ASSERT_TRUE(info.ok()) << c.key;
    EXPECT_EQ(info->type, c.type) << c.key;
    EXPECT_EQ(Text(info->last), c.last) << c.key;
    EXPECT_EQ(AllHistory(*store, c.key), c.last) << c.key;
  }
  // A second put to an existing key does not create it again.
  Result<Change> again = store->Put("temp", InputValue(22.0));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created_key);

  std::vector<KeyInfo> keys = store->Keys();
  std::vector<std::string> names;
  names.reserve(keys.size());
  for (const KeyInfo& k : keys) names.push_back(k.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"door", "json_number", "light", "radio", "switch", "temp"}));
  EXPECT_EQ(store->metrics().Get("komoku_keys"), 6);
  EXPECT_EQ(store->metrics().Get("komoku_changes_accepted_total"), 7);
}

TEST_F(StoreTest, WrongTypePutIsRefusedAndChangesNothing) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put("temp", Str("21.5"), At(kNow - 1000)).ok());
  ASSERT_TRUE(store->Put("temp", Str("22"), At(kNow - 500)).ok());
  ASSERT_TRUE(store->Put("door", Str("true"), At(kNow - 500)).ok());
  int listened = 0;
  store->AddListener([&](const Change&) { ++listened; });
  const std::string before = Text(*store->Get("temp"));
  const std::string history_before = AllHistory(*store, "temp");

  struct Case {
    const char* key;
    InputValue value;
  };
  const std::vector<Case> cases = {
      {"temp", Str("abc")},  {"temp", InputValue(true)}, {"temp", Str("true")},
      {"temp", Str("nan")},  {"door", Str("maybe")},     {"door", InputValue(2.0)},
      {"door", Str("21.5")},
  };
  int64_t refused = 0;
  for (const Case& c : cases) {
    Result<Change> r = store->Put(c.key, c.value, At(kNow));
    ASSERT_FALSE(r.ok()) << c.key << " accepted " << Text(r->sample);
    EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
    EXPECT_NE(r.status().message().find(c.key), std::string::npos)
        << "the message names the key: " << r.status().message();
    EXPECT_EQ(store->metrics().Get(kBadValue), ++refused);
  }
  EXPECT_EQ(Text(*store->Get("temp")), before);
  EXPECT_EQ(AllHistory(*store, "temp"), history_before);
  EXPECT_EQ(AllHistory(*store, "door"), "1699999999500=b:true");
  EXPECT_EQ(listened, 0);
  EXPECT_EQ(store->metrics().Get("komoku_changes_accepted_total"), 3);
  EXPECT_EQ(store->Get("temp")->type, KeyType::kNumeric);

  // Nothing half-written reached the database either.
  store->Close();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Text(*store->Get("temp")), before);
  EXPECT_EQ(AllHistory(*store, "temp"), history_before);
}

TEST_F(StoreTest, RefusedFirstPutDoesNotCreateTheKey) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  // The guess is "string", and a string must be valid UTF-8.
  Result<Change> r = store->Put("log", Str("bad \xFF byte"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_TRUE(store->Get("log").status().IsNotFound());
  EXPECT_FALSE(store->Contains("log"));
  EXPECT_TRUE(store->Keys().empty());
  EXPECT_EQ(store->metrics().Get(kBadValue), 1);
  // Contains says what Get says, through a put and a delete.
  ASSERT_TRUE(store->Put("log", Str("fine")).ok());
  EXPECT_TRUE(store->Contains("log"));
  ASSERT_TRUE(store->Delete("log").ok());
  EXPECT_FALSE(store->Contains("log"));
  EXPECT_EQ(store->metrics().Get("komoku_keys"), 0);
}

TEST_F(StoreTest, BadKeyNamesAndTimesAreRefusedAndCounted) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const std::string& key :
       {std::string(), std::string("a/+/b"), std::string("a/#"), std::string(256, 'k'),
        std::string("a\0b", 3), std::string("\xC0\xAF")}) {
    Result<Change> r = store->Put(key, InputValue(1.0));
    EXPECT_TRUE(r.status().IsInvalidArgument()) << ::testing::PrintToString(key);
  }
  EXPECT_EQ(store->metrics().Get("komoku_refused_total{reason=\"bad_key\"}"), 6);

  constexpr int64_t kDay = 24LL * 3600 * 1000;
  EXPECT_TRUE(store->Put("t", InputValue(1.0), At(-1)).status().IsInvalidArgument());
  EXPECT_TRUE(store->Put("t", InputValue(1.0), At(kNow + kDay + 1)).status().IsInvalidArgument());
  EXPECT_EQ(store->metrics().Get("komoku_refused_total{reason=\"bad_time\"}"), 2);
  EXPECT_TRUE(store->Keys().empty()) << "a refused put creates no key";

  // The edges that are allowed: the epoch and exactly a day ahead.
  EXPECT_TRUE(store->Put("t", InputValue(1.0), At(0)).ok());
  EXPECT_TRUE(store->Put("t", InputValue(2.0), At(kNow + kDay)).ok());
  EXPECT_EQ(AllHistory(*store, "t"), "0=d:1 1700086400000=d:2");
  EXPECT_EQ(store->metrics().Get(kBadValue), 0);
}

TEST_F(StoreTest, NewestTimeWinsAndALateChangeGoesToHistoryOnly) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<Change> first = store->Put("temp", InputValue(20.0), At(kNow - 2000));
  ASSERT_TRUE(first.ok());
  Result<Change> newer = store->Put("temp", InputValue(21.0), At(kNow - 1000));
  ASSERT_TRUE(newer.ok());
  EXPECT_TRUE(newer->is_current);
  EXPECT_EQ(Text(newer->previous), "1699999998000=d:20");

  // A late reading from before the current value.
  Result<Change> late = store->Put("temp", InputValue(5.0), At(kNow - 5000));
  ASSERT_TRUE(late.ok()) << late.status().ToString();
  EXPECT_FALSE(late->is_current);
  EXPECT_EQ(Text(late->sample), "1699999995000=d:5");
  EXPECT_EQ(Text(late->previous), "1699999999000=d:21") << "previous is the current value";

  Result<KeyInfo> info = store->Get("temp");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(Text(info->last), "1699999999000=d:21");
  EXPECT_EQ(AllHistory(*store, "temp"), "1699999995000=d:5 1699999998000=d:20 1699999999000=d:21");

  // A put without a time is at the clock's now, newer than all of it.
  Result<Change> now = store->Put("temp", InputValue(22.0));
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(now->is_current);
  EXPECT_EQ(Text(store->Get("temp")->last), "1700000000000=d:22");
  EXPECT_EQ(Text(store->Get("temp")->previous), "1699999999000=d:21");
}

TEST_F(StoreTest, ASameTimeTieGoesToTheLaterPutAlsoAfterReopen) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put("mode", Str("away"), At(kNow)).ok());
  Result<Change> tie = store->Put("mode", Str("home"), At(kNow));
  ASSERT_TRUE(tie.ok());
  EXPECT_TRUE(tie->is_current);
  EXPECT_EQ(Text(store->Get("mode")->last), "1700000000000=s:home");
  EXPECT_EQ(Text(store->Get("mode")->previous), "1700000000000=s:away");
  store->Close();

  store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Text(store->Get("mode")->last), "1700000000000=s:home");
  EXPECT_EQ(Text(store->Get("mode")->previous), "1700000000000=s:away");
  EXPECT_EQ(AllHistory(*store, "mode"), "1700000000000=s:away 1700000000000=s:home");
}

TEST_F(StoreTest, HistoryRangeIsHalfOpenOldestFirstAndLimited) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  // Put out of order; history comes back in time order.
  for (int64_t t : {3000, 1000, 5000, 2000, 4000}) {
    ASSERT_TRUE(store->Put("n", InputValue(static_cast<double>(t) / 1000), At(t)).ok());
  }
  ASSERT_TRUE(store->Put("other", InputValue(9.0), At(2500)).ok());
  struct Case {
    int64_t from, to;
    size_t limit;
    std::string want;
  };
  const std::vector<Case> cases = {
      {0, kForever, 100, "1000=d:1 2000=d:2 3000=d:3 4000=d:4 5000=d:5"},
      {2000, 4000, 100, "2000=d:2 3000=d:3"},  // from included, to excluded
      {2001, 4001, 100, "3000=d:3 4000=d:4"},
      {1999, 2000, 100, ""},
      {4000, 4000, 100, ""},
      {5000, 1000, 100, ""},  // from after to
      {5001, kForever, 100, ""},
      {0, kForever, 2, "1000=d:1 2000=d:2"},  // the limit keeps the oldest
      {2500, kForever, 1, "3000=d:3"},
      {0, kForever, 0, ""},
      {0, kForever, std::numeric_limits<size_t>::max(),
       "1000=d:1 2000=d:2 3000=d:3 4000=d:4 5000=d:5"},
  };
  for (const Case& c : cases) {
    Result<std::vector<Sample>> h = store->History("n", c.from, c.to, c.limit);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_EQ(Text(*h), c.want) << "[" << c.from << ", " << c.to << ") limit " << c.limit;
  }
  EXPECT_EQ(AllHistory(*store, "other"), "2500=d:9");
}

// Scans reuse their connections: a scan stopped early, or one after many
// others, must still see every change committed before it started.
TEST_F(StoreTest, ScansOnReusedConnectionsSeeEveryEarlierCommit) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (int64_t i = 1; i <= 20; ++i) {
    ASSERT_TRUE(store->Put("n", InputValue(static_cast<double>(i)), At(i * 1000)).ok());
    // Stopped after the first change: the statement must not keep the old
    // snapshot for the next scan.
    int seen = 0;
    ASSERT_TRUE(store->Scan("n", 0, kForever, [&](const Sample&) { return ++seen < 1; }).ok());
    EXPECT_EQ(seen, 1);
    int64_t count = 0, last = 0;
    ASSERT_TRUE(store
                    ->Scan("n", 0, kForever,
                           [&](const Sample& s) {
                             ++count;
                             last = s.time_ms;
                             return true;
                           })
                    .ok());
    EXPECT_EQ(count, i);
    EXPECT_EQ(last, i * 1000);
  }
  // Several scans at once each get a connection; nested inside another's
  // callback is the hardest case.
  int64_t outer = 0, inner = 0;
  ASSERT_TRUE(store
                  ->Scan("n", 0, kForever,
                         [&](const Sample&) {
                           ++outer;
                           EXPECT_TRUE(store
                                           ->Scan("n", 0, kForever,
                                                  [&](const Sample&) {
                                                    ++inner;
                                                    return true;
                                                  })
                                           .ok());
                           return true;
                         })
                  .ok());
  EXPECT_EQ(outer, 20);
  EXPECT_EQ(inner, 400);
}

TEST_F(StoreTest, ReopenKeepsKeysTypesLastPreviousAndHistory) {
  std::string keys_before, history_before;
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("temp", InputValue(1000.0), At(1000)).ok());
    ASSERT_TRUE(store->Put("temp", InputValue(0.0), At(2000)).ok());
    ASSERT_TRUE(store->Put("temp", InputValue(21.5), At(3000)).ok());
    ASSERT_TRUE(store->Put("door", InputValue(true), At(1000)).ok());
    ASSERT_TRUE(store->Put("door", Str("closed"), At(2000)).ok());
    ASSERT_TRUE(store->Put("radio", Str("1"), At(1000)).ok());  // numeric guess...
    ASSERT_TRUE(store->Put("alarm", Str("armed"), At(1000)).ok());
    ASSERT_TRUE(store->Put("alarm", InputValue(true), At(1500)).ok());  // "true" as text
    ASSERT_TRUE(store->Put("alarm", Str(""), At(1600)).ok());
    ASSERT_TRUE(store
                    ->Put("K\xC3\xBC"
                          "che/temp",
                          Str("19"), At(1000))
                    .ok());
    for (const KeyInfo& k : store->Keys()) keys_before += Text(k) + "\n";
    for (const KeyInfo& k : store->Keys()) history_before += AllHistory(*store, k.name) + "\n";
    store->Close();
  }
  EXPECT_EQ(keys_before,
            "K\xC3\xBC"
            "che/temp numeric last 1000=d:19 previous none\n"
            "alarm string last 1600=s: previous 1500=s:true\n"
            "door boolean last 2000=b:false previous 1000=b:true\n"
            "radio numeric last 1000=d:1 previous none\n"
            "temp numeric last 3000=d:21.5 previous 2000=d:0\n");

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  std::string keys_after, history_after;
  for (const KeyInfo& k : store->Keys()) keys_after += Text(k) + "\n";
  for (const KeyInfo& k : store->Keys()) history_after += AllHistory(*store, k.name) + "\n";
  EXPECT_EQ(keys_after, keys_before);
  EXPECT_EQ(history_after, history_before);
  EXPECT_EQ(AllHistory(*store, "temp"), "1000=d:1000 2000=d:0 3000=d:21.5")
      << "whole doubles stay doubles";
  EXPECT_EQ(store->metrics().Get("komoku_keys"), 5);

  // The reopened store goes on: key ids do not collide with the old ones.
  Result<Change> fresh = store->Put("new", InputValue(1.0), At(5000));
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->created_key);
  ASSERT_TRUE(store->Put("temp", Str("22"), At(4000)).ok());
  EXPECT_EQ(Text(*store->Get("temp")), "temp numeric last 4000=d:22 previous 3000=d:21.5");
  EXPECT_EQ(AllHistory(*store, "new"), "5000=d:1");
  EXPECT_EQ(AllHistory(*store, "temp"), "1000=d:1000 2000=d:0 3000=d:21.5 4000=d:22");
}

// "previous" is the value before the current one. After late changes, the
// store must say the same before and after a restart; otherwise a client sees
// `previous` change just because Komoku restarted.
TEST_F(StoreTest, ReopenAgreesWithTheLiveStoreAfterLateChanges) {
  std::string before;
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    // a: one change, then a late one before it.
    ASSERT_TRUE(store->Put("a", InputValue(2.0), At(2000)).ok());
    ASSERT_TRUE(store->Put("a", InputValue(1.0), At(1000)).ok());
    // b: two changes, then a late one between them.
    ASSERT_TRUE(store->Put("b", InputValue(1.0), At(1000)).ok());
    ASSERT_TRUE(store->Put("b", InputValue(3.0), At(3000)).ok());
    ASSERT_TRUE(store->Put("b", InputValue(2.0), At(2000)).ok());
    // c: a late one older than both: previous stays.
    ASSERT_TRUE(store->Put("c", InputValue(2.0), At(2000)).ok());
    ASSERT_TRUE(store->Put("c", InputValue(3.0), At(3000)).ok());
    ASSERT_TRUE(store->Put("c", InputValue(1.0), At(1000)).ok());
    for (const KeyInfo& k : store->Keys()) before += Text(k) + "\n";
    store->Close();
  }
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  std::string after;
  for (const KeyInfo& k : store->Keys()) after += Text(k) + "\n";
  EXPECT_EQ(after,
            "a numeric last 2000=d:2 previous 1000=d:1\n"
            "b numeric last 3000=d:3 previous 2000=d:2\n"
            "c numeric last 3000=d:3 previous 2000=d:2\n");
  EXPECT_EQ(before, after) << "the live store's previous differs from what a restart loads";
}

TEST_F(StoreTest, UnwaitedPutsAreCommittedByClose) {
  HotStoreOptions hot;
  hot.commit_interval = std::chrono::hours(1);  // only Close can commit them
  hot.checkpoint_interval = std::chrono::hours(1);
  constexpr int kPuts = 50;
  {
    std::unique_ptr<Store> store = OpenStore(hot);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < kPuts; ++i) {
      Result<Change> r = store->Put("q", InputValue(static_cast<double>(i)), At(1000 + i, false));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    // Accepted, visible as current value, but still queued: 1 new key + the
    // changes.
    EXPECT_EQ(store->QueueDepth(), static_cast<size_t>(kPuts + 1));
    EXPECT_EQ(Text(store->Get("q")->last), "1049=d:49");
    store->Close();
    EXPECT_EQ(store->QueueDepth(), 0u);
    store->Close();  // idempotent
    Result<Change> after_close = store->Put("q", InputValue(1.0));
    EXPECT_FALSE(after_close.ok());
    EXPECT_TRUE(after_close.status().IsBusy()) << after_close.status().ToString();
  }
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<std::vector<Sample>> h = store->History("q", 0, kForever, 1000);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h->size(), static_cast<size_t>(kPuts));
  for (int i = 0; i < kPuts; ++i) EXPECT_EQ(Text((*h)[i]), Text(Sample{1000 + i, Value(i * 1.0)}));
  EXPECT_EQ(Text(*store->Get("q")), "q numeric last 1049=d:49 previous 1048=d:48");
}

TEST_F(StoreTest, DestructorCommitsLikeClose) {
  HotStoreOptions hot;
  hot.commit_interval = std::chrono::hours(1);
  {
    std::unique_ptr<Store> store = OpenStore(hot);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("d", InputValue(true), At(1000, false)).ok());
  }
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(AllHistory(*store, "d"), "1000=b:true");
}

TEST_F(StoreTest, ListenersGetChangesWithThePreviousValue) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  std::vector<Change> seen;
  std::vector<Change> seen_by_second;
  int id = store->AddListener([&](const Change& c) { seen.push_back(c); });
  int id2 = store->AddListener([&](const Change& c) { seen_by_second.push_back(c); });
  EXPECT_NE(id, id2);

  ASSERT_TRUE(store->Put("door", Str("open"), At(1000)).ok());  // string key by guess
  ASSERT_TRUE(store->Put("door", Str("closed"), At(2000)).ok());
  ASSERT_TRUE(store->Put("door", Str("ajar"), At(1500)).ok());  // late
  ASSERT_TRUE(store->Put("lamp", InputValue(true), At(1000, /*wait_committed=*/false)).ok());
  ASSERT_FALSE(store->Put("door", InputValue(std::string("\xFF")), At(3000)).ok());  // refused

  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].key, "door");
  EXPECT_EQ(seen[0].type, KeyType::kString);
  EXPECT_TRUE(seen[0].created_key);
  EXPECT_TRUE(seen[0].is_current);
  EXPECT_EQ(Text(seen[0].sample), "1000=s:open");
  EXPECT_EQ(Text(seen[0].previous), "none");

  EXPECT_FALSE(seen[1].created_key);
  EXPECT_TRUE(seen[1].is_current);
  EXPECT_EQ(Text(seen[1].sample), "2000=s:closed");
  EXPECT_EQ(Text(seen[1].previous), "1000=s:open");

  EXPECT_FALSE(seen[2].is_current);
  EXPECT_EQ(Text(seen[2].sample), "1500=s:ajar");
  EXPECT_EQ(Text(seen[2].previous), "2000=s:closed");

  EXPECT_EQ(seen[3].key, "lamp");
  EXPECT_EQ(seen[3].type, KeyType::kBoolean);
  EXPECT_TRUE(seen[3].created_key);
  EXPECT_EQ(Text(seen[3].sample), "1000=b:true");

  EXPECT_EQ(seen_by_second.size(), 4u);

  store->RemoveListener(id);
  ASSERT_TRUE(store->Put("door", Str("open"), At(3000)).ok());
  EXPECT_EQ(seen.size(), 4u) << "a removed listener hears nothing more";
  ASSERT_EQ(seen_by_second.size(), 5u);
  EXPECT_EQ(Text(seen_by_second[4].previous), "2000=s:closed");
  store->RemoveListener(12345);  // unknown ids are ignored
}

// Eight threads put to one shared key and to a key of their own, half of them
// without waiting for the commit, while a reader thread watches. Every put has
// a distinct time, so the newest is known. Run under ThreadSanitizer too.
TEST_F(StoreTest, ConcurrentPutsLoseNothingAndTheNewestWins) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;
  HotStoreOptions hot;
  hot.commit_interval = std::chrono::milliseconds(5);
  hot.commit_max_rows = 64;
  hot.checkpoint_interval = std::chrono::milliseconds(20);
  std::unique_ptr<Store> store = OpenStore(hot);
  ASSERT_NE(store, nullptr);
  std::atomic<int> heard{0};
  std::atomic<int> heard_current_shared{0};
  store->AddListener([&](const Change& c) {
    heard.fetch_add(1);
    if (c.key == "shared" && c.is_current) heard_current_shared.fetch_add(1);
  });

  // Thread i's j-th shared put is at time 1000 + j * kThreads + i: interleaved
  // with the others, so late changes happen whenever the threads drift.
  auto shared_time = [](int i, int j) { return int64_t{1000} + j * kThreads + i; };
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<int64_t> reader_rounds{0};
  std::thread reader([&] {
    int64_t seen_time = -1;
    while (!done.load()) {
      Result<KeyInfo> info = store->Get("shared");
      if (info.ok() && info->last) {
        // The current value never goes back in time.
        if (info->last->time_ms < seen_time) failures.fetch_add(1);
        seen_time = info->last->time_ms;
        // The current value is the one put at that time.
        if (std::get<double>(info->last->value) != static_cast<double>(info->last->time_ms)) {
          failures.fetch_add(1);
        }
        Result<std::vector<Sample>> h = store->History("shared", 0, kForever, 10);
        if (!h.ok()) failures.fetch_add(1);
      }
      (void)store->Keys();
      reader_rounds.fetch_add(1);
    }
  });
  std::vector<std::thread> writers;
  writers.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    writers.emplace_back([&, i] {
      const bool wait = i % 2 == 0;
      const std::string own = "own/" + std::to_string(i);
      for (int j = 0; j < kPerThread; ++j) {
        int64_t t = shared_time(i, j);
        if (!store->Put("shared", InputValue(static_cast<double>(t)), At(t, wait)).ok()) {
          failures.fetch_add(1);
        }
        if (!store->Put(own, InputValue(static_cast<double>(j)), At(1000 + j, wait)).ok()) {
          failures.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : writers) t.join();
  done.store(true);
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reader_rounds.load(), 0);

  const int64_t newest = shared_time(kThreads - 1, kPerThread - 1);
  EXPECT_EQ(heard.load(), 2 * kThreads * kPerThread);
  EXPECT_GE(heard_current_shared.load(), 1);
  EXPECT_EQ(store->metrics().Get("komoku_changes_accepted_total"), 2 * kThreads * kPerThread);
  EXPECT_EQ(Text(store->Get("shared")->last),
            std::to_string(newest) + "=d:" + std::to_string(newest));

  auto check = [&](Store& s, const char* when) {
    SCOPED_TRACE(when);
    Result<std::vector<Sample>> h = s.History("shared", 0, kForever, 1000000);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    ASSERT_EQ(h->size(), static_cast<size_t>(kThreads * kPerThread));
    std::set<int64_t> times;
    for (const Sample& sample : *h) {
      times.insert(sample.time_ms);
      EXPECT_EQ(std::get<double>(sample.value), static_cast<double>(sample.time_ms));
    }
    EXPECT_EQ(times.size(), static_cast<size_t>(kThreads * kPerThread)) << "no duplicates";
    EXPECT_EQ(*times.begin(), 1000);
    EXPECT_EQ(*times.rbegin(), newest);
    for (int i = 0; i < kThreads; ++i) {
      std::string own = "own/" + std::to_string(i);
      Result<std::vector<Sample>> oh = s.History(own, 0, kForever, 1000000);
      ASSERT_TRUE(oh.ok());
      ASSERT_EQ(oh->size(), static_cast<size_t>(kPerThread)) << own;
      for (int j = 0; j < kPerThread; ++j) EXPECT_EQ((*oh)[j].time_ms, 1000 + j) << own;
      EXPECT_EQ(Text(s.Get(own)->last),
                Text(Sample{1000 + kPerThread - 1, Value(static_cast<double>(kPerThread - 1))}));
    }
    EXPECT_EQ(s.Keys().size(), static_cast<size_t>(kThreads + 1));
    EXPECT_EQ(Text(s.Get("shared")->last), std::to_string(newest) + "=d:" + std::to_string(newest));
  };
  // Half the puts did not wait; Close commits them, and a reopen sees all.
  store->Close();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  check(*store, "after reopen");
}

// The schema version lives in PRAGMA user_version; a newer one is refused
// before anything is written.
TEST_F(StoreTest, NewerSchemaVersionIsRefusedNamingTheFile) {
  ASSERT_TRUE(std::filesystem::create_directories(DataDir()));
  const std::string db_path = DataDir() + "/komoku.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
    const std::string sql = "CREATE TABLE future(x); PRAGMA user_version=" +
                            std::to_string(HotStore::kSchemaVersion + 1) + ";";
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  Result<std::unique_ptr<Store>> store = TryOpen();
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(store.status().IsInvalidArgument()) << store.status().ToString();
  EXPECT_NE(store.status().message().find(db_path), std::string::npos) << store.status().message();
  EXPECT_NE(store.status().message().find("schema version " +
                                          std::to_string(HotStore::kSchemaVersion + 1)),
            std::string::npos)
      << store.status().message();

  // The file still says the newer version: nothing was migrated down.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(stmt, 0), HotStore::kSchemaVersion + 1);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(StoreTest, CurrentSchemaVersionIsWrittenAndReopens) {
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((DataDir() + "/komoku.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(stmt, 0), HotStore::kSchemaVersion);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  EXPECT_NE(OpenStore(), nullptr);
}

int64_t PragmaInt(const std::string& path, const char* pragma) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  const std::string sql = std::string("PRAGMA ") + pragma;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
  int64_t v = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) v = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return v;
}

// A new hot store gets small pages (what a change costs the disk, docs/
// storage.md); one made with SQLite's default 4 KB pages keeps them and works.
TEST_F(StoreTest, ANewDatabaseHasSmallPagesAndAnOldOneKeepsItsOwn) {
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("t", InputValue(1.5), At(1000)).ok());
  }
  EXPECT_EQ(PragmaInt(DataDir() + "/komoku.db", "page_size"), HotStore::kPageSize);

  std::filesystem::remove_all(DataDir());
  ASSERT_TRUE(std::filesystem::create_directories(DataDir()));
  const std::string db_path = DataDir() + "/komoku.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA page_size=4096; CREATE TABLE older(x);", nullptr, nullptr,
                           nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("t", InputValue(2.5), At(2000)).ok());
  }
  EXPECT_EQ(PragmaInt(db_path, "page_size"), 4096);
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<std::vector<Sample>> h = store->History("t", 0, kForever, 10);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h->size(), 1u);
  EXPECT_EQ(h->front().time_ms, 2000);
}

TEST_F(StoreTest, AFileThatIsNotADatabaseIsRefusedNamingTheFile) {
  ASSERT_TRUE(std::filesystem::create_directories(DataDir()));
  const std::string db_path = DataDir() + "/komoku.db";
  {
    std::ofstream out(db_path, std::ios::binary);
    out << std::string(8192, 'x');
  }
  Result<std::unique_ptr<Store>> store = TryOpen();
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(db_path), std::string::npos) << store.status().ToString();
}

TEST_F(StoreTest, ADataDirThatIsAFileIsAnIOError) {
  {
    std::ofstream out(DataDir());
    out << "not a directory";
  }
  Result<std::unique_ptr<Store>> store = TryOpen();
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(store.status().IsIOError()) << store.status().ToString();
  EXPECT_NE(store.status().message().find(DataDir()), std::string::npos)
      << store.status().message();
}

// SQLite cannot open a directory as a database: Open must return that as an
// error (and must not crash on the way out).
TEST_F(StoreTest, ADatabasePathThatCannotBeOpenedIsAnError) {
  ASSERT_TRUE(std::filesystem::create_directories(DataDir() + "/komoku.db"));
  Result<std::unique_ptr<Store>> store = TryOpen();
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("komoku.db"), std::string::npos)
      << store.status().ToString();
}

}  // namespace
}  // namespace komoku::store

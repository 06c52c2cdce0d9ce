// Cold history: the same random history of every key type in two stores,
// one never compacted (the reference) and one compacted, merged, restarted,
// given late changes and aged past retention. Every question asked of both
// must get the same answer (numbers to 1e-9 relative: rollups add sums in
// another order).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <thread>

#include "cold/cold_store.h"
#include "key_options_util.h"
#include "keyka/reader.h"
#include "series/history.h"
#include "store_test_util.h"
#include "wire/api.h"
#include "wire/history_json.h"

namespace komoku::store {
namespace {

using nlohmann::json;
using testing::FakeClock;
using testing::ManualCompactionOptions;
using testing::OpenTestStore;
using testing::Opts;
using testing::TempDir;

constexpr int64_t kMin = 60'000;
constexpr int64_t kHour = 60 * kMin;
constexpr int64_t kDay = 24 * kHour;
// 2026-03-20 00:00:00 UTC: a week before Europe's switch to summer time.
constexpr int64_t kNow = 1'773'964'800'000;
constexpr int64_t kSpan = 75 * kDay;  // history from two and a half months back

// Equal, with doubles compared to 1e-9 relative; `where` names the place.
::testing::AssertionResult SameJson(const json& a, const json& b, const std::string& where = "") {
  if (a.is_number() && b.is_number()) {
    double x = a.get<double>(), y = b.get<double>();
    if (x == y || std::fabs(x - y) <= 1e-9 * std::max(std::fabs(x), std::fabs(y))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << where << ": " << a << " != " << b;
  }
  if (a.type() != b.type() || a.size() != b.size()) {
    return ::testing::AssertionFailure()
           << where << ": " << a.dump().substr(0, 300) << " != " << b.dump().substr(0, 300);
  }
  if (a.is_array()) {
    for (size_t i = 0; i < a.size(); ++i) {
      auto r = SameJson(a[i], b[i], where + "[" + std::to_string(i) + "]");
      if (!r) return r;
    }
    return ::testing::AssertionSuccess();
  }
  if (a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key()))
        return ::testing::AssertionFailure() << where << ": no " << it.key();
      auto r = SameJson(it.value(), b[it.key()], where + "." + it.key());
      if (!r) return r;
    }
    return ::testing::AssertionSuccess();
  }
  if (a == b) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << where << ": " << a << " != " << b;
}

std::unique_ptr<Store> Open(const std::string& dir, const Clock* clock, ColdOptions cold = {},
                            HotStoreOptions hot = {}) {
  return OpenTestStore(ManualCompactionOptions(dir, clock, std::move(cold), hot));
}

class ColdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ref_ = Open(dir_.path() + "/ref", &clock_);
    cold_ = Open(dir_.path() + "/cold", &clock_);
    ASSERT_TRUE(ref_ && cold_);
    const KeyOptionsPatch no_repeat = Opts({{"same_value_resolution", 0}});
    for (Store* s : {ref_.get(), cold_.get()}) {
      ASSERT_TRUE(s->Define("temp", KeyType::kNumeric, no_repeat).ok());
      ASSERT_TRUE(s->Define("energy", KeyType::kCounter,
                            Opts({{"same_value_resolution", 0}, {"reset_tolerance", 0.5}}))
                      .ok());
      ASSERT_TRUE(s->Define("door", KeyType::kBoolean, no_repeat).ok());
      ASSERT_TRUE(s->Define("mode", KeyType::kString, no_repeat).ok());
      ASSERT_TRUE(s->Define("hum", KeyType::kNumeric,
                            Opts({{"same_value_resolution", 0}, {"stale_after", 3 * 3600}}))
                      .ok());
    }
  }

  // The same change in both stores; committed before the next question
  // (Flush) but not waited for one by one, which keeps the test quick.
  void Put(const std::string& key, int64_t t, const InputValue& v) {
    PutOptions o;
    o.time_ms = t;
    o.wait_committed = false;
    for (Store* s : {ref_.get(), cold_.get()}) {
      Result<Change> c = s->Put(key, v, o);
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      last_seq_[s] = c->seq;
    }
  }
  void Flush() {
    for (Store* s : {ref_.get(), cold_.get()}) ASSERT_TRUE(s->WaitCommitted(last_seq_[s]).ok());
  }
  std::map<Store*, uint64_t> last_seq_;

  void Generate(unsigned seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> jitter(-30'000, 30'000);
    std::uniform_real_distribution<double> unit(0, 1);
    const int64_t start = kNow - kSpan;
    double temp = 20, energy = 1000;
    for (int64_t t = start; t < kNow - kHour; t += 7 * kMin + jitter(rng)) {
      temp += (unit(rng) - 0.5) * 0.4;
      Put("temp", t, std::round(temp * 100) / 100);
      energy += unit(rng) * 0.3;
      if (unit(rng) < 0.001) energy = 0;             // a reset
      double glitch = unit(rng) < 0.002 ? -0.2 : 0;  // within reset_tolerance
      Put("energy", t + 1000, std::round((energy + glitch) * 1000) / 1000);
      if (unit(rng) < 0.05) Put("door", t + 2000, unit(rng) < 0.5);
      if (unit(rng) < 0.02) {
        const char* modes[] = {"heating", "idle", "eco"};
        Put("mode", t + 3000, std::string(modes[rng() % 3]));
      }
      // Humidity stops for hours at a time: stale spells.
      if ((t / (9 * kHour)) % 3 != 0) Put("hum", t + 4000, std::round(unit(rng) * 1000) / 10);
    }
    Flush();
  }

  // A battery of questions over both stores; fails on the first difference.
  void ExpectSameAnswers(const std::string& when, bool raw_too = true,
                         const std::vector<std::string>& keys = {"temp", "energy", "door", "mode",
                                                                 "hum"}) {
    SCOPED_TRACE(when);
    Flush();
    struct Step {
      const char* step;
      const char* tz;
    };
    const Step steps[] = {{"5m", ""},
                          {"1h", ""},
                          {"90m", ""},
                          {"1d", ""},
                          {"1d", "Europe/Berlin"},
                          {"1d", "Asia/Kolkata"},
                          {"1w", ""},
                          {"auto", ""}};
    const std::pair<int64_t, int64_t> ranges[] = {
        {kNow - kSpan - kDay, kNow},                          // everything, and a day before
        {kNow - 40 * kDay + 17 * kMin, kNow - 3 * kDay + 5},  // unaligned edges
        {kNow - 5 * kDay, kNow},                              // across the hot/cold border
    };
    for (const std::string& key_name : keys) {
      const char* key = key_name.c_str();
      KeyType type = ref_->Get(key)->type;
      for (auto [from, to] : ranges) {
        for (const Step& st : steps) {
          // 5-minute buckets over the short range only: the test stays quick.
          if (std::string(st.step) == "5m" && to - from > 10 * kDay) continue;
          std::string what =
              std::string(key) + " " + st.step + " " + st.tz + " from " + std::to_string(from);
          Result<HistoryQuery> q = PlanBuckets(key, from, to, st.step, st.tz, 100000);
          ASSERT_TRUE(q.ok()) << what << ": " << q.status().ToString();
          std::vector<Agg> aggs;
          if (type == KeyType::kCounter) {
            aggs = *ParseAggs("increase,rate,min,max,first,last,count,avg,twavg,sum", type);
          } else if (type == KeyType::kNumeric) {
            aggs = *ParseAggs("avg,twavg,min,max,first,last,count,sum", type);
          } else {
            aggs = *ParseAggs("first,last,count", type);
          }
          Result<json> a = DownsampleJson(*ref_, *q, aggs);
          Result<json> b = DownsampleJson(*cold_, *q, aggs);
          ASSERT_TRUE(a.ok() && b.ok()) << what;
          ASSERT_TRUE(SameJson(*a, *b, "downsample " + what));
          bool hours = type == KeyType::kBoolean || type == KeyType::kString;
          Result<json> sa = StatsJson(*ref_, *q, hours, st.tz);
          Result<json> sb = StatsJson(*cold_, *q, hours, st.tz);
          ASSERT_TRUE(sa.ok() && sb.ok()) << what;
          ASSERT_TRUE(SameJson(*sa, *sb, "stats " + what));
        }
        if (!raw_too) continue;
        Result<std::vector<Sample>> ha = ref_->History(key, from, to, 1'000'000);
        Result<std::vector<Sample>> hb = cold_->History(key, from, to, 1'000'000);
        ASSERT_TRUE(ha.ok() && hb.ok());
        ASSERT_EQ(ha->size(), hb->size()) << key;
        for (size_t i = 0; i < ha->size(); ++i) {
          ASSERT_EQ((*ha)[i].time_ms, (*hb)[i].time_ms) << key << " #" << i;
          ASSERT_TRUE((*ha)[i].value == (*hb)[i].value) << key << " #" << i;
        }
        if (type == KeyType::kBoolean) {
          Result<HistoryQuery> q = PlanBuckets(key, from, to, "1d", "", 100000);
          Result<json> ta = TimespansJson(*ref_, *q, InputValue(true));
          Result<json> tb = TimespansJson(*cold_, *q, InputValue(true));
          ASSERT_TRUE(ta.ok() && tb.ok());
          ASSERT_TRUE(SameJson(*ta, *tb, "timespans"));
        }
      }
      if (!raw_too) continue;
      std::mt19937 rng(7);
      for (int i = 0; i < 200; ++i) {
        int64_t t = kNow - kSpan - kDay + static_cast<int64_t>(rng() % (kSpan + kDay));
        Result<std::optional<Sample>> a = ref_->At(key, t);
        Result<std::optional<Sample>> b = cold_->At(key, t);
        ASSERT_TRUE(a.ok() && b.ok());
        ASSERT_EQ(a->has_value(), b->has_value()) << key << " at " << t;
        if (*a) {
          ASSERT_EQ((*a)->time_ms, (*b)->time_ms) << key << " at " << t;
          ASSERT_TRUE((*a)->value == (*b)->value) << key << " at " << t;
        }
      }
    }
  }

  TempDir dir_;
  FakeClock clock_{kNow};
  std::unique_ptr<Store> ref_, cold_;
};

TEST_F(ColdTest, CompactedHistoryAnswersLikeHotHistory) {
  Generate(1);
  ExpectSameAnswers("before compaction");
  Result<CompactionReport> r = cold_->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->segments_written, 0);
  EXPECT_GT(r->changes, 10000u);
  // The cold store now holds all but the hot window (two days, from midnight).
  EXPECT_EQ(r->cold_to_ms, kNow - 2 * kDay);
  std::vector<SegmentListing> segs = cold_->Segments();
  ASSERT_FALSE(segs.empty());
  // Whole months were merged: January and February 2026 are one segment each.
  int months = 0;
  for (const auto& s : segs) months += s.to_ms - s.from_ms > 27 * kDay;
  EXPECT_EQ(months, 2);
  ExpectSameAnswers("after compaction");

  // Nothing more to do: a second compaction writes nothing.
  Result<CompactionReport> again = cold_->Compact();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->segments_written, 0);

  // A late change inside cold time is seen at once, and the next
  // compaction folds it in.
  Put("temp", kNow - 20 * kDay + 123, 99.25);
  Put("door", kNow - 50 * kDay + 456, true);
  ExpectSameAnswers("late changes, before they are compacted");
  ASSERT_TRUE(cold_->Compact().ok());
  ExpectSameAnswers("late changes compacted");

  // A day later, the next day moves.
  clock_.Set(kNow + kDay);
  Put("temp", kNow + kHour, 21.5);
  r = cold_->Compact();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->cold_to_ms, kNow - kDay);
  ExpectSameAnswers("a day later");

  // After a restart: the same answers, and the current values came back
  // from segments for keys that were quiet for longer than the hot window.
  cold_.reset();
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  for (const char* key : {"temp", "energy", "door", "mode", "hum"}) {
    Result<KeyInfo> a = ref_->Get(key);
    Result<KeyInfo> b = cold_->Get(key);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(a->last && b->last) << key;
    EXPECT_EQ(a->last->time_ms, b->last->time_ms) << key;
    ASSERT_TRUE(a->previous && b->previous) << key;
    EXPECT_EQ(a->previous->time_ms, b->previous->time_ms) << key;
  }
  ExpectSameAnswers("after a restart");
}

// Rows compaction made cold leave SQLite a chunk per commit, so a change put
// meanwhile commits between two chunks instead of after the whole deletion,
// and in the end the hot store holds only what cold time does not.
TEST_F(ColdTest, CompactedRowsLeaveSqliteInChunksBesideNewChanges) {
  cold_.reset();
  HotStoreOptions hot;
  hot.delete_chunk_rows = 4;
  cold_ = Open(dir_.path() + "/cold", &clock_, {}, hot);
  ASSERT_NE(cold_, nullptr);
  Generate(5);
  const std::string db_path = dir_.path() + "/cold/komoku.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  auto count = [&](const std::string& where) {
    sqlite3_stmt* stmt = nullptr;
    // A change is in `changes` or, until the next fold, in `recent`.
    std::string sql = "SELECT (SELECT count(*) FROM changes WHERE " + where +
                      ") + (SELECT count(*) FROM recent WHERE " + where + ")";
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
    int64_t n = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    return n;
  };
  const int64_t total = count("1");
  // Counted before compacting: the deletion starts as soon as it commits.
  const std::string cold = "time_ms<" + std::to_string(kNow - 2 * kDay);
  const int64_t cold_rows = count(cold);
  ASSERT_GT(cold_rows, 10000);  // thousands of chunks to go

  Result<CompactionReport> r = cold_->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->cold_to_ms, kNow - 2 * kDay);

  // A change waited for commits while compacted rows are still there.
  PutOptions now;
  now.time_ms = kNow - kMin;
  ASSERT_TRUE(cold_->Put("temp", InputValue(30.5), now).ok());
  EXPECT_GT(count(cold), 0) << "the deletion ran ahead of the put";
  ASSERT_TRUE(ref_->Put("temp", InputValue(30.5), now).ok());
  Result<std::vector<Sample>> a = ref_->History("temp", kNow - 10 * kDay, kNow, 100000);
  Result<std::vector<Sample>> b = cold_->History("temp", kNow - 10 * kDay, kNow, 100000);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), b->size());

  // Then every compacted row goes, and nothing else.
  for (int i = 0; i < 600 && count(cold) > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(count(cold), 0);
  EXPECT_EQ(count("1"), total - cold_rows + 1);
  sqlite3_close(db);
  ExpectSameAnswers("after the deletion");
}

TEST_F(ColdTest, RetentionDropsRawChangesButRollupsStillAnswer) {
  Generate(3);
  ASSERT_TRUE(cold_->Compact().ok());
  cold_.reset();
  ColdOptions keep;
  keep.raw_retention_ms = 30 * kDay;
  keep.rollup_5m_retention_ms = 0;
  cold_ = Open(dir_.path() + "/cold", &clock_, keep);
  ASSERT_NE(cold_, nullptr);
  Result<CompactionReport> r = cold_->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->segments_written, 0);
  // Raw changes older than 30 days are gone ...
  // (whole segments expire: January 2026 is a month segment that ended
  // more than 30 days ago)
  constexpr int64_t kFeb1 = 1'769'904'000'000;
  Result<std::vector<Sample>> old = cold_->History("temp", kNow - kSpan, kFeb1, 10);
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(old->empty());
  Result<std::vector<Sample>> kept = cold_->History("temp", kFeb1, kFeb1 + kDay, 10);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->size(), 10u);
  // ... but every aggregate still equals the reference's, and the state of
  // a key at the start of what is kept is still known.
  ExpectSameAnswers("after retention", /*raw_too=*/false);
  Result<std::optional<Sample>> door = cold_->At("door", kNow - 29 * kDay);
  ASSERT_TRUE(door.ok() && door->has_value());
  // Where raw changes are gone, the value in force at the end of each hour
  // still comes from the rollups; its time is the start of the 5-minute
  // bucket the change came in
  for (const char* key : {"temp", "door", "mode"}) {
    for (int64_t t = kNow - kSpan + kHour - 1; t < kFeb1 - kDay; t += 5 * kHour) {
      Result<std::optional<Sample>> a = ref_->At(key, t);
      Result<std::optional<Sample>> b = cold_->At(key, t);
      ASSERT_TRUE(a.ok() && b.ok()) << key;
      ASSERT_EQ(a->has_value(), b->has_value()) << key << " at " << t;
      if (!*a) continue;
      EXPECT_TRUE((*a)->value == (*b)->value) << key << " at " << t;
      // (or exact, when it is the change carried in from an earlier segment)
      const int64_t exact = (*a)->time_ms, bucket = exact / (5 * kMin) * (5 * kMin);
      EXPECT_TRUE((*b)->time_ms == exact || (*b)->time_ms == bucket)
          << key << " at " << t << ": " << (*b)->time_ms << " for " << exact;
    }
  }
}

// Options that change what rollups hold, changed after the segments were
// written: until the next compaction the raw changes answer (the rollups
// were computed under the old options); that compaction computes the
// rollups again from the raw changes, so that once retention drops those,
// the rollups still answer as the raw changes did under the new options
// (issue 19: the expired time answered as empty).
TEST_F(ColdTest, RollupsOfChangedOptionsAreComputedAgainBeforeRawChangesExpire) {
  Generate(2);
  ASSERT_TRUE(cold_->Compact().ok());
  for (Store* s : {ref_.get(), cold_.get()}) {
    ASSERT_TRUE(s->Define("hum", std::nullopt, Opts({{"stale_after", 3600}})).ok());
    ASSERT_TRUE(s->Define("energy", std::nullopt, Opts({{"reset_tolerance", 0}})).ok());
    ASSERT_TRUE(s->Define("door", std::nullopt, Opts({{"stale_after", 6 * 3600}})).ok());
  }
  ExpectSameAnswers("options changed, not compacted yet");
  Result<CompactionReport> r = cold_->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->segments_written, 0) << "nothing recomputed";
  // Every cold segment now answers from rollups under the new options.
  for (const char* key : {"hum", "energy", "door"}) {
    std::vector<RollupStretch> cover = cold_->RollupCoverage(key);
    ASSERT_EQ(cover.size(), 1u) << key;
    EXPECT_TRUE(cover[0].current_options) << key;
    EXPECT_EQ(cover[0].to_ms, kNow - 2 * kDay) << key;
  }
  ExpectSameAnswers("options changed, rollups computed again", /*raw_too=*/false);
  // Nothing left to recompute.
  r = cold_->Compact();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->segments_written, 0);

  cold_.reset();
  ColdOptions keep;
  keep.raw_retention_ms = 30 * kDay;
  cold_ = Open(dir_.path() + "/cold", &clock_, keep);
  ASSERT_NE(cold_, nullptr);
  ASSERT_TRUE(cold_->Compact().ok());
  ASSERT_TRUE(cold_->RawExpiredBefore("hum").has_value());
  ExpectSameAnswers("after retention", /*raw_too=*/false);
  for (const char* key : {"hum", "energy", "door"}) {
    EXPECT_TRUE(RollupsUnderOldOptionsJson(*cold_, key, 0, kNow).empty()) << key;
  }
}

// Options changed after retention dropped the raw changes: the rollups
// cannot be computed again, so they answer as under the options of their
// time, and RollupsUnderOldOptions says where and which.
TEST_F(ColdTest, OptionsChangedAfterRetentionAnswerUnderTheOptionsOfTheirTime) {
  Generate(3);
  ASSERT_TRUE(cold_->Compact().ok());
  cold_.reset();
  ColdOptions keep;
  keep.raw_retention_ms = 30 * kDay;
  cold_ = Open(dir_.path() + "/cold", &clock_, keep);
  ASSERT_NE(cold_, nullptr);
  ASSERT_TRUE(cold_->Compact().ok());
  constexpr int64_t kFeb1 = 1'769'904'000'000;
  ASSERT_EQ(cold_->RawExpiredBefore("hum"), kFeb1);
  // NOLINTNEXTLINE(bugprone-exception-escape): a test-local aggregate of answers
  struct Asked {
    json hum, hum_stats, energy, door;
  };
  auto ask = [&](Store& s) {
    Result<HistoryQuery> q = PlanBuckets("", kNow - kSpan - kDay, kFeb1, "1d", "", 1000);
    EXPECT_TRUE(q.ok());
    Asked a;
    q->key = "hum";
    a.hum = DownsampleJson(s, *q, *ParseAggs("avg,twavg,min,max,count", KeyType::kNumeric)).value();
    a.hum_stats = StatsJson(s, *q, false, "").value();
    q->key = "energy";
    a.energy = DownsampleJson(s, *q, *ParseAggs("increase,twavg,count", KeyType::kCounter)).value();
    q->key = "door";
    a.door = StatsJson(s, *q, false, "").value();
    return a;
  };
  const Asked before = ask(*cold_);
  ASSERT_GT(before.hum_stats["count"].get<int64_t>(), 1000);
  ASSERT_GT(before.hum_stats["known"].get<double>(), 0);

  ASSERT_TRUE(cold_->Define("hum", std::nullopt, Opts({{"stale_after", 600}})).ok());
  ASSERT_TRUE(cold_->Define("energy", std::nullopt, Opts({{"reset_tolerance", 0}})).ok());
  ASSERT_TRUE(cold_->Define("door", std::nullopt, Opts({{"stale_after", 3600}})).ok());
  ASSERT_TRUE(ref_->Define("hum", std::nullopt, Opts({{"stale_after", 600}})).ok());
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "options changed" : "and compacted");
    const Asked after = ask(*cold_);
    EXPECT_TRUE(SameJson(before.hum, after.hum, "hum"));
    EXPECT_TRUE(SameJson(before.hum_stats, after.hum_stats, "hum stats"));
    EXPECT_TRUE(SameJson(before.energy, after.energy, "energy"));
    EXPECT_TRUE(SameJson(before.door, after.door, "door"));
    const json hum = RollupsUnderOldOptionsJson(*cold_, "hum", kNow - kSpan - kDay, kNow);
    ASSERT_EQ(hum.size(), 1u) << hum.dump();
    EXPECT_EQ(hum[0]["to"].get<double>() * 1000, static_cast<double>(kFeb1));
    EXPECT_EQ(hum[0]["stale_after"].get<double>(), 3 * 3600.0);
    const json energy = RollupsUnderOldOptionsJson(*cold_, "energy", 0, kNow);
    ASSERT_EQ(energy.size(), 1u) << energy.dump();
    EXPECT_EQ(energy[0]["reset_tolerance"].get<double>(), 0.5);
    // Not where the question does not reach, nor for a key whose options
    // stayed.
    EXPECT_TRUE(RollupsUnderOldOptionsJson(*cold_, "hum", kFeb1, kNow).empty());
    EXPECT_TRUE(RollupsUnderOldOptionsJson(*cold_, "temp", 0, kNow).empty());
    // The time with raw changes answers under the new options (as the
    // reference, with the same options, does).
    Result<HistoryQuery> q = PlanBuckets("hum", kFeb1, kNow, "1d", "", 1000);
    EXPECT_TRUE(SameJson(StatsJson(*ref_, *q, false, "").value(),
                         StatsJson(*cold_, *q, false, "").value(),
                         "hum since the raw changes kept"));
    ASSERT_TRUE(cold_->Compact().ok());
  }
}

// Timespans need the times of changes: where retention dropped them, none
// is made up from rollups, and the answer says from when spans are given
// (issue 19: a fully expired month came back as one span, or none, with no
// word of why).
TEST_F(ColdTest, TimespansOverExpiredRawChangesSayWhereTheyBegin) {
  Generate(3);
  ASSERT_TRUE(cold_->Compact().ok());
  cold_.reset();
  ColdOptions keep;
  keep.raw_retention_ms = 30 * kDay;
  cold_ = Open(dir_.path() + "/cold", &clock_, keep);
  ASSERT_NE(cold_, nullptr);
  ASSERT_TRUE(cold_->Compact().ok());
  constexpr int64_t kFeb1 = 1'769'904'000'000;
  ASSERT_EQ(cold_->RawExpiredBefore("door"), kFeb1);
  auto spans = [](Store& s, int64_t from, int64_t to) {
    HistoryQuery q{"door", from, to, {from}, 0};
    Result<json> r = TimespansJson(s, q, InputValue(true));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : json();
  };
  // All of it expired: no span, and where they would begin.
  const int64_t a = kNow - kSpan + kDay, b = kFeb1 - kDay;
  ASSERT_GT(spans(*ref_, a, b)["spans"].size(), 10u);
  const json expired = spans(*cold_, a, b);
  EXPECT_TRUE(expired["spans"].empty()) << expired.dump();
  EXPECT_EQ(expired["open"], false);
  ASSERT_TRUE(expired.contains("raw_expired_before")) << expired.dump();
  EXPECT_EQ(expired["raw_expired_before"].get<double>() * 1000, static_cast<double>(kFeb1));
  // Across the border: exactly the spans from the border on (one in force
  // there starts at it).
  const json across = spans(*cold_, kFeb1 - 10 * kDay, kFeb1 + 10 * kDay);
  const json truth = spans(*ref_, kFeb1, kFeb1 + 10 * kDay);
  ASSERT_FALSE(truth["spans"].empty());
  EXPECT_TRUE(SameJson(truth["spans"], across["spans"], "spans"));
  EXPECT_EQ(truth["open"], across["open"]);
  ASSERT_TRUE(across.contains("raw_expired_before")) << across.dump();
  EXPECT_EQ(across["raw_expired_before"].get<double>() * 1000, static_cast<double>(kFeb1));
  // After the border, nothing is said of retention.
  const json kept = spans(*cold_, kFeb1, kFeb1 + 10 * kDay);
  EXPECT_FALSE(kept.contains("raw_expired_before"));
  EXPECT_TRUE(SameJson(truth, kept, "kept"));
}

// A month whose days hold a key's rollups under different options, some of
// them without raw changes left to compute them again, stays in day
// segments (one segment records one set of options a key): each day
// answers under the options its rollups were computed with.
TEST_F(ColdTest, AMonthOfMixedOptionsWithoutRawChangesStaysInDays) {
  Generate(4);
  ASSERT_TRUE(cold_->Define("hum", std::nullopt, Opts({{"raw_retention", 2 * 86400}})).ok());
  ASSERT_TRUE(cold_->Compact().ok());
  // March 1 to 17 are day segments; hum's raw changes in them are gone.
  constexpr int64_t kMar1 = 1'772'323'200'000;
  constexpr int64_t kApr1 = kMar1 + 31 * kDay;
  ASSERT_EQ(cold_->RawExpiredBefore("hum"), kNow - 2 * kDay);
  // Then hum's stale_after changes, and two more weeks of it come.
  for (Store* s : {ref_.get(), cold_.get()}) {
    ASSERT_TRUE(s->Define("hum", std::nullopt, Opts({{"stale_after", 3600}})).ok());
  }
  clock_.Set(kNow + 14 * kDay);
  for (int64_t t = kNow; t < kNow + 14 * kDay; t += 7 * kMin) {
    if ((t / (5 * kHour)) % 4 != 0) Put("hum", t, static_cast<double>((t / kMin) % 100));
  }
  Flush();
  ASSERT_TRUE(cold_->Compact().ok());
  int march_days = 0;
  for (const SegmentListing& seg : cold_->Segments()) {
    if (seg.from_ms < kMar1 || seg.to_ms > kApr1) continue;
    EXPECT_EQ(seg.to_ms - seg.from_ms, kDay) << "March was merged";
    ++march_days;
  }
  EXPECT_EQ(march_days, 31);
  // Up to March 18, as under stale_after 3 h (the reference before the
  // change); from then on, as under 1 h.
  Result<HistoryQuery> q = PlanBuckets("hum", kMar1, kApr1, "1d", "", 100);
  ASSERT_TRUE(q.ok());
  const json got = StatsJson(*cold_, *q, false, "").value();
  const json now_options = StatsJson(*ref_, *q, false, "").value();
  ASSERT_TRUE(ref_->Define("hum", std::nullopt, Opts({{"stale_after", 3 * 3600}})).ok());
  const json old_options = StatsJson(*ref_, *q, false, "").value();
  ASSERT_EQ(got["buckets"].size(), 31u);
  for (size_t i = 0; i < 31; ++i) {
    const json& want = i < 17 ? old_options["buckets"][i] : now_options["buckets"][i];
    EXPECT_TRUE(SameJson(want, got["buckets"][i], "March " + std::to_string(i + 1)));
  }
  const json old = RollupsUnderOldOptionsJson(*cold_, "hum", kMar1, kApr1);
  ASSERT_EQ(old.size(), 1u) << old.dump();
  EXPECT_EQ(old[0]["to"].get<double>() * 1000, static_cast<double>(kNow - 2 * kDay));
  EXPECT_EQ(old[0]["stale_after"].get<double>(), 3 * 3600.0);
}

// A key's raw_retention shorter than a month: when the month turns cold,
// its first days have lost the key's raw changes and its last days have
// not. The month is merged once they have all gone, and no compaction fails
// meanwhile (it failed every time: "raw_dropped with raw changes").
TEST_F(ColdTest, ShortRawRetentionDoesNotStopMonthMerges) {
  Generate(5);
  ASSERT_TRUE(cold_->Define("door", std::nullopt, Opts({{"raw_retention", 2 * 86400}})).ok());
  constexpr int64_t kMar1 = 1'772'323'200'000;
  constexpr int64_t kApr1 = kMar1 + 31 * kDay;
  // A compaction a day, from March 20 to April 5.
  for (int d = 0; d <= 16; ++d) {
    clock_.Set(kNow + d * kDay);
    if (d > 0) {
      Put("temp", kNow + d * kDay - kHour, 20.0 + d);
      Put("door", kNow + d * kDay - kHour, d % 2 == 0);
      Flush();
    }
    Result<CompactionReport> r = cold_->Compact();
    ASSERT_TRUE(r.ok()) << "day " << d << ": " << r.status().ToString();
  }
  bool march = false;
  for (const SegmentListing& seg : cold_->Segments()) {
    march = march || (seg.from_ms == kMar1 && seg.to_ms == kApr1);
  }
  EXPECT_TRUE(march) << "March was not merged";
  Result<std::vector<Sample>> temp = cold_->History("temp", kMar1, kApr1, 1'000'000);
  Result<std::vector<Sample>> want = ref_->History("temp", kMar1, kApr1, 1'000'000);
  ASSERT_TRUE(temp.ok() && want.ok());
  EXPECT_EQ(temp->size(), want->size());
  ExpectSameAnswers("after a month of daily compactions", /*raw_too=*/false);
}

TEST_F(ColdTest, RawRetentionPerKey) {
  Generate(7);
  // The store keeps raw changes forever by default here; "door" only 30 days.
  cold_.reset();
  ColdOptions keep;
  keep.raw_retention_ms = 0;
  cold_ = Open(dir_.path() + "/cold", &clock_, keep);
  ASSERT_NE(cold_, nullptr);
  ASSERT_TRUE(cold_->Define("door", std::nullopt, Opts({{"raw_retention", 30 * 86400}})).ok());
  ASSERT_TRUE(cold_->Compact().ok());
  constexpr int64_t kFeb1 = 1'769'904'000'000;
  Result<std::vector<Sample>> door = cold_->History("door", 0, kFeb1, 10);
  Result<std::vector<Sample>> temp = cold_->History("temp", 0, kFeb1, 10);
  ASSERT_TRUE(door.ok() && temp.ok());
  EXPECT_TRUE(door->empty());
  EXPECT_EQ(temp->size(), 10u);
}

TEST_F(ColdTest, DeletedKeyLeavesNothingBehindInSegments) {
  Generate(4);
  ASSERT_TRUE(cold_->Compact().ok());
  ASSERT_TRUE(cold_->Delete("temp").ok());
  EXPECT_FALSE(cold_->Get("temp").ok());
  PutOptions o;
  o.time_ms = kNow - kHour;
  ASSERT_TRUE(cold_->Put("temp", InputValue(5.0), o).ok());
  Result<std::vector<Sample>> h = cold_->History("temp", 0, kNow + 1, 100);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 1u);
  Result<std::optional<Sample>> at = cold_->At("temp", kNow - 10 * kDay);
  ASSERT_TRUE(at.ok());
  EXPECT_FALSE(at->has_value());
  for (const SegmentListing& s : cold_->Segments()) {
    for (const SegmentKeyInfo& k : s.keys) EXPECT_NE(k.key, "temp") << s.name;
  }
  // Still so after a restart and a compaction.
  cold_.reset();
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  ASSERT_TRUE(cold_->Compact().ok());
  h = cold_->History("temp", 0, kNow + 1, 100);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->size(), 1u);
}

TEST_F(ColdTest, DamagedHeaderQuarantinesTheSegmentAndTheRestIsServed) {
  Generate(5);
  ASSERT_TRUE(cold_->Compact().ok());
  std::vector<SegmentListing> segs = cold_->Segments();
  ASSERT_GE(segs.size(), 3u);
  cold_.reset();
  // The header names the range of every block: damage there cannot be
  // pinned on one block.
  const std::string victim = dir_.path() + "/cold/segments/" + segs.back().name + ".kkd";
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekp(40);
    f.put('\x5a');
  }
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  EXPECT_EQ(cold_->VerifySegments(), 0);  // quarantined at open already
  ASSERT_EQ(cold_->ColdWarnings().size(), 1u);
  EXPECT_NE(cold_->ColdWarnings()[0].find(segs.back().name), std::string::npos);
  EXPECT_EQ(cold_->Segments().size(), segs.size() - 1);
  EXPECT_TRUE(
      std::filesystem::exists(dir_.path() + "/cold/quarantine/" + segs.back().name + ".kkd"));
  Result<std::vector<Sample>> first = cold_->History("temp", segs[0].from_ms, segs[0].to_ms, 10);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->size(), 10u);
}

// The offset and first time of `key`'s raw blocks in a segment, from its
// index (docs/segment-format.md).
std::vector<std::pair<uint64_t, int64_t>> RawBlocks(const std::string& base, const std::string& key,
                                                    char record = '\x01') {
  std::vector<std::pair<uint64_t, int64_t>> out;
  Result<keyka::Reader> index = keyka::Reader::Open(base + ".kki");
  EXPECT_TRUE(index.ok()) << index.status().ToString();
  if (!index.ok()) return out;
  std::string prefix = key;
  prefix.push_back('\0');
  prefix.push_back(record);
  for (keyka::Iterator it = index->Prefix(prefix); it.Valid(); it.Next()) {
    uint64_t t = 0;
    for (size_t i = prefix.size(); i < it.key().size(); ++i) {
      t = (t << 8) | static_cast<unsigned char>(it.key()[i]);
    }
    out.emplace_back(it.value() & ((uint64_t{1} << 40) - 1),
                     static_cast<int64_t>(t ^ (uint64_t{1} << 63)));
  }
  return out;
}

// One byte flipped in one block of a month segment: that block's key and
// range are named and missing; every other key, and the rest of that key,
// answer exactly as before; a salvage rewrites the segment without the block
// and everything stays so.
TEST_F(ColdTest, OneFlippedByteInAMonthLosesOnlyItsBlock) {
  Generate(8);
  ASSERT_TRUE(cold_->Compact().ok());
  std::vector<SegmentListing> segs = cold_->Segments();
  auto month = std::find_if(segs.begin(), segs.end(), [](const SegmentListing& s) {
    return s.to_ms - s.from_ms > 27 * kDay;
  });
  ASSERT_NE(month, segs.end());
  const std::string name = month->name;
  const std::string base = dir_.path() + "/cold/segments/" + name;
  std::vector<std::pair<uint64_t, int64_t>> blocks = RawBlocks(base, "temp");
  ASSERT_GE(blocks.size(), 3u);
  const int64_t lost_from = blocks[1].second, lost_to = blocks[2].second;
  cold_.reset();
  {
    std::fstream f(base + ".kkd", std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekg(static_cast<std::streamoff>(blocks[1].first + 40));
    const char c = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(blocks[1].first + 40));
    f.put(static_cast<char>(c ^ 0x01));
  }
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  EXPECT_EQ(cold_->VerifySegments(), 1);
  EXPECT_EQ(cold_->Segments().size(), segs.size());  // nothing quarantined
  auto expect_named = [&](bool salvaged) {
    std::vector<ColdDamage> damage = cold_->DamagedHistory();
    ASSERT_EQ(damage.size(), 1u);
    EXPECT_EQ(damage[0].block.key, "temp");
    EXPECT_EQ(damage[0].block.part, BlockDamage::Part::kRaw);
    EXPECT_EQ(damage[0].block.from_ms, lost_from);
    EXPECT_EQ(damage[0].block.to_ms, lost_to);
    EXPECT_EQ(damage[0].segment, name);
    EXPECT_EQ(damage[0].salvaged, salvaged);
    std::vector<std::string> warnings = cold_->ColdWarnings();
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("'temp'"), std::string::npos) << warnings[0];
  };
  expect_named(false);
  // The raw history of temp: all of it but the lost block's.
  auto expect_temp = [&] {
    Result<std::vector<Sample>> all = ref_->History("temp", 0, kNow, 1'000'000);
    Result<std::vector<Sample>> got = cold_->History("temp", 0, kNow, 1'000'000);
    ASSERT_TRUE(all.ok() && got.ok());
    std::vector<Sample> expected;
    for (const Sample& s : *all) {
      if (s.time_ms < lost_from || s.time_ms >= lost_to) expected.push_back(s);
    }
    ASSERT_EQ(got->size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_EQ((*got)[i].time_ms, expected[i].time_ms) << i;
      ASSERT_TRUE((*got)[i].value == expected[i].value) << i;
    }
    EXPECT_GT(all->size(), expected.size());
    // Inside the lost range the value is not known; outside it is.
    Result<std::optional<Sample>> inside = cold_->At("temp", lost_from + 1);
    ASSERT_TRUE(inside.ok()) << inside.status().ToString();
    EXPECT_FALSE(inside->has_value());
    Result<std::optional<Sample>> a = ref_->At("temp", lost_to + kMin);
    Result<std::optional<Sample>> b = cold_->At("temp", lost_to + kMin);
    ASSERT_TRUE(a.ok() && b.ok() && a->has_value() && b->has_value());
    EXPECT_EQ((*a)->time_ms, (*b)->time_ms);
  };
  expect_temp();
  ExpectSameAnswers("other keys, with a damaged block of temp", true,
                    {"energy", "door", "mode", "hum"});

  // Compaction leaves the damaged month alone: new days go on being
  // compacted, and a late change into the month waits in the hot store.
  clock_.Set(kNow + 2 * kDay);
  Put("door", kNow + kDay, true);
  Flush();
  Result<CompactionReport> r = cold_->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  expect_named(false);
  Put("door", lost_from + 1234, false);
  Flush();
  r = cold_->Compact();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().reason(), "damaged_segment") << r.status().ToString();
  ExpectSameAnswers("a late change waits in the hot store", true, {"door"});

  // Salvage, with the store closed (as `komoku segments --salvage` does).
  cold_.reset();
  {
    ColdStoreOptions o;
    o.dir = dir_.path() + "/cold/segments";
    o.quarantine_dir = dir_.path() + "/cold/quarantine";
    o.sync = false;
    Result<std::unique_ptr<ColdStore>> store = ColdStore::Open(o, nullptr, nullptr);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Result<ColdStore::SalvageReport> salvage = (*store)->Salvage(name, ComputeRollups);
    ASSERT_TRUE(salvage.ok()) << salvage.status().ToString();
    ASSERT_EQ(salvage->lost.size(), 1u);
    EXPECT_EQ(salvage->lost[0].key, "temp");
    EXPECT_EQ(salvage->keys, 5u);
    EXPECT_TRUE(std::filesystem::exists(salvage->kept_aside + ".kkd"));
    EXPECT_TRUE(std::filesystem::exists(salvage->kept_aside + ".kki"));
    EXPECT_FALSE(std::filesystem::exists(base + ".kkd"));
    EXPECT_TRUE(
        (*store)->Salvage(salvage->replacement, ComputeRollups).status().IsInvalidArgument());
  }
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  EXPECT_EQ(cold_->VerifySegments(), 0);
  expect_named(true);  // the history stays lost, and says so
  expect_temp();
  // Compaction works again: the late change goes into the month.
  r = cold_->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  expect_named(true);
  ExpectSameAnswers("after salvage and compaction", true, {"energy", "door"});
}

// A damaged rollup block: its rollups stop answering (the raw changes answer
// instead, exactly), and a salvage computes them again from the raw changes.
TEST_F(ColdTest, ADamagedRollupBlockIsRecomputedBySalvage) {
  Generate(9);
  ASSERT_TRUE(cold_->Compact().ok());
  std::vector<SegmentListing> segs = cold_->Segments();
  auto month = std::find_if(segs.begin(), segs.end(), [](const SegmentListing& s) {
    return s.to_ms - s.from_ms > 27 * kDay;
  });
  ASSERT_NE(month, segs.end());
  const std::string base = dir_.path() + "/cold/segments/" + month->name;
  std::vector<std::pair<uint64_t, int64_t>> blocks = RawBlocks(base, "energy", '\x10');  // 5 min
  ASSERT_GE(blocks.size(), 2u);
  cold_.reset();
  {
    std::fstream f(base + ".kkd", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(blocks[0].first + 30));
    f.put('\x77');
  }
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  EXPECT_EQ(cold_->VerifySegments(), 1);
  std::vector<ColdDamage> damage = cold_->DamagedHistory();
  ASSERT_EQ(damage.size(), 1u);
  EXPECT_EQ(damage[0].block.key, "energy");
  EXPECT_EQ(damage[0].block.part, BlockDamage::Part::kRollups);
  EXPECT_EQ(damage[0].block.resolution_ms, 5 * kMin);
  EXPECT_EQ(damage[0].block.from_ms, blocks[0].second);
  EXPECT_EQ(damage[0].block.to_ms, blocks[1].second);
  ExpectSameAnswers("rollups with a hole do not answer", true, {"energy"});
  cold_.reset();
  {
    ColdStoreOptions o;
    o.dir = dir_.path() + "/cold/segments";
    o.quarantine_dir = dir_.path() + "/cold/quarantine";
    o.sync = false;
    Result<std::unique_ptr<ColdStore>> store = ColdStore::Open(o, nullptr, nullptr);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Result<ColdStore::SalvageReport> salvage = (*store)->Salvage(month->name, ComputeRollups);
    ASSERT_TRUE(salvage.ok()) << salvage.status().ToString();
    EXPECT_TRUE(salvage->lost.empty());
    ASSERT_EQ(salvage->recovered.size(), 1u);
  }
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  EXPECT_EQ(cold_->VerifySegments(), 0);
  EXPECT_TRUE(cold_->DamagedHistory().empty());
  EXPECT_FALSE(cold_->RollupCoverage("energy").empty());
  ExpectSameAnswers("after salvage");
}

TEST_F(ColdTest, LeftoversOfAnUnfinishedCompactionAreRemovedAtOpen) {
  Generate(6);
  ASSERT_TRUE(cold_->Compact().ok());
  cold_.reset();
  const std::string dir = dir_.path() + "/cold/segments/";
  for (const char* name : {"20990101T000000Z-20990102T000000Z-g999.kkd",
                           "20990101T000000Z-20990102T000000Z-g999.kki", "MANIFEST.tmp"}) {
    std::ofstream(dir + name) << "half-written";
  }
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  EXPECT_FALSE(std::filesystem::exists(dir + "20990101T000000Z-20990102T000000Z-g999.kkd"));
  EXPECT_FALSE(std::filesystem::exists(dir + "MANIFEST.tmp"));
  ExpectSameAnswers("after removing leftovers");
}

// The segment files in a store's segment directory.
int SegmentFiles(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string ext = e.path().extension().string();
    n += ext == ".kkd" || ext == ".kki";
  }
  return n;
}

// A stop does not wait for the background compaction: the compaction stops
// at its next step, deletes the segments it wrote and commits nothing, and
// the hot store still holds every change; the next start compacts it all.
TEST_F(ColdTest, AStopCutsTheBackgroundCompactionShortAndLeavesNothingWritten) {
  Generate(8);
  cold_.reset();
  std::atomic<int> steps{0};
  std::promise<void> under_way;
  std::atomic<Store*> store{nullptr};
  StoreOptions o;
  o.data_dir = dir_.path() + "/cold";
  o.clock = &clock_;
  o.start_timers = false;
  o.cold.compact_interval = std::chrono::milliseconds(1);
  o.cold.sync = false;
  o.cold.merge_months = false;
  // 5 keys are looked at twice before the first day; then 5 a day. Step 100
  // falls in the third week of the two and a half months to compact, with
  // segments written and none committed. There the compactor waits until
  // the stop has begun.
  o.cold.before_step = [&] {
    if (++steps != 100) return;
    under_way.set_value();
    for (int i = 0; i < 60000; ++i) {
      Store* s = store.load();
      if (s && s->stopping()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  {
    Result<std::unique_ptr<Store>> s = Store::Open(o, nullptr);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store = s->get();
    ASSERT_EQ(under_way.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
    EXPECT_GT(SegmentFiles(o.data_dir + "/segments"), 0);  // written, not committed
    (*s)->Close();  // returns without the rest of the compaction
    EXPECT_EQ(steps, 100) << "the compaction went on after the stop";
    EXPECT_TRUE((*s)->Segments().empty());
  }
  EXPECT_EQ(SegmentFiles(o.data_dir + "/segments"), 0);
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  ExpectSameAnswers("after a stopped compaction");
  Result<CompactionReport> r = cold_->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cold_to_ms, kNow - 2 * kDay);
  ExpectSameAnswers("compacted after the restart");
}

// A stop also cuts short the check of every segment that follows a start.
TEST_F(ColdTest, AStopCutsTheSegmentCheckShort) {
  Generate(9);
  ASSERT_TRUE(cold_->Compact().ok());
  const size_t segments = cold_->Segments().size();
  ASSERT_GE(segments, 3u);
  cold_.reset();
  int steps = 0;
  Store* store = nullptr;
  ColdOptions cold;
  cold.before_step = [&] {
    if (++steps == 2) store->RequestStop();
  };
  cold_ = Open(dir_.path() + "/cold", &clock_, cold);
  ASSERT_NE(cold_, nullptr);
  store = cold_.get();
  EXPECT_EQ(cold_->VerifySegments(), 0);
  EXPECT_EQ(steps, 2);  // one segment checked, then the stop was seen
  // A stopped store refuses to compact, and says why.
  Result<CompactionReport> r = cold_->Compact();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsBusy()) << r.status().ToString();
  EXPECT_EQ(cold_->Segments().size(), segments);
}

// A segment written in format 1, before rollups kept the time of their first
// change (tests/data/segment/example.*, the golden file an older Komoku
// wrote): the first compaction computes its rollups again from the raw
// changes, in the current format, so that PromQL can answer from them
// (docs/prometheus.md, "Answers from rollups"); the raw changes stay as
// they were, and a second compaction has nothing left to do.
TEST(ColdUpgrade, RollupsOfFormat1AreComputedAgain) {
  TempDir dir;
  // The golden segment's day, 2023-11-14 (UTC), and its hall/temp rollup.
  constexpr int64_t kDayStart = 1'699'920'000'000;
  constexpr int64_t kBucket = 1'700'000'100'000;
  // Inside the segment's month: the golden file's carry (the door's value
  // from the day before, a day no segment holds) could not start a month.
  FakeClock clock{kDayStart + 4 * kDay};
  const std::string data = dir.path() + "/data";
  {
    std::unique_ptr<Store> store = Open(data, &clock);
    ASSERT_NE(store, nullptr);
    // The options the segment's keys were written with: only the format
    // differs.
    ASSERT_TRUE(store->Define("door", KeyType::kBoolean, Opts({{"stale_after", 0}})).ok());
    ASSERT_TRUE(store->Define("hall/temp", KeyType::kNumeric, Opts({{"stale_after", 0}})).ok());
  }
  const std::string name = "20231114T000000Z-20231115T000000Z-g1";
  for (const char* ext : {".kkd", ".kki"}) {
    std::filesystem::copy_file(std::string(KOMOKU_SEGMENT_TEST_DATA) + "/example" + ext,
                               data + "/segments/" + name + ext);
  }
  {
    std::ofstream manifest(data + "/segments/MANIFEST");
    manifest << json{{"version", 1},  {"cold_to", kDayStart + kDay}, {"cold_seq", 7},
                     {"next_gen", 2}, {"tombstones", json::array()}, {"segments", {name}}}
                    .dump();
  }
  std::unique_ptr<Store> store = Open(data, &clock);
  ASSERT_NE(store, nullptr);
  auto rollups = [&] {
    std::vector<Rollup> out;
    EXPECT_TRUE(store
                    ->ScanRollups("hall/temp", 5 * kMin, kDayStart, kDayStart + kDay,
                                  [&](const Rollup& r) {
                                    out.push_back(r);
                                    return true;
                                  })
                    .ok());
    return out;
  };
  std::vector<Rollup> before = rollups();
  ASSERT_EQ(before.size(), 1u);
  EXPECT_FALSE(before[0].first_ms.has_value());
  Result<std::vector<Sample>> raw_before =
      store->History("hall/temp", kDayStart, kDayStart + kDay, 100);
  ASSERT_TRUE(raw_before.ok());
  ASSERT_EQ(raw_before->size(), 3u);

  Result<CompactionReport> r = store->Compact();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(r->segments_written, 1);  // and the days up to the hot window's cut
  std::vector<Rollup> after = rollups();
  ASSERT_EQ(after.size(), 1u);
  ASSERT_TRUE(after[0].first_ms.has_value());
  EXPECT_EQ(*after[0].first_ms, kBucket + 2'000);
  EXPECT_FALSE(after[0].shared_times);
  // The rest as the golden file has it, but for `changes`: written by hand
  // as 3 there, while the history mathematics does not count a key's very
  // first change as one (nothing differs before it).
  EXPECT_EQ(after[0].count, before[0].count);
  EXPECT_EQ(after[0].changes, 2);
  EXPECT_EQ(after[0].sum, before[0].sum);
  EXPECT_EQ(after[0].min, before[0].min);
  EXPECT_EQ(after[0].max, before[0].max);
  EXPECT_EQ(after[0].integral, before[0].integral);
  EXPECT_EQ(after[0].known_ms, before[0].known_ms);
  EXPECT_EQ(after[0].unknown_ms, before[0].unknown_ms);
  EXPECT_TRUE(after[0].first == before[0].first && after[0].last == before[0].last);
  Result<std::vector<Sample>> raw_after =
      store->History("hall/temp", kDayStart, kDayStart + kDay, 100);
  ASSERT_TRUE(raw_after.ok());
  ASSERT_EQ(raw_after->size(), raw_before->size());
  for (size_t i = 0; i < raw_after->size(); ++i) {
    EXPECT_EQ((*raw_after)[i].time_ms, (*raw_before)[i].time_ms);
    EXPECT_TRUE((*raw_after)[i].value == (*raw_before)[i].value);
  }
  Result<std::vector<Sample>> door = store->History("door", kDayStart, kDayStart + kDay, 100);
  ASSERT_TRUE(door.ok());
  EXPECT_EQ(door->size(), 3u);

  r = store->Compact();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->segments_written, 0) << "rewritten again";
  // And after a restart, the rewritten segment is read as it was left.
  store.reset();
  store = Open(data, &clock);
  ASSERT_NE(store, nullptr);
  after = rollups();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].first_ms, std::optional<int64_t>(kBucket + 2'000));
}

TEST_F(ColdTest, SecondStoreOnTheSameDataIsRefused) {
  Result<std::unique_ptr<Store>> again = Store::Open(
      [&] {
        StoreOptions o;
        o.data_dir = dir_.path() + "/cold";
        return o;
      }(),
      nullptr);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().reason(), "locked");
}

// Bulk import of old history (Store::ImportCold). The reference store takes
// every row as `komoku import` did before (a put each, a late row looked up
// in history first) and is compacted; the other takes the rows older than
// the hot window straight into segments and the rest as puts. Both must
// answer every question alike, after a second import of the same rows
// (nothing added) and after rows that overlap them.
class ColdImportTest : public ColdTest {
 protected:
  // One row of a file.
  void Row(std::vector<ColdImportRow>& file, const std::string& key, int64_t t,
           const InputValue& v) {
    file.push_back({key, t, v, std::nullopt});
  }

  // The rows of a file: every key of the fixture and "rep" (the default
  // same_value_resolution of 60 s, values repeating within it), in time
  // order, from `from` to `to`.
  std::vector<ColdImportRow> File(unsigned seed, int64_t from, int64_t to, double bias) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> jitter(-30'000, 30'000);
    std::uniform_real_distribution<double> unit(0, 1);
    std::vector<ColdImportRow> file;
    double temp = 20 + bias, energy = 1000 + bias;
    for (int64_t t = from; t < to; t += 20 * kMin + jitter(rng)) {
      temp += (unit(rng) - 0.5) * 0.4;
      Row(file, "temp", t, std::round(temp * 100) / 100);
      energy += unit(rng) * 0.3;
      if (unit(rng) < 0.001) energy = 0;
      Row(file, "energy", t + 1000, std::round(energy * 1000) / 1000);
      if (unit(rng) < 0.05) Row(file, "door", t + 2000, unit(rng) < 0.5);
      if (unit(rng) < 0.02) {
        const char* modes[] = {"heating", "idle", "eco"};
        Row(file, "mode", t + 3000, std::string(modes[rng() % 3]));
      }
      if ((t / (9 * kHour)) % 3 != 0) Row(file, "hum", t + 4000, std::round(unit(rng) * 1000) / 10);
      // Repeats 20 s apart: the second is within same_value_resolution.
      const double r = std::floor(unit(rng) * 2);
      Row(file, "rep", t + 5000, r);
      Row(file, "rep", t + 25000, unit(rng) < 0.7 ? r : r + 1);
    }
    return file;
  }

  // `komoku import` before this change: each row a put, a row older than
  // the key's newest looked up first (skipped when history holds it, or a
  // repeat of the value then in force within same_value_resolution).
  void ImportByPuts(Store& s, const std::vector<ColdImportRow>& file) {
    bool unwaited = false;
    for (const ColdImportRow& r : file) {
      Result<KeyInfo> k = s.Get(r.key);
      ASSERT_TRUE(k.ok());
      if (k->last && r.time_ms < k->last->time_ms) {
        if (unwaited) {
          ASSERT_TRUE(s.WaitCommitted(s.LastChangeSeq()).ok());
        }
        unwaited = false;
        Result<Value> v = CoerceValue(k->type, r.value, s.boolean_words());
        ASSERT_TRUE(v.ok());
        Result<std::optional<Sample>> at = s.At(r.key, r.time_ms);
        ASSERT_TRUE(at.ok());
        if (*at && (*at)->value == *v &&
            ((*at)->time_ms == r.time_ms ||
             r.time_ms - (*at)->time_ms < k->options.same_value_resolution_ms)) {
          continue;
        }
      }
      PutOptions o;
      o.time_ms = r.time_ms;
      o.wait_committed = false;
      ASSERT_TRUE(s.Put(r.key, r.value, o).ok());
      unwaited = true;
    }
    ASSERT_TRUE(s.WaitCommitted(s.LastChangeSeq()).ok());
  }

  // The new way: rows older than the hot window into segments, the rest
  // as puts; then a compaction (month merging, retention), as the import
  // command does.
  ColdImportReport ImportCold(Store& s, const std::vector<ColdImportRow>& file) {
    const int64_t before = s.ColdImportBefore();
    std::vector<ColdImportRow> old, recent;
    int64_t oldest = INT64_MAX;
    for (const ColdImportRow& r : file) {
      (r.time_ms < before ? old : recent).push_back(r);
      oldest = std::min(oldest, r.time_ms);
    }
    ColdImportOptions o;
    o.fill_from_ms = oldest;
    Result<ColdImportReport> rep = s.ImportCold(old, o);
    EXPECT_TRUE(rep.ok()) << rep.status().ToString();
    if (!rep.ok()) return {};
    EXPECT_TRUE(rep->refused.empty());
    ImportByPuts(s, recent);
    EXPECT_TRUE(s.Compact().ok());
    return *rep;
  }

  void Import(const std::vector<ColdImportRow>& file, ColdImportReport* report = nullptr) {
    ImportByPuts(*ref_, file);
    ASSERT_TRUE(ref_->Compact().ok());
    ColdImportReport r = ImportCold(*cold_, file);
    if (report) *report = r;
  }

  void ExpectSameKeys() {
    for (const char* key : {"temp", "energy", "door", "mode", "hum", "rep"}) {
      Result<KeyInfo> a = ref_->Get(key);
      Result<KeyInfo> b = cold_->Get(key);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->last.has_value(), b->last.has_value()) << key;
      if (a->last) {
        EXPECT_EQ(a->last->time_ms, b->last->time_ms) << key;
        EXPECT_TRUE(a->last->value == b->last->value) << key;
      }
      ASSERT_EQ(a->previous.has_value(), b->previous.has_value()) << key;
      if (a->previous) {
        EXPECT_EQ(a->previous->time_ms, b->previous->time_ms) << key;
      }
    }
  }

  const std::vector<std::string> keys_{"temp", "energy", "door", "mode", "hum", "rep"};
  void DefineRep() {
    for (Store* s : {ref_.get(), cold_.get()}) {
      ASSERT_TRUE(s->Define("rep", KeyType::kNumeric).ok());
    }
  }
};

TEST_F(ColdImportTest, OldRowsGoStraightToSegmentsAndAnswerAsPutsDo) {
  DefineRep();
  // 50 days back up to an hour ago: most of it older than the hot window.
  const std::vector<ColdImportRow> file = File(11, kNow - 50 * kDay, kNow - kHour, 0);
  ColdImportReport first;
  Import(file, &first);
  EXPECT_GT(first.stored, 10000u);
  EXPECT_GT(first.already, 100u);         // "rep" repeats within 60 s
  EXPECT_GT(first.segments_written, 15);  // days, and February as one month
  // Nothing of it went through SQLite: the hot store holds only the rows
  // of the hot window.
  uint64_t hot_rows = 0;
  Result<std::vector<Store::SeqChange>> hot = cold_->ChangesAfter(0, 1'000'000);
  ASSERT_TRUE(hot.ok());
  for (const Store::SeqChange& c : *hot) {
    EXPECT_GE(c.sample.time_ms, kNow - 2 * kDay) << c.key;
    ++hot_rows;
  }
  EXPECT_LT(hot_rows, file.size() / 20);
  ExpectSameAnswers("first import", true, keys_);
  ExpectSameKeys();

  // The same file again: nothing added, nothing rewritten.
  ColdImportReport again;
  Import(file, &again);
  EXPECT_EQ(again.stored, 0u);
  EXPECT_EQ(again.segments_written, 0);
  ExpectSameAnswers("the same file again", true, keys_);

  // A file that overlaps: older rows, rows among the held ones (another
  // value at a time held included), and a stretch in the hot window.
  std::vector<ColdImportRow> overlap = File(12, kNow - 60 * kDay, kNow - 35 * kDay, 3);
  overlap.push_back({"temp", file[500].time_ms, InputValue(-5.0), std::nullopt});
  overlap.push_back({"temp", file[10].time_ms, file[10].value, std::nullopt});  // held
  std::vector<ColdImportRow> recent = File(13, kNow - 3 * kDay, kNow - kHour, 1);
  overlap.insert(overlap.end(), recent.begin(), recent.end());
  ColdImportReport third;
  Import(overlap, &third);
  EXPECT_GT(third.stored, 5000u);
  ExpectSameAnswers("an overlapping file", true, keys_);
  ExpectSameKeys();

  // After a restart, the same.
  cold_.reset();
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  ExpectSameAnswers("after a restart", true, keys_);
  ExpectSameKeys();
}

// A key deleted and made again by an import: its old segments stay hidden,
// the imported rows show.
TEST_F(ColdImportTest, AKeyDeletedAndImportedAgainShowsOnlyTheImport) {
  Generate(3);
  ASSERT_TRUE(cold_->Compact().ok());
  ASSERT_TRUE(cold_->Delete("temp").ok());
  std::vector<ColdImportRow> rows;
  rows.push_back({"temp", kNow - 30 * kDay, InputValue(1.5), std::nullopt});
  rows.push_back({"temp", kNow - 29 * kDay, InputValue(2.5), std::nullopt});
  Result<ColdImportReport> r = cold_->ImportCold(rows);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int pass = 0; pass < 2; ++pass) {
    Result<std::vector<Sample>> h = cold_->History("temp", 0, kNow + kDay, 100);
    ASSERT_TRUE(h.ok());
    ASSERT_EQ(h->size(), 2u) << "pass " << pass;
    EXPECT_EQ((*h)[1].time_ms, kNow - 29 * kDay);
    // A restart keeps it so: sequence numbers do not go back below the
    // import's, which would let a later delete's tombstone miss it.
    cold_.reset();
    cold_ = Open(dir_.path() + "/cold", &clock_);
    ASSERT_NE(cold_, nullptr);
  }
  ASSERT_TRUE(cold_->Delete("temp").ok());
  cold_.reset();
  cold_ = Open(dir_.path() + "/cold", &clock_);
  ASSERT_NE(cold_, nullptr);
  EXPECT_FALSE(cold_->Get("temp").ok());
  ASSERT_TRUE(cold_->Define("temp", KeyType::kNumeric).ok());
  Result<std::vector<Sample>> h = cold_->History("temp", 0, kNow + kDay, 100);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->empty());
}

// Bad rows are refused one by one, named by index; the rest go in.
TEST_F(ColdImportTest, BadRowsAreRefusedAlone) {
  ASSERT_TRUE(
      cold_->Define("state", KeyType::kString, Opts({{"values", json::array({"on", "off"})}}))
          .ok());
  std::vector<ColdImportRow> rows;
  rows.push_back({"state", kNow - 10 * kDay, InputValue(std::string("on")), std::nullopt});
  rows.push_back({"state", kNow - 9 * kDay, InputValue(std::string("maybe")), std::nullopt});
  rows.push_back({"temp", kNow - 9 * kDay, InputValue(std::string("warm")), std::nullopt});
  rows.push_back({"bad+key", kNow - 9 * kDay, InputValue(1.0), std::nullopt});
  rows.push_back({"temp", kNow - kHour, InputValue(1.0), std::nullopt});  // not old
  rows.push_back({"temp", kNow - 8 * kDay, InputValue(3.0), std::nullopt});
  Result<ColdImportReport> r = cold_->ImportCold(rows);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->refused.size(), 4u);
  EXPECT_EQ(r->refused[0].first, 1u);
  EXPECT_NE(r->refused[0].second.message().find("not allowed"), std::string::npos);
  EXPECT_EQ(r->refused[1].first, 2u);
  EXPECT_EQ(r->refused[2].first, 3u);
  EXPECT_EQ(r->refused[3].first, 4u);
  EXPECT_EQ(r->refused[3].second.reason(), "not_cold");
  EXPECT_EQ(r->stored, 2u);
  EXPECT_EQ(cold_->History("temp", 0, kNow, 10)->size(), 1u);
  EXPECT_EQ(cold_->Get("state")->last->time_ms, kNow - 10 * kDay);
}

}  // namespace
}  // namespace komoku::store

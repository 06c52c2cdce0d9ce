// 23: merging and retention against the real binary. Two months of hourly
// readings and a door that last moved fourteen months ago are put over HTTP,
// then `POST /api/v1/compact` compacts them into day segments, merges the
// whole month, and drops the raw changes past store.raw_retention_days.
// Afterwards, and again after a restart: every hourly and daily aggregate
// and the door's statistics equal the answers given before compaction; raw
// history of that time is empty and says where the raw changes kept begin
// (raw_expired_before); the door is still known to be in its last state.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

constexpr int64_t kHour = 3600'000;
constexpr int64_t kDay = 24 * kHour;

// The first UTC midnight of the month holding `t`.
int64_t MonthStart(int64_t t) {
  std::time_t secs = static_cast<std::time_t>(t / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

// Rows equal, numbers within 1e-9 relative (rollups add in another order).
void ExpectSameRows(const json& want, const json& got, const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(want[i].size(), got[i].size()) << what << " row " << i;
    for (size_t j = 0; j < want[i].size(); ++j) {
      const json& a = want[i][j];
      const json& b = got[i][j];
      if (a.is_number() && b.is_number()) {
        const double x = a.get<double>(), y = b.get<double>();
        EXPECT_LE(std::fabs(x - y), 1e-9 * std::max(1.0, std::fabs(x)))
            << what << " row " << i << " column " << j << ": " << a << " vs " << b;
      } else {
        EXPECT_EQ(a, b) << what << " row " << i << " column " << j;
      }
    }
  }
}

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "",
                                       "  compact_interval: 0\n"
                                       "  raw_retention_days: 365\n"
                                       "  rollup_5m_retention_days: 380\n");
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    ASSERT_EQ(komoku_
                  ->Post("/api/v1/define",
                         R"({"old/temp": {"type": "numeric"}, "old/door": {"type": "boolean"}})")
                  .status,
              200);
  }
  void TearDown() override { DumpOnFailure(*broker_, *komoku_); }

  void Put(const std::string& key, const std::string& value, int64_t t) {
    auto r = komoku_->Put("/api/v1/value?key=" + key + "&time=" + Seconds(t), value);
    ASSERT_EQ(r.status / 100, 2) << r.body;
  }

  // POST /api/v1/compact, waiting as long as it takes: the first
  // compaction of 430 days writes hundreds of segments, each fsynced, which
  // took over the harness's 10 s read timeout on a busy machine.
  Komoku::Reply Compact() {
    httplib::Client cli("127.0.0.1", komoku_->http_port());
    cli.set_read_timeout(std::chrono::seconds(300));
    auto res = cli.Post("/api/v1/compact", "", "application/json");
    if (!res) return {0, "no answer: " + httplib::to_string(res.error())};
    return {res->status, res->body};
  }

  json Get(const std::string& q) {
    auto r = komoku_->Get(q);
    EXPECT_EQ(r.status, 200) << q << " -> " << r.body;
    return r.Json();
  }

  // The questions asked before and after compaction.
  struct Answers {
    json hourly, daily, door_stats, door_daily;
  };
  Answers Ask() {
    const std::string range = "&from=" + Seconds(start_) + "&to=" + Seconds(end_);
    return {Get("/api/v1/history?key=old/temp&step=1h&agg=avg,min,max,first,last,count,twavg" +
                range)["rows"],
            Get("/api/v1/history?key=old/temp&step=1d&agg=avg,min,max,count" + range)["rows"],
            Get("/api/v1/stats?key=old/door" + range),
            Get("/api/v1/stats?key=old/door&step=1d" + range)["rows"]};
  }

  void ExpectSame(const Answers& want, const std::string& when) {
    Answers got = Ask();
    ExpectSameRows(want.hourly, got.hourly, when + ": hourly");
    ExpectSameRows(want.daily, got.daily, when + ": daily");
    ExpectSameRows(want.door_daily, got.door_daily, when + ": door per day");
    EXPECT_EQ(want.door_stats.dump(), got.door_stats.dump()) << when;
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  int64_t start_ = 0, end_ = 0;
};

TEST_F(RetentionTest, MergedMonthsLoseRawChangesPastRetentionButAnswerTheSame) {
  const int64_t now = NowMs();
  // Two months and a day from the start of a month 14 to 15 months ago:
  // every day of it ended more than 365 days ago.
  start_ = MonthStart(now - 430 * kDay);
  end_ = start_ + 62 * kDay;
  ASSERT_LT(end_, now - 366 * kDay);
  int n = 0;
  for (int64_t t = start_ + 1000; t < end_; t += kHour, ++n) {
    Put("old/temp", std::to_string(15 + (n * 37 % 100) / 10.0), t);
  }
  for (int d = 0; d < 60; d += 5) {
    Put("old/door", d % 10 == 0 ? "true" : "false", start_ + d * kDay + 7 * kHour);
  }
  const int64_t last_door = start_ + 55 * kDay + 7 * kHour;  // d = 55: "false"
  // Something recent, which stays raw.
  Put("old/temp", "20.5", now - 2 * kHour);
  const Answers before = Ask();
  ASSERT_EQ(before.hourly.size(), static_cast<size_t>(62 * 24));
  const json raw_before =
      Get("/api/v1/history?key=old/temp&from=" + Seconds(start_) + "&to=" + Seconds(start_ + kDay));
  ASSERT_EQ(raw_before["rows"].size(), 24u);
  EXPECT_FALSE(raw_before.contains("raw_expired_before"));

  auto compacted = Compact();
  ASSERT_EQ(compacted.status, 200) << compacted.body;
  std::printf("compaction: %s\n", compacted.body.c_str());

  // The first whole month is one merged segment.
  const json segments = Get("/api/v1/segments");
  bool month = false;
  for (const json& s : segments["segments"]) {
    const double from = s["from"].get<double>(), to = s["to"].get<double>();
    if (from * 1000 <= start_ && to * 1000 >= start_ + 28 * kDay) month = true;
  }
  EXPECT_TRUE(month) << "no merged month segment: " << segments.dump();

  for (int round = 0; round < 2; ++round) {
    const std::string when = round == 0 ? "after compaction" : "after a restart";
    ExpectSame(before, when);
    // Raw changes of that time are gone, and the answer says from when
    // raw changes are kept.
    const json raw = Get("/api/v1/history?key=old/temp&from=" + Seconds(start_) +
                         "&to=" + Seconds(start_ + kDay));
    EXPECT_TRUE(raw["rows"].empty()) << when << ": " << raw.dump();
    ASSERT_TRUE(raw.contains("raw_expired_before")) << when << ": " << raw.dump();
    EXPECT_GE(raw["raw_expired_before"].get<double>() * 1000, start_ + kDay) << when;
    EXPECT_LE(raw["raw_expired_before"].get<double>() * 1000, now - 365 * kDay) << when;
    // The recent change is raw, and its answer says nothing of retention.
    const json recent = Get("/api/v1/history?key=old/temp&from=-1d");
    ASSERT_EQ(recent["rows"].size(), 1u) << when << ": " << recent.dump();
    EXPECT_FALSE(recent.contains("raw_expired_before")) << when;
    // The door, untouched for fourteen months, is still known to be shut.
    const json at = Get("/api/v1/at?key=old/door&time=" + Seconds(now));
    EXPECT_EQ(at["known"], true) << when << ": " << at.dump();
    EXPECT_EQ(at["value"], false) << when;
    EXPECT_DOUBLE_EQ(at["since"].get<double>() * 1000, static_cast<double>(last_door)) << when;
    if (round == 0) {
      ASSERT_EQ(komoku_->Stop(), 0);
      ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    }
  }
  EXPECT_TRUE(Get("/healthz")["warnings"].empty());
}

// Issue 19: a key's stale_after changed after its segments were written,
// then its own raw_retention passed. The compaction after the change
// computes the rollups again from the raw changes, so the expired time
// answers as it did under the new options before retention (it answered as
// empty: count 0, avg null, all time unknown). An option changed once the
// raw changes are gone leaves the rollups as they were, and the answer says
// under which options they were computed. Timespans over expired time are
// not made up from rollups: none is given there, and raw_expired_before
// says where they begin.
TEST_F(RetentionTest, ChangedOptionsSurviveRawRetentionAndExpiredSpansAreFlagged) {
  const int64_t now = NowMs();
  const int64_t day0 = (now - 100 * kDay) / kDay * kDay;
  ASSERT_EQ(komoku_
                ->Post("/api/v1/define",
                       R"({"opt/hum": {"type": "numeric", "opts": {"same_value_resolution": 0}},
                              "opt/door": {"type": "boolean", "opts": {"same_value_resolution": 0}}})")
                .status,
            200);
  // 20 days of hourly readings, silent from 18:00 to midnight; a door open
  // from 08:00 to 20:00.
  for (int h = 0; h < 20 * 24; ++h) {
    if (h % 24 >= 18) continue;
    Put("opt/hum", std::to_string(40 + h % 7), day0 + h * kHour + 7000);
  }
  for (int d = 0; d < 20; ++d) {
    Put("opt/door", "true", day0 + d * kDay + 8 * kHour);
    Put("opt/door", "false", day0 + d * kDay + 20 * kHour);
  }
  auto compact = [&] {
    auto r = Compact();
    EXPECT_EQ(r.status, 200) << r.body;
  };
  compact();
  // Readings are an hour apart: a stale_after of 2 hours makes the evening
  // silences unknown time.
  ASSERT_EQ(
      komoku_->Post("/api/v1/define?key=opt/hum", R"({"opts": {"stale_after": 7200}})").status,
      200);
  const std::string range = "&from=" + Seconds(day0) + "&to=" + Seconds(day0 + 20 * kDay);
  const std::string daily = "/api/v1/history?key=opt/hum&step=1d&agg=count,avg,twavg" + range;
  const std::string stats = "/api/v1/stats?key=opt/hum" + range;
  const std::string spans = "/api/v1/timespans?key=opt/door&value=true" + range;
  const json want_daily = Get(daily);
  const json want_stats = Get(stats);
  ASSERT_EQ(want_stats["count"], 20 * 18);
  // Known from each reading for two hours: 00:00:07 to 19:00:07 a day.
  ASSERT_EQ(want_stats["known"].get<double>(), 20 * 19 * 3600.0) << want_stats.dump();
  ASSERT_EQ(Get(spans)["spans"].size(), 20u);

  compact();  // computes the rollups again under stale_after 2h
  for (const char* key : {"opt/hum", "opt/door"}) {
    ASSERT_EQ(komoku_
                  ->Post(std::string("/api/v1/define?key=") + key,
                         R"({"opts": {"raw_retention": 2592000}})")
                  .status,
              200);
  }
  compact();  // drops the raw changes older than 30 days
  ASSERT_TRUE(Get("/api/v1/history?key=opt/hum" + range)["rows"].empty());

  for (int round = 0; round < 3; ++round) {
    const std::string when = round == 0   ? "after retention"
                             : round == 1 ? "after a restart"
                                          : "after stale_after changed again";
    const json got_daily = Get(daily);
    ExpectSameRows(want_daily["rows"], got_daily["rows"], when + ": daily");
    const json got_stats = Get(stats);
    for (const char* field : {"count", "mean", "twavg", "known", "min", "max"}) {
      EXPECT_EQ(want_stats[field], got_stats[field]) << when << ": " << field;
    }
    // Door spans: none made up where the raw changes are gone, and the
    // answer says so.
    const json door = Get(spans);
    EXPECT_TRUE(door["spans"].empty()) << when << ": " << door.dump();
    ASSERT_TRUE(door.contains("raw_expired_before")) << when << ": " << door.dump();
    EXPECT_GE(door["raw_expired_before"].get<double>() * 1000, day0 + 20 * kDay) << when;
    EXPECT_LE(door["raw_expired_before"].get<double>() * 1000, now - 30 * kDay) << when;
    // The door's time in state still comes from the rollups.
    const json door_stats = Get("/api/v1/stats?key=opt/door" + range);
    EXPECT_EQ(door_stats["time"]["true"].get<double>(), 20 * 12 * 3600.0) << when;
    if (round < 2) {
      EXPECT_FALSE(got_daily.contains("rollups_under_old_options")) << when;
      EXPECT_FALSE(got_stats.contains("rollups_under_old_options")) << when;
    } else {
      // Answered as under the options the rollups were computed with, and
      // the answer says which.
      for (const json& got : {got_daily, got_stats}) {
        ASSERT_TRUE(got.contains("rollups_under_old_options")) << when << ": " << got.dump();
        const json& old = got["rollups_under_old_options"];
        ASSERT_FALSE(old.empty());
        EXPECT_EQ(old[0]["stale_after"], 7200.0) << when;
        EXPECT_EQ(old[0]["from"].get<double>() * 1000, static_cast<double>(day0)) << when;
      }
    }
    if (round == 0) {
      ASSERT_EQ(komoku_->Stop(), 0);
      ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    } else if (round == 1) {
      ASSERT_EQ(
          komoku_->Post("/api/v1/define?key=opt/hum", R"({"opts": {"stale_after": 600}})").status,
          200);
      compact();
    }
  }
}

}  // namespace
}  // namespace komoku::testing

// 20: cold history against the real binary: compaction killed with SIGKILL at
// random moments loses and duplicates nothing; `komoku compact` and
// `komoku segments` beside a running service and without one; a damaged
// segment is quarantined with a warning on /healthz; time in state per
// bucket (history agg=states) over cold and hot history equals stats.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

constexpr int64_t kMin = 60'000;
constexpr int64_t kDay = 24 * 60 * kMin;
const char* const kKeys[] = {"cold/temp", "cold/door", "cold/mode"};

class ColdHistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    // No background compaction: the test says when.
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "",
                                       "  hot_window_hours: 24\n  compact_interval: 0\n");
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    ASSERT_EQ(komoku_
                  ->Post("/api/v1/define",
                         R"({"cold/temp": {"type": "numeric", "opts": {"same_value_resolution": 0}},
                                "cold/door": {"type": "boolean", "opts": {"same_value_resolution": 0}},
                                "cold/mode": {"type": "string", "opts": {"same_value_resolution": 0}}})")
                  .status,
              200)
        << komoku_->Output();
  }
  void TearDown() override { DumpOnFailure(*broker_, *komoku_); }

  // Puts a change at time t (ms) and remembers it as acknowledged.
  void Put(int key, int64_t t) {
    std::string value;
    switch (key) {
      case 0:
        value = std::to_string(next_value_++ % 4000 / 100.0).substr(0, 5);
        break;
      case 1:
        value = (next_value_++ % 2) ? "true" : "false";
        break;
      default:
        value = std::string("m") + std::to_string(next_value_++ % 5);
        break;
    }
    char time[32];
    std::snprintf(time, sizeof time, "%.3f", static_cast<double>(t) / 1000.0);
    auto r = komoku_->Put(
        std::string("/api/v1/value?key=") + kKeys[key] + "&time=" + time + "&value=" + value, "");
    ASSERT_EQ(r.status, 200) << r.body;
    expected_[key].insert({t, value});
  }

  // A time not used yet by `key`, between from and to.
  int64_t FreshTime(int key, int64_t from, int64_t to) {
    for (;;) {
      int64_t t = from + static_cast<int64_t>(rng_() % static_cast<uint64_t>(to - from));
      bool used = false;
      for (const auto& [et, v] : expected_[key]) used = used || et == t;
      if (!used) return t;
    }
  }

  // Every key's raw history equals what was acknowledged: each change once.
  void ExpectExactlyOnce(const std::string& when) {
    for (int k = 0; k < 3; ++k) {
      auto r = komoku_->Get(std::string("/api/v1/history?key=") + kKeys[k] + "&from=0");
      ASSERT_EQ(r.status, 200) << when << ": " << r.body;
      std::multiset<std::pair<int64_t, std::string>> got;
      const json body = r.Json();
      for (const json& row : body["rows"]) {
        int64_t t = static_cast<int64_t>(std::llround(row[0].get<double>() * 1000));
        std::string v = row[1].is_string()    ? row[1].get<std::string>()
                        : row[1].is_boolean() ? (row[1].get<bool>() ? "true" : "false")
                                              : "";
        if (row[1].is_number()) {
          // Numbers come back as JSON numbers: compare as the value put.
          for (const auto& [et, ev] : expected_[k]) {
            if (et == t && std::stod(ev) == row[1].get<double>()) v = ev;
          }
        }
        got.insert({t, v});
      }
      ASSERT_EQ(got.size(), expected_[k].size())
          << when << ": " << kKeys[k] << " " << r.body.substr(0, 300);
      std::multiset<std::pair<int64_t, std::string>> want(expected_[k].begin(), expected_[k].end());
      ASSERT_TRUE(got == want) << when << ": " << kKeys[k] << " differs";
    }
  }

  std::vector<std::string> SegmentFiles() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_.File("data") + "/segments", ec)) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  std::mt19937_64 rng_{20261122};
  int next_value_ = 0;
  std::set<std::pair<int64_t, std::string>> expected_[3];
};

TEST_F(ColdHistoryTest, KilledCompactionsLoseAndDuplicateNothing) {
  const int64_t now = NowMs();
  const int64_t start = now - 70 * kDay;  // more than two calendar months
  for (int64_t t = start; t < now - kMin; t += 97 * kMin) {
    Put(0, t);
    if (t / (97 * kMin) % 5 == 0) Put(1, t + 1);
    if (t / (97 * kMin) % 11 == 0) Put(2, t + 2);
  }
  ExpectExactlyOnce("before any compaction");

  std::uniform_int_distribution<int> delay_ms(0, 400);
  int killed_while_busy = 0;
  constexpr int kRounds = 50;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Late changes all over the cold past (their segments are written
    // again), and new ones.
    for (int i = 0; i < 6; ++i) {
      int key = static_cast<int>(rng_() % 3);
      Put(key, FreshTime(key, start, now - 2 * kDay));
    }
    Put(0, FreshTime(0, now - kDay / 2, NowMs() - 1));
    std::atomic<int> answer{-1};
    std::thread compact([&] { answer = komoku_->Post("/api/v1/compact", "").status; });
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng_)));
    komoku_->Kill();
    compact.join();
    if (answer != 200) ++killed_while_busy;
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    ExpectExactlyOnce("after a kill");
    auto health = komoku_->Get("/healthz").Json();
    ASSERT_TRUE(health["warnings"].empty()) << health.dump();
  }
  // The kills must have hit compactions at work, not only idle services.
  EXPECT_GT(killed_while_busy, kRounds / 4);
  std::cerr << killed_while_busy << " of " << kRounds << " kills hit a compaction at work\n";

  // A finished compaction leaves the hot store holding the hot window only,
  // and no file that is not a live segment.
  auto r = komoku_->Post("/api/v1/compact", "");
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectExactlyOnce("after a whole compaction");
  const json segs = komoku_->Get("/api/v1/segments").Json();
  std::set<std::string> live;
  for (const json& s : segs["segments"]) live.insert(s["name"].get<std::string>());
  EXPECT_GE(live.size(), 2u);
  for (const std::string& f : SegmentFiles()) {
    if (f == "MANIFEST") continue;
    EXPECT_TRUE(live.count(f.substr(0, f.size() - 4))) << f << " is not a live segment";
  }
  // Two whole months were merged into one segment each.
  int months = 0;
  for (const json& s : segs["segments"]) {
    months += s["to"].get<double>() - s["from"].get<double>() > 27 * 86400;
  }
  EXPECT_GE(months, 1);
}

// A stop while a compaction asked for over HTTP is at work ends it at its
// next step: the HTTP worker running it does not hold the stop up, nothing
// it wrote stays, and every change is still there after a restart.
TEST_F(ColdHistoryTest, AStopEndsACompactionAskedForOverHttp) {
  // Keys whose one change is 400 days old: the compaction writes a day
  // segment for every day since, each carrying their values (hundreds of
  // steps), then merges the months.
  constexpr int kOld = 300;
  char time[32];
  std::snprintf(time, sizeof time, "%.3f", static_cast<double>(NowMs() - 400 * kDay) / 1000.0);
  for (int i = 0; i < kOld; ++i) {
    auto r = komoku_->Put("/api/v1/value?key=old/" + std::to_string(i) + "&time=" + time +
                              "&value=" + std::to_string(i),
                          "");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  std::atomic<int> answer{-1};
  std::thread compact([&] { answer = komoku_->Post("/api/v1/compact", "").status; });
  auto written = [&] {
    for (const std::string& f : SegmentFiles()) {
      if (f != "MANIFEST") return true;
    }
    return false;
  };
  // The compaction is at work and holds segments it has not committed: it
  // is in its days phase, past the first day (whose segment, holding every
  // key, is finished) and far from the last (after which it commits). A
  // finished segment file alone is no such sign: by the time the test sees
  // it, the days may have been committed already, or the file may belong to
  // the next step. GET /api/v1/compact shows the phase and the day.
  constexpr int kDaysLeft = 50;
  auto uncommitted = [&] {
    const json p = komoku_->Get("/api/v1/compact").Json();
    return p.is_object() && p.value("running", false) && p.value("phase", "") == "days" &&
           p.value("done", 0) >= 1 && p.value("total", 0) - p.value("done", 0) >= kDaysLeft;
  };
  const bool at_work = WaitFor(uncommitted, std::chrono::seconds(120));
  const auto sigterm = std::chrono::steady_clock::now();
  const int status = komoku_->process()->Stop(std::chrono::seconds(120));
  std::cerr << "stopped "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - sigterm).count()
            << " s after SIGTERM, in the middle of a compaction\n";
  compact.join();
  ASSERT_TRUE(at_work) << komoku_->Output();
  EXPECT_EQ(status, 0) << komoku_->Output();
  EXPECT_NE(answer, 200) << "the compaction finished: the stop waited for it";
  EXPECT_FALSE(written()) << "left behind: " << SegmentFiles().size() << " files";
  EXPECT_NE(komoku_->Output().find("written by a compaction that did not commit"),
            std::string::npos)
      << komoku_->Output();

  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  for (int i = 0; i < kOld; i += 37) {
    auto v = komoku_->Get("/api/v1/value?key=old/" + std::to_string(i)).Json();
    EXPECT_DOUBLE_EQ(v["value"].get<double>(), i) << v.dump();
  }
  EXPECT_EQ(komoku_->Get("/api/v1/segments").Json()["count"], 0);
}

TEST_F(ColdHistoryTest, CompactAndSegmentsCommandsWithAndWithoutTheService) {
  const int64_t now = NowMs();
  // 75 days touch at least three calendar months whatever today's date, so
  // the cold store holds at least three segments after its month merges
  // (ten days on the 3rd of a month left two: one merged month and a day).
  for (int64_t t = now - 75 * kDay; t < now; t += 131 * kMin) Put(0, t);
  // Beside the running service, `komoku compact` asks it over HTTP.
  Process compact({KOMOKU_BINARY, "compact", "-c", komoku_->config_path()},
                  dir_.File("compact.log"));
  ASSERT_EQ(compact.Wait(std::chrono::seconds(60)), 0) << compact.Output();
  json report = json::parse(compact.Output().substr(compact.Output().find('{')));
  EXPECT_GE(report["segments_written"].get<int>(), 8);
  Process list({KOMOKU_BINARY, "segments", "-c", komoku_->config_path(), "--keys"},
               dir_.File("segments.log"));
  ASSERT_EQ(list.Wait(std::chrono::seconds(60)), 0) << list.Output();
  EXPECT_NE(list.Output().find("cold/temp"), std::string::npos) << list.Output();
  EXPECT_NE(list.Output().find("segments,"), std::string::npos) << list.Output();
  ExpectExactlyOnce("after komoku compact");

  // A second service on the same data is refused with a clear message.
  Process second({KOMOKU_BINARY, "run", "-c", komoku_->config_path()}, dir_.File("second.log"));
  EXPECT_NE(second.Wait(std::chrono::seconds(30)), 0);
  EXPECT_NE(second.Output().find("in use by another komoku"), std::string::npos) << second.Output();

  // Without the service, `komoku compact` does the work itself.
  ASSERT_EQ(komoku_->Stop(), 0);
  Process offline({KOMOKU_BINARY, "compact", "-c", komoku_->config_path()},
                  dir_.File("offline.log"));
  ASSERT_EQ(offline.Wait(std::chrono::seconds(60)), 0) << offline.Output();

  // Damage one segment while the service is down: it is quarantined at the
  // next start, /healthz says so, and the rest is served.
  json segs;
  {
    Process json_list({KOMOKU_BINARY, "segments", "-c", komoku_->config_path(), "--json"},
                      dir_.File("segments-json.log"));
    ASSERT_EQ(json_list.Wait(std::chrono::seconds(60)), 0) << json_list.Output();
    segs = json::parse(json_list.Output().substr(json_list.Output().find('{')));
  }
  ASSERT_GE(segs["segments"].size(), 3u);
  const std::string victim = segs["segments"][1]["name"].get<std::string>();
  {
    std::fstream f(dir_.File("data") + "/segments/" + victim + ".kkd",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.write("\xde\xad\xbe\xef\xde\xad\xbe\xef", 8);
  }
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitFor([&] { return !komoku_->Get("/healthz").Json()["warnings"].empty(); }))
      << komoku_->Get("/healthz").body;
  EXPECT_NE(komoku_->Get("/healthz").body.find(victim), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir_.File("data") + "/quarantine/" + victim + ".kkd"));
  EXPECT_EQ(komoku_->Get("/api/v1/segments").Json()["segments"].size(),
            segs["segments"].size() - 1);
  auto h = komoku_->Get("/api/v1/history?key=cold/temp&from=-30d&step=1d");
  EXPECT_EQ(h.status, 200) << h.body;
}

TEST_F(ColdHistoryTest, TopKeysByWritesAndSizeAndPerKeyMetrics) {
  const int64_t now = NowMs();
  for (int64_t t = now - 5 * kDay; t < now; t += 37 * kMin) Put(0, t);
  for (int64_t t = now - 5 * kDay; t < now; t += 301 * kMin) Put(2, t);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=odd%22name&value=1", "").status, 201);  // created
  auto top = komoku_->Get("/api/v1/top?by=writes").Json();
  ASSERT_GE(top["keys"].size(), 3u) << top.dump();
  EXPECT_EQ(top["by"], "writes") << top.dump();
  EXPECT_NEAR(top["since"].get<double>(), static_cast<double>(now) / 1000.0, 600) << top.dump();
  // cold/temp changed most, so it wrote most; its rate is per hour of uptime.
  EXPECT_EQ(top["keys"][0]["key"], "cold/temp") << top.dump();
  EXPECT_EQ(top["keys"][0]["changes"].get<size_t>(), expected_[0].size());
  EXPECT_GT(top["keys"][0]["hot_bytes_written"].get<double>(),
            top["keys"][1]["hot_bytes_written"].get<double>());
  EXPECT_GT(top["keys"][0]["changes_per_hour"].get<double>(), 0);
  EXPECT_EQ(top["keys"][0]["segment_bytes"], 0);
  // After a compaction, by=size ranks the keys by their bytes in segments.
  ASSERT_EQ(komoku_->Post("/api/v1/compact", "").status, 200);
  auto size = komoku_->Get("/api/v1/top?by=size&limit=1").Json();
  ASSERT_EQ(size["keys"].size(), 1u) << size.dump();
  EXPECT_EQ(size["keys"][0]["key"], "cold/temp");
  EXPECT_GT(size["keys"][0]["segment_bytes"].get<double>(), 0);
  EXPECT_EQ(komoku_->Get("/api/v1/top?by=color").status, 400);
  // The same per key in /metrics, label values escaped.
  auto metrics = komoku_->Get("/metrics").body;
  EXPECT_NE(metrics.find("komoku_key_changes_stored_total{key=\"cold/temp\"} " +
                         std::to_string(expected_[0].size())),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("komoku_key_hot_bytes_written_total{key=\"odd\\\"name\"}"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("komoku_key_segment_bytes{key=\"cold/temp\"} "), std::string::npos);
}

// Time in state per bucket (history agg=states) over cold and hot history
// at once: random changes of a boolean and a string key over five days,
// many exactly on bucket edges, the range starting before the first change
// and its end on no edge. Each bucket's states and unknown time add up to
// its length and equal a brute-force walk of the changes put; each column
// summed over the buckets equals what stats says for the same range.
TEST_F(ColdHistoryTest, StateBucketsAddUpToStatsOverColdAndHotHistory) {
  constexpr int64_t kHour = 60 * kMin;
  const int64_t now = NowMs();
  const int64_t last_hour = now / kHour * kHour;
  const int64_t first = last_hour - 5 * kDay;
  for (int key : {1, 2}) {
    std::set<int64_t> used;
    for (int i = 0; i < 150; ++i) {
      int64_t t = first + static_cast<int64_t>(rng_() % static_cast<uint64_t>(5 * kDay - kHour));
      // Two in three on an edge: of an hour, of 5 minutes, of 7 minutes.
      const int64_t edges[] = {kHour, 5 * kMin, 7 * kMin};
      const int64_t edge = edges[rng_() % 3];
      if (rng_() % 3) t = std::max(first, t / edge * edge);
      if (!used.insert(t).second) continue;
      Put(key, t);
    }
    // The first change exactly on an hour's edge.
    if (used.insert(first).second) Put(key, first);
  }
  ASSERT_EQ(komoku_->Post("/api/v1/compact", "").status, 200);
  ASSERT_FALSE(komoku_->Get("/api/v1/segments").Json()["segments"].empty());
  // Most of the five days is cold now, the last day hot.
  const json hot = komoku_->Get(std::string("/api/v1/history?key=cold/door&from=-1d")).Json();
  ASSERT_FALSE(hot["rows"].empty()) << hot.dump();

  auto seconds = [](int64_t ms) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", static_cast<double>(ms) / 1000.0);
    return std::string(text);
  };
  auto ms = [](const json& s) {
    return static_cast<int64_t>(std::llround(s.get<double>() * 1000));
  };
  const int64_t from = first - 2 * kHour - 17 * kMin - 123;  // before the first change
  const int64_t to = last_hour - 17 * kMin;                  // past now is another test's
  for (int key : {1, 2}) {
    for (const char* step : {"1h", "5m", "7m", "1d", "auto"}) {
      SCOPED_TRACE(std::string(kKeys[key]) + " step=" + step);
      const std::string range =
          std::string("?key=") + kKeys[key] + "&from=" + seconds(from) + "&to=" + seconds(to);
      auto r = komoku_->Get("/api/v1/history" + range + "&step=" + step + "&agg=states");
      ASSERT_EQ(r.status, 200) << r.body;
      const json b = r.Json();
      const json& states = b["states"];
      ASSERT_EQ(b["columns"].size(), 3 + states.size());
      if (key == 1) {
        ASSERT_EQ(states, json::parse(R"(["false", "true"])"));
      }
      // The step function of the changes put, brute force: the value in
      // force at t, or "" before the first change.
      auto at = [&](int64_t t) {
        auto it = expected_[key].upper_bound({t, std::string(1, '\x7f')});
        return it == expected_[key].begin() ? std::string() : std::prev(it)->second;
      };
      std::map<std::string, int64_t> sum;
      int64_t sum_changes = 0;
      const int64_t start = ms(b["from"]);
      ASSERT_LE(start, from);
      const json& rows = b["rows"];
      for (size_t i = 0; i < rows.size(); ++i) {
        const int64_t b0 = ms(rows[i][0]);
        const int64_t b1 = i + 1 < rows.size() ? ms(rows[i + 1][0]) : to;
        int64_t total = ms(rows[i][2]);
        sum["unknown"] += total;
        sum_changes += rows[i][1].get<int64_t>();
        std::map<std::string, int64_t> want;
        int64_t want_changes = 0;
        // Walk the changes inside the bucket, one exactly at its start
        // included (a change belongs to the bucket it starts).
        int64_t t = b0;
        std::string v = at(b0 - 1);
        for (auto it = expected_[key].lower_bound({b0, ""}); t < b1; ++it) {
          const int64_t next = it == expected_[key].end() ? b1 : std::min(it->first, b1);
          if (next > t) want[v.empty() ? "unknown" : v] += next - t;
          if (next == b1) break;
          if (!v.empty() && it->second != v) ++want_changes;
          v = it->second;
          t = next;
        }
        std::map<std::string, int64_t> got;
        if (ms(rows[i][2])) got["unknown"] = ms(rows[i][2]);
        for (size_t c = 0; c < states.size(); ++c) {
          const int64_t part = ms(rows[i][3 + c]);
          total += part;
          sum[states[c].get<std::string>()] += part;
          if (part) got[states[c].get<std::string>()] = part;
        }
        EXPECT_EQ(total, b1 - b0) << "bucket at " << b0;
        EXPECT_EQ(got, want) << "bucket at " << b0;
        EXPECT_EQ(rows[i][1].get<int64_t>(), want_changes) << "bucket at " << b0;
      }
      // The whole range as stats tells it, from the first bucket's start.
      const json stats = komoku_
                             ->Get(std::string("/api/v1/stats?key=") + kKeys[key] +
                                   "&from=" + seconds(start) + "&to=" + seconds(to))
                             .Json();
      std::map<std::string, int64_t> want;
      for (const auto& [value, s] : stats["time"].items()) want[value] = ms(s);
      for (const auto& [value, s] : want) {
        EXPECT_EQ(sum[value], s) << value;
      }
      EXPECT_EQ(sum.size(), want.size());
      EXPECT_EQ(sum_changes, stats["changes"].get<int64_t>());
    }
  }
}

}  // namespace
}  // namespace komoku::testing

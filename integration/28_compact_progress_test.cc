// 28: `komoku compact` on a year of history shows how far it has come
// (issue 19, "long work reports progress"). Without a terminal, progress is
// periodic lines on stderr (a line per month of day segments written, per
// phase, at least every 10 s), and stdout holds only the JSON report, both
// when the command compacts in its own process (no service running) and when
// it asks the running service, which answers GET /api/v1/compact.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

constexpr int kDays = 360;
constexpr int kPerDay = 4;

class CompactProgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    // No background compaction: only `komoku compact` compacts.
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "",
                                       "  hot_window_hours: 24\n  compact_interval: 0\n");
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    mqtt_ = std::make_unique<MqttClient>(broker_->url(), "it-year");
  }
  void TearDown() override { DumpOnFailure(*broker_, *komoku_); }

  // A year of a temperature and a door, kPerDay changes a day each, ending
  // two days ago; waits until all are stored.
  void PutAYear() {
    const int64_t end = (static_cast<int64_t>(std::time(nullptr)) / 86400 - 2) * 86400;
    const int64_t start = end - int64_t{kDays} * 86400;
    int n = 0;
    for (int64_t t = start; t < end; t += 86400 / kPerDay, ++n) {
      mqtt_->Publish("komoku/set/year/temp", json({{"value", 15 + n % 17}, {"time", t}}).dump());
      mqtt_->Publish("komoku/set/year/door",
                     json({{"value", n % 2 == 0}, {"time", t + 60}}).dump());
    }
    ASSERT_TRUE(WaitFor(
        [&] {
          auto r = komoku_->Get("/api/v1/history?key=year/door&from=0");
          return r.status == 200 && r.Json()["rows"].size() >= static_cast<size_t>(n);
        },
        std::chrono::seconds(120)))
        << komoku_->Output();
  }

  struct Run {
    int status = -1;
    std::string out, err;
  };
  // `komoku compact -c <config>`, stdout and stderr apart, stdin and
  // stderr not a terminal.
  Run Compact(const std::string& name) {
    const std::string out = dir_.File(name + ".out"), err = dir_.File(name + ".err");
    Process p({"/bin/sh", "-c",
               std::string("exec ") + KOMOKU_BINARY + " compact -c '" + komoku_->config_path() +
                   "' >'" + out + "' 2>'" + err + "'"},
              dir_.File(name + ".log"));
    Run run;
    run.status = p.Wait(std::chrono::seconds(300));
    std::ifstream o(out), e(err);
    std::stringstream os, es;
    os << o.rdbuf();
    es << e.rdbuf();
    run.out = os.str();
    run.err = es.str();
    return run;
  }

  static std::vector<std::string> Lines(const std::string& text, const std::string& prefix) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(prefix, 0) == 0) out.push_back(line);
    }
    return out;
  }

  // What every run shows: a report on stdout, lines (no bar) on stderr, the
  // day segments' progress among them.
  void ExpectReportAndLines(const Run& run, size_t min_day_lines) {
    ASSERT_EQ(run.status, 0) << run.out << run.err;
    // stdout: the JSON report alone.
    ASSERT_EQ(Lines(run.out, "").size(), 1u) << run.out;
    const json report = json::parse(run.out, nullptr, false);
    ASSERT_TRUE(report.is_object()) << run.out;
    EXPECT_GE(report["segments_written"].get<int>(), kDays) << run.out;
    EXPECT_EQ(report["changes"].get<int>(), 2 * kDays * kPerDay) << run.out;
    // stderr: whole lines, no carriage returns or bar.
    EXPECT_EQ(run.err.find('\r'), std::string::npos) << run.err;
    EXPECT_EQ(run.err.find("[#"), std::string::npos) << run.err;
    const auto days = Lines(run.err, "komoku compact: writing day segments: ");
    EXPECT_GE(days.size(), min_day_lines) << run.err;
    for (const std::string& line : days) {
      // "N of T days": T the days from the oldest change to the hot window.
      const size_t of = line.find(" of ");
      ASSERT_NE(of, std::string::npos) << line;
      EXPECT_GE(std::stoi(line.substr(of + 4)), kDays) << line;
      EXPECT_NE(line.find(" days"), std::string::npos) << line;
    }
    // Periodic, not a line per day.
    EXPECT_LT(days.size(), static_cast<size_t>(kDays / 4)) << run.err;
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  std::unique_ptr<MqttClient> mqtt_;
};

TEST_F(CompactProgressTest, OfflineCompactPrintsProgressLines) {
  PutAYear();
  ASSERT_EQ(komoku_->Stop(), 0) << komoku_->Output();
  const Run run = Compact("offline");
  ExpectReportAndLines(run, 2);
  EXPECT_EQ(Lines(run.err, "komoku compact: deleting the compacted changes").size(), 1u) << run.err;
  // A second run has nothing left to do: no progress to show.
  const Run again = Compact("again");
  ASSERT_EQ(again.status, 0) << again.out << again.err;
  EXPECT_EQ(Lines(again.err, "komoku compact: writing").size(), 0u) << again.err;
}

TEST_F(CompactProgressTest, CompactThroughTheServiceShowsItsProgress) {
  PutAYear();
  EXPECT_EQ(komoku_->Get("/api/v1/compact").Json(), json({{"running", false}}));
  const Run run = Compact("service");
  ExpectReportAndLines(run, 1);
  EXPECT_EQ(komoku_->Get("/api/v1/compact").Json(), json({{"running", false}}));
  // The service did the work: its history reads the same through segments.
  auto r = komoku_->Get("/api/v1/history?key=year/temp&from=0");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["rows"].size(), static_cast<size_t>(kDays * kPerDay));
}

// On a terminal (a pseudo-terminal from script(1) for stderr; stdout still
// goes to a file), the progress is a bar redrawn in place.
TEST_F(CompactProgressTest, OnATerminalTheProgressIsABar) {
  PutAYear();
  ASSERT_EQ(komoku_->Stop(), 0) << komoku_->Output();
  const std::string out = dir_.File("tty.out"), screen = dir_.File("tty.screen");
  Process p(
      {"/usr/bin/script", "-q", "-e", "-c",
       std::string(KOMOKU_BINARY) + " compact -c '" + komoku_->config_path() + "' >'" + out + "'",
       screen},
      dir_.File("tty.log"));
  ASSERT_EQ(p.Wait(std::chrono::seconds(300)), 0) << p.Output();
  std::ifstream in(screen);
  std::stringstream text;
  text << in.rdbuf();
  const std::string shown = text.str();
  EXPECT_NE(shown.find("\r["), std::string::npos) << shown;
  EXPECT_NE(shown.find("] writing day segments: "), std::string::npos) << shown;
  EXPECT_NE(shown.find("#"), std::string::npos) << shown;
  std::ifstream report(out);
  std::stringstream json_text;
  json_text << report.rdbuf();
  EXPECT_TRUE(json::parse(json_text.str(), nullptr, false).is_object()) << json_text.str();
}

}  // namespace
}  // namespace komoku::testing

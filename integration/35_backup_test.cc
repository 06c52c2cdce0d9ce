// 35: backup and restore against the real binary and a real Mosquitto. Old
// history is compacted into segments (POST /api/v1/compact), then a QoS 1
// stream runs while `komoku backup` asks the running service for a backup.
// The backup, restored elsewhere with `komoku restore`, starts a second
// komoku that answers the compacted history exactly as the original and
// holds the stream's changes as a prefix of the original's: at least every
// change the original showed before the backup began, none the original
// lacks. A damaged backup (one byte flipped in a segment, a file deleted)
// is refused with the file named, and a non-empty data directory is
// replaced only with --force.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kMin = 60'000;
constexpr int64_t kDay = 24 * 60 * kMin;

Process Cli(const TempDir& dir, std::vector<std::string> args, const std::string& log) {
  std::vector<std::string> argv = {KOMOKU_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return Process(argv, dir.File(log));
}

json Rows(const Komoku& k, const std::string& key) {
  auto r = k.Get("/api/v1/history?key=" + key + "&from=0&limit=10000");
  if (r.status == 404) return json::array();  // no such key yet
  EXPECT_EQ(r.status, 200) << r.body;
  return r.status == 200 ? r.Json()["rows"] : json::array();
}

std::string FirstFile(const std::string& dir, const std::string& ext) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) return e.path().string();
  }
  return "";
}

TEST(BackupTest, BackupDuringAStreamRestoresEveryChangeUpToItsMoment) {
  TempDir dir;
  Broker broker(dir);
  Komoku komoku(dir, broker, "", "  hot_window_hours: 24\n  compact_interval: 0\n");
  ASSERT_TRUE(komoku.Start()) << komoku.Output();

  // Ten days of old history, compacted into segments.
  const int64_t now = NowMs();
  const int64_t start = (now - 10 * kDay) / kMin * kMin;
  size_t old_count = 0;
  {
    MqttClient mqtt(broker.url(), "it-backup-old");
    for (int64_t t = start; t < now - 3 * kDay; t += 30 * kMin, ++old_count) {
      mqtt.Publish("komoku/set/bk/old", R"({"value": )" + std::to_string(old_count % 97) +
                                            R"(, "time": )" + Seconds(t) + "}");
    }
  }
  ASSERT_TRUE(WaitFor([&] { return Rows(komoku, "bk/old").size() == old_count; },
                      std::chrono::seconds(120)));
  ASSERT_EQ(komoku.Post("/api/v1/compact", "").status, 200) << komoku.Output();
  const json segments = komoku.Get("/api/v1/segments").Json()["segments"];
  ASSERT_GE(segments.size(), 3u) << segments.dump();
  const json old_rows = Rows(komoku, "bk/old");

  // A QoS 1 stream, running through the backup.
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread stream([&] {
    MqttClient mqtt(broker.url(), "it-backup-stream");
    while (!stop.load() && sent.load() < 8000) {
      mqtt.Publish("komoku/set/bk/stream", std::to_string(sent.load() + 1));
      sent.fetch_add(1);
    }
  });
  ASSERT_TRUE(
      WaitFor([&] { return Rows(komoku, "bk/stream").size() >= 200; }, std::chrono::seconds(120)));
  const size_t seen_before = Rows(komoku, "bk/stream").size();
  Process backup =
      Cli(dir, {"backup", "-c", komoku.config_path(), dir.File("backup")}, "backup.log");
  const int backup_rc = backup.Wait(std::chrono::seconds(300));
  // The stream goes on a little after the backup, then stops.
  const int sent_at_backup = sent.load();
  ASSERT_TRUE(
      WaitFor([&] { return sent.load() >= sent_at_backup + 100; }, std::chrono::seconds(120)));
  stop.store(true);
  stream.join();
  ASSERT_EQ(backup_rc, 0) << backup.Output();
  const json report = json::parse(backup.Output().substr(backup.Output().find('{')));
  EXPECT_EQ(report["segments"].get<size_t>(), segments.size()) << report.dump();
  EXPECT_GT(report["linked_files"].get<size_t>(), 0u) << report.dump();
  ASSERT_TRUE(WaitFor([&] { return Rows(komoku, "bk/stream").size() == size_t(sent.load()); },
                      std::chrono::seconds(120)));
  const json all_rows = Rows(komoku, "bk/stream");

  // Restored elsewhere, served by a second komoku (its own broker: both
  // use the same client id).
  TempDir other;
  Process restore =
      Cli(dir, {"restore", dir.File("backup"), "--data-dir", other.File("data")}, "restore.log");
  ASSERT_EQ(restore.Wait(std::chrono::seconds(300)), 0) << restore.Output();
  Broker broker2(other);
  auto restored = std::make_unique<Komoku>(other, broker2, "",
                                           "  hot_window_hours: 24\n  compact_interval: 0\n");
  ASSERT_TRUE(restored->Start()) << restored->Output();
  EXPECT_EQ(Rows(*restored, "bk/old"), old_rows);
  EXPECT_EQ(restored->Get("/api/v1/segments").Json()["segments"], segments);
  const json got = Rows(*restored, "bk/stream");
  EXPECT_GE(got.size(), seen_before);
  ASSERT_LE(got.size(), all_rows.size());
  EXPECT_LT(got.size(), all_rows.size());  // the stream went on after it
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i], all_rows[i]) << "row " << i;
  }
  // Every value 1..n in order ([time, value] rows): no gap.
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i][1].get<double>(), static_cast<double>(i + 1)) << "row " << i;
  }

  // The restored data directory is not empty: --force only, and never
  // while a komoku runs on it.
  Process busy =
      Cli(dir, {"restore", dir.File("backup"), "--data-dir", other.File("data"), "--force"},
          "restore-busy.log");
  EXPECT_EQ(busy.Wait(std::chrono::seconds(120)), 1);
  EXPECT_NE(busy.Output().find("in use by a running komoku"), std::string::npos) << busy.Output();
  ASSERT_EQ(restored->Stop(), 0);
  Process refused =
      Cli(dir, {"restore", dir.File("backup"), "--data-dir", other.File("data")}, "restore-2.log");
  EXPECT_EQ(refused.Wait(std::chrono::seconds(120)), 1);
  EXPECT_NE(refused.Output().find("is not empty"), std::string::npos) << refused.Output();
  EXPECT_NE(refused.Output().find("--force"), std::string::npos) << refused.Output();
  Process forced =
      Cli(dir, {"restore", dir.File("backup"), "--data-dir", other.File("data"), "--force"},
          "restore-3.log");
  EXPECT_EQ(forced.Wait(std::chrono::seconds(300)), 0) << forced.Output();
  ASSERT_TRUE(restored->Start()) << restored->Output();
  EXPECT_EQ(Rows(*restored, "bk/stream").size(), got.size());

  // Damaged copies of the backup (copies: its segments are hard links of
  // the original's live files).
  fs::copy(dir.File("backup"), dir.File("flipped"), fs::copy_options::recursive);
  fs::copy(dir.File("backup"), dir.File("missing"), fs::copy_options::recursive);
  const std::string flipped = FirstFile(dir.File("flipped/segments"), ".kkd");
  {
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(64);
    char c = 0;
    f.get(c);
    f.seekp(64);
    f.put(static_cast<char>(c ^ 1));
  }
  const std::string missing = FirstFile(dir.File("missing/segments"), ".kki");
  fs::remove(missing);
  for (const std::string& bad : {flipped, missing}) {
    const std::string backup_dir = fs::path(bad).parent_path().parent_path().string();
    const std::string target = other.File("bad-target");
    Process r = Cli(dir, {"restore", backup_dir, "--data-dir", target}, "restore-bad.log");
    EXPECT_EQ(r.Wait(std::chrono::seconds(120)), 1) << bad;
    EXPECT_NE(r.Output().find(bad), std::string::npos) << r.Output();
    EXPECT_FALSE(fs::exists(target));
  }
  // The endpoint takes only an absolute path on the service's host.
  EXPECT_EQ(komoku.Post("/api/v1/backup?dir=relative/b", "").status, 400);
  EXPECT_EQ(komoku.Post("/api/v1/backup", "").status, 400);
  EXPECT_FALSE(fs::exists(dir.File("relative")));
  // A backup into a directory with files in it is refused.
  Process again =
      Cli(dir, {"backup", "-c", komoku.config_path(), dir.File("backup")}, "backup-2.log");
  EXPECT_EQ(again.Wait(std::chrono::seconds(120)), 1);
  EXPECT_NE(again.Output().find("not empty"), std::string::npos) << again.Output();
}

}  // namespace
}  // namespace komoku::testing

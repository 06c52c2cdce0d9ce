// A full disk is a clear, recoverable state: the data directory on a small
// tmpfs is filled up while komoku runs; HTTP writes are refused with 507,
// /readyz is 503 naming the full disk, /healthz still answers, MQTT messages
// wait (in the ingest log or in memory) instead of being lost; once space
// returns everything resumes on its own and every message is stored; a
// SIGTERM still ends the process.
//
// Needs a tmpfs mount (root with CAP_SYS_ADMIN, as `make test` runs in CI);
// elsewhere the test is reported skipped, not passed.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

// A tmpfs of `bytes` at `path`, unmounted when it goes.
class SmallDisk {
 public:
  SmallDisk(std::string path, size_t bytes) : path_(std::move(path)) {
    std::filesystem::create_directories(path_);
    const std::string opts = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, opts.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

  // Writes a file until the disk is full.
  void Fill(const std::string& name) {
    std::ofstream out(path_ + "/" + name, std::ios::binary);
    std::string block(4096, 'x');
    while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) {
    }
  }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

TEST(FullDiskTest, WritesAreRefusedClearlyAndEverythingResumesWhenSpaceReturns) {
  TempDir dir;
  SmallDisk disk(dir.File("data"), 8 << 20);
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.error();
  Broker broker(dir);
  Komoku komoku(dir, broker);
  ASSERT_TRUE(komoku.Start()) << komoku.Output();
  ASSERT_EQ(komoku.Put("/api/v1/value?key=before", "1").status, 201);  // created

  disk.Fill("filler");
  // The first write after the disk filled waits in the writer's queue; the
  // failed commit makes the store refuse the next ones at once.
  Komoku::Reply refused;
  ASSERT_TRUE(WaitFor(
      [&] {
        refused = komoku.Put("/api/v1/value?key=during", "2");
        return refused.status == 507;
      },
      std::chrono::seconds(60)))
      << "last answer " << refused.status << " " << refused.body << "\n"
      << komoku.Output();
  EXPECT_NE(refused.body.find("disk is full"), std::string::npos) << refused.body;
  EXPECT_NE(refused.body.find("disk_full"), std::string::npos) << refused.body;

  Komoku::Reply ready = komoku.Get("/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_NE(ready.body.find("disk is full"), std::string::npos) << ready.body;
  EXPECT_EQ(komoku.Get("/healthz").status, 200);
  EXPECT_GE(komoku.Metric("komoku_refused_total{reason=\"disk_full\"}"), 1);

  // MQTT messages while the disk is full: acknowledged by the broker and
  // by komoku's client; none may be lost.
  MqttClient pub(broker.url(), "full-disk-publisher");
  constexpr int kMessages = 200;
  const long long t0 = 1790000000;
  for (int i = 0; i < kMessages; ++i) {
    pub.Publish("komoku/set/sensor",
                "{\"value\":" + std::to_string(i) + ",\"time\":" + std::to_string(t0 + i) + "}");
  }
  // Still answering while it waits.
  EXPECT_EQ(komoku.Get("/healthz").status, 200);
  EXPECT_EQ(komoku.Get("/readyz").status, 503);

  std::filesystem::remove(dir.File("data") + "/filler");
  auto count = [&]() -> long long {
    auto r = komoku.Get("/api/v1/history?key=sensor&from=" + std::to_string(t0) +
                        "&to=" + std::to_string(t0 + kMessages));
    if (r.status != 200) return -1;
    return static_cast<long long>(r.Json()["rows"].size());
  };
  EXPECT_TRUE(WaitFor([&] { return count() == kMessages; }, std::chrono::seconds(90)))
      << "stored " << count() << " of " << kMessages << "; value "
      << komoku.Get("/api/v1/value?key=sensor").body << "; messages "
      << komoku.Metric("komoku_mqtt_messages_total") << "\n"
      << komoku.Output();
  EXPECT_TRUE(
      WaitFor([&] { return komoku.Get("/readyz").status == 200; }, std::chrono::seconds(30)))
      << komoku.Get("/readyz").body;
  EXPECT_EQ(komoku.Put("/api/v1/value?key=after", "3").status, 201);
  EXPECT_EQ(komoku.Get("/api/v1/value?key=before").status, 200);

  const auto t = std::chrono::steady_clock::now();
  EXPECT_EQ(komoku.Stop(), 0) << komoku.Output();
  std::printf("stop took %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
}

}  // namespace
}  // namespace komoku::testing

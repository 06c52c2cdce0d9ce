// Store::Backup, VerifyBackup and RestoreBackup over real files: a backup of
// a store with hot and compacted history restores to the same answers; a
// damaged, incomplete or tampered backup is refused naming the file; a
// data directory with data is replaced only with force, never while a
// Store holds it, and a failed restore leaves nothing behind.
#include "store/backup.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "store/store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

namespace fs = std::filesystem;
using testing::FakeClock;
using testing::ManualCompactionOptions;
using testing::OpenTestStore;
using testing::PutAt;
using testing::TempDir;

constexpr int64_t kDay = 24 * 3600 * 1000;
constexpr int64_t kNow = 1700000000000;  // 2023-11-14T22:13:20Z

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenTestStore(ManualCompactionOptions(dir_.File("data"), &clock_));
    ASSERT_NE(store_, nullptr);
    // Five days of history, compacted into segments, and some hot.
    for (int64_t t = kNow - 5 * kDay; t < kNow; t += 3600 * 1000) {
      ASSERT_TRUE(PutAt(*store_, "temp", static_cast<double>(t % 977), t).ok());
    }
    Result<CompactionReport> r = store_->Compact();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_FALSE(store_->Segments().empty());
    ASSERT_TRUE(PutAt(*store_, "temp", 1.5, kNow).ok());
    ASSERT_TRUE(PutAt(*store_, "hum", 40, kNow).ok());
    std::ofstream(dir_.File("data/discovery.json")) << "{\"entities\": []}\n";
  }

  std::string Answers(Store& s) {
    std::string out;
    for (const char* key : {"temp", "hum"}) {
      Result<std::vector<Sample>> h = s.History(key, 0, kNow + 1, 100000);
      EXPECT_TRUE(h.ok());
      out += std::string(key) + ":";
      for (const Sample& x : *h)
        out += std::to_string(x.time_ms) + "=" + ValueToText(x.value) + ",";
    }
    return out;
  }

  Result<BackupReport> Backup(const std::string& dir) {
    BackupOptions o;
    o.dir = dir;
    o.sync = false;
    return store_->Backup(o);
  }

  static void FlipByte(const std::string& path, size_t at) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(static_cast<char>(c ^ 0x5a));
  }

  std::string SegmentFile(const std::string& backup, const char* ext) {
    for (const auto& e : fs::directory_iterator(backup + "/segments")) {
      if (e.path().extension() == ext) return e.path().string();
    }
    return "";
  }

  FakeClock clock_{kNow};
  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(BackupTest, RestoresTheSameAnswers) {
  // The last puts did not wait for their commit: the backup does.
  Result<BackupReport> r = Backup(dir_.File("backup"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string want = Answers(*store_);
  EXPECT_NE(want.find("hum:1700000000000=40,"), std::string::npos) << want;
  EXPECT_EQ(r->segments, store_->Segments().size());
  EXPECT_GT(r->linked, 0u);  // the same file system: hard links
  EXPECT_GT(r->seq, r->cold_seq);
  EXPECT_EQ(r->files.back(), kBackupSums);
  EXPECT_TRUE(fs::exists(dir_.File("backup/discovery.json")));
  // After the backup: not in it.
  ASSERT_TRUE(PutAt(*store_, "hum", 41, kNow + 1).ok());

  RestoreOptions o;
  o.backup_dir = dir_.File("backup");
  o.data_dir = dir_.File("restored");
  o.sync = false;
  Result<RestoreReport> restored = RestoreBackup(o);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->replaced.empty());
  std::unique_ptr<Store> again = OpenTestStore(ManualCompactionOptions(o.data_dir, &clock_));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(Answers(*again), want);
  EXPECT_EQ(again->Segments().size(), store_->Segments().size());
  EXPECT_TRUE(fs::exists(o.data_dir + "/discovery.json"));
  // Nothing left beside it.
  for (const auto& e : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(e.path().filename().string().find(".restoring-"), std::string::npos) << e.path();
  }
}

TEST_F(BackupTest, RefusesANonEmptyBackupDirectory) {
  fs::create_directories(dir_.File("full"));
  std::ofstream(dir_.File("full/x")) << "x";
  Result<BackupReport> r = Backup(dir_.File("full"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not empty"), std::string::npos) << r.status().message();
}

TEST_F(BackupTest, DamagedOrIncompleteBackupIsRefusedNamingTheFile) {
  ASSERT_TRUE(Backup(dir_.File("b")).ok());
  // The store's own segment files are hard links of the backup's: work on
  // copies so the store stays whole.
  for (const char* name : {"flip", "gone", "unfinished", "unlisted"}) {
    fs::copy(dir_.File("b"), dir_.File(name), fs::copy_options::recursive);
  }
  const std::string kkd = SegmentFile(dir_.File("flip"), ".kkd");
  FlipByte(kkd, 100);
  const std::string kki = SegmentFile(dir_.File("gone"), ".kki");
  fs::remove(kki);
  fs::remove(dir_.File("unfinished/SHA256SUMS"));
  // A segment file removed along with its checksum line: the MANIFEST
  // still names it.
  const std::string unlisted = SegmentFile(dir_.File("unlisted"), ".kkd");
  {
    std::ifstream in(dir_.File("unlisted/SHA256SUMS"));
    std::string line, kept;
    const std::string name = fs::path(unlisted).filename().string();
    while (std::getline(in, line)) {
      if (line.find(name) == std::string::npos) kept += line + "\n";
    }
    std::ofstream(dir_.File("unlisted/SHA256SUMS")) << kept;
    fs::remove(unlisted);
  }
  const std::pair<std::string, std::string> cases[] = {
      {"flip", kkd}, {"gone", kki}, {"unfinished", "SHA256SUMS"}, {"unlisted", unlisted}};
  for (const auto& [name, file] : cases) {
    Result<std::vector<std::string>> v = VerifyBackup(dir_.File(name));
    ASSERT_FALSE(v.ok()) << name;
    EXPECT_NE(v.status().message().find(file), std::string::npos) << v.status().message();
    RestoreOptions o;
    o.backup_dir = dir_.File(name);
    o.data_dir = dir_.File("target-" + name);
    o.sync = false;
    EXPECT_FALSE(RestoreBackup(o).ok()) << name;
    EXPECT_FALSE(fs::exists(o.data_dir)) << name;  // nothing written
  }
  EXPECT_TRUE(VerifyBackup(dir_.File("b")).ok());
}

TEST_F(BackupTest, NonEmptyTargetNeedsForceAndNeverAnOpenStore) {
  ASSERT_TRUE(Backup(dir_.File("b")).ok());
  RestoreOptions o;
  o.backup_dir = dir_.File("b");
  o.data_dir = dir_.File("data");  // the open store's own
  o.sync = false;
  o.force = true;
  Result<RestoreReport> r = RestoreBackup(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().reason(), "locked") << r.status().ToString();

  store_.reset();  // stopped; its data is not empty
  o.force = false;
  r = RestoreBackup(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().reason(), "not_empty") << r.status().ToString();
  EXPECT_NE(r.status().message().find("--force"), std::string::npos);

  // An empty directory (or one with only the LOCK a stopped komoku leaves)
  // takes a restore without force.
  fs::create_directories(dir_.File("empty"));
  std::ofstream(dir_.File("empty/LOCK")) << "";
  o.data_dir = dir_.File("empty");
  EXPECT_TRUE(RestoreBackup(o).ok());

  o.data_dir = dir_.File("data");
  o.force = true;
  r = RestoreBackup(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->replaced, fs::path(dir_.File("data")).lexically_normal().string());
  std::unique_ptr<Store> again = OpenTestStore(ManualCompactionOptions(dir_.File("data"), &clock_));
  ASSERT_NE(again, nullptr);
  EXPECT_FALSE(again->Segments().empty());
}

}  // namespace
}  // namespace komoku::store

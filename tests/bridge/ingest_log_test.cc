// The MQTT ingest log: records come back in order, whole, across files and
// reopenings; a torn tail is cut off at open; released records are gone;
// a failed write keeps the record in memory, in order.
#include "bridge/ingest_log.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.h"

namespace komoku::bridge {
namespace {

using store::testing::TempDir;

IngestRecord Rec(int i, size_t payload_bytes = 0) {
  IngestRecord r;
  r.topic = "komoku/set/k" + std::to_string(i % 7);
  r.payload = std::to_string(i);
  if (payload_bytes > r.payload.size()) r.payload.resize(payload_bytes, 'x');
  r.received_ms = 1700000000000LL + i;
  r.retained = i % 3 == 0;
  if (i % 5 == 0) {
    r.response_topic = "reply/" + std::to_string(i);
    r.correlation_data = std::string("\0\1c", 3);
    r.has_correlation_data = true;
  }
  return r;
}

void ExpectSame(const IngestRecord& got, const IngestRecord& want) {
  EXPECT_EQ(got.topic, want.topic);
  EXPECT_EQ(got.payload, want.payload);
  EXPECT_EQ(got.received_ms, want.received_ms);
  EXPECT_EQ(got.retained, want.retained);
  EXPECT_EQ(got.response_topic, want.response_topic);
  EXPECT_EQ(got.correlation_data, want.correlation_data);
  EXPECT_EQ(got.has_correlation_data, want.has_correlation_data);
}

// Reads every record there is now.
std::vector<IngestRecord> ReadAll(IngestLog& log) {
  std::vector<IngestRecord> all, batch;
  while (log.Read(&batch, 100, std::chrono::milliseconds(0)) > 0) {
    for (auto& r : batch) all.push_back(std::move(r));
  }
  return all;
}

std::vector<std::string> LogFiles(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(IngestLogTest, RecordsComeBackInOrderAndWhole) {
  TempDir dir;
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
  EXPECT_EQ((*log)->Unread(), 1000u);
  std::vector<IngestRecord> all = ReadAll(**log);
  ASSERT_EQ(all.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ExpectSame(all[i], Rec(i));
  EXPECT_EQ((*log)->Unread(), 0u);
}

TEST(IngestLogTest, ReleasingEverythingEmptiesTheFile) {
  TempDir dir;
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
  ASSERT_EQ(ReadAll(**log).size(), 10u);
  EXPECT_GT((*log)->FileBytes(), 0u);
  (*log)->Release((*log)->ReadPosition());
  EXPECT_EQ((*log)->FileBytes(), 0u);
  // Appends after the truncation are read from the start of the file.
  ASSERT_TRUE((*log)->Append(Rec(42)).ok());
  std::vector<IngestRecord> after = ReadAll(**log);
  ASSERT_EQ(after.size(), 1u);
  ExpectSame(after[0], Rec(42));
}

TEST(IngestLogTest, UnreleasedRecordsAreReadAgainAfterReopening) {
  TempDir dir;
  {
    auto log = IngestLog::Open(dir.path());
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 20; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
    std::vector<IngestRecord> batch;
    ASSERT_EQ((*log)->Read(&batch, 5, std::chrono::milliseconds(0)), 5u);
    (*log)->Release((*log)->ReadPosition());                               // the first 5 are stored
    ASSERT_EQ((*log)->Read(&batch, 5, std::chrono::milliseconds(0)), 5u);  // read, not stored
  }
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  // The file is released only whole: all 20 come back (the store drops the
  // repeats of what it has).
  EXPECT_EQ((*log)->recovered().records, 20u);
  std::vector<IngestRecord> all = ReadAll(**log);
  ASSERT_EQ(all.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    ExpectSame(all[i], Rec(i));
    EXPECT_TRUE(all[i].recovered);
  }
  // New appends come after the recovered ones, in a new file.
  ASSERT_TRUE((*log)->Append(Rec(100)).ok());
  std::vector<IngestRecord> more = ReadAll(**log);
  ASSERT_EQ(more.size(), 1u);
  ExpectSame(more[0], Rec(100));
  EXPECT_FALSE(more[0].recovered);
  (*log)->Release((*log)->ReadPosition());
  EXPECT_EQ((*log)->FileBytes(), 0u);
  EXPECT_EQ(LogFiles(dir.path()).size(), 1u);  // the old file is deleted
}

TEST(IngestLogTest, TornTailIsCutOffAtOpen) {
  TempDir dir;
  std::string file;
  {
    auto log = IngestLog::Open(dir.path());
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
    file = dir.File(LogFiles(dir.path()).back());
  }
  const auto size = std::filesystem::file_size(file);
  // A fourth record of which the process wrote only a part.
  {
    std::ofstream out(file, std::ios::app | std::ios::binary);
    out << std::string("\x40\x00\x00\x00\x12\x34", 6);
  }
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ((*log)->recovered().records, 3u);
  EXPECT_EQ((*log)->recovered().torn_bytes, 6u);
  EXPECT_EQ(std::filesystem::file_size(file), size);
  std::vector<IngestRecord> all = ReadAll(**log);
  ASSERT_EQ(all.size(), 3u);
  ExpectSame(all[2], Rec(2));
}

TEST(IngestLogTest, DamagedRecordEndsTheFileThere) {
  TempDir dir;
  std::string file;
  {
    auto log = IngestLog::Open(dir.path());
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
    file = dir.File(LogFiles(dir.path()).back());
  }
  // Flip a byte in the payload of the third record: its checksum fails.
  std::vector<IngestRecord> before;
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t at = 0;
    for (int i = 0; i < 2; ++i) {
      uint32_t len =
          static_cast<unsigned char>(bytes[at]) | static_cast<unsigned char>(bytes[at + 1]) << 8;
      at += 8 + len;
    }
    f.seekp(static_cast<std::streamoff>(at + 30));
    f.put('!');
  }
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->recovered().records, 2u);
  EXPECT_GT((*log)->recovered().torn_bytes, 0u);
  EXPECT_EQ(ReadAll(**log).size(), 2u);
}

TEST(IngestLogTest, FilesRotateAndAreDeletedOnceReleased) {
  TempDir dir;
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  // 64 KB records: a new file every 128 of them.
  const size_t n = 3 * IngestLog::kMaxFileBytes / (64 << 10) + 10;
  for (size_t i = 0; i < n; ++i)
    ASSERT_TRUE((*log)->Append(Rec(static_cast<int>(i), 64 << 10)).ok());
  EXPECT_GE(LogFiles(dir.path()).size(), 4u);
  std::vector<IngestRecord> batch;
  size_t read = 0;
  while ((*log)->Read(&batch, 50, std::chrono::milliseconds(0)) > 0) {
    for (const auto& r : batch) ExpectSame(r, Rec(static_cast<int>(read++), 64 << 10));
    (*log)->Release((*log)->ReadPosition());
  }
  EXPECT_EQ(read, n);
  EXPECT_EQ(LogFiles(dir.path()).size(), 1u);
  EXPECT_EQ((*log)->FileBytes(), 0u);
}

TEST(IngestLogTest, FailedWritesKeepRecordsInMemoryInOrder) {
  TempDir dir;
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  // A file size limit makes write() fail with EFBIG, as a full disk fails
  // it with ENOSPC.
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  int failed = 0;
  for (int i = 0; i < 300; ++i) {
    if (!(*log)->Append(Rec(i)).ok()) ++failed;
  }
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  signal(SIGXFSZ, old_handler);
  EXPECT_GT(failed, 0);
  EXPECT_GT((*log)->spilled(), 0u);
  std::vector<IngestRecord> all = ReadAll(**log);
  ASSERT_EQ(all.size(), 300u);
  for (int i = 0; i < 300; ++i) ExpectSame(all[i], Rec(i));
  // Once the memory is drained, appends go to the file again.
  (*log)->Release((*log)->ReadPosition());
  ASSERT_TRUE((*log)->Append(Rec(7)).ok());
  EXPECT_GT((*log)->FileBytes(), 0u);
}

TEST(IngestLogTest, ReadWaitsForAnAppend) {
  TempDir dir;
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (void)(*log)->Append(Rec(1));
  });
  std::vector<IngestRecord> batch;
  size_t got = 0;
  for (int i = 0; i < 100 && got == 0; ++i) {
    got = (*log)->Read(&batch, 10, std::chrono::milliseconds(1000));
  }
  writer.join();
  ASSERT_EQ(got, 1u);
  ExpectSame(batch[0], Rec(1));
}

}  // namespace
}  // namespace komoku::bridge

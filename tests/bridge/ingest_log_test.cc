// The MQTT ingest log: records come back in order, whole, across files and
// reopenings and upgrades; a torn tail is cut off at open; released records
// are gone, also after a crash; without space for a file the records are
// kept in memory, in order.
#include "bridge/ingest_log.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/crc32c.h"
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

// The header of a file of format 2 (docs/storage.md).
constexpr uint64_t kFileHeaderBytes = 32;

void PutString(const std::string& s, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(s.size() >> (8 * i)));
  out->append(s);
}

// Appends record `r` in format 1, an older Komoku's: u32 body length, u32
// CRC-32C of the body, body.
void AppendFormat1(const IngestRecord& r, std::string* out) {
  std::string body;
  body.push_back(1);
  body.push_back(static_cast<char>((r.retained ? 1 : 0) | (r.has_correlation_data ? 2 : 0)));
  for (int i = 0; i < 8; ++i) body.push_back(static_cast<char>(r.received_ms >> (8 * i)));
  for (const std::string* s : {&r.topic, &r.payload, &r.response_topic, &r.correlation_data}) {
    PutString(*s, &body);
  }
  const uint32_t crc = Crc32c(body.data(), body.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(body.size() >> (8 * i)));
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(crc >> (8 * i)));
  out->append(body);
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

TEST(IngestLogTest, ReleasingEverythingRewindsTheFile) {
  TempDir dir;
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
  ASSERT_EQ(ReadAll(**log).size(), 10u);
  EXPECT_GT((*log)->FileBytes(), 0u);
  (*log)->Release((*log)->ReadPosition());
  EXPECT_EQ((*log)->FileBytes(), 0u);
  // Appends after the rewind are read from the start of the file.
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
  uint64_t end = 0;
  {
    auto log = IngestLog::Open(dir.path());
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
    file = dir.File(LogFiles(dir.path()).back());
    end = kFileHeaderBytes + (*log)->FileBytes();
  }
  // A fourth record of which the process wrote only the header: a 64-byte
  // body, a checksum, and the file's epoch (1).
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(end));
    f.write("\x40\x00\x00\x00\x12\x34\x56\x78\x01\x00\x00\x00", 12);
  }
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ((*log)->recovered().records, 3u);
  EXPECT_EQ((*log)->recovered().torn_bytes, 12u + 64u);
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
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t at = kFileHeaderBytes;
    for (int i = 0; i < 2; ++i) {
      uint32_t len =
          static_cast<unsigned char>(bytes[at]) | static_cast<unsigned char>(bytes[at + 1]) << 8;
      at += 12 + len;
    }
    f.seekp(static_cast<std::streamoff>(at + 34));
    f.put('!');
  }
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->recovered().records, 2u);
  EXPECT_GT((*log)->recovered().torn_bytes, 0u);
  EXPECT_EQ(ReadAll(**log).size(), 2u);
}

// A rewound file keeps the old records' bytes past the new ones; they are
// of the old epoch, so a crash does not bring them back.
TEST(IngestLogTest, RecordsBeforeARewindAreNotReadAgainAfterACrash) {
  TempDir dir;
  {
    auto log = IngestLog::Open(dir.path());
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
    ASSERT_EQ(ReadAll(**log).size(), 10u);
    (*log)->Release((*log)->ReadPosition());  // stored: the file is rewound
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
    ASSERT_EQ(ReadAll(**log).size(), 10u);
    (*log)->Release((*log)->ReadPosition());  // and again
    for (int i = 50; i < 53; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
  }  // the process ends without storing the last three
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->recovered().records, 3u);
  EXPECT_EQ((*log)->recovered().torn_bytes, 0u);
  std::vector<IngestRecord> all = ReadAll(**log);
  ASSERT_EQ(all.size(), 3u);
  for (int i = 0; i < 3; ++i) ExpectSame(all[i], Rec(50 + i));
}

// An older Komoku's files (format 1: no header, no epochs) are read at the
// start after an upgrade, a torn tail cut off as before.
TEST(IngestLogTest, FilesOfAnOlderKomokuAreReadAfterAnUpgrade) {
  TempDir dir;
  std::string bytes;
  for (int i = 0; i < 4; ++i) AppendFormat1(Rec(i), &bytes);
  bytes.append("\x40\x00\x00", 3);  // a torn fifth
  {
    std::ofstream out(dir.File("ingest-0000000007.log"), std::ios::binary);
    out << bytes;
  }
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ((*log)->recovered().records, 4u);
  EXPECT_EQ((*log)->recovered().torn_bytes, 3u);
  ASSERT_TRUE((*log)->Append(Rec(9)).ok());
  std::vector<IngestRecord> all = ReadAll(**log);
  ASSERT_EQ(all.size(), 5u);
  for (int i = 0; i < 4; ++i) {
    ExpectSame(all[i], Rec(i));
    EXPECT_TRUE(all[i].recovered);
  }
  ExpectSame(all[4], Rec(9));
  EXPECT_FALSE(all[4].recovered);
  (*log)->Release((*log)->ReadPosition());
  EXPECT_EQ(LogFiles(dir.path()), std::vector<std::string>{"ingest-0000000008.log"});
}

TEST(IngestLogTest, FilesRotateAndAreDeletedOnceReleased) {
  TempDir dir;
  auto log = IngestLog::Open(dir.path());
  ASSERT_TRUE(log.ok());
  // 64 KB records: a new file every 31 of them.
  const size_t n = 3 * IngestLog::kFileBytes / (64 << 10) + 10;
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
  // A file size limit makes allocating the next file fail with EFBIG, as a
  // full disk fails it with ENOSPC. 16 KB records fill the first file after
  // about 127.
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  int failed = 0;
  for (int i = 0; i < 300; ++i) {
    if (!(*log)->Append(Rec(i, 16 << 10)).ok()) ++failed;
  }
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  signal(SIGXFSZ, old_handler);
  EXPECT_GT(failed, 0);
  EXPECT_GT((*log)->spilled(), 0u);
  std::vector<IngestRecord> all = ReadAll(**log);
  ASSERT_EQ(all.size(), 300u);
  for (int i = 0; i < 300; ++i) ExpectSame(all[i], Rec(i, 16 << 10));
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

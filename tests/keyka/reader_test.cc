// The reader against a std::map oracle: every tree size from 0 to 300 with
// every key and every gap, random binary keys (printed, replayable seed),
// 64 KiB keys, one million keys, and the open-time checks.
#include "keyka/reader.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "keyka/format.h"
#include "oracle.h"
#include "test_util.h"

namespace komoku::keyka {
namespace {

using testing::CheckPrefix;
using testing::CheckProbe;
using testing::CheckRange;
using testing::Oracle;
using testing::TempDir;

// A 3-byte key "k" + big-endian 16-bit v; odd v are stored, even v are gaps.
std::string Key16(unsigned v) {
  return std::string{'k', static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

Reader OpenOrDie(const std::string& path) {
  Result<Reader> reader = Reader::Open(path);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return std::move(reader).value();
}

TEST(ReaderTest, EveryTreeSizeFrom0To300EveryKeyAndGap) {
  TempDir dir;
  for (unsigned n = 0; n <= 300; ++n) {
    SCOPED_TRACE("n = " + std::to_string(n));
    Oracle oracle;
    for (unsigned i = 0; i < n; ++i) oracle[Key16(2 * i + 1)] = 1000 + i;
    const std::string path = dir.File("n.keyka");
    ASSERT_TRUE(testing::PackMap(path, oracle).ok());
    Reader reader = OpenOrDie(path);
    Stats stats;
    ASSERT_TRUE(reader.Verify(&stats).ok()) << reader.Verify().ToString();
    EXPECT_EQ(stats.keys, n);
    EXPECT_EQ(stats.depth, BitWidth(n));
    EXPECT_EQ(reader.empty(), n == 0);
    for (unsigned v = 0; v <= 2 * n + 1; ++v) {
      ASSERT_EQ(CheckProbe(reader, oracle, Key16(v)), "");
    }
    ASSERT_EQ(CheckProbe(reader, oracle, ""), "");
    ASSERT_EQ(CheckProbe(reader, oracle, "k"), "");
    ASSERT_EQ(CheckProbe(reader, oracle, "l"), "");
    ASSERT_EQ(CheckRange(reader, oracle, Key16(0), Key16(2 * n + 2)), "");
    ASSERT_EQ(CheckRange(reader, oracle, Key16(n / 2), Key16(n)), "");
    ASSERT_EQ(CheckPrefix(reader, oracle, ""), "");
    ASSERT_EQ(CheckPrefix(reader, oracle, "k"), "");
    ASSERT_EQ(CheckPrefix(reader, oracle, std::string("k\0", 2)), "");
  }
}

TEST(ReaderTest, RandomKeysAgainstStdMap) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE("KOMOKU_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Oracle oracle;
    const size_t n = rng() % (round < 20 ? 64 : 3000);
    while (oracle.size() < n) oracle[testing::RandomKey(rng)] = rng();
    const std::string path = dir.File("random.keyka");
    ASSERT_TRUE(testing::PackMap(path, oracle).ok());
    Reader reader = OpenOrDie(path);
    ASSERT_TRUE(reader.Verify().ok()) << reader.Verify().ToString();
    std::vector<std::string> keys;
    for (const auto& kv : oracle) keys.push_back(kv.first);
    auto some_key = [&]() -> std::string {
      return keys.empty() ? testing::RandomKey(rng) : keys[rng() % keys.size()];
    };
    for (int q = 0; q < 300; ++q) {
      const std::string stored = some_key();
      ASSERT_EQ(CheckProbe(reader, oracle, stored), "");
      ASSERT_EQ(CheckProbe(reader, oracle, stored.substr(0, rng() % (stored.size() + 1))), "");
      ASSERT_EQ(CheckProbe(reader, oracle, stored + std::string(1, static_cast<char>(rng()))), "");
      ASSERT_EQ(CheckProbe(reader, oracle, testing::RandomKey(rng)), "");
    }
    for (int q = 0; q < 40; ++q) {
      const std::string a = rng() % 2 ? some_key() : testing::RandomKey(rng);
      const std::string b = rng() % 2 ? some_key() : testing::RandomKey(rng);
      ASSERT_EQ(CheckRange(reader, oracle, a, b), "");
      ASSERT_EQ(CheckRange(reader, oracle, b, a), "");
      const std::string p = some_key();
      ASSERT_EQ(CheckPrefix(reader, oracle, p.substr(0, rng() % (p.size() + 1))), "");
      ASSERT_EQ(CheckPrefix(reader, oracle, testing::RandomKey(rng, 2)), "");
    }
  }
}

TEST(ReaderTest, LargestKeys) {
  TempDir dir;
  Oracle oracle;
  const std::string big(kMaxKeySize, 'x');
  oracle[big] = 1;
  oracle[big.substr(0, kMaxKeySize - 1)] = 2;
  oracle[std::string(kMaxKeySize, '\xff')] = 3;
  oracle[std::string(kMaxKeySize, '\0')] = 4;
  oracle[std::string(kMaxKeySize - 1, 'x') + "y"] = 5;
  oracle["x"] = 6;
  const std::string path = dir.File("big.keyka");
  ASSERT_TRUE(testing::PackMap(path, oracle).ok());
  Reader reader = OpenOrDie(path);
  ASSERT_TRUE(reader.Verify().ok());
  for (const auto& [key, value] : oracle) {
    ASSERT_EQ(CheckProbe(reader, oracle, key), "");
    ASSERT_EQ(CheckProbe(reader, oracle, key.substr(0, 1000)), "");
  }
  ASSERT_EQ(CheckPrefix(reader, oracle, "xxx"), "");
  ASSERT_EQ(CheckPrefix(reader, oracle, "\xff"), "");
}

// Keys shaped like the store's: name, 0x00, big-endian milliseconds.
std::string SeriesKey(const std::string& name, uint64_t ms) {
  std::string key = name;
  key.push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(ms >> shift));
  return key;
}

TEST(ReaderTest, OneMillionKeysRoundTrip) {
  TempDir dir;
  const std::string path = dir.File("million.keyka");
  const std::vector<std::string> names = {"garage/door", "hall/motion", "kitchen/temp",
                                          "living_room/humidity"};
  constexpr uint64_t kPerName = 250000;
  {
    PackerOptions options;
    options.sync = false;
    Result<Packer> packer = Packer::Create(path, options);
    ASSERT_TRUE(packer.ok());
    for (const std::string& name : names) {
      for (uint64_t i = 0; i < kPerName; ++i) {
        ASSERT_TRUE(packer->Add(SeriesKey(name, 1700000000000 + i * 1000), i).ok());
      }
    }
    ASSERT_TRUE(packer->Finish().ok()) << packer->status().ToString();
  }
  Reader reader = OpenOrDie(path);
  Stats stats;
  ASSERT_TRUE(reader.Verify(&stats).ok()) << reader.Verify().ToString();
  EXPECT_EQ(stats.keys, names.size() * kPerName);
  EXPECT_EQ(stats.depth, 20);
  uint64_t count = 0;
  std::string previous;
  Iterator it = reader.All();
  for (; it.Valid(); it.Next(), ++count) {
    ASSERT_EQ(it.value(), count % kPerName);
    previous.assign(it.key());
  }
  EXPECT_TRUE(it.status().ok());
  EXPECT_EQ(count, names.size() * kPerName);
  EXPECT_EQ(previous, SeriesKey(names.back(), 1700000000000 + (kPerName - 1) * 1000));
  std::mt19937_64 rng(testing::TestSeed());
  for (int q = 0; q < 10000; ++q) {
    const std::string& name = names[rng() % names.size()];
    const uint64_t i = rng() % kPerName;
    Result<uint64_t> got = reader.Get(SeriesKey(name, 1700000000000 + i * 1000));
    ASSERT_TRUE(got.ok());
    ASSERT_EQ(*got, i);
    Result<Entry> le = reader.Find(SeriesKey(name, 1700000000000 + i * 1000 + 999), Nearest::kLe);
    ASSERT_TRUE(le.ok());
    ASSERT_EQ(le->value, i);
  }
  // One sensor's hour, by prefix and by range.
  uint64_t hour = 0;
  for (Iterator r = reader.Range(SeriesKey("hall/motion", 1700000000000),
                                 SeriesKey("hall/motion", 1700000000000 + 3600000));
       r.Valid(); r.Next()) {
    ++hour;
  }
  EXPECT_EQ(hour, 3600u);
  uint64_t prefixed = 0;
  for (Iterator p = reader.Prefix(std::string("kitchen/temp\0", 13)); p.Valid(); p.Next()) {
    ++prefixed;
  }
  EXPECT_EQ(prefixed, kPerName);
}

TEST(ReaderTest, IteratorsSurviveMovingTheReader) {
  Result<Reader> opened = Reader::Open(testing::DataDir() + "/text-100.keyka");
  ASSERT_TRUE(opened.ok());
  Reader reader = std::move(opened).value();
  Iterator it = reader.Prefix("key00");
  Reader moved = std::move(reader);
  int count = 0;
  for (; it.Valid(); it.Next()) ++count;
  EXPECT_EQ(count, 100);
  EXPECT_TRUE(moved.Get("key0042").ok());
  EXPECT_TRUE(reader.Get("key0042").status().IsNotFound());  // NOLINT: moved-from is empty
}

TEST(ReaderTest, OpenErrorsNameTheFileAndReason) {
  TempDir dir;
  Result<Reader> missing = Reader::Open(dir.File("missing.keyka"));
  EXPECT_TRUE(missing.status().IsIOError());
  EXPECT_NE(missing.status().message().find("missing.keyka"), std::string::npos);
  EXPECT_TRUE(Reader::Open(dir.path()).status().IsIOError());
  testing::WriteFile(dir.File("empty.keyka"), "");
  Result<Reader> empty = Reader::Open(dir.File("empty.keyka"));
  EXPECT_TRUE(empty.status().IsCorruption());
  EXPECT_NE(empty.status().message().find("empty file"), std::string::npos);
  testing::WriteFile(dir.File("text.keyka"), "hello, world\n");
  Result<Reader> text = Reader::Open(dir.File("text.keyka"));
  EXPECT_TRUE(text.status().IsCorruption());
  EXPECT_NE(text.status().message().find("not a KeyKa v0 file (bad magic)"), std::string::npos);
}

// A file 4 GiB longer than a good one (sparse, so it costs no disk): a
// 32-bit target (armhf) must refuse it rather than map it short, which would
// hand FromBytes exactly the good file; a 64-bit one maps all of it (Open
// reads only the root, so the zeros after the tree are for Verify to find).
TEST(ReaderTest, FileLargerThanTheAddressSpaceIsRefused) {
  TempDir dir;
  const std::string path = dir.File("big.keyka");
  const std::string good = testing::ReadFile(testing::DataDir() + "/example-abc.keyka");
  testing::WriteFile(path, good);
  const uint64_t size = good.size() + (uint64_t{1} << 32);
  std::filesystem::resize_file(path, size);
  Result<Reader> big = Reader::Open(path);
  if (sizeof(size_t) < 8) {
    ASSERT_FALSE(big.ok());
    EXPECT_TRUE(big.status().IsIOError()) << big.status().ToString();
    EXPECT_NE(big.status().message().find("too large to map"), std::string::npos)
        << big.status().ToString();
  } else {
    ASSERT_TRUE(big.ok()) << big.status().ToString();
    EXPECT_EQ(big->file_size(), size);
  }
}

TEST(ReaderTest, FromBytesReadsAnImage) {
  const std::string bytes = testing::ReadFile(testing::DataDir() + "/example-abc.keyka");
  Result<Reader> reader = Reader::FromBytes(bytes, "abc");
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*reader->Get("b"), 2u);
  EXPECT_EQ(reader->file_size(), 53u);
  Result<Entry> lt = reader->Find("b", Nearest::kLt);
  ASSERT_TRUE(lt.ok());
  EXPECT_EQ(lt->key, "a");
  EXPECT_TRUE(reader->Find("a", Nearest::kLt).status().IsNotFound());
  EXPECT_TRUE(reader->Find("c", Nearest::kGt).status().IsNotFound());
}

}  // namespace
}  // namespace komoku::keyka

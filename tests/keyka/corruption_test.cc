// Untrusted files: every truncation of a small file, many randomly bit-flipped
// copies, and the deliberately broken files of tests/data/keyka/broken. Each
// must give an error or a consistent answer — never a crash, an out-of-bounds
// read (run under ASan/UBSan: `make test-asan`) or an endless walk.
//
// "Consistent": when Verify() accepts a damaged file, every lookup and scan
// must agree with a std::map built from the file's own forward scan.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "keyka/reader.h"
#include "oracle.h"
#include "test_util.h"

namespace komoku::keyka {
namespace {

using testing::Oracle;

// Runs every kind of query on `bytes`. Returns a disagreement, or "" when the
// file was rejected or answered consistently.
std::string Exercise(const std::string& bytes, const std::vector<std::string>& probes) {
  Result<Reader> opened = Reader::FromBytes(bytes, "damaged");
  if (!opened.ok()) {
    if (!opened.status().IsCorruption()) return "open: " + opened.status().ToString();
    return "";
  }
  const Reader& reader = *opened;
  const bool sound = reader.Verify().ok();

  Oracle scanned;
  Iterator it = reader.All();
  for (size_t steps = 0; it.Valid() && steps < 100000; it.Next(), ++steps) {
    scanned.emplace(std::string(it.key()), it.value());
  }
  if (sound && !it.status().ok()) return "verified file fails to scan: " + it.status().ToString();
  for (it.SeekToLast(); it.Valid(); it.Prev()) {
  }

  for (const std::string& probe : probes) {
    if (sound) {
      std::string err = testing::CheckProbe(reader, scanned, probe);
      if (err.empty()) err = testing::CheckPrefix(reader, scanned, probe.substr(0, 1));
      if (err.empty()) err = testing::CheckRange(reader, scanned, probe, probe + "\xff");
      if (!err.empty()) return "verified file disagrees with its scan: " + err;
    } else {
      // Answers may be errors or partial; they only must not crash or hang.
      (void)reader.Get(probe);
      for (Nearest dir : {Nearest::kGe, Nearest::kGt, Nearest::kLe, Nearest::kLt}) {
        (void)reader.Find(probe, dir);
      }
      int steps = 0;
      for (Iterator r = reader.Range(probe, probe + "\xff"); r.Valid() && steps < 1000; r.Next()) {
        ++steps;
      }
      Iterator p = reader.Prefix(probe.substr(0, 1));
      for (p.SeekToLast(); p.Valid() && steps < 2000; p.Prev()) ++steps;
    }
  }
  return "";
}

std::vector<std::string> ProbesFor(const testing::Pairs& pairs) {
  std::vector<std::string> probes = {"", std::string(1, '\0'), "\xff", "zzz"};
  for (const auto& [key, value] : pairs) {
    probes.push_back(key);
    probes.push_back(key + '\0');
  }
  return probes;
}

testing::Pairs SmallPairs() {
  return {{"", 1},         {"a", 2},  {"ab", 3},        {std::string("ab\0", 3), 4},
          {"abc", 5},      {"b", 6},  {"b\xff", 7},     {"c", 8},
          {"cafe", 9},     {"d", 10}, {"\xfe\xff", 11}, {"\xff", 12},
          {"\xff\xff", 13}};
}

TEST(CorruptionTest, TruncatedAtEveryByte) {
  testing::TempDir dir;
  const testing::Pairs pairs = SmallPairs();
  const std::string bytes = testing::PackToBytes(dir, pairs);
  const std::vector<std::string> probes = ProbesFor(pairs);
  for (size_t size = 0; size < bytes.size(); ++size) {
    // A copy of exactly `size` bytes, so ASan sees any read past its end.
    const std::string cut = bytes.substr(0, size);
    ASSERT_EQ(Exercise(cut, probes), "") << "truncated to " << size << " bytes";
    Result<Reader> reader = Reader::FromBytes(cut);
    if (reader.ok()) {
      EXPECT_FALSE(reader->Verify().ok()) << "truncated to " << size << " bytes verifies";
    }
  }
  ASSERT_EQ(Exercise(bytes, probes), "");
}

TEST(CorruptionTest, GoldenFilesTruncatedAtEveryByte) {
  for (const char* name : {"example-abc", "text-9", "text-100"}) {
    const std::string bytes = testing::ReadFile(testing::DataDir() + "/" + name + ".keyka");
    const std::vector<std::string> probes =
        ProbesFor(testing::LoadTsv(testing::DataDir() + "/" + name + ".tsv", false));
    for (size_t size = 0; size < bytes.size(); ++size) {
      ASSERT_EQ(Exercise(bytes.substr(0, size), probes), "") << name << " cut to " << size;
    }
  }
}

TEST(CorruptionTest, RandomBitFlips) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE("KOMOKU_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  testing::TempDir dir;
  testing::Pairs pairs = SmallPairs();
  for (int i = 0; i < 40; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "s%03d", i);
    pairs.emplace_back(key, i);
  }
  std::sort(pairs.begin(), pairs.end());
  const std::string clean = testing::PackToBytes(dir, pairs);
  const std::vector<std::string> probes = ProbesFor(pairs);
  int rejected = 0;
  int verified = 0;
  for (int copy = 0; copy < 3000; ++copy) {
    std::string damaged = clean;
    const int flips = 1 + static_cast<int>(rng() % 4);
    std::string where;
    for (int f = 0; f < flips; ++f) {
      // Mostly the tree's fixed fields; sometimes anywhere, magic included.
      const size_t pos = rng() % damaged.size();
      const int bit = static_cast<int>(rng() % 8);
      damaged[pos] = static_cast<char>(damaged[pos] ^ (1 << bit));
      where += " " + std::to_string(pos) + ":" + std::to_string(bit);
    }
    ASSERT_EQ(Exercise(damaged, probes), "") << "copy " << copy << ", flips at" << where;
    Result<Reader> reader = Reader::FromBytes(damaged);
    if (!reader.ok() || !reader->Verify().ok()) {
      ++rejected;
    } else {
      ++verified;
    }
  }
  // Flips in values and key bytes can leave a sound file; most flips cannot.
  EXPECT_GT(rejected, 0);
  RecordProperty("rejected", rejected);
  RecordProperty("verified", verified);
}

struct Broken {
  const char* name;
  bool opens;           // Reader::Open succeeds (the damage is past the root)
  const char* message;  // in the Open error, else in the Verify error
};

const Broken kBroken[] = {
    {"bad-magic", false, "not a KeyKa v0 file (bad magic)"},
    {"short-header", false, "too short"},
    {"root-outside", false, "root: branch at tree offset 1000 lies outside"},
    {"offset-outside", true, "branch at tree offset 15 has right reference -3400"},
    {"cycle", true, "branch at tree offset 15 has left reference 15, the format requires -4"},
    {"truncated", true, "leaf at tree offset 34 lies outside"},
    {"unsorted", true, "key 'b' at tree offset 15 is not greater than the key before it"},
    {"wrong-right", true,
     "branch at tree offset 15 has right reference 0, the format requires -34"},
    {"trailing-bytes", true, "branch at tree offset 45 lies outside"},
    {"deep-chain", true, "branch at tree offset 14 has left reference 378"},
};

class BrokenFileTest : public ::testing::TestWithParam<Broken> {};

TEST_P(BrokenFileTest, GivesAClearError) {
  const std::string path = testing::DataDir() + "/broken/" + GetParam().name + ".keyka";
  Result<Reader> reader = Reader::Open(path);
  if (!GetParam().opens) {
    ASSERT_FALSE(reader.ok());
    EXPECT_TRUE(reader.status().IsCorruption());
    EXPECT_NE(reader.status().message().find(GetParam().message), std::string::npos)
        << reader.status().message();
    EXPECT_NE(reader.status().message().find(path), std::string::npos);
    return;
  }
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  const Status st = reader->Verify();
  EXPECT_TRUE(st.IsCorruption());
  EXPECT_NE(st.message().find(GetParam().message), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(path), std::string::npos);
  // Lookups never crash; those that reach the damage report it.
  for (const char* key : {"a", "b", "c", "d", ""}) {
    Result<uint64_t> got = reader->Get(key);
    EXPECT_TRUE(got.ok() || got.status().IsNotFound() || got.status().IsCorruption());
  }
  EXPECT_EQ(Exercise(testing::ReadFile(path), {"a", "b", "c", "z", ""}), "");
}

TEST(BrokenFileTest, LookupsReachingTheDamageReportIt) {
  const std::string dir = testing::DataDir() + "/broken/";
  auto get = [&](const char* name, const char* key) -> Status {
    Result<Reader> reader = Reader::Open(dir + name + ".keyka");
    EXPECT_TRUE(reader.ok());
    return reader->Get(key).status();
  };
  auto expect_corruption = [](const Status& st, const std::string& text) {
    EXPECT_TRUE(st.IsCorruption()) << st.ToString();
    EXPECT_NE(st.message().find(text), std::string::npos) << st.message();
  };
  expect_corruption(get("offset-outside", "c"), "leaf at tree offset 3400 lies outside");
  EXPECT_TRUE(get("offset-outside", "a").ok());
  expect_corruption(get("cycle", "a"),
                    "branch at tree offset 15 lies outside its allowed range [4, 15)");
  expect_corruption(get("truncated", "c"), "leaf at tree offset 34 lies outside");
  expect_corruption(get("deep-chain", "a"), "walk is deeper than 7 levels");
}

INSTANTIATE_TEST_SUITE_P(Broken, BrokenFileTest, ::testing::ValuesIn(kBroken),
                         [](const ::testing::TestParamInfo<Broken>& info) {
                           std::string name = info.param.name;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace komoku::keyka

// The golden files of tests/data/keyka, written by an independent KeyKa v0
// implementation: packing each .tsv gives the .keyka byte for byte, and the
// reader finds every pair of each .keyka and nothing else.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "keyka/reader.h"
#include "test_util.h"

namespace komoku::keyka {
namespace {

using testing::DataDir;
using testing::LoadTsv;
using testing::Pairs;
using testing::ReadFile;
using testing::TempDir;

struct Golden {
  const char* name;
  bool hex;  // keys in the TSV are hex
};

const Golden kGoldens[] = {
    {"example-abc", false}, {"text-0", false},    {"text-1", false},    {"text-2", false},
    {"text-3", false},      {"text-7", false},    {"text-8", false},    {"text-9", false},
    {"text-100", false},    {"binary-300", true}, {"series-150", true},
};

class GoldenTest : public ::testing::TestWithParam<Golden> {
 protected:
  std::string Path(const char* ext) const { return DataDir() + "/" + GetParam().name + "." + ext; }
};

TEST_P(GoldenTest, PackGivesIdenticalBytes) {
  TempDir dir;
  const Pairs pairs = LoadTsv(Path("tsv"), GetParam().hex);
  const std::string packed = testing::PackToBytes(dir, pairs);
  const std::string golden = ReadFile(Path("keyka"));
  ASSERT_EQ(packed.size(), golden.size());
  EXPECT_TRUE(packed == golden) << "bytes differ from " << Path("keyka");
}

TEST_P(GoldenTest, ReaderFindsEveryPairAndNothingElse) {
  const Pairs pairs = LoadTsv(Path("tsv"), GetParam().hex);
  Result<Reader> reader = Reader::Open(Path("keyka"));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  Stats stats;
  ASSERT_TRUE(reader->Verify(&stats).ok()) << reader->Verify().ToString();
  EXPECT_EQ(stats.keys, pairs.size());

  for (const auto& [key, value] : pairs) {
    Result<uint64_t> got = reader->Get(key);
    ASSERT_TRUE(got.ok()) << testing::HexEncode(key) << ": " << got.status().ToString();
    EXPECT_EQ(*got, value);
  }
  // A full scan yields exactly the pairs, in order.
  Pairs scanned;
  Iterator it = reader->All();
  for (; it.Valid(); it.Next()) scanned.emplace_back(std::string(it.key()), it.value());
  ASSERT_TRUE(it.status().ok()) << it.status().ToString();
  EXPECT_EQ(scanned, pairs);
  // Keys near each one that are not in the file are not found.
  std::map<std::string, uint64_t> oracle(pairs.begin(), pairs.end());
  for (const auto& [key, value] : pairs) {
    for (const std::string& probe : {key + '\0', key + "\xff", key.substr(0, key.size() / 2)}) {
      Result<uint64_t> got = reader->Get(probe);
      if (oracle.count(probe) != 0) {
        ASSERT_TRUE(got.ok());
        EXPECT_EQ(*got, oracle[probe]);
      } else {
        EXPECT_TRUE(got.status().IsNotFound()) << got.status().ToString();
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, GoldenTest, ::testing::ValuesIn(kGoldens),
                         [](const ::testing::TestParamInfo<Golden>& info) {
                           std::string name = info.param.name;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace komoku::keyka

// The packer: the spec's example byte for byte, refusals that name the key,
// the tree size limit, sticky errors, and the temp-file-then-rename install.
#include "keyka/packer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "keyka/format.h"
#include "keyka/reader.h"
#include "test_util.h"

namespace komoku::keyka {
namespace {

using testing::Pairs;
using testing::ReadFile;
using testing::TempDir;

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

PackerOptions NoSync() {
  PackerOptions options;
  options.sync = false;
  return options;
}

TEST(PackerTest, SpecExampleByteForByte) {
  TempDir dir;
  const std::string bytes = testing::PackToBytes(dir, {{"a", 1}, {"b", 2}, {"c", 3}});
  const unsigned char expected[] = {
      0x00, 0x4B, 0x65, 0x79, 0x00, 0x4B, 0x61, 0x08,                   // magic
      0x0F, 0x00, 0x00, 0x00,                                           // root: branch at 15
      0x01, 0,    0,    0,    0,    0,    0,    0,    0x01, 0x00, 'a',  // node 0, leaf at 4
      0x02, 0,    0,    0,    0,    0,    0,    0,                      // node 1, branch at 15
      0xFC, 0xFF, 0xFF, 0xFF,                                           //   left: leaf at 4
      0xDE, 0xFF, 0xFF, 0xFF,                                           //   right: leaf at 34
      0x01, 0x00, 'b',                                                  //
      0x03, 0,    0,    0,    0,    0,    0,    0,    0x01, 0x00, 'c',  // node 2, leaf at 34
  };
  EXPECT_EQ(bytes, std::string(reinterpret_cast<const char*>(expected), sizeof(expected)));
}

TEST(PackerTest, EmptyTreeIsTwelveBytes) {
  TempDir dir;
  const std::string bytes = testing::PackToBytes(dir, {});
  EXPECT_EQ(bytes, std::string("\0Key\0Ka\x08\0\0\0\0", 12));
}

TEST(PackerTest, OneKeyRootIsTheLeaf) {
  TempDir dir;
  const std::string bytes = testing::PackToBytes(dir, {{"", 7}});
  ASSERT_EQ(bytes.size(), 12u + 10u);
  EXPECT_EQ(DecodeRef(reinterpret_cast<const unsigned char*>(bytes.data()) + 8), -4);
}

TEST(PackerTest, RefusesDuplicateNamingTheKeyAndStaysFailed) {
  TempDir dir;
  const std::string path = dir.File("out.keyka");
  Result<Packer> packer = Packer::Create(path, NoSync());
  ASSERT_TRUE(packer.ok());
  ASSERT_TRUE(packer->Add("room/a", 1).ok());
  Status st = packer->Add("room/a", 2);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("duplicate key 'room/a'"), std::string::npos) << st.message();
  // Sticky: a good key afterwards still fails with the first error.
  EXPECT_EQ(packer->Add("room/b", 3).message(), st.message());
  EXPECT_EQ(packer->Finish().message(), st.message());
  EXPECT_FALSE(Exists(path));
  EXPECT_TRUE(dir.List().empty()) << "temporary file left behind";
}

TEST(PackerTest, RefusesOutOfOrderNamingBothKeys) {
  TempDir dir;
  Result<Packer> packer = Packer::Create(dir.File("out.keyka"), NoSync());
  ASSERT_TRUE(packer.ok());
  ASSERT_TRUE(packer->Add("b", 1).ok());
  Status st = packer->Add(std::string("a\xff", 2), 2);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("'a\\xff' is out of order"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("'b'"), std::string::npos) << st.message();
}

TEST(PackerTest, ShorterPrefixSortsFirst) {
  TempDir dir;
  Result<Packer> packer = Packer::Create(dir.File("out.keyka"), NoSync());
  ASSERT_TRUE(packer.ok());
  EXPECT_TRUE(packer->Add("", 0).ok());
  EXPECT_TRUE(packer->Add(std::string("\0", 1), 1).ok());
  EXPECT_TRUE(packer->Add("ab", 2).ok());
  EXPECT_TRUE(packer->Add("ab\x01", 3).ok());
  EXPECT_FALSE(packer->Add("ab\x00", 4).ok());
}

TEST(PackerTest, KeyLengthLimit) {
  TempDir dir;
  Result<Packer> packer = Packer::Create(dir.File("out.keyka"), NoSync());
  ASSERT_TRUE(packer.ok());
  EXPECT_TRUE(packer->Add(std::string(65535, 'a'), 1).ok());
  Status st = packer->Add(std::string(65536, 'b'), 2);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("'bbbb"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("65536 bytes"), std::string::npos) << st.message();
}

TEST(PackerTest, TreeSizeLimitIsExactAndClear) {
  TempDir dir;
  // Tree = 4 (root) + 11 (leaf 'a') + 19 (branch 'b') + 11 (leaf 'c') = 45.
  for (uint64_t limit : {uint64_t{45}, uint64_t{44}}) {
    PackerOptions options = NoSync();
    options.max_tree_size = limit;
    const std::string path = dir.File("limit.keyka");
    Result<Packer> packer = Packer::Create(path, options);
    ASSERT_TRUE(packer.ok());
    EXPECT_TRUE(packer->Add("a", 1).ok());
    EXPECT_TRUE(packer->Add("b", 2).ok());
    Status st = packer->Add("c", 3);
    if (limit == 45) {
      EXPECT_TRUE(st.ok());
      EXPECT_TRUE(packer->Finish().ok());
      EXPECT_EQ(ReadFile(path), ReadFile(testing::DataDir() + "/example-abc.keyka"));
    } else {
      EXPECT_TRUE(st.IsInvalidArgument());
      EXPECT_NE(st.message().find("key 'c' (pair 3) would pass the tree size limit of 44"),
                std::string::npos)
          << st.message();
      EXPECT_FALSE(packer->Finish().ok());
    }
  }
  PackerOptions too_big;
  too_big.max_tree_size = kMaxTreeSize + 1;
  EXPECT_TRUE(Packer::Create(dir.File("x.keyka"), too_big).status().IsInvalidArgument());
}

TEST(PackerTest, NothingVisibleUntilFinishThenNoTempFile) {
  TempDir dir;
  const std::string path = dir.File("out.keyka");
  Result<Packer> packer = Packer::Create(path);
  ASSERT_TRUE(packer.ok());
  ASSERT_TRUE(packer->Add("k", 1).ok());
  EXPECT_FALSE(Exists(path));
  EXPECT_EQ(dir.List().size(), 1u);  // the temporary file
  ASSERT_TRUE(packer->Finish().ok());
  EXPECT_TRUE(Exists(path));
  EXPECT_EQ(dir.List(), std::vector<std::string>{"out.keyka"});
  // Finish again reports the same outcome; Add afterwards is refused.
  EXPECT_TRUE(packer->Finish().ok());
  EXPECT_FALSE(packer->Add("l", 2).ok());
}

TEST(PackerTest, AbandonAndDestructionLeaveTheOldFile) {
  TempDir dir;
  const std::string path = dir.File("out.keyka");
  testing::WriteFile(path, "old");
  {
    Result<Packer> packer = Packer::Create(path, NoSync());
    ASSERT_TRUE(packer.ok());
    ASSERT_TRUE(packer->Add("k", 1).ok());
    packer->Abandon();
    EXPECT_FALSE(packer->Finish().ok());
  }
  {
    Result<Packer> packer = Packer::Create(path, NoSync());
    ASSERT_TRUE(packer.ok());
    ASSERT_TRUE(packer->Add("k", 1).ok());
  }  // destroyed unfinished
  EXPECT_EQ(ReadFile(path), "old");
  EXPECT_EQ(dir.List(), std::vector<std::string>{"out.keyka"});
}

TEST(PackerTest, CreateInMissingDirectoryIsIOError) {
  TempDir dir;
  Result<Packer> packer = Packer::Create(dir.File("no/such/dir/out.keyka"));
  EXPECT_TRUE(packer.status().IsIOError());
  EXPECT_NE(packer.status().message().find("no/such/dir"), std::string::npos);
}

// The file straight from the spec's rules, computed with every offset in
// memory — an independent check of the streaming packer, in particular of
// right fields patched after their node left the write buffer.
std::string SpecEncode(const Pairs& pairs) {
  const int64_t n = static_cast<int64_t>(pairs.size());
  std::vector<uint64_t> offset(n);
  uint64_t at = kRootRefSize;
  for (int64_t i = 0; i < n; ++i) {
    offset[i] = at;
    at += NodeHeaderSize(IsBranchIndex(i)) + pairs[i].first.size();
  }
  auto ref = [&](int64_t i) -> int32_t {
    if (i < 0) return 0;
    const auto o = static_cast<int32_t>(offset[i]);
    return IsBranchIndex(i) ? o : -o;
  };
  std::vector<int64_t> right(n, -1);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t parent = j - (int64_t{1} << NodeLevel(j));
    if (parent >= 0) right[parent] = j;
  }
  std::string out(reinterpret_cast<const char*>(kMagic), kMagicSize);
  out.resize(kMagicSize + at);
  auto* tree = reinterpret_cast<unsigned char*>(out.data()) + kMagicSize;
  int64_t root = -1;
  if (n > 0) {
    root = 1;
    while (root * 2 <= n) root *= 2;
    root -= 1;
  }
  EncodeRef(tree, ref(root));
  for (int64_t i = 0; i < n; ++i) {
    unsigned char* p = tree + offset[i];
    EncodeFixed64(p, pairs[i].second);
    size_t header = kLeafHeaderSize;
    if (IsBranchIndex(i)) {
      EncodeRef(p + 8, ref(i - (int64_t{1} << (NodeLevel(i) - 1))));
      EncodeRef(p + 12, ref(right[i]));
      header = kBranchHeaderSize;
    }
    EncodeFixed16(p + header - 2, static_cast<uint16_t>(pairs[i].first.size()));
    std::copy(pairs[i].first.begin(), pairs[i].first.end(), p + header);
  }
  return out;
}

TEST(PackerTest, MatchesSpecEncodingAcrossManyBufferFlushes) {
  TempDir dir;
  for (size_t n : {size_t{1000}, size_t{5000}, size_t{20001}}) {
    Pairs pairs;
    for (size_t i = 0; i < n; ++i) {
      char head[32];
      std::snprintf(head, sizeof(head), "%08zu", i);
      // ~1 KiB keys, so 20,000 keys pass the 1 MiB buffer many times.
      pairs.emplace_back(std::string(head) + std::string(1000 + i % 37, 'k'), i * 3);
    }
    EXPECT_TRUE(testing::PackToBytes(dir, pairs) == SpecEncode(pairs)) << "n = " << n;
  }
}

}  // namespace
}  // namespace komoku::keyka

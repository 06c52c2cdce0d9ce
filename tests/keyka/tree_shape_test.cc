// Byte helpers, the implicit tree's arithmetic and TreeShape, checked against
// the rules of docs/keyka-format.md applied directly.
#include "keyka/tree_shape.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "keyka/format.h"

namespace komoku::keyka {
namespace {

TEST(FormatTest, FixedWidthRoundTripLittleEndian) {
  unsigned char b[8];
  EncodeFixed16(b, 0x1234);
  EXPECT_EQ(b[0], 0x34);
  EXPECT_EQ(b[1], 0x12);
  EXPECT_EQ(DecodeFixed16(b), 0x1234);
  EncodeFixed32(b, 0xDEADBEEF);
  EXPECT_EQ(b[0], 0xEF);
  EXPECT_EQ(DecodeFixed32(b), 0xDEADBEEFu);
  EncodeFixed64(b, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 0x08);
  EXPECT_EQ(b[7], 0x01);
  EXPECT_EQ(DecodeFixed64(b), 0x0102030405060708ull);
  for (int32_t v : {0, 1, -1, -4, -34, std::numeric_limits<int32_t>::max(),
                    std::numeric_limits<int32_t>::min()}) {
    EncodeRef(b, v);
    EXPECT_EQ(DecodeRef(b), v);
  }
  EncodeRef(b, -4);
  EXPECT_EQ(b[0], 0xFC);
  EXPECT_EQ(b[3], 0xFF);
}

TEST(FormatTest, LevelsAndWidths) {
  EXPECT_EQ(NodeLevel(0), 0);
  EXPECT_EQ(NodeLevel(1), 1);
  EXPECT_EQ(NodeLevel(2), 0);
  EXPECT_EQ(NodeLevel(3), 2);
  EXPECT_EQ(NodeLevel(7), 3);
  EXPECT_EQ(NodeLevel(11), 2);
  EXPECT_EQ(BitWidth(0), 0);
  EXPECT_EQ(BitWidth(1), 1);
  EXPECT_EQ(BitWidth(3), 2);
  EXPECT_EQ(BitWidth(4), 3);
}

TEST(FormatTest, DescribeKeyIsPrintableAndBounded) {
  EXPECT_EQ(DescribeKey("abc"), "'abc'");
  EXPECT_EQ(DescribeKey(std::string("a\0\xff", 3)), "'a\\x00\\xff'");
  const std::string long_key(1000, 'x');
  const std::string described = DescribeKey(long_key);
  EXPECT_LT(described.size(), 100u);
  EXPECT_NE(described.find("1000 bytes"), std::string::npos);
}

// The references of an n-node tree straight from the spec's rules: left of
// branch i is i - 2^(L-1); right is the last node j (in index order) naming i,
// where j names j - 2^level(j); root is 2^floor(log2 n) - 1. Indexes, -1 = none.
struct SpecTree {
  std::vector<int64_t> left, right;
  int64_t root = -1;
};

SpecTree SpecReferences(int64_t n) {
  SpecTree t;
  t.left.assign(n, -1);
  t.right.assign(n, -1);
  for (int64_t j = 0; j < n; ++j) {
    const int level = NodeLevel(j);
    if (level > 0) t.left[j] = j - (int64_t{1} << (level - 1));
    const int64_t parent = j - (int64_t{1} << level);
    if (parent >= 0) t.right[parent] = j;
  }
  if (n > 0) {
    int64_t p = 1;
    while (p * 2 <= n) p *= 2;
    t.root = p - 1;
  }
  return t;
}

TEST(TreeShapeTest, MatchesTheSpecRulesForEveryNUpTo600) {
  for (int64_t n = 0; n <= 600; ++n) {
    SCOPED_TRACE(n);
    const SpecTree spec = SpecReferences(n);
    // Give node i the offset 100 + 10 * i so references identify indexes.
    auto ref_of = [](int64_t i) -> int32_t {
      return i < 0 ? 0 : MakeRef(static_cast<uint64_t>(100 + 10 * i), IsBranchIndex(i));
    };
    TreeShape shape;
    std::vector<int32_t> right(n, 0);
    std::vector<bool> reported(n, false);
    std::optional<TreeShape::FinalRight> settled;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t left = shape.Add(static_cast<uint64_t>(100 + 10 * i), &settled);
      EXPECT_EQ(left, IsBranchIndex(i) ? ref_of(spec.left[i]) : 0) << "node " << i;
      if (settled) {
        const int64_t index = (static_cast<int64_t>(settled->offset) - 100) / 10;
        ASSERT_FALSE(reported[index]);
        reported[index] = true;
        right[index] = settled->right;
      }
    }
    for (const TreeShape::FinalRight& f : shape.Unsettled()) {
      const int64_t index = (static_cast<int64_t>(f.offset) - 100) / 10;
      ASSERT_FALSE(reported[index]);
      reported[index] = true;
      right[index] = f.right;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!IsBranchIndex(i)) continue;
      EXPECT_TRUE(reported[i]) << "branch " << i << " never settled";
      EXPECT_EQ(right[i], ref_of(spec.right[i])) << "branch " << i;
    }
    EXPECT_EQ(shape.RootRef(), ref_of(spec.root));
  }
}

}  // namespace
}  // namespace komoku::keyka

// TreeShape: the child references KeyKa v0 prescribes (docs/keyka-format.md,
// "The implicit tree"), computed for nodes that arrive in index order. The
// packer uses it to write them; Reader::Verify uses it to check them.
//
// Owned by one thread. Memory is O(log n): one slot per level, holding the
// most recent node of that level, because
//   - the left child of branch i (level L) is node i - 2^(L-1), the most
//     recent node of level L-1 when i arrives;
//   - node j of level M names node p = j - 2^M as its parent-on-the-right, and
//     p is the most recent node of its own (higher) level;
//   - a branch's right field can change only while it is the most recent node
//     of its level, so it is final once a newer node of that level arrives.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

namespace komoku::keyka {

class TreeShape {
 public:
  // A branch whose right field is settled: the branch at tree offset `offset`
  // must hold `right` (possibly 0) in its right field.
  struct FinalRight {
    uint64_t offset;
    int32_t right;
  };

  // Adds node number count() at tree offset `offset` (< kMaxTreeSize) and
  // returns its left reference (0 for a leaf). When this node settles an
  // earlier branch's right field, stores it in *settled, else resets it.
  int32_t Add(uint64_t offset, std::optional<FinalRight>* settled);

  // After the last Add: the branches whose right fields are not yet reported,
  // i.e. the most recent branch of each level.
  std::vector<FinalRight> Unsettled() const;

  // The reference the tree's root field must hold; 0 for no nodes.
  int32_t RootRef() const;

  uint64_t count() const { return count_; }

 private:
  struct Slot {
    bool used = false;
    uint64_t offset = 0;
    int32_t right = 0;
  };

  uint64_t count_ = 0;
  std::array<Slot, 64> slots_{};
};

}  // namespace komoku::keyka

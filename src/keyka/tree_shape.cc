// See tree_shape.h and docs/keyka-format.md.
#include "keyka/tree_shape.h"

#include "keyka/format.h"

namespace komoku::keyka {

int32_t TreeShape::Add(uint64_t offset, std::optional<FinalRight>* settled) {
  const uint64_t index = count_;
  const int level = NodeLevel(index);
  const bool branch = level > 0;
  const int32_t self = MakeRef(offset, branch);

  int32_t left = 0;
  if (branch) {
    // Node index - 2^(level-1) always exists and is the newest of level-1.
    const Slot& child = slots_[level - 1];
    left = MakeRef(child.offset, level - 1 > 0);
  }

  const uint64_t step = uint64_t{1} << level;
  if (index >= step) {
    const uint64_t parent = index - step;
    slots_[NodeLevel(parent)].right = self;
  }

  Slot& slot = slots_[level];
  if (branch && slot.used) {
    *settled = FinalRight{slot.offset, slot.right};
  } else {
    settled->reset();
  }
  slot = Slot{true, offset, 0};
  ++count_;
  return left;
}

std::vector<TreeShape::FinalRight> TreeShape::Unsettled() const {
  std::vector<FinalRight> out;
  for (size_t level = 1; level < slots_.size(); ++level) {
    if (slots_[level].used) out.push_back(FinalRight{slots_[level].offset, slots_[level].right});
  }
  return out;
}

int32_t TreeShape::RootRef() const {
  if (count_ == 0) return 0;
  const int level = BitWidth(count_) - 1;
  return MakeRef(slots_[level].offset, level > 0);
}

}  // namespace komoku::keyka

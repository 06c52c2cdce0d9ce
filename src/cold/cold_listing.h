// What the cold store tells about itself: its live segments and the history
// it knows to be missing. Shown by the Store (store.h) and `komoku segments`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cold/segment.h"

namespace komoku::store {

// A live segment, for listings.
struct SegmentListing {
  std::string name;
  int64_t from_ms = 0, to_ms = 0;
  uint64_t bytes = 0;
  uint64_t max_seq = 0;
  std::vector<SegmentKeyInfo> keys;
};

// History known to be missing from the cold store: a damaged block of a live
// segment (found by a check or a read), or one a salvage left out.
struct ColdDamage {
  std::string segment;    // the segment file's name (without extension) the block was in
  bool salvaged = false;  // the segment was rewritten without it; the history stays lost
  uint64_t max_seq = 0;   // the segment's: a later deletion of the key hides the record
  BlockDamage block;
};

}  // namespace komoku::store

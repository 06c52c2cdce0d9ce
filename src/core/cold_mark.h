// Where the hot store's history ends and the cold store's begins: the
// contract between hot_store.h (which skips and deletes what is marked) and
// cold_store.h (whose state says what it holds).
#pragma once

#include <cstdint>

namespace komoku::store {

// The part of the hot store's changes that the cold store already holds:
// rows with time < cold_to and sequence number <= cold_seq. Reads skip them
// (they are deleted soon after a compaction, and at the next open at the
// latest); rows newer, or later than cold_seq (late changes), are read.
struct ColdMark {
  int64_t cold_to = INT64_MIN;
  uint64_t cold_seq = 0;
};

}  // namespace komoku::store

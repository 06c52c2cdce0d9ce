// A key as the Store shows it (its type, options and current value) and a
// change as listeners see it: the vocabulary shared by the Store
// (store.h), history (history.h) and the adapters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/key_options.h"
#include "core/value.h"

namespace komoku::store {

struct KeyInfo {
  std::string name;
  KeyType type = KeyType::kNumeric;
  KeyOptions options;
  std::optional<Sample> last;      // the current value: the newest change
  std::optional<Sample> previous;  // the value before it
};

// An accepted change, as subscribers see it.
struct Change {
  std::string key;
  KeyType type = KeyType::kNumeric;
  Sample sample;
  std::optional<Sample> previous;  // the current value before this change
  // The change's place in the order of all changes (its rowid in the hot
  // store); 0 when nothing was stored.
  uint64_t seq = 0;
  bool is_current = true;    // false for a late change that went into history only
  bool stored = true;        // false for a repeat within same_value_resolution
  bool created_key = false;  // this put created the key
  bool deleted = false;      // the key and its history were deleted
  // The same key, time and value are stored already (a broker's redelivery,
  // a replayed ingest log, a backfill sent twice): nothing was stored and
  // listeners are not called. Counted in komoku_changes_duplicate_total.
  bool duplicate = false;
};

}  // namespace komoku::store

// What history questions (history.h) read: a key's definition and current
// value, its changes, and its rollups where they answer. The Store is one;
// the history mathematics knows nothing else of it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "core/change.h"
#include "core/clock.h"
#include "core/rollup.h"
#include "core/value.h"

namespace komoku::store {

class ChangeSource {
 public:
  virtual ~ChangeSource() = default;
  // The key and its current value; NotFound for an unknown key.
  virtual Result<KeyInfo> Get(std::string_view key) const = 0;
  // Calls `fn` with each change of `key` with from_ms <= time < to_ms,
  // oldest first, until it returns false. NotFound for an unknown key.
  virtual Status Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
                      const std::function<bool(const Sample&)>& fn) const = 0;
  // The change in force at `time_ms`: the last one at or before it; nullopt
  // when the key had no value yet. NotFound for an unknown key.
  virtual Result<std::optional<Sample>> At(std::string_view key, int64_t time_ms) const = 0;
  // Where `key`'s rollups answer, oldest first, not overlapping (empty:
  // nowhere); see Store::RollupCoverage.
  virtual std::vector<RollupStretch> RollupCoverage(std::string_view key) const = 0;
  // Raw changes of `key` before this time were dropped by retention;
  // nullopt when none were.
  virtual std::optional<int64_t> RawExpiredBefore(std::string_view key) const = 0;
  // The rollups of `key` at `resolution_ms` with from_ms <= start < to_ms.
  virtual Status ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms,
                             int64_t to_ms, const std::function<bool(const Rollup&)>& fn) const = 0;
  // What "now" is (the end of the known past).
  virtual const Clock& clock() const = 0;
  // The words boolean and uptime keys read as true and false.
  virtual const BooleanWords& boolean_words() const = 0;
};

}  // namespace komoku::store

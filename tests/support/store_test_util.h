// The one way the tests open a Store: on a directory (temp_dir.h) with a
// clock the test drives (fake_clock.h), with the store's defaults or with
// compaction in the test's hands. A test including this links komoku_store.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "core/clock.h"
#include "fake_clock.h"
#include "store/store.h"
#include "temp_dir.h"

namespace komoku::store::testing {

// A Store on `data_dir` with `clock` and `hot`, everything else as the
// store's defaults.
inline StoreOptions TestStoreOptions(const std::string& data_dir, const Clock* clock,
                                     const HotStoreOptions& hot = {}) {
  StoreOptions options;
  options.data_dir = data_dir;
  options.hot = hot;
  options.clock = clock;
  return options;
}

// The same with compaction in the test's hands: no timer thread, no
// background compactor or segment check, no fsync of segments; `cold`
// gives the rest of the cold options.
inline StoreOptions ManualCompactionOptions(const std::string& data_dir, const Clock* clock,
                                            ColdOptions cold = {},
                                            const HotStoreOptions& hot = {}) {
  StoreOptions options = TestStoreOptions(data_dir, clock, hot);
  options.start_timers = false;
  cold.compact_interval = std::chrono::milliseconds(0);
  cold.background = false;
  cold.sync = false;
  options.cold = std::move(cold);
  return options;
}

// Opens a Store with `options`, or null (with a test failure) when it
// cannot be opened.
inline std::unique_ptr<Store> OpenTestStore(const StoreOptions& options) {
  Result<std::unique_ptr<Store>> store = Store::Open(options, nullptr);
  if (!store.ok()) {
    ADD_FAILURE() << "Store::Open(" << options.data_dir << "): " << store.status().ToString();
    return nullptr;
  }
  return std::move(store).value();
}

// Opens a Store on `data_dir` with `clock` (TestStoreOptions).
inline std::unique_ptr<Store> OpenTestStore(const std::string& data_dir, const Clock* clock,
                                            const HotStoreOptions& hot = {}) {
  return OpenTestStore(TestStoreOptions(data_dir, clock, hot));
}

// Puts `v` at time `t` without waiting for the commit, as MQTT ingest does
// (an explicit time: a repeat of a stored change is a duplicate).
inline Result<Change> PutAt(Store& store, const std::string& key, double v, int64_t t) {
  PutOptions put;
  put.time_ms = t;
  put.wait_committed = false;
  return store.Put(key, InputValue(v), put);
}

}  // namespace komoku::store::testing

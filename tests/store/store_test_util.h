// Helpers for the store tests: a temporary directory and a clock the test
// drives.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>  // mkdtemp

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "core/clock.h"
#include "store/store.h"

namespace komoku::store::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its files.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/komoku-test-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A clock that stands still until the test moves it. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Set(int64_t now_ms) { now_ms_.store(now_ms); }

 private:
  std::atomic<int64_t> now_ms_;
};

// Opens a Store on `data_dir` with `clock`, or null (with a test failure)
// when it cannot be opened.
inline std::unique_ptr<Store> OpenTestStore(const std::string& data_dir, const Clock* clock,
                                            const HotStoreOptions& hot = {}) {
  StoreOptions options;
  options.data_dir = data_dir;
  options.hot = hot;
  options.clock = clock;
  Result<std::unique_ptr<Store>> store = Store::Open(options, nullptr);
  if (!store.ok()) {
    ADD_FAILURE() << "Store::Open(" << data_dir << "): " << store.status().ToString();
    return nullptr;
  }
  return std::move(store).value();
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

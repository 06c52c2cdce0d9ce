// The Komoku core: typed keys, their current values, and their history.
// The front door of src/store; the MQTT bridge and the HTTP server are two
// adapters over this one API, so a put means the same from either side.
//
// Thread-safe: the MQTT callback thread, HTTP threads and timers call it at
// once. Nothing here knows MQTT or HTTP exists.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "store/clock.h"
#include "store/metrics.h"
#include "store/value.h"

namespace komoku::store {

class HotStore;

struct HotStoreOptions {
  // Commit at least this often while changes wait and nobody waits for them.
  std::chrono::milliseconds commit_interval{250};
  // Commit as soon as this many rows wait.
  size_t commit_max_rows = 4000;
  // How often the WAL is checkpointed (and so fsynced) in the background.
  std::chrono::milliseconds checkpoint_interval{10000};
};

struct StoreOptions {
  // Directory of the database (komoku.db and its WAL); created if missing.
  std::string data_dir = "./komoku-data";
  HotStoreOptions hot;
  // Time source; the system clock when null. Must outlive the Store.
  const Clock* clock = nullptr;
};

struct KeyInfo {
  std::string name;
  KeyType type = KeyType::kNumeric;
  std::optional<Sample> last;      // the current value: the newest change
  std::optional<Sample> previous;  // the value before it
};

// An accepted change, as subscribers see it.
struct Change {
  std::string key;
  KeyType type = KeyType::kNumeric;
  Sample sample;
  std::optional<Sample> previous;  // the current value before this change
  bool is_current = true;          // false for a late change that went into history only
  bool created_key = false;        // this put created the key
};

struct PutOptions {
  // The change's time; now when unset. A time in the past goes into history
  // and becomes the current value only if it is the newest.
  std::optional<int64_t> time_ms;
  // Return only once the change is committed to the hot store.
  bool wait_committed = true;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options,
                                             std::shared_ptr<spdlog::logger> log);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Records a change. A key that does not exist is created, its type guessed
  // from the value. Refused (InvalidArgument, nothing changed, counted in
  // komoku_refused_total) for a bad key name, a value the key's type cannot
  // hold, or a bad time.
  Result<Change> Put(std::string_view key, const InputValue& value, const PutOptions& options = {});

  // The key and its current value; NotFound for an unknown key.
  Result<KeyInfo> Get(std::string_view key) const;

  // Every key, sorted by name.
  std::vector<KeyInfo> Keys() const;

  // Changes of `key` with from_ms <= time < to_ms, oldest first, at most
  // `limit`. NotFound for an unknown key.
  Result<std::vector<Sample>> History(std::string_view key, int64_t from_ms, int64_t to_ms,
                                      size_t limit) const;

  // Called with every accepted change, after it is committed when the put
  // waited for that. Listeners run on the putting thread and must be quick.
  using Listener = std::function<void(const Change&)>;
  int AddListener(Listener listener);
  void RemoveListener(int id);

  // Commits everything accepted so far, then stops the writer. Idempotent;
  // puts after Close are refused.
  void Close();

  const Clock& clock() const { return *clock_; }
  Metrics& metrics() { return metrics_; }
  size_t QueueDepth() const;
  // How long the writer has held changes it could not yet commit: zero while
  // it keeps up. Health checks and the systemd watchdog read it.
  std::chrono::milliseconds WriterStalledFor() const;
  const std::string& db_path() const { return db_path_; }

 private:
  struct KeyState {
    int64_t id = 0;
    KeyType type = KeyType::kNumeric;
    std::optional<Sample> last;
    std::optional<Sample> previous;
  };

  Store(const StoreOptions& options, std::shared_ptr<spdlog::logger> log);
  Status Refuse(const char* reason, Status status);

  // Constant after Open.
  const Clock* clock_;
  std::shared_ptr<spdlog::logger> log_;
  std::string db_path_;
  Metrics metrics_;
  std::unique_ptr<HotStore> hot_;

  mutable std::mutex mu_;
  std::map<std::string, KeyState, std::less<>> keys_;  // guarded by mu_
  int64_t next_key_id_ = 1;                            // guarded by mu_
  bool closed_ = false;                                // guarded by mu_

  std::mutex listeners_mu_;
  std::map<int, Listener> listeners_;  // guarded by listeners_mu_
  int next_listener_id_ = 1;           // guarded by listeners_mu_
};

}  // namespace komoku::store

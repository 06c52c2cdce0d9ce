// Publisher::Impl, shared by the files of src/derived that each handle one
// part of it: publisher.cc (life cycle, the store listener, the worker),
// aggregates.cc (bucket aggregates), rolling.cc (rolling statistics),
// staleness.cc, discovery.cc (Home Assistant), queue.cc (the queue and its
// sender) and state_file.cc. Not part of the folder's front door.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "derived/derived.h"
#include "series/history.h"

namespace komoku::derived {

inline constexpr int64_t kHour = 3600 * 1000;
inline constexpr int64_t kDay = 24 * kHour;
inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// A busy key refreshes its rolling statistics at most this often.
inline constexpr int64_t kChangeRefreshMinMs = 1000;
// How often the keys are looked through for a stale_after option set by
// define after the start.
inline constexpr int64_t kStaleRescanMs = 10 * 1000;
// How many recently published bucket bodies are kept per aggregate, so a
// correction that changes nothing is not published.
inline constexpr size_t kRecentBuckets = 16;
inline constexpr std::chrono::milliseconds kRetryDelay{200};

inline bool IsBoolean(store::KeyType t) {
  return t == store::KeyType::kBoolean || t == store::KeyType::kUptime;
}

inline nlohmann::json OrNull(const std::optional<double>& d) {
  return d ? nlohmann::json(*d) : nlohmann::json(nullptr);
}

class Publisher::Impl {
 public:
  Impl(DerivedOptions options, store::Store* store, PublishFn publish,
       std::shared_ptr<spdlog::logger> log);
  ~Impl();

  Status Init(const KeyTypeFn& key_type);
  void SetConfigurationUrl(std::string url) { configuration_url_ = std::move(url); }
  Status Start();
  void Stop();
  void RunDue();
  // Returns false when a send failed (the broker is away).
  bool Flush();
  size_t QueueDepth() const;
  int64_t NextDueMs() const;

 private:
  struct Agg {
    AggregateDef def;
    store::KeyType type = store::KeyType::kNumeric;
    // Guarded by mu_:
    int64_t next_start = 0;         // the first bucket not yet computed
    int64_t next_close = 0;         // when that bucket is due (its end + close delay)
    int64_t last_start = 0;         // the newest bucket computed: what the retained message holds
    int64_t sent_next = 0;          // the end of the newest bucket sent: kept across restarts
    int64_t catch_up_until = 0;     // buckets ending by this closed while Komoku was down
    std::set<int64_t> corrections;  // starts of computed buckets that changed late
    bool error_logged = false;
    // Only the worker (under run_mu_):
    std::map<int64_t, std::string> recent;  // start -> body last published
  };
  struct Roll {
    RollingDef def;
    store::KeyType type = store::KeyType::kNumeric;
    // Guarded by mu_:
    int64_t next_refresh = 0;
    int64_t last_run = std::numeric_limits<int64_t>::min() / 2;
    bool dirty = false;
    bool error_logged = false;
  };
  struct Stale {
    int64_t after_ms = 0;
    std::optional<bool> published;
    int64_t check_at = 0;
  };
  struct Message {
    uint64_t id = 0;
    std::string topic;
    std::string payload;
    bool retain = false;
    Agg* agg = nullptr;  // set for a bucket aggregate: its sending is remembered
    int64_t bucket_end = 0;
    bool clears_discovery = false;  // an empty retained config: remembered when sent
  };
  // What the state file holds.
  struct SavedState {
    std::map<std::string, int64_t> next;  // StateName -> end of the newest bucket sent
    // Home Assistant config topics published and not cleared since.
    std::set<std::string> discovery;
  };
  struct KeyDefs {
    std::vector<size_t> aggs;
    std::vector<size_t> rolls;
  };

  // publisher.cc
  // The type `key_type` gives, else the store's.
  Result<store::KeyType> TypeOf(const KeyTypeFn& key_type, const std::string& key,
                                const std::string& where) const;
  void OnChange(const store::Change& c);
  // The changes the listener saw are committed before anything is read.
  void EnsureCommitted();
  void ReportError(bool& logged, const std::string& what, const Status& st);
  void WorkerLoop();

  // aggregates.cc
  // The bucket [start, end) of `step_ms` holding `t`, aligned as history
  // aligns it (store::BucketStarts).
  std::pair<int64_t, int64_t> Bucket(int64_t t, int64_t step_ms) const;
  static std::string StateName(const AggregateDef& def) { return def.key + "\n" + def.resolution; }
  // The body of a bucket: what GET /api/v1/history (numeric, counter) or
  // /stats (boolean, uptime, string) answers for [start, end).
  Result<nlohmann::json> AggregateBody(const Agg& a, int64_t start, int64_t end) const;
  void RunAggregate(Agg& a, int64_t now);
  void PublishBucket(Agg& a, int64_t start, int64_t end, const char* mark, bool retain);

  // rolling.cc
  Result<nlohmann::json> RollingBody(const Roll& r, int64_t now) const;
  void RunRolling(Roll& r, int64_t now);

  // staleness.cc
  void RunStale(int64_t now);

  // queue.cc
  void Enqueue(Message m);
  void SenderLoop();

  // discovery.cc
  // Home Assistant discovery configs, retained whatever `retain` says: Home
  // Assistant reads them when it starts.
  void QueueDiscovery();
  // Home Assistant configs published before (by an earlier start or before
  // a reload) that this one does not publish: an empty retained message
  // removes each from Home Assistant and the broker. Remembered in the state
  // file until sent, so a broker that is away does not leave them behind.
  void ClearDiscovery(const std::set<std::string>& before);

  // state_file.cc
  // The state file: {"version": 1, "aggregates": [{"key", "resolution",
  // "next"}], "discovery": [config topics]}, "next" the end of the newest
  // bucket sent (epoch ms); "discovery" (optional) the Home Assistant
  // configs published and not cleared since.
  Result<SavedState> LoadState() const;
  void SaveState();

  // Set before Start, constant after.
  std::string configuration_url_;
  // Constant after Init.
  const DerivedOptions options_;
  store::Store* const store_;
  const PublishFn publish_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::string derived_prefix_;
  std::map<std::string, KeyDefs, std::less<>> by_key_;
  // The vectors are fixed after Init; their elements' marked fields are
  // guarded by mu_, `recent` is the worker's.
  std::vector<Agg> aggs_;
  std::vector<Roll> rolls_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;                      // guarded by mu_
  bool started_ = false;                      // guarded by mu_
  bool wake_ = false;                         // guarded by mu_
  uint64_t pending_seq_ = 0;                  // guarded by mu_
  std::map<std::string, Stale> stale_;        // guarded by mu_
  std::set<std::string> discovery_topics_;    // configs published; guarded by mu_
  std::set<std::string> discovery_to_clear_;  // clears not yet sent; guarded by mu_
  int64_t next_stale_scan_ = 0;               // guarded by mu_ (written by the worker)

  std::mutex run_mu_;       // one RunDue at a time
  bool committed_ = false;  // guarded by run_mu_

  mutable std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::deque<Message> queue_;     // guarded by out_mu_
  uint64_t next_message_id_ = 1;  // guarded by out_mu_
  bool sender_stop_ = false;      // guarded by out_mu_
  std::mutex flush_mu_;           // one sender at a time keeps the order
  std::mutex state_file_mu_;

  int listener_id_ = 0;
  std::thread worker_;
  std::thread sender_;
};

}  // namespace komoku::derived

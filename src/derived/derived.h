// Derived state published back to MQTT (docs/derived.md): bucket aggregates
// at bucket close, rolling statistics over a window ending now, staleness of
// keys with a stale_after option, and Home Assistant discovery for them.
//
// Every number is computed by store::Downsample or store::Stats, the code
// behind GET /api/v1/history and /stats, so a published value equals what
// HTTP answers for the same window. Publications go through a bounded
// in-order queue to a PublishFn the app wires to the MQTT bridge; this
// library knows no MQTT client.
#pragma once

#include <spdlog/logger.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "store/store.h"

namespace komoku::derived {

// A bucket aggregate: `key` in buckets of `resolution`, published when each
// bucket closes on <prefix>/derived/<key>/<resolution>.
struct AggregateDef {
  std::string key;
  std::string resolution;  // as written ("1m"): the last topic level
  int64_t step_ms = 0;
  std::string unit;          // Home Assistant unit_of_measurement; may be empty
  std::string device_class;  // Home Assistant device_class; may be empty
  std::string where;         // "file:line: derived.aggregates[i]" for messages
};

enum class RollingStat {
  kAvg,
  kTwavg,
  kMin,
  kMax,
  kCount,  // numeric and counter keys
  kIncrease,
  kRate,  // counter keys
  kShare,
  kTime,
  kHours,
  kChanges,  // boolean, uptime and string keys
};

// A rolling statistic over [now - window, now], published on
// <prefix>/derived/<key>/<name> on every change of the key (at most once a
// second) and every `refresh_ms`.
struct RollingDef {
  std::string key;
  std::string name;  // the last topic level
  RollingStat stat = RollingStat::kAvg;
  std::string value;               // share/time/hours: the state counted, as text
  std::string window;              // as written: "24h", "7d" or "today"
  int64_t window_ms = 0;           // 0 for "today": since local midnight in `tz`
  int64_t refresh_ms = 60 * 1000;  // 0: on change only
  std::string unit;
  std::string device_class;
  std::string where;
};

// A key announced to Home Assistant itself (its <prefix>/state/<key>).
struct DiscoveryKey {
  std::string key;
  std::string unit;
  std::string device_class;
  std::string where;
};

struct DerivedOptions {
  std::string prefix = "komoku";
  bool retain = true;
  // Publications waiting for the broker beyond this many drop the oldest,
  // counted in komoku_derived_dropped_total.
  size_t queue_max = 10000;
  bool discovery = false;
  std::string discovery_prefix = "homeassistant";
  // IANA zone of day and week buckets and of the "today" window; "" is UTC.
  std::string tz;
  std::vector<AggregateDef> aggregates;
  std::vector<RollingDef> rolling;
  std::vector<DiscoveryKey> discovery_keys;
  // Where the last published bucket of each aggregate is kept across
  // restarts; empty keeps nothing (every start begins at the current bucket).
  std::string state_path;
  // A bucket is computed this long after it closed, so that changes made in
  // its last moments are committed first.
  int64_t close_delay_ms = 100;
  // At most this many buckets per aggregate are published as catch-up after
  // a restart; older ones are skipped with a warning.
  size_t max_catch_up = 1440;
  // Run the worker and sender threads (tests drive RunDue/Flush instead).
  bool start_threads = true;
};

// "1m", "1h", "1d", "30s", "1w" or seconds: a bucket resolution (not
// "auto"), 1 s to 31 days.
Result<int64_t> ParseResolution(std::string_view text);
// "24h", "7d", "30m", seconds, or "today" (returns 0): 1 s to 366 days.
Result<int64_t> ParseWindow(std::string_view text);
Result<RollingStat> ParseRollingStat(std::string_view text);
const char* RollingStatName(RollingStat stat);

// Whether a definition fits the type of its key; InvalidArgument naming the
// definition (its `where`) otherwise. CheckRolling also normalises `value`
// to the key's text form ("on" -> "true" for a boolean key).
Status CheckAggregate(const AggregateDef& def, store::KeyType type);
Status CheckRolling(RollingDef& def, store::KeyType type, const store::BooleanWords& words);
// Topic names that would collide (a rolling name used twice for a key, or
// one named "stale"), and Home Assistant ids that would.
Status CheckNames(const DerivedOptions& options);

// Publishes one message with QoS 1; a non-OK status (e.g. not connected)
// keeps it queued, to be tried again.
using PublishFn =
    std::function<Status(const std::string& topic, const std::string& payload, bool retain)>;

// The type a key is about to have (a reload checks its new definitions
// before it applies the keys: section); nullopt for "as the store has it".
using KeyTypeFn = std::function<std::optional<store::KeyType>(const std::string& key)>;

// Thread-safe. Owns a worker thread (computes what is due) and a sender
// thread (drains the queue in order) once started.
class Publisher {
 public:
  // Checks every definition against the store's keys: an unknown key, a
  // definition that does not fit its key's type, or a name collision is
  // refused with a message naming the definition. `store` must outlive the
  // Publisher. With `key_type`, the keys it knows are checked against the
  // type it gives instead of the store's. A Publisher that was never
  // started touches nothing (not the state file) when it goes away.
  static Result<std::unique_ptr<Publisher>> Create(DerivedOptions options, store::Store* store,
                                                   PublishFn publish,
                                                   std::shared_ptr<spdlog::logger> log,
                                                   const KeyTypeFn& key_type = nullptr);
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // The web page's address (http://host:port/), sent as the Home Assistant
  // device's configuration_url so its device page links to Komoku's page.
  // Call before Start(); empty (the default) sends none.
  void SetConfigurationUrl(std::string url);

  // Reads the state file, queues the discovery configs, and starts the
  // threads (with options.start_threads); buckets that closed while Komoku
  // was down are published by the first RunDue, marked catch-up.
  Status Start();
  // Stops the threads and writes the state file. What is still queued is
  // lost (it was never sent); it is counted as dropped. Idempotent.
  void Stop();

  // Computes and queues everything due at the store clock's now: closed
  // buckets, corrections, rolling refreshes, staleness changes. The worker
  // thread calls it; tests with a FakeClock call it themselves.
  void RunDue();
  // Sends queued messages in order until one fails or none is left.
  void Flush();
  size_t QueueDepth() const;
  // When RunDue next has something to do (store clock milliseconds).
  int64_t NextDueMs() const;

 private:
  class Impl;
  explicit Publisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace komoku::derived

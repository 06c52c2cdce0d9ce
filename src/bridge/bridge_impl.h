// The private side of the MQTT bridge (bridge/bridge.h): the Impl class that
// every file of the bridge shares. Its methods live in the file named after
// what they handle:
// - bridge.cc: start, stop and the front door's accessors;
// - connection.cc: connecting, reconnecting, subscribing, publishing and
//   swapping the mapping rules;
// - ingest.cc: Paho's callback, the ingest thread that stores the log's
//   messages, API requests and the logging of refusals;
// - mapped_messages.cc: messages on topics of mapping rules and discovered
//   entities, turned into puts;
// - discovery_keeper.cc: discovery configs, the topics of discovered
//   entities, and keeping them in the state file;
// - state_publisher.cc: <prefix>/state/<key>, the state thread.
//
// Threads and locks are described in bridge/bridge.h; no lock of the bridge
// or the store is held while calling Paho. Not for use outside src/bridge.
#pragma once

#include <mqtt/async_client.h>
#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bridge/bridge.h"
#include "bridge/discovery.h"
#include "bridge/ingest_log.h"
#include "bridge/mapping.h"
#include "common/status.h"
#include "store/store.h"
#include "wire/api.h"

namespace komoku::bridge {

// The QoS of Komoku's own subscriptions and of its QoS 1 publications
// (status, API replies, Publish).
inline constexpr int kQos = 1;

class Bridge::Impl {
 public:
  Impl(const BridgeOptions& options, store::Store* store, std::shared_ptr<spdlog::logger> log);
  ~Impl() { Stop(); }

  // bridge.cc: the life cycle.
  Status Init();

  void Start();

  // Stops publishing state, says offline, disconnects (no message arrives
  // after that), then stores what the ingest log holds, for at most
  // drain_timeout: what is left stays in the log for the next start. The
  // retained states of the last changes go out at the next connect, which
  // republishes every key.
  void Stop();

  bool connected() const { return connected_; }
  bool subscribed() const { return subscribed_; }
  std::chrono::milliseconds IngestStalledFor() const;
  uint64_t IngestBacklog() const { return ingest_ ? ingest_->Unread() : 0; }
  nlohmann::json DiscoveryJson() const {
    return discovery_ ? discovery_->Describe() : nlohmann::json(nullptr);
  }
  std::map<std::string, std::string> KeyAliases() const {
    return discovery_ ? discovery_->Aliases() : std::map<std::string, std::string>();
  }
  Result<std::string> KeyFromTopic(std::string_view topic) const;

  // connection.cc
  Status Publish(const std::string& topic, const std::string& payload, bool retain);

  // Compiles `rules` and swaps them in; the topics they no longer need are
  // unsubscribed and the new ones subscribed once the new rules are in
  // place, so every message is mapped by the old rules or the new ones.
  Status ReplaceRules(const std::vector<MappingRule>& rules);

 private:
  // Steady-clock milliseconds, for the stall and drain deadlines.
  static int64_t SteadyNowMs();

  // connection.cc: connecting, subscribing, the rules in force.

  // Built field by field, not through connect_options_builder: Paho C++
  // 1.2.0's builder loses the pointer to the MQTT 5 properties when it
  // copies the options (a crash in MQTTProperties_copy; fixed upstream in 1.3).
  mqtt::connect_options ConnectOptions() const;

  // Connects, and connects again whenever the connection is lost, trying
  // after reconnect_min, doubling up to reconnect_max; subscribes after
  // every (re)connect, asking again until the broker acknowledges it.
  void ConnectLoop();

  // What a failed connect says in the log. A broker's refusal (an MQTT 5
  // CONNACK reason code, which Paho reports as "MQTT error [135]: CONNACK
  // return code") says what was refused and which setting to check.
  std::string ExplainConnectFailure(const mqtt::exception& e) const;

  // Turns Nagle's algorithm off on Paho's socket (bridge/broker_socket.h):
  // without it a state waited for the broker's delayed ACK, up to 40 ms.
  void SetNoDelay();

  // Paho C++ 1.2.0's TLS error callback is a use after free and, without
  // it, Paho says only "TCP/TLS connect failure" (bridge/tls.h). So when a
  // connection fails (and its failure is logged), the handshake is tried
  // once with the same settings to log OpenSSL's reason ("certificate
  // verify failed: unable to get local issuer certificate"). A connection
  // that succeeds costs no second handshake.
  void ExplainTlsFailure();

  // Subscribes to every wanted topic and waits for the broker's answer
  // (this is the connector thread, not Paho's). False when it did not come
  // or refused, to be tried again.
  bool SubscribeAll();

  // Runs on Paho's thread: must not wait for a token. The connector thread
  // subscribes; the state thread republishes every key.
  void OnConnected();

  // Every topic Komoku subscribes to with `mapping` as its rules: its own,
  // the rules' filters, the discovery filters and the discovered entities'
  // topics that no other filter covers.
  std::vector<std::string> WantedTopics(const MappingEngine* mapping) const;

  // The rules in force; a message is mapped by one set of rules throughout.
  std::shared_ptr<const MappingEngine> Mapping() const;

  Result<std::shared_ptr<const MappingEngine>> CompileRules(
      const std::vector<MappingRule>& rules) const;

  bool IsOwn(std::string_view topic) const;

  // A topic the broker already sends for another subscription (Komoku's
  // own, a configured rule's filter, a discovery filter): subscribing it
  // again would only bring each message twice.
  bool Covered(const std::string& topic, const MappingEngine* mapping) const;

  // ingest.cc: from Paho's callback through the ingest log to the store.
  // Runs on Paho's receive thread. Paho C sends the QoS 1 PUBACK as the
  // message arrives, before this callback; the message is appended to the
  // ingest log (one write(), which survives a crash of the process) and
  // this returns at once, so Paho reads on at the speed of the socket. See
  // docs/storage.md for what a crash, a stop and a power cut can take back.
  void OnMessage(const mqtt::const_message_ptr& msg) noexcept;

  // The ingest thread: stores the messages of the log in order and releases
  // them once committed. It never waits for a commit while messages wait,
  // so the store commits them in groups.
  void IngestLoop();

  // A refusal that is no fault of the message: it is tried again later.
  static bool RefusedForNow(const Status& st);

  // Stores one message (or refuses it, counted and logged). False when the
  // store cannot take changes now (a full disk): the message is to be tried
  // again.
  bool HandleRecord(const IngestRecord& rec);

  // A Komoku JSON query: the answer goes to the MQTT 5 response topic with
  // the request's correlation data, or to <prefix>/api/response.
  void HandleRequest(const IngestRecord& msg);

  void Refuse(const char* reason, const std::string& topic, const std::string& why);

  // At most one log line per `what` per kRefusalLogInterval; the others are
  // counted into `*suppressed` of the next line that is logged.
  bool ShouldLog(const std::string& what, int64_t* suppressed);

  static std::string NotLogged(int64_t suppressed, const char* what);

  // mapped_messages.cc: messages of mapping rules and discovered entities.
  // A message on a mapped topic. Configured rules win: discovered entities
  // see only a topic that no configured rule matches.
  bool HandleMapped(const MappingEngine* mapping, const IngestRecord& msg);

  // Resolved changes, put (the store commits them with the next group). For
  // configured rules the changes of a message are put all or none: a change
  // its key refuses refuses the whole message. Discovered entities are
  // independent (`each`), so only that entity's change is dropped. False
  // when the store cannot take changes now (see HandleRecord): the message
  // is tried again.
  bool StoreMapped(const MappingEngine& engine, const std::vector<MappedChange>& changes,
                   const IngestRecord& msg, bool each);
  // Counts values skipped as unknown (komoku_mapping_unknown_skipped_total).
  void CountUnknown(size_t skipped);

  // Puts the changes [begin, end) with Store::PutAll, all or none, after
  // leaving out retained repeats and defining new keys of typed rules; a
  // refusal is counted and logged as the rule's (RefuseMapped). False when
  // the store cannot take changes now.
  bool PutMapped(const MappingEngine& engine, const MappedChange* begin, const MappedChange* end,
                 const IngestRecord& msg, bool discovered);

  // Counted always; logged at most once per rule and reason per
  // kRefusalLogInterval, with the number of refusals not logged since.
  // Discovered entities count under rule="discovery" (one series, however
  // many entities) and are named in the log line.
  void RefuseMapped(const MappingEngine& engine, const MappingRefusal& r, const std::string& topic,
                    bool discovered);

  // discovery_keeper.cc: discovered entities and their topics.
  // A Home Assistant discovery config or a Homie attribute: the entities
  // change, and with them the topics Komoku subscribes to.
  void HandleDiscovery(const IngestRecord& msg);

  // The log line (and counters) of a discovery update.
  void ReportDiscovery(const Discovery::Update& u);
  // An event entity (a button, Homie `$retained false`) whose key already
  // exists with the default same_value_resolution: the key takes 0, as it
  // would had it been created for the entity (docs/mapping.md#events).
  void ApplyEventOption(const Discovery::Update& u);

  void Resubscribe(const Discovery::Update& u);

  // At start, before connecting: the entities of the state file, so that
  // the messages the broker queued for them map before their retained
  // configs come again. A file that cannot be used is no reason not to
  // start: the retained configs teach the entities again.
  void LoadDiscovery();

  // Its own thread: saves the discovered entities a moment after they
  // change (never on Paho's thread, which must not wait for a disk), and
  // forgets the ones read at start that the broker did not confirm.
  void KeepDiscovery();

  // Saves when there is something to save; on failure warns and tries again
  // later (the entities stay in memory either way).
  void SaveDiscovery();

  // The subscription (of the discovery filters too) is acknowledged: the
  // retained configs are on their way; what has not come within
  // kDiscoveryConfirmTime is gone from the broker.
  void OnSubscribed();

  // state_publisher.cc: <prefix>/state/<key>.
  // The state of a key to publish on <prefix>/state/<key>.
  struct StateItem {
    store::Value value;
    int64_t time_ms = 0;
    std::optional<store::Value> previous;
    bool deleted = false;  // an empty retained message clears the state
    // Publish the key's state as the store has it when it goes out: a
    // publication that failed is sent again this way, so it can never
    // overtake a newer one of the same key that went out meanwhile.
    bool refresh = false;
    // The steady-clock ms from which it may go out (kStateMinGapMs after
    // the key's last publication), set when it is queued.
    int64_t due_ms = 0;
  };

  // The store's listener (on the putting thread): records the newest state
  // of the key for the state thread; never calls Paho.
  void OnChange(const store::Change& c);

  // Puts a state that did not go out back in line, unless a newer one of
  // the key is already waiting.
  void Requeue(std::string key, StateItem&& item);
  // The steady-clock ms from which a change of `key` may go out: kStateMinGapMs
  // after its last publication, 0 when it has none. Needs state_mu_.
  int64_t StateDueAtLocked(const std::string& key) const;

  // The state thread: publishes the newest state of each key that changed
  // (a burst of one key publishes its last value), QoS 1 and retained, at
  // most kStateInFlight unacknowledged; what fails goes back in line. After
  // every connect, every key's current state is published again.
  void StateLoop();

  size_t StateInFlightLimit() const;

  bool state_stopping();

  // Constant after construction.
  const BridgeOptions options_;
  store::Store* const store_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::string set_prefix_;
  const std::string status_topic_;
  const std::string request_topic_;
  const std::string response_topic_;
  store::Api api_;

  // Null without rules; each engine is immutable, replaced whole by
  // ReplaceRules. Guarded by mapping_mu_.
  std::shared_ptr<const MappingEngine> mapping_;
  mutable std::mutex mapping_mu_;
  std::mutex replace_mu_;                       // one ReplaceRules at a time
  std::unique_ptr<Discovery> discovery_;        // null when off; thread-safe
  MappingResult mapped_;                        // owned by the ingest thread
  Discovery::Mapped discovered_;                // owned by the ingest thread
  std::unique_ptr<mqtt::async_client> client_;  // thread-safe itself
  int listener_id_ = 0;
  std::atomic<bool> connected_{false};
  std::atomic<bool> subscribed_{false};
  // The broker's Receive Maximum on the current connection.
  std::atomic<int> server_receive_max_{65535};

  // The ingest log and its thread.
  std::unique_ptr<IngestLog> ingest_;  // thread-safe: Paho appends, the ingest thread reads
  IngestRecord incoming_;              // owned by Paho's receive thread
  std::thread ingest_thread_;
  std::atomic<bool> ingest_stop_{false};
  std::atomic<int64_t> drain_until_ms_{0};  // steady-clock ms; set with ingest_stop_
  // Steady-clock ms when the ingest thread took the batch it is storing; 0
  // when it is not storing one.
  std::atomic<int64_t> ingest_busy_since_ms_{0};

  // State publishing (StateLoop).
  std::mutex state_mu_;
  std::condition_variable state_cv_;
  std::unordered_map<std::string, StateItem> state_pending_;  // guarded by state_mu_
  bool republish_all_ = false;                                // guarded by state_mu_
  bool state_stop_ = false;                                   // guarded by state_mu_
  bool state_waiting_ = false;  // the state thread waits for work; guarded by state_mu_
  // A pending change may go out now (not held back by kStateMinGapMs).
  bool state_due_ = false;  // guarded by state_mu_
  // Steady-clock ms when each key's state was last taken for publishing;
  // entries older than kStateMinGapMs are pruned. Guarded by state_mu_.
  std::unordered_map<std::string, int64_t> state_sent_ms_;
  std::thread state_thread_;

  struct RefusalLog {
    std::chrono::steady_clock::time_point last;
    int64_t suppressed = 0;
    bool logged_once = false;
  };
  std::mutex refusal_log_mu_;
  std::map<std::string, RefusalLog> refusal_log_;  // guarded by refusal_log_mu_

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
  // Connections made, and the one whose subscription the broker
  // acknowledged: the connector subscribes while they differ.
  uint64_t connect_gen_ = 0;     // guarded by mu_
  uint64_t subscribed_gen_ = 0;  // guarded by mu_
  // When KeepDiscovery saves next, and forgets unconfirmed entities.
  std::optional<std::chrono::steady_clock::time_point> save_discovery_at_;     // guarded by mu_
  std::optional<std::chrono::steady_clock::time_point> confirm_discovery_at_;  // guarded by mu_
  std::thread connector_;
  std::thread discovery_keeper_;  // with discovery only
};

}  // namespace komoku::bridge

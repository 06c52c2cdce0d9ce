// The MQTT bridge: subscribes to <prefix>/set/# and the topic filters of the
// mapping rules and turns each message into puts on the Store; publishes
// <prefix>/state/<key> (the latest value of each key that changed) and
// <prefix>/status (online, and offline as the last will).
//
// Threads (docs/storage.md, "From the socket to the commit"):
// - Paho's receive thread only appends each message to the ingest log
//   (one write()) and returns, so it reads as fast as the broker sends;
// - the ingest thread reads the log in order, maps and puts the messages
//   (the store commits them in groups) and releases the log once committed;
// - the state thread publishes the newest state of each key that changed,
//   coalescing bursts, retrying, and republishing every key on each connect;
// - the connector thread connects, turns Nagle's algorithm off on Paho's
//   socket (bridge/broker_socket.h), and subscribes again after every
//   (re)connect until the broker acknowledges it.
// No lock of the bridge or the store is held while calling Paho.
//
// Thread-safe. Owns the Paho client and its threads.
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "bridge/discovery.h"
#include "bridge/mapping.h"
#include "bridge/tls.h"
#include "common/status.h"
#include "store/store.h"

namespace komoku::bridge {

struct BridgeOptions {
  // tcp:// or mqtt://; ssl:// or mqtts:// for TLS with `tls`.
  std::string broker = "tcp://localhost:1883";
  // Stable, so the broker keeps the session (and queues messages) across restarts.
  std::string client_id = "komoku";
  std::string username;
  std::string password;
  // Used when `broker` is an ssl:// or mqtts:// URL.
  TlsOptions tls;
  std::string prefix = "komoku";
  // How long the broker keeps the session while Komoku is away.
  std::chrono::seconds session_expiry{7 * 24 * 3600};
  std::chrono::seconds keep_alive{30};
  // A lost (or first) connection is tried again after reconnect_min,
  // doubling up to reconnect_max: a broker that restarts is connected to,
  // and subscribed to, again within about reconnect_max of coming back. A
  // try a second costs a refused TCP connection while the broker is away.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{1000};
  // A larger payload is refused unread.
  size_t max_payload_bytes = 64 * 1024;
  // Publish <prefix>/state/<key> on every change of the current value.
  bool publish_state = true;
  // Topic mapping rules (docs/mapping.md): their filters are subscribed too,
  // and a message on a mapped topic becomes puts of the keys they make.
  std::vector<MappingRule> rules;
  // Directory of the ingest log (bridge/ingest_log.h): every message
  // received is appended there before Paho's callback returns, and stored
  // from there by the ingest thread. Required.
  std::string ingest_dir;
  // A stop stores what the ingest log still holds for at most this long;
  // the rest stays in the log for the next start.
  std::chrono::milliseconds drain_timeout{5000};
  // Self-describing devices (docs/mapping.md#discovery): off when unset.
  // Configured rules win over discovered entities for a topic they match.
  std::optional<DiscoveryOptions> discovery;
};

class Bridge {
 public:
  // `store` must outlive the Bridge.
  static Result<std::unique_ptr<Bridge>> Create(const BridgeOptions& options, store::Store* store,
                                                std::shared_ptr<spdlog::logger> log);
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Starts connecting in the background and keeps retrying with backoff;
  // returns at once.
  void Start();

  // Publishes `offline`, disconnects (after which no message callback runs)
  // and stops retrying. Idempotent.
  void Stop();

  bool connected() const;
  // True once the set subscription is acknowledged on the current connection.
  bool subscribed() const;
  // How long the ingest thread has been working on one batch of messages:
  // zero while it keeps up or has nothing to do. Health checks and the
  // systemd watchdog read it.
  std::chrono::milliseconds IngestStalledFor() const;
  // Messages received (or left by an earlier run) and not yet stored.
  uint64_t IngestBacklog() const;

  // The discovered entities (Discovery::Describe), or null when discovery
  // is off. Thread-safe.
  nlohmann::json DiscoveryJson() const;
  // Discovered keys that keep an earlier name of their device, each with
  // the name its topic makes now (Discovery::Aliases). Thread-safe.
  std::map<std::string, std::string> KeyAliases() const;
  // Publishes with QoS 1 and waits (up to 10 s) for the broker's
  // acknowledgement, for publishers that keep their own queue (derived
  // state): Busy while not connected or when the acknowledgement does not
  // come, so the caller keeps the message and tries again.
  Status Publish(const std::string& topic, const std::string& payload, bool retain);

  // Replaces the mapping rules (a reload): compiles `rules` (InvalidArgument
  // and no change when they do not compile), swaps them in, subscribes the
  // filters only they need and unsubscribes those only the old ones needed.
  // A message is mapped wholly by the old rules or wholly by the new ones;
  // none is dropped for the swap. Thread-safe.
  Status ReplaceRules(const std::vector<MappingRule>& rules);

  // The key a set topic names, or InvalidArgument when the topic is not
  // <prefix>/set/<key>.
  Result<std::string> KeyFromTopic(std::string_view topic) const;

 private:
  class Impl;
  explicit Bridge(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace komoku::bridge

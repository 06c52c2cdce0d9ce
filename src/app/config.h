// Komoku's configuration: one YAML file, every key declared once in a table
// (name, type, default, range, description). That table drives validation,
// `komoku check-config`, the commented example config/komoku.yaml
// (`komoku config-example`) and docs/config.md (`komoku config-docs`).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bridge/mapping.h"
#include "common/status.h"
#include "core/value.h"
#include "derived/derived.h"
#include "store/store.h"

namespace komoku::app {

struct Config {
  // mqtt
  std::string mqtt_broker;
  std::string mqtt_client_id;
  std::string mqtt_username;
  std::string mqtt_password;
  std::string mqtt_password_file;
  std::string mqtt_prefix;
  int64_t mqtt_session_expiry_s = 0;
  int64_t mqtt_keep_alive_s = 0;
  int64_t mqtt_max_payload_bytes = 0;
  // mqtt.tls: used with an ssl:// or mqtts:// broker (docs/operations.md#tls).
  std::string mqtt_tls_ca_file;    // empty: the system's CA store
  std::string mqtt_tls_cert_file;  // client certificate (PEM), empty: none
  std::string mqtt_tls_key_file;   // its private key (PEM)
  std::string mqtt_tls_key_password_file;
  std::string mqtt_tls_key_password;  // read from key_password_file
  bool mqtt_tls_verify = true;
  // store
  std::string store_data_dir;
  int64_t store_commit_interval_ms = 0;
  int64_t store_commit_max_rows = 0;
  int64_t store_checkpoint_interval_s = 0;
  int64_t store_hot_window_h = 0;
  int64_t store_compact_interval_s = 0;
  int64_t store_raw_retention_d = 0;
  int64_t store_rollup_5m_retention_d = 0;
  // http
  std::string http_listen;
  int64_t http_max_points = 0;
  std::string http_token;  // from http.token or the file http.token_file names
  std::string http_token_file;
  int64_t http_max_connections = 0;
  int64_t http_max_header_bytes = 0;
  int64_t http_max_header_fields = 0;
  int64_t http_max_body_bytes = 0;
  int64_t http_idle_timeout_s = 0;
  int64_t http_header_timeout_s = 0;
  int64_t http_body_timeout_s = 0;
  int64_t http_write_timeout_s = 0;
  int64_t http_workers = 0;
  int64_t http_max_queued_requests = 0;
  int64_t http_max_stream_clients = 0;
  int64_t http_stream_queue_bytes = 0;
  // log
  std::string log_level;
  // discovery (docs/mapping.md#discovery)
  bool discovery_enabled = true;
  bool discovery_home_assistant = false;
  std::string discovery_prefix;
  bool discovery_homie = false;
  std::string discovery_homie_prefix;
  bool discovery_tasmota = true;
  bool discovery_disabled_entities = false;
  std::string discovery_key_prefix;
  // derived (docs/derived.md)
  bool derived_retain = true;
  int64_t derived_queue_max = 0;
  bool derived_discovery = false;
  std::string derived_discovery_prefix;
  std::string derived_tz;
  // derived.aggregates (one entry per key and resolution), derived.rolling,
  // derived.discovery_keys: checked for syntax and, for keys given a type
  // under keys:, against that type; against the store's keys at start.
  std::vector<derived::AggregateDef> derived_aggregates;
  std::vector<derived::RollingDef> derived_rolling;
  std::vector<derived::DiscoveryKey> derived_discovery_keys;
  // remote_write (docs/prometheus.md#remote-write): off while url is empty.
  std::string remote_write_url;
  std::string remote_write_bearer_token;  // or read from bearer_token_file
  std::string remote_write_bearer_token_file;
  std::string remote_write_username;
  std::string remote_write_password;  // or read from password_file
  std::string remote_write_password_file;
  std::string remote_write_ca_file;
  std::string remote_write_include;
  std::string remote_write_exclude;
  int64_t remote_write_batch_size = 0;
  int64_t remote_write_send_interval_ms = 0;
  int64_t remote_write_timeout_ms = 0;

  // keys: definitions applied at start (Store::Define), in file order.
  struct KeyDefinition {
    std::string name;
    std::optional<store::KeyType> type;
    nlohmann::json options;  // Komoku option names, validated for the type
    std::string where;       // "file:line" of the key, for messages at start
  };
  std::vector<KeyDefinition> keys;

  // booleans: the words read as true and false (besides true/false/1/0).
  store::BooleanWords boolean_words;

  // mappings: topic mapping rules, in file order (docs/mapping.md); checked
  // by compiling them, so a loaded config's rules compile.
  std::vector<bridge::MappingRule> mappings;

  // Derived from http_listen by validation.
  std::string http_host;
  int http_port = 0;
  // Where the config came from ("built-in defaults" or the file name).
  std::string source;
};

// The built-in defaults.
Config DefaultConfig();

// The store's options as the config sets them.
store::StoreOptions StoreOptionsOf(const Config& config);

// Reads and validates `path`. Errors name the file, the line and the field:
// "komoku.yaml:7: mqtt.keep_alive: expected seconds or a duration (e.g. 30s,
// 10m, 24h, 7d, 1w), got 'often'".
// A password_file is read here, so a missing secret stops the start too.
Result<Config> LoadConfig(const std::string& path);

// LoadConfig, or the built-in defaults when `path` is empty (the command
// line's `-c` left out).
Result<Config> LoadConfigOrDefaults(const std::string& path);

// Validates a YAML document given as text; `name` stands for the file in
// messages. (LoadConfig reads the file and calls this.)
Result<Config> ParseConfig(const std::string& text, const std::string& name);

// What SIGHUP reloads: log.level, keys:, mappings: and derived:. Every
// other setting differing between `running` and `loaded` is named here
// ("mqtt.broker", "booleans"), in table order: those wait for a restart.
std::vector<std::string> RestartOnlyChanges(const Config& running, const Config& loaded);

// The commented example configuration, every key at its default.
std::string ConfigExample();

// The example mapping rules (uncommented YAML: a `mappings:` section), as
// shown commented out at the end of the example configuration.
std::string MappingExampleYaml();

// The Markdown reference of every key.
std::string ConfigDocs();

}  // namespace komoku::app

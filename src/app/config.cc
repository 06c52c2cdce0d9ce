#include "app/config.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <variant>
#include <vector>

#include "bridge/tls.h"
#include "core/key_options.h"
#include "series/history.h"
#include "wire/key_options_json.h"

namespace komoku::app {
namespace {

enum class Kind { kString, kInt };

struct Field {
  const char* section;
  const char* name;
  std::variant<std::string Config::*, int64_t Config::*, bool Config::*> member;
  const char* default_value;
  int64_t min = 0;  // for integers
  int64_t max = 0;
  const char* help;
  // A duration: the milliseconds of one unit of a bare number (kSeconds for
  // a field in seconds). The value may then also be written with a unit,
  // "10m", "2d" (store::ParseDuration, the grammar of key options, steps and
  // windows), and must come to a whole number of the field's units.
  int64_t unit_ms = 0;
};

constexpr int64_t kMillis = 1;
constexpr int64_t kSeconds = 1000;
constexpr int64_t kHours = 3600 * kSeconds;
constexpr int64_t kDays = 24 * kHours;

// How the docs and errors name a duration field's unit.
const char* UnitName(int64_t unit_ms) {
  switch (unit_ms) {
    case kMillis:
      return "milliseconds";
    case kSeconds:
      return "seconds";
    case kHours:
      return "hours";
    case kDays:
      return "days";
    default:
      return "units";
  }
}

// Every configuration key, once. Order here is the order of the example file.
const std::vector<Field>& Fields() {
  static const std::vector<Field> fields = {
      {"mqtt", "broker", &Config::mqtt_broker, "tcp://localhost:1883", 0, 0,
       "Broker URL: tcp://host:port or mqtt://host:port; ssl:// or mqtts:// for TLS (mqtt.tls)."},
      {"mqtt", "client_id", &Config::mqtt_client_id, "komoku", 0, 0,
       "Client id; keep it stable so the broker keeps Komoku's session and queues "
       "messages while it is down."},
      {"mqtt", "username", &Config::mqtt_username, "", 0, 0, "User name, if the broker wants one."},
      {"mqtt", "password", &Config::mqtt_password, "", 0, 0,
       "Password. Prefer password_file, which keeps the secret out of this file."},
      {"mqtt", "password_file", &Config::mqtt_password_file, "", 0, 0,
       "A file whose content (trailing newline removed) is the password."},
      {"mqtt", "prefix", &Config::mqtt_prefix, "komoku", 0, 0,
       "Topic prefix: <prefix>/set/<key>, <prefix>/state/<key>, <prefix>/status."},
      {"mqtt", "session_expiry", &Config::mqtt_session_expiry_s, "604800", 0, 4294967295LL,
       "Seconds the broker keeps the session (and queues messages) while Komoku is away (or 7d).",
       kSeconds},
      {"mqtt", "keep_alive", &Config::mqtt_keep_alive_s, "30", 5, 3600,
       "MQTT keep-alive interval in seconds.", kSeconds},
      {"mqtt", "max_payload_bytes", &Config::mqtt_max_payload_bytes, "65536", 16, 16777216,
       "A larger message is refused unread."},
      {"mqtt.tls", "ca_file", &Config::mqtt_tls_ca_file, "", 0, 0,
       "PEM file of the CA certificate(s) the broker's certificate must chain to. Empty: the "
       "system's CA store (/etc/ssl/certs), right for a broker with a public certificate."},
      {"mqtt.tls", "cert_file", &Config::mqtt_tls_cert_file, "", 0, 0,
       "PEM file of Komoku's client certificate, for a broker that asks for one "
       "(require_certificate); give key_file too unless this file holds the key."},
      {"mqtt.tls", "key_file", &Config::mqtt_tls_key_file, "", 0, 0,
       "PEM file of the client certificate's private key; keep it readable by Komoku only."},
      {"mqtt.tls", "key_password_file", &Config::mqtt_tls_key_password_file, "", 0, 0,
       "A file whose content (one line) is the password of an encrypted key_file."},
      {"mqtt.tls", "verify", &Config::mqtt_tls_verify, "true", 0, 0,
       "Check that the broker's certificate chains to a trusted CA and names the broker's host "
       "(a DNS name or IP address in subjectAltName). false: encrypted, but any certificate is "
       "accepted, so a man in the middle is not noticed; for a first test only."},
      {"store", "data_dir", &Config::store_data_dir, "./komoku-data", 0, 0,
       "Directory of the database; created if missing."},
      {"store", "commit_interval_ms", &Config::store_commit_interval_ms, "1000", 1, 60000,
       "Changes nobody waits for are committed at least this often (milliseconds, or 2s).",
       kMillis},
      {"store", "commit_max_rows", &Config::store_commit_max_rows, "4000", 1, 1000000,
       "A commit starts as soon as this many changes wait."},
      {"store", "checkpoint_interval", &Config::store_checkpoint_interval_s, "10", 1, 3600,
       "Seconds between WAL checkpoints: the most a power cut can take back.", kSeconds},
      {"store", "hot_window_hours", &Config::store_hot_window_h, "48", 1, 8760,
       "Hours (or 2d): changes older than this (rounded down to a UTC day) move from SQLite "
       "into compact, immutable segment files.",
       kHours},
      {"store", "compact_interval", &Config::store_compact_interval_s, "3600", 0, 604800,
       "Seconds (or 1h) between background compactions; 0 runs them only on `komoku compact`.",
       kSeconds},
      {"store", "raw_retention_days", &Config::store_raw_retention_d, "365", 0, 36500,
       "Days (or 52w) raw changes are kept; older history is answered from rollups (hourly and "
       "daily forever). 0 keeps them forever.",
       kDays},
      {"store", "rollup_5m_retention_days", &Config::store_rollup_5m_retention_d, "730", 0, 36500,
       "Days 5-minute rollups are kept; 0 keeps them forever.", kDays},
      {"http", "listen", &Config::http_listen, "127.0.0.1:8080", 0, 0,
       "Address of the HTTP API: host:port (port 0 lets the OS choose)."},
      {"http", "max_points", &Config::http_max_points, "10000", 1, 10000000,
       "Most rows one history answer may hold."},
      {"http", "token", &Config::http_token, "", 0, 0,
       "Bearer token every request must carry (`Authorization: Bearer <token>`), except "
       "/healthz and /readyz; at least 16 characters. Empty: no authentication (keep "
       "http.listen on 127.0.0.1 then). Prefer token_file."},
      {"http", "token_file", &Config::http_token_file, "", 0, 0,
       "File holding the bearer token (one line), which keeps the secret out of this file."},
      {"http", "max_connections", &Config::http_max_connections, "1000", 1, 1000000,
       "Connections open at once. Past it, /healthz and /readyz are still answered, other "
       "requests get 503 too_many_connections. Each takes a file descriptor (LimitNOFILE=)."},
      {"http", "max_header_bytes", &Config::http_max_header_bytes, "16384", 1024, 1048576,
       "Most bytes of a request's line and header fields; past them 431, before the token is "
       "checked."},
      {"http", "max_header_fields", &Config::http_max_header_fields, "100", 8, 10000,
       "Most header fields in a request; past them 431."},
      {"http", "max_body_bytes", &Config::http_max_body_bytes, "65536", 1024, 67108864,
       "Most bytes of a request body, chunked or not; past them 413, without reading the rest. "
       "Also the largest WebSocket message (past it the connection closes with 1009)."},
      {"http", "idle_timeout", &Config::http_idle_timeout_s, "60", 1, 3600,
       "Seconds a connection may wait for its next request before it is closed.", kSeconds},
      {"http", "header_timeout", &Config::http_header_timeout_s, "10", 1, 600,
       "Seconds from a request's first byte to the end of its header; then 408.", kSeconds},
      {"http", "body_timeout", &Config::http_body_timeout_s, "30", 1, 3600,
       "Seconds from the end of a request's header to the end of its body; then 408.", kSeconds},
      {"http", "write_timeout", &Config::http_write_timeout_s, "30", 1, 3600,
       "Seconds one write of an answer (or of a stream's events) may take before the connection "
       "is closed.",
       kSeconds},
      {"http", "workers", &Config::http_workers, "4", 1, 256,
       "Threads that run requests (the connections themselves share one thread)."},
      {"http", "max_queued_requests", &Config::http_max_queued_requests, "256", 1, 100000,
       "Requests that may wait for a worker; past them 503 busy."},
      {"http", "max_stream_clients", &Config::http_max_stream_clients, "8", 1, 10000,
       "Event streams (/api/v1/stream) open at once; past them 503."},
      {"http", "stream_queue_bytes", &Config::http_stream_queue_bytes, "1048576", 4096, 1073741824,
       "Bytes of events a stream client, or of answers and pushes a WebSocket client, may leave "
       "unread; past them it is dropped and counted (komoku_sse_dropped_total, "
       "komoku_ws_dropped_total)."},
      {"log", "level", &Config::log_level, "info", 0, 0, "trace, debug, info, warn, error or off."},
      {"discovery", "enabled", &Config::discovery_enabled, "true", 0, 0,
       "Map the topics that Home Assistant discovery configs and Homie attributes describe, "
       "without mapping rules (docs/mapping.md#discovery): on out of the box, so a house "
       "announced to Home Assistant is recorded with no edits; GET /api/v1/discovery lists "
       "what it read. Configured mappings win; false turns it off."},
      {"discovery", "home_assistant", &Config::discovery_home_assistant, "true", 0, 0,
       "Read Home Assistant discovery configs (<prefix>/+/+/config, <prefix>/+/+/+/config)."},
      {"discovery", "prefix", &Config::discovery_prefix, "homeassistant", 0, 0,
       "Home Assistant's discovery prefix."},
      {"discovery", "homie", &Config::discovery_homie, "true", 0, 0,
       "Read Homie devices: 3/4 property attributes ($datatype, $unit, $format, $name, "
       "$retained; a Homie 3 property without $datatype is text) and Homie 5 "
       "<prefix>/5/+/$description."},
      {"discovery", "homie_prefix", &Config::discovery_homie_prefix, "homie", 0, 0,
       "Homie's base topic."},
      {"discovery", "tasmota", &Config::discovery_tasmota, "true", 0, 0,
       "Read Tasmota 12+'s own discovery (tasmota/discovery/<MAC>/config and .../sensors)."},
      {"discovery", "disabled_entities", &Config::discovery_disabled_entities, "false", 0, 0,
       "Also record the entities a Home Assistant config marks enabled_by_default: false "
       "(zigbee2mqtt's linkquality, voltage, last_seen); otherwise they are listed as disabled."},
      {"discovery", "key_prefix", &Config::discovery_key_prefix, "", 0, 0,
       "Put before every discovered key (a key is named after its state topic: "
       "zigbee2mqtt/kitchen_sensor/temperature)."},
      {"remote_write", "url", &Config::remote_write_url, "", 0, 0,
       "Prometheus remote write: every stored change of a numeric, counter, boolean or uptime "
       "key is sent to this URL (http:// or https://; Prometheus: "
       "http://host:9090/api/v1/write), resuming after a restart or an outage where it "
       "stopped (docs/prometheus.md#remote-write). Empty: off."},
      {"remote_write", "bearer_token", &Config::remote_write_bearer_token, "", 0, 0,
       "Bearer token sent with each request (`Authorization: Bearer`). Prefer "
       "bearer_token_file."},
      {"remote_write", "bearer_token_file", &Config::remote_write_bearer_token_file, "", 0, 0,
       "File holding the bearer token (one line)."},
      {"remote_write", "username", &Config::remote_write_username, "", 0, 0,
       "User name for basic auth (instead of a bearer token)."},
      {"remote_write", "password", &Config::remote_write_password, "", 0, 0,
       "Password for basic auth. Prefer password_file."},
      {"remote_write", "password_file", &Config::remote_write_password_file, "", 0, 0,
       "File holding the basic auth password (one line)."},
      {"remote_write", "ca_file", &Config::remote_write_ca_file, "", 0, 0,
       "PEM CA certificates to verify an https:// receiver with; empty: the system's."},
      {"remote_write", "include", &Config::remote_write_include, "", 0, 0,
       "Comma-separated globs of the keys sent ('*' matches '/' too: \"kitchen/*, "
       "garage/*\"); empty: every key."},
      {"remote_write", "exclude", &Config::remote_write_exclude, "", 0, 0,
       "Comma-separated globs of keys not sent, even when included."},
      {"remote_write", "batch_size", &Config::remote_write_batch_size, "2000", 1, 100000,
       "Changes per request at most."},
      {"remote_write", "send_interval", &Config::remote_write_send_interval_ms, "1000", 10, 600000,
       "A batch smaller than batch_size waits at most this long for more (milliseconds, or "
       "5s).",
       kMillis},
      {"remote_write", "timeout", &Config::remote_write_timeout_ms, "10000", 100, 600000,
       "The longest one request may take, from connecting to the end of the answer "
       "(milliseconds, or 30s); a receiver that answers nothing in time is cut off and the "
       "batch sent again after a backoff.",
       kMillis},
      {"derived", "retain", &Config::derived_retain, "true", 0, 0,
       "Publish derived topics (<prefix>/derived/...) retained."},
      {"derived", "queue_max", &Config::derived_queue_max, "10000", 1, 10000000,
       "Derived publications kept while the broker is away; past this the oldest are dropped "
       "(komoku_derived_dropped_total)."},
      {"derived", "discovery", &Config::derived_discovery, "false", 0, 0,
       "Publish Home Assistant MQTT discovery configs for derived values and discovery_keys."},
      {"derived", "discovery_prefix", &Config::derived_discovery_prefix, "homeassistant", 0, 0,
       "Home Assistant's discovery prefix."},
      {"derived", "tz", &Config::derived_tz, "UTC", 0, 0,
       "IANA time zone of day and week buckets and of 'today' windows."},
  };
  return fields;
}

const Field* FindField(const std::string& section, const std::string& name) {
  for (const Field& f : Fields()) {
    if (section == f.section && name == f.name) return &f;
  }
  return nullptr;
}

bool IsKnownSection(const std::string& section) {
  for (const Field& f : Fields()) {
    if (section == f.section) return true;
  }
  return false;
}

// A section inside a section ("mqtt.tls"), shown in the example with this
// help above it.
const char* SubsectionHelp(const std::string& section) {
  if (section == "mqtt.tls") {
    return "TLS, for an ssl:// or mqtts:// broker (docs/operations.md#tls-to-the-broker).";
  }
  return "";
}

Status Set(Config& c, const Field& f, const std::string& text, const std::string& where) {
  std::string path = std::string(f.section) + "." + f.name;
  if (auto* s = std::get_if<std::string Config::*>(&f.member)) {
    c.*(*s) = text;
    return Status::Ok();
  }
  if (auto* b = std::get_if<bool Config::*>(&f.member)) {
    if (text != "true" && text != "false") {
      return Status::InvalidArgument(where + path + ": expected true or false, got '" + text + "'");
    }
    c.*(*b) = text == "true";
    return Status::Ok();
  }
  auto m = std::get<int64_t Config::*>(f.member);
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string shown = std::to_string(v);
  if ((used == 0 || used != text.size()) && f.unit_ms > 0) {
    // Not a bare number: a duration with its unit.
    Result<int64_t> ms = store::ParseDuration(text);
    if (!ms.ok()) {
      return Status::InvalidArgument(where + path + ": expected " + UnitName(f.unit_ms) +
                                     " or a duration (e.g. 500ms, 30s, 10m, 24h, 7d, 1w), got '" +
                                     text + "'");
    }
    if (*ms % f.unit_ms != 0) {
      return Status::InvalidArgument(where + path + ": '" + text + "' is not a whole number of " +
                                     UnitName(f.unit_ms));
    }
    v = *ms / f.unit_ms;
    shown = "'" + text + "' (" + std::to_string(v) + " " + UnitName(f.unit_ms) + ")";
  } else if (used == 0 || used != text.size()) {
    return Status::InvalidArgument(where + path + ": expected an integer, got '" + text + "'");
  }
  if (v < f.min || v > f.max) {
    return Status::InvalidArgument(where + path + ": " + shown + " is out of range " +
                                   std::to_string(f.min) + ".." + std::to_string(f.max));
  }
  c.*m = v;
  return Status::Ok();
}

std::string Where(const std::string& name, const YAML::Mark& mark) {
  return name + ":" + std::to_string(mark.line + 1) + ": ";
}

// Where a field was set: "file:line: " when the file set it, "file: " when
// it kept its default.
using WhereFn = std::function<std::string(const std::string& field)>;

// A secret given as `<field>_file`: read into `*secret` (one line, its line
// end dropped); refused when `<field>` is set as well.
Status ReadSecretFile(const std::string& field, const std::string& path, const WhereFn& at,
                      std::string* secret) {
  if (path.empty()) return Status::Ok();
  const std::string file_field = field + "_file";
  if (!secret->empty()) {
    return Status::InvalidArgument(at(file_field) + field + " and " + file_field + " are both set");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument(at(file_field) + file_field + ": cannot read '" + path + "'");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  *secret = text;
  return Status::Ok();
}

// The text of a file mqtt.tls names, or an error naming the field.
Status ReadTlsFile(const std::string& field, const std::string& path, const WhereFn& at,
                   std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument(at(field) + field + ": cannot read '" + path + "'");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  return Status::Ok();
}

bool HoldsCertificate(const std::string& pem) {
  return pem.find("-----BEGIN CERTIFICATE-----") != std::string::npos ||
         pem.find("-----BEGIN TRUSTED CERTIFICATE-----") != std::string::npos;
}

bool HoldsPrivateKey(const std::string& pem) {
  for (size_t at = pem.find("-----BEGIN "); at != std::string::npos;
       at = pem.find("-----BEGIN ", at + 1)) {
    size_t end = pem.find("-----", at + 11);
    if (end != std::string::npos && pem.compare(end - 11, 11, "PRIVATE KEY") == 0) return true;
  }
  return false;
}

bool EncryptedKey(const std::string& pem) {
  return pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
         pem.find("Proc-Type: 4,ENCRYPTED") != std::string::npos;
}

// mqtt.tls: only with an ssl:// or mqtts:// broker; each file readable and
// holding what it should; then loaded as the TLS client will load it, so a
// wrong file stops the start (and check-config) with its name and reason.
Status CheckTls(Config& c, const WhereFn& at) {
  struct Given {
    const char* field;
    bool set;
  };
  const Given given[] = {{"mqtt.tls.ca_file", !c.mqtt_tls_ca_file.empty()},
                         {"mqtt.tls.cert_file", !c.mqtt_tls_cert_file.empty()},
                         {"mqtt.tls.key_file", !c.mqtt_tls_key_file.empty()},
                         {"mqtt.tls.key_password_file", !c.mqtt_tls_key_password_file.empty()},
                         {"mqtt.tls.verify", !c.mqtt_tls_verify}};
  if (!bridge::IsTlsUrl(c.mqtt_broker)) {
    for (const Given& g : given) {
      if (!g.set) continue;
      return Status::InvalidArgument(at(g.field) + g.field + ": set, but mqtt.broker '" +
                                     c.mqtt_broker + "' is not a TLS URL (use ssl:// or mqtts://)");
    }
    return Status::Ok();
  }
  std::string pem;
  std::string key_pem;  // the file the key is read from
  if (!c.mqtt_tls_ca_file.empty()) {
    KOMOKU_RETURN_IF_ERROR(ReadTlsFile("mqtt.tls.ca_file", c.mqtt_tls_ca_file, at, &pem));
    if (!HoldsCertificate(pem)) {
      return Status::InvalidArgument(at("mqtt.tls.ca_file") + "mqtt.tls.ca_file: '" +
                                     c.mqtt_tls_ca_file +
                                     "' holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
  }
  bool key_in_cert_file = false;
  if (!c.mqtt_tls_cert_file.empty()) {
    KOMOKU_RETURN_IF_ERROR(ReadTlsFile("mqtt.tls.cert_file", c.mqtt_tls_cert_file, at, &pem));
    if (!HoldsCertificate(pem)) {
      return Status::InvalidArgument(at("mqtt.tls.cert_file") + "mqtt.tls.cert_file: '" +
                                     c.mqtt_tls_cert_file +
                                     "' holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    key_in_cert_file = HoldsPrivateKey(pem);
    if (key_in_cert_file) key_pem = pem;
    if (c.mqtt_tls_key_file.empty() && !key_in_cert_file) {
      return Status::InvalidArgument(at("mqtt.tls.cert_file") +
                                     "mqtt.tls.cert_file: give mqtt.tls.key_file too (the "
                                     "certificate's private key)");
    }
  }
  if (!c.mqtt_tls_key_file.empty()) {
    if (c.mqtt_tls_cert_file.empty()) {
      return Status::InvalidArgument(at("mqtt.tls.key_file") +
                                     "mqtt.tls.key_file: give mqtt.tls.cert_file too (the "
                                     "client certificate of this key)");
    }
    KOMOKU_RETURN_IF_ERROR(ReadTlsFile("mqtt.tls.key_file", c.mqtt_tls_key_file, at, &pem));
    if (!HoldsPrivateKey(pem)) {
      return Status::InvalidArgument(at("mqtt.tls.key_file") + "mqtt.tls.key_file: '" +
                                     c.mqtt_tls_key_file +
                                     "' holds no PEM private key (-----BEGIN PRIVATE KEY-----)");
    }
    key_pem = pem;
  }
  if (!c.mqtt_tls_key_password_file.empty() && c.mqtt_tls_cert_file.empty()) {
    return Status::InvalidArgument(at("mqtt.tls.key_password_file") +
                                   "mqtt.tls.key_password_file: set without a key "
                                   "(mqtt.tls.cert_file and key_file)");
  }
  KOMOKU_RETURN_IF_ERROR(ReadSecretFile("mqtt.tls.key_password", c.mqtt_tls_key_password_file, at,
                                        &c.mqtt_tls_key_password));
  if (!c.mqtt_tls_cert_file.empty() && c.mqtt_tls_key_password.empty() && EncryptedKey(key_pem)) {
    const char* field = key_in_cert_file && c.mqtt_tls_key_file.empty() ? "mqtt.tls.cert_file"
                                                                        : "mqtt.tls.key_file";
    return Status::InvalidArgument(at(field) + field +
                                   ": the key is encrypted: give mqtt.tls.key_password_file");
  }
  bridge::TlsOptions tls;
  tls.ca_file = c.mqtt_tls_ca_file;
  tls.cert_file = c.mqtt_tls_cert_file;
  tls.key_file = c.mqtt_tls_key_file;
  tls.key_password = c.mqtt_tls_key_password;
  tls.verify = c.mqtt_tls_verify;
  std::string field;
  Status loaded = bridge::CheckTlsFiles(tls, &field);
  if (!loaded.ok()) {
    const std::string path = "mqtt.tls." + (field.empty() ? std::string("ca_file") : field);
    return Status::InvalidArgument(at(path) + path + ": " + loaded.message());
  }
  return Status::Ok();
}

// remote_write: a usable URL, one kind of authentication, secrets read.
Status CheckRemoteWrite(Config& c, const WhereFn& at) {
  const std::string& url = c.remote_write_url;
  if (url.empty()) {
    for (const char* field : {"bearer_token", "bearer_token_file", "username", "password",
                              "password_file", "ca_file"}) {
      const Field* f = FindField("remote_write", field);
      if (!(c.*std::get<std::string Config::*>(f->member)).empty()) {
        return Status::InvalidArgument(at(std::string("remote_write.") + field) + "remote_write." +
                                       field +
                                       ": set, but remote_write.url is "
                                       "empty (remote write is off)");
      }
    }
    return Status::Ok();
  }
  const bool https = url.rfind("https://", 0) == 0;
  if ((!https && url.rfind("http://", 0) != 0) || url.size() <= (https ? 8u : 7u) ||
      url.find_first_of(" \t\r\n") != std::string::npos) {
    return Status::InvalidArgument(at("remote_write.url") + "remote_write.url: '" + url +
                                   "' must be http://host[:port]/path or https://...");
  }
  KOMOKU_RETURN_IF_ERROR(ReadSecretFile("remote_write.bearer_token",
                                        c.remote_write_bearer_token_file, at,
                                        &c.remote_write_bearer_token));
  KOMOKU_RETURN_IF_ERROR(ReadSecretFile("remote_write.password", c.remote_write_password_file, at,
                                        &c.remote_write_password));
  if (!c.remote_write_bearer_token.empty() && !c.remote_write_username.empty()) {
    return Status::InvalidArgument(at("remote_write.username") +
                                   "remote_write.username: give a bearer token or basic auth, "
                                   "not both");
  }
  if (!c.remote_write_password.empty() && c.remote_write_username.empty()) {
    return Status::InvalidArgument(at("remote_write.password") +
                                   "remote_write.password: set without remote_write.username");
  }
  if (!c.remote_write_ca_file.empty()) {
    if (!https) {
      return Status::InvalidArgument(at("remote_write.ca_file") +
                                     "remote_write.ca_file: set, but remote_write.url is not "
                                     "https://");
    }
    std::string pem;
    KOMOKU_RETURN_IF_ERROR(ReadTlsFile("remote_write.ca_file", c.remote_write_ca_file, at, &pem));
    if (!HoldsCertificate(pem)) {
      return Status::InvalidArgument(at("remote_write.ca_file") + "remote_write.ca_file: '" +
                                     c.remote_write_ca_file +
                                     "' holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
  }
  return Status::Ok();
}

// Checks what is not a matter of one field's type.
Status Validate(Config& c, const WhereFn& at) {
  auto colon = c.http_listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument(at("http.listen") + "http.listen: expected host:port, got '" +
                                   c.http_listen + "'");
  }
  c.http_host = c.http_listen.substr(0, colon);
  std::string port = c.http_listen.substr(colon + 1);
  if (c.http_host.size() > 2 && c.http_host.front() == '[' && c.http_host.back() == ']') {
    c.http_host = c.http_host.substr(1, c.http_host.size() - 2);
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535) {
    return Status::InvalidArgument(at("http.listen") + "http.listen: bad port '" + port + "'");
  }
  c.http_port = std::stoi(port);
  static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
  bool level_ok = false;
  for (const char* l : kLevels) level_ok = level_ok || c.log_level == l;
  if (!level_ok) {
    return Status::InvalidArgument(at("log.level") + "log.level: '" + c.log_level +
                                   "' is not one of trace, debug, info, warn, error, off");
  }
  if (c.mqtt_broker.rfind("tcp://", 0) != 0 && c.mqtt_broker.rfind("ssl://", 0) != 0 &&
      c.mqtt_broker.rfind("mqtt://", 0) != 0 && c.mqtt_broker.rfind("mqtts://", 0) != 0) {
    return Status::InvalidArgument(at("mqtt.broker") + "mqtt.broker: '" + c.mqtt_broker +
                                   "' must start with tcp://, ssl://, mqtt:// or mqtts://");
  }
  if (c.mqtt_client_id.empty() || c.mqtt_client_id.size() > 128) {
    return Status::InvalidArgument(at("mqtt.client_id") +
                                   "mqtt.client_id: must be 1..128 characters");
  }
  if (c.mqtt_prefix.empty() || c.mqtt_prefix.find_first_of("+#") != std::string::npos) {
    return Status::InvalidArgument(at("mqtt.prefix") +
                                   "mqtt.prefix: must be non-empty, without + or #");
  }
  for (const auto& [field, prefix] :
       {std::pair<const char*, const std::string*>{"discovery.prefix", &c.discovery_prefix},
        {"discovery.homie_prefix", &c.discovery_homie_prefix}}) {
    if (prefix->empty() || prefix->find_first_of("+#") != std::string::npos ||
        prefix->front() == '/' || prefix->back() == '/') {
      return Status::InvalidArgument(at(field) + field +
                                     ": must be a topic without + or # and without a leading or "
                                     "trailing /");
    }
  }
  if (c.discovery_key_prefix.find_first_of("+#{}") != std::string::npos) {
    return Status::InvalidArgument(at("discovery.key_prefix") +
                                   "discovery.key_prefix: must not hold + # { or }");
  }
  if (!store::CheckTimeZone(c.derived_tz).ok()) {
    return Status::InvalidArgument(at("derived.tz") + "derived.tz: unknown time zone '" +
                                   c.derived_tz + "'");
  }
  if (c.store_data_dir.empty()) {
    return Status::InvalidArgument(at("store.data_dir") + "store.data_dir: must not be empty");
  }
  KOMOKU_RETURN_IF_ERROR(
      ReadSecretFile("mqtt.password", c.mqtt_password_file, at, &c.mqtt_password));
  KOMOKU_RETURN_IF_ERROR(CheckTls(c, at));
  KOMOKU_RETURN_IF_ERROR(ReadSecretFile("http.token", c.http_token_file, at, &c.http_token));
  KOMOKU_RETURN_IF_ERROR(CheckRemoteWrite(c, at));
  if (!c.http_token_file.empty() && c.http_token.empty()) {
    return Status::InvalidArgument(at("http.token_file") + "http.token_file: '" +
                                   c.http_token_file + "' is empty");
  }
  if (!c.http_token.empty()) {
    const char* field = c.http_token_file.empty() ? "http.token" : "http.token_file";
    if (c.http_token.size() < 16) {
      return Status::InvalidArgument(at(field) + field +
                                     ": the token must have at least 16 characters");
    }
    for (char ch : c.http_token) {
      if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
        return Status::InvalidArgument(at(field) + field +
                                       ": the token must not hold spaces or control characters");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Config> LoadConfigOrDefaults(const std::string& path) {
  if (path.empty()) return DefaultConfig();
  return LoadConfig(path);
}

store::StoreOptions StoreOptionsOf(const Config& config) {
  constexpr int64_t kHourMs = 3600LL * 1000;
  store::StoreOptions o;
  o.data_dir = config.store_data_dir;
  o.hot.commit_interval = std::chrono::milliseconds(config.store_commit_interval_ms);
  o.hot.commit_max_rows = static_cast<size_t>(config.store_commit_max_rows);
  o.hot.checkpoint_interval = std::chrono::seconds(config.store_checkpoint_interval_s);
  o.cold.hot_window_ms = config.store_hot_window_h * kHourMs;
  o.cold.compact_interval = std::chrono::seconds(config.store_compact_interval_s);
  o.cold.raw_retention_ms = config.store_raw_retention_d * 24 * kHourMs;
  o.cold.rollup_5m_retention_ms = config.store_rollup_5m_retention_d * 24 * kHourMs;
  o.boolean_words = config.boolean_words;
  return o;
}

Config DefaultConfig() {
  Config c;
  for (const Field& f : Fields()) {
    Status st = Set(c, f, f.default_value, "");
    (void)st;  // the defaults are in range by construction (tested)
  }
  (void)Validate(c, [](const std::string&) { return std::string("built-in defaults: "); });
  c.source = "built-in defaults";
  return c;
}

namespace {

// A YAML scalar as JSON: numbers as numbers, true/false as booleans, null as
// null, everything else as a string; sequences as arrays.
Result<nlohmann::json> ScalarToJson(const YAML::Node& node, const std::string& where) {
  if (node.IsNull()) return nlohmann::json(nullptr);
  if (node.IsSequence()) {
    nlohmann::json arr = nlohmann::json::array();
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) return Status::InvalidArgument(where + "expected a list of values");
      arr.push_back(item.as<std::string>());
    }
    return arr;
  }
  if (!node.IsScalar()) return Status::InvalidArgument(where + "expected a value or a list");
  const std::string text = node.as<std::string>();
  if (node.Tag() != "!") {  // an unquoted scalar may be a number or a boolean
    if (text == "true" || text == "false") return nlohmann::json(text == "true");
    char* end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    if (!text.empty() && end == text.c_str() + text.size() && std::isfinite(d)) {
      return nlohmann::json(d);
    }
  }
  return nlohmann::json(text);
}

// booleans: {true: [words], false: [words]}; each list given replaces the
// default one.
Status ParseBooleans(const YAML::Node& body, const std::string& name, Config& c) {
  std::set<std::string> seen_words;
  std::set<std::string> seen_fields;
  for (auto kv = body.begin(); kv != body.end(); ++kv) {
    const std::string where = Where(name, kv->first.Mark());
    std::string field = kv->first.as<std::string>();
    if (field != "true" && field != "false") {
      return Status::InvalidArgument(where + "unknown field 'booleans." + field +
                                     "' (true or false)");
    }
    if (!seen_fields.insert(field).second) {
      return Status::InvalidArgument(where + "booleans." + field + ": set twice");
    }
    const YAML::Node list = kv->second;
    if (!list.IsSequence()) {
      return Status::InvalidArgument(where + "booleans." + field + ": expected a list of words");
    }
    std::vector<std::string> words;
    for (const YAML::Node& w : list) {
      if (!w.IsScalar() || w.as<std::string>().empty()) {
        return Status::InvalidArgument(Where(name, w.Mark()) + "booleans." + field +
                                       ": expected a word");
      }
      std::string word = w.as<std::string>();
      std::string lower = word;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (!seen_words.insert(lower).second) {
        return Status::InvalidArgument(Where(name, w.Mark()) + "booleans." + field + ": '" + word +
                                       "' is listed twice");
      }
      words.push_back(word);
    }
    (field == "true" ? c.boolean_words.true_words : c.boolean_words.false_words) = words;
  }
  return Status::Ok();
}

// keys: name -> {type: ..., option: value, ...}
Status ParseKeys(const YAML::Node& body, const std::string& name, Config& c) {
  std::map<std::string, int> seen;
  for (auto kv = body.begin(); kv != body.end(); ++kv) {
    const std::string where = Where(name, kv->first.Mark());
    std::string key = kv->first.as<std::string>();
    Status key_ok = store::ValidateKeyName(key);
    if (!key_ok.ok()) return Status::InvalidArgument(where + "keys: " + key_ok.message());
    auto [it, fresh] = seen.emplace(key, kv->first.Mark().line + 1);
    if (!fresh) {
      return Status::InvalidArgument(where + "keys." + key + ": defined twice (first on line " +
                                     std::to_string(it->second) + ")");
    }
    Config::KeyDefinition def;
    def.name = key;
    def.where = where.substr(0, where.size() - 2);
    def.options = nlohmann::json::object();
    const YAML::Node spec = kv->second;
    if (!spec.IsNull() && !spec.IsMap()) {
      return Status::InvalidArgument(where + "keys." + key +
                                     ": expected a map of type and options");
    }
    if (spec.IsMap()) {
      for (auto f = spec.begin(); f != spec.end(); ++f) {
        const std::string fwhere = Where(name, f->first.Mark());
        std::string field = f->first.as<std::string>();
        if (def.options.contains(field) || (field == "type" && def.type)) {
          return Status::InvalidArgument(fwhere + "keys." + key + "." + field + ": set twice");
        }
        if (field == "type") {
          if (!f->second.IsScalar()) {
            return Status::InvalidArgument(fwhere + "keys." + key + ".type: expected a type name");
          }
          Result<store::KeyType> type = store::ParseKeyType(f->second.as<std::string>());
          if (!type.ok()) {
            return Status::InvalidArgument(fwhere + "keys." + key +
                                           ".type: " + type.status().message());
          }
          def.type = *type;
          continue;
        }
        Result<nlohmann::json> value =
            ScalarToJson(f->second, fwhere + "keys." + key + "." + field + ": ");
        if (!value.ok()) return value.status();
        def.options[field] = *value;
      }
    }
    if (!def.type) {
      return Status::InvalidArgument(where + "keys." + key + ": give its type");
    }
    Result<store::KeyOptions> checked =
        store::ApplyKeyOptions(store::KeyOptions{}, *def.type, def.options);
    if (!checked.ok()) {
      return Status::InvalidArgument(where + "keys." + key + ": " + checked.status().message());
    }
    c.keys.push_back(std::move(def));
  }
  return Status::Ok();
}

// One field of a mapping rule, its value and where it is ("k.yaml:12:
// mappings[2].type: "), with the readers of the value's forms.
struct RuleField {
  std::string field;
  YAML::Node v;
  std::string where;

  Status Text(std::string* out) const {
    if (!v.IsScalar()) {
      return Status::InvalidArgument(
          where + "expected text" +
          (field == "key" ? " (quote a template: key: \"{1}/{field}\")" : ""));
    }
    *out = v.as<std::string>();
    return Status::Ok();
  }
  Status List(std::vector<std::string>* out) const {
    if (v.IsScalar()) {
      out->push_back(v.as<std::string>());
      return Status::Ok();
    }
    if (!v.IsSequence() || v.size() == 0) {
      return Status::InvalidArgument(where + "expected text or a non-empty list of text");
    }
    for (const YAML::Node& e : v) {
      if (!e.IsScalar()) return Status::InvalidArgument(where + "expected a list of text");
      out->push_back(e.as<std::string>());
    }
    return Status::Ok();
  }
  Status Boolean(bool* out) const {
    if (!v.IsScalar()) return Status::InvalidArgument(where + "expected true or false");
    const std::string t = v.as<std::string>();
    if (t != "true" && t != "false") {
      return Status::InvalidArgument(where + "expected true or false, got '" + t + "'");
    }
    *out = t == "true";
    return Status::Ok();
  }
  Status Number(std::optional<double>* out) const {
    std::string t;
    KOMOKU_RETURN_IF_ERROR(Text(&t));
    char* end = nullptr;
    double d = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(d)) {
      return Status::InvalidArgument(where + "expected a number, got '" + t + "'");
    }
    *out = d;
    return Status::Ok();
  }
};

// A rule's name: a metrics label.
Status ParseRuleName(const RuleField& f, bridge::MappingRule& rule) {
  KOMOKU_RETURN_IF_ERROR(f.Text(&rule.name));
  if (rule.name.empty() || rule.name.find_first_of("\"\\\n") != std::string::npos) {
    return Status::InvalidArgument(f.where +
                                   "must be non-empty, without quotes, backslashes "
                                   "or newlines (it is a metrics label)");
  }
  return Status::Ok();
}

Status ParsePayloadFormat(const RuleField& f, bridge::MappingRule& rule) {
  std::string t;
  KOMOKU_RETURN_IF_ERROR(f.Text(&t));
  if (t == "auto") {
    rule.payload = bridge::PayloadFormat::kAuto;
  } else if (t == "json") {
    rule.payload = bridge::PayloadFormat::kJson;
  } else if (t == "text") {
    rule.payload = bridge::PayloadFormat::kText;
  } else {
    return Status::InvalidArgument(f.where + "'" + t + "' is not one of auto, json, text");
  }
  return Status::Ok();
}

// fields: "*", a list of paths, or a map path: key suffix.
Status ParseRuleFields(const RuleField& f, bridge::MappingRule& rule) {
  const YAML::Node& v = f.v;
  if (v.IsScalar() && v.as<std::string>() == "*") {
    rule.all_fields = true;
  } else if (v.IsSequence() && v.size() > 0) {
    for (const YAML::Node& e : v) {
      if (!e.IsScalar()) return Status::InvalidArgument(f.where + "expected a list of paths");
      rule.fields.emplace_back(e.as<std::string>(), "");
    }
  } else if (v.IsMap() && v.size() > 0) {
    for (auto e = v.begin(); e != v.end(); ++e) {
      if (!e->second.IsNull() && !e->second.IsScalar()) {
        return Status::InvalidArgument(f.where + e->first.as<std::string>() +
                                       ": expected a key suffix");
      }
      rule.fields.emplace_back(e->first.as<std::string>(),
                               e->second.IsNull() ? "" : e->second.as<std::string>());
    }
  } else {
    return Status::InvalidArgument(f.where +
                                   "expected \"*\", a list of paths or a map path: suffix");
  }
  return Status::Ok();
}

Status ParseRuleType(const RuleField& f, bridge::MappingRule& rule) {
  std::string t;
  KOMOKU_RETURN_IF_ERROR(f.Text(&t));
  Result<store::KeyType> type = store::ParseKeyType(t);
  if (!type.ok()) return Status::InvalidArgument(f.where + type.status().message());
  rule.type = *type;
  return Status::Ok();
}

// One field of a rule into `rule`; unknown fields are refused, listing the
// known ones.
Status ParseRuleField(const RuleField& f, bridge::MappingRule& rule) {
  static const std::set<std::string> kOptionNames = {"same_value_resolution", "max_time", "values",
                                                     "min_resolution", "retention"};
  static const char* kFieldList =
      "name, topic, exclude, key, payload, fields, ignore, invert, type, true, false, scale, "
      "offset, "
      "time, availability, continue, publish_errors, same_value_resolution, max_time, values";
  const std::string& field = f.field;
  if (field == "name") return ParseRuleName(f, rule);
  if (field == "topic") return f.List(&rule.topics);
  if (field == "exclude") return f.List(&rule.exclude);
  if (field == "key") return f.Text(&rule.key);
  if (field == "payload") return ParsePayloadFormat(f, rule);
  if (field == "fields") return ParseRuleFields(f, rule);
  if (field == "ignore") return f.List(&rule.ignore);
  if (field == "invert") return f.List(&rule.invert);
  if (field == "type") return ParseRuleType(f, rule);
  if (field == "true") return f.List(&rule.true_words);
  if (field == "false") return f.List(&rule.false_words);
  if (field == "scale") return f.Number(&rule.scale);
  if (field == "offset") return f.Number(&rule.offset);
  if (field == "time") return f.Text(&rule.time_field);
  if (field == "availability") return f.Boolean(&rule.availability);
  if (field == "continue") return f.Boolean(&rule.continue_matching);
  if (field == "publish_errors") return f.Boolean(&rule.publish_errors);
  if (kOptionNames.count(field)) {
    Result<nlohmann::json> value = ScalarToJson(f.v, f.where);
    if (!value.ok()) return value.status();
    rule.options[field] = *value;
    return Status::Ok();
  }
  return Status::InvalidArgument(f.where + "unknown field (expected " + kFieldList + ")");
}

// One rule of mappings:, `at` being "mappings[<index>]".
Result<bridge::MappingRule> ParseRule(const YAML::Node& spec, const std::string& name,
                                      const std::string& at) {
  if (!spec.IsMap()) {
    return Status::InvalidArgument(Where(name, spec.Mark()) + at +
                                   ": expected a rule (a map with topic:, key:, ...)");
  }
  bridge::MappingRule rule;
  rule.where = name + ":" + std::to_string(spec.Mark().line + 1);
  std::map<std::string, int> seen;
  for (auto f = spec.begin(); f != spec.end(); ++f) {
    RuleField field{f->first.as<std::string>(), f->second, ""};
    field.where = Where(name, f->first.Mark()) + at + "." + field.field + ": ";
    auto [first, fresh] = seen.emplace(field.field, f->first.Mark().line + 1);
    if (!fresh) {
      return Status::InvalidArgument(field.where + "set twice (first on line " +
                                     std::to_string(first->second) + ")");
    }
    KOMOKU_RETURN_IF_ERROR(ParseRuleField(field, rule));
  }
  if (rule.topics.empty()) {
    return Status::InvalidArgument(Where(name, spec.Mark()) + at + ".topic: missing");
  }
  return rule;
}

// mappings: a list of rules (docs/mapping.md). Errors name the rule by its
// index: "k.yaml:12: mappings[2].type: ...".
Status ParseMappings(const YAML::Node& body, const std::string& name, Config& c) {
  if (!body.IsSequence()) {
    return Status::InvalidArgument(Where(name, body.Mark()) +
                                   "mappings: expected a list of rules (- topic: ...)");
  }
  std::vector<bridge::MappingRule> rules;
  size_t index = 0;
  for (auto item = body.begin(); item != body.end(); ++item, ++index) {
    Result<bridge::MappingRule> rule =
        ParseRule(*item, name, "mappings[" + std::to_string(index) + "]");
    if (!rule.ok()) return rule.status();
    rules.push_back(std::move(rule.value()));
  }
  Result<std::unique_ptr<bridge::MappingEngine>> compiled = bridge::MappingEngine::Compile(rules);
  if (!compiled.ok()) return compiled.status();
  c.mappings = std::move(rules);
  return Status::Ok();
}

// One item of a derived list: a map of scalar fields (lists for `every`).
// `fields` names what is allowed, for the message.
Status CheckItemFields(const YAML::Node& item, const std::string& name, const std::string& at,
                       const std::set<std::string>& allowed, const char* list) {
  if (!item.IsMap()) {
    return Status::InvalidArgument(Where(name, item.Mark()) + at + ": expected a map (" + list +
                                   ")");
  }
  std::set<std::string> seen;
  for (auto f = item.begin(); f != item.end(); ++f) {
    const std::string field = f->first.as<std::string>();
    if (!allowed.count(field)) {
      return Status::InvalidArgument(Where(name, f->first.Mark()) + at + "." + field +
                                     ": unknown field (expected " + list + ")");
    }
    if (!seen.insert(field).second) {
      return Status::InvalidArgument(Where(name, f->first.Mark()) + at + "." + field +
                                     ": set twice");
    }
    if (field != "every" && !f->second.IsScalar()) {
      return Status::InvalidArgument(Where(name, f->second.Mark()) + at + "." + field +
                                     ": expected a single value");
    }
  }
  return Status::Ok();
}

std::string ScalarText(const YAML::Node& item, const char* field) {
  const YAML::Node v = item[field];
  return v && v.IsScalar() ? v.as<std::string>() : "";
}

// derived.aggregates, derived.rolling, derived.discovery_keys (docs/derived.md).
Status ParseDerivedList(const std::string& list_name, const YAML::Node& body,
                        const std::string& name, Config& c) {
  const std::string path = "derived." + list_name;
  if (!body.IsSequence()) {
    return Status::InvalidArgument(Where(name, body.Mark()) + path + ": expected a list");
  }
  for (size_t i = 0; i < body.size(); ++i) {
    const YAML::Node item = body[i];
    const std::string at = path + "[" + std::to_string(i) + "]";
    const std::string where = Where(name, item.Mark()) + at;
    auto key_of = [&](std::string* key) -> Status {
      *key = ScalarText(item, "key");
      if (key->empty()) return Status::InvalidArgument(where + ".key: missing");
      Status ok = store::ValidateKeyName(*key);
      if (!ok.ok()) return Status::InvalidArgument(where + ".key: " + ok.message());
      return Status::Ok();
    };
    if (list_name == "discovery_keys" && item.IsScalar()) {
      derived::DiscoveryKey k;
      k.key = item.as<std::string>();
      k.where = where;
      Status ok = store::ValidateKeyName(k.key);
      if (!ok.ok()) return Status::InvalidArgument(where + ": " + ok.message());
      c.derived_discovery_keys.push_back(std::move(k));
      continue;
    }
    if (list_name == "aggregates") {
      KOMOKU_RETURN_IF_ERROR(CheckItemFields(item, name, at,
                                             {"key", "every", "unit", "device_class"},
                                             "key, every, unit, device_class"));
      std::string key;
      KOMOKU_RETURN_IF_ERROR(key_of(&key));
      const YAML::Node every = item["every"];
      if (!every) return Status::InvalidArgument(where + ".every: missing (e.g. 1m or [1m, 1h])");
      std::vector<std::string> resolutions;
      if (every.IsScalar()) {
        resolutions.push_back(every.as<std::string>());
      } else if (every.IsSequence() && every.size() > 0) {
        for (const YAML::Node& r : every) {
          if (!r.IsScalar()) {
            return Status::InvalidArgument(where + ".every: expected resolutions (1m, 1h, 1d)");
          }
          resolutions.push_back(r.as<std::string>());
        }
      } else {
        return Status::InvalidArgument(where + ".every: expected a resolution or a list of them");
      }
      for (const std::string& res : resolutions) {
        Result<int64_t> step = derived::ParseResolution(res);
        if (!step.ok())
          return Status::InvalidArgument(where + ".every: " + step.status().message());
        derived::AggregateDef def;
        def.key = key;
        def.resolution = res;
        def.step_ms = *step;
        def.unit = ScalarText(item, "unit");
        def.device_class = ScalarText(item, "device_class");
        def.where = where;
        // Checks that do not depend on the key's type (the same for all).
        Status fits = derived::CheckAggregate(def, store::KeyType::kNumeric);
        if (!fits.ok()) return fits;
        c.derived_aggregates.push_back(std::move(def));
      }
    } else if (list_name == "rolling") {
      KOMOKU_RETURN_IF_ERROR(CheckItemFields(
          item, name, at,
          {"key", "stat", "value", "window", "name", "refresh", "unit", "device_class"},
          "key, stat, value, window, name, refresh, unit, device_class"));
      derived::RollingDef def;
      KOMOKU_RETURN_IF_ERROR(key_of(&def.key));
      def.where = where;
      Result<derived::RollingStat> stat = derived::ParseRollingStat(ScalarText(item, "stat"));
      if (!stat.ok()) return Status::InvalidArgument(where + ".stat: " + stat.status().message());
      def.stat = *stat;
      def.value = ScalarText(item, "value");
      def.window = ScalarText(item, "window");
      if (def.window.empty())
        return Status::InvalidArgument(where + ".window: missing (e.g. 24h or today)");
      Result<int64_t> window = derived::ParseWindow(def.window);
      if (!window.ok())
        return Status::InvalidArgument(where + ".window: " + window.status().message());
      def.window_ms = *window;
      if (item["refresh"]) {
        // Seconds (fractions allowed) or a duration with its unit (5m).
        const std::string t = ScalarText(item, "refresh");
        char* end = nullptr;
        double secs = std::strtod(t.c_str(), &end);
        if (t.empty() || end != t.c_str() + t.size()) {
          Result<int64_t> ms = store::ParseDuration(t);
          secs = ms.ok() ? static_cast<double>(*ms) / 1000 : -1;
        }
        if (!std::isfinite(secs) || secs < 0 || secs > 86400) {
          return Status::InvalidArgument(where +
                                         ".refresh: expected seconds 0..86400 or a "
                                         "duration up to 1d (e.g. 30s, 5m), got '" +
                                         t + "'");
        }
        def.refresh_ms = static_cast<int64_t>(std::llround(secs * 1000));
      }
      def.name = ScalarText(item, "name");
      if (def.name.empty()) {
        def.name = (def.value.empty() ? "" : def.value + "_") + derived::RollingStatName(def.stat) +
                   "_" + def.window;
      }
      def.unit = ScalarText(item, "unit");
      def.device_class = ScalarText(item, "device_class");
      c.derived_rolling.push_back(std::move(def));
    } else {
      KOMOKU_RETURN_IF_ERROR(CheckItemFields(item, name, at, {"key", "unit", "device_class"},
                                             "key, unit, device_class"));
      derived::DiscoveryKey k;
      KOMOKU_RETURN_IF_ERROR(key_of(&k.key));
      k.unit = ScalarText(item, "unit");
      k.device_class = ScalarText(item, "device_class");
      k.where = where;
      c.derived_discovery_keys.push_back(std::move(k));
    }
  }
  return Status::Ok();
}

// What can be known before the store opens: a definition against the type
// its key is given under keys:, and names that would collide. A key not
// under keys: is checked at start, against the database.
Status CheckDerived(Config& c) {
  auto type_of = [&](const std::string& key) -> std::optional<store::KeyType> {
    for (const Config::KeyDefinition& k : c.keys) {
      if (k.name == key) return k.type;
    }
    return std::nullopt;
  };
  for (const derived::AggregateDef& a : c.derived_aggregates) {
    if (auto t = type_of(a.key)) KOMOKU_RETURN_IF_ERROR(derived::CheckAggregate(a, *t));
  }
  for (derived::RollingDef& r : c.derived_rolling) {
    if (auto t = type_of(r.key)) {
      KOMOKU_RETURN_IF_ERROR(derived::CheckRolling(r, *t, c.boolean_words));
    }
  }
  derived::DerivedOptions names;
  names.prefix = c.mqtt_prefix;
  names.discovery = c.derived_discovery;
  names.aggregates = c.derived_aggregates;
  names.rolling = c.derived_rolling;
  names.discovery_keys = c.derived_discovery_keys;
  return derived::CheckNames(names);
}
}  // namespace

Result<Config> ParseConfig(const std::string& text, const std::string& name) {
  Config c = DefaultConfig();
  c.source = name;
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(Where(name, e.mark) + e.msg);
  }
  if (docs.size() > 1) {
    // yaml-cpp marks a document at its first node; the separator is the
    // line before.
    int line = docs[1].Mark().line;
    if (line < 0) line = 0;
    return Status::InvalidArgument(name + ":" + std::to_string(line) +
                                   ": only one YAML document is allowed");
  }
  std::map<std::string, int> lines;  // "section.field" -> line set on
  auto at = [&](const std::string& field) {
    auto it = lines.find(field);
    return it == lines.end() ? name + ": " : name + ":" + std::to_string(it->second) + ": ";
  };
  if (docs.empty() || docs[0].IsNull()) {
    KOMOKU_RETURN_IF_ERROR(Validate(c, at));
    return c;  // an empty file: all defaults
  }
  const YAML::Node& root = docs[0];
  if (!root.IsMap()) {
    return Status::InvalidArgument(
        Where(name, root.Mark()) +
        "expected sections (mqtt:, store:, http:, log:, discovery:, derived:, "
        "keys:, mappings:)");
  }
  try {
    std::map<std::string, int> sections;
    for (auto sec = root.begin(); sec != root.end(); ++sec) {
      std::string section = sec->first.as<std::string>();
      if ((!IsKnownSection(section) || section.find('.') != std::string::npos) &&
          section != "keys" && section != "mappings" && section != "booleans") {
        return Status::InvalidArgument(Where(name, sec->first.Mark()) + "unknown section '" +
                                       section + "'");
      }
      auto [seen, fresh] = sections.emplace(section, sec->first.Mark().line + 1);
      if (!fresh) {
        return Status::InvalidArgument(Where(name, sec->first.Mark()) + "section '" + section +
                                       "' given twice (first on line " +
                                       std::to_string(seen->second) + ")");
      }
      const YAML::Node body = sec->second;
      if (body.IsNull()) continue;
      if (section == "mappings") {
        KOMOKU_RETURN_IF_ERROR(ParseMappings(body, name, c));
        continue;
      }
      if (!body.IsMap()) {
        return Status::InvalidArgument(Where(name, body.Mark()) + section +
                                       ": expected a map of fields");
      }
      if (section == "keys") {
        KOMOKU_RETURN_IF_ERROR(ParseKeys(body, name, c));
        continue;
      }
      if (section == "booleans") {
        KOMOKU_RETURN_IF_ERROR(ParseBooleans(body, name, c));
        continue;
      }
      // Sets section.key from a scalar, once.
      auto set_field = [&](const std::string& in_section, const YAML::Node& key_node,
                           const YAML::Node& value) -> Status {
        const std::string key = key_node.as<std::string>();
        const Field* f = FindField(in_section, key);
        if (!f) {
          return Status::InvalidArgument(Where(name, key_node.Mark()) + "unknown field '" +
                                         in_section + "." + key + "'");
        }
        std::string path = in_section + "." + key;
        auto [line, first] = lines.emplace(path, key_node.Mark().line + 1);
        if (!first) {
          return Status::InvalidArgument(Where(name, key_node.Mark()) + path +
                                         ": set twice (first on line " +
                                         std::to_string(line->second) + ")");
        }
        if (!value.IsScalar()) {
          return Status::InvalidArgument(Where(name, value.Mark()) + path +
                                         ": expected a single value");
        }
        return Set(c, *f, value.as<std::string>(), Where(name, value.Mark()));
      };
      for (auto kv = body.begin(); kv != body.end(); ++kv) {
        std::string key = kv->first.as<std::string>();
        const std::string subsection = section + "." + key;
        if (IsKnownSection(subsection)) {  // mqtt.tls: a map of its own fields
          auto [line, first] = lines.emplace(subsection, kv->first.Mark().line + 1);
          if (!first) {
            return Status::InvalidArgument(Where(name, kv->first.Mark()) + subsection +
                                           ": set twice (first on line " +
                                           std::to_string(line->second) + ")");
          }
          if (kv->second.IsNull()) continue;
          if (!kv->second.IsMap()) {
            return Status::InvalidArgument(Where(name, kv->second.Mark()) + subsection +
                                           ": expected a map of fields");
          }
          for (auto sub = kv->second.begin(); sub != kv->second.end(); ++sub) {
            KOMOKU_RETURN_IF_ERROR(set_field(subsection, sub->first, sub->second));
          }
          continue;
        }
        if (section == "derived" &&
            (key == "aggregates" || key == "rolling" || key == "discovery_keys")) {
          auto [line, first] = lines.emplace("derived." + key, kv->first.Mark().line + 1);
          if (!first) {
            return Status::InvalidArgument(Where(name, kv->first.Mark()) + "derived." + key +
                                           ": set twice (first on line " +
                                           std::to_string(line->second) + ")");
          }
          if (kv->second.IsNull()) continue;
          KOMOKU_RETURN_IF_ERROR(ParseDerivedList(key, kv->second, name, c));
          continue;
        }
        KOMOKU_RETURN_IF_ERROR(set_field(section, kv->first, kv->second));
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(Where(name, e.mark) + e.msg);
  }
  KOMOKU_RETURN_IF_ERROR(Validate(c, at));
  KOMOKU_RETURN_IF_ERROR(CheckDerived(c));
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read config file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

namespace {

// The mapping rules of the issue's devices, shown commented out in the
// example config (each line prefixed with '#'); tests/bridge runs every
// payload named here through them.
const char kMappingExample[] =
    "mappings:\n"
    "  # zigbee2mqtt (zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html). A\n"
    "  # friendly name may hold '/' (living/lamp publishes on zigbee2mqtt/living/lamp):\n"
    "  # '#' inside a filter matches one or more levels (a Komoku extension).\n"
    "  # zigbee2mqtt/front_door/availability {\"state\":\"online\"}\n"
    "  #   -> front_door/available = true (boolean)\n"
    "  - name: z2m_availability\n"
    "    topic: zigbee2mqtt/#/availability\n"
    "    key: \"{1}/available\"\n"
    "    availability: true\n"
    "  # zigbee2mqtt/hall_switch {\"action\":\"single\"} -> hall_switch/action = single,\n"
    "  # every press (same_value_resolution 0: a second press a moment later counts too)\n"
    "  - name: z2m_action\n"
    "    topic: zigbee2mqtt/#\n"
    "    exclude: [zigbee2mqtt/bridge/#, \"zigbee2mqtt/#/set\", \"zigbee2mqtt/#/get\"]\n"
    "    key: \"{1}/action\"\n"
    "    fields: [action]\n"
    "    type: string\n"
    "    same_value_resolution: 0\n"
    "    continue: true\n"
    "  # zigbee2mqtt/kitchen_sensor\n"
    "  #   {\"temperature\":21.43,\"humidity\":48.1,\"battery\":97,\"linkquality\":120}\n"
    "  #   -> kitchen_sensor/temperature = 21.43, kitchen_sensor/humidity = 48.1,\n"
    "  #      kitchen_sensor/battery = 97 (numeric)\n"
    "  # zigbee2mqtt/front_door {\"contact\":false,\"battery\":100}\n"
    "  #   -> front_door/contact = true (boolean: true = open, as discovery and Home\n"
    "  #      Assistant have it; zigbee2mqtt's contact is false while the door is open)\n"
    "  - name: zigbee2mqtt\n"
    "    topic: zigbee2mqtt/#\n"
    "    exclude: [zigbee2mqtt/bridge/#, \"zigbee2mqtt/#/set\", \"zigbee2mqtt/#/get\"]\n"
    "    key: \"{1}/{field}\"\n"
    "    fields: \"*\"\n"
    "    ignore: [linkquality, last_seen, update, action]\n"
    "    invert: [contact]\n"
    "    true: [\"ON\", open, LOCK]\n"
    "    false: [\"OFF\", closed, UNLOCK]\n"
    "  # Tasmota (tasmota.github.io/docs/MQTT). tele/plug1/SENSOR\n"
    "  #   "
    "{\"Time\":\"2026-11-20T10:00:00\",\"ENERGY\":{\"Total\":12.345,\"Power\":57,\"Voltage\":231}}"
    "\n"
    "  #   -> plug1/energy_total = 12.345, plug1/power = 57, plug1/voltage = 231,\n"
    "  #      at 2026-11-20 10:00:00 UTC (Tasmota sends local time without a zone)\n"
    "  # Two channels (\"Power\":[12,34]) -> plug1/power/1 = 12, plug1/power/2 = 34.\n"
    "  # The energy total (kWh since its last reset) is a counter, as Tasmota's own\n"
    "  # discovery announces it (total_increasing); the rule goes on to the next.\n"
    "  - name: tasmota_energy_total\n"
    "    topic: tele/+/SENSOR\n"
    "    key: \"{1}/{field}\"\n"
    "    fields:\n"
    "      ENERGY.Total: energy_total\n"
    "    type: counter\n"
    "    time: Time\n"
    "    continue: true\n"
    "  - name: tasmota_sensor\n"
    "    topic: tele/+/SENSOR\n"
    "    key: \"{1}/{field}\"\n"
    "    fields:\n"
    "      ENERGY.Power: power\n"
    "      ENERGY.Voltage: voltage\n"
    "      ENERGY.Current: current\n"
    "    time: Time\n"
    "  # stat/plug1/POWER ON -> plug1/POWER = true; stat/plug1/POWER2 OFF -> plug1/POWER2 =\n"
    "  # false ('POWER*' matches every level starting with POWER)\n"
    "  - name: tasmota_power\n"
    "    topic: stat/+/POWER*\n"
    "    key: \"{1}/{2}\"\n"
    "    type: boolean\n"
    "  # tele/plug1/LWT Online / Offline -> plug1/online = true / false\n"
    "  - name: tasmota_lwt\n"
    "    topic: tele/+/LWT\n"
    "    key: \"{1}/online\"\n"
    "    availability: true\n"
    "  # Shelly Gen 1 (shelly-api-docs.shelly.cloud/gen1). shellies/shelly1-ABC/relay/0 on\n"
    "  #   -> shelly1-ABC/relay/0 = true\n"
    "  - name: shelly_relay\n"
    "    topic: shellies/+/relay/+\n"
    "    key: \"{1}/relay/{2}\"\n"
    "    type: boolean\n"
    "  # shellies/shelly1pm-ABC/relay/0/power 42.5 -> shelly1pm-ABC/relay/0/power = 42.5\n"
    "  - name: shelly_relay_power\n"
    "    topic: shellies/+/relay/+/power\n"
    "    key: \"{1}/relay/{2}/power\"\n"
    "    type: numeric\n"
    "  # shellies/shelly1pm-ABC/relay/0/energy 1234 (watt-minutes since the device started)\n"
    "  #   -> shelly1pm-ABC/relay/0/energy = 1234 (counter: a drop is a restart)\n"
    "  - name: shelly_relay_energy\n"
    "    topic: shellies/+/relay/+/energy\n"
    "    key: \"{1}/relay/{2}/energy\"\n"
    "    type: counter\n"
    "  # shellies/shelly1-ABC/input/0 1 -> shelly1-ABC/input/0 = true (the switch's input)\n"
    "  - name: shelly_input\n"
    "    topic: shellies/+/input/+\n"
    "    key: \"{1}/input/{2}\"\n"
    "    type: boolean\n"
    "    true: [\"1\"]\n"
    "    false: [\"0\"]\n"
    "  # shellies/shelly1pm-ABC/temperature 41.3 -> shelly1pm-ABC/temperature = 41.3 (the\n"
    "  # device's own, °C); .../overtemperature 0 -> shelly1pm-ABC/overtemperature = false\n"
    "  - name: shelly_device_temperature\n"
    "    topic: shellies/+/temperature\n"
    "    key: \"{1}/temperature\"\n"
    "    type: numeric\n"
    "  - name: shelly_overtemperature\n"
    "    topic: shellies/+/overtemperature\n"
    "    key: \"{1}/overtemperature\"\n"
    "    type: boolean\n"
    "    true: [\"1\"]\n"
    "    false: [\"0\"]\n"
    "  # shellies/shelly1-ABC/online true / false (its last will) -> shelly1-ABC/online\n"
    "  - name: shelly_online\n"
    "    topic: shellies/+/online\n"
    "    key: \"{1}/online\"\n"
    "    availability: true\n"
    "  # shellies/shellyht-XYZ/sensor/temperature 21.5 -> shellyht-XYZ/temperature = 21.5;\n"
    "  # .../sensor/ext_power true -> shellyht-XYZ/ext_power = true;\n"
    "  # shellies/shellydw2-XYZ/sensor/state open -> shellydw2-XYZ/state = true (open)\n"
    "  - name: shelly_sensor\n"
    "    topic: shellies/+/sensor/+\n"
    "    exclude: shellies/+/sensor/act_reasons\n"
    "    key: \"{1}/{2}\"\n"
    "    true: [open, \"true\"]\n"
    "    false: [close, \"false\"]\n"
    "  # Shelly Gen 2 and later (shelly-api-docs.shelly.cloud/gen2, \"Generic status\n"
    "  # update over MQTT\" on). shellyplus1pm-ABC/status/switch:0\n"
    "  #   {\"id\":0,\"source\":\"init\",\"output\":true,\"apower\":8.9,\"voltage\":237.5,...}\n"
    "  #   -> shellyplus1pm-ABC/switch:0/output = true, .../switch:0/apower = 8.9, ...\n"
    "  # aenergy.total and ret_aenergy.total (Wh since the device started) are counters\n"
    "  - name: shelly_gen2_energy\n"
    "    topic: [\"+/status/switch:*\", \"+/status/cover:*\", \"+/status/light:*\",\n"
    "            \"+/status/pm1:*\"]\n"
    "    key: \"{1}/{2}/{field}\"\n"
    "    fields: [aenergy.total, ret_aenergy.total]\n"
    "    type: counter\n"
    "    continue: true\n"
    "  - name: shelly_gen2_status\n"
    "    topic: [\"+/status/switch:*\", \"+/status/cover:*\", \"+/status/light:*\", "
    "\"+/status/input:*\",\n"
    "            \"+/status/pm1:*\", \"+/status/em:*\", \"+/status/em1:*\", "
    "\"+/status/temperature:*\",\n"
    "            \"+/status/humidity:*\", \"+/status/devicepower:*\"]\n"
    "    key: \"{1}/{2}/{field}\"\n"
    "    fields: \"*\"\n"
    "    ignore: [id, source, aenergy, ret_aenergy, temperature.tF, tF]\n"
    "  # shellyplus1pm-ABC/online true / false -> shellyplus1pm-ABC/online = true / false\n"
    "  - name: shelly_gen2_online\n"
    "    topic: +/online\n"
    "    exclude: homeassistant/#\n"
    "    key: \"{1}/online\"\n"
    "    availability: true\n"
    "  # ESPHome (esphome.io/components/mqtt). livingroom/sensor/temperature/state 21.50\n"
    "  #   -> livingroom/temperature = 21.5; no type: a sensor that gives text makes a\n"
    "  #   string key; nan (no reading yet) is skipped and counted\n"
    "  - name: esphome_sensor\n"
    "    topic: +/sensor/+/state\n"
    "    key: \"{1}/{2}\"\n"
    "  # A text sensor publishes there too (ESPHome's mqtt_text_sensor.cpp: its\n"
    "  # component type is \"sensor\"): livingroom/sensor/wifi_ssid/state home-net\n"
    "  #   -> livingroom/wifi_ssid = home-net (string, by its first value)\n"
    "  # livingroom/binary_sensor/motion/state ON -> livingroom/motion = true\n"
    "  - name: esphome_binary_sensor\n"
    "    topic: +/binary_sensor/+/state\n"
    "    key: \"{1}/{2}\"\n"
    "    type: boolean\n"
    "  # livingroom/switch/relay/state ON -> livingroom/relay = true\n"
    "  - name: esphome_switch\n"
    "    topic: +/switch/+/state\n"
    "    key: \"{1}/{2}\"\n"
    "    type: boolean\n"
    "  # livingroom/status online -> livingroom/online = true (not Home Assistant's own\n"
    "  # birth message homeassistant/status)\n"
    "  - name: esphome_status\n"
    "    topic: +/status\n"
    "    exclude: homeassistant/status\n"
    "    key: \"{1}/online\"\n"
    "    availability: true\n"
    "  # Homie 3/4. homie/weather/outside/temperature 3.5 -> weather/outside/temperature = 3.5;\n"
    "  # the $-attributes (homie/weather/$name, .../outside/$properties) are skipped.\n"
    "  - name: homie\n"
    "    topic: homie/+/+/+\n"
    "    exclude: [\"homie/+/$*/#\", \"homie/+/+/$*\"]\n"
    "    key: \"{1}/{2}/{3}\"\n"
    "  # homie/weather/$state ready / lost -> weather/online = true / false\n"
    "  - name: homie_state\n"
    "    topic: homie/+/$state\n"
    "    key: \"{1}/online\"\n"
    "    availability: true\n"
    "  # A plain script. home/boiler/state heating -> boiler/state = heating (string)\n"
    "  - name: script_state\n"
    "    topic: home/+/state\n"
    "    key: \"{1}/state\"\n"
    "    type: string\n";

}  // namespace

std::string MappingExampleYaml() { return kMappingExample; }

std::vector<std::string> RestartOnlyChanges(const Config& running, const Config& loaded) {
  std::vector<std::string> changed;
  for (const Field& f : Fields()) {
    const std::string section = f.section;
    if (section == "log" || section == "derived") continue;  // reloaded
    bool differs =
        std::visit([&](auto member) { return running.*member != loaded.*member; }, f.member);
    if (differs) changed.push_back(section + "." + f.name);
  }
  if (running.boolean_words.true_words != loaded.boolean_words.true_words ||
      running.boolean_words.false_words != loaded.boolean_words.false_words) {
    changed.push_back("booleans");
  }
  return changed;
}

std::string ConfigExample() {
  std::string out =
      "# Komoku configuration. Every key is shown at its default, commented out;\n"
      "# uncomment and change what you need. `komoku check-config -c FILE` checks it.\n"
      "# Generated by `komoku config-example`; the reference is docs/config.md.\n";
  std::string section;
  std::string indent;
  for (const Field& f : Fields()) {
    if (section != f.section) {
      section = f.section;
      auto dot = section.find('.');
      if (dot == std::string::npos) {
        out += "\n" + section + ":\n";
        indent = "  ";
      } else {  // a subsection: uncommenting its lines gives the right indentation
        out += "  # " + std::string(SubsectionHelp(section)) + "\n";
        out += "  #" + section.substr(dot + 1) + ":\n";
        indent = "    ";
      }
    }
    out += indent + "# " + std::string(f.help) + "\n";
    std::string def = f.default_value;
    out += indent + "#" + std::string(f.name) + ": " + (def.empty() ? "\"\"" : def) + "\n";
  }
  out +=
      "# Bucket aggregates, rolling statistics and staleness published back to MQTT\n"
      "# under <prefix>/derived/<key>/..., and keys announced to Home Assistant\n"
      "# (docs/derived.md). A key named here must be defined under keys: or exist.\n"
      "#  aggregates:\n"
      "#    - key: living_room/temperature   # -> komoku/derived/living_room/temperature/1h\n"
      "#      every: [1m, 1h]\n"
      "#      unit: \"\u00b0C\"\n"
      "#      device_class: temperature\n"
      "#    - key: front_door                # time true/false, changes per day\n"
      "#      every: 1d\n"
      "#  rolling:\n"
      "#    - key: front_door                # -> komoku/derived/front_door/open_share_24h\n"
      "#      name: open_share_24h\n"
      "#      stat: share\n"
      "#      value: true\n"
      "#      window: 24h\n"
      "#      refresh: 60\n"
      "#    - key: living_room/temperature   # -> .../living_room/temperature/max_24h\n"
      "#      stat: max\n"
      "#      window: 24h\n"
      "#    - key: boiler/heating            # -> "
      "komoku/derived/boiler/heating/heating_hours_today\n"
      "#      name: heating_hours_today\n"
      "#      stat: hours\n"
      "#      value: true\n"
      "#      window: today\n"
      "#  discovery_keys:\n"
      "#    - key: living_room/temperature\n"
      "#      unit: \"\u00b0C\"\n"
      "#      device_class: temperature\n";
  out +=
      "\n# Words read as booleans (any case), besides true/false and 1/0; a list\n"
      "# given replaces the default one.\n"
      "#booleans:\n"
      "#  true: [on, yes, open]\n"
      "#  false: [off, no, closed]\n"
      "\n# Keys defined at start (like POST /api/v1/define): a type and Komoku's\n"
      "# options, durations in seconds or as 10m, 24h. Keys not listed are created on first put,\n"
      "# their type guessed from the value.\n"
      "#keys:\n"
      "#  living_room/temperature:\n"
      "#    type: numeric\n"
      "#    same_value_resolution: 300\n"
      "#  boiler/heartbeat:\n"
      "#    type: uptime\n"
      "#    max_time: 30\n"
      "#  alarm/state:\n"
      "#    type: string\n"
      "#    values: [disarmed, armed_home, armed_away, triggered]\n"
      "\n# Topic mapping: rules that turn the topics of real devices into keys, applied\n"
      "# in order (the first rule that matches wins, unless it says continue: true).\n"
      "# Every option and how to find out why a message was refused: docs/mapping.md.\n"
      "# Try a rule without storing anything:\n"
      "#   komoku mappings test -c FILE zigbee2mqtt/kitchen_sensor '{\"temperature\":21.4}'\n";
  std::istringstream lines(kMappingExample);
  for (std::string line; std::getline(lines, line);) out += "#" + line + "\n";
  return out;
}

std::string ConfigDocs() {
  std::string out =
      "# Configuration reference\n\n"
      "Komoku reads one YAML file, given with `-c FILE` (`make run` passes\n"
      "`config/komoku.yaml`); without one it runs on the defaults below. An unknown\n"
      "section or field, a wrong type or a value out of range stops the start with\n"
      "`file:line: field: reason`; `komoku check-config -c FILE` checks a file\n"
      "without starting. Generated by `komoku config-docs` from the same table\n"
      "that validates the file.\n\n"
      "`SIGHUP` (`systemctl reload komoku`) applies `log.level`, `keys:`, `mappings:`\n"
      "and `derived:` from the file again, all or none; the other settings take\n"
      "effect at the next restart (docs/operations.md, \"Reloading the\n"
      "configuration\").\n\n"
      "A *duration* is a bare number in the unit its type names (`duration (s)`:\n"
      "seconds), or a whole number with a unit: `500ms`, `30s`, `10m`, `24h`, `7d`,\n"
      "`1w`. It is the one grammar of durations in Komoku: key options\n"
      "(`stale_after: 10m`), derived `every`, `window` and `refresh`, the API's\n"
      "`step` and relative times (`-24h`). A duration must come to a whole number\n"
      "of the field's unit (`hot_window_hours: 90m` is an error); the range is in\n"
      "that unit.\n\n"
      "| key | type | default | range | description |\n"
      "| --- | --- | --- | --- | --- |\n";
  for (const Field& f : Fields()) {
    bool is_int = std::holds_alternative<int64_t Config::*>(f.member);
    bool is_bool = std::holds_alternative<bool Config::*>(f.member);
    std::string range = is_int ? std::to_string(f.min) + ".." + std::to_string(f.max) : "";
    std::string def = f.default_value;
    static const std::map<int64_t, const char*> kUnitShort = {
        {kMillis, "ms"}, {kSeconds, "s"}, {kHours, "h"}, {kDays, "d"}};
    const std::string type = f.unit_ms > 0
                                 ? std::string("duration (") + kUnitShort.at(f.unit_ms) + ")"
                             : is_int  ? "integer"
                             : is_bool ? "boolean"
                                       : "string";
    out += "| `" + std::string(f.section) + "." + f.name + "` | " + type + " | `" +
           (def.empty() ? "\"\"" : def) + "` | " + range + " | " + f.help + " |\n";
  }
  out +=
      "\n## mqtt.tls\n\n"
      "The `mqtt.tls.*` keys sit in a map inside `mqtt:` and are used only with an\n"
      "`ssl://` or `mqtts://` broker (setting one with a `tcp://` or `mqtt://` broker is an\n"
      "error). Each file is read and loaded at start and by `check-config`: a file that\n"
      "cannot be read, holds no PEM certificate or key, a key that does not belong to the\n"
      "certificate, an expired certificate or an encrypted key without its password stops\n"
      "the start with `file:line: mqtt.tls.<field>: reason`. Without `ca_file` the\n"
      "system's CA store is used. docs/operations.md#tls-to-the-broker has a worked example.\n\n"
      "```yaml\n"
      "mqtt:\n"
      "  broker: mqtts://broker.lan:8883\n"
      "  tls:\n"
      "    ca_file: /etc/komoku/ca.crt\n"
      "    cert_file: /etc/komoku/komoku.crt\n"
      "    key_file: /run/credentials/komoku.service/komoku-key\n"
      "```\n";
  out +=
      "\n## booleans\n\n"
      "The words boolean and uptime keys read as true and false, in any case, besides\n"
      "`true`/`false` and `1`/`0`, which are always read. Default: `true: [on, yes, open]`,\n"
      "`false: [off, no, closed]`; a list given replaces the default one. A word may\n"
      "stand in one list only.\n"
      "\n## keys\n\n"
      "Keys defined at start, each with a `type` (numeric, counter, boolean, uptime,\n"
      "string) and Komoku's options, applied in file order as `POST /api/v1/define`\n"
      "would (docs/http-api.md). Durations are seconds or a whole number with a unit\n"
      "(`10m`, `24h`, `7d`), as everywhere in Komoku.\n\n"
      "| option | types | default | meaning |\n"
      "| --- | --- | --- | --- |\n"
      "| `same_value_resolution` | all | 60 | a repeat of the current value is not stored again "
      "until this much time has passed since it was stored (it still refreshes an uptime key) |\n"
      "| `max_time` | uptime | 60 | the key turns false this long after the last true |\n"
      "| `values` | string | any | the allowed values; anything else is refused |\n"
      "| `stale_after` | all | 0 | history treats a value older than this as unknown "
      "(0: a value lasts until the next change) |\n"
      "| `reset_tolerance` | counter | 0 | a drop smaller than this is a glitch, not a reset |\n"
      "| `raw_retention` | all | store.raw_retention_days | how long raw changes are kept in "
      "cold history (rollups stay; 0: forever) |\n\n"
      "```yaml\n"
      "keys:\n"
      "  boiler/heartbeat:\n"
      "    type: uptime\n"
      "    max_time: 30\n"
      "  alarm/state:\n"
      "    type: string\n"
      "    values: [disarmed, armed_home, armed_away, triggered]\n"
      "```\n\n"
      "A type that cannot hold the key's existing data (say `string` for a key with\n"
      "numeric history) stops the start with exit status 2; numeric and counter, and\n"
      "boolean and uptime, may be switched, since their values are the same.\n"
      "\n## derived\n\n"
      "Derived state published back to MQTT (docs/derived.md, topics in\n"
      "docs/mqtt-topics.md). Besides the fields in the table above, three lists:\n\n"
      "| list | fields | |\n"
      "| --- | --- | --- |\n"
      "| `aggregates` | `key`, `every` (a resolution or a list: `1m`, `5m`, `1h`, `1d`, `1w`, "
      "...), "
      "`unit`, `device_class` | one bucket aggregate per key and resolution, published at "
      "bucket close on `<prefix>/derived/<key>/<every>` |\n"
      "| `rolling` | `key`, `stat`, `value`, `window` (`24h`, `7d`, ... or `today`), `name`, "
      "`refresh` (seconds or a duration, default 60; 0: on change only), `unit`, `device_class` | "
      "a statistic "
      "over the window ending now on `<prefix>/derived/<key>/<name>`; `name` defaults to "
      "`[<value>_]<stat>_<window>` |\n"
      "| `discovery_keys` | `key`, `unit`, `device_class` (or just the key name) | keys announced "
      "to Home Assistant themselves (with `discovery: true`) |\n\n"
      "`stat` is `avg`, `twavg`, `min`, `max`, `count` (numeric and counter keys), `increase`,\n"
      "`rate` (counters), `share`, `time`, `hours` (of `value`) and `changes` (boolean,\n"
      "uptime and string keys). A key named in a definition must be defined under\n"
      "`keys:` (then `check-config` checks the definition against its type) or already\n"
      "exist in the database (checked at start, which stops with exit status 2 and a\n"
      "message naming the definition otherwise).\n\n"
      "```yaml\n"
      "derived:\n"
      "  aggregates:\n"
      "    - key: living_room/temperature\n"
      "      every: [1m, 1h]\n"
      "  rolling:\n"
      "    - key: front_door\n"
      "      name: open_share_24h\n"
      "      stat: share\n"
      "      value: true\n"
      "      window: 24h\n"
      "```\n"
      "\n## mappings\n\n"
      "Topic mapping rules, applied in order to every message on their topics: the\n"
      "first rule that matches wins, unless it says `continue: true`. Each rule turns\n"
      "a device's topic and payload into changes of typed keys. Options: `name`,\n"
      "`topic`, `exclude`, `key`, `payload`, `fields`, `ignore`, `type`, `true`,\n"
      "`false`, `scale`, `offset`, `time`, `availability`, `continue`,\n"
      "`publish_errors`, and the key options `same_value_resolution`, `max_time`,\n"
      "`values` for the keys a rule creates. docs/mapping.md describes each, with\n"
      "examples for zigbee2mqtt, Tasmota, Shelly, ESPHome, Homie and plain scripts\n"
      "(also in config/komoku.yaml, commented out). `komoku mappings test -c FILE\n"
      "TOPIC PAYLOAD` shows what a message would become without storing it.\n\n"
      "```yaml\n"
      "mappings:\n"
      "  - name: zigbee2mqtt\n"
      "    topic: zigbee2mqtt/+\n"
      "    exclude: zigbee2mqtt/bridge/#\n"
      "    key: \"{1}/{field}\"\n"
      "    fields: \"*\"\n"
      "    ignore: [linkquality, last_seen]\n"
      "```\n"
      "\n## discovery\n\n"
      "With `discovery.enabled: true`, Komoku reads Home Assistant MQTT discovery configs\n"
      "and Homie `$datatype` attributes and maps the topics they describe to typed keys\n"
      "without rules: a sensor with a unit or a measurement state class is numeric,\n"
      "`total_increasing` a counter, a binary sensor boolean (its `payload_on`/`payload_off`),\n"
      "the rest string; `expire_after` becomes `stale_after`; availability topics become\n"
      "boolean keys. A key is named after its state topic (plus `/<field>` for a template\n"
      "that reads a JSON field). Configured `mappings:` win for every topic they match.\n"
      "`GET /api/v1/discovery` lists every entity, mapped or refused with the reason;\n"
      "docs/mapping.md#discovery has the details.\n";
  return out;
}

}  // namespace komoku::app

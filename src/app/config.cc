#include "app/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>
#include <variant>
#include <vector>

namespace komoku::app {
namespace {

enum class Kind { kString, kInt };

struct Field {
  const char* section;
  const char* name;
  std::variant<std::string Config::*, int64_t Config::*> member;
  const char* default_value;
  int64_t min = 0;  // for kInt
  int64_t max = 0;
  const char* help;
};

// Every configuration key, once. Order here is the order of the example file.
const std::vector<Field>& Fields() {
  static const std::vector<Field> fields = {
      {"mqtt", "broker", &Config::mqtt_broker, "tcp://localhost:1883", 0, 0,
       "Broker URL: tcp://host:port (ssl:// for TLS)."},
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
       "Seconds the broker keeps the session (and queues messages) while Komoku is away."},
      {"mqtt", "keep_alive", &Config::mqtt_keep_alive_s, "30", 5, 3600,
       "MQTT keep-alive interval in seconds."},
      {"mqtt", "max_payload_bytes", &Config::mqtt_max_payload_bytes, "65536", 16, 16777216,
       "A larger message is refused unread."},
      {"store", "data_dir", &Config::store_data_dir, "./komoku-data", 0, 0,
       "Directory of the database; created if missing."},
      {"store", "commit_interval_ms", &Config::store_commit_interval_ms, "250", 1, 60000,
       "Changes nobody waits for are committed at least this often."},
      {"store", "commit_max_rows", &Config::store_commit_max_rows, "4000", 1, 1000000,
       "A commit starts as soon as this many changes wait."},
      {"store", "checkpoint_interval", &Config::store_checkpoint_interval_s, "10", 1, 3600,
       "Seconds between WAL checkpoints: the most a power cut can take back."},
      {"http", "listen", &Config::http_listen, "127.0.0.1:8080", 0, 0,
       "Address of the HTTP API: host:port (port 0 lets the OS choose)."},
      {"http", "max_points", &Config::http_max_points, "10000", 1, 10000000,
       "Most rows one history answer may hold."},
      {"log", "level", &Config::log_level, "info", 0, 0,
       "trace, debug, info, warn, error or off."},
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

Status Set(Config& c, const Field& f, const std::string& text, const std::string& where) {
  std::string path = std::string(f.section) + "." + f.name;
  if (auto* s = std::get_if<std::string Config::*>(&f.member)) {
    c.*(*s) = text;
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
  if (used == 0 || used != text.size()) {
    return Status::InvalidArgument(where + path + ": expected an integer, got '" + text + "'");
  }
  if (v < f.min || v > f.max) {
    return Status::InvalidArgument(where + path + ": " + std::to_string(v) + " is out of range " +
                                   std::to_string(f.min) + ".." + std::to_string(f.max));
  }
  c.*m = v;
  return Status::Ok();
}

std::string Where(const std::string& name, const YAML::Mark& mark) {
  return name + ":" + std::to_string(mark.line + 1) + ": ";
}

// Checks what is not a matter of one field's type.
Status Validate(Config& c, const std::string& name) {
  auto colon = c.http_listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument(name + ": http.listen: expected host:port, got '" +
                                   c.http_listen + "'");
  }
  c.http_host = c.http_listen.substr(0, colon);
  std::string port = c.http_listen.substr(colon + 1);
  if (c.http_host.size() > 2 && c.http_host.front() == '[' && c.http_host.back() == ']') {
    c.http_host = c.http_host.substr(1, c.http_host.size() - 2);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
    return Status::InvalidArgument(name + ": http.listen: bad port '" + port + "'");
  }
  c.http_port = std::stoi(port);
  static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
  bool level_ok = false;
  for (const char* l : kLevels) level_ok = level_ok || c.log_level == l;
  if (!level_ok) {
    return Status::InvalidArgument(name + ": log.level: '" + c.log_level +
                                   "' is not one of trace, debug, info, warn, error, off");
  }
  if (c.mqtt_broker.rfind("tcp://", 0) != 0 && c.mqtt_broker.rfind("ssl://", 0) != 0 &&
      c.mqtt_broker.rfind("mqtt://", 0) != 0 && c.mqtt_broker.rfind("mqtts://", 0) != 0) {
    return Status::InvalidArgument(name + ": mqtt.broker: '" + c.mqtt_broker +
                                   "' must start with tcp://, ssl://, mqtt:// or mqtts://");
  }
  if (c.mqtt_client_id.empty() || c.mqtt_client_id.size() > 128) {
    return Status::InvalidArgument(name + ": mqtt.client_id: must be 1..128 characters");
  }
  if (c.mqtt_prefix.empty() || c.mqtt_prefix.find_first_of("+#") != std::string::npos) {
    return Status::InvalidArgument(name + ": mqtt.prefix: must be non-empty, without + or #");
  }
  if (c.store_data_dir.empty()) {
    return Status::InvalidArgument(name + ": store.data_dir: must not be empty");
  }
  if (!c.mqtt_password_file.empty()) {
    if (!c.mqtt_password.empty()) {
      return Status::InvalidArgument(name +
                                     ": mqtt.password and mqtt.password_file are both set");
    }
    std::ifstream in(c.mqtt_password_file, std::ios::binary);
    if (!in) {
      return Status::InvalidArgument(name + ": mqtt.password_file: cannot read '" +
                                     c.mqtt_password_file + "'");
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string pw = ss.str();
    while (!pw.empty() && (pw.back() == '\n' || pw.back() == '\r')) pw.pop_back();
    c.mqtt_password = pw;
  }
  return Status::Ok();
}

}  // namespace

Config DefaultConfig() {
  Config c;
  for (const Field& f : Fields()) {
    Status st = Set(c, f, f.default_value, "");
    (void)st;  // the defaults are in range by construction (tested)
  }
  (void)Validate(c, "built-in defaults");
  c.source = "built-in defaults";
  return c;
}

Result<Config> ParseConfig(const std::string& text, const std::string& name) {
  Config c = DefaultConfig();
  c.source = name;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(Where(name, e.mark) + e.msg);
  }
  if (root.IsNull()) return c;  // an empty file: all defaults
  if (!root.IsMap()) {
    return Status::InvalidArgument(Where(name, root.Mark()) +
                                   "expected sections (mqtt:, store:, http:, log:)");
  }
  try {
    for (auto sec = root.begin(); sec != root.end(); ++sec) {
      std::string section = sec->first.as<std::string>();
      if (!IsKnownSection(section)) {
        return Status::InvalidArgument(Where(name, sec->first.Mark()) + "unknown section '" +
                                       section + "'");
      }
      const YAML::Node& body = sec->second;
      if (body.IsNull()) continue;
      if (!body.IsMap()) {
        return Status::InvalidArgument(Where(name, body.Mark()) + section +
                                       ": expected a map of fields");
      }
      for (auto kv = body.begin(); kv != body.end(); ++kv) {
        std::string key = kv->first.as<std::string>();
        const Field* f = FindField(section, key);
        if (!f) {
          return Status::InvalidArgument(Where(name, kv->first.Mark()) + "unknown field '" +
                                         section + "." + key + "'");
        }
        if (!kv->second.IsScalar()) {
          return Status::InvalidArgument(Where(name, kv->second.Mark()) + section + "." + key +
                                         ": expected a single value");
        }
        KOMOKU_RETURN_IF_ERROR(
            Set(c, *f, kv->second.as<std::string>(), Where(name, kv->second.Mark())));
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(Where(name, e.mark) + e.msg);
  }
  KOMOKU_RETURN_IF_ERROR(Validate(c, name));
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read config file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

std::string ConfigExample() {
  std::string out =
      "# Komoku configuration. Every key is shown at its default, commented out;\n"
      "# uncomment and change what you need. `komoku check-config -c FILE` checks it.\n"
      "# Generated by `komoku config-example`; the reference is docs/config.md.\n";
  std::string section;
  for (const Field& f : Fields()) {
    if (section != f.section) {
      section = f.section;
      out += "\n" + section + ":\n";
    }
    out += "  # " + std::string(f.help) + "\n";
    std::string def = f.default_value;
    out += "  #" + std::string(f.name) + ": " + (def.empty() ? "\"\"" : def) + "\n";
  }
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
      "| key | type | default | range | description |\n"
      "| --- | --- | --- | --- | --- |\n";
  for (const Field& f : Fields()) {
    bool is_int = std::holds_alternative<int64_t Config::*>(f.member);
    std::string range = is_int ? std::to_string(f.min) + ".." + std::to_string(f.max) : "";
    std::string def = f.default_value;
    out += "| `" + std::string(f.section) + "." + f.name + "` | " + (is_int ? "integer" : "string") +
           " | `" + (def.empty() ? "\"\"" : def) + "` | " + range + " | " + f.help + " |\n";
  }
  return out;
}

}  // namespace komoku::app

#include "app/config.h"

#include <yaml-cpp/yaml.h>

#include <functional>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <variant>
#include <vector>

#include "store/key_options.h"

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

// Where a field was set: "file:line: " when the file set it, "file: " when
// it kept its default.
using WhereFn = std::function<std::string(const std::string& field)>;

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
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
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
    return Status::InvalidArgument(at("mqtt.client_id") + "mqtt.client_id: must be 1..128 characters");
  }
  if (c.mqtt_prefix.empty() || c.mqtt_prefix.find_first_of("+#") != std::string::npos) {
    return Status::InvalidArgument(at("mqtt.prefix") + "mqtt.prefix: must be non-empty, without + or #");
  }
  if (c.store_data_dir.empty()) {
    return Status::InvalidArgument(at("store.data_dir") + "store.data_dir: must not be empty");
  }
  if (!c.mqtt_password_file.empty()) {
    if (!c.mqtt_password.empty()) {
      return Status::InvalidArgument(at("mqtt.password_file") +
                                     "mqtt.password and mqtt.password_file are both set");
    }
    std::ifstream in(c.mqtt_password_file, std::ios::binary);
    if (!in) {
      return Status::InvalidArgument(at("mqtt.password_file") + "mqtt.password_file: cannot read '" +
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
    const YAML::Node& spec = kv->second;
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
            return Status::InvalidArgument(fwhere + "keys." + key + ".type: " +
                                           type.status().message());
          }
          def.type = *type;
          continue;
        }
        Result<nlohmann::json> value = ScalarToJson(f->second, fwhere + "keys." + key + "." +
                                                                   field + ": ");
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
    return Status::InvalidArgument(Where(name, root.Mark()) +
                                   "expected sections (mqtt:, store:, http:, log:, keys:)");
  }
  try {
    std::map<std::string, int> sections;
    for (auto sec = root.begin(); sec != root.end(); ++sec) {
      std::string section = sec->first.as<std::string>();
      if (!IsKnownSection(section) && section != "keys") {
        return Status::InvalidArgument(Where(name, sec->first.Mark()) + "unknown section '" +
                                       section + "'");
      }
      auto [seen, fresh] = sections.emplace(section, sec->first.Mark().line + 1);
      if (!fresh) {
        return Status::InvalidArgument(Where(name, sec->first.Mark()) + "section '" + section +
                                       "' given twice (first on line " +
                                       std::to_string(seen->second) + ")");
      }
      const YAML::Node& body = sec->second;
      if (body.IsNull()) continue;
      if (!body.IsMap()) {
        return Status::InvalidArgument(Where(name, body.Mark()) + section +
                                       ": expected a map of fields");
      }
      if (section == "keys") {
        KOMOKU_RETURN_IF_ERROR(ParseKeys(body, name, c));
        continue;
      }
      for (auto kv = body.begin(); kv != body.end(); ++kv) {
        std::string key = kv->first.as<std::string>();
        const Field* f = FindField(section, key);
        if (!f) {
          return Status::InvalidArgument(Where(name, kv->first.Mark()) + "unknown field '" +
                                         section + "." + key + "'");
        }
        std::string path = section + "." + key;
        auto [line, first] = lines.emplace(path, kv->first.Mark().line + 1);
        if (!first) {
          return Status::InvalidArgument(Where(name, kv->first.Mark()) + path +
                                         ": set twice (first on line " +
                                         std::to_string(line->second) + ")");
        }
        if (!kv->second.IsScalar()) {
          return Status::InvalidArgument(Where(name, kv->second.Mark()) + path +
                                         ": expected a single value");
        }
        KOMOKU_RETURN_IF_ERROR(
            Set(c, *f, kv->second.as<std::string>(), Where(name, kv->second.Mark())));
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(Where(name, e.mark) + e.msg);
  }
  KOMOKU_RETURN_IF_ERROR(Validate(c, at));
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
  out +=
      "\n# Keys defined at start (like POST /api/v1/define): a type and Komoku's\n"
      "# options, durations in seconds. Keys not listed are created on first put,\n"
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
      "#    values: [disarmed, armed_home, armed_away, triggered]\n";
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
  out +=
      "\n## keys\n\n"
      "Keys defined at start, each with a `type` (numeric, counter, boolean, uptime,\n"
      "string) and Komoku's options, applied in file order as `POST /api/v1/define`\n"
      "would (docs/http-api.md). Durations are seconds.\n\n"
      "| option | types | default | meaning |\n"
      "| --- | --- | --- | --- |\n"
      "| `same_value_resolution` | all | 60 | a repeat of the current value is not stored again "
      "until this much time has passed since it was stored (it still refreshes an uptime key) |\n"
      "| `max_time` | uptime | 60 | the key turns false this long after the last true |\n"
      "| `values` | string | any | the allowed values; anything else is refused |\n\n"
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
      "boolean and uptime, may be switched, since their values are the same.\n";
  return out;
}

}  // namespace komoku::app

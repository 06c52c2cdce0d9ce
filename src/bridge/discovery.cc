// Discovery (docs/mapping.md#discovery). Home Assistant's discovery configs
// are read the way Home Assistant reads them (abbreviated keys expanded, `~`
// replaced), but only what Komoku can follow exactly is mapped: a template
// that Komoku cannot evaluate exactly refuses the entity rather than guess.
#include "bridge/discovery.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "bridge/ha_template.h"
#include "common/files.h"
#include "core/value.h"
#include "wire/input.h"

namespace komoku::bridge {
namespace {

using nlohmann::json;

// Home Assistant's abbreviations of the keys Komoku reads (and a few it
// shows), so that `stat_t` and `state_topic` mean the same.
const std::map<std::string, std::string>& Abbreviations() {
  static const std::map<std::string, std::string> kAbbreviations = {
      {"avty", "availability"},
      {"avty_mode", "availability_mode"},
      {"avty_t", "availability_topic"},
      {"avty_tpl", "availability_template"},
      {"dev", "device"},
      {"dev_cla", "device_class"},
      {"evt_typ", "event_types"},
      {"exp_aft", "expire_after"},
      {"en", "enabled_by_default"},
      {"json_attr_t", "json_attributes_topic"},
      {"obj_id", "object_id"},
      {"pl_avail", "payload_available"},
      {"pl_not_avail", "payload_not_available"},
      {"pl_off", "payload_off"},
      {"pl_on", "payload_on"},
      {"stat_cla", "state_class"},
      {"stat_off", "state_off"},
      {"stat_on", "state_on"},
      {"stat_t", "state_topic"},
      {"stat_val_tpl", "state_value_template"},
      {"t", "topic"},
      {"uniq_id", "unique_id"},
      {"unit_of_meas", "unit_of_measurement"},
      {"val_tpl", "value_template"},
      {"cmd_t", "command_topic"},
      {"ids", "identifiers"},
      {"mf", "manufacturer"},
      {"mdl", "model"},
      {"sw", "sw_version"},
      {"o", "origin"},
      {"cmps", "components"},
      {"p", "platform"},
  };
  return kAbbreviations;
}

// The object with its keys expanded and `~` replaced by `base` in every
// topic (a key ending in "topic": at the start or the end of the value).
json Expand(const json& in, const std::string& base) {
  json out = json::object();
  for (auto it = in.begin(); it != in.end(); ++it) {
    auto abbr = Abbreviations().find(it.key());
    const std::string& name = abbr == Abbreviations().end() ? it.key() : abbr->second;
    json value = it.value();
    const bool is_topic = name == "topic" || (name.size() > 6 && store::EndsWith(name, "_topic"));
    if (is_topic && value.is_string() && !base.empty()) {
      std::string s = value.get<std::string>();
      if (!s.empty() && s.front() == '~') {
        s = base + s.substr(1);
      } else if (!s.empty() && s.back() == '~') {
        s = s.substr(0, s.size() - 1) + base;
      }
      value = s;
    }
    if (value.is_object() && (name == "device" || name == "origin")) value = Expand(value, "");
    if (value.is_array() && name == "availability") {
      json list = json::array();
      for (const json& e : value) list.push_back(e.is_object() ? Expand(e, base) : e);
      value = std::move(list);
    }
    out[name] = std::move(value);
  }
  return out;
}

std::string Text(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

// payload_on and friends as the text Home Assistant compares the rendered
// state with; a JSON boolean stays "true"/"false" (compared ignoring case).
std::string WordOf(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();
}

std::string Word(const json& obj, const char* name, const char* fallback) {
  auto it = obj.find(name);
  return it == obj.end() || it->is_null() ? fallback : WordOf(*it);
}

bool IsPublishTopic(const std::string& t) {
  return !t.empty() && t.size() <= 65535 && t.find_first_of("+#") == std::string::npos &&
         t.find('\0') == std::string::npos;
}

std::string Pointer(const std::vector<std::string>& tokens) {
  std::string out;
  for (const std::string& t : tokens) {
    out += '/';
    for (char c : t) {
      if (c == '~') {
        out += "~0";
      } else if (c == '/') {
        out += "~1";
      } else {
        out += c;
      }
    }
  }
  return out;
}

std::string Dotted(const std::vector<std::string>& tokens) {
  std::string out;
  for (const std::string& t : tokens) out += (out.empty() ? "" : ".") + t;
  return out;
}

const char* const kHomieFalse[] = {"init", "disconnected", "sleeping", "lost", "alert"};

// What a Homie entity is learnt from, as one text (to see repeats).
std::string HomieRaw(const std::map<std::string, std::string>& attributes) {
  std::string raw;
  for (const auto& [name, value] : attributes) raw += name + "=" + value + "\n";
  return raw;
}

// The one-rule engine an entity makes: refuses options the store would not
// take before the entity is listed as mapped.
// A rule reading one topic into one key: the whole payload as text, or one
// field of a JSON payload. Discovered rules let the others match too.
MappingRule TopicRule(std::string name, const std::string& topic, const std::string& key,
                      std::optional<store::KeyType> type, const std::string& field) {
  MappingRule r;
  r.name = std::move(name);
  r.topics = {topic};
  r.key = key;
  r.type = type;
  if (field.empty()) {
    r.payload = PayloadFormat::kText;
  } else {
    r.payload = PayloadFormat::kJson;
    r.fields = {{field, ""}};
  }
  r.continue_matching = true;
  return r;
}

MappingRule StateRule(const DiscoveredEntity& e) {
  MappingRule r = TopicRule(e.id, e.state_topic, e.key, e.type, e.field);
  r.number_ops = e.number_ops;
  r.missing_value = e.missing_value;
  r.expression = e.expression;
  r.true_words = e.true_words;
  r.false_words = e.false_words;
  r.strict_words = !e.true_words.empty();
  if (e.stale_after_s) r.options["stale_after"] = *e.stale_after_s;
  if (e.event) r.options["same_value_resolution"] = 0;
  r.event_types = e.event_types;
  return r;
}

MappingRule AvailabilityRule(const DiscoveredEntity::Availability& a, const std::string& key) {
  MappingRule r =
      TopicRule("availability " + a.topic, a.topic, key, store::KeyType::kBoolean, a.field);
  r.expression = a.expression;
  r.true_words = a.true_words;
  r.false_words = a.false_words;
  r.strict_words = true;
  return r;
}

// Sets the key (refusing one that is no key name or would read as a
// template) and checks that the entity's rule compiles.
void FinishEntity(DiscoveredEntity* e, const std::string& key) {
  e->key = key;
  Status ok = store::ValidateKeyName(key);
  if (ok.ok() && key.find_first_of("{}") != std::string::npos) {
    ok = Status::InvalidArgument("'{' and '}' are not allowed in a discovered key");
  }
  if (!ok.ok()) {
    e->reason = "bad_key";
    e->message = "key " + store::QuoteForMessage(key) + ": " + ok.message();
    return;
  }
  std::vector<MappingRule> rules = {StateRule(*e)};
  for (const auto& a : e->availability) rules.push_back(AvailabilityRule(a, a.topic));
  Result<std::unique_ptr<MappingEngine>> compiled = MappingEngine::Compile(std::move(rules));
  if (!compiled.ok()) {
    e->reason = "bad_option";
    e->message = compiled.status().message();
  }
}

// Takes `e` by rvalue reference, not by value: callers build `message` from
// e's fields in the same call, and a by-value parameter may be move-constructed
// before that argument is evaluated (the order is unspecified; GCC for armhf
// does so and read a moved-from e).
DiscoveredEntity Refused(DiscoveredEntity&& e, const char* reason, std::string message) {
  e.reason = reason;
  e.message = std::move(message);
  return std::move(e);
}

json EntityJson(const DiscoveredEntity& e) {
  json j = {{"id", e.id}, {"source", e.source}, {"component", e.component}};
  if (!e.state_topic.empty()) j["state_topic"] = e.state_topic;
  if (!e.value_template.empty()) j["value_template"] = e.value_template;
  if (e.mapped()) {
    j["status"] = "mapped";
    j["key"] = e.key;
    j["type"] = store::KeyTypeName(e.type);
    if (!e.true_words.empty()) {
      j["true"] = e.true_words;
      j["false"] = e.false_words;
    }
    if (e.stale_after_s) j["stale_after"] = *e.stale_after_s;
    if (e.event) j["event"] = true;
    if (!e.event_types.empty()) j["event_types"] = e.event_types;
    if (!e.alias.empty()) j["alias"] = e.alias;
    json avail = json::array();
    for (const auto& a : e.availability) avail.push_back(a.topic);
    if (!avail.empty()) j["availability"] = avail;
  } else {
    j["status"] = "refused";
    j["reason"] = e.reason;
    j["message"] = e.message;
  }
  for (auto it = e.info.begin(); it != e.info.end(); ++it) j[it.key()] = it.value();
  return j;
}

}  // namespace

namespace {

// A topic option of config `c`: empty when absent, InvalidArgument when it
// is no topic to subscribe to.
Result<std::string> TopicOf(const json& c, const char* name) {
  auto it = c.find(name);
  if (it == c.end() || it->is_null()) return std::string();
  if (!it->is_string() || !IsPublishTopic(it->get<std::string>())) {
    return Status::InvalidArgument(std::string(name) + " " + store::QuoteForMessage(it->dump()) +
                                   " is not a topic (text without + and #)");
  }
  return it->get<std::string>();
}

// The steps of FinishHaEntity. Each reads one thing of the config `c` into
// the entity, or refuses it: InvalidArgument with the refusal's reason.
Status Refusal(const char* reason, std::string message) {
  return Status::InvalidArgument(std::move(message)).WithReason(reason);
}

bool IsOwnTopic(const std::string& t, const DiscoveryOptions& options) {
  return t.size() > options.own_prefix.size() &&
         t.compare(0, options.own_prefix.size(), options.own_prefix) == 0 &&
         t[options.own_prefix.size()] == '/';
}

// The state topic (option `topic_name`).
Status ReadStateTopic(DiscoveredEntity& e, const json& c, const char* topic_name,
                      const DiscoveryOptions& options) {
  Result<std::string> state_topic = TopicOf(c, topic_name);
  if (!state_topic.ok()) return Refusal("bad_topic", state_topic.status().message());
  if (state_topic->empty()) {
    return Refusal("no_state_topic",
                   "a " + e.component + " without " + topic_name + " has no values to store");
  }
  e.state_topic = *state_topic;
  if (IsOwnTopic(e.state_topic, options)) {
    return Refusal("own_topic", "state topic '" + e.state_topic +
                                    "' is under Komoku's own prefix '" + options.own_prefix +
                                    "/'; Komoku never maps what it publishes");
  }
  return Status::Ok();
}

// The value template (option `template_name`), or the JSON field
// `default_field` where there is none; `*dotted` is the field's dotted path.
Status ReadValueTemplate(DiscoveredEntity& e, const json& c, const char* template_name,
                         const std::string& default_field, std::string* dotted) {
  e.value_template = template_name ? Text(c, template_name) : "";
  std::vector<std::string> tokens;
  if (!e.value_template.empty()) {
    Result<HaTemplate> t = ParseHaTemplate(e.value_template);
    if (!t.ok()) return Refusal("bad_template", t.status().message());
    if (t->numeric && e.type != store::KeyType::kNumeric && e.type != store::KeyType::kCounter) {
      return Refusal("bad_template", "value template '" + e.value_template +
                                         "' computes a number, but a " + e.component +
                                         " here is a " + store::KeyTypeName(e.type) + " key");
    }
    tokens = std::move(t->path);
    e.number_ops = std::move(t->ops);
    e.expression = std::move(t->expression);
    if (t->missing_value) {
      e.missing_value = std::visit([](auto v) { return store::InputValue(v); }, *t->missing_value);
    }
  } else if (!default_field.empty()) {
    tokens = {default_field};
  }
  e.field = Pointer(tokens);
  *dotted = Dotted(tokens);
  return Status::Ok();
}

Status ReadExpireAfter(DiscoveredEntity& e, const json& c) {
  auto expire = c.find("expire_after");
  if (expire == c.end() || expire->is_null()) return Status::Ok();
  if (!expire->is_number() || !std::isfinite(expire->get<double>()) || expire->get<double>() < 0) {
    return Refusal("bad_option", "expire_after " + expire->dump() + " is not a number of seconds");
  }
  if (expire->get<double>() > 0) e.stale_after_s = expire->get<double>();
  return Status::Ok();
}

// One availability topic, its template (option `template_key` of `spec`)
// and its words.
Status AddAvailability(DiscoveredEntity& e, const std::string& topic_text, const json& spec,
                       const char* template_key) {
  DiscoveredEntity::Availability a;
  a.topic = topic_text;
  std::string tpl = Text(spec, template_key);
  if (!tpl.empty()) {
    Result<HaTemplate> t = ParseHaTemplate(tpl);
    if (!t.ok()) {
      return Refusal("bad_template", "availability of '" + a.topic + "': " + t.status().message());
    }
    if (t->numeric) {
      return Refusal("bad_template", "availability template '" + tpl + "' computes a number");
    }
    a.field = Pointer(t->path);
    a.expression = std::move(t->expression);
  }
  a.true_words = {Word(spec, "payload_available", "online")};
  a.false_words = {Word(spec, "payload_not_available", "offline")};
  if (a.true_words[0] == a.false_words[0]) {
    return Refusal("bad_template", "availability of '" + a.topic +
                                       "': payload_available and payload_not_available are equal");
  }
  e.availability.push_back(std::move(a));
  return Status::Ok();
}

// Availability: one topic (availability_topic) or a list of them.
Status ReadAvailability(DiscoveredEntity& e, const json& c, const DiscoveryOptions& options) {
  Result<std::string> avty_topic = TopicOf(c, "availability_topic");
  if (!avty_topic.ok()) return Refusal("bad_topic", avty_topic.status().message());
  if (!avty_topic->empty()) {
    KOMOKU_RETURN_IF_ERROR(AddAvailability(e, *avty_topic, c, "availability_template"));
  }
  auto list = c.find("availability");
  if (list != c.end() && list->is_array()) {
    for (const json& spec : *list) {
      const std::string t = spec.is_object() ? Text(spec, "topic") : "";
      if (!spec.is_object() || !IsPublishTopic(t)) {
        return Refusal("bad_topic", "availability entry " + store::QuoteForMessage(spec.dump()) +
                                        " has no topic");
      }
      KOMOKU_RETURN_IF_ERROR(AddAvailability(e, t, spec, "value_template"));
    }
  }
  for (const auto& a : e.availability) {
    if (IsOwnTopic(a.topic, options)) {
      return Refusal("own_topic", "availability topic '" + a.topic +
                                      "' is under Komoku's own prefix '" + options.own_prefix +
                                      "/'");
    }
  }
  return Status::Ok();
}

// What each entity of a config reads besides its type: the state topic
// (option `topic_name`), the value template (option `template_name`, or
// the JSON field `default_field` where there is no template: a JSON-schema
// light's "state"), expire_after and availability; then the key.
DiscoveredEntity FinishHaEntity(DiscoveredEntity&& e, const json& c, const char* topic_name,
                                const char* template_name, const std::string& default_field,
                                const DiscoveryOptions& options) {
  std::string dotted;
  Status st = ReadStateTopic(e, c, topic_name, options);
  if (st.ok()) st = ReadValueTemplate(e, c, template_name, default_field, &dotted);
  if (st.ok()) st = ReadExpireAfter(e, c);
  if (st.ok()) st = ReadAvailability(e, c, options);
  if (!st.ok()) {
    const std::string reason = st.reason();
    return Refused(std::move(e), reason.c_str(), st.message());
  }
  FinishEntity(&e, options.key_prefix + e.state_topic + (dotted.empty() ? "" : "/" + dotted));
  return std::move(e);
}

// One part of a config that has several state topics (a climate) or one
// JSON state with several values (a JSON-schema light): its own entity,
// "<id>#<part>".
struct HaPart {
  const char* part;
  const char* topic_name;
  const char* template_name;  // null: read default_field
  store::KeyType type;
  const char* default_field = "";
};

// The climate's state topics (Home Assistant's MQTT climate), each with its
// template: temperatures and humidities are numbers, modes and the action
// text.
constexpr HaPart kClimateParts[] = {
    {"current_temperature", "current_temperature_topic", "current_temperature_template",
     store::KeyType::kNumeric},
    {"temperature", "temperature_state_topic", "temperature_state_template",
     store::KeyType::kNumeric},
    {"temperature_low", "temperature_low_state_topic", "temperature_low_state_template",
     store::KeyType::kNumeric},
    {"temperature_high", "temperature_high_state_topic", "temperature_high_state_template",
     store::KeyType::kNumeric},
    {"current_humidity", "current_humidity_topic", "current_humidity_template",
     store::KeyType::kNumeric},
    {"target_humidity", "target_humidity_state_topic", "target_humidity_state_template",
     store::KeyType::kNumeric},
    {"mode", "mode_state_topic", "mode_state_template", store::KeyType::kString},
    {"action", "action_topic", "action_template", store::KeyType::kString},
    {"preset_mode", "preset_mode_state_topic", "preset_mode_value_template",
     store::KeyType::kString},
    {"fan_mode", "fan_mode_state_topic", "fan_mode_state_template", store::KeyType::kString},
    {"swing_mode", "swing_mode_state_topic", "swing_mode_state_template", store::KeyType::kString},
};

bool HasOption(const json& c, const char* name) {
  auto it = c.find(name);
  return it != c.end() && !it->is_null();
}

// What the entity shows of the config in its description: names, classes
// and units, and the device's name, model and manufacturer.
void AddHaInfo(DiscoveredEntity& e, const json& c) {
  for (const char* shown :
       {"name", "unique_id", "object_id", "device_class", "state_class", "unit_of_measurement"}) {
    std::string v = Text(c, shown);
    if (!v.empty()) e.info[shown] = v;
  }
  if (c.contains("device") && c["device"].is_object()) {
    const json& d = c["device"];
    for (const char* shown : {"name", "model", "manufacturer"}) {
      std::string v = Text(d, shown);
      if (!v.empty()) e.info[std::string("device_") + shown] = v;
    }
  }
}

// The entities of the parts [begin, end) whose state topic `c` has.
void AddHaParts(const DiscoveredEntity& e, const json& c, const HaPart* begin, const HaPart* end,
                const DiscoveryOptions& options, std::vector<DiscoveredEntity>& out) {
  for (const HaPart* p = begin; p != end; ++p) {
    if (!HasOption(c, p->topic_name)) continue;
    DiscoveredEntity part = e;
    part.id += std::string("#") + p->part;
    part.type = p->type;
    if (p->type == store::KeyType::kBoolean) {
      part.true_words = {"ON"};
      part.false_words = {"OFF"};
    }
    out.push_back(FinishHaEntity(std::move(part), c, p->topic_name, p->template_name,
                                 p->default_field, options));
  }
}

// A light's schema that publishes its state as payload_on or payload_off.
bool IsDefaultLightSchema(const std::string& schema) {
  return schema.empty() || schema == "default" || schema == "basic";
}

// A sensor's key type, from its classes and unit.
store::KeyType HaSensorType(const json& c) {
  const std::string device_class = Text(c, "device_class");
  const std::string state_class = Text(c, "state_class");
  const std::string unit = Text(c, "unit_of_measurement");
  if (device_class == "timestamp" || device_class == "date" || device_class == "enum") {
    return store::KeyType::kString;
  }
  if (state_class == "total_increasing") return store::KeyType::kCounter;
  if (state_class == "measurement" || state_class == "total" || !unit.empty()) {
    return store::KeyType::kNumeric;
  }
  return store::KeyType::kString;
}

// A JSON-schema light: the state topic carries
// {"state":"ON","brightness":254,...}: the state as a boolean, and the
// brightness and colour temperature when the light says it has them.
std::vector<DiscoveredEntity> JsonLightEntities(const DiscoveredEntity& base, DiscoveredEntity e,
                                                const json& c, const DiscoveryOptions& options) {
  std::vector<DiscoveredEntity> out;
  e.type = store::KeyType::kBoolean;
  e.true_words = {"ON"};
  e.false_words = {"OFF"};
  out.push_back(FinishHaEntity(std::move(e), c, "state_topic", nullptr, "state", options));
  const DiscoveredEntity& state = out.front();
  if (!state.mapped()) return out;
  const bool brightness = c.value("brightness", json(false)) == json(true);
  bool color_temp = c.value("color_temp", json(false)) == json(true);
  auto modes = c.find("supported_color_modes");
  if (modes != c.end() && modes->is_array()) {
    for (const json& m : *modes) color_temp = color_temp || m == "color_temp";
  }
  DiscoveredEntity b = base;
  b.info = state.info;
  for (auto [wanted, part] :
       {std::pair{brightness, "brightness"}, std::pair{color_temp, "color_temp"}}) {
    if (!wanted) continue;
    DiscoveredEntity p = b;
    p.id += std::string("#") + part;
    p.type = store::KeyType::kNumeric;
    out.push_back(FinishHaEntity(std::move(p), c, "state_topic", nullptr, part, options));
  }
  return out;
}

// The entities of one component's config `c` (keys expanded), announced on
// `id` (a config topic, or "<config topic>#<component id>" inside a device
// config). `base` holds what every entity shares (id, source, info).
std::vector<DiscoveredEntity> HaEntities(const DiscoveredEntity& base, const json& c,
                                         const DiscoveryOptions& options) {
  std::vector<DiscoveredEntity> out;
  DiscoveredEntity e = base;
  AddHaInfo(e, c);
  // Entities Home Assistant adds disabled (zigbee2mqtt's linkquality,
  // voltage, last_seen): not recorded either, unless the setting asks.
  auto enabled = c.find("enabled_by_default");
  if (enabled != c.end() && *enabled == false && !options.disabled_entities) {
    out.push_back(Refused(std::move(e), "disabled",
                          "enabled_by_default is false (Home Assistant adds it disabled); "
                          "discovery.disabled_entities: true records it"));
    return out;
  }
  const char* template_name = "value_template";
  if (e.component == "climate") {
    AddHaParts(e, c, std::begin(kClimateParts), std::end(kClimateParts), options, out);
    if (out.empty()) {
      out.push_back(Refused(std::move(e), "no_state_topic",
                            "a climate without current_temperature_topic, "
                            "temperature_state_topic, mode_state_topic, action_topic or another "
                            "state topic has no values to store"));
    }
    return out;
  }
  if (e.component == "sensor") {
    e.type = HaSensorType(c);
  } else if (e.component == "number") {
    e.type = store::KeyType::kNumeric;
  } else if (e.component == "binary_sensor" || e.component == "switch" || e.component == "fan" ||
             (e.component == "light" && IsDefaultLightSchema(Text(c, "schema")))) {
    // On or off, as Home Assistant reads it: a binary sensor's, fan's or
    // default-schema light's payload_on and payload_off (ON and OFF), a
    // switch's state_on and state_off (defaulting to its payloads); a fan's
    // and a light's state through state_value_template.
    e.type = store::KeyType::kBoolean;
    const bool states = e.component == "switch";
    const std::string on = Word(c, "payload_on", "ON"), off = Word(c, "payload_off", "OFF");
    e.true_words = {states ? Word(c, "state_on", on.c_str()) : on};
    e.false_words = {states ? Word(c, "state_off", off.c_str()) : off};
    if (e.true_words[0] == e.false_words[0]) {
      out.push_back(
          Refused(std::move(e), "bad_option",
                  std::string(states ? "state_on and state_off" : "payload_on and payload_off") +
                      " are both '" + e.true_words[0] + "'"));
      return out;
    }
    if (e.component == "fan" || e.component == "light") template_name = "state_value_template";
  } else if (e.component == "event") {
    // Home Assistant's event: each message a JSON object whose event_type
    // is the event (a press), or a template renders such an object from
    // the payload (zigbee2mqtt's reads value_json.action). The key is
    // <state_topic>/event_type either way.
    e.type = store::KeyType::kString;
    e.event = true;
    std::optional<HaTemplate> event_template;
    if (HasOption(c, "value_template")) {
      Result<HaTemplate> t = ParseHaEventTemplate(Text(c, "value_template"));
      if (!t.ok()) {
        out.push_back(Refused(std::move(e), "bad_template",
                              "an event's value template '" + Text(c, "value_template") +
                                  "': " + t.status().message()));
        return out;
      }
      event_template = std::move(t.value());
    }
    // Home Assistant requires event_types (a list of texts; one text is a
    // list of one) and fires no event of another type.
    auto types = c.find("event_types");
    if (types != c.end() && types->is_string()) {
      e.event_types.push_back(types->get<std::string>());
    } else if (types != c.end() && types->is_array()) {
      for (const json& t : *types) {
        if (!t.is_string()) {
          e.event_types.clear();
          break;
        }
        e.event_types.push_back(t.get<std::string>());
      }
    }
    if (e.event_types.empty()) {
      out.push_back(Refused(std::move(e), "bad_option",
                            "an event without event_types, a list of texts (Home Assistant "
                            "requires them and fires no event of another type)"));
      return out;
    }
    DiscoveredEntity made =
        FinishHaEntity(std::move(e), c, "state_topic", nullptr, "event_type", options);
    if (event_template && made.mapped()) {
      made.value_template = Text(c, "value_template");
      made.field = Pointer(event_template->path);
      made.expression = std::move(event_template->expression);
    }
    out.push_back(std::move(made));
    return out;
  } else if (e.component == "device_automation") {
    // A device trigger (zigbee2mqtt's action_single, action_double, ... on
    // zigbee2mqtt/<name>/action): every message on its topic is an event;
    // the triggers of one topic share its key.
    e.type = store::KeyType::kString;
    e.event = true;
    if (Text(c, "automation_type") != "trigger") {
      out.push_back(Refused(std::move(e), "unsupported",
                            "a device_automation of automation_type '" +
                                Text(c, "automation_type") + "'; Komoku reads triggers"));
      return out;
    }
    out.push_back(FinishHaEntity(std::move(e), c, "topic", "value_template", "", options));
    return out;
  } else {
    e.type = store::KeyType::kString;
    if (e.component == "light") {  // not the default schema (above)
      const std::string schema = Text(c, "schema");
      if (schema == "json") return JsonLightEntities(base, std::move(e), c, options);
      out.push_back(Refused(std::move(e), "unsupported",
                            "a light with schema '" + schema +
                                "' renders its state with templates; Komoku reads the default "
                                "and the json schema"));
      return out;
    }
  }
  out.push_back(FinishHaEntity(std::move(e), c, "state_topic", template_name, "", options));
  return out;
}

// Device discovery (Home Assistant 2024.11): one config for a device's
// components, each in `cmps` with its platform in `p`; the options outside
// `cmps` (state_topic, availability, device, ...) are shared, and a
// component's own options win. A component announced with only its
// platform is one Home Assistant is told to remove: it makes no entity.
// `c` is the config with its keys expanded, `base` its "~".
std::vector<DiscoveredEntity> DeviceEntities(DiscoveredEntity e, const json& c,
                                             const std::string& base,
                                             const DiscoveryOptions& options) {
  std::vector<DiscoveredEntity> out;
  auto components = c.find("components");
  if (components == c.end() || !components->is_object() || components->empty()) {
    out.push_back(Refused(std::move(e), "bad_option",
                          "a device config needs \"cmps\": an object of components"));
    return out;
  }
  json shared = c;
  shared.erase("components");
  for (auto it = components->begin(); it != components->end(); ++it) {
    DiscoveredEntity part = e;
    part.id += "#" + it.key();
    part.info = json::object();
    part.info["object_id"] = it.key();
    if (!it.value().is_object()) {
      out.push_back(
          Refused(std::move(part), "not_object", "component '" + it.key() + "' is not an object"));
      continue;
    }
    const std::string own_base = it.value().contains("~") && it.value()["~"].is_string()
                                     ? it.value()["~"].get<std::string>()
                                     : base;
    json merged = shared;
    const json own = Expand(it.value(), own_base);
    for (auto o = own.begin(); o != own.end(); ++o) merged[o.key()] = o.value();
    const std::string platform = Text(own, "platform");
    if (platform.empty()) {
      out.push_back(Refused(std::move(part), "bad_option",
                            "component '" + it.key() + "' has no platform (\"p\")"));
      continue;
    }
    if (own.size() == 1) continue;  // {"p": ...} alone: removed
    part.component = platform;
    for (DiscoveredEntity& x : HaEntities(part, merged, options)) out.push_back(std::move(x));
  }
  return out;
}

}  // namespace

std::vector<DiscoveredEntity> ParseHaConfig(std::string_view topic, std::string_view payload,
                                            const DiscoveryOptions& options) {
  std::vector<DiscoveredEntity> out;
  DiscoveredEntity e;
  e.id = std::string(topic);
  e.source = "home_assistant";
  // <prefix>/<component>/[<node_id>/]<object_id>/config
  std::vector<std::string> levels;
  const std::string prefix = options.ha_prefix + "/";
  std::string rest = topic.substr(0, prefix.size()) == prefix
                         ? std::string(topic.substr(prefix.size()))
                         : std::string();
  for (size_t start = 0;;) {
    size_t slash = rest.find('/', start);
    levels.push_back(
        rest.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (levels.size() < 3 || levels.size() > 4 || levels.back() != "config") {
    out.push_back(
        Refused(std::move(e), "bad_topic",
                "'" + e.id + "' is not " + prefix + "<component>/[<node_id>/]<object_id>/config"));
    return out;
  }
  e.component = levels[0];
  e.info["object_id"] = levels[levels.size() - 2];
  if (levels.size() == 4) e.info["node_id"] = levels[1];

  json raw = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (raw.is_discarded()) {
    out.push_back(Refused(std::move(e), "bad_json",
                          "config " + store::QuoteForMessage(payload) + " is not valid JSON"));
    return out;
  }
  if (!raw.is_object()) {
    out.push_back(Refused(std::move(e), "not_object",
                          std::string("config is a JSON ") + raw.type_name() + ", not an object"));
    return out;
  }
  const std::string base =
      raw.contains("~") && raw["~"].is_string() ? raw["~"].get<std::string>() : "";
  json c = Expand(raw, base);
  out = e.component != "device" ? HaEntities(e, c, options)
                                : DeviceEntities(std::move(e), c, base, options);
  // The key's identity: the unique_id, and the part of a config that makes
  // several keys (a climate's "#mode", a device config's "#<component>").
  for (DiscoveredEntity& x : out) {
    auto unique_id = x.info.find("unique_id");
    if (unique_id == x.info.end() || !unique_id->is_string()) continue;
    const size_t part = x.id.find('#');
    x.identity = unique_id->get<std::string>() +
                 (part == std::string::npos ? std::string() : x.id.substr(part));
  }
  return out;
}

DiscoveredEntity ParseHaDiscovery(std::string_view topic, std::string_view payload,
                                  const DiscoveryOptions& options) {
  std::vector<DiscoveredEntity> all = ParseHaConfig(topic, payload, options);
  if (all.empty()) {
    DiscoveredEntity e;
    e.id = std::string(topic);
    e.source = "home_assistant";
    e.component = "device";
    return Refused(std::move(e), "no_state_topic", "the device config has no components");
  }
  return std::move(all.front());
}

namespace {

// A Homie datatype into the entity's type and words; false for one that is
// not Homie's (3, 4 or 5: json is Homie 5's, stored as text).
bool SetHomieType(const std::string& datatype, DiscoveredEntity* e) {
  if (datatype == "integer" || datatype == "float") {
    e->type = store::KeyType::kNumeric;
  } else if (datatype == "boolean") {
    e->type = store::KeyType::kBoolean;
    e->true_words = {"true"};
    e->false_words = {"false"};
  } else if (datatype == "string" || datatype == "enum" || datatype == "color" ||
             datatype == "datetime" || datatype == "duration" || datatype == "json") {
    e->type = store::KeyType::kString;
  } else {
    return false;
  }
  return true;
}

constexpr char kHomieDatatypes[] =
    "integer, float, boolean, string, enum, color, datetime, duration, json";

// homie/[5/]<device>/$state: ready, or one of the states of a device that is
// not there (init counts as not yet there).
DiscoveredEntity::Availability HomieState(const std::string& device_topic) {
  DiscoveredEntity::Availability a;
  a.topic = device_topic + "/$state";
  a.true_words = {"ready"};
  a.false_words.assign(std::begin(kHomieFalse), std::end(kHomieFalse));
  return a;
}

// A device's $homie: a convention version before 4 (where $datatype was
// optional).
bool IsHomie3OrOlder(std::string_view version) {
  return !version.empty() && (version[0] == '2' || version[0] == '3') &&
         (version.size() == 1 || version[1] == '.');
}

}  // namespace

DiscoveredEntity ParseHomieProperty(const std::string& property_topic,
                                    const std::map<std::string, std::string>& attributes,
                                    const DiscoveryOptions& options) {
  DiscoveredEntity e;
  e.id = property_topic;
  e.source = "homie";
  e.component = "property";
  e.state_topic = property_topic;
  auto attr = [&](const char* name) {
    auto it = attributes.find(name);
    return it == attributes.end() ? std::string() : it->second;
  };
  std::string datatype = attr("$datatype");
  for (const char* shown : {"$datatype", "$unit", "$format", "$name", "$homie"}) {
    std::string v = attr(shown);
    if (!v.empty()) e.info[shown + 1] = v;
  }
  // Homie 2 and 3 made $datatype optional, string by default (Homie 4
  // requires it): such a property is text, as its device declares it.
  if (!attributes.count("$datatype") && IsHomie3OrOlder(attr("$homie"))) {
    datatype = "string";
    e.info["datatype"] = "string (Homie " + attr("$homie") + " default)";
  }
  if (!SetHomieType(datatype, &e)) {
    return Refused(
        std::move(e), "unsupported",
        "$datatype '" + datatype + "' is not a Homie datatype (" + kHomieDatatypes + ")");
  }
  // Homie 3 and 4: `$retained false` (the default is true) marks a property
  // whose values are events (a button press), as Homie 5's "retained".
  if (attr("$retained") == "false") {
    e.event = true;
    e.info["retained"] = false;
  }
  const size_t device_end = property_topic.find('/', options.homie_prefix.size() + 1);
  e.availability.push_back(HomieState(property_topic.substr(0, device_end)));
  FinishEntity(&e, options.key_prefix + property_topic);
  return e;
}

std::vector<DiscoveredEntity> ParseHomie5Description(const std::string& topic,
                                                     std::string_view payload,
                                                     const DiscoveryOptions& options) {
  const std::string device_topic = topic.substr(0, topic.rfind('/'));
  DiscoveredEntity whole;
  whole.id = topic;
  whole.source = "homie5";
  whole.component = "device";
  const json d = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (d.is_discarded()) {
    return {Refused(std::move(whole), "bad_json", "$description is not valid JSON")};
  }
  if (!d.is_object()) return {Refused(std::move(whole), "not_object", "$description is no object")};
  auto nodes = d.find("nodes");
  if (nodes == d.end() || nodes->is_null()) return {};  // a device without properties
  if (!nodes->is_object()) {
    return {Refused(std::move(whole), "bad_option", "$description's nodes is no object")};
  }
  std::vector<DiscoveredEntity> out;
  for (auto node = nodes->begin(); node != nodes->end(); ++node) {
    const json& n = node.value();
    auto props = n.is_object() ? n.find("properties") : n.end();
    if (!n.is_object() || props == n.end() || !props->is_object()) continue;
    for (auto prop = props->begin(); prop != props->end(); ++prop) {
      const json& p = prop.value();
      DiscoveredEntity e;
      e.id = topic + "#" + node.key() + "/" + prop.key();
      e.source = "homie5";
      e.component = "property";
      e.state_topic = device_topic + "/" + node.key() + "/" + prop.key();
      if (!p.is_object()) {
        out.push_back(Refused(std::move(e), "bad_option", "the property is no object"));
        continue;
      }
      const std::string datatype = Text(p, "datatype");
      for (const char* shown : {"datatype", "unit", "format", "name"}) {
        std::string v = Text(p, shown);
        if (!v.empty()) e.info[shown] = v;
      }
      if (n.contains("name") && n["name"].is_string()) e.info["node_name"] = n["name"];
      if (d.contains("name") && d["name"].is_string()) e.info["device_name"] = d["name"];
      if (!SetHomieType(datatype, &e)) {
        out.push_back(Refused(
            std::move(e), "unsupported",
            "datatype '" + datatype + "' is not a Homie datatype (" + kHomieDatatypes + ")"));
        continue;
      }
      if (!IsPublishTopic(e.state_topic)) {
        out.push_back(Refused(std::move(e), "bad_topic",
                              "'" + e.state_topic + "' is not a topic (text without + and #)"));
        continue;
      }
      // A non-retained property's values are events (a button press).
      if (p.value("retained", json(true)) == json(false)) {
        e.event = true;
        e.info["retained"] = false;
      }
      e.availability.push_back(HomieState(device_topic));
      FinishEntity(&e, options.key_prefix + e.state_topic);
      out.push_back(std::move(e));
    }
  }
  return out;
}

namespace {

constexpr char kTasmotaPrefix[] = "tasmota/discovery/";

// Tasmota's FullTopic (`ft`, "%prefix%/%topic%/" by default) for one of its
// prefixes (`tp`: cmnd, stat, tele); InvalidArgument for a token Komoku does
// not know.
Result<std::string> TasmotaTopic(const json& c, size_t prefix_index) {
  std::string ft = Text(c, "ft");
  if (ft.empty()) ft = "%prefix%/%topic%/";
  const auto tp = c.find("tp");
  if (tp == c.end() || !tp->is_array() || tp->size() <= prefix_index ||
      !(*tp)[prefix_index].is_string()) {
    return Status::InvalidArgument("config has no prefixes (\"tp\": [cmnd, stat, tele])");
  }
  const std::string mac = Text(c, "mac");
  const std::map<std::string, std::string> tokens = {
      {"%prefix%", (*tp)[prefix_index].get<std::string>()},
      {"%topic%", Text(c, "t")},
      {"%hostname%", Text(c, "hn")},
      {"%id%", mac.size() >= 6 ? mac.substr(mac.size() - 6) : mac}};
  std::string out;
  for (size_t i = 0; i < ft.size();) {
    if (ft[i] != '%') {
      out += ft[i++];
      continue;
    }
    const size_t close = ft.find('%', i + 1);
    const std::string token =
        ft.substr(i, close == std::string::npos ? std::string::npos : close - i + 1);
    auto it = tokens.find(token);
    if (it == tokens.end() || it->second.empty()) {
      return Status::InvalidArgument("full topic '" + ft + "' has " + token +
                                     ", which Komoku cannot fill in");
    }
    out += it->second;
    i += token.size();
  }
  if (!out.empty() && out.back() != '/') out += '/';
  return out;
}

// Every number under `obj` of a SENSOR message, dotted ("AM2301.Temperature"),
// arrays of numbers included (one key per channel: mapping makes .../1, /2).
void TasmotaNumbers(const json& obj, const std::string& path, std::vector<std::string>* out) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string p = path.empty() ? it.key() : path + "." + it.key();
    if (it->is_object()) {
      TasmotaNumbers(*it, p, out);
    } else if (it->is_number() || (it->is_array() && !it->empty() &&
                                   std::all_of(it->begin(), it->end(), [](const json& x) {
                                     return x.is_number() || x.is_null();
                                   }))) {
      out->push_back(p);
    }
  }
}

}  // namespace

std::vector<DiscoveredEntity> ParseTasmotaDiscovery(const std::string& group,
                                                    std::string_view config,
                                                    std::string_view sensors,
                                                    const DiscoveryOptions& options) {
  std::vector<DiscoveredEntity> out;
  DiscoveredEntity base;
  base.id = group;
  base.source = "tasmota";
  base.component = "device";
  const json c = json::parse(config.begin(), config.end(), nullptr, /*allow_exceptions=*/false);
  if (c.is_discarded() || !c.is_object()) {
    out.push_back(
        Refused(std::move(base), c.is_discarded() ? "bad_json" : "not_object",
                "Tasmota config " + store::QuoteForMessage(config) + " is not a JSON object"));
    return out;
  }
  for (const char* shown : {"dn", "md", "sw", "t", "mac", "hn"}) {
    if (c.contains(shown) && c[shown].is_string()) base.info[shown] = c[shown];
  }
  Result<std::string> stat = TasmotaTopic(c, 1);
  Result<std::string> tele = TasmotaTopic(c, 2);
  if (!stat.ok() || !tele.ok() || Text(c, "t").empty()) {
    out.push_back(Refused(std::move(base), "bad_topic",
                          !stat.ok()   ? stat.status().message()
                          : !tele.ok() ? tele.status().message()
                                       : std::string("config has no topic (\"t\")")));
    return out;
  }
  DiscoveredEntity::Availability lwt;
  lwt.topic = *tele + "LWT";
  lwt.true_words = {Word(c, "onln", "Online")};
  lwt.false_words = {Word(c, "ofln", "Offline")};
  if (IsOwnTopic(lwt.topic, options) || IsOwnTopic(*stat, options)) {
    out.push_back(Refused(std::move(base), "own_topic",
                          "topics under Komoku's own prefix '" + options.own_prefix + "/'"));
    return out;
  }
  base.availability.push_back(lwt);
  // Relays: rl[i] is 1 (relay) or 2 (light) for a power output; POWER alone
  // when there is one and SetOption26 is off, POWER<n> otherwise.
  const auto rl = c.find("rl");
  std::vector<size_t> relays;
  if (rl != c.end() && rl->is_array()) {
    for (size_t i = 0; i < rl->size(); ++i) {
      if ((*rl)[i].is_number_integer() && ((*rl)[i] == 1 || (*rl)[i] == 2)) relays.push_back(i);
    }
  }
  bool so26 = false;
  if (c.contains("so") && c["so"].is_object() && c["so"].contains("26")) {
    so26 = c["so"]["26"] == 1;
  }
  std::string off = "OFF", on = "ON";
  if (c.contains("state") && c["state"].is_array() && c["state"].size() >= 2 &&
      c["state"][0].is_string() && c["state"][1].is_string()) {
    off = c["state"][0].get<std::string>();
    on = c["state"][1].get<std::string>();
  }
  for (size_t i : relays) {
    const std::string name =
        relays.size() == 1 && !so26 && i == 0 ? "POWER" : "POWER" + std::to_string(i + 1);
    DiscoveredEntity e = base;
    e.id = group + "#" + name;
    e.component = (*rl)[i] == 2 ? "light" : "switch";
    e.state_topic = *stat + name;
    e.type = store::KeyType::kBoolean;
    e.true_words = {on};
    e.false_words = {off};
    FinishEntity(&e, options.key_prefix + e.state_topic);
    out.push_back(std::move(e));
  }
  if (!store::TrimAscii(sensors).empty()) {
    const json s = json::parse(sensors.begin(), sensors.end(), nullptr, /*allow_exceptions=*/false);
    if (s.is_discarded() || !s.is_object() || !s.contains("sn") || !s["sn"].is_object()) {
      DiscoveredEntity e = base;
      e.id = group + "#sensors";
      e.component = "sensor";
      out.push_back(Refused(std::move(e), "not_object",
                            "Tasmota sensors " + store::QuoteForMessage(sensors) +
                                " is not a JSON object with \"sn\""));
      return out;
    }
    std::vector<std::string> paths;
    TasmotaNumbers(s["sn"], "", &paths);
    for (const std::string& path : paths) {
      DiscoveredEntity e = base;
      e.id = group + "#" + path;
      e.component = "sensor";
      e.state_topic = *tele + "SENSOR";
      std::vector<std::string> tokens;
      for (size_t start = 0;;) {
        const size_t dot = path.find('.', start);
        tokens.push_back(path.substr(start, dot == std::string::npos ? dot : dot - start));
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
      e.field = Pointer(tokens);
      // Total only grows (kWh since TotalStartTime); Today and Yesterday
      // fall back each midnight: gauges.
      e.type = path == "ENERGY.Total" ? store::KeyType::kCounter : store::KeyType::kNumeric;
      FinishEntity(&e, options.key_prefix + e.state_topic + "/" + path);
      out.push_back(std::move(e));
    }
  }
  if (out.empty()) {
    out.push_back(Refused(std::move(base), "no_state_topic",
                          "the device announces no relays and no sensors yet"));
  }
  // The key's identity: the device's MAC (in the discovery topic) and the
  // value, so that a new Tasmota topic (tasmota_ABCDEF renamed
  // kitchen_plug) goes on writing the same keys.
  for (DiscoveredEntity& e : out) {
    if (e.mapped()) e.identity = e.id;
  }
  return out;
}

Discovery::Discovery(DiscoveryOptions options) : options_(std::move(options)) {}
Discovery::~Discovery() = default;

std::vector<std::string> Discovery::ConfigFilters() const {
  std::vector<std::string> out;
  if (options_.home_assistant) {
    out.push_back(options_.ha_prefix + "/+/+/config");
    out.push_back(options_.ha_prefix + "/+/+/+/config");
  }
  if (options_.homie) {
    for (const char* attr : {"$datatype", "$unit", "$format", "$name", "$retained"}) {
      out.push_back(options_.homie_prefix + "/+/+/+/" + attr);
    }
    out.push_back(options_.homie_prefix + "/+/$homie");  // the convention's version
    out.push_back(options_.homie_prefix + "/5/+/$description");
  }
  if (options_.tasmota) {
    out.push_back(std::string(kTasmotaPrefix) + "+/config");
    out.push_back(std::string(kTasmotaPrefix) + "+/sensors");
  }
  return out;
}

bool Discovery::IsTasmotaTopic(std::string_view topic) const {
  return options_.tasmota && topic.substr(0, sizeof kTasmotaPrefix - 1) == kTasmotaPrefix;
}

// tasmota/discovery/<MAC>/config or .../sensors: the group's entities made
// again from both payloads, the one that came and the other as known.
std::vector<Discovery::Update> Discovery::HandleTasmota(std::string_view topic,
                                                        std::string_view payload) {
  const size_t slash = topic.rfind('/');
  const std::string group(topic.substr(0, slash));
  const bool is_config = topic.substr(slash + 1) == "config";
  const bool empty = store::TrimAscii(payload).empty();
  TasmotaRaw raw;
  {
    std::lock_guard<std::mutex> lock(mu_);
    unconfirmed_.erase(group);
    auto it = tasmota_.find(group);
    TasmotaRaw known = it == tasmota_.end() ? TasmotaRaw{} : it->second;
    std::string& part = is_config ? known.config : known.sensors;
    if (part == (empty ? std::string() : std::string(payload))) return {};
    part = empty ? std::string() : std::string(payload);
    if (known.config.empty() && known.sensors.empty()) {
      tasmota_.erase(group);
    } else {
      tasmota_[group] = known;
    }
    raw = known;
  }
  std::vector<DiscoveredEntity> entities;
  // The sensors alone name no topic: nothing until the config comes.
  if (!raw.config.empty())
    entities = ParseTasmotaDiscovery(group, raw.config, raw.sensors, options_);
  std::lock_guard<std::mutex> lock(mu_);
  return ReplaceGroupLocked(group, std::move(entities), raw.config + "\n" + raw.sensors);
}

bool Discovery::IsDiscoveryTopic(std::string_view topic) const {
  for (const std::string& f : ConfigFilters()) {
    if (TopicMatchesFilter(f, topic)) return true;
  }
  return false;
}

bool Discovery::IsHaTopic(std::string_view topic) const {
  const std::string_view ha = options_.ha_prefix;
  return options_.home_assistant && topic.size() > ha.size() && topic.substr(0, ha.size()) == ha &&
         topic[ha.size()] == '/';
}

// The ids of the entities one discovery message made: `id` itself and, for a
// config that makes several, "<id>#<part>" (mu_ held).
std::vector<std::string> Discovery::GroupLocked(const std::string& id) const {
  std::vector<std::string> out;
  for (auto it = entities_.lower_bound(id); it != entities_.end(); ++it) {
    if (it->first.compare(0, id.size(), id) != 0) break;
    if (it->first.size() == id.size() || it->first[id.size()] == '#') out.push_back(it->first);
  }
  return out;
}

std::vector<Discovery::Update> Discovery::ReplaceGroupLocked(const std::string& id,
                                                             std::vector<DiscoveredEntity> entities,
                                                             const std::string& raw) {
  std::vector<Update> out;
  std::set<std::string> now;
  for (const DiscoveredEntity& e : entities) now.insert(e.id);
  for (const std::string& old : GroupLocked(id)) {
    if (now.count(old)) continue;
    Update u = ReplaceLocked(old, std::nullopt, "");
    if (u.changed) out.push_back(std::move(u));
  }
  for (DiscoveredEntity& e : entities) {
    const std::string entity_id = e.id;
    out.push_back(ReplaceLocked(entity_id, std::move(e), raw));
  }
  return out;
}

bool Discovery::IsHomie5Topic(std::string_view topic) const {
  return options_.homie && TopicMatchesFilter(options_.homie_prefix + "/5/+/$description", topic);
}

// homie/<device>/$homie: the device's convention version. A Homie 2 or 3
// device's properties without $datatype become string entities (and stop
// being ones when the version goes).
std::vector<Discovery::Update> Discovery::HandleHomieVersion(std::string_view topic,
                                                             std::string_view payload) {
  const std::string device(topic.substr(0, topic.rfind('/')));
  const std::string version(store::TrimAscii(payload));
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> touched;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (version.empty()) {
      homie_versions_.erase(device);
    } else {
      homie_versions_[device] = version;
    }
    for (auto it = homie_.lower_bound(device + "/"); it != homie_.end(); ++it) {
      if (it->first.compare(0, device.size() + 1, device + "/") != 0) break;
      auto& attributes = it->second;
      if (attributes.count("$datatype")) continue;
      auto old = attributes.find("$homie");
      if (old != attributes.end() ? old->second == version : version.empty()) continue;
      if (version.empty()) {
        attributes.erase("$homie");
      } else {
        attributes["$homie"] = version;
      }
      touched.emplace_back(it->first, attributes);
    }
  }
  std::vector<Update> out;
  for (const auto& [property, attributes] : touched) {
    Update u = IsHomie3OrOlder(version)
                   ? Replace(property, ParseHomieProperty(property, attributes, options_),
                             HomieRaw(attributes))
                   : Replace(property, std::nullopt, "");
    if (u.changed) out.push_back(std::move(u));
  }
  return out;
}

std::vector<Discovery::Update> Discovery::Handle(std::string_view topic, std::string_view payload) {
  if (IsTasmotaTopic(topic)) return HandleTasmota(topic, payload);
  if (options_.homie && TopicMatchesFilter(options_.homie_prefix + "/+/$homie", topic)) {
    return HandleHomieVersion(topic, payload);
  }
  const bool homie5 = IsHomie5Topic(topic);
  if (IsHaTopic(topic) || homie5) {
    const std::string id(topic);
    std::string_view trimmed = store::TrimAscii(payload);
    {
      std::lock_guard<std::mutex> lock(mu_);
      unconfirmed_.erase(id);
      const std::vector<std::string> group = GroupLocked(id);
      if (trimmed.empty() ? group.empty()
                          : !group.empty() && entities_.at(group.front()).raw == payload) {
        return {};  // a retained config seen again, or a removal of nothing
      }
    }
    std::vector<DiscoveredEntity> entities;
    if (!trimmed.empty()) {
      entities = homie5 ? ParseHomie5Description(id, payload, options_)
                        : ParseHaConfig(topic, payload, options_);
    }
    std::lock_guard<std::mutex> lock(mu_);
    return ReplaceGroupLocked(id, std::move(entities), std::string(payload));
  }
  // Homie: <prefix>/<device>/<node>/<property>/$<attribute>
  const size_t slash = topic.rfind('/');
  const std::string property(topic.substr(0, slash));
  const std::string attribute(topic.substr(slash + 1));
  std::map<std::string, std::string> attributes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    unconfirmed_.erase(property);
    auto& known = homie_[property];
    auto it = known.find(attribute);
    if (payload.empty() ? it == known.end() : it != known.end() && it->second == payload) {
      if (known.empty()) homie_.erase(property);
      return {};
    }
    if (payload.empty()) {
      known.erase(attribute);
    } else {
      known[attribute] = std::string(payload);
    }
    // The device's version, for a property without $datatype (Homie 3).
    const size_t device_end = property.find('/', options_.homie_prefix.size() + 1);
    auto version = homie_versions_.find(property.substr(0, device_end));
    if (!known.empty() && !known.count("$datatype") && version != homie_versions_.end()) {
      known["$homie"] = version->second;
    }
    attributes = known;
    if (known.empty()) homie_.erase(property);
  }
  const auto homie = attributes.find("$homie");
  const bool homie3 = homie != attributes.end() && IsHomie3OrOlder(homie->second);
  if (!attributes.count("$datatype") && !homie3) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!entities_.count(property)) return {};  // attributes before $datatype
  }
  Update u = attributes.count("$datatype") || homie3
                 ? Replace(property, ParseHomieProperty(property, attributes, options_),
                           HomieRaw(attributes))
                 : Replace(property, std::nullopt, "");
  if (!u.changed) return {};
  return {std::move(u)};
}

namespace {

// True for two device triggers reading the same topic the same way: they
// share one key (zigbee2mqtt announces one trigger per action value).
bool SharedTrigger(const DiscoveredEntity& a, const DiscoveredEntity& b) {
  return a.component == "device_automation" && b.component == "device_automation" &&
         a.state_topic == b.state_topic && a.key == b.key && a.value_template == b.value_template;
}

// The name an entity adds to a key another entity of its topic has: its
// name (or its object id) as Home Assistant slugifies it for an entity id,
// lower case, with '_' between words ("Overheating" -> "overheating").
std::string KeySuffix(const DiscoveredEntity& e) {
  std::string name = e.info.value("name", "");
  if (name.empty()) name = e.info.value("object_id", "");
  std::string out;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      out += static_cast<char>(std::tolower(u));
    } else if (!out.empty() && out.back() != '_') {
      out += '_';
    }
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

}  // namespace

// The id of the entity other than `id` that makes `entity`'s key, or "".
std::string Discovery::KeyOwnerLocked(const std::string& id, const DiscoveredEntity& entity) const {
  for (const auto& [other_id, other] : entities_) {
    if (other_id != id && other.entity.mapped() && other.entity.key == entity.key &&
        !SharedTrigger(other.entity, entity)) {
      return other_id;
    }
  }
  return "";
}

Discovery::Update Discovery::Replace(const std::string& id, std::optional<DiscoveredEntity> entity,
                                     const std::string& raw) {
  std::lock_guard<std::mutex> lock(mu_);
  return ReplaceLocked(id, std::move(entity), raw);
}

Discovery::Update Discovery::ReplaceLocked(const std::string& id,
                                           std::optional<DiscoveredEntity> entity,
                                           const std::string& raw) {
  Update update;
  update.id = id;
  update.changed = true;
  std::set<std::string> touched;
  auto old = entities_.find(id);
  const auto aliased = [](const DiscoveredEntity& e) { return e.mapped() && !e.alias.empty(); };
  if (old != entities_.end()) {
    if (aliased(old->second.entity)) aliased_.fetch_sub(1, std::memory_order_relaxed);
    touched.insert(old->second.entity.state_topic);
    for (const auto& a : old->second.entity.availability) touched.insert(a.topic);
  }
  if (!entity) {
    if (old == entities_.end()) return Update{};
    entities_.erase(old);
    update.removed = true;
  } else {
    // A device known by its identity keeps the key it was first mapped to
    // (a zigbee2mqtt rename changes the state topic, not the unique_id).
    auto first = entity->identity.empty() || !entity->mapped() ? identities_.end()
                                                               : identities_.find(entity->identity);
    // The entity's own name, which its key takes when another entity of
    // its topic reads the same field (below).
    const std::string suffix = "/" + KeySuffix(*entity);
    if (first != identities_.end() && first->second != entity->key) {
      // The name the topic would make now, with the entity's own name
      // when its first key had it: no alias when they agree.
      std::string made = entity->key;
      if (suffix.size() > 1 && store::EndsWith(first->second, suffix) &&
          !store::EndsWith(made, suffix)) {
        made += suffix;
      }
      if (made != first->second) entity->alias = made;
      entity->key = first->second;
    }
    std::string owner = entity->mapped() ? KeyOwnerLocked(id, *entity) : "";
    // Entities that compute different values from one field of one topic
    // (shellies-discovery's overpower, overheating and overvoltage sensors
    // each look for their own error in "errors") are different things: the
    // later one, known by its identity, adds its name to the key. The key
    // is then its identity's, kept across restarts and renames as any.
    if (!owner.empty() && !entity->identity.empty() && first == identities_.end() &&
        entities_.at(owner).entity.value_template != entity->value_template && suffix.size() > 1) {
      entity->key += suffix;
      owner = KeyOwnerLocked(id, *entity);
    }
    if (!owner.empty()) {
      entity->reason = "duplicate_key";
      entity->message = "key '" + entity->key + "' is already made by " + owner;
    }
    if (entity->mapped() && !entity->identity.empty() && first == identities_.end()) {
      identities_[entity->identity] = entity->key;
    }
    if (entity->mapped()) {
      touched.insert(entity->state_topic);
      for (const auto& a : entity->availability) touched.insert(a.topic);
    }
    if (aliased(*entity)) aliased_.fetch_add(1, std::memory_order_relaxed);
    entities_[id] = Known{*entity, raw};
    update.entity = std::move(entity);
  }
  ++generation_;
  for (const std::string& topic : touched) {
    const bool had = engines_.count(topic) > 0;
    Rebuild(topic);
    const bool has = engines_.count(topic) > 0;
    if (has && !had) update.subscribe.push_back(topic);
    if (had && !has) update.unsubscribe.push_back(topic);
  }
  return update;
}

void Discovery::Rebuild(const std::string& topic) {
  std::vector<MappingRule> rules;
  std::set<std::string> keys;
  for (const auto& [id, known] : entities_) {
    const DiscoveredEntity& e = known.entity;
    // Device triggers of one topic share its key: one rule for them.
    if (e.mapped() && e.state_topic == topic && keys.insert(e.key).second) {
      rules.push_back(StateRule(e));
    }
  }
  // One availability rule per topic, however many entities share it; the
  // first entity (by id) gives the words.
  for (const auto& [id, known] : entities_) {
    const DiscoveredEntity& e = known.entity;
    if (!e.mapped()) continue;
    auto a = std::find_if(e.availability.begin(), e.availability.end(),
                          [&](const auto& x) { return x.topic == topic; });
    if (a == e.availability.end()) continue;
    const std::string key = options_.key_prefix + topic;
    if (!keys.count(key)) rules.push_back(AvailabilityRule(*a, key));
    break;
  }
  if (rules.empty()) {
    engines_.erase(topic);
    return;
  }
  Result<std::unique_ptr<MappingEngine>> engine = MappingEngine::Compile(std::move(rules));
  if (engine.ok()) {
    engines_[topic] = std::shared_ptr<const MappingEngine>(std::move(engine.value()));
  } else {
    engines_.erase(topic);  // each rule compiled alone (FinishEntity): not expected
  }
}

Discovery::Mapped Discovery::Map(std::string_view topic, std::string_view payload,
                                 int64_t now_ms) const {
  Mapped out;
  MapInto(topic, payload, now_ms, &out);
  return out;
}

void Discovery::MapInto(std::string_view topic, std::string_view payload, int64_t now_ms,
                        Mapped* out) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = engines_.find(topic);
    out->engine = it == engines_.end() ? nullptr : it->second;
  }
  if (!out->engine) {
    out->result.matched.clear();
    out->result.changes.clear();
    out->result.refusal.reset();
    out->result.refusals.clear();
    return;
  }
  out->engine->MapEachInto(topic, payload, now_ms, &out->result);
}

std::vector<std::string> Discovery::Topics() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [topic, engine] : engines_) out.push_back(topic);
  return out;
}

size_t Discovery::mapped_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(std::count_if(entities_.begin(), entities_.end(),
                                           [](const auto& e) { return e.second.entity.mapped(); }));
}

std::map<std::string, std::string> Discovery::Aliases() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string> out;
  for (const auto& [id, known] : entities_) {
    if (known.entity.mapped() && !known.entity.alias.empty()) {
      out[known.entity.key] = known.entity.alias;
    }
  }
  return out;
}

json Discovery::Describe() const {
  std::lock_guard<std::mutex> lock(mu_);
  json entities = json::array();
  size_t mapped = 0;
  std::map<std::string, std::vector<std::string>> availability;  // topic -> entity ids
  for (const auto& [id, known] : entities_) {
    entities.push_back(EntityJson(known.entity));
    if (!known.entity.mapped()) continue;
    ++mapped;
    for (const auto& a : known.entity.availability) availability[a.topic].push_back(id);
  }
  json avail = json::array();
  for (const auto& [topic, ids] : availability) {
    avail.push_back(
        {{"topic", topic}, {"key", options_.key_prefix + topic}, {"entities", ids.size()}});
  }
  return json{{"entities", entities},
              {"availability", avail},
              {"mapped", mapped},
              {"refused", entities_.size() - mapped},
              {"filters", ConfigFilters()}};
}

// The state file (docs/mapping.md#restarts-and-removals):
//   {"version": 1, "entities": [
//     {"source": "home_assistant", "id": <config topic>, "config": <payload text>},
//     {"source": "homie", "id": <property topic>, "attributes": {"$datatype": ..., ...}}]}
// Mapped entities first, each group by id: learnt again in this order, an
// entity refused as a duplicate key stays refused.
std::string Discovery::StateText() const {
  // One entry per discovery message: a config that made several entities
  // ("<config topic>#<part>") is saved once, with the mapped ones.
  json list = json::array();
  std::set<std::string> saved;
  for (const bool mapped : {true, false}) {
    for (const auto& [id, known] : entities_) {
      if (known.entity.mapped() != mapped) continue;
      const std::string message_id = id.substr(0, id.find('#'));
      if (!saved.insert(message_id).second) continue;
      if (known.entity.source == "homie") {
        auto attributes = homie_.find(id);
        if (attributes == homie_.end()) continue;
        list.push_back({{"source", "homie"}, {"id", id}, {"attributes", attributes->second}});
      } else if (known.entity.source == "homie5") {
        list.push_back({{"source", "homie5"}, {"id", message_id}, {"config", known.raw}});
      } else if (known.entity.source == "tasmota") {
        auto raw = tasmota_.find(message_id);
        if (raw == tasmota_.end()) continue;
        list.push_back({{"source", "tasmota"},
                        {"id", message_id},
                        {"config", raw->second.config},
                        {"sensors", raw->second.sensors}});
      } else {
        list.push_back({{"source", "home_assistant"}, {"id", message_id}, {"config", known.raw}});
      }
    }
  }
  json state = {{"version", 1}, {"entities", std::move(list)}};
  if (!identities_.empty()) state["identities"] = identities_;
  return store::DumpJson(state) + "\n";
}

Status Discovery::Save() {
  if (options_.state_path.empty()) return Status::Ok();
  std::lock_guard<std::mutex> saving(save_mu_);
  uint64_t generation = 0;
  std::string text;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation_ == saved_generation_) return Status::Ok();
    generation = generation_;
    text = StateText();
  }
  KOMOKU_RETURN_IF_ERROR(store::WriteFileAtomically(options_.state_path, text));
  std::lock_guard<std::mutex> lock(mu_);
  saved_generation_ = generation;
  return Status::Ok();
}

bool Discovery::NeedsSave() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !options_.state_path.empty() && generation_ != saved_generation_;
}

Result<std::vector<Discovery::Update>> Discovery::Load() {
  std::vector<Update> updates;
  if (options_.state_path.empty()) return updates;
  Result<std::string> text = store::ReadWholeFile(options_.state_path);
  if (!text.ok()) {
    if (text.status().IsNotFound()) return updates;  // the first start
    return text.status();
  }
  const auto bad = [&](const std::string& why) {
    return Status::Corruption("discovery state file '" + options_.state_path + "' " + why);
  };
  // Checked whole before anything is learnt.
  const json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("version", json()) != 1 || !j.contains("entities") ||
      !j["entities"].is_array()) {
    return bad("is not a Komoku discovery state (an object with version 1 and entities)");
  }
  struct Entry {
    bool homie = false;
    bool homie5 = false;
    bool tasmota = false;
    std::string id;
    std::string config;
    std::string sensors;
    std::map<std::string, std::string> attributes;
  };
  std::map<std::string, std::string> identities;
  if (j.contains("identities")) {
    const json& ids = j["identities"];
    if (!ids.is_object()) return bad("has identities that are not an object");
    for (auto it = ids.begin(); it != ids.end(); ++it) {
      if (!it.value().is_string() || !store::ValidateKeyName(it.value().get<std::string>()).ok()) {
        return bad("has identity " + store::QuoteForMessage(it.key()) + " without a key");
      }
      identities[it.key()] = it.value().get<std::string>();
    }
  }
  std::vector<Entry> entries;
  for (const json& e : j["entities"]) {
    const std::string shown = store::QuoteForMessage(store::DumpJson(e));
    if (!e.is_object() || !e.contains("id") || !e["id"].is_string() || !e.contains("source")) {
      return bad("has an entity without id or source: " + shown);
    }
    Entry entry;
    entry.id = e["id"].get<std::string>();
    if (e["source"] == "home_assistant" && e.contains("config") && e["config"].is_string()) {
      entry.config = e["config"].get<std::string>();
    } else if (e["source"] == "homie5" && e.contains("config") && e["config"].is_string()) {
      entry.homie5 = true;
      entry.config = e["config"].get<std::string>();
    } else if (e["source"] == "tasmota" && e.contains("config") && e["config"].is_string() &&
               e.contains("sensors") && e["sensors"].is_string()) {
      entry.tasmota = true;
      entry.config = e["config"].get<std::string>();
      entry.sensors = e["sensors"].get<std::string>();
    } else if (e["source"] == "homie" && e.contains("attributes") && e["attributes"].is_object()) {
      entry.homie = true;
      for (auto a = e["attributes"].begin(); a != e["attributes"].end(); ++a) {
        if (!a.value().is_string()) return bad("has a Homie attribute that is not text: " + shown);
        entry.attributes[a.key()] = a.value().get<std::string>();
      }
    } else {
      return bad("has an entity that is neither a Home Assistant config nor Homie attributes: " +
                 shown);
    }
    entries.push_back(std::move(entry));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    identities_ = std::move(identities);
  }
  bool dropped = false;  // entities the options no longer read
  for (Entry& entry : entries) {
    std::vector<DiscoveredEntity> entities;
    std::string raw;
    const bool tasmota = entry.tasmota && IsTasmotaTopic(entry.id + "/config");
    const bool ha = !entry.tasmota && !entry.homie && !entry.homie5 && IsHaTopic(entry.id);
    const bool homie5 = entry.homie5 && IsHomie5Topic(entry.id);
    const bool homie = !entry.tasmota && entry.homie && options_.homie &&
                       IsDiscoveryTopic(entry.id + "/$datatype");
    if (!tasmota && !ha && !homie && !homie5) {
      dropped = true;
      continue;
    }
    if (tasmota) {
      entities = ParseTasmotaDiscovery(entry.id, entry.config, entry.sensors, options_);
      raw = entry.config + "\n" + entry.sensors;
    } else if (ha) {
      entities = ParseHaConfig(entry.id, entry.config, options_);
      raw = std::move(entry.config);
    } else if (homie5) {
      entities = ParseHomie5Description(entry.id, entry.config, options_);
      raw = std::move(entry.config);
    } else {
      entities.push_back(ParseHomieProperty(entry.id, entry.attributes, options_));
      raw = HomieRaw(entry.attributes);
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (entry.homie) homie_[entry.id] = std::move(entry.attributes);
    if (entry.tasmota) tasmota_[entry.id] = TasmotaRaw{entry.config, entry.sensors};
    for (Update& u : ReplaceGroupLocked(entry.id, std::move(entities), raw)) {
      updates.push_back(std::move(u));
    }
    unconfirmed_.insert(entry.id);
  }
  std::lock_guard<std::mutex> lock(mu_);
  saved_generation_ = generation_;  // what the file holds...
  if (dropped) ++generation_;       // ...but for the dropped ones: save again without them
  return updates;
}

std::vector<Discovery::Update> Discovery::ForgetUnconfirmed() {
  std::vector<Update> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& id : unconfirmed_) {
    homie_.erase(id);
    tasmota_.erase(id);
    for (Update& u : ReplaceGroupLocked(id, {}, "")) out.push_back(std::move(u));
  }
  unconfirmed_.clear();
  return out;
}

bool Discovery::HasUnconfirmed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !unconfirmed_.empty();
}

}  // namespace komoku::bridge

// Self-describing devices (docs/mapping.md#discovery): Home Assistant MQTT
// discovery configs (homeassistant/<component>/[<node_id>/]<object_id>/config),
// Homie 3/4 property attributes ($datatype, $unit, $format, $name, $retained; $homie
// for Homie 3 properties without $datatype), Homie 5 $description JSON become
// typed mapping rules for the topics they describe, so that a house already
// announced to Home Assistant needs no `mappings:` at all.
//
// Discovery turns each discovery message into an entity (or a refusal with a
// reason, kept for GET /api/v1/discovery), and keeps one compiled
// MappingEngine per state or availability topic. A discovered key is named
// after the topic its values come from: the state topic, plus "/<field>"
// when the value template reads a JSON field ("zigbee2mqtt/kitchen_sensor/
// temperature"); an availability key is its availability topic.
//
// With a state path, what each entity was learnt from (a config, Homie
// attributes) is saved there and learnt again at the next start, so that
// messages the broker queued while Komoku was away map before the retained
// configs come again (docs/mapping.md#restarts-and-removals).
//
// Thread-safe: Handle* and Map may run on the MQTT thread while Describe
// runs on an HTTP worker and Save on a timer; a Map in progress keeps its
// engine alive.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/mapping.h"
#include "core/value.h"

namespace komoku::bridge {

struct DiscoveryOptions {
  bool home_assistant = true;
  std::string ha_prefix = "homeassistant";
  bool homie = true;
  std::string homie_prefix = "homie";
  // Tasmota 12+'s own discovery: tasmota/discovery/<MAC>/config and
  // .../sensors (the prefix is fixed in Tasmota).
  bool tasmota = true;
  // Also map Home Assistant entities announced with enabled_by_default:
  // false; by default they are listed as "disabled" and not recorded.
  bool disabled_entities = false;
  // Put before every discovered key ("ha/" makes "ha/zigbee2mqtt/...").
  std::string key_prefix;
  // Komoku's own MQTT prefix: an entity whose state or availability topic is
  // under it is refused (own_topic), so Komoku never maps what it publishes.
  std::string own_prefix = "komoku";
  // Where the entities are saved (<data_dir>/discovery.json); empty: they
  // live in memory only.
  std::string state_path;
};

// What one discovery message described: a mapped entity, or one refused
// with a reason (disabled, bad_json, not_object, bad_topic, no_state_topic,
// bad_template, unsupported, own_topic, duplicate_key, bad_key, bad_option).
struct DiscoveredEntity {
  std::string id;      // the config topic (HA; "<topic>#<part>" for a part) or the property topic
  std::string source;  // "home_assistant", "homie", "homie5" or "tasmota"
  std::string component;  // sensor, binary_sensor, ...; for Homie "property"
  std::string state_topic;
  std::string value_template;        // as announced; empty when none
  std::string field;                 // the JSON field it reads (a JSON pointer); empty: the payload
  std::vector<NumberOp> number_ops;  // what the template computes (bridge/ha_template.h)
  std::optional<store::InputValue> missing_value;  // the template's |default(c)
  // A template evaluated whole for each value (comparisons, if/else, ...).
  std::shared_ptr<const HaExpression> expression;
  std::string key;
  store::KeyType type = store::KeyType::kString;
  std::vector<std::string> true_words, false_words;
  std::optional<double> stale_after_s;  // from expire_after
  // Each value is an event (a button press, a device trigger, a Homie 5
  // non-retained property): the key is created with same_value_resolution
  // 0, so a repeat is stored too.
  bool event = false;
  // A Home Assistant event entity's event_types: any other value is
  // refused (MappingRule::event_types).
  std::vector<std::string> event_types;
  // The device's stable identity for this key: the config's unique_id (plus
  // "#<part>" of a config that makes several keys); empty when it has none.
  // The first key made for an identity keeps its history (Discovery).
  std::string identity;
  // Set when the entity writes an earlier key of its identity: the key its
  // topic makes now (a zigbee2mqtt device renamed), shown beside the key.
  std::string alias;
  struct Availability {
    std::string topic;
    std::string field;  // a JSON pointer; empty: the payload
    // Its template, when it is not a plain field (HaExpression).
    std::shared_ptr<const HaExpression> expression;
    std::vector<std::string> true_words, false_words;
  };
  std::vector<Availability> availability;
  nlohmann::json info = nlohmann::json::object();  // name, unit, device_class, ...
  // Empty when mapped.
  std::string reason;
  std::string message;

  bool mapped() const { return reason.empty(); }
};

// The entities of one Home Assistant discovery config: one for most
// components; one per value for a climate (current temperature, setpoint,
// mode, action, ...: "<topic>#<part>") and a JSON-schema light (state,
// brightness, colour temperature); one or more per component of a device
// config (<prefix>/device/<id>/config with `cmps`: "<topic>#<component id>",
// none for a component announced with only its platform). Refused entities
// carry their reason.
std::vector<DiscoveredEntity> ParseHaConfig(std::string_view topic, std::string_view payload,
                                            const DiscoveryOptions& options);

// The first of ParseHaConfig's entities (tests and single-entity configs).
// Parses one Home Assistant discovery config. `topic` is the config topic,
// `payload` its JSON (full or abbreviated keys, `~` as topic base). Always
// returns an entity; a refused one has `reason` and `message` set.
DiscoveredEntity ParseHaDiscovery(std::string_view topic, std::string_view payload,
                                  const DiscoveryOptions& options);

// The entity a Homie property announces with its attributes so far
// ($datatype is required, but for a device whose $homie is 2.x or 3.x,
// given as the attribute "$homie": then a property without it is a string,
// the convention's default; $unit, $format, $name are shown; `$retained`
// "false" makes it an event, as Homie 5's "retained": false).
DiscoveredEntity ParseHomieProperty(const std::string& property_topic,
                                    const std::map<std::string, std::string>& attributes,
                                    const DiscoveryOptions& options);

// The entities a Homie 5 device announces in the JSON of
// <prefix>/5/<device>/$description (`topic`): one per property of each
// node, "<topic>#<node>/<property>", reading <prefix>/5/<device>/<node>/
// <property> with its datatype, and <prefix>/5/<device>/$state as its
// availability.
std::vector<DiscoveredEntity> ParseHomie5Description(const std::string& topic,
                                                     std::string_view payload,
                                                     const DiscoveryOptions& options);

// The entities a Tasmota device announces (Tasmota 12+, its native
// discovery, xdrv_12_discovery.ino): `config` is the retained
// tasmota/discovery/<MAC>/config payload (topic, full topic, prefixes,
// relays, LWT words), `sensors` the .../sensors one ({"sn": {...}}, may be
// empty). `group` is "tasmota/discovery/<MAC>"; each entity's id is
// "<group>#<part>": one boolean per relay (stat/<topic>/POWER[n], the
// device's state words), one numeric per number of the SENSOR message
// (tele/<topic>/SENSOR, field dotted: AM2301.Temperature; ENERGY.Total a
// counter), each with tele/<topic>/LWT as its availability.
std::vector<DiscoveredEntity> ParseTasmotaDiscovery(const std::string& group,
                                                    std::string_view config,
                                                    std::string_view sensors,
                                                    const DiscoveryOptions& options);

class Discovery {
 public:
  explicit Discovery(DiscoveryOptions options);
  ~Discovery();
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // The filters of the discovery messages themselves.
  std::vector<std::string> ConfigFilters() const;
  // True for a topic one of ConfigFilters() matches.
  bool IsDiscoveryTopic(std::string_view topic) const;

  // What a discovery message did. `changed` is false when it repeated what
  // was known (a retained config seen again): nothing else happens then.
  struct Update {
    std::string id;  // the entity's (DiscoveredEntity::id)
    bool changed = false;
    std::optional<DiscoveredEntity> entity;  // the new state; none when removed
    bool removed = false;
    std::vector<std::string> subscribe;    // topics that now have entities
    std::vector<std::string> unsubscribe;  // topics that no longer have any
  };
  // One update per entity the message made, changed or removed (a device
  // config makes one entity per component; a climate, or a JSON-schema
  // light, one per value); empty when the message repeated what was known.
  std::vector<Update> Handle(std::string_view topic, std::string_view payload);

  // A state or availability message: the changes of every entity on the
  // topic (MapEach). `engine` names the rules of the changes and refusals;
  // null when no entity reads the topic.
  struct Mapped {
    std::shared_ptr<const MappingEngine> engine;
    MappingResult result;
  };
  Mapped Map(std::string_view topic, std::string_view payload, int64_t now_ms) const;
  // As Map, into `*out`, reusing its result's buffers (MapEachInto): one
  // Mapped per thread, message after message.
  void MapInto(std::string_view topic, std::string_view payload, int64_t now_ms, Mapped* out) const;

  // Every topic that has entities now, for subscribing after a (re)connect.
  std::vector<std::string> Topics() const;

  // Learns the entities saved in the state file, in the file's order, as
  // if their discovery messages had come again; the updates, for the log.
  // Nothing (no updates) without a state path or file. Corruption, or
  // IOError, when the file cannot be used: nothing is learnt then, and the
  // caller warns and goes on (the retained configs teach the entities
  // again). Call before the first Handle.
  Result<std::vector<Update>> Load();
  // Writes the entities (mapped ones first) to the state file, by temporary
  // file and rename, when they changed since the last Load or Save; Ok at
  // once when they did not. On failure they stay unsaved, for the next try.
  Status Save();
  bool NeedsSave() const;
  // The entities Load learnt whose discovery message has not come again
  // since: the broker no longer has their retained config (removed while
  // Komoku was away, without a queued removal). Removes them and returns
  // the updates (removals).
  std::vector<Update> ForgetUnconfirmed();
  bool HasUnconfirmed() const;

  // Key -> alias: the keys that mapped entities write under an earlier
  // name of their device (the identity's first key), each with the name its
  // topic makes now. For GET /api/v1/keys.
  std::map<std::string, std::string> Aliases() const;
  // Whether any key has an alias now; without a lock, for the ingest
  // thread to skip looking aliases up when there are none.
  bool HasAliases() const { return aliased_.load(std::memory_order_relaxed) > 0; }

  // The entities (mapped and refused) and availability keys, for
  // GET /api/v1/discovery.
  nlohmann::json Describe() const;
  size_t mapped_count() const;

 private:
  Update Replace(const std::string& id, std::optional<DiscoveredEntity> entity,
                 const std::string& raw);
  Update ReplaceLocked(const std::string& id, std::optional<DiscoveredEntity> entity,
                       const std::string& raw);  // mu_ held
  // The id of the mapped entity other than `id` that makes `entity`'s key,
  // or "" (mu_ held).
  std::string KeyOwnerLocked(const std::string& id, const DiscoveredEntity& entity) const;
  // The entities of one discovery message: `id` and "<id>#<part>" (mu_ held).
  std::vector<std::string> GroupLocked(const std::string& id) const;
  // Replaces the entities of message `id` by `entities` (removing those
  // it no longer makes); mu_ held.
  std::vector<Update> ReplaceGroupLocked(const std::string& id,
                                         std::vector<DiscoveredEntity> entities,
                                         const std::string& raw);
  void Rebuild(const std::string& topic);  // mu_ held
  bool IsHaTopic(std::string_view topic) const;
  std::string StateText() const;  // mu_ held

  const DiscoveryOptions options_;

  mutable std::mutex mu_;
  struct Known {
    DiscoveredEntity entity;
    std::string raw;  // the payload it came from, to see repeats
  };
  std::map<std::string, Known> entities_;  // by id; guarded by mu_
  // Homie property topic -> attribute ($datatype, ...) -> value.
  std::map<std::string, std::map<std::string, std::string>> homie_;  // guarded by mu_
  // Tasmota group (tasmota/discovery/<MAC>) -> its config and sensors
  // payloads as they came; guarded by mu_.
  struct TasmotaRaw {
    std::string config, sensors;
  };
  std::map<std::string, TasmotaRaw> tasmota_;
  bool IsTasmotaTopic(std::string_view topic) const;
  bool IsHomie5Topic(std::string_view topic) const;
  std::vector<Update> HandleHomieVersion(std::string_view topic, std::string_view payload);
  // Homie device topic (homie/<device>) -> its $homie; guarded by mu_.
  std::map<std::string, std::string> homie_versions_;
  std::vector<Update> HandleTasmota(std::string_view topic, std::string_view payload);
  // By topic; guarded by mu_. std::less<> finds a string_view without a copy.
  std::map<std::string, std::shared_ptr<const MappingEngine>, std::less<>> engines_;
  std::set<std::string> unconfirmed_;  // ids from Load not seen since; guarded by mu_
  // Identity (DiscoveredEntity::identity) -> the first key mapped for it,
  // kept while the entity is gone (zigbee2mqtt removes a renamed device's
  // configs before announcing the new name) and in the state file; guarded
  // by mu_.
  std::map<std::string, std::string> identities_;
  // Mapped entities with an alias; written under mu_, read without it.
  std::atomic<size_t> aliased_{0};
  // Bumped by every change of entities_; the one the state file holds.
  uint64_t generation_ = 0;        // guarded by mu_
  uint64_t saved_generation_ = 0;  // guarded by mu_
  std::mutex save_mu_;             // one Save at a time
};

}  // namespace komoku::bridge

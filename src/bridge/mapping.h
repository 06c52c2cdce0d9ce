// Topic mapping: rules that turn the topics and payloads of real devices
// (zigbee2mqtt, Tasmota, Shelly, ESPHome, Homie, own scripts) into changes of
// typed keys. Rules are plain structs (the config loader fills them from
// YAML; tests and benchmarks build them directly); MappingEngine compiles
// them once (filters, key templates, field paths) and maps a message to the
// changes it makes, or refuses it with a reason. See docs/mapping.md.
//
// MappingEngine is immutable after Compile: Map() may be called from any
// number of threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge/ha_template.h"
#include "common/status.h"
#include "core/value.h"

namespace komoku::bridge {

enum class PayloadFormat { kAuto, kJson, kText };

// One mapping rule, as written in the config's `mappings:` list.
struct MappingRule {
  // Shown in logs and in the rule="..." label of the counters; the rule's
  // index in the list when empty.
  std::string name;
  // MQTT filters (with + and #); a topic matching any of them matches.
  std::vector<std::string> topics;
  // Filters a matching topic must not match. Besides + and #, a level may end
  // in `*` to match every level starting with the text before it (`$*`).
  std::vector<std::string> exclude;
  // Key template: literal text with {1}, {2}, ... (what the filter's
  // wildcards matched, in order: one level for +, the rest of the topic for
  // #), {topic} (the whole topic) and {field} (the field's suffix or path).
  // Empty: "{topic}", or "{topic}/{field}" when the rule names fields.
  std::string key;
  PayloadFormat payload = PayloadFormat::kAuto;
  // JSON fields: "*" expands every scalar (nested objects as dotted paths,
  // "ENERGY.Total"); otherwise path -> key suffix ({field}); an empty suffix
  // stands for the path itself. Paths are dotted ("ENERGY.Total") or JSON
  // pointers ("/ENERGY/Total"). None: the payload is one value (a JSON
  // object then expands as "*" if the key template has {field}).
  bool all_fields = false;
  std::vector<std::pair<std::string, std::string>> fields;
  // Fields skipped (with everything below them), dotted or pointer.
  std::vector<std::string> ignore;
  // Fields whose boolean value is stored negated (dotted or pointer), e.g.
  // zigbee2mqtt's `contact` (true while the magnet touches: door closed), so
  // that the key is true while the door is open, as discovery reads it.
  std::vector<std::string> invert;
  // The keys' type; guessed from the values when unset.
  std::optional<store::KeyType> type;
  // Boolean vocabulary: these words (exact, then ignoring case) are true or
  // false.
  std::vector<std::string> true_words;
  std::vector<std::string> false_words;
  // Home Assistant's payload_on/payload_off: every value, a JSON boolean or
  // number too, is read as text and must be one of the words exactly (a JSON
  // boolean ignoring case); anything else is refused (bad_boolean). Needs
  // words and a boolean or uptime type.
  bool strict_words = false;
  // A number becomes number * scale + offset.
  std::optional<double> scale;
  std::optional<double> offset;
  // Then these steps, in order (a discovered Home Assistant template's
  // arithmetic and rounding, bridge/ha_template.h); a value that is no
  // number is refused (wrong_type).
  std::vector<NumberOp> number_ops;
  // A named field that is missing or null takes this value instead of
  // being skipped (a discovered template's `|default(c)`).
  std::optional<store::InputValue> missing_value;
  // A discovered template that is not arithmetic on one number: each value
  // (the payload's text, or the one field; undefined when the field is
  // missing) goes through it, and its result is read as the value
  // (bridge/ha_template.h). Then number_ops and missing_value are unset.
  std::shared_ptr<const HaExpression> expression;
  // A Home Assistant event entity's event_types: a value that is not one
  // of them exactly is refused (unknown_event_type), as Home Assistant
  // ignores such an event with a warning. Empty: any value.
  std::vector<std::string> event_types;
  // Key options (Komoku names: same_value_resolution, max_time, values)
  // for the keys this rule creates; an object, empty for none.
  nlohmann::json options = nlohmann::json::object();
  // Path of a payload field holding the change's time: epoch seconds or
  // milliseconds (a number; over 1e11 means ms), or text (ISO 8601, epoch
  // seconds). The arrival time when unset or the field is absent.
  std::string time_field;
  // An availability topic: online/offline (LWT Online/Offline, Homie
  // ready/lost, zigbee2mqtt {"state":"online"}) into a boolean (default) or
  // uptime key.
  bool availability = false;
  // Go on to the next rules after this one matched.
  bool continue_matching = false;
  // Republish this rule's refusals to <prefix>/error.
  bool publish_errors = false;
  // "file:line" of the rule, for messages; may be empty.
  std::string where;
};

// One change a message makes.
struct MappedChange {
  std::string key;
  store::InputValue value;
  std::optional<int64_t> time_ms;  // from the payload; arrival time when unset
  size_t rule = 0;                 // index of the rule that made it
  // The payload's time was before 2000-01-01: a device whose clock is not
  // set yet (Tasmota before NTP says "1970-01-01T00:00:23"). time_ms is
  // unset then, so the arrival time is used; counted by the bridge.
  bool clock_unset = false;
};

// Times before this (2000-01-01T00:00:00Z) come from a device clock that
// was never set.
inline constexpr int64_t kEarliestDeviceTimeMs = 946684800000;

// Why a message was refused: the rule that refused it, a machine-readable
// reason (bad_json, not_object, not_scalar, wrong_type, bad_boolean,
// bad_time, bad_key, unknown_event_type, empty, too_large) and a message
// naming the field.
struct MappingRefusal {
  size_t rule = 0;
  std::string reason;
  std::string message;
};

// What MapInto keeps from message to message besides the keys: the parsed
// payload's buffers. Its contents are the engine's business.
struct MappingScratch;
struct MappingScratchDeleter {
  void operator()(MappingScratch* scratch) const;
};

struct MappingResult {
  std::vector<size_t> matched;        // the rules that matched, in order
  std::vector<MappedChange> changes;  // all of them, or none when refused
  std::optional<MappingRefusal> refusal;
  // Values that said "unknown" (ESPHome's `nan` for a sensor without a
  // reading): skipped, not refused; the bridge counts them.
  size_t unknown_skipped = 0;
  // MapEach only: the refusals of the rules whose changes were dropped (the
  // other rules' changes stand); `refusal` stays empty.
  std::vector<MappingRefusal> refusals;
  // Key buffers MapInto keeps from the previous message, so that a result
  // reused message after message builds its keys without allocating.
  std::vector<std::string> spare_keys;
  std::unique_ptr<MappingScratch, MappingScratchDeleter> scratch;
};

class MappingEngine {
 public:
  // Checks and compiles the rules: filters, templates ({N} beyond the levels
  // a filter always has, unknown {names}), paths, type against vocabulary
  // and options. The message names the rule: "mappings[2] (tasmota).key: ...".
  static Result<std::unique_ptr<MappingEngine>> Compile(std::vector<MappingRule> rules);
  ~MappingEngine();
  MappingEngine(const MappingEngine&) = delete;
  MappingEngine& operator=(const MappingEngine&) = delete;

  // The changes a message makes. The payload is parsed once, whatever the
  // number of rules that match. `now_ms` resolves relative payload times.
  MappingResult Map(std::string_view topic, std::string_view payload, int64_t now_ms) const;

  // As Map, into `*out`, reusing its vectors, the key strings of its
  // previous changes and the parsed payload's buffers: with one result per
  // thread, mapping a message allocates only what nlohmann's lexer
  // allocates for itself once the buffers have grown.
  void MapInto(std::string_view topic, std::string_view payload, int64_t now_ms,
               MappingResult* out) const;

  // Every matching rule applies, whatever its `continue`, and on its own: a
  // rule that refuses drops only its own changes (listed in `refusals`).
  // For discovered entities, which share a state topic without knowing of
  // each other. The payload is still parsed once.
  MappingResult MapEach(std::string_view topic, std::string_view payload, int64_t now_ms) const;
  // As MapEach, into `*out`, reusing its buffers as MapInto does.
  void MapEachInto(std::string_view topic, std::string_view payload, int64_t now_ms,
                   MappingResult* out) const;

  // Every rule's topic filters, without duplicates, for subscribing.
  std::vector<std::string> Filters() const;

  size_t size() const;
  const MappingRule& rule(size_t i) const;
  // The rule's name, else its index ("3").
  std::string RuleLabel(size_t i) const;

  // A larger payload is refused unread (reason too_large).
  void set_max_payload_bytes(size_t n) { max_payload_bytes_ = n; }

 private:
  friend class RuleApplier;
  struct Compiled;
  MappingEngine();
  void MapImpl(std::string_view topic, std::string_view payload, int64_t now_ms, bool each,
               MappingResult* out) const;
  std::vector<Compiled> rules_;
  size_t max_payload_bytes_ = 64 * 1024;
};

// True when `topic` matches the MQTT filter `filter` (+, #).
bool TopicMatchesFilter(std::string_view filter, std::string_view topic);

}  // namespace komoku::bridge

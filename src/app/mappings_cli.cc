#include "app/mappings_cli.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "app/config.h"
#include "bridge/discovery.h"
#include "bridge/mapping.h"
#include "core/value.h"
#include "wire/input.h"
#include "wire/time_param.h"

namespace komoku::app {
namespace {

struct TestArgs {
  std::string config_path;
  std::string topic;
  std::string payload;
  // --discovery TOPIC PAYLOAD, repeated: discovery messages read first.
  std::vector<std::string> discovery;
  // --log FILE: `topic payload` lines (mosquitto_sub -v) instead of one
  // TOPIC PAYLOAD; "-" reads standard input.
  std::string log_path;
};

bridge::DiscoveryOptions DiscoveryOptionsOf(const Config& c) {
  bridge::DiscoveryOptions d;
  d.home_assistant = c.discovery_home_assistant;
  d.ha_prefix = c.discovery_prefix;
  d.homie = c.discovery_homie;
  d.homie_prefix = c.discovery_homie_prefix;
  d.tasmota = c.discovery_tasmota;
  d.disabled_entities = c.discovery_disabled_entities;
  d.key_prefix = c.discovery_key_prefix;
  d.own_prefix = c.mqtt_prefix;
  return d;
}

void PrintEntity(const bridge::DiscoveredEntity& e) {
  if (!e.mapped()) {
    std::cout << "not mapped (" << e.reason << "): " << e.message << "\n"
              << "counted as komoku_discovery_refused_total{reason=\"" << e.reason << "\"}\n";
    return;
  }
  std::cout << e.component << " " << e.id << "\n"
            << "  state topic " << e.state_topic
            << (e.field.empty() ? std::string(" (the payload)") : " field " + e.field) << "\n"
            << "  key " << e.key << " (" << store::KeyTypeName(e.type) << ")";
  if (!e.true_words.empty()) {
    std::cout << ", true when " << nlohmann::json(e.true_words[0]).dump() << ", false when "
              << nlohmann::json(e.false_words[0]).dump();
  }
  if (e.stale_after_s) std::cout << ", stale_after " << *e.stale_after_s << " s";
  std::cout << "\n";
  for (const auto& a : e.availability) {
    std::cout << "  availability " << a.topic << (a.field.empty() ? "" : " field " + a.field)
              << " -> key " << a.topic << " (boolean)\n";
  }
}

std::string IsoUtc(int64_t ms) {
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>((ms % 1000 + 1000) % 1000));
  return store::FormatUtc(ms, "%Y-%m-%dT%H:%M:%S") + frac;
}

// A message that no configured rule matches, through discovered entities.
int PrintDiscovered(const bridge::Discovery::Mapped& d, const char* off_note) {
  std::cout << "no configured rule matches; discovered entities read it\n" << off_note;
  for (const bridge::MappingRefusal& r : d.result.refusals) {
    std::cout << "refused by " << d.engine->RuleLabel(r.rule) << " (" << r.reason
              << "): " << r.message << "\n";
  }
  std::cout << d.result.changes.size() << (d.result.changes.size() == 1 ? " change" : " changes")
            << ":\n";
  for (const bridge::MappedChange& c : d.result.changes) {
    const std::string* text = std::get_if<std::string>(&c.value);
    std::cout << "  " << c.key << " = "
              << (text ? nlohmann::json(*text).dump() : store::ValueToText(c.value)) << " ("
              << store::KeyTypeName(*d.engine->rule(c.rule).type) << ") from "
              << d.engine->RuleLabel(c.rule) << "\n";
  }
  return d.result.changes.empty() ? 1 : 0;
}

// The config of `args` and its rules compiled as the service compiles
// them; nullptr after printing why to stderr.
std::unique_ptr<bridge::MappingEngine> LoadEngine(const TestArgs& args, Config* config) {
  Result<Config> loaded = LoadConfigOrDefaults(args.config_path);
  if (!loaded.ok()) {
    std::cerr << "komoku: " << loaded.status().message() << "\n";
    return nullptr;
  }
  *config = std::move(loaded.value());
  Result<std::unique_ptr<bridge::MappingEngine>> engine =
      bridge::MappingEngine::Compile(config->mappings);
  if (!engine.ok()) {
    std::cerr << "komoku: " << engine.status().message() << "\n";
    return nullptr;
  }
  (*engine)->set_max_payload_bytes(static_cast<size_t>(config->mqtt_max_payload_bytes));
  return std::move(engine.value());
}

int RunTest(const TestArgs& args) {
  Config config;
  const std::unique_ptr<bridge::MappingEngine> engine = LoadEngine(args, &config);
  if (!engine) return 2;
  const bridge::MappingEngine& e = *engine;
  const std::string& prefix = config.mqtt_prefix;
  if (args.topic.compare(0, prefix.size() + 1, prefix + "/") == 0) {
    std::cout << "'" << args.topic << "' is under Komoku's own prefix '" << prefix
              << "/': mapping rules never see it"
              << (args.topic.compare(0, prefix.size() + 5, prefix + "/set/") == 0
                      ? " (komoku/set/<key> is a plain put of that key)"
                      : "")
              << "\n";
    return 1;
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  // Discovery, as the service would run it with this config (or, to try a
  // config, as if it were on).
  bridge::Discovery discovery(DiscoveryOptionsOf(config));
  const char* off_note = config.discovery_enabled
                             ? ""
                             : "(discovery is off in this config: discovery.enabled: true)\n";
  for (size_t i = 0; i + 1 < args.discovery.size(); i += 2) {
    if (!discovery.IsDiscoveryTopic(args.discovery[i])) {
      std::cerr << "komoku: --discovery '" << args.discovery[i]
                << "' is not a discovery topic of this config\n";
      return 2;
    }
    for (const bridge::Discovery::Update& u :
         discovery.Handle(args.discovery[i], args.discovery[i + 1])) {
      if (u.entity && !u.entity->mapped()) {
        std::cout << "discovery " << u.id << " ";
        PrintEntity(*u.entity);
      }
    }
  }
  if (discovery.IsDiscoveryTopic(args.topic)) {
    std::cout << "'" << args.topic << "' is a discovery message\n" << off_note;
    const std::vector<bridge::Discovery::Update> updates =
        discovery.Handle(args.topic, args.payload);
    if (updates.empty()) {
      std::cout << "it describes no entity yet (a Homie property needs $datatype)\n";
      return 1;
    }
    bool all_mapped = true;
    for (const bridge::Discovery::Update& u : updates) {
      if (!u.entity) {
        std::cout << "it removes the entity '" << u.id << "'\n";
        continue;
      }
      if (updates.size() > 1) std::cout << u.id << ": ";
      PrintEntity(*u.entity);
      all_mapped = all_mapped && u.entity->mapped();
    }
    return all_mapped ? 0 : 1;
  }
  bridge::MappingResult r = e.Map(args.topic, args.payload, now_ms);
  if (r.matched.empty()) {
    bridge::Discovery::Mapped d = discovery.Map(args.topic, args.payload, now_ms);
    if (d.engine) return PrintDiscovered(d, off_note);
    std::cout << "no rule matches '" << args.topic << "' (" << e.size()
              << " rules); it would not be stored";
    if (config.discovery_enabled) {
      std::cout << " unless a discovered entity reads it (see GET /api/v1/discovery; try "
                   "--discovery CONFIG_TOPIC CONFIG_PAYLOAD)";
    }
    std::cout << "\n";
    return 1;
  }
  for (size_t i : r.matched) {
    const bridge::MappingRule& rule = e.rule(i);
    std::cout << "matched rule " << e.RuleLabel(i) << " (mappings[" << i << "]"
              << (rule.where.empty() ? "" : ", " + rule.where) << ")\n";
  }
  if (r.refusal) {
    std::cout << "refused by rule " << e.RuleLabel(r.refusal->rule) << " (" << r.refusal->reason
              << "): " << r.refusal->message << "\n"
              << "nothing would be stored; counted as komoku_mapping_refused_total{rule=\""
              << e.RuleLabel(r.refusal->rule) << "\",reason=\"" << r.refusal->reason << "\"}\n";
    return 1;
  }
  if (r.unknown_skipped) {
    std::cout << r.unknown_skipped << (r.unknown_skipped == 1 ? " value says" : " values say")
              << " unknown (nan): skipped, counted as komoku_mapping_unknown_skipped_total\n";
  }
  if (r.changes.empty()) {
    if (!r.unknown_skipped) std::cout << "no changes (no field to store)\n";
    return 0;
  }
  std::cout << r.changes.size() << (r.changes.size() == 1 ? " change" : " changes") << ":\n";
  for (const bridge::MappedChange& c : r.changes) {
    const bridge::MappingRule& rule = e.rule(c.rule);
    store::KeyType type = rule.type ? *rule.type : store::GuessType(c.value);
    const std::string* text = std::get_if<std::string>(&c.value);
    std::cout << "  " << c.key << " = "
              << (text ? nlohmann::json(*text).dump() : store::ValueToText(c.value)) << " ("
              << store::KeyTypeName(type) << (rule.type ? "" : ", guessed") << ")";
    std::cout << " at "
              << (c.time_ms ? IsoUtc(*c.time_ms) + " (from the payload)" : "arrival time");
    if (!rule.options.empty()) std::cout << "; a new key gets " << rule.options.dump();
    std::cout << "\n";
  }
  std::cout << "(a retained message equal to a key's current value, and a repeat within the "
               "key's same_value_resolution, would not be stored again)\n";
  return 0;
}

// A value as the output shows it: text quoted as JSON, others as Komoku
// writes them.
std::string Shown(const store::InputValue& v) {
  const std::string* text = std::get_if<std::string>(&v);
  return text ? nlohmann::json(*text).dump() : store::ValueToText(v);
}

// What a captured log would do, message by message, in order: discovery
// messages teach entities (as the service learns them), every other
// message is mapped by the configured rules, else by the discovered
// entities. One line per change, refusal or message stored nowhere
// ("<line>: <topic>: ..."), then the totals. 0 when the log was read
// (whatever its messages did), 2 when it or the config could not be.
int RunLog(const TestArgs& args) {
  Config config;
  const std::unique_ptr<bridge::MappingEngine> engine = LoadEngine(args, &config);
  if (!engine) return 2;
  const bridge::MappingEngine& e = *engine;
  std::ifstream file;
  if (args.log_path != "-") {
    file.open(args.log_path);
    if (!file) {
      std::cerr << "komoku: cannot read the log '" << args.log_path << "'\n";
      return 2;
    }
  }
  std::istream& in = args.log_path == "-" ? std::cin : file;
  if (!config.discovery_enabled) {
    std::cout << "(discovery is off in this config; its messages are read as if it were on)\n";
  }
  bridge::Discovery discovery(DiscoveryOptionsOf(config));
  const std::string own = config.mqtt_prefix + "/";
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  size_t messages = 0, changes = 0, refused = 0, unmatched = 0, entities = 0, not_mapped = 0;
  size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (store::TrimAscii(line).empty()) continue;
    // A comment: no topic name starts with '#' (a wildcard, never in a
    // published topic), so a capture may say where it came from.
    if (line[0] == '#') continue;
    // mosquitto_sub -v: the topic, one space, the payload ("(null)" for an
    // empty one: a retained message cleared).
    const size_t space = line.find(' ');
    const std::string topic = line.substr(0, space);
    std::string payload = space == std::string::npos ? "" : line.substr(space + 1);
    if (payload == "(null)") payload.clear();
    const std::string at = std::to_string(number) + ": " + topic + ": ";
    ++messages;
    if (topic.compare(0, own.size(), own) == 0) {
      if (topic.compare(0, own.size() + 4, own + "set/") == 0) {
        std::cout << at << "a plain put of key '" << topic.substr(own.size() + 4)
                  << "' = " << nlohmann::json(payload).dump() << " (" << own
                  << "set/<key>, no rule)\n";
      } else {
        std::cout << at << "under Komoku's own prefix '" << own << "': not mapped\n";
      }
      ++unmatched;
      continue;
    }
    if (discovery.IsDiscoveryTopic(topic)) {
      const std::vector<bridge::Discovery::Update> updates = discovery.Handle(topic, payload);
      if (updates.empty()) std::cout << at << "discovery: nothing new\n";
      for (const bridge::Discovery::Update& u : updates) {
        if (!u.entity) {
          std::cout << at << "discovery: removes " << u.id << "\n";
        } else if (u.entity->mapped()) {
          ++entities;
          std::cout << at << "discovery: " << u.entity->component << " " << u.id << " -> key "
                    << u.entity->key << " (" << store::KeyTypeName(u.entity->type) << ") from "
                    << u.entity->state_topic << "\n";
        } else {
          ++not_mapped;
          std::cout << at << "discovery: " << u.id << " not mapped (" << u.entity->reason
                    << "): " << u.entity->message << "\n";
        }
      }
      continue;
    }
    bridge::MappingResult r = e.Map(topic, payload, now_ms);
    if (r.matched.empty()) {
      bridge::Discovery::Mapped d = discovery.Map(topic, payload, now_ms);
      if (!d.engine) {
        std::cout << at << "no rule or discovered entity reads it: not stored\n";
        ++unmatched;
        continue;
      }
      for (const bridge::MappingRefusal& x : d.result.refusals) {
        std::cout << at << "refused (" << x.reason << ") by " << d.engine->RuleLabel(x.rule) << ": "
                  << x.message << "\n";
        ++refused;
      }
      for (const bridge::MappedChange& c : d.result.changes) {
        std::cout << at << c.key << " = " << Shown(c.value) << " ("
                  << store::KeyTypeName(*d.engine->rule(c.rule).type) << ")\n";
        ++changes;
      }
      if (d.result.unknown_skipped) std::cout << at << "unknown (nan): skipped\n";
      if (d.result.changes.empty() && d.result.refusals.empty() && !d.result.unknown_skipped) {
        std::cout << at << "discovered entities read it; no field to store\n";
      }
      continue;
    }
    if (r.refusal) {
      std::cout << at << "refused (" << r.refusal->reason << ") by rule "
                << e.RuleLabel(r.refusal->rule) << ": " << r.refusal->message << "\n";
      ++refused;
      continue;
    }
    for (const bridge::MappedChange& c : r.changes) {
      const bridge::MappingRule& rule = e.rule(c.rule);
      const store::KeyType type = rule.type ? *rule.type : store::GuessType(c.value);
      std::cout << at << c.key << " = " << Shown(c.value) << " (" << store::KeyTypeName(type) << ")"
                << (c.time_ms ? " at " + IsoUtc(*c.time_ms) : std::string()) << "\n";
      ++changes;
    }
    if (r.unknown_skipped) std::cout << at << "unknown (nan): skipped\n";
    if (r.changes.empty() && !r.unknown_skipped) {
      std::cout << at << "rule " << e.RuleLabel(r.matched.front())
                << " matches; no field to store\n";
    }
  }
  std::cout << messages << " messages: " << changes << " changes, " << refused << " refused, "
            << unmatched << " not stored by any rule; discovery: " << entities
            << " entities mapped, " << not_mapped << " not\n";
  return 0;
}

}  // namespace

void AddMappingsCommand(CLI::App& parent, int* exit_code) {
  auto* mappings = parent.add_subcommand("mappings", "Topic mapping rules (docs/mapping.md)");
  mappings->require_subcommand(1);
  auto args = std::make_shared<TestArgs>();
  auto* test = mappings->add_subcommand(
      "test", "Show which rule a message matches and the changes it would make (stores nothing)");
  test->add_option("TOPIC", args->topic, "MQTT topic");
  test->add_option("PAYLOAD", args->payload, "Payload, e.g. '{\"temperature\":21.4}'");
  test->add_option("--log", args->log_path,
                   "A captured log instead of TOPIC PAYLOAD: one 'topic payload' per line, as "
                   "mosquitto_sub -v prints them ('-': standard input)");
  test->add_option("-c,--config", args->config_path, "YAML configuration with mappings:");
  test->add_option("--discovery", args->discovery,
                   "A discovery message (Home Assistant config or Homie attribute) read first: "
                   "TOPIC PAYLOAD; repeatable")
      ->type_size(2)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  test->callback([args, exit_code] {
    if (!args->log_path.empty()) {
      if (!args->topic.empty()) {
        std::cerr << "komoku: mappings test takes TOPIC PAYLOAD or --log FILE, not both\n";
        *exit_code = 2;
        return;
      }
      *exit_code = RunLog(*args);
      return;
    }
    if (args->topic.empty()) {
      std::cerr << "komoku: mappings test needs TOPIC PAYLOAD (or --log FILE)\n";
      *exit_code = 2;
      return;
    }
    *exit_code = RunTest(*args);
  });
}

}  // namespace komoku::app

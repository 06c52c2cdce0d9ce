// libFuzzer target: bridge::MappingEngine, which maps the message of every
// device that does not publish to komoku/set/ (docs/mapping.md), through the
// example rules of config/komoku.yaml.
//
// Input: the first byte picks one of the examples' topics; past the list,
// the topic is the input up to its first newline. The rest is the payload.
// Any crash or sanitizer report is a bug, and so is:
// - a refusal without a known reason and a message, or with changes;
// - a change whose key is not a valid key name, or a rule index out of range;
// - MapInto on a result reused from the inputs before giving anything else
//   than Map on a fresh result (the buffers it keeps from message to message
//   must not leak into the next);
// - the same for MapEach and MapEachInto (every matching rule on its own);
// - a refusal message or key that the transports cannot send (json::dump()
//   with strict UTF-8).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "app/config.h"
#include "bridge/mapping.h"
#include "core/value.h"
#include "fuzz_util.h"

namespace {

using komoku::bridge::MappedChange;
using komoku::bridge::MappingEngine;
using komoku::bridge::MappingResult;
using komoku::fuzz::Dump;
using komoku::fuzz::Require;

constexpr int64_t kNow = 1795306000000;

// Topics of the devices in the example rules, and a few no rule takes.
constexpr const char* kTopics[] = {
    "zigbee2mqtt/kitchen_sensor",
    "zigbee2mqtt/front_door",
    "zigbee2mqtt/front_door/availability",
    "zigbee2mqtt/bridge/state",
    "tele/plug1/SENSOR",
    "tele/plug1/LWT",
    "stat/plug1/POWER",
    "shellies/shelly1-ABC/relay/0",
    "shellies/shellyht-XYZ/sensor/temperature",
    "livingroom/sensor/temperature/state",
    "livingroom/binary_sensor/motion/state",
    "livingroom/status",
    "homie/device/node/property",
    "homie/device/node/$name",
    "home/boiler/state",
    "nothing/matches/this",
};
constexpr size_t kTopicCount = sizeof(kTopics) / sizeof(kTopics[0]);

const std::set<std::string>& Reasons() {
  static const std::set<std::string> reasons = {"bad_json",   "not_object",  "not_scalar",
                                                "wrong_type", "bad_boolean", "bad_time",
                                                "bad_key",    "too_large"};
  return reasons;
}

const MappingEngine& Engine() {
  static const std::unique_ptr<MappingEngine> engine = [] {
    komoku::Result<komoku::app::Config> config =
        komoku::app::ParseConfig(komoku::app::MappingExampleYaml(), "example");
    if (!config.ok()) std::abort();
    auto compiled = MappingEngine::Compile(config->mappings);
    if (!compiled.ok()) std::abort();
    return std::move(compiled.value());
  }();
  return *engine;
}

bool SameChange(const MappedChange& a, const MappedChange& b) {
  return a.key == b.key && a.value == b.value && a.time_ms == b.time_ms && a.rule == b.rule;
}

bool SameResult(const MappingResult& a, const MappingResult& b) {
  if (a.matched != b.matched || a.changes.size() != b.changes.size()) return false;
  for (size_t i = 0; i < a.changes.size(); ++i) {
    if (!SameChange(a.changes[i], b.changes[i])) return false;
  }
  if (a.refusal.has_value() != b.refusal.has_value()) return false;
  return !a.refusal ||
         (a.refusal->rule == b.refusal->rule && a.refusal->reason == b.refusal->reason &&
          a.refusal->message == b.refusal->message);
}

void Check(const MappingEngine& engine, const MappingResult& r) {
  for (size_t rule : r.matched) Require(rule < engine.size());
  if (r.refusal) {
    Require(r.changes.empty());
    Require(r.refusal->rule < engine.size());
    Require(Reasons().count(r.refusal->reason) == 1);
    Require(!r.refusal->message.empty());
    Dump({{"reason", r.refusal->reason}, {"message", r.refusal->message}});
  }
  for (const MappedChange& c : r.changes) {
    Require(c.rule < engine.size());
    Require(komoku::store::ValidateKeyName(c.key).ok());
    Dump({{"key", c.key}});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const MappingEngine& engine = Engine();
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view topic;
  if (data[0] < kTopicCount) {
    topic = kTopics[data[0]];
  } else {
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) return 0;
    topic = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
  }
  const std::string_view payload = rest;

  MappingResult fresh = engine.Map(topic, payload, kNow);
  Check(engine, fresh);

  // One result reused across every input of the run, as the bridge does.
  static MappingResult reused;
  engine.MapInto(topic, payload, kNow, &reused);
  Require(SameResult(fresh, reused));

  // Every matching rule on its own (as for discovered entities): a rule
  // that refuses drops only its own changes, and says why.
  MappingResult each = engine.MapEach(topic, payload, kNow);
  Require(!each.refusal);
  Check(engine, each);
  for (const auto& refusal : each.refusals) {
    Require(refusal.rule < engine.size());
    Require(Reasons().count(refusal.reason) == 1);
    Dump({{"message", refusal.message}});
  }
  static MappingResult each_reused;
  engine.MapEachInto(topic, payload, kNow, &each_reused);
  Require(SameResult(each, each_reused) && each.refusals.size() == each_reused.refusals.size());
  return 0;
}

// Messages on the topics of mapping rules and discovered entities: mapped
// into changes and put, or refused (counted, logged, and published to
// <prefix>/error for rules that ask).

#include <mqtt/async_client.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "bridge/bridge_impl.h"
#include "store/input.h"

namespace komoku::bridge {
namespace {

using nlohmann::json;

}  // namespace

bool Bridge::Impl::HandleMapped(const MappingEngine* mapping, const IngestRecord& msg) {
  const std::string& topic = msg.topic;
  const int64_t now = msg.received_ms;
  if (mapping) {
    // One result, reused message after message (this runs on Paho's one
    // receive thread): its key buffers are not allocated again.
    MappingResult& result = mapped_;
    mapping->MapInto(topic, msg.payload, now, &result);
    if (!result.matched.empty()) {
      if (result.refusal) {
        RefuseMapped(*mapping, *result.refusal, topic, false);
        return true;
      }
      return StoreMapped(*mapping, result.changes, msg, false);
    }
  }
  if (!discovery_) return true;        // an excluded topic of a subscribed filter
  Discovery::Mapped& d = discovered_;  // reused, as mapped_ is
  discovery_->MapInto(topic, msg.payload, now, &d);
  if (!d.engine) return true;  // an entity removed while its messages were on the way
  for (const MappingRefusal& r : d.result.refusals) RefuseMapped(*d.engine, r, topic, true);
  if (!d.result.changes.empty() || d.result.refusals.empty()) {
    return StoreMapped(*d.engine, d.result.changes, msg, true);
  }
  return true;
}

bool Bridge::Impl::StoreMapped(const MappingEngine& engine,
                               const std::vector<MappedChange>& changes, const IngestRecord& msg,
                               bool each) {
  const std::string& topic = msg.topic;
  struct Planned {
    const MappedChange* change;
    bool create;
  };
  std::vector<Planned> plan;
  plan.reserve(changes.size());
  for (const MappedChange& c : changes) {
    Result<store::KeyInfo> info = store_->Get(c.key);
    if (!info.ok()) {
      plan.push_back({&c, true});
      continue;
    }
    std::optional<MappingRefusal> refused;
    Result<store::Value> v = store::CoerceValue(info->type, c.value, store_->boolean_words());
    if (!v.ok()) {
      refused = MappingRefusal{
          c.rule, "wrong_type",
          "key '" + c.key + "' (" + store::KeyTypeName(info->type) + "): " + v.status().message()};
    } else if (info->options.values) {
      const auto& allowed = *info->options.values;
      if (std::find(allowed.begin(), allowed.end(), std::get<std::string>(*v)) == allowed.end()) {
        refused = MappingRefusal{c.rule, "value_not_allowed",
                                 "key '" + c.key + "': value '" + std::get<std::string>(*v) +
                                     "' is not one of its values"};
      }
    }
    if (refused) {
      RefuseMapped(engine, *refused, topic, each);
      if (each) continue;
      return true;
    }
    // A retained message seen again on (re)subscribe is no new change.
    if (msg.retained && info->last && info->last->value == *v) {
      store_->metrics().Add("komoku_mapping_retained_skipped_total");
      continue;
    }
    plan.push_back({&c, false});
  }
  for (const Planned& p : plan) {
    const MappedChange& c = *p.change;
    const MappingRule& rule = engine.rule(c.rule);
    if (p.create && rule.type) {
      Result<store::KeyInfo> defined = store_->Define(c.key, rule.type, rule.options);
      if (!defined.ok())
        log_->warn("define '{}' for rule {}: {}", c.key, engine.RuleLabel(c.rule),
                   defined.status().message());
    }
    if (c.clock_unset) store_->metrics().Add("komoku_mapping_clock_unset_total");
    store::PutOptions put;
    put.time_ms = c.time_ms ? *c.time_ms : msg.received_ms;
    put.skip_duplicate = c.time_ms.has_value() || msg.recovered;
    put.wait_committed = false;
    Result<store::Change> change = store_->Put(c.key, c.value, put);
    if (!change.ok()) {
      if (RefusedForNow(change.status())) return false;
      // The store counted it; the bridge logs it once.
      log_->warn("refused {} -> {}: {}", topic, c.key, change.status().message());
      continue;
    }
    if (p.create && !rule.type && !rule.options.empty() && change->created_key) {
      Result<store::KeyInfo> defined = store_->Define(c.key, std::nullopt, rule.options);
      if (!defined.ok())
        log_->warn("options of '{}' for rule {}: {}", c.key, engine.RuleLabel(c.rule),
                   defined.status().message());
    }
  }
  store_->metrics().Add(each ? "komoku_discovery_messages_total" : "komoku_mapping_messages_total");
  return true;
}

void Bridge::Impl::RefuseMapped(const MappingEngine& engine, const MappingRefusal& r,
                                const std::string& topic, bool discovered) {
  const std::string label = engine.RuleLabel(r.rule);
  store_->metrics().Add("komoku_mapping_refused_total{rule=\"" +
                        (discovered ? std::string("discovery") : label) + "\",reason=\"" +
                        r.reason + "\"}");
  std::string shown = topic.size() > 300 ? topic.substr(0, 300) + "..." : topic;
  int64_t suppressed = 0;
  if (ShouldLog(label + "\n" + r.reason, &suppressed)) {
    log_->warn("{} {} refused '{}' ({}): {}{}", discovered ? "discovered entity" : "mapping rule",
               label, shown, r.reason, r.message,
               NotLogged(suppressed, "refusals of this rule and reason"));
  }
  if (engine.rule(r.rule).publish_errors) {
    std::string payload = store::DumpJson(
        json{{"topic", topic}, {"rule", label}, {"reason", r.reason}, {"message", r.message}});
    try {
      client_->publish(options_.prefix + "/error", payload.data(), payload.size(), 0, false);
    } catch (const mqtt::exception& e) {
      store_->metrics().Add("komoku_mqtt_publish_errors_total");
    }
  }
}

}  // namespace komoku::bridge

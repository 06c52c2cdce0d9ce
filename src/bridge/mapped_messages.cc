// Messages on the topics of mapping rules and discovered entities: mapped
// into changes and put, or refused (counted, logged, and published to
// <prefix>/error for rules that ask).

#include <mqtt/async_client.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "bridge/bridge_impl.h"
#include "wire/input.h"
#include "wire/key_options_json.h"

namespace komoku::bridge {
namespace {

using nlohmann::json;

// Defines `key` with a rule's type and options (checked when the rule was
// made, so parsing them again does not fail in practice).
Result<store::KeyInfo> DefineForRule(store::Store& store, const std::string& key,
                                     std::optional<store::KeyType> type, const json& options) {
  Result<store::KeyOptionsPatch> patch = store::ParseKeyOptions(options);
  if (!patch.ok()) return patch.status();
  return store.Define(key, type, *patch);
}

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
      if (!StoreMapped(*mapping, result.changes, msg, false)) return false;
      CountUnknown(result.unknown_skipped);
      return true;
    }
  }
  if (!discovery_) return true;        // an excluded topic of a subscribed filter
  Discovery::Mapped& d = discovered_;  // reused, as mapped_ is
  discovery_->MapInto(topic, msg.payload, now, &d);
  if (!d.engine) return true;  // an entity removed while its messages were on the way
  for (const MappingRefusal& r : d.result.refusals) RefuseMapped(*d.engine, r, topic, true);
  if (!d.result.changes.empty() || d.result.refusals.empty()) {
    if (!StoreMapped(*d.engine, d.result.changes, msg, true)) return false;
  }
  CountUnknown(d.result.unknown_skipped);
  return true;
}

void Bridge::Impl::CountUnknown(size_t skipped) {
  if (skipped == 0) return;
  store_->metrics().Add("komoku_mapping_unknown_skipped_total", static_cast<int64_t>(skipped));
}

bool Bridge::Impl::StoreMapped(const MappingEngine& engine,
                               const std::vector<MappedChange>& changes, const IngestRecord& msg,
                               bool each) {
  if (each) {
    for (const MappedChange& c : changes) {
      if (!PutMapped(engine, &c, &c + 1, msg, each)) return false;
    }
  } else if (!PutMapped(engine, changes.data(), changes.data() + changes.size(), msg, each)) {
    return false;
  }
  store_->metrics().Add(each ? "komoku_discovery_messages_total" : "komoku_mapping_messages_total");
  return true;
}

bool Bridge::Impl::PutMapped(const MappingEngine& engine, const MappedChange* begin,
                             const MappedChange* end, const IngestRecord& msg, bool discovered) {
  const std::string& topic = msg.topic;
  std::vector<store::Store::KeyPut> puts;
  std::vector<const MappedChange*> put_changes;  // the change of each put
  std::vector<bool> creates;                     // each put's key is new
  puts.reserve(end - begin);
  put_changes.reserve(end - begin);
  std::deque<store::InputValue> words;  // values put as their words (below)
  for (const MappedChange* c = begin; c != end; ++c) {
    Result<store::KeyInfo> info = store_->Get(c->key);
    const store::InputValue* value = &c->value;
    // A key that exists as text keeps its type: an on/off value of a rule
    // with one word each way (a switch, recorded as text before
    // 2026-12-07) goes on being stored as the word that was published.
    const MappingRule& rule = engine.rule(c->rule);
    if (info.ok() && info->type == store::KeyType::kString && rule.strict_words &&
        rule.true_words.size() == 1 && rule.false_words.size() == 1) {
      if (const bool* b = std::get_if<bool>(&c->value)) {
        value = &words.emplace_back(*b ? rule.true_words[0] : rule.false_words[0]);
      }
    }
    // A retained message seen again on (re)subscribe is no new change.
    if (info.ok() && msg.retained && info->last) {
      Result<store::Value> v = store::CoerceValue(info->type, *value, store_->boolean_words());
      if (v.ok() && info->last->value == *v) {
        store_->metrics().Add("komoku_mapping_retained_skipped_total");
        continue;
      }
    }
    store::Store::KeyPut put{c->key, value, {}};
    put.options.time_ms = c->time_ms ? *c->time_ms : msg.received_ms;
    put.options.skip_duplicate = c->time_ms.has_value() || msg.recovered;
    put.options.wait_committed = false;
    puts.push_back(put);
    put_changes.push_back(c);
    creates.push_back(!info.ok());
  }
  // A new key of a rule with a type is defined first, so that it has the
  // rule's type and options (its allowed values too) when its first value
  // is checked.
  for (size_t i = 0; i < puts.size(); ++i) {
    const MappedChange& c = *put_changes[i];
    const MappingRule& rule = engine.rule(c.rule);
    if (!creates[i] || !rule.type) continue;
    Result<store::KeyInfo> defined = DefineForRule(*store_, c.key, rule.type, rule.options);
    if (!defined.ok())
      log_->warn("define '{}' for rule {}: {}", c.key, engine.RuleLabel(c.rule),
                 defined.status().message());
  }
  // All or none: the store checks every change against its key (type,
  // allowed values) before it applies any.
  size_t refused = 0;
  Result<std::vector<store::Change>> stored = store_->PutAll(puts, &refused);
  if (!stored.ok()) {
    if (RefusedForNow(stored.status())) return false;
    const std::string& reason = stored.status().reason();
    if (reason == "wrong_type" || reason == "value_not_allowed") {
      RefuseMapped(engine,
                   MappingRefusal{put_changes[refused]->rule, reason, stored.status().message()},
                   topic, discovered);
    } else {
      // The store counted it; the bridge logs it once.
      log_->warn("refused {} -> {}: {}", topic, put_changes[refused]->key,
                 stored.status().message());
    }
    return true;
  }
  for (size_t i = 0; i < puts.size(); ++i) {
    const MappedChange& c = *put_changes[i];
    const MappingRule& rule = engine.rule(c.rule);
    if (c.clock_unset) store_->metrics().Add("komoku_mapping_clock_unset_total");
    if (creates[i] && !rule.type && !rule.options.empty() && (*stored)[i].created_key) {
      Result<store::KeyInfo> defined = DefineForRule(*store_, c.key, std::nullopt, rule.options);
      if (!defined.ok())
        log_->warn("options of '{}' for rule {}: {}", c.key, engine.RuleLabel(c.rule),
                   defined.status().message());
    }
  }
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

// Home Assistant discovery configs of the derived topics and keys, and the
// clearing of those no longer defined (docs/derived.md).
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "derived/internal.h"
#include "derived/publisher_impl.h"
#include "wire/input.h"

namespace komoku::derived {
namespace {

using nlohmann::json;

}  // namespace

void Publisher::Impl::QueueDiscovery() {
  const std::string status = options_.prefix + "/status";
  json device = {
      {"identifiers", json::array({"komoku"})}, {"name", "Komoku"}, {"manufacturer", "Komoku"}};
  if (!configuration_url_.empty()) device["configuration_url"] = configuration_url_;
  auto emit = [&](const std::string& component, const std::string& key, const std::string& name,
                  json config) {
    const std::string id = DiscoveryId(key, name);
    config["unique_id"] = id;
    config["object_id"] = id;
    config["availability_topic"] = status;
    config["payload_available"] = "online";
    config["payload_not_available"] = "offline";
    config["device"] = device;
    Message m;
    m.topic = options_.discovery_prefix + "/" + component + "/" + id + "/config";
    m.payload = store::DumpJson(config);
    m.retain = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      discovery_topics_.insert(m.topic);
    }
    Enqueue(std::move(m));
  };
  auto set_if = [](json& j, const char* field, const std::string& v) {
    if (!v.empty()) j[field] = v;
  };
  for (const Agg& a : aggs_) {
    const std::string topic = derived_prefix_ + a.def.key + "/" + a.def.resolution;
    json c = {{"name", a.def.key + " " + a.def.resolution},
              {"state_topic", topic},
              {"json_attributes_topic", topic}};
    if (a.type == store::KeyType::kNumeric) {
      c["value_template"] = "{{ value_json.twavg }}";
      c["state_class"] = "measurement";
    } else if (a.type == store::KeyType::kCounter) {
      c["value_template"] = "{{ value_json.increase }}";
    } else if (IsBoolean(a.type)) {
      c["name"] = a.def.key + " " + a.def.resolution + " time true";
      c["value_template"] = "{{ value_json.time['true'] }}";
      c["unit_of_measurement"] = "s";
      c["device_class"] = "duration";
    } else {
      c["name"] = a.def.key + " " + a.def.resolution + " changes";
      c["value_template"] = "{{ value_json.changes }}";
    }
    set_if(c, "unit_of_measurement", a.def.unit);
    set_if(c, "device_class", a.def.device_class);
    emit("sensor", a.def.key, a.def.resolution, std::move(c));
  }
  for (const Roll& r : rolls_) {
    const std::string topic = derived_prefix_ + r.def.key + "/" + r.def.name;
    json c = {{"name", r.def.key + " " + r.def.name},
              {"state_topic", topic},
              {"value_template", "{{ value_json.value }}"},
              {"state_class", "measurement"}};
    if (r.def.stat == RollingStat::kTime) {
      c["unit_of_measurement"] = "s";
      c["device_class"] = "duration";
    } else if (r.def.stat == RollingStat::kHours) {
      c["unit_of_measurement"] = "h";
      c["device_class"] = "duration";
    }
    set_if(c, "unit_of_measurement", r.def.unit);
    set_if(c, "device_class", r.def.device_class);
    emit("sensor", r.def.key, r.def.name, std::move(c));
  }
  for (const store::KeyInfo& k : store_->Keys()) {
    if (k.options.stale_after_ms <= 0) continue;
    emit("binary_sensor", k.name, "stale",
         {{"name", k.name + " stale"},
          {"state_topic", derived_prefix_ + k.name + "/stale"},
          {"payload_on", "true"},
          {"payload_off", "false"},
          {"device_class", "problem"}});
  }
  for (const DiscoveryKey& k : options_.discovery_keys) {
    Result<store::KeyInfo> info = store_->Get(k.key);
    if (!info.ok()) continue;
    const std::string topic = options_.prefix + "/state/" + k.key;
    json c = {{"name", k.key}, {"state_topic", topic}, {"json_attributes_topic", topic}};
    std::string component = "sensor";
    if (IsBoolean(info->type)) {
      component = "binary_sensor";
      c["value_template"] = "{{ 'ON' if value_json.value else 'OFF' }}";
    } else {
      c["value_template"] = "{{ value_json.value }}";
      if (info->type == store::KeyType::kNumeric) c["state_class"] = "measurement";
      if (info->type == store::KeyType::kCounter) c["state_class"] = "total_increasing";
    }
    set_if(c, "unit_of_measurement", k.unit);
    set_if(c, "device_class", k.device_class);
    emit(component, k.key, "state", std::move(c));
  }
}

void Publisher::Impl::ClearDiscovery(const std::set<std::string>& before) {
  std::vector<std::string> clear;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& topic : before) {
      if (discovery_topics_.count(topic) == 0) clear.push_back(topic);
    }
    discovery_to_clear_.insert(clear.begin(), clear.end());
  }
  if (!clear.empty()) {
    log_->info("derived: clearing {} Home Assistant configs no longer defined", clear.size());
  }
  for (const std::string& topic : clear) {
    Message m;
    m.topic = topic;
    m.retain = true;
    m.clears_discovery = true;
    Enqueue(std::move(m));
  }
}

}  // namespace komoku::derived

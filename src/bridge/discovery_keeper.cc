// Discovered entities (Home Assistant, Homie) seen from the bridge: their
// configs change the topics Komoku subscribes to; they are kept in the
// state file a moment after each change, and those read at start that the
// broker does not confirm are forgotten.

#include <mqtt/async_client.h>

#include "bridge/bridge_impl.h"

namespace komoku::bridge {
namespace {

// Discovered entities are saved this long after a change, so that the
// burst of retained configs after a subscription is one write; after a
// failed save, the next try comes kDiscoverySaveRetry later.
constexpr std::chrono::seconds kDiscoverySaveDelay{1};
constexpr std::chrono::seconds kDiscoverySaveRetry{30};
// An entity read from the state file whose retained config has not come
// again this long after the discovery filters were subscribed is
// forgotten: the broker no longer has it.
constexpr std::chrono::seconds kDiscoveryConfirmTime{60};

}  // namespace

void Bridge::Impl::HandleDiscovery(const IngestRecord& msg) {
  const std::vector<Discovery::Update> updates = discovery_->Handle(msg.topic, msg.payload);
  if (updates.empty()) return;  // a retained config seen again
  for (const Discovery::Update& u : updates) {
    ReportDiscovery(u);
    ApplyEventOption(u);
    Resubscribe(u);
  }
  if (!discovery_->NeedsSave()) return;  // no state file
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!save_discovery_at_) {
      save_discovery_at_ = std::chrono::steady_clock::now() + kDiscoverySaveDelay;
    }
  }
  cv_.notify_all();
}

void Bridge::Impl::ReportDiscovery(const Discovery::Update& u) {
  store_->metrics().Set("komoku_discovery_entities",
                        static_cast<int64_t>(discovery_->mapped_count()));
  if (u.removed) {
    log_->info("discovery: '{}' removed; its keys are no longer written (their history stays)",
               u.id);
  } else if (u.entity && u.entity->mapped()) {
    const DiscoveredEntity& e = *u.entity;
    std::string unit;
    if (e.info.contains("unit_of_measurement"))
      unit = ", " + e.info["unit_of_measurement"].get<std::string>();
    if (e.info.contains("unit")) unit = ", " + e.info["unit"].get<std::string>();
    log_->info(
        "discovered {} '{}': {}{} -> key '{}' ({}{}{})", e.component, e.id, e.state_topic,
        e.field.empty() ? std::string() : " field " + e.field, e.key, store::KeyTypeName(e.type),
        unit, e.availability.empty() ? std::string() : "; availability " + e.availability[0].topic);
  } else if (u.entity) {
    store_->metrics().Add("komoku_discovery_refused_total{reason=\"" + u.entity->reason + "\"}");
    int64_t suppressed = 0;
    // Not a problem to warn of: an entity disabled as the device asked, and
    // Komoku's own announcements (derived.discovery) coming back to it, as
    // they do with discovery on, the default.
    if (u.entity->reason == "disabled" || u.entity->reason == "own_topic") {
      log_->debug("discovery: '{}' not mapped ({}): {}", u.id, u.entity->reason, u.entity->message);
    } else if (ShouldLog("discovery\n" + u.entity->reason, &suppressed)) {
      log_->warn("discovery: '{}' not mapped ({}): {}{}", u.id, u.entity->reason, u.entity->message,
                 NotLogged(suppressed, "discovery refusals of this reason"));
    }
  }
}

void Bridge::Impl::ApplyEventOption(const Discovery::Update& u) {
  if (!u.entity || !u.entity->mapped() || !u.entity->event) return;
  const std::string& key = u.entity->key;
  Result<store::KeyInfo> info = store_->Get(key);
  if (!info.ok()) return;  // not yet: made with same_value_resolution 0 (StateRule)
  const int64_t resolution = info->options.same_value_resolution_ms;
  if (resolution == 0) return;
  if (resolution != store::KeyOptions{}.same_value_resolution_ms) {
    // Set by a user (define): theirs to change.
    log_->info(
        "discovery: '{}' is an event, but key '{}' keeps its same_value_resolution of {} s "
        "(not the default; define changes it)",
        u.id, key, static_cast<double>(resolution) / 1000);
    return;
  }
  store::KeyOptionsPatch patch;
  patch.same_value_resolution_ms = std::optional<int64_t>(0);
  Result<store::KeyInfo> defined = store_->Define(key, std::nullopt, patch);
  if (!defined.ok()) {
    log_->warn("discovery: '{}' is an event, but key '{}' cannot take same_value_resolution 0: {}",
               u.id, key, defined.status().message());
    return;
  }
  log_->info(
      "discovery: '{}' is an event: key '{}' now stores every value (same_value_resolution 0)",
      u.id, key);
}

void Bridge::Impl::Resubscribe(const Discovery::Update& u) {
  const std::shared_ptr<const MappingEngine> mapping = Mapping();
  for (const std::string& t : u.subscribe) {
    if (Covered(t, mapping.get())) continue;
    try {
      client_->subscribe(t, kQos);
    } catch (const mqtt::exception& e) {
      // Not connected: OnConnected subscribes every discovered topic.
      log_->debug("subscribe to discovered topic '{}': {}", t, e.what());
    }
  }
  for (const std::string& t : u.unsubscribe) {
    if (Covered(t, mapping.get())) continue;
    try {
      client_->unsubscribe(t);
    } catch (const mqtt::exception& e) {
      log_->debug("unsubscribe from '{}': {}", t, e.what());
    }
  }
}

void Bridge::Impl::LoadDiscovery() {
  Result<std::vector<Discovery::Update>> loaded = discovery_->Load();
  if (!loaded.ok()) {
    log_->warn("discovery: {}; ignored: the entities are learnt again from the retained configs",
               loaded.status().message());
    return;
  }
  if (loaded->empty()) return;
  for (const Discovery::Update& u : *loaded) {
    ReportDiscovery(u);
    ApplyEventOption(u);
  }
  log_->info(
      "discovery: {} entities ({} mapped) read from '{}'; one whose retained config does "
      "not come again within {} s of subscribing is forgotten",
      loaded->size(), discovery_->mapped_count(), options_.discovery->state_path,
      kDiscoveryConfirmTime.count());
}

void Bridge::Impl::KeepDiscovery() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopped_) {
    std::optional<Clock::time_point> next = save_discovery_at_;
    if (confirm_discovery_at_ && (!next || *confirm_discovery_at_ < *next)) {
      next = confirm_discovery_at_;
    }
    if (next) {
      cv_.wait_until(lock, *next);
    } else {
      cv_.wait(lock);
    }
    if (stopped_) break;
    const Clock::time_point now = Clock::now();
    const bool save = save_discovery_at_ && *save_discovery_at_ <= now;
    const bool confirm = confirm_discovery_at_ && *confirm_discovery_at_ <= now;
    if (save) save_discovery_at_.reset();
    if (confirm) confirm_discovery_at_.reset();
    if (!save && !confirm) continue;
    lock.unlock();
    if (confirm) {
      for (const Discovery::Update& u : discovery_->ForgetUnconfirmed()) {
        log_->info(
            "discovery: '{}' forgotten: its retained config did not come again within {} s "
            "(removed while Komoku was away)",
            u.id, kDiscoveryConfirmTime.count());
        store_->metrics().Set("komoku_discovery_entities",
                              static_cast<int64_t>(discovery_->mapped_count()));
        Resubscribe(u);
      }
    }
    SaveDiscovery();
    lock.lock();
  }
}

void Bridge::Impl::SaveDiscovery() {
  Status st = discovery_->Save();
  if (st.ok()) return;
  log_->warn("discovery: cannot save the entities: {}; trying again in {} s", st.message(),
             kDiscoverySaveRetry.count());
  std::lock_guard<std::mutex> lock(mu_);
  if (!save_discovery_at_) {
    save_discovery_at_ = std::chrono::steady_clock::now() + kDiscoverySaveRetry;
  }
}

void Bridge::Impl::OnSubscribed() {
  if (!discovery_ || !discovery_->HasUnconfirmed()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!confirm_discovery_at_) {
      confirm_discovery_at_ = std::chrono::steady_clock::now() + kDiscoveryConfirmTime;
    }
  }
  cv_.notify_all();
}

}  // namespace komoku::bridge

#include "bridge/bridge.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "bridge/bridge_impl.h"
#include "bridge/ingest_log.h"
#include "wire/api.h"
#include "wire/input.h"

namespace komoku::bridge {

using nlohmann::json;

Bridge::Impl::Impl(const BridgeOptions& options, store::Store* store,
                   std::shared_ptr<spdlog::logger> log)
    : options_(options),
      store_(store),
      log_(std::move(log)),
      set_prefix_(options.prefix + "/set/"),
      status_topic_(options.prefix + "/status"),
      request_topic_(options.prefix + "/api/request"),
      response_topic_(options.prefix + "/api/response"),
      api_(
          store,
          [this](bool subscribe, const std::string& key) {
            // Over MQTT a client subscribes to the state topic itself.
            return Result<json>(
                json{{"topic", options_.prefix + "/state/" + key}, {"subscribe", subscribe}});
          },
          [this] { return KeyAliases(); }) {}

int64_t Bridge::Impl::SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status Bridge::Impl::Init() {
  Result<std::shared_ptr<const MappingEngine>> engine = CompileRules(options_.rules);
  if (!engine.ok()) return engine.status();
  mapping_ = std::move(engine.value());
  if (options_.discovery) {
    DiscoveryOptions d = *options_.discovery;
    d.own_prefix = options_.prefix;
    discovery_ = std::make_unique<Discovery>(std::move(d));
    LoadDiscovery();
  }
  if (options_.ingest_dir.empty()) return Status::InvalidArgument("no ingest log directory");
  Result<std::unique_ptr<IngestLog>> ingest = IngestLog::Open(options_.ingest_dir);
  if (!ingest.ok()) return ingest.status();
  ingest_ = std::move(ingest.value());
  const IngestLog::Recovered& found = ingest_->recovered();
  if (found.records > 0 || found.torn_bytes > 0) {
    log_->info("ingest log: {} messages received by an earlier run are stored first{}",
               found.records,
               found.torn_bytes ? " (a torn tail of " + std::to_string(found.torn_bytes) +
                                      " bytes cut off: a write the process did not finish)"
                                : std::string());
    store_->metrics().Add("komoku_ingest_recovered_total", static_cast<int64_t>(found.records));
  }
  try {
    // Offline buffering lets state publications made while the broker is
    // away go out on reconnect instead of failing.
    // Publications queue while disconnected, also before the first
    // connection (a timeout recorded at start-up), up to 10,000.
    mqtt::create_options create(MQTTVERSION_5, 10000);
    create.set_send_while_disconnected(true, /*anyTime=*/true);
    client_ =
        std::make_unique<mqtt::async_client>(options_.broker, options_.client_id, create, nullptr);
  } catch (const mqtt::exception& e) {
    return Status::InvalidArgument("cannot create MQTT client for '" + options_.broker +
                                   "': " + e.what());
  }
  client_->set_message_callback([this](const mqtt::const_message_ptr& msg) { OnMessage(msg); });
  client_->set_connected_handler([this](const std::string&) { OnConnected(); });
  client_->set_connection_lost_handler([this](const std::string& cause) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      connected_ = false;
      subscribed_ = false;
    }
    cv_.notify_all();  // the connector reconnects
    log_->warn("lost connection to {}: {}; reconnecting", options_.broker,
               cause.empty() ? "no reason given" : cause);
  });
  if (options_.publish_state) {
    listener_id_ = store_->AddListener([this](const store::Change& c) { OnChange(c); });
  }
  return Status::Ok();
}

void Bridge::Impl::Start() {
  // The ingest thread first stores what an earlier run left in the log.
  ingest_thread_ = std::thread([this] { IngestLoop(); });
  if (options_.publish_state) state_thread_ = std::thread([this] { StateLoop(); });
  connector_ = std::thread([this] { ConnectLoop(); });
  if (discovery_) discovery_keeper_ = std::thread([this] { KeepDiscovery(); });
}

void Bridge::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    state_stop_ = true;
  }
  state_cv_.notify_all();
  if (state_thread_.joinable()) state_thread_.join();
  if (connector_.joinable()) connector_.join();
  if (discovery_keeper_.joinable()) discovery_keeper_.join();
  if (client_) {
    try {
      if (client_->is_connected()) {
        client_->publish(status_topic_, "offline", 7, kQos, true)
            ->wait_for(std::chrono::seconds(2));
      }
      client_->disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception& e) {
      log_->warn("disconnect: {}", e.what());
    }
  }
  connected_ = false;
  subscribed_ = false;
  if (ingest_thread_.joinable()) {
    drain_until_ms_.store(SteadyNowMs() + options_.drain_timeout.count());
    ingest_stop_.store(true);
    ingest_->Wake();
    ingest_thread_.join();
    const uint64_t left = ingest_->Unread();
    if (left > 0) {
      log_->warn(
          "{} messages received were not stored within {} ms; they stay in the ingest "
          "log and are stored at the next start",
          left, options_.drain_timeout.count());
    }
  }
  if (listener_id_) store_->RemoveListener(listener_id_);
  listener_id_ = 0;
  // No message callback runs any more: the last changes are saved now.
  if (discovery_) SaveDiscovery();
}

std::chrono::milliseconds Bridge::Impl::IngestStalledFor() const {
  const int64_t since = ingest_busy_since_ms_.load();
  if (since == 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(std::max<int64_t>(0, SteadyNowMs() - since));
}

Result<std::string> Bridge::Impl::KeyFromTopic(std::string_view topic) const {
  if (topic.size() <= set_prefix_.size() || topic.substr(0, set_prefix_.size()) != set_prefix_) {
    return Status::InvalidArgument("topic '" + std::string(topic) + "' is not under " +
                                   set_prefix_);
  }
  return std::string(topic.substr(set_prefix_.size()));
}

Bridge::Bridge(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Bridge::~Bridge() = default;

Result<std::unique_ptr<Bridge>> Bridge::Create(const BridgeOptions& options, store::Store* store,
                                               std::shared_ptr<spdlog::logger> log) {
  auto impl =
      std::make_unique<Impl>(options, store, log ? std::move(log) : spdlog::default_logger());
  KOMOKU_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Bridge>(new Bridge(std::move(impl)));
}

void Bridge::Start() { impl_->Start(); }
void Bridge::Stop() { impl_->Stop(); }
bool Bridge::connected() const { return impl_->connected(); }
bool Bridge::subscribed() const { return impl_->subscribed(); }
std::chrono::milliseconds Bridge::IngestStalledFor() const { return impl_->IngestStalledFor(); }
uint64_t Bridge::IngestBacklog() const { return impl_->IngestBacklog(); }
Status Bridge::Publish(const std::string& topic, const std::string& payload, bool retain) {
  return impl_->Publish(topic, payload, retain);
}
Result<std::string> Bridge::KeyFromTopic(std::string_view topic) const {
  return impl_->KeyFromTopic(topic);
}
Status Bridge::ReplaceRules(const std::vector<MappingRule>& rules) {
  return impl_->ReplaceRules(rules);
}
nlohmann::json Bridge::DiscoveryJson() const { return impl_->DiscoveryJson(); }
std::map<std::string, std::string> Bridge::KeyAliases() const { return impl_->KeyAliases(); }

}  // namespace komoku::bridge

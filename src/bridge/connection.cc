// The bridge's connection to the broker: connecting and reconnecting with
// backoff, subscribing after every connect, publishing, and swapping the
// mapping rules (with the subscriptions they need).

#include <mqtt/async_client.h>

#include <algorithm>

#include "bridge/bridge_impl.h"
#include "bridge/broker_socket.h"
#include "bridge/tls.h"

namespace komoku::bridge {
namespace {

// The MQTT 5 Receive Maximum Komoku announces (the protocol's largest).
constexpr int kReceiveMaximum = 65535;
// A subscription not acknowledged within this time is asked for again.
constexpr std::chrono::seconds kSubscribeTimeout{10};

}  // namespace

Status Bridge::Impl::Publish(const std::string& topic, const std::string& payload, bool retain) {
  if (!connected_) return Status::Busy("not connected to " + options_.broker);
  try {
    auto token = client_->publish(topic, payload.data(), payload.size(), kQos, retain);
    if (!token->wait_for(std::chrono::seconds(10))) {
      return Status::Busy("no acknowledgement for '" + topic + "' within 10 s");
    }
    return Status::Ok();
  } catch (const mqtt::exception& e) {
    store_->metrics().Add("komoku_mqtt_publish_errors_total");
    return Status::Busy("publish to '" + topic + "' failed: " + e.what());
  }
}

Status Bridge::Impl::ReplaceRules(const std::vector<MappingRule>& rules) {
  Result<std::shared_ptr<const MappingEngine>> engine = CompileRules(rules);
  if (!engine.ok()) return engine.status();
  std::lock_guard<std::mutex> one_at_a_time(replace_mu_);
  const std::vector<std::string> before = WantedTopics(Mapping().get());
  {
    std::lock_guard<std::mutex> lock(mapping_mu_);
    mapping_ = std::move(engine.value());
  }
  const std::vector<std::string> after = WantedTopics(Mapping().get());
  std::vector<std::string> subscribe, unsubscribe;
  for (const std::string& t : after) {
    if (std::find(before.begin(), before.end(), t) == before.end()) subscribe.push_back(t);
  }
  for (const std::string& t : before) {
    if (std::find(after.begin(), after.end(), t) == after.end()) unsubscribe.push_back(t);
  }
  log_->info("mapping rules replaced: {} rules; {} filters subscribed, {} unsubscribed",
             rules.size(), subscribe.size(), unsubscribe.size());
  if (!connected_) return Status::Ok();  // OnConnected subscribes what the new rules want
  // Waits for the broker (this is not Paho's thread), so that once the
  // reload is done, messages on the new topics reach Komoku.
  try {
    if (!subscribe.empty()) {
      auto token = client_->subscribe(mqtt::string_collection::create(subscribe),
                                      mqtt::iasync_client::qos_collection(subscribe.size(), kQos));
      if (!token->wait_for(std::chrono::seconds(10))) {
        log_->warn("the broker has not acknowledged the new rules' subscriptions within 10 s");
      }
    }
    if (!unsubscribe.empty()) {
      client_->unsubscribe(mqtt::string_collection::create(unsubscribe))
          ->wait_for(std::chrono::seconds(10));
    }
  } catch (const mqtt::exception& e) {
    // The connection went meanwhile; OnConnected subscribes them again.
    log_->warn("changing subscriptions for the new rules: {}", e.what());
  }
  return Status::Ok();
}

mqtt::connect_options Bridge::Impl::ConnectOptions() const {
  mqtt::connect_options opts;
  opts.set_mqtt_version(MQTTVERSION_5);
  opts.set_clean_start(false);
  // Receive Maximum: the broker may have this many QoS 1 messages
  // unacknowledged to Komoku at once. Mosquitto's default for a client
  // that does not say is 20, with at most 1,000 more queued behind them
  // and the rest dropped; Paho acknowledges each message as it reads it
  // (and the callback only appends to the ingest log), so a wide window
  // costs nothing and keeps a burst flowing instead of dropped.
  opts.set_properties(mqtt::properties{
      {mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(options_.session_expiry.count())},
      {mqtt::property::RECEIVE_MAXIMUM, kReceiveMaximum}});
  opts.set_keep_alive_interval(options_.keep_alive);
  opts.set_connect_timeout(std::chrono::seconds(10));
  // No automatic reconnect: Paho's waits whole seconds and was seen to
  // take 2-5 s after a broker restart; ConnectLoop reconnects itself.
  opts.set_will(mqtt::will_options(status_topic_, std::string("offline"), kQos, true));
  if (!options_.username.empty()) opts.set_user_name(options_.username);
  if (!options_.password.empty()) opts.set_password(options_.password);
  if (IsTlsUrl(options_.broker)) {
    mqtt::ssl_options ssl;
    // Without a CA file Paho C loads the system's CA store
    // (SSL_CTX_set_default_verify_paths).
    if (!options_.tls.ca_file.empty()) ssl.set_trust_store(options_.tls.ca_file);
    if (!options_.tls.cert_file.empty()) ssl.set_key_store(options_.tls.cert_file);
    if (!options_.tls.key_file.empty()) ssl.set_private_key(options_.tls.key_file);
    if (!options_.tls.key_password.empty()) {
      ssl.set_private_key_password(options_.tls.key_password);
    }
    ssl.set_enable_server_cert_auth(options_.tls.verify);  // the chain
    ssl.set_verify(options_.tls.verify);                   // the host name or IP
    opts.set_ssl(std::move(ssl));
  }
  return opts;
}

void Bridge::Impl::ConnectLoop() {
  auto backoff = options_.reconnect_min;
  int failures = 0;
  uint64_t nodelay_gen = 0;  // the connection whose socket has TCP_NODELAY
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopped_) {
    if (!connected_) {
      lock.unlock();
      bool ok = false;
      std::string why;
      try {
        if (failures == 0) {
          log_->info("connecting to {} as '{}'", options_.broker, options_.client_id);
        }
        auto token = client_->connect(ConnectOptions());
        ok = token->wait_for(std::chrono::seconds(15));
        if (!ok) why = "no answer within 15 s";
        if (ok) {
          // MQTT 5: how many QoS 1 publications the broker takes
          // unacknowledged (Mosquitto: 20); 65,535 when it does not say.
          const mqtt::connect_response response = token->get_connect_response();
          const mqtt::properties& props = response.get_properties();
          server_receive_max_ = props.contains(mqtt::property::RECEIVE_MAXIMUM)
                                    ? mqtt::get<int>(props, mqtt::property::RECEIVE_MAXIMUM)
                                    : 65535;
        }
      } catch (const mqtt::exception& e) {
        why = ExplainConnectFailure(e);
      }
      // Paho calls OnConnected for every successful connect, maybe just
      // after completing the token: do not take that moment for a loss.
      const bool up = ok && client_->is_connected();
      lock.lock();
      if (ok) {
        if (up) connected_ = true;
        failures = 0;
        backoff = options_.reconnect_min;
        continue;
      }
      // The first failure and then one a minute are logged.
      if (failures++ % std::max<int64_t>(1, 60000 / options_.reconnect_max.count()) == 0) {
        log_->warn("cannot connect to {}: {}; trying again every {} ms at most", options_.broker,
                   why, options_.reconnect_max.count());
        if (IsTlsUrl(options_.broker)) ExplainTlsFailure();
      }
      cv_.wait_for(lock, backoff, [&] { return stopped_; });
      backoff = std::min(backoff * 2, options_.reconnect_max);
      continue;
    }
    cv_.wait_for(lock, std::chrono::seconds(1),
                 [&] { return stopped_ || !connected_ || subscribed_gen_ != connect_gen_; });
    if (stopped_) break;
    if (subscribed_gen_ == connect_gen_ || !connected_) continue;
    const uint64_t gen = connect_gen_;
    lock.unlock();
    // Before the subscription, so every state of this connection goes out
    // without Nagle's wait.
    if (nodelay_gen != gen) {
      nodelay_gen = gen;
      SetNoDelay();
    }
    const bool ok = SubscribeAll();
    lock.lock();
    if (ok) {
      subscribed_gen_ = gen;
      // A reconnect meanwhile asks again.
      subscribed_ = gen == connect_gen_ && connected_;
      if (subscribed_) {
        // The state thread waits for the subscription (StateLoop); taking
        // its lock orders this with its look at subscribed_.
        lock.unlock();
        { std::lock_guard<std::mutex> state_lock(state_mu_); }
        state_cv_.notify_all();
        lock.lock();
      }
      continue;
    }
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopped_; });
  }
}

std::string Bridge::Impl::ExplainConnectFailure(const mqtt::exception& e) const {
  int code = e.get_reason_code();
  if (code < 128) code = e.get_return_code();
  const std::string who = options_.username.empty()
                              ? std::string("a connection without a user name")
                              : "user '" + options_.username + "'";
  const char* check = options_.username.empty() ? "set mqtt.username and mqtt.password_file"
                                                : "check mqtt.username and mqtt.password_file";
  switch (code) {
    case 134:  // Bad User Name or Password
      return "the broker refused " + who + ": bad user name or password (" + check + ")";
    case 135:  // Not authorized
      return "the broker refused " + who + ": not authorized (" + check + ")";
    case 133:  // Client Identifier not valid
      return "the broker refused client id '" + options_.client_id +
             "': not valid (check mqtt.client_id)";
    case 138:  // Banned
      return "the broker refused " + who + ": banned";
    case 140:  // Bad authentication method
      return "the broker refused " + who + ": bad authentication method";
    case 136:  // Server unavailable
    case 137:  // Server busy
      return std::string("the broker refused the connection: ") +
             (code == 136 ? "server unavailable" : "server busy");
    default:
      return e.what();
  }
}

void Bridge::Impl::SetNoDelay() {
  Result<int> set = SetNoDelayToBroker(options_.broker);
  if (set.ok() && *set > 0) return;
  const std::string why =
      set.ok() ? "no socket of this process is connected to its address" : set.status().message();
  log_->info(
      "TCP_NODELAY not set on the connection to {} ({}): a state publication may wait "
      "up to 40 ms for the broker's TCP acknowledgement",
      options_.broker, why);
}

void Bridge::Impl::ExplainTlsFailure() {
  Status handshake = CheckTlsHandshake(options_.broker, options_.tls, std::chrono::seconds(3));
  if (handshake.IsInvalidArgument()) {
    log_->error("TLS to {}: {}", options_.broker, handshake.message());
  } else if (!handshake.ok()) {
    log_->debug("TLS check of {}: {}", options_.broker, handshake.message());
  }
}

bool Bridge::Impl::SubscribeAll() {
  // No lock against ReplaceRules: whichever rules this reads, a swap
  // after it subscribes the difference itself.
  const std::shared_ptr<const MappingEngine> mapping = Mapping();
  const std::vector<std::string> topics = WantedTopics(mapping.get());
  try {
    auto token = client_->subscribe(mqtt::string_collection::create(topics),
                                    mqtt::iasync_client::qos_collection(topics.size(), kQos));
    if (!token->wait_for(kSubscribeTimeout)) {
      log_->warn("the broker did not acknowledge the subscription within {} s; asking again",
                 kSubscribeTimeout.count());
      store_->metrics().Add("komoku_mqtt_subscribe_failures_total");
      return false;
    }
    const mqtt::subscribe_response response = token->get_subscribe_response();
    for (mqtt::ReasonCode rc : response.get_reason_codes()) {
      if (static_cast<int>(rc) >= 0x80) {
        log_->error("subscription to {}# refused (reason code {}); asking again", set_prefix_,
                    static_cast<int>(rc));
        store_->metrics().Add("komoku_mqtt_subscribe_failures_total");
        return false;
      }
    }
    client_->publish(status_topic_, "online", 6, kQos, true);
  } catch (const mqtt::exception& e) {
    log_->warn("subscribe after connect failed: {}; asking again", e.what());
    store_->metrics().Add("komoku_mqtt_subscribe_failures_total");
    return false;
  }
  OnSubscribed();
  log_->info("subscribed to {}# and {}{}{}", set_prefix_, request_topic_,
             mapping ? " and " + std::to_string(mapping->Filters().size()) + " mapping filters"
                     : std::string(),
             discovery_ ? " and the discovery filters" : "");
  return true;
}

void Bridge::Impl::OnConnected() {
  log_->info("connected to {}", options_.broker);
  {
    std::lock_guard<std::mutex> lock(mu_);
    connected_ = true;
    subscribed_ = false;
    ++connect_gen_;
  }
  cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    republish_all_ = true;
  }
  state_cv_.notify_all();
}

std::vector<std::string> Bridge::Impl::WantedTopics(const MappingEngine* mapping) const {
  std::vector<std::string> topics = {set_prefix_ + "#", request_topic_};
  auto add = [&](const std::string& t) {
    if (std::find(topics.begin(), topics.end(), t) == topics.end()) topics.push_back(t);
  };
  if (mapping) {
    for (const std::string& f : mapping->Filters()) add(f);
  }
  if (discovery_) {
    for (const std::string& f : discovery_->ConfigFilters()) add(f);
    // Known entities' topics, also those read from the state file at
    // start (the broker may have kept the subscriptions in the session
    // anyway).
    for (const std::string& t : discovery_->Topics()) {
      if (!Covered(t, mapping)) add(t);
    }
  }
  return topics;
}

std::shared_ptr<const MappingEngine> Bridge::Impl::Mapping() const {
  std::lock_guard<std::mutex> lock(mapping_mu_);
  return mapping_;
}

Result<std::shared_ptr<const MappingEngine>> Bridge::Impl::CompileRules(
    const std::vector<MappingRule>& rules) const {
  if (rules.empty()) return std::shared_ptr<const MappingEngine>();
  Result<std::unique_ptr<MappingEngine>> engine = MappingEngine::Compile(rules);
  if (!engine.ok()) return engine.status();
  (*engine)->set_max_payload_bytes(options_.max_payload_bytes);
  return std::shared_ptr<const MappingEngine>(std::move(engine.value()));
}

bool Bridge::Impl::IsOwn(std::string_view topic) const {
  return topic.size() > options_.prefix.size() &&
         topic.compare(0, options_.prefix.size(), options_.prefix) == 0 &&
         topic[options_.prefix.size()] == '/';
}

bool Bridge::Impl::Covered(const std::string& topic, const MappingEngine* mapping) const {
  if (IsOwn(topic)) return true;
  if (discovery_ && discovery_->IsDiscoveryTopic(topic)) return true;
  if (mapping) {
    for (const std::string& f : mapping->Filters()) {
      if (TopicMatchesFilter(f, topic)) return true;
    }
  }
  return false;
}

}  // namespace komoku::bridge

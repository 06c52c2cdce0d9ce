#include "bridge/bridge.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include "bridge/broker_socket.h"
#include "bridge/ingest_log.h"
#include "wire/api.h"
#include "wire/input.h"

namespace komoku::bridge {
namespace {

using nlohmann::json;
using store::ValueToJson;

constexpr int kQos = 1;

// At most one log line per rule and reason in this time; the others are
// counted and the count shown with the next line.
constexpr std::chrono::seconds kRefusalLogInterval{10};

// Discovered entities are saved this long after a change, so that the
// burst of retained configs after a subscription is one write; after a
// failed save, the next try comes kDiscoverySaveRetry later.
constexpr std::chrono::seconds kDiscoverySaveDelay{1};
constexpr std::chrono::seconds kDiscoverySaveRetry{30};
// An entity read from the state file whose retained config has not come
// again this long after the discovery filters were subscribed is
// forgotten: the broker no longer has it.
constexpr std::chrono::seconds kDiscoveryConfirmTime{60};

// The ingest thread takes at most this many messages from the log at a time.
constexpr size_t kIngestBatch = 1024;
// The QoS of <prefix>/state/<key> (see StateLoop).
constexpr int kStateQos = 0;
// The MQTT 5 Receive Maximum Komoku announces (the protocol's largest).
constexpr int kReceiveMaximum = 65535;
// State publications not yet acknowledged by the broker, at most; fewer
// when the broker's Receive Maximum is smaller (StateInFlightLimit).
constexpr size_t kStateInFlight = 256;
// Of the broker's Receive Maximum, this many are left to the other QoS 1
// publications (status, derived state, API replies).
constexpr int kReservedInFlight = 4;
// A subscription not acknowledged within this time is asked for again.
constexpr std::chrono::seconds kSubscribeTimeout{10};

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

class Bridge::Impl {
 public:
  Impl(const BridgeOptions& options, store::Store* store, std::shared_ptr<spdlog::logger> log)
      : options_(options),
        store_(store),
        log_(std::move(log)),
        set_prefix_(options.prefix + "/set/"),
        status_topic_(options.prefix + "/status"),
        request_topic_(options.prefix + "/api/request"),
        response_topic_(options.prefix + "/api/response"),
        api_(store, [this](bool subscribe, const std::string& key) {
          // Over MQTT a client subscribes to the state topic itself.
          return Result<json>(
              json{{"topic", options_.prefix + "/state/" + key}, {"subscribe", subscribe}});
        }) {}

  ~Impl() { Stop(); }

  Status Init() {
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
      client_ = std::make_unique<mqtt::async_client>(options_.broker, options_.client_id, create,
                                                     nullptr);
    } catch (const mqtt::exception& e) {
      return Status::InvalidArgument("cannot create MQTT client for '" + options_.broker +
                                     "': " + e.what());
    }
    client_->set_message_callback([this](mqtt::const_message_ptr msg) { OnMessage(msg); });
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

  void Start() {
    // The ingest thread first stores what an earlier run left in the log.
    ingest_thread_ = std::thread([this] { IngestLoop(); });
    if (options_.publish_state) state_thread_ = std::thread([this] { StateLoop(); });
    connector_ = std::thread([this] { ConnectLoop(); });
    if (discovery_) discovery_keeper_ = std::thread([this] { KeepDiscovery(); });
  }

  // Stops publishing state, says offline, disconnects (no message arrives
  // after that), then stores what the ingest log holds, for at most
  // drain_timeout: what is left stays in the log for the next start. The
  // retained states of the last changes go out at the next connect, which
  // republishes every key.
  void Stop() {
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

  bool connected() const { return connected_; }
  bool subscribed() const { return subscribed_; }
  std::chrono::milliseconds IngestStalledFor() const {
    const int64_t since = ingest_busy_since_ms_.load();
    if (since == 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(std::max<int64_t>(0, SteadyNowMs() - since));
  }
  uint64_t IngestBacklog() const { return ingest_ ? ingest_->Unread() : 0; }
  json DiscoveryJson() const { return discovery_ ? discovery_->Describe() : json(nullptr); }

  Status Publish(const std::string& topic, const std::string& payload, bool retain) {
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

  // Compiles `rules` and swaps them in; the topics they no longer need are
  // unsubscribed and the new ones subscribed once the new rules are in
  // place, so every message is mapped by the old rules or the new ones.
  Status ReplaceRules(const std::vector<MappingRule>& rules) {
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
        auto token =
            client_->subscribe(mqtt::string_collection::create(subscribe),
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

  Result<std::string> KeyFromTopic(std::string_view topic) const {
    if (topic.size() <= set_prefix_.size() || topic.substr(0, set_prefix_.size()) != set_prefix_) {
      return Status::InvalidArgument("topic '" + std::string(topic) + "' is not under " +
                                     set_prefix_);
    }
    return std::string(topic.substr(set_prefix_.size()));
  }

 private:
  // Built field by field, not through connect_options_builder: Paho C++
  // 1.2.0's builder loses the pointer to the MQTT 5 properties when it
  // copies the options (a crash in MQTTProperties_copy; fixed upstream in 1.3).
  mqtt::connect_options ConnectOptions() const {
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_5);
    opts.set_clean_start(false);
    // Receive Maximum: the broker may have this many QoS 1 messages
    // unacknowledged to Komoku at once. Mosquitto's default for a client
    // that does not say is 20, with at most 1,000 more queued behind them
    // and the rest dropped; Paho acknowledges each message as it reads it
    // (and the callback only appends to the ingest log), so a wide window
    // costs nothing and keeps a burst flowing instead of dropped.
    opts.set_properties(mqtt::properties{{mqtt::property::SESSION_EXPIRY_INTERVAL,
                                          static_cast<int>(options_.session_expiry.count())},
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

  // Connects, and connects again whenever the connection is lost, trying
  // after reconnect_min, doubling up to reconnect_max; subscribes after
  // every (re)connect, asking again until the broker acknowledges it.
  void ConnectLoop() {
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

  // What a failed connect says in the log. A broker's refusal (an MQTT 5
  // CONNACK reason code, which Paho reports as "MQTT error [135]: CONNACK
  // return code") says what was refused and which setting to check.
  std::string ExplainConnectFailure(const mqtt::exception& e) const {
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

  // Turns Nagle's algorithm off on Paho's socket (bridge/broker_socket.h):
  // without it a state waited for the broker's delayed ACK, up to 40 ms.
  void SetNoDelay() {
    Result<int> set = SetNoDelayToBroker(options_.broker);
    if (set.ok() && *set > 0) return;
    const std::string why =
        set.ok() ? "no socket of this process is connected to its address" : set.status().message();
    log_->info(
        "TCP_NODELAY not set on the connection to {} ({}): a state publication may wait "
        "up to 40 ms for the broker's TCP acknowledgement",
        options_.broker, why);
  }

  // Paho C++ 1.2.0's TLS error callback is a use after free and, without
  // it, Paho says only "TCP/TLS connect failure" (bridge/tls.h). So when a
  // connection fails (and its failure is logged), the handshake is tried
  // once with the same settings to log OpenSSL's reason ("certificate
  // verify failed: unable to get local issuer certificate"). A connection
  // that succeeds costs no second handshake.
  void ExplainTlsFailure() {
    Status handshake = CheckTlsHandshake(options_.broker, options_.tls, std::chrono::seconds(3));
    if (handshake.IsInvalidArgument()) {
      log_->error("TLS to {}: {}", options_.broker, handshake.message());
    } else if (!handshake.ok()) {
      log_->debug("TLS check of {}: {}", options_.broker, handshake.message());
    }
  }

  // Subscribes to every wanted topic and waits for the broker's answer
  // (this is the connector thread, not Paho's). False when it did not come
  // or refused, to be tried again.
  bool SubscribeAll() {
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

  // Runs on Paho's thread: must not wait for a token. The connector thread
  // subscribes; the state thread republishes every key.
  void OnConnected() {
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

  // Every topic Komoku subscribes to with `mapping` as its rules: its own,
  // the rules' filters, the discovery filters and the discovered entities'
  // topics that no other filter covers.
  std::vector<std::string> WantedTopics(const MappingEngine* mapping) const {
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

  // The rules in force; a message is mapped by one set of rules throughout.
  std::shared_ptr<const MappingEngine> Mapping() const {
    std::lock_guard<std::mutex> lock(mapping_mu_);
    return mapping_;
  }

  Result<std::shared_ptr<const MappingEngine>> CompileRules(
      const std::vector<MappingRule>& rules) const {
    if (rules.empty()) return std::shared_ptr<const MappingEngine>();
    Result<std::unique_ptr<MappingEngine>> engine = MappingEngine::Compile(rules);
    if (!engine.ok()) return engine.status();
    (*engine)->set_max_payload_bytes(options_.max_payload_bytes);
    return std::shared_ptr<const MappingEngine>(std::move(engine.value()));
  }

  // Runs on Paho's receive thread. Paho C sends the QoS 1 PUBACK as the
  // message arrives, before this callback; the message is appended to the
  // ingest log (one write(), which survives a crash of the process) and
  // this returns at once, so Paho reads on at the speed of the socket. See
  // docs/storage.md for what a crash, a stop and a power cut can take back.
  void OnMessage(const mqtt::const_message_ptr& msg) noexcept {
    try {
      IngestRecord& rec = incoming_;  // reused: its buffers are not allocated again
      rec.topic = msg->get_topic();
      rec.payload = msg->get_payload_str();
      rec.retained = msg->is_retained();
      rec.received_ms = store_->clock().NowMs();
      rec.response_topic.clear();
      rec.correlation_data.clear();
      rec.has_correlation_data = false;
      if (rec.topic == request_topic_) {
        const mqtt::properties& props = msg->get_properties();
        if (props.contains(mqtt::property::RESPONSE_TOPIC)) {
          rec.response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
        }
        if (props.contains(mqtt::property::CORRELATION_DATA)) {
          rec.correlation_data = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
          rec.has_correlation_data = true;
        }
      }
      Status st = ingest_->Append(rec);
      if (!st.ok()) {
        store_->metrics().Add("komoku_ingest_log_errors_total");
        int64_t suppressed = 0;
        if (ShouldLog("ingest log", &suppressed)) {
          log_->error(
              "{}; the message is kept in memory until it is stored (lost if komoku "
              "crashes before){}",
              st.message(), NotLogged(suppressed, "failed appends"));
        }
      }
    } catch (const std::exception& e) {
      Refuse("internal", msg->get_topic(), e.what());
    }
  }

  // The ingest thread: stores the messages of the log in order and releases
  // them once committed. It never waits for a commit while messages wait,
  // so the store commits them in groups.
  void IngestLoop() {
    std::vector<IngestRecord> batch;
    // Where the log stood after a batch, and the commit that covers it.
    struct Covered {
      IngestPosition pos;
      uint64_t mark;
    };
    std::deque<Covered> uncommitted;
    // batch[next...] are read and not yet stored: after the store refused
    // one for a full disk, they are tried again, in order, until it takes
    // them (the log keeps them meanwhile: nothing is released past them).
    size_t next = 0;
    bool waiting_for_disk = false;
    for (;;) {
      const bool stopping = ingest_stop_.load();
      size_t n = batch.size() - next;
      if (n == 0) {
        next = 0;
        n = ingest_->Read(&batch, kIngestBatch,
                          stopping ? std::chrono::milliseconds(0) : std::chrono::milliseconds(100));
      }
      if (n > 0) {
        ingest_busy_since_ms_.store(std::max<int64_t>(1, SteadyNowMs()));
        const size_t first = next;
        for (; next < batch.size(); ++next) {
          bool stored = true;
          try {
            stored = HandleRecord(batch[next]);
          } catch (const std::exception& e) {
            Refuse("internal", batch[next].topic, e.what());
          }
          if (!stored) break;
        }
        ingest_busy_since_ms_.store(0);
        store_->metrics().Add("komoku_mqtt_messages_total", static_cast<int64_t>(next - first));
        if (next == batch.size()) {
          uncommitted.push_back({ingest_->ReadPosition(), store_->CommitMark()});
          if (waiting_for_disk) log_->info("the store takes changes again; MQTT ingest goes on");
          waiting_for_disk = false;
        } else {
          if (!waiting_for_disk) {
            log_->error(
                "the store refuses changes ({}); {} MQTT messages wait in the ingest log "
                "and are stored once it takes them again",
                store_->WriteHealth().message(), ingest_->Unread() + batch.size() - next);
          }
          waiting_for_disk = true;
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait_for(lock, std::chrono::seconds(1), [&] { return ingest_stop_.load(); });
        }
      }
      std::optional<IngestPosition> release;
      while (!uncommitted.empty() && store_->Committed(uncommitted.front().mark)) {
        release = uncommitted.front().pos;
        uncommitted.pop_front();
      }
      const bool past_deadline = stopping && SteadyNowMs() >= drain_until_ms_.load();
      if (stopping && n == 0 && !uncommitted.empty() && !past_deadline) {
        // Everything is read: have the last of it committed now.
        const auto left =
            std::chrono::milliseconds(std::max<int64_t>(1, drain_until_ms_.load() - SteadyNowMs()));
        if (store_->WaitCommittedFor(uncommitted.back().mark, left)) {
          release = uncommitted.back().pos;
          uncommitted.clear();
        }
      }
      if (release) ingest_->Release(*release);
      store_->metrics().Set("komoku_ingest_backlog", static_cast<int64_t>(ingest_->Unread()));
      store_->metrics().Set("komoku_ingest_log_bytes", static_cast<int64_t>(ingest_->FileBytes()));
      if (stopping && ((n == 0 && uncommitted.empty()) || past_deadline)) break;
    }
  }

  // A refusal that is no fault of the message: it is tried again later.
  static bool RefusedForNow(const Status& st) {
    return st.reason() == "disk_full" || st.reason() == "write_failed";
  }

  // Stores one message (or refuses it, counted and logged). False when the
  // store cannot take changes now (a full disk): the message is to be tried
  // again.
  bool HandleRecord(const IngestRecord& rec) {
    const std::string& topic = rec.topic;
    if (topic == request_topic_) {
      HandleRequest(rec);
      return true;
    }
    const bool own = IsOwn(topic);
    // Discovery configs are never data, whatever rule matches them.
    if (discovery_ && !own && discovery_->IsDiscoveryTopic(topic)) {
      HandleDiscovery(rec);
      return true;
    }
    const std::shared_ptr<const MappingEngine> mapping = Mapping();
    const bool mapped = mapping || discovery_;
    if (mapped && !own) return HandleMapped(mapping.get(), rec);
    // Komoku's own topics (komoku/status, ...) also match broad mapping
    // filters such as +/status; they are never mapped.
    if (mapped && own && topic.compare(0, set_prefix_.size(), set_prefix_) != 0) return true;
    Result<std::string> key = KeyFromTopic(topic);
    if (!key.ok()) {
      Refuse("bad_topic", topic, key.status().message());
      return true;
    }
    const std::string& payload = rec.payload;
    Result<store::ValueMessage> parsed =
        store::ParseValuePayload(payload, options_.max_payload_bytes);
    if (!parsed.ok()) {
      // Blank (only spaces, tabs and line ends) counts as empty, as
      // ParseValuePayload says.
      const bool blank = payload.find_first_not_of(" \t\r\n") == std::string::npos;
      const char* reason = payload.size() > options_.max_payload_bytes ? "too_large"
                           : blank                                     ? "empty"
                                                                       : "bad_payload";
      Refuse(reason, topic, parsed.status().message());
      return true;
    }
    store::PutOptions put;
    // Without a time of its own, a change has the time it arrived, also
    // when it is stored after a restart from the log.
    put.time_ms = parsed->time_ms ? *parsed->time_ms : rec.received_ms;
    // A message with its own time that repeats a stored change is the
    // broker's redelivery; one read again from the log after a crash may be
    // stored already. Messages with only their arrival time are distinct.
    put.skip_duplicate = parsed->time_ms.has_value() || rec.recovered;
    put.wait_committed = false;
    if (parsed->text) put.new_key_type = store::KeyType::kString;
    Result<store::Change> change = store_->Put(*key, parsed->value, put);
    if (!change.ok()) {
      if (RefusedForNow(change.status())) return false;
      // The store counted it; the bridge logs it once.
      log_->warn("refused {}: {}", topic, change.status().message());
    }
    return true;
  }

  bool IsOwn(std::string_view topic) const {
    return topic.size() > options_.prefix.size() &&
           topic.compare(0, options_.prefix.size(), options_.prefix) == 0 &&
           topic[options_.prefix.size()] == '/';
  }

  // A topic the broker already sends for another subscription (Komoku's
  // own, a configured rule's filter, a discovery filter): subscribing it
  // again would only bring each message twice.
  bool Covered(const std::string& topic, const MappingEngine* mapping) const {
    if (IsOwn(topic)) return true;
    if (discovery_ && discovery_->IsDiscoveryTopic(topic)) return true;
    if (mapping) {
      for (const std::string& f : mapping->Filters()) {
        if (TopicMatchesFilter(f, topic)) return true;
      }
    }
    return false;
  }

  // A message on a mapped topic. Configured rules win: discovered entities
  // see only a topic that no configured rule matches.
  bool HandleMapped(const MappingEngine* mapping, const IngestRecord& msg) {
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

  // Resolved changes: checked against the keys that exist, then put (the
  // store commits them with the next group). For configured rules a change
  // the key refuses refuses the whole message; discovered entities are
  // independent (`each`), so only that entity's change is dropped.
  // False when the store cannot take changes now (see HandleRecord); the
  // changes put before that are then put again with the message.
  bool StoreMapped(const MappingEngine& engine, const std::vector<MappedChange>& changes,
                   const IngestRecord& msg, bool each) {
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
        refused = MappingRefusal{c.rule, "wrong_type",
                                 "key '" + c.key + "' (" + store::KeyTypeName(info->type) +
                                     "): " + v.status().message()};
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
    store_->metrics().Add(each ? "komoku_discovery_messages_total"
                               : "komoku_mapping_messages_total");
    return true;
  }

  // A Home Assistant discovery config or a Homie attribute: the entities
  // change, and with them the topics Komoku subscribes to.
  void HandleDiscovery(const IngestRecord& msg) {
    const std::vector<Discovery::Update> updates = discovery_->Handle(msg.topic, msg.payload);
    if (updates.empty()) return;  // a retained config seen again
    for (const Discovery::Update& u : updates) {
      ReportDiscovery(u);
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

  // The log line (and counters) of a discovery update.
  void ReportDiscovery(const Discovery::Update& u) {
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
          unit,
          e.availability.empty() ? std::string() : "; availability " + e.availability[0].topic);
    } else if (u.entity) {
      store_->metrics().Add("komoku_discovery_refused_total{reason=\"" + u.entity->reason + "\"}");
      int64_t suppressed = 0;
      if (ShouldLog("discovery\n" + u.entity->reason, &suppressed)) {
        log_->warn("discovery: '{}' not mapped ({}): {}{}", u.id, u.entity->reason,
                   u.entity->message, NotLogged(suppressed, "discovery refusals of this reason"));
      }
    }
  }

  void Resubscribe(const Discovery::Update& u) {
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

  // At start, before connecting: the entities of the state file, so that
  // the messages the broker queued for them map before their retained
  // configs come again. A file that cannot be used is no reason not to
  // start: the retained configs teach the entities again.
  void LoadDiscovery() {
    Result<std::vector<Discovery::Update>> loaded = discovery_->Load();
    if (!loaded.ok()) {
      log_->warn("discovery: {}; ignored: the entities are learnt again from the retained configs",
                 loaded.status().message());
      return;
    }
    if (loaded->empty()) return;
    for (const Discovery::Update& u : *loaded) ReportDiscovery(u);
    log_->info(
        "discovery: {} entities ({} mapped) read from '{}'; one whose retained config does "
        "not come again within {} s of subscribing is forgotten",
        loaded->size(), discovery_->mapped_count(), options_.discovery->state_path,
        kDiscoveryConfirmTime.count());
  }

  // Its own thread: saves the discovered entities a moment after they
  // change (never on Paho's thread, which must not wait for a disk), and
  // forgets the ones read at start that the broker did not confirm.
  void KeepDiscovery() {
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

  // Saves when there is something to save; on failure warns and tries again
  // later (the entities stay in memory either way).
  void SaveDiscovery() {
    Status st = discovery_->Save();
    if (st.ok()) return;
    log_->warn("discovery: cannot save the entities: {}; trying again in {} s", st.message(),
               kDiscoverySaveRetry.count());
    std::lock_guard<std::mutex> lock(mu_);
    if (!save_discovery_at_) {
      save_discovery_at_ = std::chrono::steady_clock::now() + kDiscoverySaveRetry;
    }
  }

  // The subscription (of the discovery filters too) is acknowledged: the
  // retained configs are on their way; what has not come within
  // kDiscoveryConfirmTime is gone from the broker.
  void OnSubscribed() {
    if (!discovery_ || !discovery_->HasUnconfirmed()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!confirm_discovery_at_) {
        confirm_discovery_at_ = std::chrono::steady_clock::now() + kDiscoveryConfirmTime;
      }
    }
    cv_.notify_all();
  }

  // At most one log line per `what` per kRefusalLogInterval; the others are
  // counted into `*suppressed` of the next line that is logged.
  bool ShouldLog(const std::string& what, int64_t* suppressed) {
    std::lock_guard<std::mutex> lock(refusal_log_mu_);
    RefusalLog& entry = refusal_log_[what];
    auto now = std::chrono::steady_clock::now();
    if (entry.logged_once && now - entry.last < kRefusalLogInterval) {
      ++entry.suppressed;
      return false;
    }
    *suppressed = entry.suppressed;
    entry = RefusalLog{now, 0, true};
    return true;
  }

  static std::string NotLogged(int64_t suppressed, const char* what) {
    if (suppressed <= 0) return "";
    return " [" + std::to_string(suppressed) + " more " + what + " not logged]";
  }

  // Counted always; logged at most once per rule and reason per
  // kRefusalLogInterval, with the number of refusals not logged since.
  // Discovered entities count under rule="discovery" (one series, however
  // many entities) and are named in the log line.
  void RefuseMapped(const MappingEngine& engine, const MappingRefusal& r, const std::string& topic,
                    bool discovered) {
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

  // A Komoku JSON query: the answer goes to the MQTT 5 response topic with
  // the request's correlation data, or to <prefix>/api/response.
  void HandleRequest(const IngestRecord& msg) {
    json answer = api_.HandleText(msg.payload);
    if (answer.contains("error")) {
      log_->warn("API request refused ({}): {}", answer["error"]["code"].get<std::string>(),
                 answer["error"]["message"].get<std::string>());
    }
    std::string topic = response_topic_;
    mqtt::properties reply_props;
    if (!msg.response_topic.empty()) {
      topic = msg.response_topic;
      if (msg.has_correlation_data) {
        reply_props.add(
            mqtt::property(mqtt::property::CORRELATION_DATA, mqtt::binary(msg.correlation_data)));
      }
    }
    std::string payload = store::DumpJson(answer);
    auto reply = mqtt::make_message(topic, payload, kQos, false);
    reply->set_properties(reply_props);
    try {
      client_->publish(reply);
    } catch (const mqtt::exception& e) {
      store_->metrics().Add("komoku_mqtt_publish_errors_total");
      log_->warn("API reply to '{}' failed: {}", topic, e.what());
    }
  }

  void Refuse(const char* reason, const std::string& topic, const std::string& why) {
    store_->metrics().Add(std::string("komoku_refused_total{reason=\"") + reason + "\"}");
    std::string shown = topic.size() > 300 ? topic.substr(0, 300) + "..." : topic;
    log_->warn("refused message on '{}' ({}): {}", shown, reason, why);
  }

  // The state of a key to publish on <prefix>/state/<key>.
  struct StateItem {
    store::Value value;
    int64_t time_ms = 0;
    std::optional<store::Value> previous;
    bool deleted = false;  // an empty retained message clears the state
    // Publish the key's state as the store has it when it goes out: a
    // publication that failed is sent again this way, so it can never
    // overtake a newer one of the same key that went out meanwhile.
    bool refresh = false;
  };

  // The store's listener (on the putting thread): records the newest state
  // of the key for the state thread; never calls Paho.
  void OnChange(const store::Change& c) {
    if (!c.deleted && !c.is_current) return;
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      wake = state_waiting_;
      auto [it, fresh] = state_pending_.try_emplace(c.key);
      StateItem& item = it->second;
      if (c.deleted) {
        item = StateItem{};
        item.deleted = true;
      } else {
        // Concurrent puts may notify out of order: the newest time wins.
        if (!fresh && !item.deleted && c.sample.time_ms < item.time_ms) return;
        item.value = c.sample.value;
        item.time_ms = c.sample.time_ms;
        item.previous.reset();
        if (c.previous) item.previous = c.previous->value;
        item.deleted = false;
      }
    }
    // A busy state thread takes what waits when it is done: no wake-up (a
    // system call) per change during a burst.
    if (wake) state_cv_.notify_one();
  }

  // Puts a state that did not go out back in line, unless a newer one of
  // the key is already waiting.
  void Requeue(std::string key, StateItem item) {
    std::lock_guard<std::mutex> lock(state_mu_);
    state_pending_.try_emplace(std::move(key), std::move(item));
  }

  // The state thread: publishes the newest state of each key that changed
  // (a burst of one key publishes its last value), QoS 1 and retained, at
  // most kStateInFlight unacknowledged; what fails goes back in line. After
  // every connect, every key's current state is published again.
  void StateLoop() {
    std::vector<std::pair<std::string, StateItem>> batch;
    struct InFlight {
      std::string key;
      mqtt::delivery_token_ptr token;
    };
    std::deque<InFlight> in_flight;
    // Waits for the oldest publication; false when it failed (requeued).
    auto settle_oldest = [&]() {
      InFlight f = std::move(in_flight.front());
      in_flight.pop_front();
      bool ok = false;
      // A lost connection does not end a publication: the session is kept,
      // and Paho sends it again after the reconnect, where it still counts
      // against the broker's Receive Maximum. Publishing its state anew
      // meanwhile put more in flight than the broker allows after each
      // reconnect, and Mosquitto dropped the connection every time for a
      // protocol error (integration 25, broker restarts). So the wait ends
      // only when Paho completes or fails the publication, or at a stop.
      try {
        while (!ok && !state_stopping()) ok = f.token->wait_for(std::chrono::milliseconds(500));
      } catch (const mqtt::exception&) {
        ok = false;
      }
      if (ok) {
        store_->metrics().Add("komoku_state_published_total");
      } else {
        store_->metrics().Add("komoku_mqtt_publish_errors_total");
        StateItem again;
        again.refresh = true;
        Requeue(std::move(f.key), std::move(again));
      }
      return ok;
    };
    for (;;) {
      bool all = false;
      batch.clear();
      {
        std::unique_lock<std::mutex> lock(state_mu_);
        state_waiting_ = true;
        // Publications still out are looked at again soon, to requeue any
        // that failed.
        state_cv_.wait_for(
            lock,
            in_flight.empty() ? std::chrono::milliseconds(500) : std::chrono::milliseconds(20),
            [&] {
              return state_stop_ || (subscribed_ && (republish_all_ || !state_pending_.empty()));
            });
        state_waiting_ = false;
        if (state_stop_) break;
        // Only once subscribed: Paho sends its commands in order, and a
        // subscription queued behind every key's state (republished after
        // each connect) was seen to wait for over 10 s under load.
        if (subscribed_) {
          all = republish_all_;
          republish_all_ = false;
          batch.reserve(state_pending_.size());
          for (auto& kv : state_pending_) batch.emplace_back(kv.first, std::move(kv.second));
          state_pending_.clear();
        }
        store_->metrics().Set("komoku_state_pending", static_cast<int64_t>(state_pending_.size()));
      }
      if (all) {
        // Read after the pending states were taken: at least as new.
        std::unordered_map<std::string, size_t> index;
        for (size_t i = 0; i < batch.size(); ++i) index[batch[i].first] = i;
        for (store::KeyInfo& k : store_->Keys()) {
          if (!k.last) continue;
          // Every put checks its key's name, so only a name an older Komoku
          // accepted can fail here: MQTT does not allow it, the broker would
          // drop the connection, and every connect would publish it again.
          // Such a key keeps its history but has no state topic.
          if (Status name = store::ValidateKeyName(k.name); !name.ok()) {
            store_->metrics().Add("komoku_state_unpublishable_total");
            int64_t suppressed = 0;
            if (ShouldLog("state name", &suppressed)) {
              log_->warn("no state published for {}{}", name.message(),
                         NotLogged(suppressed, "keys with such names"));
            }
            continue;
          }
          StateItem item;
          item.value = std::move(k.last->value);
          item.time_ms = k.last->time_ms;
          if (k.previous) item.previous = std::move(k.previous->value);
          auto it = index.find(k.name);
          if (it == index.end()) {
            batch.emplace_back(std::move(k.name), std::move(item));
          } else {
            batch[it->second].second = std::move(item);
          }
        }
      }
      // Paho C 1.3.12 (Debian 12), with as many QoS 1 publications out as
      // the broker's Receive Maximum, queues the next and sends it only when
      // its send thread wakes, up to a second later (fixed in Paho C 1.3.14):
      // about 20 states a second against Mosquitto. Staying below that
      // limit keeps every publication going out at once.
      const size_t limit = StateInFlightLimit();
      size_t i = 0;
      for (; i < batch.size(); ++i) {
        if (state_stopping() || !subscribed_) break;
        while (in_flight.size() >= limit) settle_oldest();
        auto& [key, item] = batch[i];
        if (item.refresh) {
          Result<store::KeyInfo> info = store_->Get(key);
          if (info.ok() && !info->last) continue;
          item = StateItem{};
          item.deleted = !info.ok();
          if (info.ok()) {
            item.value = info->last->value;
            item.time_ms = info->last->time_ms;
            if (info->previous) item.previous = info->previous->value;
          }
        }
        std::string payload;
        if (!item.deleted) {
          payload = store::DumpJson(
              json{{"value", ValueToJson(item.value)},
                   {"time", static_cast<double>(item.time_ms) / 1000.0},
                   {"previous", item.previous ? ValueToJson(*item.previous) : json(nullptr)}});
        }
        try {
          // QoS 0: a state that a lost connection takes is published again
          // after the reconnect (every key is), and Paho C 1.3.12 resends
          // QoS 1 publications of an MQTT 5 session after a reconnect in a
          // way Mosquitto refuses ("malformed packet", then "protocol
          // error" at every reconnect: integration 25, broker restarts).
          auto token = client_->publish(options_.prefix + "/state/" + key, payload.data(),
                                        payload.size(), kStateQos, true);
          in_flight.push_back({std::move(key), std::move(token)});
        } catch (const mqtt::exception& e) {
          store_->metrics().Add("komoku_mqtt_publish_errors_total");
          log_->debug("state publish for '{}' failed: {}", key, e.what());
          break;  // not connected, or Paho's buffer is full: again later
        }
      }
      for (; i < batch.size(); ++i) Requeue(std::move(batch[i].first), std::move(batch[i].second));
      // Acknowledged publications are settled as they complete, without
      // waiting for them: a new change goes out while earlier ones are
      // still on their way.
      while (!in_flight.empty() && in_flight.front().token->is_complete()) settle_oldest();
    }
    while (!in_flight.empty()) settle_oldest();
    // Stopping: what is left is published at the next start (every key).
  }

  size_t StateInFlightLimit() const {
    const int broker = server_receive_max_.load();
    return static_cast<size_t>(
        std::clamp<int>(broker - kReservedInFlight, 1, static_cast<int>(kStateInFlight)));
  }

  bool state_stopping() {
    std::lock_guard<std::mutex> lock(state_mu_);
    return state_stop_;
  }

  // Constant after construction.
  const BridgeOptions options_;
  store::Store* const store_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::string set_prefix_;
  const std::string status_topic_;
  const std::string request_topic_;
  const std::string response_topic_;
  store::Api api_;

  // Null without rules; each engine is immutable, replaced whole by
  // ReplaceRules. Guarded by mapping_mu_.
  std::shared_ptr<const MappingEngine> mapping_;
  mutable std::mutex mapping_mu_;
  std::mutex replace_mu_;                       // one ReplaceRules at a time
  std::unique_ptr<Discovery> discovery_;        // null when off; thread-safe
  MappingResult mapped_;                        // owned by the ingest thread
  Discovery::Mapped discovered_;                // owned by the ingest thread
  std::unique_ptr<mqtt::async_client> client_;  // thread-safe itself
  int listener_id_ = 0;
  std::atomic<bool> connected_{false};
  std::atomic<bool> subscribed_{false};
  // The broker's Receive Maximum on the current connection.
  std::atomic<int> server_receive_max_{65535};

  // The ingest log and its thread.
  std::unique_ptr<IngestLog> ingest_;  // thread-safe: Paho appends, the ingest thread reads
  IngestRecord incoming_;              // owned by Paho's receive thread
  std::thread ingest_thread_;
  std::atomic<bool> ingest_stop_{false};
  std::atomic<int64_t> drain_until_ms_{0};  // steady-clock ms; set with ingest_stop_
  // Steady-clock ms when the ingest thread took the batch it is storing; 0
  // when it is not storing one.
  std::atomic<int64_t> ingest_busy_since_ms_{0};

  // State publishing (StateLoop).
  std::mutex state_mu_;
  std::condition_variable state_cv_;
  std::unordered_map<std::string, StateItem> state_pending_;  // guarded by state_mu_
  bool republish_all_ = false;                                // guarded by state_mu_
  bool state_stop_ = false;                                   // guarded by state_mu_
  bool state_waiting_ = false;  // the state thread waits for work; guarded by state_mu_
  std::thread state_thread_;

  struct RefusalLog {
    std::chrono::steady_clock::time_point last;
    int64_t suppressed = 0;
    bool logged_once = false;
  };
  std::mutex refusal_log_mu_;
  std::map<std::string, RefusalLog> refusal_log_;  // guarded by refusal_log_mu_

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
  // Connections made, and the one whose subscription the broker
  // acknowledged: the connector subscribes while they differ.
  uint64_t connect_gen_ = 0;     // guarded by mu_
  uint64_t subscribed_gen_ = 0;  // guarded by mu_
  // When KeepDiscovery saves next, and forgets unconfirmed entities.
  std::optional<std::chrono::steady_clock::time_point> save_discovery_at_;     // guarded by mu_
  std::optional<std::chrono::steady_clock::time_point> confirm_discovery_at_;  // guarded by mu_
  std::thread connector_;
  std::thread discovery_keeper_;  // with discovery only
};

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

}  // namespace komoku::bridge

// The integration harness: real processes on loopback ports the OS chose.
// A Mosquitto broker, the real komoku binary, an MQTT client (Paho) and an
// HTTP client (cpp-httplib). Every process is stopped by its PID (SIGTERM,
// then SIGKILL) when its owner goes away, also when a test fails, and its
// output is printed when the test failed.
#pragma once

#include <sys/types.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "testing/process.h"

namespace komoku::testing {

// A temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Child processes stopped by PID, and free loopback ports: the launcher the
// benchmarks use too (testing/process.h).
using process::FreeLoopbackPort;
using process::Process;

// Polls `cond` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// The wall clock in ms since the epoch: the time komoku gives a change.
int64_t NowMs();
// `ms` as seconds with three decimals, as the HTTP API's time parameters
// take them ("1700000000.250").
std::string Seconds(int64_t ms);

// The `#mappings:` block of config/komoku.yaml with its leading '#' taken
// away: the example rules exactly as shipped, for the tests that run them
// (10, 40), so that a test cannot check a copy that drifted from them.
std::string ExampleMappings();

// How the test broker runs.
struct BrokerOptions {
  // Off: sessions and queued messages live in memory and a restart loses
  // them. On: Mosquitto saves them in the temp dir when it stops (SIGTERM)
  // and reads them at the next start, like a broker installed as a service.
  bool persistence = false;
  // QoS 1 and 2 messages queued per client beyond those in flight; 0 is no
  // limit. Mosquitto's default is 1,000; the tests queue far more.
  int max_queued_messages = 100000;
  // Whether clients without a user name may connect, and the file of user
  // names and password hashes (mosquitto_passwd) of those that may.
  bool allow_anonymous = true;
  std::string password_file;
};

// A Mosquitto broker on 127.0.0.1 and a free port.
class Broker {
 public:
  explicit Broker(const TempDir& dir, const BrokerOptions& options = {});
  int port() const { return port_; }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  std::string Output() const { return process_ ? process_->Output() : ""; }
  // Stops the broker (losing its sessions unless it runs with persistence)
  // and starts it again on the same port; false when it does not come back.
  bool Restart();
  // The two halves of Restart(), for a test that acts while it is down.
  void Stop();
  bool Start();

 private:
  bool Launch();

  const TempDir& dir_;
  std::string conf_;
  int port_ = 0;
  std::unique_ptr<Process> process_;
};

// The komoku binary with its own config and data dir inside `dir`.
class Komoku {
 public:
  // `extra_yaml` is appended to the generated config (e.g. more sections);
  // `store_yaml` holds more keys of its `store:` section ("  key: value\n").
  // `http_yaml` holds more keys of its `http:` section.
  Komoku(const TempDir& dir, const Broker& broker, const std::string& extra_yaml = "",
         const std::string& store_yaml = "", const std::string& http_yaml = "");
  ~Komoku();

  // Starts the process and waits until HTTP answers and the set
  // subscription is acknowledged. False on timeout or early exit.
  bool Start();
  int Stop() { return process_ ? process_->Stop() : -1; }
  void Kill() {
    if (process_) process_->Kill();
  }
  int http_port() const { return http_port_; }
  std::string Output() const { return process_ ? process_->Output() : ""; }
  Process* process() { return process_.get(); }
  const std::string& config_path() const { return config_path_; }
  // Writes the config file again with `extra_yaml` in place of the one
  // given at construction (for a reload); the rest stays as generated.
  void RewriteConfig(const std::string& extra_yaml);

  // HTTP GET/PUT against the running komoku: status code and body.
  struct Reply {
    int status = 0;
    std::string body;
    nlohmann::json Json() const;
  };
  Reply Get(const std::string& path_and_query) const;
  Reply Put(const std::string& path_and_query, const std::string& body) const;
  Reply Post(const std::string& path_and_query, const std::string& body,
             const std::string& content_type = "application/json") const;
  Reply Delete(const std::string& path_and_query) const;
  // Sent as `Authorization: Bearer <token>` with every request from now on.
  void set_token(std::string token) { token_ = std::move(token); }
  // A series value of GET /metrics (0 when absent; the whole part of a float).
  long long Metric(const std::string& series) const;

 private:
  const TempDir& dir_;
  std::string config_path_;
  std::string base_yaml_;  // the generated part of the config
  std::string token_;
  std::string ready_path_;
  int runs_ = 0;
  int http_port_ = 0;
  std::unique_ptr<Process> process_;

 public:
  // A komoku whose mqtt: section holds `mqtt_yaml` (its lines, indented two
  // spaces, broker: included) besides client_id, for a broker the harness
  // Broker does not start (a TLS listener); the rest as above.
  Komoku(const TempDir& dir, const std::string& mqtt_yaml, const std::string& extra_yaml);
};

// A plain MQTT 3.1.1 client for publishing and subscribing in tests.
class MqttClient {
 public:
  MqttClient(const std::string& url, const std::string& client_id);
  ~MqttClient();
  // Publishes and waits for the broker's acknowledgement (QoS 1).
  void Publish(const std::string& topic, const std::string& payload, int qos = 1,
               bool retained = false);
  // Subscribes; received messages are kept and returned by Received().
  void Subscribe(const std::string& filter);
  std::vector<std::pair<std::string, std::string>> Received();
  // The same, with the moment each message arrived here.
  struct TimedMessage {
    std::string topic;
    std::string payload;
    std::chrono::system_clock::time_point arrived;
  };
  std::vector<TimedMessage> ReceivedWithTimes();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// An MQTT 5 client that can publish with a response topic and correlation
// data, and sees those properties on what it receives.
class Mqtt5Client {
 public:
  struct Message {
    std::string topic;
    std::string payload;
    std::string response_topic;    // empty when absent
    std::string correlation_data;  // empty when absent
    bool has_correlation_data = false;
  };
  Mqtt5Client(const std::string& url, const std::string& client_id);
  ~Mqtt5Client();
  // QoS 1, waits for the acknowledgement. Properties are set when not empty.
  void Publish(const std::string& topic, const std::string& payload,
               const std::string& response_topic = "", const std::string& correlation_data = "");
  void Subscribe(const std::string& filter);
  std::vector<Message> Received();
  // Waits for a received message that `match` accepts; nullopt on timeout.
  std::optional<Message> WaitForMessage(
      const std::function<bool(const Message&)>& match,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A Server-Sent Events client over a raw loopback socket, reading on its own
// thread. Stop() (and the destructor) closes the socket and joins the thread,
// so a test ends a stream at a moment it chooses.
class SseClient {
 public:
  struct Event {
    std::string event;  // "message" when the stream did not name it
    std::string id;
    std::string data;
  };
  SseClient(int port, const std::string& path_and_query);
  ~SseClient();
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  // Waits until the status line arrived; the HTTP status, 0 on timeout or
  // when the connection failed.
  int WaitStatus(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  // The body when the answer was not a stream (e.g. a 503 with an error).
  std::string Body();
  std::vector<Event> Events();
  // Waits until `cond` holds for the events received so far.
  bool WaitForEvents(const std::function<bool(const std::vector<Event>&)>& cond,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  bool Closed();  // the server ended the stream or the connection failed
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Prints the outputs of the given processes when the current test failed.
void DumpOnFailure(const Broker& broker, const Komoku& komoku);

// Runs a command to its end (60 s at most), its output in `log_name` in
// `dir`; its exit status (-1 when it did not end).
int RunTool(const TempDir& dir, std::vector<std::string> argv, const std::string& log_name,
            std::string* output = nullptr);

// How StartPrometheus runs a real Prometheus (PROMETHEUS_BINARY).
struct PrometheusOptions {
  std::string config = "global:\n  scrape_interval: 1m\n";  // its prometheus.yml
  std::vector<std::string> args;  // more flags: --web.enable-remote-write-receiver, ...
  int port = 0;                   // 0: a free port, another one at each try
  int tries = 5;
  std::string log_name = "prometheus.log";
  std::chrono::seconds ready_timeout{60};
};

// Starts Prometheus on 127.0.0.1, its TSDB and prometheus.yml in `dir`, and
// waits until `ready(port)` says it answers (the caller asks the way its
// Prometheus expects: plain HTTP, TLS, credentials). A port chosen free can
// be taken before Prometheus binds it, and a port it had may linger after a
// kill, so it tries `tries` times; *port is the one it listens on. Null
// when it never answered (its output is in `log_name`).
std::unique_ptr<Process> StartPrometheus(const TempDir& dir, const PrometheusOptions& options,
                                         const std::function<bool(int port)>& ready, int* port);

// An EC key and certificate for `cn` made with the openssl command line,
// `name`.key and `name`.crt in `dir`: self-signed (a CA) when `ca_crt` is
// empty, else signed by that CA with `extensions` (an openssl extfile line).
// Fails the test (gtest) when openssl is missing or refuses.
void MakeCert(const TempDir& dir, const std::string& name, const std::string& cn,
              const std::string& ca_crt, const std::string& ca_key, const std::string& extensions);

}  // namespace komoku::testing

#include <gtest/gtest.h>

namespace komoku::testing {

// A broker and a started komoku per test, stopped (and their output printed
// on failure) when the test ends.
class KomokuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, ExtraConfig());
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    mqtt_ = std::make_unique<MqttClient>(broker_->url(), "it-publisher");
  }
  void TearDown() override {
    DumpOnFailure(*broker_, *komoku_);
    mqtt_.reset();
  }
  virtual std::string ExtraConfig() const { return ""; }

  // Waits until `key` has `count` changes in its history.
  bool WaitForHistory(const std::string& key, size_t count,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    return WaitFor([&] { return HistorySize(key) >= count; }, timeout);
  }

  // `key` as a query parameter's value: percent-encoded but for letters,
  // digits, "-._~" and "/" (Homie keys hold "$").
  static std::string QueryKey(const std::string& key) {
    static const char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : key) {
      if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
        out += static_cast<char>(c);
      } else {
        out += '%';
        out += kHex[c >> 4];
        out += kHex[c & 15];
      }
    }
    return out;
  }
  // GET /api/v1/value of `key`; null when it is not 200.
  nlohmann::json Value(const std::string& key) {
    auto r = komoku_->Get("/api/v1/value?key=" + QueryKey(key));
    return r.status == 200 ? r.Json() : nlohmann::json();
  }
  // Waits until the current value of `key` is `value` (history may lag it
  // by one commit).
  bool WaitForValue(const std::string& key, const nlohmann::json& value) {
    return WaitFor([&] {
      nlohmann::json v = Value(key);
      return v.is_object() && v["value"] == value;
    });
  }
  // The number of changes in the history of `key`; 0 when it is not 200.
  size_t HistorySize(const std::string& key) {
    auto r = komoku_->Get("/api/v1/history?key=" + QueryKey(key) + "&from=0");
    return r.status == 200 ? r.Json()["rows"].size() : 0;
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  std::unique_ptr<MqttClient> mqtt_;
};

}  // namespace komoku::testing

#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

namespace komoku::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "komoku-it-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Seconds(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
  return buf;
}

std::string ExampleMappings() {
  std::ifstream in(std::string(KOMOKU_SOURCE_DIR) + "/config/komoku.yaml");
  std::string out;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line == "#mappings:") inside = true;
    if (inside && !line.empty() && line[0] == '#') out += line.substr(1) + "\n";
  }
  return out;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

namespace {

bool TcpOpen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

Broker::Broker(const TempDir& dir, const BrokerOptions& options) : dir_(dir) {
  std::string persistence;
  if (options.persistence) {
    // Mosquitto wants the directory to exist and the trailing slash.
    std::filesystem::create_directories(dir.File("mosquitto-data"));
    // Started as root, Mosquitto drops to its own user before it saves its
    // database: that user must reach the directory and write in it.
    namespace fs = std::filesystem;
    fs::permissions(dir.path(), fs::perms::group_exec | fs::perms::others_exec,
                    fs::perm_options::add);
    fs::permissions(dir.File("mosquitto-data"), fs::perms::all, fs::perm_options::add);
    persistence = "persistence true\npersistence_location " + dir.File("mosquitto-data") + "/\n";
  }
  if (!options.password_file.empty()) {
    // Read by the mosquitto user, whom Mosquitto becomes when started as
    // root: the directory must let it through.
    namespace fs = std::filesystem;
    fs::permissions(dir.path(), fs::perms::group_exec | fs::perms::others_exec,
                    fs::perm_options::add);
  }
  // The port can be taken between FreeLoopbackPort() and mosquitto's bind;
  // try a few.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreeLoopbackPort();
    conf_ = dir.File("mosquitto-" + std::to_string(attempt) + ".conf");
    std::ofstream(conf_) << "listener " << port_ << " 127.0.0.1\n"
                         << "allow_anonymous " << (options.allow_anonymous ? "true" : "false")
                         << "\n"
                         << (options.password_file.empty()
                                 ? std::string()
                                 : "password_file " + options.password_file + "\n")
                         << "max_queued_messages " << options.max_queued_messages << "\n"
                         << persistence;
    if (Launch()) return;
  }
  throw std::runtime_error("mosquitto did not start: " + Output());
}

bool Broker::Launch() {
  process_ = std::make_unique<Process>(std::vector<std::string>{MOSQUITTO_BINARY, "-c", conf_},
                                       dir_.File("mosquitto.log"));
  if (WaitFor([&] { return TcpOpen(port_) || !process_->Running(); },
              std::chrono::milliseconds(5000)) &&
      process_->Running()) {
    return true;
  }
  process_->Stop();
  return false;
}

bool Broker::Restart() {
  Stop();
  return Start();
}

void Broker::Stop() { process_->Stop(); }

bool Broker::Start() {
  // The port may linger a moment after the old listener closed.
  return WaitFor([&] { return Launch(); }, std::chrono::milliseconds(10000));
}

Komoku::Komoku(const TempDir& dir, const Broker& broker, const std::string& extra_yaml,
               const std::string& store_yaml, const std::string& http_yaml)
    : dir_(dir) {
  config_path_ = dir.File("komoku.yaml");
  ready_path_ = dir.File("komoku.ready");
  base_yaml_ =
      "mqtt:\n"
      "  broker: " +
      broker.url() +
      "\n"
      "  client_id: komoku-it\n"
      "store:\n"
      "  data_dir: " +
      dir.File("data") + "\n" + store_yaml +
      "http:\n"
      "  listen: 127.0.0.1:0\n" +
      http_yaml +
      "log:\n"
      "  level: debug\n";
  RewriteConfig(extra_yaml);
}

void Komoku::RewriteConfig(const std::string& extra_yaml) {
  // A new file renamed over the old: the service never reads half of it.
  std::string tmp = config_path_ + ".tmp";
  std::ofstream(tmp) << base_yaml_ << extra_yaml;
  std::filesystem::rename(tmp, config_path_);
}

Komoku::Komoku(const TempDir& dir, const std::string& mqtt_yaml, const std::string& extra_yaml)
    : dir_(dir) {
  config_path_ = dir.File("komoku.yaml");
  ready_path_ = dir.File("komoku.ready");
  base_yaml_ = "mqtt:\n" + mqtt_yaml +
               "  client_id: komoku-it\n"
               "store:\n"
               "  data_dir: " +
               dir.File("data") +
               "\n"
               "http:\n"
               "  listen: 127.0.0.1:0\n"
               "log:\n"
               "  level: debug\n";
  RewriteConfig(extra_yaml);
}

Komoku::~Komoku() {
  if (process_) process_->Stop();
}

bool Komoku::Start() {
  std::filesystem::remove(ready_path_);
  process_ =
      std::make_unique<Process>(std::vector<std::string>{KOMOKU_BINARY, "run", "-c", config_path_,
                                                         "--ready-file", ready_path_},
                                dir_.File("komoku.log"));
  ++runs_;
  if (!WaitFor([&] { return std::filesystem::exists(ready_path_) || !process_->Running(); })) {
    return false;
  }
  if (!process_->Running()) return false;
  std::ifstream in(ready_path_);
  nlohmann::json ready = nlohmann::json::parse(in);
  http_port_ = ready.at("http_port").get<int>();
  return WaitFor([&] {
    Reply r = Get("/healthz");
    return r.status == 200 && r.Json()["mqtt"]["subscribed"].get<bool>();
  });
}

nlohmann::json Komoku::Reply::Json() const {
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

namespace {
void Prepare(httplib::Client& cli, const std::string& token) {
  cli.set_connection_timeout(std::chrono::seconds(5));
  cli.set_read_timeout(std::chrono::seconds(10));
  if (!token.empty()) cli.set_bearer_token_auth(token);
}
}  // namespace

Komoku::Reply Komoku::Get(const std::string& path_and_query) const {
  httplib::Client cli("127.0.0.1", http_port_);
  Prepare(cli, token_);
  auto res = cli.Get(path_and_query);
  if (!res) return {0, "no answer: " + httplib::to_string(res.error())};
  return {res->status, res->body};
}

Komoku::Reply Komoku::Put(const std::string& path_and_query, const std::string& body) const {
  httplib::Client cli("127.0.0.1", http_port_);
  Prepare(cli, token_);
  auto res = cli.Put(path_and_query, body, "text/plain");
  if (!res) return {0, "no answer: " + httplib::to_string(res.error())};
  return {res->status, res->body};
}

Komoku::Reply Komoku::Post(const std::string& path_and_query, const std::string& body,
                           const std::string& content_type) const {
  httplib::Client cli("127.0.0.1", http_port_);
  Prepare(cli, token_);
  auto res = cli.Post(path_and_query, body, content_type);
  if (!res) return {0, "no answer: " + httplib::to_string(res.error())};
  return {res->status, res->body};
}

Komoku::Reply Komoku::Delete(const std::string& path_and_query) const {
  httplib::Client cli("127.0.0.1", http_port_);
  Prepare(cli, token_);
  auto res = cli.Delete(path_and_query);
  if (!res) return {0, "no answer: " + httplib::to_string(res.error())};
  return {res->status, res->body};
}

long long Komoku::Metric(const std::string& series) const {
  Reply r = Get("/metrics");
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      // Seconds are floats ("0.25", "1e-05"): their whole part.
      return static_cast<long long>(std::stod(line.substr(series.size() + 1)));
    }
  }
  return 0;
}

class MqttClient::Impl {
 public:
  Impl(const std::string& url, const std::string& client_id) : client(url, client_id) {
    client.set_message_callback([this](const mqtt::const_message_ptr& m) {
      auto now = std::chrono::system_clock::now();
      std::lock_guard<std::mutex> lock(mu);
      received.push_back({m->get_topic(), m->get_payload_str(), now});
    });
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    client.connect(opts)->wait();
  }
  mqtt::async_client client;
  std::mutex mu;
  std::vector<MqttClient::TimedMessage> received;  // guarded by mu
};

MqttClient::MqttClient(const std::string& url, const std::string& client_id)
    : impl_(std::make_unique<Impl>(url, client_id)) {}

MqttClient::~MqttClient() {
  try {
    impl_->client.disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const std::exception&) {
  }
}

void MqttClient::Publish(const std::string& topic, const std::string& payload, int qos,
                         bool retained) {
  impl_->client.publish(topic, payload.data(), payload.size(), qos, retained)->wait();
}

void MqttClient::Subscribe(const std::string& filter) {
  impl_->client.subscribe(filter, 1)->wait();
}

std::vector<std::pair<std::string, std::string>> MqttClient::Received() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : impl_->received) out.emplace_back(m.topic, m.payload);
  return out;
}

std::vector<MqttClient::TimedMessage> MqttClient::ReceivedWithTimes() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->received;
}

class Mqtt5Client::Impl {
 public:
  Impl(const std::string& url, const std::string& client_id)
      : client(url, client_id, mqtt::create_options(MQTTVERSION_5)) {
    client.set_message_callback([this](const mqtt::const_message_ptr& m) {
      Message msg{m->get_topic(), m->get_payload_str(), "", "", false};
      const mqtt::properties& props = m->get_properties();
      if (props.contains(mqtt::property::RESPONSE_TOPIC)) {
        msg.response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
      }
      if (props.contains(mqtt::property::CORRELATION_DATA)) {
        msg.correlation_data = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
        msg.has_correlation_data = true;
      }
      std::lock_guard<std::mutex> lock(mu);
      received.push_back(std::move(msg));
    });
    // Field by field: Paho C++ 1.2.0's connect_options_builder loses the MQTT
    // 5 properties when it copies the options.
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_5);
    opts.set_clean_start(true);
    client.connect(opts)->wait();
  }
  mqtt::async_client client;
  std::mutex mu;
  std::vector<Message> received;  // guarded by mu
};

Mqtt5Client::Mqtt5Client(const std::string& url, const std::string& client_id)
    : impl_(std::make_unique<Impl>(url, client_id)) {}

Mqtt5Client::~Mqtt5Client() {
  try {
    impl_->client.disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const std::exception&) {
  }
}

void Mqtt5Client::Publish(const std::string& topic, const std::string& payload,
                          const std::string& response_topic, const std::string& correlation_data) {
  auto msg = mqtt::make_message(topic, payload, 1, false);
  mqtt::properties props;
  if (!response_topic.empty()) {
    props.add(mqtt::property(mqtt::property::RESPONSE_TOPIC, response_topic));
  }
  if (!correlation_data.empty()) {
    props.add(mqtt::property(mqtt::property::CORRELATION_DATA, mqtt::binary(correlation_data)));
  }
  msg->set_properties(props);
  impl_->client.publish(msg)->wait();
}

void Mqtt5Client::Subscribe(const std::string& filter) {
  impl_->client.subscribe(filter, 1)->wait();
}

std::vector<Mqtt5Client::Message> Mqtt5Client::Received() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->received;
}

std::optional<Mqtt5Client::Message> Mqtt5Client::WaitForMessage(
    const std::function<bool(const Message&)>& match, std::chrono::milliseconds timeout) {
  std::optional<Message> found;
  WaitFor(
      [&] {
        for (const Message& m : Received()) {
          if (match(m)) {
            found = m;
            return true;
          }
        }
        return false;
      },
      timeout);
  return found;
}

class SseClient::Impl {
 public:
  Impl(int port, const std::string& path_and_query) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      Finish();
      return;
    }
    std::string request = "GET " + path_and_query +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                          "Connection: close\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      Finish();
      return;
    }
    reader = std::thread([this] { Read(); });
  }

  ~Impl() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (fd >= 0) shutdown(fd, SHUT_RDWR);
    }
    if (reader.joinable()) reader.join();
    std::lock_guard<std::mutex> lock(mu);
    if (fd >= 0) close(fd);
    fd = -1;
    closed = true;
    cv.notify_all();
  }

  void Finish() {
    std::lock_guard<std::mutex> lock(mu);
    closed = true;
    cv.notify_all();
  }

  // Reads the answer: status line and headers, then the body, decoding the
  // chunked transfer encoding, and feeds it to the event parser.
  void Read() {
    std::string raw;
    char buf[4096];
    bool have_headers = false;
    bool chunked = false;
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      raw.append(buf, static_cast<size_t>(n));
      if (!have_headers) {
        size_t end = raw.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        std::string head = raw.substr(0, end);
        raw.erase(0, end + 4);
        have_headers = true;
        std::string lower = head;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
        int code = 0;
        if (head.size() > 12) code = std::atoi(head.c_str() + 9);
        std::lock_guard<std::mutex> lock(mu);
        status = code;
        cv.notify_all();
      }
      if (!chunked) {
        Feed(raw);
        raw.clear();
        continue;
      }
      // Decode every complete chunk in `raw`.
      for (;;) {
        size_t line_end = raw.find("\r\n");
        if (line_end == std::string::npos) break;
        size_t size = std::strtoul(raw.substr(0, line_end).c_str(), nullptr, 16);
        if (raw.size() < line_end + 2 + size + 2) break;
        Feed(raw.substr(line_end + 2, size));
        raw.erase(0, line_end + 2 + size + 2);
        if (size == 0) {
          Finish();
          return;
        }
      }
    }
    Finish();
  }

  void Feed(const std::string& data) {
    std::lock_guard<std::mutex> lock(mu);
    body += data;
    pending += data;
    size_t pos;
    while ((pos = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, pos);
      pending.erase(0, pos + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) {
        if (has_field) {
          if (current.event.empty()) current.event = "message";
          events.push_back(current);
        }
        current = Event{};
        has_field = false;
        continue;
      }
      if (line[0] == ':') continue;  // a comment (keepalive)
      size_t colon = line.find(':');
      std::string field = line.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      has_field = true;
      if (field == "event") {
        current.event = value;
      } else if (field == "id") {
        current.id = value;
      } else if (field == "data") {
        current.data += (current.data.empty() ? "" : "\n") + value;
      }
    }
    cv.notify_all();
  }

  int fd = -1;  // written only before the reader starts and after it ends
  std::thread reader;
  std::mutex mu;
  std::condition_variable cv;
  int status = 0;             // guarded by mu
  bool closed = false;        // guarded by mu
  std::string body;           // guarded by mu
  std::string pending;        // guarded by mu: an incomplete line
  Event current;              // guarded by mu
  bool has_field = false;     // guarded by mu
  std::vector<Event> events;  // guarded by mu
};

SseClient::SseClient(int port, const std::string& path_and_query)
    : impl_(std::make_unique<Impl>(port, path_and_query)) {}

SseClient::~SseClient() = default;

int SseClient::WaitStatus(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] { return impl_->status != 0 || impl_->closed; });
  return impl_->status;
}

std::string SseClient::Body() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->body;
}

std::vector<SseClient::Event> SseClient::Events() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->events;
}

bool SseClient::WaitForEvents(const std::function<bool(const std::vector<Event>&)>& cond,
                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return cond(impl_->events); });
}

bool SseClient::Closed() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->closed;
}

void SseClient::Stop() { impl_->Stop(); }

void DumpOnFailure(const Broker& broker, const Komoku& komoku) {
  if (!::testing::Test::HasFailure()) return;
  std::cerr << "----- komoku output -----\n"
            << komoku.Output() << "----- mosquitto output -----\n"
            << broker.Output() << "-----\n";
}

int RunTool(const TempDir& dir, std::vector<std::string> argv, const std::string& log_name,
            std::string* output) {
  Process p(std::move(argv), dir.File(log_name));
  int status = p.Wait(std::chrono::seconds(60));
  if (output) *output = p.Output();
  return status;
}

std::unique_ptr<Process> StartPrometheus(const TempDir& dir, const PrometheusOptions& options,
                                         const std::function<bool(int port)>& ready, int* port) {
  const std::string conf = dir.File("prometheus.yml");
  std::ofstream(conf) << options.config;
  for (int attempt = 0; attempt < options.tries; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::seconds(1));
    *port = options.port != 0 ? options.port : FreeLoopbackPort();
    std::vector<std::string> argv{PROMETHEUS_BINARY, "--config.file=" + conf,
                                  "--storage.tsdb.path=" + dir.File("tsdb"),
                                  "--web.listen-address=127.0.0.1:" + std::to_string(*port)};
    argv.insert(argv.end(), options.args.begin(), options.args.end());
    auto p = std::make_unique<Process>(argv, dir.File(options.log_name));
    if (WaitFor([&] { return !p->Running() || ready(*port); }, options.ready_timeout) &&
        p->Running()) {
      return p;
    }
    p->Stop();
  }
  return nullptr;
}

void MakeCert(const TempDir& dir, const std::string& name, const std::string& cn,
              const std::string& ca_crt, const std::string& ca_key, const std::string& extensions) {
  const std::string key = dir.File(name + ".key");
  const std::string crt = dir.File(name + ".crt");
  ASSERT_TRUE(std::filesystem::exists(OPENSSL_BINARY))
      << OPENSSL_BINARY << " is missing: scripts/install-deps.sh test";
  std::string out;
  if (ca_crt.empty()) {
    ASSERT_EQ(RunTool(dir,
                      {OPENSSL_BINARY, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                       "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                       "-days", "2", "-subj", "/CN=" + cn},
                      name + ".log", &out),
              0)
        << out;
    return;
  }
  const std::string csr = dir.File(name + ".csr");
  const std::string ext = dir.File(name + ".ext");
  std::ofstream(ext) << extensions << "\n";
  ASSERT_EQ(RunTool(dir,
                    {OPENSSL_BINARY, "req", "-new", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj",
                     "/CN=" + cn},
                    name + "-req.log", &out),
            0)
      << out;
  ASSERT_EQ(RunTool(dir,
                    {OPENSSL_BINARY, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                     "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext},
                    name + "-sign.log", &out),
            0)
      << out;
}

}  // namespace komoku::testing

#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

extern char** environ;

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

Process::Process(std::vector<std::string> argv, std::string log_path)
    : log_path_(std::move(log_path)) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // The child must not inherit a blocked or ignored SIGTERM.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int rc = posix_spawn(&pid_, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
}

Process::~Process() { Stop(); }

int Process::Reap(bool block) {
  if (pid_ <= 0) return status_;
  int st = 0;
  pid_t r = waitpid(pid_, &st, block ? 0 : WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    pid_ = -1;
  }
  return status_;
}

bool Process::Running() {
  Reap(false);
  return pid_ > 0;
}

int Process::Wait(std::chrono::milliseconds timeout) {
  if (!WaitFor([&] { return !Running(); }, timeout)) return -1;
  return status_;
}

int Process::Stop(std::chrono::milliseconds grace) {
  if (!Running()) return status_;
  kill(pid_, SIGTERM);
  if (WaitFor([&] { return !Running(); }, grace)) return status_;
  kill(pid_, SIGKILL);
  return Reap(true);
}

void Process::Kill() {
  if (!Running()) return;
  kill(pid_, SIGKILL);
  Reap(true);
}

std::string Process::Output() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
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

Broker::Broker(const TempDir& dir) {
  // The port can be taken between FreeLoopbackPort() and mosquitto's bind;
  // try a few.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreeLoopbackPort();
    std::string conf = dir.File("mosquitto-" + std::to_string(attempt) + ".conf");
    std::ofstream(conf) << "listener " << port_ << " 127.0.0.1\n"
                        << "allow_anonymous true\n"
                        << "max_queued_messages 100000\n";
    process_ = std::make_unique<Process>(std::vector<std::string>{MOSQUITTO_BINARY, "-c", conf},
                                         dir.File("mosquitto.log"));
    if (WaitFor([&] { return TcpOpen(port_) || !process_->Running(); },
                std::chrono::milliseconds(5000)) &&
        process_->Running()) {
      return;
    }
    process_->Stop();
  }
  throw std::runtime_error("mosquitto did not start: " + Output());
}

Komoku::Komoku(const TempDir& dir, const Broker& broker, std::string extra_yaml) : dir_(dir) {
  config_path_ = dir.File("komoku.yaml");
  ready_path_ = dir.File("komoku.ready");
  std::ofstream(config_path_) << "mqtt:\n"
                              << "  broker: " << broker.url() << "\n"
                              << "  client_id: komoku-it\n"
                              << "store:\n"
                              << "  data_dir: " << dir.File("data") << "\n"
                              << "http:\n"
                              << "  listen: 127.0.0.1:0\n"
                              << "log:\n"
                              << "  level: debug\n"
                              << extra_yaml;
}

Komoku::~Komoku() {
  if (process_) process_->Stop();
}

bool Komoku::Start() {
  std::filesystem::remove(ready_path_);
  process_ = std::make_unique<Process>(
      std::vector<std::string>{KOMOKU_BINARY, "run", "-c", config_path_, "--ready-file",
                               ready_path_},
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

Komoku::Reply Komoku::Get(const std::string& path_and_query) const {
  httplib::Client cli("127.0.0.1", http_port_);
  cli.set_connection_timeout(std::chrono::seconds(5));
  cli.set_read_timeout(std::chrono::seconds(10));
  auto res = cli.Get(path_and_query);
  if (!res) return {0, "no answer: " + httplib::to_string(res.error())};
  return {res->status, res->body};
}

Komoku::Reply Komoku::Put(const std::string& path_and_query, const std::string& body) const {
  httplib::Client cli("127.0.0.1", http_port_);
  cli.set_connection_timeout(std::chrono::seconds(5));
  cli.set_read_timeout(std::chrono::seconds(10));
  auto res = cli.Put(path_and_query, body, "text/plain");
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
      return std::stoll(line.substr(series.size() + 1));
    }
  }
  return 0;
}

class MqttClient::Impl {
 public:
  Impl(const std::string& url, const std::string& client_id) : client(url, client_id) {
    client.set_message_callback([this](mqtt::const_message_ptr m) {
      std::lock_guard<std::mutex> lock(mu);
      received.emplace_back(m->get_topic(), m->get_payload_str());
    });
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    client.connect(opts)->wait();
  }
  mqtt::async_client client;
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> received;
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
  return impl_->received;
}

void DumpOnFailure(const Broker& broker, const Komoku& komoku) {
  if (!::testing::Test::HasFailure()) return;
  std::cerr << "----- komoku output -----\n"
            << komoku.Output() << "----- mosquitto output -----\n"
            << broker.Output() << "-----\n";
}

}  // namespace komoku::testing

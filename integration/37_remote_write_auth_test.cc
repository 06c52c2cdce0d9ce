// 37: remote write through TLS, basic auth and a bearer token into real
// receivers, and against a receiver that hangs (issue 23). The receivers are
// Debian's Prometheus 2.42 (--web.enable-remote-write-receiver, with a
// --web.config.file for TLS and basic auth; the certificates made by the
// openssl command line, the bcrypt hash by htpasswd) and Debian's nginx in
// front of it checking `Authorization: Bearer` (Prometheus has no bearer
// auth of its own); all on free loopback ports. A wrong CA, a wrong password
// and a wrong token each hold every change (retried, nothing counted as
// failed); after the config is fixed and komoku restarted, all of them
// arrive. A receiver that accepts the connection and answers nothing, or a
// byte now and then, is cut off after remote_write.timeout and retried;
// /readyz stays ready and says what is wrong in its remote_write part; and
// SIGTERM stops komoku cleanly while a request hangs.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

constexpr int kKeys = 5;
constexpr int kChangesPerKey = 20;
constexpr char kUser[] = "site7";
constexpr char kPassword[] = "right-password";
constexpr char kToken[] = "t0ken-for-komoku";

// A test-owned peer on 127.0.0.1 that accepts connections and reads what
// comes, but never answers (kSilent) or answers a status line and then one
// header byte every 300 ms, for ever (kDrip): a hung receiver, not an
// imitation of the protocol.
class HungPeer {
 public:
  enum class Mode { kSilent, kDrip };
  explicit HungPeer(Mode mode) : mode_(mode) {
    // Close-on-exec: komoku and Prometheus, started later, must not hold it.
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 16) != 0) {
      throw std::runtime_error("HungPeer: cannot listen");
    }
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~HungPeer() { Stop(); }
  int port() const { return port_; }
  int connections() const { return connections_; }
  size_t bytes_read() const { return bytes_read_; }
  // Closes the listener and every connection.
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
  }

 private:
  void Serve() {
    std::vector<int> conns;
    std::map<int, size_t> dripped;  // connection -> bytes of kDripText sent
    const std::string status_line = "HTTP/1.1 200 OK\r\n";
    auto last_drip = std::chrono::steady_clock::now();
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (int c : conns) fds.push_back({c, POLLIN, 0});
      poll(fds.data(), fds.size(), 100);
      if (fds[0].revents & POLLIN) {
        int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          conns.push_back(c);
          ++connections_;
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        ssize_t n = read(fds[i].fd, buf, sizeof(buf));
        if (n > 0) {
          bytes_read_ += static_cast<size_t>(n);
        } else {
          close(fds[i].fd);
          conns.erase(std::find(conns.begin(), conns.end(), fds[i].fd));
          dripped.erase(fds[i].fd);
        }
      }
      if (mode_ == Mode::kDrip &&
          std::chrono::steady_clock::now() - last_drip >= std::chrono::milliseconds(300)) {
        last_drip = std::chrono::steady_clock::now();
        for (int c : conns) {
          if (bytes_read_ == 0) break;
          size_t& sent = dripped[c];
          // The status line, then an endless header value.
          const char byte = sent < status_line.size()        ? status_line[sent]
                            : sent == status_line.size()     ? 'X'
                            : sent == status_line.size() + 1 ? ':'
                                                             : 'a';
          if (send(c, &byte, 1, MSG_NOSIGNAL) == 1) ++sent;
        }
      }
    }
    for (int c : conns) close(c);
  }

  Mode mode_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<size_t> bytes_read_{0};
};

// The systemd notification socket komoku is given (NOTIFY_SOCKET, with
// WATCHDOG_USEC so that it feeds a watchdog), read all the time on a
// thread of its own as systemd reads it (a full socket would block the
// sender).
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path.size() >= sizeof(addr.sun_path)) {
      throw std::runtime_error("NotifySocket: cannot make " + path);
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("NotifySocket: cannot bind " + path);
    }
    thread_ = std::thread([this] { Read(); });
  }
  ~NotifySocket() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  const std::string& path() const { return path_; }
  // Waits for a WATCHDOG=1 received after `after`.
  bool WaitForWatchdogPing(std::chrono::steady_clock::time_point after) {
    return WaitFor(
        [&] {
          std::lock_guard<std::mutex> lock(mu_);
          for (const auto& [when, text] : received_) {
            if (when > after && text.find("WATCHDOG=1") != std::string::npos) return true;
          }
          return false;
        },
        std::chrono::seconds(10));
  }

 private:
  void Read() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      received_.emplace_back(std::chrono::steady_clock::now(),
                             std::string(buf, static_cast<size_t>(n)));
    }
  }

  std::string path_;
  int fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> received_;
};

class RemoteWriteAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    base_ms_ = NowMs() - 20000;
  }
  void TearDown() override {
    if (HasFailure()) {
      if (prometheus_) std::cerr << "----- prometheus output -----\n" << prometheus_->Output();
      if (nginx_) {
        std::ifstream err(dir_.File("nginx-error.log"));
        std::cerr << "----- nginx error log -----\n" << err.rdbuf() << "\n";
      }
      if (komoku_) DumpOnFailure(*broker_, *komoku_);
    }
    komoku_.reset();
    if (nginx_) nginx_->Stop();
    if (prometheus_) prometheus_->Stop();
  }

  // The test's CA ("ca"), a server certificate for 127.0.0.1 it signed
  // ("server"), and a CA that signed nothing here ("other-ca").
  void MakePki() {
    MakeCert(dir_, "ca", "komoku-rw-test-ca", "", "", "");
    MakeCert(dir_, "server", "127.0.0.1", dir_.File("ca.crt"), dir_.File("ca.key"),
             "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth");
    MakeCert(dir_, "other-ca", "komoku-rw-other-ca", "", "", "");
  }

  // The bcrypt hash of kPassword, made by htpasswd.
  std::string BcryptOfPassword() {
    EXPECT_TRUE(std::filesystem::exists(HTPASSWD_BINARY))
        << HTPASSWD_BINARY << " is missing: scripts/install-deps.sh test (apache2-utils)";
    std::string out;
    EXPECT_EQ(RunTool(dir_, {HTPASSWD_BINARY, "-nbB", kUser, kPassword}, "htpasswd.log", &out), 0)
        << out;
    // "site7:$2y$05$...\n"
    const size_t colon = out.find(':');
    const size_t end = out.find_first_of("\r\n", colon);
    return colon == std::string::npos ? "" : out.substr(colon + 1, end - colon - 1);
  }

  // Starts Prometheus as a remote write receiver on a free port (or
  // `port`), with `web_yaml` as its --web.config.file when not empty.
  bool StartPrometheus(const std::string& web_yaml, int port = 0) {
    PrometheusOptions o;
    o.args = {"--web.enable-remote-write-receiver"};
    if (!web_yaml.empty()) {
      std::ofstream(dir_.File("web.yml")) << web_yaml;
      o.args.push_back("--web.config.file=" + dir_.File("web.yml"));
    }
    o.port = port;
    prometheus_ = komoku::testing::StartPrometheus(
        dir_, o, [&](int) { return Query("up").status == 200; }, &prom_port_);
    return prometheus_ != nullptr;
  }

  // nginx on a free port in front of Prometheus: `Authorization: Bearer
  // kToken` or 401.
  bool StartNginx() {
    EXPECT_TRUE(std::filesystem::exists(NGINX_BINARY))
        << NGINX_BINARY << " is missing: scripts/install-deps.sh test (nginx)";
    for (int attempt = 0; attempt < 5; ++attempt) {
      nginx_port_ = FreeLoopbackPort();
      const std::string conf = dir_.File("nginx.conf");
      const std::string d = dir_.path();
      // One process (no workers to drop to another user), everything it
      // writes in the test's directory.
      std::ofstream(conf) << "daemon off;\nmaster_process off;\n"
                          << "pid " << d << "/nginx.pid;\n"
                          << "error_log " << d << "/nginx-error.log info;\n"
                          << "events { worker_connections 64; }\n"
                          << "http {\n"
                          << "  access_log " << d << "/nginx-access.log;\n"
                          << "  client_body_temp_path " << d << "/nginx-body;\n"
                          << "  proxy_temp_path " << d << "/nginx-proxy;\n"
                          << "  fastcgi_temp_path " << d << "/nginx-fastcgi;\n"
                          << "  uwsgi_temp_path " << d << "/nginx-uwsgi;\n"
                          << "  scgi_temp_path " << d << "/nginx-scgi;\n"
                          << "  client_max_body_size 16m;\n"
                          << "  server {\n"
                          << "    listen 127.0.0.1:" << nginx_port_ << ";\n"
                          << "    location / {\n"
                          << "      if ($http_authorization != \"Bearer " << kToken << "\") {\n"
                          << "        return 401;\n"
                          << "      }\n"
                          << "      proxy_pass http://127.0.0.1:" << prom_port_ << ";\n"
                          << "    }\n"
                          << "  }\n"
                          << "}\n";
      nginx_ = std::make_unique<Process>(
          std::vector<std::string>{NGINX_BINARY, "-p", d, "-e", d + "/nginx-start.log", "-c", conf},
          dir_.File("nginx.out"));
      if (WaitFor([&] { return NginxStatus("") != 0 || !nginx_->Running(); },
                  std::chrono::seconds(30)) &&
          nginx_->Running()) {
        return true;
      }
      nginx_->Stop();
    }
    return false;
  }
  // The status of GET /api/v1/query?query=up through nginx with `token`
  // (none when empty); 0 when there was no answer.
  int NginxStatus(const std::string& token) const {
    httplib::Client cli("127.0.0.1", nginx_port_);
    cli.set_connection_timeout(std::chrono::seconds(2));
    cli.set_read_timeout(std::chrono::seconds(30));
    if (!token.empty()) cli.set_bearer_token_auth(token);
    auto res = cli.Get("/api/v1/query?query=up");
    return res ? res->status : 0;
  }

  // A client for Prometheus's HTTP API, over TLS and with basic auth when
  // it runs with them.
  std::unique_ptr<httplib::Client> PrometheusClient() const {
    auto cli = std::make_unique<httplib::Client>(
        (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(prom_port_));
    if (tls_) cli->set_ca_cert_path(dir_.File("ca.crt"));
    if (basic_auth_) cli->set_basic_auth(kUser, kPassword);
    cli->set_connection_timeout(std::chrono::seconds(2));
    cli->set_read_timeout(std::chrono::seconds(30));
    return cli;
  }
  struct Answer {
    int status = 0;
    json body;
  };
  Answer Query(const std::string& promql, int64_t time_ms = 0) const {
    std::string path = "/api/v1/query?query=" + httplib::detail::encode_query_param(promql);
    if (time_ms) path += "&time=" + Seconds(time_ms);
    auto res = PrometheusClient()->Get(path);
    if (!res) return {};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  void StartKomoku(const std::string& remote_write_yaml) {
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "remote_write:\n" + remote_write_yaml);
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  }
  // Stops komoku (cleanly), gives it `remote_write_yaml` and starts it again.
  void RestartKomoku(const std::string& remote_write_yaml) {
    ASSERT_EQ(komoku_->Stop(), 0);
    komoku_->RewriteConfig("remote_write:\n" + remote_write_yaml);
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  }
  static std::string Url(const std::string& scheme, int port) {
    return "  url: " + scheme + "://127.0.0.1:" + std::to_string(port) + "/api/v1/write\n" +
           "  send_interval: 200\n";
  }

  static std::string Key(int k) { return "rwa/sensor" + std::to_string(k); }
  int64_t TimeOf(int j) const { return base_ms_ + j * 100; }
  static double ValueOf(int k, int j) { return k * 1000 + j + 0.5; }

  // Puts every change over MQTT (interleaved keys).
  void PutChanges() {
    MqttClient mqtt(broker_->url(), "it-rwa-publisher");
    for (int j = 0; j < kChangesPerKey; ++j) {
      for (int k = 0; k < kKeys; ++k) {
        mqtt.Publish("komoku/set/" + Key(k), "{\"value\": " + std::to_string(ValueOf(k, j)) +
                                                 ", \"time\": " + Seconds(TimeOf(j)) + "}");
      }
    }
  }
  // Waits until komoku has stored every change (so a restart cannot lose
  // one on the way).
  bool WaitForStored() {
    return WaitFor(
        [&] {
          auto r = komoku_->Get("/api/v1/history?key=" + Key(kKeys - 1) + "&from=0");
          return r.status == 200 && r.Json()["rows"].size() == static_cast<size_t>(kChangesPerKey);
        },
        std::chrono::seconds(60));
  }

  // Samples the receiver holds: key -> (time ms -> value).
  std::map<std::string, std::map<int64_t, double>> Held() const {
    std::map<std::string, std::map<int64_t, double>> out;
    Answer a = Query("{__name__=~\"rwa_sensor.*\"}[10m]", TimeOf(kChangesPerKey) + 1000);
    if (a.status != 200 || !a.body.is_object()) return out;
    for (const json& series : a.body["data"]["result"]) {
      auto& samples = out[series["metric"].value("key", "")];
      for (const json& v : series["values"]) {
        samples[std::llround(v[0].get<double>() * 1000)] = std::stod(v[1].get<std::string>());
      }
    }
    return out;
  }
  size_t HeldCount() const {
    size_t n = 0;
    for (const auto& [key, samples] : Held()) n += samples.size();
    return n;
  }
  // Every change of every key arrived, exactly, and nothing was counted as
  // failed.
  void ExpectAllArrive() {
    ASSERT_TRUE(
        WaitFor([&] { return HeldCount() >= kKeys * kChangesPerKey; }, std::chrono::seconds(120)))
        << "the receiver holds " << HeldCount() << " samples of " << kKeys * kChangesPerKey;
    auto held = Held();
    ASSERT_EQ(held.size(), static_cast<size_t>(kKeys));
    for (int k = 0; k < kKeys; ++k) {
      const auto& samples = held[Key(k)];
      ASSERT_EQ(samples.size(), static_cast<size_t>(kChangesPerKey)) << Key(k);
      for (int j = 0; j < kChangesPerKey; ++j) {
        auto it = samples.find(TimeOf(j));
        ASSERT_NE(it, samples.end()) << Key(k) << " change " << j;
        EXPECT_EQ(it->second, ValueOf(k, j)) << Key(k) << " change " << j;
      }
    }
    EXPECT_EQ(komoku_->Metric("komoku_remote_write_failed_total"), 0);
    EXPECT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_remote_write_pending") == 0; }));
  }

  // While the receiver refuses komoku: the changes are retried, not
  // dropped; none is sent, none counted as failed, all pending; /readyz
  // stays ready and its remote_write part names the error (`error_part`).
  void ExpectHeld(const std::string& error_part) {
    ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_remote_write_retries_total") >= 2; },
                        std::chrono::seconds(60)));
    EXPECT_EQ(komoku_->Metric("komoku_remote_write_sent_total"), 0);
    EXPECT_EQ(komoku_->Metric("komoku_remote_write_failed_total"), 0);
    EXPECT_GE(komoku_->Metric("komoku_remote_write_pending"), kKeys * kChangesPerKey);
    Komoku::Reply ready = komoku_->Get("/readyz");
    EXPECT_EQ(ready.status, 200) << ready.body;
    json rw = ready.Json()["remote_write"];
    ASSERT_TRUE(rw.is_object()) << ready.body;
    EXPECT_NE(rw.value("error", "").find(error_part), std::string::npos) << ready.body;
    EXPECT_GT(rw.value("failing_ms", 0), 0) << ready.body;
    EXPECT_LT(rw.value("stalled_ms", -1), 10000) << ready.body;
    EXPECT_GE(rw.value("stalled_ms", -1), 0) << ready.body;
    EXPECT_GE(rw.value("pending", 0), kKeys * kChangesPerKey) << ready.body;
    EXPECT_EQ(HeldCount(), 0u);
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  std::unique_ptr<Process> prometheus_;
  std::unique_ptr<Process> nginx_;
  int prom_port_ = 0;
  int nginx_port_ = 0;
  bool tls_ = false;
  bool basic_auth_ = false;
  int64_t base_ms_ = 0;
};

// https with the CA that signed the receiver's certificate: everything
// arrives. With another CA the handshake fails: retried, nothing lost.
TEST_F(RemoteWriteAuthTest, TlsWithAWrongCaHoldsEverythingAndTheRightCaSendsIt) {
  MakePki();
  ASSERT_FALSE(HasFatalFailure());
  tls_ = true;
  ASSERT_TRUE(StartPrometheus("tls_server_config:\n  cert_file: " + dir_.File("server.crt") +
                              "\n  key_file: " + dir_.File("server.key") + "\n"));
  // The receiver speaks only TLS.
  {
    httplib::Client plain("127.0.0.1", prom_port_);
    plain.set_read_timeout(std::chrono::seconds(10));
    auto res = plain.Get("/api/v1/query?query=up");
    EXPECT_TRUE(!res || res->status == 400) << (res ? res->body : "");
  }
  StartKomoku(Url("https", prom_port_) + "  ca_file: " + dir_.File("other-ca.crt") + "\n");
  PutChanges();
  ExpectHeld("SSLServerVerification");
  ASSERT_TRUE(WaitForStored());
  RestartKomoku(Url("https", prom_port_) + "  ca_file: " + dir_.File("ca.crt") + "\n");
  ExpectAllArrive();
}

// Prometheus's basic_auth_users (a bcrypt hash): a wrong password gets 401,
// which holds the changes (retried until the password is right); the right
// one sends them all.
TEST_F(RemoteWriteAuthTest, BasicAuthWithAWrongPasswordHoldsEverythingAndTheRightOneSendsIt) {
  const std::string hash = BcryptOfPassword();
  ASSERT_EQ(hash.rfind("$2", 0), 0u) << hash;
  basic_auth_ = true;
  ASSERT_TRUE(StartPrometheus("basic_auth_users:\n  " + std::string(kUser) + ": '" + hash + "'\n"));
  // Without credentials Prometheus refuses.
  {
    httplib::Client anonymous("127.0.0.1", prom_port_);
    auto res = anonymous.Get("/api/v1/query?query=up");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
  }
  std::ofstream(dir_.File("password")) << "wrong-password\n";
  const std::string auth =
      std::string("  username: ") + kUser + "\n  password_file: " + dir_.File("password") + "\n";
  StartKomoku(Url("http", prom_port_) + auth);
  PutChanges();
  ExpectHeld("HTTP 401");
  ASSERT_TRUE(WaitForStored());
  std::ofstream(dir_.File("password")) << kPassword << "\n";
  RestartKomoku(Url("http", prom_port_) + auth);
  ExpectAllArrive();
}

// A bearer token, checked by nginx in front of Prometheus: a wrong token
// gets nginx's 401 and holds everything; the right one sends it all.
TEST_F(RemoteWriteAuthTest, BearerTokenThroughNginxWrongHoldsRightSends) {
  ASSERT_TRUE(StartPrometheus(""));
  ASSERT_TRUE(StartNginx());
  ASSERT_EQ(NginxStatus(""), 401);
  ASSERT_EQ(NginxStatus("not-the-token"), 401);
  ASSERT_EQ(NginxStatus(kToken), 200);
  std::ofstream(dir_.File("token")) << "not-the-token\n";
  const std::string auth = "  bearer_token_file: " + dir_.File("token") + "\n";
  StartKomoku(Url("http", nginx_port_) + auth);
  PutChanges();
  ExpectHeld("HTTP 401");
  ASSERT_TRUE(WaitForStored());
  std::ofstream(dir_.File("token")) << kToken << "\n";
  RestartKomoku(Url("http", nginx_port_) + auth);
  ExpectAllArrive();
}

// A receiver that takes the request and answers nothing: each request is
// cut off after remote_write.timeout and retried; komoku stays ready (its
// thread is not stuck) and /readyz's remote_write part shows it behind and
// why. Once a real receiver listens on that port, everything arrives.
TEST_F(RemoteWriteAuthTest, SilentReceiverIsCutOffAtTheTimeoutAndNothingIsLost) {
  auto peer = std::make_unique<HungPeer>(HungPeer::Mode::kSilent);
  const int port = peer->port();
  StartKomoku(Url("http", port) + "  timeout: 1s\n");
  PutChanges();
  ExpectHeld("no complete answer within 1000 ms");
  EXPECT_GE(peer->connections(), 2);
  ASSERT_TRUE(WaitForStored());
  peer.reset();
  ASSERT_TRUE(StartPrometheus("", port));
  ExpectAllArrive();
}

// A receiver that answers a byte every 300 ms and never finishes: each
// read is within the per-read timeout, so only a deadline on the whole
// request ends it. Without one the thread hangs for good (and /readyz,
// after the timeouts it allows, calls it stuck, and the systemd watchdog
// goes unfed); with it, requests are cut off and retried, komoku stays
// ready and keeps feeding the watchdog.
TEST_F(RemoteWriteAuthTest, DrippingReceiverIsCutOffAtTheTimeout) {
  HungPeer peer(HungPeer::Mode::kDrip);
  NotifySocket notify(dir_.File("notify.sock"));
  setenv("NOTIFY_SOCKET", notify.path().c_str(), 1);
  setenv("WATCHDOG_USEC", "2000000", 1);
  StartKomoku(Url("http", peer.port()) + "  timeout: 1s\n");
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(notify.WaitForWatchdogPing(std::chrono::steady_clock::time_point()))
      << "komoku does not feed the watchdog at all";
  PutChanges();
  ExpectHeld("no complete answer within 1000 ms (cut off)");
  // Long enough for a hung thread to count as stuck (twice the timeout
  // plus /readyz's 10 s): still ready, and not stuck.
  std::this_thread::sleep_for(std::chrono::seconds(13));
  Komoku::Reply ready = komoku_->Get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_LT(ready.Json()["remote_write"].value("stalled_ms", -1), 10000) << ready.body;
  EXPECT_GE(ready.Json()["remote_write"].value("stalled_ms", -1), 0) << ready.body;
  EXPECT_GE(komoku_->Metric("komoku_remote_write_retries_total"), 4);
  EXPECT_TRUE(notify.WaitForWatchdogPing(std::chrono::steady_clock::now()))
      << "the watchdog is no longer fed";
}

// SIGTERM while a request waits on a receiver that never answers (a
// timeout of 10 minutes): komoku stops cleanly (exit 0, not the stop
// deadline's 3 nor a kill) and well before the request's timeout.
TEST_F(RemoteWriteAuthTest, SigtermStopsCleanlyWhileARequestHangs) {
  HungPeer peer(HungPeer::Mode::kSilent);
  StartKomoku(Url("http", peer.port()) + "  timeout: 10m\n");
  PutChanges();
  ASSERT_TRUE(WaitFor([&] { return peer.bytes_read() > 0; }, std::chrono::seconds(60)));
  ASSERT_TRUE(WaitForStored());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(komoku_->process()->Stop(std::chrono::seconds(120)), 0) << komoku_->Output();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  EXPECT_EQ(komoku_->Output().find("the stop has not finished"), std::string::npos);
}

}  // namespace
}  // namespace komoku::testing

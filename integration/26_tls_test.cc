// 26: TLS to the broker. The test makes a CA, a server certificate for
// 127.0.0.1 and a client certificate with the openssl command line, runs
// Mosquitto with a TLS listener that requires client certificates, and
// checks that komoku connects over mqtts:// and ssl://, stores what arrives
// and publishes its state; that with a CA that did not sign the broker's
// certificate, or without a client certificate, it stays out, says why in
// its log and answers /readyz 503; and that check-config refuses a missing
// or wrong file and a TLS setting with a tcp:// broker, naming the line.
#include <gtest/gtest.h>
#include <mqtt/async_client.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

// The certificates, made fresh by each test.
struct Pki {
  std::string ca_crt, ca_key;
  std::string server_crt, server_key;
  std::string client_crt, client_key;
  std::string other_ca_crt;  // a CA that signed nothing here
};

Pki MakePki(const TempDir& dir) {
  Pki pki;
  pki.ca_crt = dir.File("ca.crt");
  pki.ca_key = dir.File("ca.key");
  pki.server_crt = dir.File("server.crt");
  pki.server_key = dir.File("server.key");
  pki.client_crt = dir.File("client.crt");
  pki.client_key = dir.File("client.key");
  pki.other_ca_crt = dir.File("other-ca.crt");
  MakeCert(dir, "ca", "komoku-test-ca", "", "", "");
  MakeCert(dir, "server", "127.0.0.1", pki.ca_crt, pki.ca_key,
           "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth");
  MakeCert(dir, "client", "komoku-it", pki.ca_crt, pki.ca_key, "extendedKeyUsage=clientAuth");
  MakeCert(dir, "other-ca", "komoku-other-ca", "", "", "");
  return pki;
}

// Mosquitto with one TLS listener on 127.0.0.1 that requires a client
// certificate signed by the test's CA.
class TlsBroker {
 public:
  TlsBroker(const TempDir& dir, const Pki& pki) {
    for (int attempt = 0; attempt < 5 && !process_; ++attempt) {
      port_ = FreeLoopbackPort();
      const std::string conf = dir.File("mosquitto-tls-" + std::to_string(attempt) + ".conf");
      // `user root`: started as root, Mosquitto keeps root to read the
      // test's key instead of dropping to the mosquitto user.
      std::ofstream(conf) << "user root\n"
                          << "listener " << port_ << " 127.0.0.1\n"
                          << "allow_anonymous true\n"
                          << "cafile " << pki.ca_crt << "\n"
                          << "certfile " << pki.server_crt << "\n"
                          << "keyfile " << pki.server_key << "\n"
                          << "require_certificate true\n";
      auto p = std::make_unique<Process>(std::vector<std::string>{MOSQUITTO_BINARY, "-c", conf},
                                         dir.File("mosquitto-tls.log"));
      if (WaitFor([&] { return Listening() || !p->Running(); }, std::chrono::seconds(10)) &&
          p->Running()) {
        process_ = std::move(p);
      }
    }
    if (!process_) throw std::runtime_error("mosquitto with TLS did not start");
  }
  int port() const { return port_; }
  std::string Output() const { return process_ ? process_->Output() : ""; }

 private:
  bool Listening() const {
    std::ifstream tcp("/proc/net/tcp");
    char hex[8];
    std::snprintf(hex, sizeof(hex), ":%04X", port_);
    std::string line;
    while (std::getline(tcp, line)) {
      // local_address 0100007F:PORT, state 0A (LISTEN)
      if (line.find("0100007F" + std::string(hex) + " 00000000:0000 0A") != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  int port_ = 0;
  std::unique_ptr<Process> process_;
};

// A Paho client over TLS with the test's client certificate.
class TlsClient {
 public:
  TlsClient(const std::string& url, const Pki& pki) : client_(url, "it-tls-client") {
    client_.set_message_callback([this](const mqtt::const_message_ptr& m) {
      std::lock_guard<std::mutex> lock(mu_);
      received_.emplace_back(m->get_topic(), m->get_payload_str());
    });
    mqtt::ssl_options ssl;
    ssl.set_trust_store(pki.ca_crt);
    ssl.set_key_store(pki.client_crt);
    ssl.set_private_key(pki.client_key);
    ssl.set_enable_server_cert_auth(true);
    ssl.set_verify(true);
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    opts.set_ssl(ssl);
    client_.connect(opts)->wait();
  }
  ~TlsClient() {
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const std::exception&) {
    }
  }
  void Publish(const std::string& topic, const std::string& payload) {
    client_.publish(topic, payload.data(), payload.size(), 1, false)->wait();
  }
  void Subscribe(const std::string& filter) { client_.subscribe(filter, 1)->wait(); }
  std::vector<std::pair<std::string, std::string>> Received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  mqtt::async_client client_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> received_;  // guarded by mu_
};

std::string TlsSection(const std::string& ca, const std::string& cert, const std::string& key) {
  std::string out = "  tls:\n    ca_file: " + ca + "\n";
  if (!cert.empty()) out += "    cert_file: " + cert + "\n";
  if (!key.empty()) out += "    key_file: " + key + "\n";
  return out;
}

// The first line of `log` that holds `what`, to show in the test's output.
std::string LineWith(const std::string& log, const std::string& what) {
  size_t at = log.find(what);
  if (at == std::string::npos) return "";
  size_t begin = log.rfind('\n', at);
  size_t end = log.find('\n', at);
  return log.substr(begin == std::string::npos ? 0 : begin + 1,
                    end == std::string::npos ? std::string::npos : end - begin - 1);
}

void Dump(const TlsBroker& broker, const Komoku& komoku) {
  if (!::testing::Test::HasFailure()) return;
  std::cerr << "--- mosquitto (TLS) ---\n"
            << broker.Output() << "\n--- komoku ---\n"
            << komoku.Output() << "\n";
}

class TlsConnectTest : public ::testing::TestWithParam<const char*> {};

// komoku over TLS with a client certificate: a value published over TLS is
// stored, and its state comes back over TLS.
TEST_P(TlsConnectTest, StoresAndPublishesOverTls) {
  TempDir dir;
  Pki pki = MakePki(dir);
  TlsBroker broker(dir, pki);
  const std::string url = std::string(GetParam()) + "://127.0.0.1:" + std::to_string(broker.port());
  Komoku komoku(
      dir, "  broker: " + url + "\n" + TlsSection(pki.ca_crt, pki.client_crt, pki.client_key), "");
  ASSERT_TRUE(komoku.Start()) << komoku.Output() << broker.Output();

  TlsClient client("ssl://127.0.0.1:" + std::to_string(broker.port()), pki);
  client.Subscribe("komoku/state/#");
  client.Publish("komoku/set/tls/temperature", "21.5");

  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = komoku.Get("/api/v1/value?key=tls/temperature");
        return r.status == 200 && r.Json().value("value", 0.0) == 21.5;
      },
      std::chrono::seconds(60)))
      << komoku.Get("/api/v1/value?key=tls/temperature").body;
  EXPECT_TRUE(WaitFor(
      [&] {
        for (const auto& [topic, payload] : client.Received()) {
          if (topic == "komoku/state/tls/temperature" &&
              payload.find("21.5") != std::string::npos) {
            return true;
          }
        }
        return false;
      },
      std::chrono::seconds(60)));
  EXPECT_EQ(komoku.Get("/readyz").status, 200);
  // The handshake check before connecting found nothing to say.
  EXPECT_EQ(komoku.Output().find("TLS to "), std::string::npos) << komoku.Output();
  Dump(broker, komoku);
}

INSTANTIATE_TEST_SUITE_P(Schemes, TlsConnectTest, ::testing::Values("mqtts", "ssl"));

// A CA that did not sign the broker's certificate: komoku stays out, keeps
// running (retrying), logs OpenSSL's reason and is not ready.
TEST(TlsTest, WrongCaKeepsKomokuOutAndSaysWhy) {
  TempDir dir;
  Pki pki = MakePki(dir);
  TlsBroker broker(dir, pki);
  const std::string url = "mqtts://127.0.0.1:" + std::to_string(broker.port());
  Komoku komoku(
      dir, "  broker: " + url + "\n" + TlsSection(pki.other_ca_crt, pki.client_crt, pki.client_key),
      "");
  EXPECT_FALSE(komoku.Start());  // never subscribed
  ASSERT_TRUE(komoku.process()->Running()) << komoku.Output();
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::string out = komoku.Output();
        return out.find("TLS to " + url) != std::string::npos &&
               out.find("certificate verify failed") != std::string::npos;
      },
      std::chrono::seconds(60)))
      << komoku.Output();
  std::cout << "komoku's log: " << LineWith(komoku.Output(), "TLS to ") << "\n";
  auto ready = komoku.Get("/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_FALSE(komoku.Get("/healthz").Json()["mqtt"]["connected"].get<bool>());
  EXPECT_TRUE(komoku.process()->Running()) << komoku.Output();
  Dump(broker, komoku);
}

// No client certificate for a broker that requires one: the broker's refusal
// (a TLS 1.3 alert after the handshake) is what the log says.
TEST(TlsTest, MissingClientCertificateIsNamed) {
  TempDir dir;
  Pki pki = MakePki(dir);
  TlsBroker broker(dir, pki);
  const std::string url = "ssl://127.0.0.1:" + std::to_string(broker.port());
  Komoku komoku(dir, "  broker: " + url + "\n" + TlsSection(pki.ca_crt, "", ""), "");
  EXPECT_FALSE(komoku.Start());
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::string out = komoku.Output();
        return out.find("TLS to " + url) != std::string::npos &&
               out.find("certificate required") != std::string::npos;
      },
      std::chrono::seconds(60)))
      << komoku.Output();
  std::cout << "komoku's log: " << LineWith(komoku.Output(), "TLS to ") << "\n";
  EXPECT_EQ(komoku.Get("/readyz").status, 503);
  Dump(broker, komoku);
}

// The broker's certificate names 127.0.0.1, not localhost: refused and said
// so; with verify: false the same URL connects (encrypted, unchecked).
TEST(TlsTest, VerifyChecksTheHostName) {
  TempDir dir;
  Pki pki = MakePki(dir);
  TlsBroker broker(dir, pki);
  const std::string url = "mqtts://localhost:" + std::to_string(broker.port());
  const std::string section =
      "  broker: " + url + "\n" + TlsSection(pki.ca_crt, pki.client_crt, pki.client_key);
  {
    Komoku komoku(dir, section, "");
    EXPECT_FALSE(komoku.Start());
    EXPECT_TRUE(WaitFor(
        [&] {
          const std::string out = komoku.Output();
          return out.find("TLS to " + url) != std::string::npos &&
                 out.find("hostname mismatch") != std::string::npos;
        },
        std::chrono::seconds(60)))
        << komoku.Output();
    std::cout << "komoku's log: " << LineWith(komoku.Output(), "TLS to ") << "\n";
    EXPECT_EQ(komoku.Get("/readyz").status, 503);
    Dump(broker, komoku);
  }
  Komoku unchecked(dir, section + "    verify: false\n", "");
  EXPECT_TRUE(unchecked.Start()) << unchecked.Output();
  EXPECT_EQ(unchecked.Get("/readyz").status, 200);
  Dump(broker, unchecked);
}

// check-config (and run) refuse bad TLS settings with file:line: field.
TEST(TlsTest, CheckConfigRefusesBadTlsSettings) {
  TempDir dir;
  Pki pki = MakePki(dir);
  struct Case {
    std::string yaml;
    std::string says;
  };
  const std::string head = "mqtt:\n  broker: mqtts://127.0.0.1:8883\n";
  const std::vector<Case> cases = {
      {head + TlsSection(pki.ca_crt, dir.File("missing.crt"), pki.client_key),
       "k.yaml:5: mqtt.tls.cert_file: cannot read '" + dir.File("missing.crt") + "'"},
      {"mqtt:\n  broker: tcp://127.0.0.1:1883\n" + TlsSection(pki.ca_crt, "", ""),
       "k.yaml:4: mqtt.tls.ca_file: set, but mqtt.broker 'tcp://127.0.0.1:1883' is not a TLS URL"},
      {"mqtt:\n  broker: mqtt://127.0.0.1:1883\n  tls:\n    verify: false\n",
       "k.yaml:4: mqtt.tls.verify: set, but mqtt.broker"},
      {head + TlsSection(pki.client_key, "", ""),
       "k.yaml:4: mqtt.tls.ca_file: '" + pki.client_key + "' holds no PEM certificate"},
      {head + TlsSection(pki.ca_crt, pki.client_crt, pki.server_key),
       "k.yaml:6: mqtt.tls.key_file: '" + pki.server_key +
           "': the key does not belong to the certificate"},
      {head + TlsSection(pki.ca_crt, pki.client_crt, ""),
       "k.yaml:5: mqtt.tls.cert_file: give mqtt.tls.key_file too"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = dir.File("k.yaml");
    std::ofstream(path) << cases[i].yaml;
    for (const char* sub : {"check-config", "run"}) {
      std::string out;
      int status = RunTool(dir, {KOMOKU_BINARY, sub, "-c", path},
                           "case" + std::to_string(i) + "-" + sub + ".log", &out);
      EXPECT_EQ(status, 2) << "case " << i << " " << sub << ": " << out;
      EXPECT_NE(out.find(cases[i].says), std::string::npos)
          << "case " << i << " " << sub << ": wanted '" << cases[i].says << "' in: " << out;
    }
  }
  // The same files, right: accepted.
  const std::string path = dir.File("good.yaml");
  std::ofstream(path) << head + TlsSection(pki.ca_crt, pki.client_crt, pki.client_key);
  std::string out;
  EXPECT_EQ(RunTool(dir, {KOMOKU_BINARY, "check-config", "-c", path}, "good.log", &out), 0) << out;
}

}  // namespace
}  // namespace komoku::testing

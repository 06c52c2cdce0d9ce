// 33: the original Komoku protocol over WebSocket (/ws/v1, /ws/v2; issue 22)
// with a real WebSocket client: Debian's python3-websockets, driven by
// integration/ws_client.py (scripts/install-deps.sh test), against the real
// komoku and a real Mosquitto. The script runs every exchange of the issue
// for both versions, with pushes from MQTT ingest (mosquitto_pub); this
// test starts the processes, runs one scenario each, and checks what the
// service counted and that it stays fine afterwards.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kToken[] = "ws-s3cret-0123456789";

class WebSocketTest : public ::testing::Test {
 protected:
  void Start(const std::string& http_yaml = "") {
    broker_ = std::make_unique<Broker>(dir_);
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "", "", http_yaml);
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  }
  void TearDown() override {
    if (broker_ && komoku_) DumpOnFailure(*broker_, *komoku_);
  }

  // Runs a scenario of ws_client.py; its output when it fails.
  void Run(const std::string& scenario, const std::string& token = "") {
    std::vector<std::string> argv = {PYTHON3_BINARY, WS_CLIENT_SCRIPT, scenario,
                                     std::to_string(komoku_->http_port()),
                                     std::to_string(broker_->port())};
    if (!token.empty()) argv.push_back(token);
    Process client(argv, dir_.File("client-" + scenario + ".log"));
    const int status = client.Wait(milliseconds(240000));
    EXPECT_EQ(status, 0) << "ws_client.py " << scenario << ":\n" << client.Output();
    EXPECT_NE(client.Output().find("OK " + scenario), std::string::npos) << client.Output();
  }

  // Every connection has ended (the server saw them go).
  void ExpectNoConnections() {
    EXPECT_TRUE(
        WaitFor([&] { return komoku_->Metric("komoku_ws_connections") == 0; }, milliseconds(60000)))
        << komoku_->Metric("komoku_ws_connections");
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
};

TEST_F(WebSocketTest, V1Exchanges) {
  Start();
  Run("v1");
  ExpectNoConnections();
  EXPECT_GE(komoku_->Metric("komoku_ws_messages_total"), 20);
}

TEST_F(WebSocketTest, V2Exchanges) {
  Start();
  Run("v2");
  ExpectNoConnections();
}

TEST_F(WebSocketTest, HundredConcurrentClients) {
  Start();
  Run("many");
  ExpectNoConnections();
  auto keys = komoku_->Get("/api/v1/keys");
  ASSERT_EQ(keys.status, 200);
  EXPECT_EQ(keys.Json()["keys"].size(), 101u);  // own/0..99 and shared
}

// A subscriber that stops reading is closed and counted; a reading one gets
// every push, and ingest stores every change.
TEST_F(WebSocketTest, ClientThatStopsReadingIsDropped) {
  Start("  stream_queue_bytes: 262144\n");
  Run("slow");
  EXPECT_GE(komoku_->Metric("komoku_ws_dropped_total"), 1);
  ExpectNoConnections();
  auto history = komoku_->Get("/api/v1/history?key=big&from=-1h&limit=1000");
  ASSERT_EQ(history.status, 200) << history.body;
  EXPECT_EQ(history.Json()["rows"].size(), 400u) << history.body.substr(0, 300);
}

TEST_F(WebSocketTest, BadFramesAndOversizedMessagesCloseOnlyTheirConnection) {
  Start();
  Run("bad");
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"bad_frame\"}"), 3);
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"too_large\"}"), 2);
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"upgrade_required\"}"), 1);
  ExpectNoConnections();
  EXPECT_EQ(komoku_->Get("/healthz").status, 200);
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=fine").status, 200);
}

TEST_F(WebSocketTest, TokenInHeaderOrQueryParameter) {
  std::ofstream(dir_.File("token")) << kToken << "\n";
  Start("  token_file: " + dir_.File("token") + "\n");
  komoku_->set_token(kToken);
  Run("auth", kToken);
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"unauthorized\"}"), 3);
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=auth").status, 200);
  // The token in the query string is never written to the log.
  EXPECT_EQ(komoku_->Output().find(kToken), std::string::npos);
}

// Stopping the service closes open connections with 1001 (going away) and
// does not wait for their clients.
TEST_F(WebSocketTest, StopSaysGoingAway) {
  Start();
  Process client({PYTHON3_BINARY, WS_CLIENT_SCRIPT, "hold", std::to_string(komoku_->http_port()),
                  std::to_string(broker_->port())},
                 dir_.File("client-hold.log"));
  ASSERT_TRUE(WaitFor([&] { return client.Output().find("connected") != std::string::npos; },
                      milliseconds(60000)))
      << client.Output();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(komoku_->Stop(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_EQ(client.Wait(milliseconds(60000)), 0) << client.Output();
  EXPECT_NE(client.Output().find("OK hold"), std::string::npos) << client.Output();
}

}  // namespace
}  // namespace komoku::testing

// 02: messages published while komoku is down are stored when it comes back:
// the broker keeps its persistent session (clean start off, stable client id,
// QoS 1 subscription).
#include <gtest/gtest.h>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

class PersistentSessionTest : public KomokuTest {};

TEST_F(PersistentSessionTest, MessagesSentWhileDownAreStoredAfterRestart) {
  mqtt_->Publish("komoku/set/meter", "1");
  ASSERT_TRUE(WaitForHistory("meter", 1));
  ASSERT_EQ(komoku_->Stop(), 0) << "komoku did not exit cleanly on SIGTERM";

  // The broker saw komoku go: the status is offline (retained).
  MqttClient watcher(broker_->url(), "it-watcher");
  watcher.Subscribe("komoku/status");
  ASSERT_TRUE(WaitFor([&] {
    auto got = watcher.Received();
    return !got.empty() && got.back().second == "offline";
  }));

  for (int i = 2; i <= 50; ++i) mqtt_->Publish("komoku/set/meter", std::to_string(i));

  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitForHistory("meter", 50)) << komoku_->Get("/api/v1/history?key=meter&from=0").body;
  auto rows = komoku_->Get("/api/v1/history?key=meter&from=0").Json()["rows"];
  ASSERT_EQ(rows.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_DOUBLE_EQ(rows[i][1].get<double>(), i + 1) << i;
  EXPECT_DOUBLE_EQ(komoku_->Get("/api/v1/value?key=meter").Json()["value"].get<double>(), 50);
  ASSERT_TRUE(WaitFor([&] {
    auto got = watcher.Received();
    return !got.empty() && got.back().second == "online";
  }));
}

TEST_F(PersistentSessionTest, ReconnectsAfterTheBrokerRestarts) {
  mqtt_->Publish("komoku/set/meter", "1");
  ASSERT_TRUE(WaitForHistory("meter", 1));
  mqtt_.reset();
  ASSERT_TRUE(broker_->Restart()) << broker_->Output();
  // The broker lost every session; komoku notices, reconnects with backoff
  // and subscribes again.
  ASSERT_TRUE(
      WaitFor([&] { return komoku_->Output().find("lost connection") != std::string::npos; },
              std::chrono::milliseconds(30000)));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = komoku_->Get("/healthz");
        return r.status == 200 && r.Json()["mqtt"]["subscribed"] == true;
      },
      std::chrono::milliseconds(30000)))
      << komoku_->Get("/healthz").body;
  mqtt_ = std::make_unique<MqttClient>(broker_->url(), "it-publisher-2");
  mqtt_->Publish("komoku/set/meter", "2");
  ASSERT_TRUE(WaitForHistory("meter", 2));
  // The retained status is online again on the new broker.
  MqttClient watcher(broker_->url(), "it-watcher");
  watcher.Subscribe("komoku/status");
  ASSERT_TRUE(WaitFor([&] {
    auto got = watcher.Received();
    return !got.empty() && got.back().second == "online";
  }));
}

}  // namespace
}  // namespace komoku::testing

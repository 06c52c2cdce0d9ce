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

}  // namespace
}  // namespace komoku::testing

// 03: nothing committed is lost across restarts, clean or not.
#include <gtest/gtest.h>

#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

class RestartNoLossTest : public KomokuTest {};

TEST_F(RestartNoLossTest, CleanStopCommitsEverythingReceived) {
  constexpr int kCount = 500;
  for (int i = 0; i < kCount; ++i) {
    mqtt_->Publish("komoku/set/sensor/" + std::to_string(i % 10), std::to_string(i));
  }
  // Stop at once: whatever komoku received must be committed before it exits,
  // and whatever it did not receive stays queued at the broker.
  ASSERT_EQ(komoku_->Stop(), 0);
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  for (int k = 0; k < 10; ++k) {
    ASSERT_TRUE(WaitForHistory("sensor/" + std::to_string(k), kCount / 10)) << k;
    auto rows =
        komoku_->Get("/api/v1/history?key=sensor/" + std::to_string(k) + "&from=0").Json()["rows"];
    EXPECT_EQ(rows.size(), static_cast<size_t>(kCount / 10)) << "no duplicates either";
  }
}

TEST_F(RestartNoLossTest, KillDashNineDuringAStreamLosesAtMostTheMessageInHand) {
  // Paho C acknowledges a QoS 1 message as it reads it, before the callback
  // that commits it (docs/storage.md); the callback holds the receive thread
  // until the commit, so at most one acknowledged message is uncommitted at
  // any moment. Everything else survives a kill -9.
  constexpr int kCount = 400;
  std::thread publisher([&] {
    MqttClient pub(broker_->url(), "it-stream");
    for (int i = 0; i < kCount; ++i) pub.Publish("komoku/set/stream", std::to_string(i));
  });
  ASSERT_TRUE(WaitForHistory("stream", 50));
  komoku_->Kill();
  publisher.join();
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  ASSERT_TRUE(WaitFor([&] {
    auto r = komoku_->Get("/api/v1/history?key=stream&from=0");
    return r.Json()["rows"].size() >= kCount - 1;
  })) << komoku_->Get("/api/v1/history?key=stream&from=0").body;
  auto rows = komoku_->Get("/api/v1/history?key=stream&from=0").Json()["rows"];
  std::set<int> seen;
  for (const auto& row : rows) seen.insert(static_cast<int>(row[1].get<double>()));
  EXPECT_GE(seen.size(), static_cast<size_t>(kCount - 1));
  std::vector<int> missing;
  for (int i = 0; i < kCount; ++i) {
    if (!seen.count(i)) missing.push_back(i);
  }
  EXPECT_LE(missing.size(), 1u) << "lost " << missing.size() << " messages";
  if (!missing.empty()) std::cerr << "lost in the kill window: message " << missing[0] << "\n";
}

}  // namespace
}  // namespace komoku::testing

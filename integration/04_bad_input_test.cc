// 04: bad input is refused with one log line and a counter per reason; the
// service keeps running and the next good message is stored.
#include <gtest/gtest.h>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

class BadInputTest : public KomokuTest {};

TEST_F(BadInputTest, EachBadMessageIsRefusedAndCounted) {
  mqtt_->Publish("komoku/set/temp", "20.5");
  ASSERT_TRUE(WaitForHistory("temp", 1));

  struct Case {
    std::string topic;
    std::string payload;
    std::string reason;    // komoku_refused_total{reason=...}
    std::string log_says;  // in komoku's log
  };
  const std::string long_key(300, 'k');
  const std::vector<Case> cases = {
      {"komoku/set/temp", "warm", "wrong_type", "value 'warm' is not a number"},
      {"komoku/set/temp", "21.5abc", "wrong_type", "trailing text"},
      {"komoku/set/temp", "nan", "wrong_type", "not a number"},
      {"komoku/set/temp", "", "empty", "empty or blank payload"},
      {"komoku/set/temp", "  \n", "empty", "empty or blank payload"},
      {"komoku/set/temp", std::string(1 << 20, '7'), "too_large", "over the limit"},
      {"komoku/set/temp", "{\"value\": ", "bad_payload", "not valid JSON"},
      {"komoku/set/temp", "{\"value\": [1,2]}", "bad_payload", "must be a number"},
      {"komoku/set/temp", "{\"value\": 1, \"when\": 2}", "bad_payload", "unknown field"},
      {"komoku/set/" + long_key, "1", "bad_key", "bytes long"},
      {"komoku/set/temp", R"({"value": 1, "time": 9e99})", "bad_payload", "out of range"},
  };
  for (const Case& c : cases) {
    long long before = komoku_->Metric("komoku_refused_total{reason=\"" + c.reason + "\"}");
    mqtt_->Publish(c.topic, c.payload);
    EXPECT_TRUE(WaitFor([&] {
      return komoku_->Metric("komoku_refused_total{reason=\"" + c.reason + "\"}") == before + 1;
    })) << c.reason
        << " for payload of " << c.payload.size() << " bytes";
    EXPECT_NE(komoku_->Output().find(c.log_says), std::string::npos) << c.log_says;
  }
  // MQTT itself forbids topics that are not UTF-8 (client and broker refuse
  // them), so such a key name can only come over HTTP.
  auto r = komoku_->Put("/api/v1/value?key=bad%C3%28name", "1");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("not valid UTF-8"), std::string::npos) << r.body;
  r = komoku_->Put("/api/v1/value?key=a%2Bb", "1");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("wildcard"), std::string::npos) << r.body;

  // Still running, nothing of the above stored, and the next good one is.
  mqtt_->Publish("komoku/set/temp", "21");
  ASSERT_TRUE(WaitForHistory("temp", 2));
  auto rows = komoku_->Get("/api/v1/history?key=temp&from=0").Json()["rows"];
  ASSERT_EQ(rows.size(), 2u) << rows.dump();
  EXPECT_DOUBLE_EQ(rows[1][1].get<double>(), 21);
  auto keys = komoku_->Get("/api/v1/keys").Json()["keys"];
  EXPECT_EQ(keys.size(), 1u) << "a refused message must not create a key: " << keys.dump();
  EXPECT_TRUE(komoku_->process()->Running());
}

}  // namespace
}  // namespace komoku::testing

// 24: the HTTP API behind a bearer token (http.token_file) on the real
// binary: every endpoint but /healthz and /readyz refuses a request without
// the token or with a wrong one (401, counted), answers with it, and
// `komoku compact` reaches the running service with the token from the
// config. Without a token on loopback (every other test) the API is open
// and nothing is logged about it.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

constexpr char kToken[] = "s3cret-token-0123456789";

class HttpAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    std::ofstream(dir_.File("token")) << kToken << "\n";
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "", "",
                                       "  token_file: " + dir_.File("token") + "\n");
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  }
  void TearDown() override { DumpOnFailure(*broker_, *komoku_); }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
};

TEST_F(HttpAuthTest, EveryEndpointButTheProbesNeedsTheToken) {
  for (const char* path : {"/api/v1/keys", "/api/v1/value?key=a", "/api/v1/history?key=a",
                           "/api/v1/segments", "/api/v1/top", "/metrics", "/api/v1/stream"}) {
    auto r = komoku_->Get(path);
    EXPECT_EQ(r.status, 401) << path << ": " << r.body;
    EXPECT_EQ(r.Json()["error"]["code"], "unauthorized") << path;
  }
  EXPECT_EQ(komoku_->Put("/api/v1/value?key=a", "1").status, 401);
  EXPECT_EQ(komoku_->Post("/api/v1/compact", "").status, 401);
  EXPECT_EQ(komoku_->Get("/healthz").status, 200);
  EXPECT_NE(komoku_->Get("/readyz").status, 401);

  komoku_->set_token("s3cret-token-0123456788");
  auto wrong = komoku_->Get("/api/v1/keys");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_NE(wrong.body.find("wrong token"), std::string::npos) << wrong.body;

  komoku_->set_token(kToken);
  EXPECT_EQ(komoku_->Put("/api/v1/value?key=a", "1").status / 100, 2);
  auto keys = komoku_->Get("/api/v1/keys");
  ASSERT_EQ(keys.status, 200) << keys.body;
  EXPECT_EQ(keys.Json()["keys"].size(), 1u);
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"unauthorized\"}"), 10);
  EXPECT_EQ(komoku_->Output().find("has no authentication"), std::string::npos);

  // The CLI finds the service through the lock file and brings the token.
  Process compact({KOMOKU_BINARY, "compact", "-c", komoku_->config_path()},
                  dir_.File("compact.log"));
  EXPECT_EQ(compact.Wait(std::chrono::milliseconds(30000)), 0) << compact.Output();
  EXPECT_NE(compact.Output().find("segments_written"), std::string::npos) << compact.Output();
}

}  // namespace
}  // namespace komoku::testing

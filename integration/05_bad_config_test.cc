// 05: a bad configuration stops the start with a message naming the file,
// line and field, and a non-zero exit status; check-config says the same.
#include <gtest/gtest.h>

#include <fstream>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

struct Case {
  const char* yaml;
  const char* says;
};

class BadConfigTest : public ::testing::TestWithParam<Case> {};

TEST_P(BadConfigTest, RunAndCheckConfigRefuseIt) {
  TempDir dir;
  std::string path = dir.File("bad.yaml");
  std::ofstream(path) << GetParam().yaml;
  for (const char* sub : {"run", "check-config"}) {
    Process p({KOMOKU_BINARY, sub, "-c", path}, dir.File(std::string(sub) + ".log"));
    int status = p.Wait(std::chrono::seconds(10));
    EXPECT_EQ(status, 2) << sub << ": " << p.Output();
    EXPECT_NE(p.Output().find(GetParam().says), std::string::npos) << sub << ": " << p.Output();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfigTest,
    ::testing::Values(Case{"mqtt:\n  brokr: tcp://x:1\n", "bad.yaml:2: unknown field 'mqtt.brokr'"},
                      Case{"mqtt:\n  keep_alive: often\n",
                           "bad.yaml:2: mqtt.keep_alive: expected an integer, got 'often'"},
                      Case{"mqtt:\n  keep_alive: 1\n", "bad.yaml:2: mqtt.keep_alive: 1 is out of range"},
                      Case{"storage:\n  data_dir: x\n", "bad.yaml:1: unknown section 'storage'"},
                      Case{"http:\n  listen: localhost\n", "http.listen: expected host:port"},
                      Case{"log:\n  level: loud\n", "log.level: 'loud' is not one of"},
                      Case{"mqtt: [1, 2\n", "bad.yaml:"},
                      Case{"mqtt:\n  password_file: /nonexistent/secret\n",
                           "mqtt.password_file: cannot read"}),
    [](const ::testing::TestParamInfo<Case>& info) { return "case" + std::to_string(info.index); });

TEST(ConfigFileTest, CheckConfigAcceptsTheExample) {
  TempDir dir;
  Process p({KOMOKU_BINARY, "check-config", "-c", KOMOKU_SOURCE_DIR "/config/komoku.yaml"},
            dir.File("check.log"));
  EXPECT_EQ(p.Wait(std::chrono::seconds(10)), 0) << p.Output();
}

TEST(ConfigFileTest, PortInUseIsAClearStartError) {
  TempDir dir;
  Broker broker(dir);
  // The broker's own port is taken for sure.
  std::ofstream(dir.File("k.yaml")) << "mqtt:\n  broker: " << broker.url() << "\nstore:\n  data_dir: "
                                    << dir.File("data") << "\nhttp:\n  listen: 127.0.0.1:"
                                    << broker.port() << "\n";
  Process p({KOMOKU_BINARY, "run", "-c", dir.File("k.yaml")}, dir.File("run.log"));
  EXPECT_EQ(p.Wait(std::chrono::seconds(10)), 1) << p.Output();
  EXPECT_NE(p.Output().find("cannot listen on 127.0.0.1:" + std::to_string(broker.port())),
            std::string::npos)
      << p.Output();
}

// A port another Komoku listens on is in use too: the HTTP server must not
// share it (SO_REUSEPORT let two processes split the requests between them).
TEST(ConfigFileTest, APortAnotherKomokuListensOnIsInUse) {
  TempDir dir;
  Broker broker(dir);
  Komoku first(dir, broker);
  ASSERT_TRUE(first.Start()) << first.Output();
  std::ofstream(dir.File("second.yaml"))
      << "mqtt:\n  broker: " << broker.url() << "\n  client_id: second\nstore:\n  data_dir: "
      << dir.File("data2") << "\nhttp:\n  listen: 127.0.0.1:" << first.http_port() << "\n";
  Process p({KOMOKU_BINARY, "run", "-c", dir.File("second.yaml")}, dir.File("second.log"));
  const int status = p.Wait(std::chrono::seconds(10));
  if (status < 0) p.Stop();
  EXPECT_EQ(status, 1) << p.Output();
  EXPECT_NE(p.Output().find("cannot listen on 127.0.0.1:" + std::to_string(first.http_port())),
            std::string::npos)
      << p.Output();
  // The first one still answers.
  EXPECT_EQ(first.Get("/healthz").status, 200);
}

}  // namespace
}  // namespace komoku::testing

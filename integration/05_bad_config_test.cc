// 05: a bad configuration stops the start with a message naming the file,
// line and field, and a non-zero exit status; check-config says the same.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

struct Case {
  const char* name;  // the test's name in CTest and gtest output
  const char* yaml;
  const char* says;
};

// What gtest prints for GetParam(), and so what CTest's name of the test
// ends with: the case's name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class BadConfigTest : public ::testing::TestWithParam<Case> {};

TEST_P(BadConfigTest, RunAndCheckConfigRefuseIt) {
  TempDir dir;
  std::string path = dir.File("bad.yaml");
  std::ofstream(path) << GetParam().yaml;
  SCOPED_TRACE(std::string("config:\n") + GetParam().yaml);
  for (const char* sub : {"run", "check-config"}) {
    Process p({KOMOKU_BINARY, sub, "-c", path}, dir.File(std::string(sub) + ".log"));
    int status = p.Wait(std::chrono::seconds(10));
    EXPECT_EQ(status, 2) << sub << ": " << p.Output();
    EXPECT_NE(p.Output().find(GetParam().says), std::string::npos) << sub << ": " << p.Output();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfigTest,
    ::testing::Values(
        Case{"UnknownField", "mqtt:\n  brokr: tcp://x:1\n",
             "bad.yaml:2: unknown field 'mqtt.brokr'"},
        Case{"KeepAliveNotADuration", "mqtt:\n  keep_alive: often\n",
             "bad.yaml:2: mqtt.keep_alive: expected seconds or a duration (e.g. 500ms, 30s, "
             "10m, 24h, 7d, 1w), got 'often'"},
        Case{"KeepAliveOutOfRange", "mqtt:\n  keep_alive: 1\n",
             "bad.yaml:2: mqtt.keep_alive: 1 is out of range"},
        Case{"UnknownSection", "storage:\n  data_dir: x\n",
             "bad.yaml:1: unknown section 'storage'"},
        Case{"ListenWithoutPort", "http:\n  listen: localhost\n",
             "http.listen: expected host:port"},
        Case{"UnknownLogLevel", "log:\n  level: loud\n", "log.level: 'loud' is not one of"},
        Case{"UnclosedYamlList", "mqtt: [1, 2\n", "bad.yaml:"},
        Case{"UnreadablePasswordFile", "mqtt:\n  password_file: /nonexistent/secret\n",
             "mqtt.password_file: cannot read"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(ConfigFileTest, CheckConfigAcceptsTheExample) {
  TempDir dir;
  Process p({KOMOKU_BINARY, "check-config", "-c", KOMOKU_SOURCE_DIR "/config/komoku.yaml"},
            dir.File("check.log"));
  EXPECT_EQ(p.Wait(std::chrono::seconds(10)), 0) << p.Output();
}

// A key's durations take units in the config as in steps and windows.
TEST(ConfigFileTest, KeyDurationsTakeUnits) {
  TempDir dir;
  std::ofstream(dir.File("k.yaml"))
      << "keys:\n  hall/pir:\n    type: boolean\n    stale_after: 10m\n"
      << "  boiler/heartbeat:\n    type: uptime\n    max_time: 2h\n";
  Process p({KOMOKU_BINARY, "check-config", "-c", dir.File("k.yaml")}, dir.File("check.log"));
  EXPECT_EQ(p.Wait(std::chrono::seconds(10)), 0) << p.Output();
  std::ofstream(dir.File("bad.yaml"))
      << "keys:\n  hall/pir:\n    type: boolean\n    stale_after: ten minutes\n";
  Process bad({KOMOKU_BINARY, "check-config", "-c", dir.File("bad.yaml")}, dir.File("bad.log"));
  EXPECT_EQ(bad.Wait(std::chrono::seconds(10)), 2) << bad.Output();
  EXPECT_NE(bad.Output().find("'ten minutes' is not a duration"), std::string::npos)
      << bad.Output();
}

TEST(ConfigFileTest, PortInUseIsAClearStartError) {
  TempDir dir;
  Broker broker(dir);
  // The broker's own port is taken for sure.
  std::ofstream(dir.File("k.yaml"))
      << "mqtt:\n  broker: " << broker.url() << "\nstore:\n  data_dir: " << dir.File("data")
      << "\nhttp:\n  listen: 127.0.0.1:" << broker.port() << "\n";
  Process p({KOMOKU_BINARY, "run", "-c", dir.File("k.yaml")}, dir.File("run.log"));
  EXPECT_EQ(p.Wait(std::chrono::seconds(10)), 1) << p.Output();
  EXPECT_NE(p.Output().find("cannot listen on 127.0.0.1:" + std::to_string(broker.port())),
            std::string::npos)
      << p.Output();
}

// Usage errors name what is wrong and exit 2; help and version exit 0.
TEST(CommandLineTest, UnknownCommandsAndBadUsageExit2) {
  TempDir dir;
  struct Run {
    std::vector<std::string> args;
    int status;
    const char* says;
  };
  const std::vector<Run> runs = {
      {{"frobnicate"}, 2, "unknown command 'frobnicate'"},
      {{}, 2, "A subcommand is required"},
      {{"run", "--no-such-flag"}, 2, "--no-such-flag"},
      {{"check-config"}, 2, "--config is required"},
      {{"--version"}, 0, "komoku "},
      {{"--help"}, 0, "compact"},
  };
  for (const Run& r : runs) {
    std::vector<std::string> argv = {KOMOKU_BINARY};
    argv.insert(argv.end(), r.args.begin(), r.args.end());
    Process p(argv, dir.File("cli.log"));
    EXPECT_EQ(p.Wait(std::chrono::seconds(10)), r.status) << argv.size() << ": " << p.Output();
    EXPECT_NE(p.Output().find(r.says), std::string::npos) << p.Output();
  }
}

// Under systemd (JOURNAL_STREAM set) every line starts with its sd-daemon
// priority, so `journalctl -p warning` finds the warnings: here the broker
// that is not there.
TEST(JournalTest, LinesCarryTheirPriorityUnderSystemd) {
  TempDir dir;
  std::ofstream(dir.File("k.yaml"))
      << "mqtt:\n  broker: tcp://127.0.0.1:1\nstore:\n  data_dir: " << dir.File("data")
      << "\nhttp:\n  listen: 127.0.0.1:0\n";
  Process p(
      {"/usr/bin/env", "JOURNAL_STREAM=8:12345", KOMOKU_BINARY, "run", "-c", dir.File("k.yaml")},
      dir.File("run.log"));
  EXPECT_TRUE(WaitFor([&] { return p.Output().find("cannot connect") != std::string::npos; },
                      std::chrono::seconds(20)))
      << p.Output();
  EXPECT_EQ(p.Stop(), 0) << p.Output();
  const std::string out = p.Output();
  EXPECT_NE(out.find("<6>[main] info: "), std::string::npos) << out;
  EXPECT_NE(out.find("<4>[bridge] warning: cannot connect"), std::string::npos) << out;
  // No timestamps: journald has its own.
  EXPECT_EQ(out.find("\n20"), std::string::npos) << out;
}

// Admin commands never make a data directory: one pointed at a missing
// directory says so and exits 1; one run without -c in an empty directory
// leaves it empty (it reads /etc/komoku/komoku.yaml or
// ./config/komoku.yaml, else the defaults, whose ./komoku-data is missing).
TEST(AdminCommandTest, NoDataDirectoryIsMadeByCompactOrSegments) {
  TempDir dir;
  std::ofstream(dir.File("k.yaml")) << "store:\n  data_dir: " << dir.File("missing") << "\n";
  for (const char* cmd : {"compact", "segments"}) {
    Process p({KOMOKU_BINARY, cmd, "-c", dir.File("k.yaml")}, dir.File("admin.log"));
    EXPECT_EQ(p.Wait(std::chrono::seconds(30)), 1) << cmd << ": " << p.Output();
    EXPECT_NE(p.Output().find("no data directory at " + dir.File("missing")), std::string::npos)
        << p.Output();
    EXPECT_FALSE(std::filesystem::exists(dir.File("missing"))) << cmd;
  }
  std::filesystem::create_directory(dir.File("empty"));
  for (const char* cmd : {"compact", "segments"}) {
    Process p(
        {"/bin/sh", "-c", "cd '" + dir.File("empty") + "' && exec " + KOMOKU_BINARY + " " + cmd},
        dir.File("admin-cwd.log"));
    p.Wait(std::chrono::seconds(30));
    EXPECT_FALSE(std::filesystem::exists(dir.File("empty") + "/komoku-data"))
        << cmd << ": " << p.Output();
  }
}

// A broker that refuses Komoku's credentials: the log says who was refused
// and which settings to check (not "MQTT error [135]"), Komoku is not
// ready, and it keeps trying; with the right password it connects.
TEST(ConfigFileTest, RefusedCredentialsAreNamedInTheLog) {
  TempDir dir;
  const std::string passwords = dir.File("passwords");
  Process passwd({MOSQUITTO_PASSWD_BINARY, "-b", "-c", passwords, "komoku", "right-password"},
                 dir.File("passwd.log"));
  ASSERT_EQ(passwd.Wait(std::chrono::seconds(10)), 0) << passwd.Output();
  std::filesystem::permissions(
      passwords, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                     std::filesystem::perms::group_read | std::filesystem::perms::others_read);
  BrokerOptions options;
  options.allow_anonymous = false;
  options.password_file = passwords;
  Broker broker(dir, options);
  for (const char* password : {"wrong-password", "right-password"}) {
    std::ofstream(dir.File("secret")) << password << "\n";
    std::ofstream(dir.File("k.yaml"))
        << "mqtt:\n  broker: " << broker.url()
        << "\n  username: komoku\n  password_file: " << dir.File("secret")
        << "\nstore:\n  data_dir: " << dir.File("data") << "\nhttp:\n  listen: 127.0.0.1:0\n";
    Process p({KOMOKU_BINARY, "run", "-c", dir.File("k.yaml")},
              dir.File(std::string("run-") + password + ".log"));
    const std::string says = password == std::string("wrong-password")
                                 ? "the broker refused user 'komoku': "
                                 : "connected to " + broker.url();
    EXPECT_TRUE(WaitFor([&] { return p.Output().find(says) != std::string::npos; },
                        std::chrono::seconds(20)))
        << password << ": " << p.Output();
    if (password == std::string("wrong-password")) {
      EXPECT_NE(p.Output().find("check mqtt.username and mqtt.password_file"), std::string::npos)
          << p.Output();
      EXPECT_EQ(p.Output().find("MQTT error [13"), std::string::npos) << p.Output();
      EXPECT_TRUE(p.Running());
    }
    EXPECT_EQ(p.Stop(), 0) << p.Output();
  }
}

// A port another Komoku listens on is in use too: the HTTP server must not
// share it (SO_REUSEPORT let two processes split the requests between them).
TEST(ConfigFileTest, APortAnotherKomokuListensOnIsInUse) {
  TempDir dir;
  Broker broker(dir);
  Komoku first(dir, broker);
  ASSERT_TRUE(first.Start()) << first.Output();
  std::ofstream(dir.File("second.yaml"))
      << "mqtt:\n  broker: " << broker.url()
      << "\n  client_id: second\nstore:\n  data_dir: " << dir.File("data2")
      << "\nhttp:\n  listen: 127.0.0.1:" << first.http_port() << "\n";
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

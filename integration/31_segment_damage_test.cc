// 31: damage stays small, against the real binary. Three keys, a month
// compacted into one segment, one byte flipped in one raw block of one key
// while the service is down: after a restart the other two keys answer
// (raw history, stats, downsampled history) exactly as before, the damaged
// key everything but the block's range, /healthz names the key and the
// range, `komoku segments --verify` names them too and exits 1, and
// `komoku segments --salvage` (refused while the service runs) rewrites the
// segment without the block, keeping the damaged files aside; the service
// then serves the rest and still names what is lost.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;

constexpr int64_t kMin = 60'000;
constexpr int64_t kDay = 24 * 60 * kMin;
const char* const kKeys[] = {"dmg/door", "dmg/mode", "dmg/temp"};  // in segment order
constexpr int kVictim = 2;

std::string Hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// A raw block of a key, as the segment's index locates it.
struct RawBlock {
  uint64_t offset = 0, length = 0;
  int64_t first_ms = 0;
};

class DamagedSegmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Broker>(dir_);
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "",
                                       "  hot_window_hours: 24\n  compact_interval: 0\n");
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    ASSERT_EQ(komoku_
                  ->Post("/api/v1/define",
                         R"({"dmg/temp": {"type": "numeric", "opts": {"same_value_resolution": 0}},
                                "dmg/door": {"type": "boolean", "opts": {"same_value_resolution": 0}},
                                "dmg/mode": {"type": "string", "opts": {"same_value_resolution": 0}}})")
                  .status,
              200)
        << komoku_->Output();
  }
  void TearDown() override { DumpOnFailure(*broker_, *komoku_); }

  Process Cli(std::vector<std::string> args, const std::string& log) {
    std::vector<std::string> argv = {KOMOKU_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return Process(argv, dir_.File(log));
  }

  // The raw blocks of `key` in segment `name`, from `komoku keyka range`
  // over its index.
  std::vector<RawBlock> RawBlocks(const std::string& name, const std::string& key) {
    std::string from = key, to = key;
    from.push_back('\0');
    from.push_back('\x01');
    to.push_back('\0');
    to.push_back('\x02');
    Process range = Cli({"keyka", "range", "--hex",
                         dir_.File("data") + "/segments/" + name + ".kki", Hex(from), Hex(to)},
                        "keyka-range.log");
    EXPECT_EQ(range.Wait(std::chrono::seconds(60)), 0) << range.Output();
    std::vector<RawBlock> out;
    std::istringstream lines(range.Output());
    std::string line;
    while (std::getline(lines, line)) {
      const size_t tab = line.find('\t');
      if (tab == std::string::npos || tab != Hex(from).size() + 16) continue;
      const uint64_t t = std::stoull(line.substr(tab - 16, 16), nullptr, 16);
      const uint64_t loc = std::stoull(line.substr(tab + 1));
      out.push_back({loc & ((uint64_t{1} << 40) - 1), loc >> 40,
                     static_cast<int64_t>(t ^ (uint64_t{1} << 63))});
    }
    return out;
  }

  // Answers that must not change: raw history, stats and a downsampled
  // history over the whole span.
  json Answers(int key) {
    const std::string k =
        std::string("key=") + kKeys[key] + "&from=" + Seconds(start_) + "&to=" + Seconds(end_);
    json out;
    for (const std::string& path :
         {"/api/v1/history?" + k, "/api/v1/stats?" + k, "/api/v1/history?" + k + "&step=1d"}) {
      auto r = komoku_->Get(path);
      EXPECT_EQ(r.status, 200) << path << ": " << r.body;
      out[path] = r.Json();
    }
    return out;
  }

  json Healthz() { return komoku_->Get("/healthz").Json(); }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  int64_t start_ = 0, end_ = 0;
};

TEST_F(DamagedSegmentTest, OneFlippedByteLosesOneBlockOfOneKey) {
  // 62 days (so one whole calendar month is cold): temp every 20 minutes
  // (three or four raw blocks a month), door every 3 hours, mode every 7.
  const int64_t now = NowMs();
  start_ = (now - 62 * kDay) / kMin * kMin;
  end_ = now - 2 * kDay;
  size_t counts[3] = {0, 0, 0};
  {
    MqttClient mqtt(broker_->url(), "it-damage");
    int i = 0;
    for (int64_t t = start_; t < now - kMin; t += 20 * kMin, ++i) {
      const std::string time = Seconds(t);
      mqtt.Publish("komoku/set/dmg/temp", R"({"value": )" + std::to_string(18 + (i % 97) / 10.0) +
                                              R"(, "time": )" + time + "}");
      ++counts[2];
      if (i % 9 == 0) {
        mqtt.Publish("komoku/set/dmg/door", std::string(R"({"value": )") +
                                                (i % 18 ? "true" : "false") + R"(, "time": )" +
                                                Seconds(t + 1) + "}");
        ++counts[0];
      }
      if (i % 21 == 0) {
        const char* modes[] = {"\"heat\"", "\"idle\"", "\"eco\""};
        mqtt.Publish("komoku/set/dmg/mode", std::string(R"({"value": )") + modes[(i / 21) % 3] +
                                                R"(, "time": )" + Seconds(t + 2) + "}");
        ++counts[1];
      }
    }
  }
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(WaitFor(
        [&] {
          auto r = komoku_->Get(std::string("/api/v1/history?key=") + kKeys[k] + "&from=0");
          return r.status == 200 && r.Json()["rows"].size() == counts[k];
        },
        std::chrono::seconds(120)))
        << kKeys[k] << " "
        << komoku_->Get(std::string("/api/v1/history?key=") + kKeys[k] + "&from=0")
               .body.substr(0, 200);
  }
  {
    // Through `komoku compact`, which waits as long as the compaction takes
    // (a busy disk makes 62 synced day segments slow).
    Process compact = Cli({"compact", "-c", komoku_->config_path()}, "compact.log");
    ASSERT_EQ(compact.Wait(std::chrono::seconds(600)), 0) << compact.Output();
  }

  // The month segment and the victim's raw blocks in it.
  json segs = komoku_->Get("/api/v1/segments").Json();
  std::string month;
  for (const json& s : segs["segments"]) {
    if (s["to"].get<double>() - s["from"].get<double>() > 27 * 86400) {
      month = s["name"].get<std::string>();
    }
  }
  ASSERT_FALSE(month.empty()) << segs.dump();
  const std::vector<RawBlock> blocks = RawBlocks(month, kKeys[kVictim]);
  ASSERT_GE(blocks.size(), 3u);
  const RawBlock& hit = blocks[1];
  const int64_t lost_from = hit.first_ms, lost_to = blocks[2].first_ms;

  json before[3];
  for (int k = 0; k < 3; ++k) before[k] = Answers(k);
  EXPECT_TRUE(Healthz()["damaged"].empty());

  // One byte, while the service is down.
  ASSERT_EQ(komoku_->Stop(), 0);
  const std::string data_file = dir_.File("data") + "/segments/" + month + ".kkd";
  {
    std::fstream f(data_file, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    const auto at = static_cast<std::streamoff>(hit.offset + hit.length / 2);
    f.seekg(at);
    const char c = static_cast<char>(f.get());
    f.seekp(at);
    f.put(static_cast<char>(c ^ 0x10));
  }
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();

  // The check after the start finds it; /healthz names key and range.
  ASSERT_TRUE(WaitFor([&] { return !Healthz()["damaged"].empty(); }, std::chrono::seconds(120)))
      << komoku_->Get("/healthz").body;
  auto expect_named = [&](bool salvaged) {
    json h = Healthz();
    ASSERT_EQ(h["status"], "ok") << h.dump();
    ASSERT_EQ(h["damaged"].size(), 1u) << h.dump();
    const json& d = h["damaged"][0];
    EXPECT_EQ(d["key"], kKeys[kVictim]) << h.dump();
    EXPECT_EQ(d["part"], "raw") << h.dump();
    EXPECT_EQ(std::llround(d["from"].get<double>() * 1000), lost_from) << h.dump();
    EXPECT_EQ(std::llround(d["to"].get<double>() * 1000), lost_to) << h.dump();
    EXPECT_EQ(d["segment"], month) << h.dump();
    EXPECT_EQ(d["salvaged"], salvaged) << h.dump();
    ASSERT_FALSE(h["warnings"].empty()) << h.dump();
    EXPECT_NE(h["warnings"][0].get<std::string>().find(kKeys[kVictim]), std::string::npos);
  };
  expect_named(false);
  EXPECT_EQ(komoku_->Get("/api/v1/segments").Json()["segments"].size(), segs["segments"].size());
  EXPECT_FALSE(std::filesystem::exists(dir_.File("data") + "/quarantine/" + month + ".kkd"));

  // The other keys: every answer as before.
  for (int k = 0; k < 3; ++k) {
    if (k == kVictim) continue;
    json now_answers = Answers(k);
    for (auto it = before[k].begin(); it != before[k].end(); ++it) {
      EXPECT_EQ(now_answers[it.key()], it.value()) << it.key();
    }
  }
  // The victim: its raw history but the block's range.
  auto expect_victim = [&] {
    const std::string path = std::string("/api/v1/history?key=") + kKeys[kVictim] +
                             "&from=" + Seconds(start_) + "&to=" + Seconds(end_);
    json got = komoku_->Get(path).Json();
    json want = json::array();
    for (const json& row : before[kVictim][path]["rows"]) {
      const int64_t t = std::llround(row[0].get<double>() * 1000);
      if (t < lost_from || t >= lost_to) want.push_back(row);
    }
    EXPECT_LT(want.size(), before[kVictim][path]["rows"].size());
    EXPECT_EQ(got["rows"], want);
  };
  expect_victim();

  // `komoku segments --verify`, beside the running service.
  {
    Process verify = Cli({"segments", "--verify", "-c", komoku_->config_path()}, "verify.log");
    EXPECT_EQ(verify.Wait(std::chrono::seconds(120)), 1) << verify.Output();
    EXPECT_NE(verify.Output().find(kKeys[kVictim]), std::string::npos) << verify.Output();
    EXPECT_NE(verify.Output().find(month), std::string::npos) << verify.Output();
    EXPECT_NE(verify.Output().find("raw changes"), std::string::npos) << verify.Output();
    Process as_json =
        Cli({"segments", "--verify", "--json", "-c", komoku_->config_path()}, "verify-json.log");
    EXPECT_EQ(as_json.Wait(std::chrono::seconds(120)), 1) << as_json.Output();
    const json j = json::parse(as_json.Output().substr(as_json.Output().find('{')));
    ASSERT_EQ(j["damaged"].size(), 1u) << j.dump();
    EXPECT_EQ(j["damaged"][0]["key"], kKeys[kVictim]);
    EXPECT_EQ(std::llround(j["damaged"][0]["from"].get<double>() * 1000), lost_from);
    EXPECT_EQ(std::llround(j["damaged"][0]["to"].get<double>() * 1000), lost_to);
    EXPECT_EQ(j["damaged"][0]["offset"].get<uint64_t>(), hit.offset);
  }
  // Salvage needs the service stopped.
  {
    Process salvage =
        Cli({"segments", "--salvage", month, "-c", komoku_->config_path()}, "salvage-running.log");
    EXPECT_EQ(salvage.Wait(std::chrono::seconds(120)), 1) << salvage.Output();
    EXPECT_NE(salvage.Output().find("stop it first"), std::string::npos) << salvage.Output();
  }
  ASSERT_EQ(komoku_->Stop(), 0);
  {
    Process salvage =
        Cli({"segments", "--salvage", month, "-c", komoku_->config_path()}, "salvage.log");
    ASSERT_EQ(salvage.Wait(std::chrono::seconds(120)), 0) << salvage.Output();
    EXPECT_NE(salvage.Output().find(kKeys[kVictim]), std::string::npos) << salvage.Output();
  }
  EXPECT_TRUE(std::filesystem::exists(dir_.File("data") + "/quarantine/" + month + ".damaged.kkd"));
  EXPECT_TRUE(std::filesystem::exists(dir_.File("data") + "/quarantine/" + month + ".damaged.kki"));
  EXPECT_FALSE(std::filesystem::exists(data_file));
  {
    Process verify = Cli({"segments", "--verify", "-c", komoku_->config_path()}, "verify2.log");
    EXPECT_EQ(verify.Wait(std::chrono::seconds(120)), 0) << verify.Output();
    EXPECT_NE(verify.Output().find("(salvaged)"), std::string::npos) << verify.Output();
  }

  // The service serves the rest, and still names what is lost.
  ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
  expect_named(true);
  for (int k = 0; k < 3; ++k) {
    if (k == kVictim) continue;
    json now_answers = Answers(k);
    for (auto it = before[k].begin(); it != before[k].end(); ++it) {
      EXPECT_EQ(now_answers[it.key()], it.value()) << it.key();
    }
  }
  expect_victim();
}

}  // namespace
}  // namespace komoku::testing

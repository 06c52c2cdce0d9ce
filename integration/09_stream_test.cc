// 09: GET /api/v1/stream (Server-Sent Events): live changes of the listed
// keys only; with since=, a replay of history then live changes with no gap
// and no duplicate at the seam, even while a writer is busy; a client that
// goes away releases its listener; more than 8 streams are refused.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;
using Event = SseClient::Event;

constexpr const char *kSseClients = "komoku_sse_clients";

class StreamTest : public KomokuTest {
 protected:
  std::unique_ptr<SseClient> Open(const std::string &query) {
    return std::make_unique<SseClient>(komoku_->http_port(), "/api/v1/stream?" + query);
  }
};

size_t Count(const std::vector<Event> &events, const std::string &name) {
  size_t n = 0;
  for (const Event &e : events) n += e.event == name;
  return n;
}

TEST_F(StreamTest, LiveChangesOfTheListedKeysOnly) {
  auto sse = Open("key=hall/door&key=hall/temp");
  ASSERT_EQ(sse->WaitStatus(), 200) << sse->Body();
  // The listener is in place once the answer started.
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=hall/temp", "20.5").status, 201);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=kitchen/temp", "23").status, 201);
  mqtt_->Publish("komoku/set/hall/door", "true");
  mqtt_->Publish("komoku/set/kitchen/door", "closed");
  mqtt_->Publish("komoku/set/hall/temp", "21");
  ASSERT_TRUE(sse->WaitForEvents([](const auto &ev) { return Count(ev, "change") >= 3; }))
      << sse->Body();
  // A late change is a change too, marked as not current.
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_EQ(
      komoku_->Put("/api/v1/value?key=hall/temp", json{{"value", 19}, {"time", now - 600}}.dump())
          .status,
      200);
  ASSERT_EQ(komoku_->Delete("/api/v1/key?key=hall/door&confirm=yes").status, 200);
  ASSERT_TRUE(sse->WaitForEvents([](const auto &ev) { return Count(ev, "delete") >= 1; }))
      << sse->Body();
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=hall/temp", "22").status, 200);
  ASSERT_TRUE(sse->WaitForEvents([](const auto &ev) { return Count(ev, "change") >= 5; }))
      << sse->Body();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  auto events = sse->Events();
  ASSERT_EQ(events.size(), 6u) << sse->Body();
  struct Expected {
    const char *event;
    const char *key;
    json value;
    json previous;
    bool current;
  } expected[] = {
      {"change", "hall/temp", 20.5, nullptr, true},    {"change", "hall/door", true, nullptr, true},
      {"change", "hall/temp", 21, 20.5, true},         {"change", "hall/temp", 19, 21, false},
      {"delete", "hall/door", nullptr, nullptr, true}, {"change", "hall/temp", 22, 21, true},
  };
  uint64_t last_id = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const Event &e = events[i];
    const Expected &x = expected[i];
    json data = json::parse(e.data, nullptr, false);
    EXPECT_EQ(e.event, x.event) << i << ": " << e.data;
    EXPECT_EQ(data["key"], x.key) << i << ": " << e.data;
    if (e.event != "change") continue;
    EXPECT_EQ(data["value"], x.value) << i << ": " << e.data;
    EXPECT_EQ(data["previous"], x.previous) << i << ": " << e.data;
    EXPECT_EQ(data["current"], x.current) << i << ": " << e.data;
    EXPECT_GT(data["time"].get<double>(), 1.7e9) << e.data;
    ASSERT_FALSE(e.id.empty()) << "a change carries its sequence number: " << e.data;
    uint64_t id = std::stoull(e.id);
    EXPECT_GT(id, last_id) << "ids grow: " << e.data;
    last_id = id;
  }
}

TEST_F(StreamTest, BadRequestsAreClear400s) {
  for (const char *q : {"", "since=-1h", "key=a&since=yesterday", "key=a&kye=b", "key=a%2B%23",
                        "key=a%23", "key=%2F%23", "key=a%2F%23%2F%23"}) {
    auto sse = Open(q);
    EXPECT_EQ(sse->WaitStatus(), 400) << q << " -> " << sse->Body();
    EXPECT_TRUE(WaitFor([&] { return sse->Closed(); }, std::chrono::milliseconds(5000))) << q;
  }
  EXPECT_EQ(komoku_->Metric(kSseClients), 0);
}

// The values of `key` a stream delivered, replayed then live; false when the
// stream is not in the expected shape (all history, one live marker, then
// changes).
bool StreamValues(const std::vector<Event> &events, const std::string &key, std::vector<int> *out,
                  std::string *why) {
  bool live = false;
  for (const Event &e : events) {
    if (e.event == "live") {
      if (live) return *why = "two live markers", false;
      live = true;
      continue;
    }
    if (e.event != "history" && e.event != "change") return *why = "event " + e.event, false;
    if ((e.event == "history") == live) return *why = e.event + " on the wrong side of live", false;
    json data = json::parse(e.data, nullptr, false);
    if (data["key"] != key) return *why = "other key " + e.data, false;
    out->push_back(static_cast<int>(data["value"].get<double>()));
  }
  if (!live) return *why = "no live marker", false;
  return true;
}

TEST_F(StreamTest, SinceReplaysHistoryThenLiveWithoutGapOrDuplicateWhileWriting) {
  // Make the seam busy: a writer puts 0, 1, 2, ... without pause while
  // several clients connect with since= at different moments.
  for (int i = 0; i < 20; ++i) {
    ASSERT_LT(komoku_->Put("/api/v1/value?key=seq", std::to_string(i)).status, 300);
  }
  std::atomic<int> written{20};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    // Each put returns once committed, so the values are in time order.
    while (!stop) {
      int v = written;
      auto r = komoku_->Put("/api/v1/value?key=seq", std::to_string(v));
      if (r.status != 200) {
        ADD_FAILURE() << r.body;
        return;
      }
      written = v + 1;
    }
  });
  constexpr int kClients = 5;
  std::vector<std::unique_ptr<SseClient>> clients;
  std::vector<int> connected_at;
  for (int c = 0; c < kClients; ++c) {
    const int target = written + 15;
    ASSERT_TRUE(WaitFor([&] { return written >= target; })) << "writer stuck at " << written;
    connected_at.push_back(written);
    clients.push_back(Open("key=seq&since=-1h"));
  }
  for (auto &c : clients) ASSERT_EQ(c->WaitStatus(), 200) << c->Body();
  const int target = written + 30;
  ASSERT_TRUE(WaitFor([&] { return written >= target; }));
  stop = true;
  writer.join();
  const int last = written - 1;
  std::printf("writer put %d values; clients connected at %d..%d\n", last + 1, connected_at.front(),
              connected_at.back());

  for (int c = 0; c < kClients; ++c) {
    auto &sse = clients[c];
    ASSERT_TRUE(sse->WaitForEvents([&](const std::vector<Event> &ev) {
      for (auto it = ev.rbegin(); it != ev.rend(); ++it) {
        if (it->event == "change" || it->event == "history") {
          return json::parse(it->data, nullptr, false)["value"] == last;
        }
      }
      return false;
    })) << "client "
        << c << " never saw " << last << ":\n"
        << sse->Body();
    std::vector<int> values;
    std::string why;
    auto events = sse->Events();
    ASSERT_TRUE(StreamValues(events, "seq", &values, &why)) << c << ": " << why;
    size_t replayed = Count(events, "history");
    std::vector<int> expected(last + 1);
    for (int i = 0; i <= last; ++i) expected[i] = i;
    EXPECT_EQ(values, expected) << "client " << c << " (connected at " << connected_at[c] << ", "
                                << replayed << " replayed): a gap or duplicate at the seam";
    EXPECT_GE(replayed, static_cast<size_t>(connected_at[c])) << c;
    EXPECT_LT(replayed, values.size()) << c << ": some values must have come live";
  }
}

TEST_F(StreamTest, SinceReplaysOnlyFromThatTime) {
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (int i = 0; i < 5; ++i) {
    ASSERT_LT(
        komoku_->Put("/api/v1/value?key=a", json{{"value", i}, {"time", now - 100 + i * 10}}.dump())
            .status,
        300);
  }
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=b", "x").status, 201);
  auto sse = Open("key=a&key=b&key=notyet&since=" + std::to_string(now - 75));
  ASSERT_EQ(sse->WaitStatus(), 200);
  ASSERT_TRUE(sse->WaitForEvents([](const auto &ev) { return Count(ev, "live") == 1; }))
      << sse->Body();
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=notyet", "1").status, 201);
  ASSERT_TRUE(sse->WaitForEvents([](const auto &ev) { return Count(ev, "change") == 1; }))
      << sse->Body();
  auto events = sse->Events();
  ASSERT_EQ(events.size(), 5u) << sse->Body();
  // History of both keys, merged by time: a 3, a 4 (older ones before
  // since), then b.
  EXPECT_EQ(json::parse(events[0].data)["value"], 3);
  EXPECT_EQ(json::parse(events[1].data)["value"], 4);
  EXPECT_EQ(json::parse(events[2].data)["value"], "x");
  EXPECT_EQ(json::parse(events[2].data)["key"], "b");
  EXPECT_EQ(events[3].event, "live");
  EXPECT_EQ(events[4].event, "change");
  EXPECT_EQ(json::parse(events[4].data)["key"], "notyet");
}

// `key=#` follows every key, also those created after the stream opened
// (the web page's key list); `key=<prefix>/#` the key <prefix> and the keys
// under it, as an MQTT filter does; `since` replays what they match.
TEST_F(StreamTest, FiltersFollowEveryKeyOrAFolder) {
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_EQ(
      komoku_->Put("/api/v1/value?key=hall", json{{"value", 1}, {"time", now - 50}}.dump()).status,
      201);
  ASSERT_EQ(
      komoku_->Put("/api/v1/value?key=hall/door", json{{"value", true}, {"time", now - 40}}.dump())
          .status,
      201);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=hallway", json{{"value", 2}, {"time", now - 30}}.dump())
                .status,
            201);
  auto all = Open("key=%23");
  auto folder = Open("key=hall%2F%23&since=" + std::to_string(now - 60));
  ASSERT_EQ(all->WaitStatus(), 200) << all->Body();
  ASSERT_EQ(folder->WaitStatus(), 200) << folder->Body();
  ASSERT_TRUE(folder->WaitForEvents([](const auto &ev) { return Count(ev, "live") == 1; }))
      << folder->Body();
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=new%2Fkey", "3").status, 201);
  mqtt_->Publish("komoku/set/hall/light", "on");
  ASSERT_TRUE(all->WaitForEvents([](const auto &ev) { return Count(ev, "change") == 2; }))
      << all->Body();
  ASSERT_TRUE(folder->WaitForEvents([](const auto &ev) { return Count(ev, "change") == 1; }))
      << folder->Body();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  auto keys = [](const std::vector<Event> &events) {
    std::vector<std::string> out;
    for (const Event &e : events) {
      if (e.event != "live")
        out.push_back(e.event + " " + json::parse(e.data)["key"].get<std::string>());
    }
    return out;
  };
  EXPECT_EQ(keys(all->Events()), (std::vector<std::string>{"change new/key", "change hall/light"}));
  // hallway is not under hall/.
  EXPECT_EQ(keys(folder->Events()),
            (std::vector<std::string>{"history hall", "history hall/door", "change hall/light"}));
}

TEST_F(StreamTest, AClientThatGoesAwayReleasesItsListener) {
  auto keep = Open("key=x");
  auto leave = Open("key=y");
  ASSERT_EQ(keep->WaitStatus(), 200);
  ASSERT_EQ(leave->WaitStatus(), 200);
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric(kSseClients) == 2; }))
      << komoku_->Metric(kSseClients);
  const auto closed = std::chrono::steady_clock::now();
  leave->Stop();
  // Nothing is sent to the dead client until the keepalive (15 s).
  bool released =
      WaitFor([&] { return komoku_->Metric(kSseClients) == 1; }, std::chrono::milliseconds(40000));
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - closed).count();
  std::printf("a closed stream was released after %.1f s\n", took);
  ASSERT_TRUE(released) << "never released";
  EXPECT_LE(took, 20) << "not released by the first keepalive";

  // The other stream still works, and a new one is accepted.
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=x", "1").status, 201);
  ASSERT_TRUE(keep->WaitForEvents([](const auto &ev) { return Count(ev, "change") == 1; }));
  auto again = Open("key=y");
  ASSERT_EQ(again->WaitStatus(), 200);
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=y", "2").status, 201);
  ASSERT_TRUE(again->WaitForEvents([](const auto &ev) { return Count(ev, "change") == 1; }));
}

TEST_F(StreamTest, MoreThanEightStreamsAreRefusedWith503) {
  std::vector<std::unique_ptr<SseClient>> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(Open("key=k" + std::to_string(i)));
    ASSERT_EQ(streams.back()->WaitStatus(), 200) << i << ": " << streams.back()->Body();
  }
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric(kSseClients) == 8; }));
  auto ninth = Open("key=k9");
  EXPECT_EQ(ninth->WaitStatus(), 503) << ninth->Body();
  ASSERT_TRUE(WaitFor([&] { return ninth->Closed(); }, std::chrono::milliseconds(5000)));
  std::string body = ninth->Body();
  EXPECT_NE(body.find("too many streams"), std::string::npos) << body;
  // Ordinary requests are still served while eight streams are open.
  for (int i = 0; i < 20; ++i) {
    auto r = komoku_->Get("/healthz");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  ASSERT_EQ(komoku_->Put("/api/v1/value?key=k3", "3").status, 201);
  ASSERT_TRUE(streams[3]->WaitForEvents([](const auto &ev) { return Count(ev, "change") == 1; }));
  EXPECT_EQ(komoku_->Metric(kSseClients), 8);
}

}  // namespace
}  // namespace komoku::testing

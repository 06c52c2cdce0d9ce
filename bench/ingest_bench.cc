// The MQTT ingest bars of issue 18 (docs/benchmarks.md, "MQTT ingest"): the
// real komoku binary and a real Mosquitto on loopback, each figure beside a
// baseline measured in the same run.
//
// 1. Flood throughput. A fast publisher in this process (FloodOptions: Paho
//    C++ async clients, --publishers (1) of them, --inflight (1,000)
//    publications outstanding each, every message built before the clock
//    starts) publishes --messages (200,000) as fast as the broker takes
//    them, in four cases:
//      set     komoku/set/bench/kNNNN round robin over --keys (1,000) keys,
//              plain numbers (20.37), a key's value new every round;
//      mapped  zigbee2mqtt/devNNNN round robin over --keys / 2 devices,
//              {"temperature":21.50,"humidity":40.1,"linkquality":120}
//              through the zigbee2mqtt rule of docs/mapping.md (linkquality
//              ignored): 2 changes a message, new values every round;
//    each at QoS 0 and at QoS 1 (publisher QoS; Komoku and the baseline
//    subscribe at QoS 1, and a message is delivered at the lower of the two).
//    Each case has its own broker, with max_queued_messages 0 (no limit): a
//    stock Mosquitto drops what a slow subscriber has not taken past 1,000
//    queued messages (QoS 0 past 1,000 unsent packets), and this part
//    measures how fast Komoku takes a flood, not how much the broker
//    throws away (part 3 measures that).
//    Baseline: a bare Paho C++ consumer (Consumer: MQTT 5, persistent
//    session as komoku's, a callback that counts) on the case's filter,
//    timed from the first publish to its last message. Then a fresh komoku
//    (its own data dir and client id) takes the same flood from the same
//    broker, timed from the first publish until every message is committed
//    and queryable: komoku_changes_stored_total has grown by every change
//    sent, komoku_writer_queue_depth is 0 (the writer committed them) and
//    GET /api/v1/value of the last message's key answers its value.
//    Polled every 50 ms. Printed: messages/s of each and komoku/bare.
// 2. Latency. --rate (1,000) messages/s over --keys keys for
//    --latency-seconds (10) to komoku/set/<key>, QoS 1, each value the
//    publication's number; a subscriber to komoku/state/# in this process
//    matches each state's value to when it was sent: p50, p99, max.
//    Baseline: a subscriber to komoku/set/# on the same broker in the same
//    run (the broker's own round trip). Then the same at --quiet-rate (20)
//    messages/s, a quiet home: there a state once waited about 40 ms for
//    the broker's delayed TCP acknowledgement (Nagle's algorithm on Paho's
//    socket, bridge/broker_socket.h), which the busy case hides.
// 3. Backfill. A year of one key at 1-minute spacing (--backfill, 525,600
//    lines of {"value":v,"time":t}, every value different from the one
//    before) published by `mosquitto_pub -q 1 -l -t komoku/set/backfill`
//    into a Mosquitto with default settings. Baselines: bare consumers
//    (QoS 1) receiving the same file from the same broker, one connected as
//    komoku connects and one with MQTT 5 Receive Maximum 65,535; then
//    komoku. Printed: how many each got or stored, and how long it took.
//    Mosquitto 2.0.11's mosquitto_pub -l sends only about 65,535 + (lines
//    mod 65,535) lines of a large file at QoS 1 (its message ids wrap; see
//    docs/benchmarks.md): the bare rows show that ceiling.
//
// 4. Writes: 10 changes/s over 1,000 keys on komoku/set/<key> for
//    --writes-seconds (120): the bytes komoku hands to write() (wchar) and
//    those /proc counts as written to the device (write_bytes), per change,
//    beside the MQTT topic and payload bytes of the same changes (the data
//    itself) and the 3.3 KB a change measured before the ingest log
//    (docs/benchmarks.md, footprint of 2026-12-05).
// 5. Burst: issue 18's "after a 100,000-message burst every key's retained
//    state equals its stored value". --burst (100,000) messages on
//    komoku/set/bench/kNNNN round robin over --keys keys, QoS 1, as fast as
//    the flood publisher of part 1 goes, into a Mosquitto with default
//    settings; message i carries the value i, so each key's values rise and
//    the publisher knows each key's last. Baseline: a bare consumer of
//    komoku/set/# (Receive Maximum 65,535, as komoku connects) taking the
//    same burst from the same broker: first publish to its last message.
//    Then komoku takes the burst; from the publisher's last acknowledgement
//    (the end of the burst): until every change is stored and committed,
//    then, every 200 ms up to --converge-seconds (120) after the end, a
//    fresh client subscribes to komoku/state/# and takes the retained
//    states, until every key's retained value equals the last value sent
//    and GET /api/v1/value's. Printed: both times, keys that agree, and
//    the keys that did not (key, retained, stored) when it never converged.
//
// Every wait is bounded: a count that has not grown for --stall-seconds
// (30) once its source has finished ends the wait, and the figures say what
// was stored by then. Options: --messages=N --keys=N --publishers=N
// --inflight=N --rate=N --quiet-rate=N --latency-seconds=N --backfill=N
// --stall-seconds=N --backfill-piece=N --writes-rate=N --writes-seconds=N
// --burst=N --converge-seconds=N --rounds=N (flood: each case N times, the
// summary adds the medians), --only=flood,latency,backfill,writes,burst
// (a comma list; all five by default).
// Never fails for being slow; exits 1 only when something does not work.
#include <httplib.h>
#include <mqtt/message.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "real_service.h"

namespace {

using namespace komoku::bench;  // NOLINT(google-build-using-namespace): a program's own helpers
using std::chrono::milliseconds;

constexpr milliseconds kPoll{50};
// No wait outlasts this, whatever the counts do.
constexpr milliseconds kLimit{30 * 60 * 1000};

struct Options {
  int messages = 200000;
  int keys = 1000;
  int publishers = 1;
  int inflight = 1000;
  int rate = 1000;
  int quiet_rate = 20;
  int latency_seconds = 10;
  int backfill = 525600;
  int stall_seconds = 30;
  int rounds = 1;              // flood: each case this many times, bare and komoku alternating
  int backfill_piece = 60000;  // lines a mosquitto_pub sends
  int writes_rate = 10;
  int writes_seconds = 120;
  int burst = 100000;
  int converge_seconds = 120;
  bool flood = true, latency = true, backfill_part = true, writes = true, burst_part = true;
  milliseconds stall() const { return milliseconds(1000LL * stall_seconds); }
};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

std::string Thousands(int64_t n) {
  std::string s = std::to_string(n < 0 ? -n : n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return n < 0 ? "-" + s : s;
}

std::string Rate(double count, double seconds) {
  if (seconds <= 0 || count <= 0) return "-";
  return Thousands(std::llround(count / seconds));
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// --- komoku -------------------------------------------------------------------

constexpr const char* kZigbeeRule =
    "mappings:\n"
    "  - name: zigbee2mqtt\n"
    "    topic: zigbee2mqtt/+\n"
    "    exclude: zigbee2mqtt/bridge/#\n"
    "    key: \"{1}/{field}\"\n"
    "    fields: \"*\"\n"
    "    ignore: [linkquality, last_seen, update]\n";

// The defaults, but no background compaction (none of this history is old
// enough to move, and a compaction would only add noise) and warnings only.
std::string KomokuConfig(const std::string& url, const std::string& client_id,
                         const std::string& data_dir, bool mapped) {
  return "mqtt:\n  broker: " + url + "\n  client_id: " + client_id +
         "\nstore:\n  data_dir: " + data_dir +
         "\n  compact_interval: 0\nhttp:\n  listen: 127.0.0.1:0\nlog:\n  level: warn\n" +
         (mapped ? kZigbeeRule : "");
}

// GET /api/v1/value of `key` answers `value`.
// bench/k0000, bench/k0001, ...: the keys of the latency and writes parts.
std::vector<std::string> BenchKeys(int n) {
  std::vector<std::string> keys;
  char name[32];
  for (int k = 0; k < n; ++k) {
    std::snprintf(name, sizeof name, "bench/k%04d", k);
    keys.emplace_back(name);
  }
  return keys;
}

bool ValueIs(httplib::Client* http, const std::string& key, double value) {
  auto res = http->Get("/api/v1/value?key=" + key);
  if (!res || res->status != 200) return false;
  const nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("value") || !j["value"].is_number()) return false;
  return std::fabs(j["value"].get<double>() - value) < 1e-9;
}

// What komoku's /metrics said last, read as a count for WaitProgress.
struct KomokuWatch {
  int port = 0;
  std::map<std::string, double> last;
  int64_t Stored() {
    std::map<std::string, double> m =
        Metrics(port, {"komoku_changes_stored_total", "komoku_writer_queue_depth",
                       "komoku_mqtt_messages_total", "komoku_mqtt_publish_errors_total"});
    if (!m.empty()) last = std::move(m);
    return Get("komoku_changes_stored_total");
  }
  int64_t Get(const std::string& series) const {
    auto it = last.find(series);
    return it == last.end() ? 0 : static_cast<int64_t>(it->second);
  }
};

// --- 1. flood -------------------------------------------------------------------

struct FloodCase {
  bool mapped = false;
  int qos = 1;
  std::string name() const {
    return std::string(mapped ? "mapped" : "set") + " QoS " + std::to_string(qos);
  }
};

struct Messages {
  std::vector<std::vector<Publication>> lanes;
  int64_t count = 0;
  int changes_per_message = 1;
  std::string filter;    // what Komoku and the baseline subscribe to
  std::string last_key;  // the key of the last message's (first) change
  double last_value = 0;
};

// Message i goes to key (or device) i % n, in lane (i % n) % publishers, so
// each key's messages stay in order.
Messages BuildMessages(const Options& o, bool mapped) {
  Messages m;
  m.count = o.messages;
  m.lanes.resize(static_cast<size_t>(o.publishers));
  const int64_t n = mapped ? std::max(1, o.keys / 2) : o.keys;
  m.changes_per_message = mapped ? 2 : 1;
  m.filter = mapped ? "zigbee2mqtt/+" : "komoku/set/#";
  char topic[64], payload[128];
  for (int64_t i = 0; i < m.count; ++i) {
    const int64_t k = i % n;
    const int64_t step = i / n % 1000;  // differs from the round before
    double value;
    if (mapped) {
      value = 15.0 + static_cast<double>(step) * 0.01;
      std::snprintf(topic, sizeof topic, "zigbee2mqtt/dev%04lld", static_cast<long long>(k));
      std::snprintf(payload, sizeof payload,
                    R"({"temperature":%.2f,"humidity":%.1f,"linkquality":120})", value,
                    40.0 + static_cast<double>(step) * 0.1);
      if (i == m.count - 1) m.last_key = std::string(topic + 12) + "/temperature";
    } else {
      value = 20.0 + static_cast<double>(step) * 0.01;
      std::snprintf(topic, sizeof topic, "komoku/set/bench/k%04lld", static_cast<long long>(k));
      std::snprintf(payload, sizeof payload, "%.2f", value);
      if (i == m.count - 1) m.last_key = topic + 11;
    }
    if (i == m.count - 1) m.last_value = std::round(value * 100) / 100;
    m.lanes[static_cast<size_t>(k % o.publishers)].push_back({topic, payload});
  }
  return m;
}

struct FloodRow {
  FloodCase c;
  int64_t sent = 0, publish_failed = 0;
  double publish_seconds = 0;
  int64_t bare_got = 0;
  double bare_seconds = 0;
  int64_t komoku_messages = 0;  // messages whose changes were all stored
  int64_t komoku_received = 0, komoku_state_errors = 0;
  double komoku_seconds = 0;
  bool komoku_done = false;
  // CPU time (user + system) of Komoku and of the broker from the flood's
  // start to the last change stored (Process::CpuSeconds).
  double komoku_cpu = 0, broker_cpu = 0;
};

FloodRow RunFloodCase(const Options& o, const FloodCase& c, const Messages& m) {
  FloodRow row;
  row.c = c;
  row.sent = m.count;
  ScratchDir dir(BenchBase(), "ingest-flood");
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port, "max_queued_messages 0\n");
  const std::string url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  FloodOptions fo;
  fo.qos = c.qos;
  fo.inflight = o.inflight;
  fo.stall = std::chrono::seconds(o.stall_seconds);

  {
    Consumer bare(url, "bare-consumer", m.filter, 1);
    fo.client_id = "flood-bare";
    Flood flood(url, m.lanes, fo);
    const Progress p =
        WaitProgress([&] { return bare.count(); }, m.count, flood.start(), o.stall(), kLimit,
                     milliseconds(5), nullptr, [&] { return flood.running(); });
    row.publish_seconds = flood.Wait();
    row.publish_failed = flood.failed();
    row.bare_got = p.count;
    row.bare_seconds =
        p.count > 0 ? std::chrono::duration<double>(bare.last() - flood.start()).count() : 0;
    bare.Close();
  }
  std::printf("  %-13s bare consumer: %s of %s in %.2f s (%s msg/s); publisher done in %.2f s\n",
              c.name().c_str(), Thousands(row.bare_got).c_str(), Thousands(m.count).c_str(),
              row.bare_seconds, Rate(static_cast<double>(row.bare_got), row.bare_seconds).c_str(),
              row.publish_seconds);

  Komoku komoku = StartKomoku(dir, KomokuConfig(url, "komoku-bench", dir.File("data"), c.mapped));
  auto http = NewClient(komoku.port);
  http->set_read_timeout(std::chrono::seconds(10));
  KomokuWatch watch{komoku.port, {}};
  fo.client_id = "flood-komoku";
  const double komoku_cpu_before = komoku.process->CpuSeconds();
  const double broker_cpu_before = broker->CpuSeconds();
  Flood flood(url, m.lanes, fo);
  const Progress p = WaitProgress([&] { return watch.Stored(); }, m.count * m.changes_per_message,
                                  flood.start(), o.stall(), kLimit, kPoll,
                                  [&] {
                                    return watch.Get("komoku_writer_queue_depth") == 0 &&
                                           ValueIs(http.get(), m.last_key, m.last_value);
                                  },
                                  [&] { return flood.running(); });
  row.komoku_cpu = komoku.process->CpuSeconds() - komoku_cpu_before;
  row.broker_cpu = broker->CpuSeconds() - broker_cpu_before;
  flood.Wait();
  row.komoku_done = p.reached;
  row.komoku_seconds = p.seconds;
  row.komoku_messages = p.count / m.changes_per_message;
  row.komoku_received = watch.Get("komoku_mqtt_messages_total");
  row.komoku_state_errors = watch.Get("komoku_mqtt_publish_errors_total");
  const bool alive = komoku.process->Running();
  std::printf("  %-13s komoku: %s of %s messages stored in %.2f s (%s msg/s)%s%s\n",
              c.name().c_str(), Thousands(row.komoku_messages).c_str(), Thousands(m.count).c_str(),
              row.komoku_seconds,
              Rate(static_cast<double>(row.komoku_messages), row.komoku_seconds).c_str(),
              p.reached ? "" : ", then no progress: gave up", alive ? "" : ", komoku exited");
  std::printf("  %-13s cpu: komoku %.2f s (%.1f us a message), broker %.2f s\n", c.name().c_str(),
              row.komoku_cpu,
              row.komoku_messages > 0
                  ? row.komoku_cpu * 1e6 / static_cast<double>(row.komoku_messages)
                  : 0.0,
              row.broker_cpu);
  // How the writer grouped them: big commits go straight into the indexed
  // table, small ones through `recent` and its folds (docs/storage.md).
  const int64_t batches = Metric(komoku.port, "komoku_commit_batches_total");
  const int64_t rows = Metric(komoku.port, "komoku_commit_rows_total");
  std::printf("  %-13s komoku: %s commits, %.0f rows a commit, %s folds\n", c.name().c_str(),
              Thousands(batches).c_str(),
              batches > 0 ? static_cast<double>(rows) / static_cast<double>(batches) : 0.0,
              Thousands(Metric(komoku.port, "komoku_hot_folds_total")).c_str());
  // Each state publication costs komoku and the broker about what a message
  // does: how many the flood caused (coalesced per key, docs/mqtt.md).
  std::printf("  %-13s komoku: %s states published\n", c.name().c_str(),
              Thousands(Metric(komoku.port, "komoku_state_published_total")).c_str());
  komoku.process->Stop();
  return row;
}

std::vector<FloodRow> RunFlood(const Options& o) {
  std::printf(
      "\n1. Flood: %s messages, %d keys (set) or %d devices x 2 fields (mapped), "
      "%d publisher(s), %d in flight each; broker max_queued_messages 0\n",
      Thousands(o.messages).c_str(), o.keys, std::max(1, o.keys / 2), o.publishers, o.inflight);
  std::vector<FloodRow> rows;
  for (bool mapped : {false, true}) {
    const Messages m = BuildMessages(o, mapped);
    for (int qos : {0, 1}) {
      for (int round = 0; round < std::max(1, o.rounds); ++round) {
        rows.push_back(RunFloodCase(o, FloodCase{mapped, qos}, m));
      }
    }
  }
  return rows;
}

// --- 2. latency -------------------------------------------------------------------

// Latencies of the publications a subscriber saw, matched by number.
class LatencyLog {
 public:
  explicit LatencyLog(const std::vector<std::atomic<int64_t>>* sent_ns)
      : sent_ns_(sent_ns), seen_(sent_ns->size(), 0) {}
  void Add(int64_t n, Clock::time_point arrived) {
    const int64_t at = NowNsOf(arrived);
    std::lock_guard<std::mutex> lock(mu_);
    if (n < 0 || n >= static_cast<int64_t>(seen_.size()) ||
        (*sent_ns_)[static_cast<size_t>(n)] == 0) {
      ++unmatched_;
      return;
    }
    if (seen_[static_cast<size_t>(n)]++) {
      ++duplicates_;
      return;
    }
    ms_.push_back(static_cast<double>(at - (*sent_ns_)[static_cast<size_t>(n)].load()) / 1e6);
  }
  void Unmatched() {
    std::lock_guard<std::mutex> lock(mu_);
    ++unmatched_;
  }
  struct Summary {
    int64_t matched = 0, unmatched = 0, duplicates = 0;
    double p50 = 0, p99 = 0, max = 0;
  };
  Summary Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    Summary s;
    s.matched = static_cast<int64_t>(ms_.size());
    s.unmatched = unmatched_;
    s.duplicates = duplicates_;
    s.p50 = Percentile(ms_, 0.50);
    s.p99 = Percentile(ms_, 0.99);
    s.max = ms_.empty() ? 0 : *std::max_element(ms_.begin(), ms_.end());
    return s;
  }
  int64_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(ms_.size());
  }

 private:
  static int64_t NowNsOf(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  const std::vector<std::atomic<int64_t>>* sent_ns_;
  mutable std::mutex mu_;
  std::vector<uint8_t> seen_;  // guarded by mu_
  std::vector<double> ms_;     // guarded by mu_
  int64_t unmatched_ = 0, duplicates_ = 0;
};

struct LatencyResult {
  int rate = 0;
  int64_t sent = 0, failed = 0;
  double seconds = 0;
  LatencyLog::Summary broker, komoku;
};

LatencyResult RunLatency(const Options& o, int rate) {
  const int64_t total = static_cast<int64_t>(rate) * o.latency_seconds;
  std::printf("\n2. Latency: %s messages/s over %d keys for %d s (%s messages), QoS 1\n",
              Thousands(rate).c_str(), o.keys, o.latency_seconds, Thousands(total).c_str());
  ScratchDir dir(BenchBase(), "ingest-latency");
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  const std::string url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  Komoku komoku = StartKomoku(dir, KomokuConfig(url, "komoku-bench", dir.File("data"), false));

  std::vector<std::atomic<int64_t>> sent_ns(static_cast<size_t>(total));
  for (auto& s : sent_ns) s = 0;
  LatencyLog on_set(&sent_ns), on_state(&sent_ns);
  Consumer set_sub(url, "latency-set", "komoku/set/#", 1,
                   [&](const mqtt::message& msg, Clock::time_point at) {
                     const std::string& p = msg.get_payload_str();
                     char* end = nullptr;
                     const long long n = std::strtoll(p.c_str(), &end, 10);
                     if (end == p.c_str()) return on_set.Unmatched();
                     on_set.Add(n, at);
                   });
  Consumer state_sub(url, "latency-state", "komoku/state/#", 1,
                     [&](const mqtt::message& msg, Clock::time_point at) {
                       const nlohmann::json j =
                           nlohmann::json::parse(msg.get_payload_str(), nullptr, false);
                       if (!j.is_object() || !j.contains("value") || !j["value"].is_number()) {
                         return on_state.Unmatched();
                       }
                       on_state.Add(std::llround(j["value"].get<double>()), at);
                     });

  const std::vector<std::string> keys = BenchKeys(o.keys);
  IngestOptions io;
  io.count = total;
  const int64_t nkeys = o.keys;
  io.payload = [nkeys](size_t key, int64_t round) {
    return std::to_string(round * nkeys + static_cast<int64_t>(key));
  };
  io.before_publish = [&](int64_t n) { sent_ns[static_cast<size_t>(n)] = NowNs(); };
  const Clock::time_point start = Clock::now();
  Ingest ingest(url, "latency-pub", rate, keys, io);
  auto publishing = [&] { return ingest.published() + ingest.failed() < total; };
  WaitProgress([&] { return on_set.count(); }, total, start, o.stall(), kLimit, kPoll, nullptr,
               publishing);
  WaitProgress([&] { return on_state.count(); }, total, start, o.stall(), kLimit, kPoll, nullptr,
               publishing);
  LatencyResult r;
  r.rate = rate;
  r.seconds = SecondsSince(start);
  ingest.Stop();
  r.sent = ingest.published();
  r.failed = ingest.failed();
  set_sub.Close();
  state_sub.Close();
  r.broker = on_set.Get();
  r.komoku = on_state.Get();
  komoku.process->Stop();
  return r;
}

// --- 4. writes ---------------------------------------------------------------------

struct WritesResult {
  int64_t changes = 0;     // acknowledged by the broker
  int64_t stored = 0;      // komoku_changes_stored_total
  int64_t mqtt_bytes = 0;  // their topics and payloads
  int64_t wchar = 0, write_bytes = 0;
  double seconds = 0;
};

WritesResult RunWrites(const Options& o) {
  std::printf("\n4. Writes: %d changes/s over %d keys for %d s\n", o.writes_rate, o.keys,
              o.writes_seconds);
  ScratchDir dir(BenchBase(), "ingest-writes");
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  const std::string url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  Komoku komoku = StartKomoku(dir, KomokuConfig(url, "komoku-bench", dir.File("data"), false));
  const std::vector<std::string> keys = BenchKeys(o.keys);
  // One round over every key first, so each key and its first rows exist
  // and what is measured is the steady state.
  {
    IngestOptions warm;
    warm.count = o.keys;
    Ingest first(url, "writes-warm", 2000, keys, warm);
    WaitFor([&] { return first.published() + first.failed() >= o.keys; }, std::chrono::seconds(60));
    first.Stop();
    WaitFor([&] { return Metric(komoku.port, "komoku_changes_stored_total") >= o.keys; },
            std::chrono::seconds(60));
    std::this_thread::sleep_for(std::chrono::seconds(12));  // a checkpoint
  }
  const pid_t pid = komoku.process->pid();
  const int64_t wchar0 = ProcIo(pid, "wchar"), wb0 = ProcIo(pid, "write_bytes");
  const int64_t stored0 = Metric(komoku.port, "komoku_changes_stored_total");
  const Clock::time_point start = Clock::now();
  IngestOptions io;
  io.first = o.keys;
  io.count = static_cast<int64_t>(o.writes_rate) * o.writes_seconds;
  Ingest ingest(url, "writes-pub", o.writes_rate, keys, io);
  WaitFor([&] { return ingest.published() + ingest.failed() >= io.count; },
          std::chrono::seconds(o.writes_seconds * 2 + 60));
  // The commits and one checkpoint of the last changes.
  std::this_thread::sleep_for(std::chrono::seconds(12));
  WritesResult r;
  r.seconds = SecondsSince(start);
  r.changes = ingest.published();
  r.mqtt_bytes = ingest.bytes();
  r.stored = Metric(komoku.port, "komoku_changes_stored_total") - stored0;
  r.wchar = ProcIo(pid, "wchar") - wchar0;
  r.write_bytes = ProcIo(pid, "write_bytes") - wb0;
  ingest.Stop();
  komoku.process->Stop();
  return r;
}

// --- 3. backfill -------------------------------------------------------------------

// Receive Maximum of the second bare consumer: the most MQTT 5 allows.
constexpr int kWideReceiveMaximum = 65535;

struct BareBackfill {
  int receive_maximum = 0;  // 0: not sent, as komoku connects today
  int64_t got = 0;
  double seconds = 0, pub_seconds = 0;
};

struct BackfillRow {
  int64_t lines = 0;
  std::vector<BareBackfill> bare;
  int64_t komoku_stored = 0;
  double komoku_seconds = 0, komoku_pub_seconds = 0;
  bool komoku_done = false, komoku_current_is_last = false;
};

// Runs mosquitto_pub on `file` and waits until `read` reaches `lines` (and
// `complete` holds) or stops growing after mosquitto_pub ended.
// The pieces are sent one after the other, each by its own mosquitto_pub.
Progress Backfill(const ScratchDir& dir, int broker_port, const std::vector<std::string>& files,
                  int64_t lines, const std::string& tag, const Options& o,
                  const std::function<int64_t()>& read, const std::function<bool()>& complete,
                  double* pub_seconds) {
  const Clock::time_point start = Clock::now();
  std::atomic<bool> sending{true};
  std::thread feeder([&] {
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string id = "backfill-" + tag + "-" + std::to_string(i);
      Process pub({MOSQUITTO_PUB_BINARY, "-h", "127.0.0.1", "-p", std::to_string(broker_port), "-q",
                   "1", "-l", "-t", "komoku/set/backfill", "-i", id},
                  dir.File("mosquitto_pub-" + id + ".log"), files[i]);
      const int rc = pub.Wait(milliseconds(1000LL * (o.stall_seconds + 600)));
      if (rc < 0) {
        pub.Stop();
        std::printf("  mosquitto_pub (%s) did not finish; stopped\n", id.c_str());
      } else if (rc > 0) {
        std::printf("  mosquitto_pub (%s) exited with %d: %s\n", id.c_str(), rc,
                    pub.Output().c_str());
      }
    }
    *pub_seconds = SecondsSince(start);
    sending = false;
  });
  const Progress p = WaitProgress(read, lines, start, o.stall(), kLimit, kPoll, complete,
                                  [&] { return sending.load(); });
  feeder.join();
  return p;
}

BackfillRow RunBackfill(const Options& o) {
  BackfillRow row;
  row.lines = o.backfill;
  std::printf(
      "\n3. Backfill: %s lines of {\"value\":v,\"time\":t}, 1 min apart, "
      "mosquitto_pub -q 1 -l in pieces of %s lines, broker defaults\n",
      Thousands(row.lines).c_str(), Thousands(o.backfill_piece).c_str());
  ScratchDir dir(BenchBase(), "ingest-backfill");
  // mosquitto_pub -l of Mosquitto 2.0.11 loses what follows the 65,535th
  // line of a file (the caveat in docs/benchmarks.md): the year goes in
  // pieces of --backfill-piece lines, one mosquitto_pub each, in order.
  std::vector<std::string> files;
  const int64_t end_s = std::time(nullptr) / 60 * 60 - 60;
  double last_value = 0;
  int64_t last_time = 0;
  {
    std::ofstream out;
    char line[96];
    for (int64_t i = 0; i < row.lines; ++i) {
      if (i % o.backfill_piece == 0) {
        if (out.is_open() && !out.flush()) Fail("cannot write " + files.back());
        out.close();
        files.push_back(dir.File("backfill-" + std::to_string(files.size()) + ".txt"));
        out.open(files.back());
      }
      last_value = 15.0 + static_cast<double>(i % 1000) * 0.01;  // never the value before
      last_time = end_s - (row.lines - 1 - i) * 60;
      std::snprintf(line, sizeof line, "{\"value\":%.2f,\"time\":%lld}\n", last_value,
                    static_cast<long long>(last_time));
      out << line;
    }
    if (!out.flush()) Fail("cannot write " + files.back());
  }
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  const std::string url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  for (int receive_maximum : {0, kWideReceiveMaximum}) {
    BareBackfill b;
    b.receive_maximum = receive_maximum;
    const std::string tag = "bare-rm" + std::to_string(receive_maximum);
    Consumer bare(url, tag, "komoku/set/#", 1, nullptr, receive_maximum);
    const Clock::time_point start = Clock::now();
    const Progress p = Backfill(
        dir, broker_port, files, row.lines, tag, o, [&] { return bare.count(); }, nullptr,
        &b.pub_seconds);
    b.got = p.count;
    b.seconds = p.count > 0 ? std::chrono::duration<double>(bare.last() - start).count() : 0;
    bare.Close();
    std::printf("  bare consumer, receive maximum %s: %s of %s in %.2f s (mosquitto_pub %.2f s)\n",
                receive_maximum ? std::to_string(receive_maximum).c_str() : "not sent",
                Thousands(b.got).c_str(), Thousands(row.lines).c_str(), b.seconds, b.pub_seconds);
    row.bare.push_back(b);
  }

  Komoku komoku = StartKomoku(dir, KomokuConfig(url, "komoku-bench", dir.File("data"), false));
  KomokuWatch watch{komoku.port, {}};
  const Progress p = Backfill(
      dir, broker_port, files, row.lines, "komoku", o, [&] { return watch.Stored(); },
      [&] { return watch.Get("komoku_writer_queue_depth") == 0; }, &row.komoku_pub_seconds);
  row.komoku_done = p.reached;
  row.komoku_stored = p.count;
  row.komoku_seconds = p.seconds;
  {
    auto http = NewClient(komoku.port);
    http->set_read_timeout(std::chrono::seconds(10));
    auto res = http->Get("/api/v1/value?key=backfill");
    if (res && res->status == 200) {
      const nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
      row.komoku_current_is_last = j.is_object() &&
                                   j.value("value", -1.0) == std::round(last_value * 100) / 100 &&
                                   std::llround(j.value("time", 0.0)) == last_time;
    }
  }
  std::printf("  komoku: %s of %s stored in %.2f s%s (mosquitto_pub %.2f s); current value %s\n",
              Thousands(row.komoku_stored).c_str(), Thousands(row.lines).c_str(),
              row.komoku_seconds, p.reached ? "" : ", then no progress: gave up",
              row.komoku_pub_seconds,
              row.komoku_current_is_last ? "is the last line's" : "is NOT the last line's");
  komoku.process->Stop();
  return row;
}

// --- 5. burst ----------------------------------------------------------------------

constexpr const char* kStatePrefix = "komoku/state/";
// Time between two looks at the retained states.
constexpr milliseconds kConvergePoll{200};

// Publication i goes to key i % keys with the value i, so a key's values
// rise and its last one is the largest i that goes to it; each key stays in
// one lane (publisher), in order.
struct Burst {
  std::vector<std::vector<Publication>> lanes;
  std::vector<std::string> keys;  // those given at least one value
  std::vector<int64_t> last;      // per key, the value sent last
  int64_t count = 0;
};

Burst BuildBurst(const Options& o) {
  Burst b;
  b.count = o.burst;
  b.keys = BenchKeys(static_cast<int>(std::min<int64_t>(o.keys, b.count)));
  b.last.assign(b.keys.size(), 0);
  b.lanes.resize(static_cast<size_t>(o.publishers));
  const int64_t n = static_cast<int64_t>(b.keys.size());
  for (int64_t i = 0; i < b.count; ++i) {
    const size_t k = static_cast<size_t>(i % n);
    b.last[k] = i;
    b.lanes[k % b.lanes.size()].push_back({"komoku/set/" + b.keys[k], std::to_string(i)});
  }
  return b;
}

// What a new subscriber to komoku/state/# is given: each key's retained
// state's "value" (null when the payload has none), and when the
// subscriber had them all (the broker had these states by then).
struct RetainedSnapshot {
  std::map<std::string, nlohmann::json> values;
  Clock::time_point taken{};
};

// A fresh mosquitto_sub takes the retained states and exits at the first
// live one, after `expect` of them, or after 5 s. Not a Paho client in this
// process: there a new client took 1.0-1.1 s to connect once the burst's
// publishers had run (11-111 ms before them). MQTT 5 with Receive Maximum
// 65,535, as komoku connects, so a stock Mosquitto hands over every retained
// state at once (it drops QoS 0 past 1,000 queued beyond a client's window).
RetainedSnapshot TakeRetained(const ScratchDir& dir, int broker_port, const std::string& client_id,
                              size_t expect) {
  const std::string log = dir.File(client_id + ".log");
  Process sub({MOSQUITTO_SUB_BINARY,
               "-h",
               "127.0.0.1",
               "-p",
               std::to_string(broker_port),
               "-V",
               "5",
               "-D",
               "connect",
               "receive-maximum",
               "65535",
               "-i",
               client_id,
               "-t",
               std::string(kStatePrefix) + "#",
               "-v",
               "--retained-only",
               "-C",
               std::to_string(expect),
               "-W",
               "5"},
              log);
  if (!WaitFor([&] { return !sub.Running(); }, milliseconds(10000), milliseconds(2))) sub.Stop();
  RetainedSnapshot snap;
  snap.taken = Clock::now();
  std::ifstream in(log);
  std::string line;
  // "komoku/state/<key> <payload>": keys hold no space (BenchKeys).
  while (std::getline(in, line)) {
    const size_t space = line.find(' ');
    if (line.rfind(kStatePrefix, 0) != 0 || space == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line.substr(space + 1), nullptr, false);
    snap.values[line.substr(std::strlen(kStatePrefix), space - std::strlen(kStatePrefix))] =
        j.is_object() && j.contains("value") ? j["value"] : nlohmann::json();
  }
  in.close();
  std::remove(log.c_str());
  return snap;
}

// GET /api/v1/value's "value" of `key`; null when it does not answer one.
nlohmann::json StoredValue(httplib::Client* http, const std::string& key) {
  auto res = http->Get("/api/v1/value?key=" + key);
  if (!res || res->status != 200) return nullptr;
  const nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  return j.is_object() && j.contains("value") ? j["value"] : nlohmann::json();
}

bool Is(const nlohmann::json& v, int64_t value) {
  return v.is_number() && v.get<double>() == static_cast<double>(value);
}

struct BurstMismatch {
  std::string key;
  nlohmann::json retained, stored;  // null: none
  int64_t sent = 0;
};

struct BurstResult {
  int64_t sent = 0;
  int keys = 0;
  // Baseline: a bare consumer of komoku/set/# on the same broker.
  int64_t bare_got = 0, bare_publish_failed = 0;
  double bare_seconds = 0;          // first publish to the last message received
  double bare_publish_seconds = 0;  // first publish to the last acknowledgement
  // komoku's burst; "after" times run from its last acknowledgement.
  int64_t publish_failed = 0;
  double publish_seconds = 0;
  int64_t received = 0, stored = 0, state_published = 0, state_errors = 0;
  double stored_after = -1;  // all stored and the writer's queue empty; -1: not seen
  bool converged = false;
  double retained_after = 0;   // the snapshot that found every retained state right
  double converged_after = 0;  // then every stored value read, and right
  double missed_after = -1;    // the last snapshot that did not; -1: none
  int polls = 0;
  int matched = 0;  // keys whose retained state and stored value are the last sent
  int retained_seen = 0;
  int64_t mismatch_count = 0;
  std::vector<BurstMismatch> mismatches;  // the first few, from the last snapshot
};

constexpr size_t kMismatchesShown = 10;

BurstResult RunBurst(const Options& o) {
  const Burst b = BuildBurst(o);
  BurstResult r;
  r.sent = b.count;
  r.keys = static_cast<int>(b.keys.size());
  std::printf(
      "\n5. Burst: %s messages over %d keys, QoS 1, %d publisher(s), %d in flight each; "
      "broker defaults; convergence awaited up to %d s\n",
      Thousands(b.count).c_str(), r.keys, o.publishers, o.inflight, o.converge_seconds);
  ScratchDir dir(BenchBase(), "ingest-burst");
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  const std::string url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  FloodOptions fo;
  fo.qos = 1;
  fo.inflight = o.inflight;
  fo.stall = std::chrono::seconds(o.stall_seconds);

  {
    // Connected as komoku connects (MQTT 5 Receive Maximum 65,535).
    Consumer bare(url, "burst-bare", "komoku/set/#", 1, nullptr, kWideReceiveMaximum);
    fo.client_id = "burst-bare";
    Flood flood(url, b.lanes, fo);
    const Progress p =
        WaitProgress([&] { return bare.count(); }, b.count, flood.start(), o.stall(), kLimit,
                     milliseconds(5), nullptr, [&] { return flood.running(); });
    r.bare_publish_seconds = flood.Wait();
    r.bare_publish_failed = flood.failed();
    r.bare_got = p.count;
    r.bare_seconds =
        p.count > 0 ? std::chrono::duration<double>(bare.last() - flood.start()).count() : 0;
    bare.Close();
  }
  std::printf("  bare consumer: %s of %s in %.2f s; publisher done in %.2f s\n",
              Thousands(r.bare_got).c_str(), Thousands(b.count).c_str(), r.bare_seconds,
              r.bare_publish_seconds);

  Komoku komoku = StartKomoku(dir, KomokuConfig(url, "komoku-bench", dir.File("data"), false));
  auto http = NewClient(komoku.port);
  http->set_read_timeout(std::chrono::seconds(10));
  // A connection per request: on a kept-alive one each answer of komoku's
  // HTTP server waited about 40 ms for the client's delayed ACK (measured
  // here; curl sees the same), so 1,000 values took 27 s instead of 0.2 s.
  http->set_keep_alive(false);
  KomokuWatch watch{komoku.port, {}};
  fo.client_id = "burst-komoku";
  Flood flood(url, b.lanes, fo);
  r.publish_seconds = flood.Wait();
  r.publish_failed = flood.failed();
  const Clock::time_point end =
      flood.start() +
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(r.publish_seconds));
  auto after = [&](Clock::time_point t) { return std::chrono::duration<double>(t - end).count(); };
  const milliseconds wait_limit(1000LL * o.converge_seconds);
  const Clock::time_point deadline = end + wait_limit;

  // Every change stored and committed (this thread alone reads `watch`
  // until the join) while the retained states are looked at.
  Progress p;
  std::thread stored_waiter([&] {
    p = WaitProgress([&] { return watch.Stored(); }, b.count, end, o.stall(), wait_limit, kPoll,
                     [&] { return watch.Get("komoku_writer_queue_depth") == 0; });
  });
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{stored_waiter};  // also when a look throws

  // Each look is a fresh client, so what it gets is the broker's retained
  // state, not a live publication. Its stored values are read only once
  // every retained state is the last sent.
  RetainedSnapshot snap;
  std::vector<nlohmann::json> stored(b.keys.size());
  bool stored_read = false;
  for (;;) {
    const Clock::time_point look = Clock::now();
    snap = TakeRetained(dir, broker_port, "burst-look-" + std::to_string(r.polls++), b.keys.size());
    int right = 0;
    for (size_t k = 0; k < b.keys.size(); ++k) {
      auto it = snap.values.find(b.keys[k]);
      if (it != snap.values.end() && Is(it->second, b.last[k])) ++right;
    }
    stored_read = false;
    if (right == r.keys) {
      // The stored values cannot change any more once they are the last sent.
      stored_read = true;
      int also = 0;
      for (size_t k = 0; k < b.keys.size(); ++k) {
        stored[k] = StoredValue(http.get(), b.keys[k]);
        if (Is(stored[k], b.last[k])) ++also;
      }
      if (also == r.keys) {
        r.converged = true;
        r.retained_after = after(snap.taken);
        r.converged_after = after(Clock::now());
        break;
      }
    }
    r.missed_after = after(snap.taken);
    if (Clock::now() >= deadline || !komoku.process->Running()) break;
    std::this_thread::sleep_until(look + kConvergePoll);
  }
  stored_waiter.join();
  if (p.reached) r.stored_after = p.seconds;
  if (!stored_read) {
    for (size_t k = 0; k < b.keys.size(); ++k) stored[k] = StoredValue(http.get(), b.keys[k]);
  }
  r.retained_seen = static_cast<int>(snap.values.size());
  for (size_t k = 0; k < b.keys.size(); ++k) {
    auto it = snap.values.find(b.keys[k]);
    const nlohmann::json retained = it == snap.values.end() ? nlohmann::json() : it->second;
    if (Is(retained, b.last[k]) && Is(stored[k], b.last[k])) {
      ++r.matched;
      continue;
    }
    ++r.mismatch_count;
    if (r.mismatches.size() < kMismatchesShown) {
      r.mismatches.push_back({b.keys[k], retained, stored[k], b.last[k]});
    }
  }
  r.stored = watch.Stored();
  r.received = watch.Get("komoku_mqtt_messages_total");
  // Not among the families the watch reads.
  r.state_published = Metric(komoku.port, "komoku_state_published_total");
  r.state_errors = watch.Get("komoku_mqtt_publish_errors_total");
  const bool alive = komoku.process->Running();
  std::string stored_note = " (NOT all)";
  if (r.stored_after >= 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " (all, %.3f s after the burst)", r.stored_after);
    stored_note = buf;
  }
  std::printf("  komoku: publisher done in %.2f s; %s stored%s; ", r.publish_seconds,
              Thousands(r.stored).c_str(), stored_note.c_str());
  if (r.converged) {
    std::printf(
        "retained = stored = last sent for all %d keys %.3f s after the burst "
        "(%d looks)%s\n",
        r.keys, r.converged_after, r.polls, alive ? "" : ", komoku exited");
  } else {
    std::printf("NOT converged after %d s: %d of %d keys right, %s wrong (%d looks)%s\n",
                o.converge_seconds, r.matched, r.keys, Thousands(r.mismatch_count).c_str(), r.polls,
                alive ? "" : ", komoku exited");
  }
  komoku.process->Stop();
  return r;
}

// --- main -------------------------------------------------------------------

std::string Ratio(double a, double b) {
  if (a <= 0 || b <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", a / b);
  return buf;
}

// A retained state or stored value as the report shows it.
std::string Shown(const nlohmann::json& v) { return v.is_null() ? "none" : v.dump(); }

void PrintBurst(const BurstResult& r) {
  std::printf(
      "\nBurst of %s messages over %d keys at QoS 1, default Mosquitto; after = from the "
      "publisher's last acknowledgement\n",
      Thousands(r.sent).c_str(), r.keys);
  std::printf("%-34s %9s %9s %9s  %s\n", "path", "got", "total s", "after s", "notes");
  char buf[96];
  std::snprintf(buf, sizeof buf, "publisher %.3f s", r.bare_publish_seconds);
  std::string notes = buf;
  if (r.bare_publish_failed) notes += ", failed " + Thousands(r.bare_publish_failed);
  std::printf("%-34s %9s %9.3f %9.3f  %s\n", "broker: komoku/set/# (bare)",
              Thousands(r.bare_got).c_str(), r.bare_seconds,
              r.bare_seconds - r.bare_publish_seconds, notes.c_str());
  notes = "received " + Thousands(r.received);
  if (r.publish_failed) notes += "; publisher failed " + Thousands(r.publish_failed);
  if (r.stored_after >= 0) {
    std::printf("%-34s %9s %9.3f %9.3f  %s\n", "komoku: stored, committed",
                Thousands(r.stored).c_str(), r.publish_seconds + r.stored_after, r.stored_after,
                notes.c_str());
  } else {
    std::printf("%-34s %9s %9s %9s  NOT all stored; %s\n", "komoku: stored, committed",
                Thousands(r.stored).c_str(), "-", "-", notes.c_str());
  }
  notes = std::to_string(r.polls) + " looks";
  if (r.converged) {
    std::snprintf(buf, sizeof buf, ", retained all right at %.3f s", r.retained_after);
    notes += buf;
  }
  if (r.missed_after >= 0) {
    std::snprintf(buf, sizeof buf, ", %s at %.3f s not yet",
                  r.converged ? "the look before" : "the last", r.missed_after);
    notes += buf;
  }
  notes += "; " + Thousands(r.state_published) + " states published";
  if (r.state_errors) notes += ", " + Thousands(r.state_errors) + " publish errors";
  const std::string keys = std::to_string(r.matched) + "/" + std::to_string(r.keys);
  if (r.converged) {
    std::printf("%-34s %9s %9.3f %9.3f  %s\n", "komoku: retained = stored = last", keys.c_str(),
                r.publish_seconds + r.converged_after, r.converged_after, notes.c_str());
  } else {
    std::printf("%-34s %9s %9s %9s  NOT converged; %d retained seen; %s\n",
                "komoku: retained = stored = last", keys.c_str(), "-", "-", r.retained_seen,
                notes.c_str());
  }
  std::printf(
      "total s komoku converged/bare got all: %s\n",
      r.converged ? Ratio(r.publish_seconds + r.converged_after, r.bare_seconds).c_str() : "-");
  if (r.mismatch_count > 0) {
    std::printf("%s keys wrong at the end (key: retained, stored, last sent):\n",
                Thousands(r.mismatch_count).c_str());
    for (const BurstMismatch& m : r.mismatches) {
      std::printf("  %s: %s, %s, %lld\n", m.key.c_str(), Shown(m.retained).c_str(),
                  Shown(m.stored).c_str(), static_cast<long long>(m.sent));
    }
  }
  std::printf("(bar: after the burst every key's retained state equals its stored value)\n");
}

void PrintSummary(const Options& o, const std::vector<FloodRow>& flood,
                  const std::vector<LatencyResult>& latency, const BackfillRow* back,
                  const WritesResult* writes, const BurstResult* burst) {
  std::printf("\n=== ingest_bench summary ===\n");
  if (!flood.empty()) {
    std::printf("\nFlood throughput (%s messages; komoku timed until committed and queryable)\n",
                Thousands(o.messages).c_str());
    std::printf("%-13s %9s %9s %8s %10s | %9s %8s %10s %7s | %s\n", "case", "sent", "bare got",
                "bare s", "bare msg/s", "komoku", "komoku s", "msg/s", "ratio", "komoku notes");
    for (const FloodRow& r : flood) {
      const double bare_rate = r.bare_seconds > 0 ? r.bare_got / r.bare_seconds : 0;
      const double komoku_rate = r.komoku_seconds > 0 ? r.komoku_messages / r.komoku_seconds : 0;
      std::string notes = r.komoku_done ? "all stored" : "gave up (no progress)";
      notes += "; received " + Thousands(r.komoku_received);
      if (r.komoku_state_errors > 0) {
        notes += "; " + Thousands(r.komoku_state_errors) + " publish errors";
      }
      if (r.publish_failed > 0) notes += "; publisher failed " + Thousands(r.publish_failed);
      std::printf("%-13s %9s %9s %8.2f %10s | %9s %8.2f %10s %7s | %s\n", r.c.name().c_str(),
                  Thousands(r.sent).c_str(), Thousands(r.bare_got).c_str(), r.bare_seconds,
                  Rate(static_cast<double>(r.bare_got), r.bare_seconds).c_str(),
                  Thousands(r.komoku_messages).c_str(), r.komoku_seconds,
                  Rate(static_cast<double>(r.komoku_messages), r.komoku_seconds).c_str(),
                  Ratio(komoku_rate, bare_rate).c_str(), notes.c_str());
    }
    std::printf(
        "(mapped: 2 changes a message; messages/s counts messages. Bars: >= 0.9x at QoS 0, "
        ">= 0.7x at QoS 1.)\n");
    if (o.rounds > 1) {
      // One slow run of either side moves a single ratio by 20 % on a busy
      // machine: the medians of the rounds (bare and komoku ran alternately).
      std::printf("\nMedians of %d rounds (seconds to take every message)\n", o.rounds);
      std::printf("%-13s %8s %8s %7s | %s\n", "case", "bare s", "komoku s", "ratio",
                  "each round's ratio");
      for (size_t i = 0; i < flood.size(); i += static_cast<size_t>(o.rounds)) {
        std::vector<double> bare, komoku;
        std::string each;
        for (size_t j = i; j < std::min(flood.size(), i + static_cast<size_t>(o.rounds)); ++j) {
          const FloodRow& r = flood[j];
          if (r.bare_got != r.sent || !r.komoku_done) continue;  // a case that did not finish
          bare.push_back(r.bare_seconds);
          komoku.push_back(r.komoku_seconds);
          each += (each.empty() ? "" : ", ") + Ratio(r.bare_seconds, r.komoku_seconds);
        }
        const double b = Percentile(bare, 0.5), k = Percentile(komoku, 0.5);
        std::printf("%-13s %8.2f %8.2f %7s | %s\n", flood[i].c.name().c_str(), b, k,
                    Ratio(b, k).c_str(), each.c_str());
      }
    }
  }
  for (const LatencyResult& r : latency) {
    std::printf(
        "\nPublish -> receive latency, %s msg/s over %d keys, %s published (%s failed) "
        "in %.1f s\n",
        Thousands(r.rate).c_str(), o.keys, Thousands(r.sent).c_str(), Thousands(r.failed).c_str(),
        r.seconds);
    std::printf("%-28s %9s %9s %9s %9s %9s\n", "path", "received", "p50 ms", "p99 ms", "max ms",
                "dup/bad");
    auto line = [](const char* name, const LatencyLog::Summary& s) {
      std::printf("%-28s %9s %9.2f %9.2f %9.2f %4s/%-4s\n", name, Thousands(s.matched).c_str(),
                  s.p50, s.p99, s.max, Thousands(s.duplicates).c_str(),
                  Thousands(s.unmatched).c_str());
    };
    line("broker: komoku/set/#", r.broker);
    line("komoku: komoku/state/#", r.komoku);
    std::printf("p99 komoku/broker: %s (bar at 1,000 msg/s: komoku p99 <= 5 ms)\n",
                Ratio(r.komoku.p99, r.broker.p99).c_str());
  }
  if (back) {
    std::printf("\nBackfill of %s lines, mosquitto_pub -q 1 -l, default Mosquitto\n",
                Thousands(back->lines).c_str());
    std::printf("%-26s %9s %8s %10s %16s\n", "consumer", "got", "seconds", "msg/s",
                "mosquitto_pub s");
    for (const BareBackfill& b : back->bare) {
      const std::string name = b.receive_maximum
                                   ? "bare, receive max " + std::to_string(b.receive_maximum)
                                   : "bare (as komoku connects)";
      std::printf("%-26s %9s %8.2f %10s %16.2f\n", name.c_str(), Thousands(b.got).c_str(),
                  b.seconds, Rate(static_cast<double>(b.got), b.seconds).c_str(), b.pub_seconds);
    }
    std::printf("%-26s %9s %8.2f %10s %16.2f  %s; current value %s\n", "komoku (stored)",
                Thousands(back->komoku_stored).c_str(), back->komoku_seconds,
                Rate(static_cast<double>(back->komoku_stored), back->komoku_seconds).c_str(),
                back->komoku_pub_seconds,
                back->komoku_done ? "all stored" : "gave up (no progress)",
                back->komoku_current_is_last ? "right" : "wrong");
    std::printf("(bar: all %s stored)\n", Thousands(back->lines).c_str());
  }
  if (writes) {
    const double n = static_cast<double>(std::max<int64_t>(1, writes->stored));
    std::printf(
        "\nWrites at %d changes/s over %d keys: %s changes acknowledged, %s stored in "
        "%.0f s\n",
        o.writes_rate, o.keys, Thousands(writes->changes).c_str(),
        Thousands(writes->stored).c_str(), writes->seconds);
    std::printf("%-44s %12s\n", "bytes a change", "");
    std::printf("%-44s %12.0f\n", "komoku: handed to write() (wchar)", writes->wchar / n);
    std::printf("%-44s %12.0f\n", "komoku: to the device (write_bytes)", writes->write_bytes / n);
    std::printf("%-44s %12.0f\n", "baseline: MQTT topic + payload",
                writes->mqtt_bytes / static_cast<double>(std::max<int64_t>(1, writes->changes)));
    std::printf("%-44s %12d\n", "baseline: komoku before the ingest log", 3300);
    std::printf(
        "(bar: wchar <= 1/5 of 3,300 = 660 bytes a change. write_bytes counts whole\n"
        " page-cache folios on recent kernels: see docs/benchmarks.md, Footprint.)\n");
  }
  if (burst) PrintBurst(*burst);
}

// Takes --only=a,b out of argv; the rest are int flags.
void ParseOptions(int argc, char** argv, Options* o) {
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--only=", 0) != 0) {
      rest.push_back(argv[i]);
      continue;
    }
    o->flood = o->latency = o->backfill_part = o->writes = o->burst_part = false;
    std::string list = a.substr(7) + ",";
    for (size_t pos = 0, comma; (comma = list.find(',', pos)) != std::string::npos;
         pos = comma + 1) {
      const std::string part = list.substr(pos, comma - pos);
      if (part == "flood") {
        o->flood = true;
      } else if (part == "latency") {
        o->latency = true;
      } else if (part == "backfill") {
        o->backfill_part = true;
      } else if (part == "writes") {
        o->writes = true;
      } else if (part == "burst") {
        o->burst_part = true;
      } else {
        Fail("unknown part '" + part + "' in " + a +
             " (known: flood, latency, backfill, writes, burst)");
      }
    }
  }
  ParseIntFlags(static_cast<int>(rest.size()), rest.data(),
                {{"--messages", &o->messages},
                 {"--keys", &o->keys},
                 {"--publishers", &o->publishers},
                 {"--inflight", &o->inflight},
                 {"--rate", &o->rate},
                 {"--quiet-rate", &o->quiet_rate},
                 {"--latency-seconds", &o->latency_seconds},
                 {"--backfill", &o->backfill},
                 {"--stall-seconds", &o->stall_seconds},
                 {"--rounds", &o->rounds},
                 {"--backfill-piece", &o->backfill_piece},
                 {"--writes-rate", &o->writes_rate},
                 {"--writes-seconds", &o->writes_seconds},
                 {"--burst", &o->burst},
                 {"--converge-seconds", &o->converge_seconds}});
  if (o->backfill_piece <= 0) Fail("--backfill-piece must be at least 1");
}

int Run(int argc, char** argv) {
  Options o;
  ParseOptions(argc, argv, &o);
  std::printf("ingest_bench: %s\n", MachineLine().c_str());
  std::vector<FloodRow> flood;
  std::vector<LatencyResult> latency;
  BackfillRow back;
  WritesResult writes;
  BurstResult burst;
  if (o.flood) flood = RunFlood(o);
  if (o.latency) {
    latency.push_back(RunLatency(o, o.rate));
    latency.push_back(RunLatency(o, o.quiet_rate));
  }
  if (o.backfill_part) back = RunBackfill(o);
  if (o.writes) writes = RunWrites(o);
  if (o.burst_part) burst = RunBurst(o);
  PrintSummary(o, flood, latency, o.backfill_part ? &back : nullptr, o.writes ? &writes : nullptr,
               o.burst_part ? &burst : nullptr);
  std::printf("\n%s\n", LoadLine().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return BenchMain("ingest_bench", [&] { return Run(argc, argv); });
}

// History endpoints over HTTP under load (issue 6, docs/benchmarks.md,
// "History over HTTP"): the real komoku binary on loopback with a year of
// history for one numeric key, while ingest runs over MQTT through a real
// Mosquitto broker. Measures, each for a fixed time, with 1 client and with
// --clients concurrent clients (50; cpp-httplib, keep-alive, one per thread):
//
// - raw day    GET /api/v1/history?key=K&from=<end-1d>&to=<end>      8,640 rows
// - year       GET /api/v1/history?key=K&from=<end-365d>&to=<end>&step=1h&agg=avg
//                                                                    8,760 buckets
//
// and prints requests/s, p50 and p99 latency and the ratio of the many-client
// rate to the single-client rate of the same run. A phase stops starting
// requests when its time is up and waits for those in flight, whose latency
// counts; the rate is completed requests over the whole phase. Beside them, a
// bare SQLite scan of the same year (the store's own statement) measured in
// the same run: the floor under the year query as long as it reads every
// raw change.
//
// Two stores in one run: first "hot", every change in SQLite (the config sets
// store.compact_interval: 0, so nothing compacts on its own); then
// POST /api/v1/compact moves everything older than the hot window (48 h, so
// the whole year) into cold segments with 5m/1h/1d rollups, GET
// /api/v1/segments must list them holding every row, and the same phases run
// again as "cold": the raw day read from a segment, the year answered from
// hourly rollups. store.raw_retention_days: 0 keeps the raw changes, so what
// the cold phases read does not depend on the date the bench runs.
//
// The data: one change every 10 s for 366 days (3,162,240 rows) ending at
// kEndMs, written straight into the hot store's schema (src/hot/hot_store.cc
// kSchemaV1 + kSchemaV2, user_version 2, rowid = change sequence). The times
// are fixed, and the queries use the same absolute from/to, so the database is
// built once and cached as history_load-v1.db in $KOMOKU_BENCH_DIR, else the
// build directory; each run works on a copy in a scratch directory beside it,
// removed afterwards.
//
// Ingest: a thread publishes --rate (50) changes/s round robin to 10 other
// keys (komoku/set/bench/ingest/N) from before the first phase to after the
// last, through the compaction too; the store's accepted-changes counter
// shows that they arrived.
//
// Options: --seconds=N per phase (10), --clients=N (50), --rate=N (50).
// Never fails for being slow; exits 1 only when something does not work.
#include <httplib.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "real_service.h"

namespace {

using namespace komoku::bench;  // NOLINT(google-build-using-namespace): a program's own helpers
using std::chrono::milliseconds;

constexpr const char* kKey = "bench/temperature";
constexpr int64_t kStepMs = 10000;  // one change every 10 s
constexpr int64_t kDayMs = 24 * 3600 * 1000LL;
constexpr int64_t kDays = 366;                       // a year, and the day before it
constexpr int64_t kEndMs = 1767225600000;            // 2026-01-01T00:00:00Z, hour-aligned
constexpr int64_t kRows = kDays * kDayMs / kStepMs;  // 3,162,240
constexpr const char* kCacheName = "history_load-v1.db";
constexpr int kIngestKeys = 10;

struct Options {
  int seconds = 10;
  int clients = 50;
  int rate = 50;
};

// --- the data -----------------------------------------------------------------

// A day's sine around 20 °C with a little deterministic noise, two decimals:
// nearly every change has a new value.
double ValueAt(int64_t i, int64_t time_ms) {
  uint64_t x = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL;
  x ^= x >> 29;
  double noise = static_cast<double>(x % 1000) / 1000.0 - 0.5;
  double phase = 2 * M_PI * static_cast<double>(time_ms % kDayMs) / kDayMs;
  return std::round((20.0 + 5.0 * std::sin(phase) + noise) * 100.0) / 100.0;
}

// Written once, renamed into place (HotDbBuilder).
void BuildDatabase(const std::string& path) {
  HotDbBuilder db(path);
  const int64_t start = kEndMs - kDays * kDayMs;
  db.AddKey(1, kKey, "numeric", start);
  for (int64_t i = 0; i < kRows; ++i) {
    const int64_t t = start + i * kStepMs;
    db.AddChange(1, t, ValueAt(i, t));
  }
  db.Finish();
}

// The baseline: the hot store's own scan statement (HotStore::ScanHistory)
// over the year, each value read, on a connection of this process; the best
// of three. What SQLite alone costs of the year query.
double BareScanSeconds(const std::string& path) {
  Sqlite db(path);
  db.Exec("PRAGMA query_only=1");
  sqlite3_stmt* scan = nullptr;
  db.Check(sqlite3_prepare_v2(db.get(),
                              "SELECT time_ms, value FROM changes WHERE key_id=?1 AND time_ms>=?2 "
                              "AND time_ms<?3 ORDER BY time_ms, rowid",
                              -1, &scan, nullptr),
           "prepare scan");
  double best = 1e9;
  int64_t rows = 0;
  double sum = 0;
  for (int round = 0; round < 3; ++round) {
    auto t0 = Clock::now();
    sqlite3_bind_int64(scan, 1, 1);
    sqlite3_bind_int64(scan, 2, kEndMs - 365 * kDayMs);
    sqlite3_bind_int64(scan, 3, kEndMs);
    rows = 0;
    int rc;
    while ((rc = sqlite3_step(scan)) == SQLITE_ROW) {
      rows += sqlite3_column_int64(scan, 0) != 0;
      if (sqlite3_column_type(scan, 1) == SQLITE_FLOAT) sum += sqlite3_column_double(scan, 1);
    }
    sqlite3_reset(scan);
    if (rc != SQLITE_DONE) {
      sqlite3_finalize(scan);
      db.Check(rc, "scan");
    }
    best = std::min(best, SecondsSince(t0));
  }
  sqlite3_finalize(scan);
  if (rows != 365 * kDayMs / kStepMs || !(sum > 0))
    Fail("bare scan read " + std::to_string(rows) + " rows");
  return best;
}

struct PhaseResult {
  int clients = 0;
  size_t requests = 0;
  size_t errors = 0;
  double seconds = 0;
  double p50_ms = 0, p99_ms = 0;
  double rps() const { return seconds > 0 ? static_cast<double>(requests) / seconds : 0; }
};

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

// `clients` threads, each with its own keep-alive connection (or, with
// `fresh`, a new connection for every request), ask `target` until
// `seconds` have passed; requests in flight then are waited for.
PhaseResult RunPhase(int port, const std::string& target, int clients, int seconds,
                     bool fresh = false) {
  std::vector<std::vector<double>> latencies(clients);
  std::vector<size_t> errors(clients, 0);
  std::vector<std::unique_ptr<httplib::Client>> conns;
  for (int c = 0; c < clients; ++c) conns.push_back(NewClient(port));
  std::atomic<int> waiting{clients};
  const Clock::time_point start_after = Clock::now() + milliseconds(100);
  Clock::time_point start, deadline;
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      --waiting;
      while (!go.load()) std::this_thread::yield();
      while (Clock::now() < deadline) {
        auto t0 = Clock::now();
        std::unique_ptr<httplib::Client> one = fresh ? NewClient(port) : nullptr;
        auto res = (fresh ? one : conns[c])->Get(target);
        auto t1 = Clock::now();
        if (one) one->stop();
        if (!res || res->status != 200) {
          ++errors[c];
          continue;
        }
        latencies[c].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      // A finished client goes away: an idle keep-alive connection would
      // hold one of the server's workers until its keep-alive timeout (5 s).
      conns[c]->stop();
    });
  }
  while (waiting.load() > 0) std::this_thread::sleep_for(milliseconds(1));
  std::this_thread::sleep_until(start_after);
  start = Clock::now();
  deadline = start + std::chrono::seconds(seconds);
  go = true;
  for (std::thread& t : threads) t.join();
  PhaseResult r;
  r.clients = clients;
  r.seconds = SecondsSince(start);
  std::vector<double> all;
  for (int c = 0; c < clients; ++c) {
    all.insert(all.end(), latencies[c].begin(), latencies[c].end());
    r.errors += errors[c];
  }
  std::sort(all.begin(), all.end());
  r.requests = all.size();
  r.p50_ms = Percentile(all, 0.50);
  r.p99_ms = Percentile(all, 0.99);
  return r;
}

// One request, checked: the answer holds `rows` rows. Also warms the caches.
void CheckAnswer(int port, const std::string& target, size_t rows, const char* what) {
  auto cli = NewClient(port);
  auto t0 = Clock::now();
  auto res = cli->Get(target);
  double s = SecondsSince(t0);
  if (!res) Fail(std::string(what) + ": no answer: " + httplib::to_string(res.error()));
  if (res->status != 200)
    Fail(std::string(what) + ": HTTP " + std::to_string(res->status) + ": " + res->body);
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j["rows"].is_array() || j["rows"].size() != rows) {
    Fail(std::string(what) + ": expected " + std::to_string(rows) + " rows, got " +
         (j.is_discarded() ? std::string("no JSON") : std::to_string(j["rows"].size())));
  }
  std::printf("  %-9s %zu rows, %zu bytes, first answer %.3f s\n", what, rows, res->body.size(), s);
}

// --- compaction ---------------------------------------------------------------

// POST /api/v1/compact and wait for its answer: everything older than the
// hot window goes into segments.
void RunCompaction(int port) {
  // A first compaction of a year takes a while.
  const CompactAnswer a = Compact(port, std::chrono::seconds(3600));
  std::printf(
      "compaction: POST /api/v1/compact answered in %.1f s: %lld changes, %lld segments "
      "written, %lld removed, %.1f MB\n",
      a.seconds, static_cast<long long>(a.changes), static_cast<long long>(a.segments_written),
      static_cast<long long>(a.segments_removed), static_cast<double>(a.bytes_written) / 1e6);
}

// GET /api/v1/segments: there are segments, and they hold every row of the
// year (ingest is newer than the hot window and stays hot).
void CheckSegments(int port) {
  const SegmentTotals t = Segments(port);
  if (t.count == 0 || t.changes != kRows) {
    Fail("segments: " + std::to_string(t.count) + " segments holding " + std::to_string(t.changes) +
         " changes, expected all " + std::to_string(kRows));
  }
  std::printf("segments: %lld live, %.1f MB, holding all %lld changes\n",
              static_cast<long long>(t.count), static_cast<double>(t.bytes) / 1e6,
              static_cast<long long>(t.changes));
}

// The bench key's rows left in the hot store. After a compaction the writer
// thread deletes the rows now cold, one statement; the cold phases start
// when it has.
int64_t HotRows(const std::string& path) {
  Sqlite db(path);
  sqlite3_busy_timeout(db.get(), 10000);
  db.Exec("PRAGMA query_only=1");
  sqlite3_stmt* count = nullptr;
  db.Check(sqlite3_prepare_v2(db.get(), "SELECT count(*) FROM changes WHERE key_id=1", -1, &count,
                              nullptr),
           "prepare count");
  int rc = sqlite3_step(count);
  const int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(count, 0) : -1;
  sqlite3_finalize(count);
  if (rc != SQLITE_ROW) db.Check(rc, "count");
  return n;
}

// --- main ---------------------------------------------------------------------

Options ParseOptions(int argc, char** argv) {
  Options o;
  ParseIntFlags(argc, argv,
                {{"--seconds", &o.seconds}, {"--clients", &o.clients}, {"--rate", &o.rate}});
  return o;
}

void PrintRow(const char* store, const char* query, const PhaseResult& r) {
  std::printf("%-5s %-26s %7d %9zu %9.1f %9.1f %9.1f %7zu %7.1f\n", store, query, r.clients,
              r.requests, r.rps(), r.p50_ms, r.p99_ms, r.errors, r.seconds);
}

// The four phases on one store, each row printed when done.
struct StorePhases {
  PhaseResult raw1, rawn, year1, yearn;
};

StorePhases RunPhases(const char* store, int port, const std::string& raw, const std::string& year,
                      const Options& opt) {
  StorePhases p;
  p.raw1 = RunPhase(port, raw, 1, opt.seconds);
  PrintRow(store, "raw day (8,640 rows)", p.raw1);
  p.rawn = RunPhase(port, raw, opt.clients, opt.seconds);
  PrintRow(store, "raw day (8,640 rows)", p.rawn);
  p.year1 = RunPhase(port, year, 1, opt.seconds);
  PrintRow(store, "year, 1h avg (8,760 rows)", p.year1);
  p.yearn = RunPhase(port, year, opt.clients, opt.seconds);
  PrintRow(store, "year, 1h avg (8,760 rows)", p.yearn);
  return p;
}

void PrintHeader() {
  std::printf("%-5s %-26s %7s %9s %9s %9s %9s %7s %7s\n", "store", "query", "clients", "requests",
              "req/s", "p50 ms", "p99 ms", "errors", "s");
}

int Run(const Options& opt) {
  std::printf("history_load: %s\n", MachineLine().c_str());
  const std::string base = BenchBase();
  std::filesystem::create_directories(base);
  const std::string cache = base + "/" + kCacheName;
  if (std::filesystem::exists(cache)) {
    std::printf("data: %s (cached; %lld rows)\n", cache.c_str(), static_cast<long long>(kRows));
  } else {
    auto t0 = Clock::now();
    BuildDatabase(cache);
    std::printf("data: %s built in %.1f s (%lld rows, %.0f MB)\n", cache.c_str(), SecondsSince(t0),
                static_cast<long long>(kRows),
                static_cast<double>(std::filesystem::file_size(cache)) / 1e6);
  }

  ScratchDir dir(base, "komoku-history-load");
  auto t0 = Clock::now();
  std::filesystem::create_directories(dir.File("data"));
  std::filesystem::copy_file(cache, dir.File("data/komoku.db"));
  std::printf("copied to a scratch data dir in %.1f s\n", SecondsSince(t0));

  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  const std::string broker_url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  Komoku komoku = StartKomoku(dir, "mqtt:\n  broker: " + broker_url +
                                       "\n  client_id: komoku-bench\n"
                                       "store:\n  data_dir: " +
                                       dir.File("data") +
                                       "\n"
                                       "  compact_interval: 0\n  raw_retention_days: 0\n"
                                       "http:\n  listen: 127.0.0.1:0\n"
                                       "log:\n  level: warn\n");
  const int port = komoku.port;
  std::printf("komoku (HTTP 127.0.0.1:%d) and mosquitto (%d) up in %.1f s\n", port, broker_port,
              SecondsSince(t0));

  const std::string key = kKey;
  const std::string raw = "/api/v1/history?key=" + key +
                          "&from=" + std::to_string((kEndMs - kDayMs) / 1000) +
                          "&to=" + std::to_string(kEndMs / 1000);
  const std::string year = "/api/v1/history?key=" + key +
                           "&from=" + std::to_string((kEndMs - 365 * kDayMs) / 1000) +
                           "&to=" + std::to_string(kEndMs / 1000) + "&step=1h&agg=avg";
  CheckAnswer(port, raw, kDayMs / kStepMs, "raw day");
  CheckAnswer(port, year, 365 * 24, "year");
  const double bare_scan = BareScanSeconds(dir.File("data/komoku.db"));
  std::printf(
      "  baseline: bare SQLite scan of the year (the store's statement), best of 3: %.3f s\n",
      bare_scan);

  const int64_t accepted_before = Metric(port, "komoku_changes_accepted_total");
  std::vector<std::string> ingest_keys;
  for (int i = 0; i < kIngestKeys; ++i) ingest_keys.push_back("bench/ingest/" + std::to_string(i));
  Ingest ingest(broker_url, "history-load-ingest", opt.rate, ingest_keys);
  std::this_thread::sleep_for(milliseconds(500));
  std::printf("ingest: %d changes/s over MQTT to %d other keys; %d s per phase\n\n", opt.rate,
              kIngestKeys, opt.seconds);

  // A small answer, asked on one kept-alive connection and on a new
  // connection each time (the baseline): what a keep-alive client such as
  // Grafana or a browser pays a request.
  const std::string value = "/api/v1/value?key=" + key;
  PrintHeader();
  const PhaseResult value_keep = RunPhase(port, value, 1, opt.seconds);
  PrintRow("any", "value, keep-alive", value_keep);
  const PhaseResult value_fresh = RunPhase(port, value, 1, opt.seconds, /*fresh=*/true);
  PrintRow("any", "value, new connection", value_fresh);
  std::printf("\n");

  PrintHeader();
  const StorePhases hot = RunPhases("hot", port, raw, year, opt);

  // Cold: the whole year into segments, while ingest goes on.
  std::printf("\n");
  RunCompaction(port);
  t0 = Clock::now();
  CheckSegments(port);
  if (!WaitFor([&] { return HotRows(dir.File("data/komoku.db")) == 0; }, milliseconds(600000))) {
    komoku.FailWithLog("the compacted rows are still in the hot store after 10 min");
  }
  std::printf("hot store: the year's rows deleted by the writer %.1f s after the answer\n",
              SecondsSince(t0));
  CheckAnswer(port, raw, kDayMs / kStepMs, "raw day");
  CheckAnswer(port, year, 365 * 24, "year");
  std::printf("\n");
  PrintHeader();
  const StorePhases cold = RunPhases("cold", port, raw, year, opt);

  ingest.Stop();
  // The last publications are acknowledged by the broker, then delivered.
  std::this_thread::sleep_for(milliseconds(1000));
  const int64_t accepted = Metric(port, "komoku_changes_accepted_total") - accepted_before;

  std::printf("\nall phases:\n");
  PrintHeader();
  PrintRow("any", "value, keep-alive", value_keep);
  PrintRow("any", "value, new connection", value_fresh);
  for (const auto& [label, p] : {std::make_pair("hot", &hot), std::make_pair("cold", &cold)}) {
    PrintRow(label, "raw day (8,640 rows)", p->raw1);
    PrintRow(label, "raw day (8,640 rows)", p->rawn);
    PrintRow(label, "year, 1h avg (8,760 rows)", p->year1);
    PrintRow(label, "year, 1h avg (8,760 rows)", p->yearn);
  }

  auto ratio = [](const PhaseResult& many, const PhaseResult& one) {
    return one.rps() > 0 ? many.rps() / one.rps() : 0.0;
  };
  for (const auto& [label, p] : {std::make_pair("hot", &hot), std::make_pair("cold", &cold)}) {
    std::printf("%-4s %d-client req/s / 1-client req/s: raw day %.2f, year %.2f\n", label,
                opt.clients, ratio(p->rawn, p->raw1), ratio(p->yearn, p->year1));
  }
  std::printf("cold req/s / hot req/s, 1 client: raw day %.2f, year %.2f\n",
              ratio(cold.raw1, hot.raw1), ratio(cold.year1, hot.year1));
  auto over_bare = [bare_scan](const PhaseResult& r) {
    return bare_scan > 0 ? r.p50_ms / 1000.0 / bare_scan : 0.0;
  };
  std::printf("year query 1-client p50 / bare SQLite scan: hot %.3f, cold %.3f\n",
              over_bare(hot.year1), over_bare(cold.year1));
  std::printf("ingest during the phases: %lld published, %lld failed, %lld accepted by komoku\n",
              static_cast<long long>(ingest.published()), static_cast<long long>(ingest.failed()),
              static_cast<long long>(accepted));
  std::printf("%s\n", LoadLine().c_str());

  komoku.process->Stop();
  broker->Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return BenchMain("history_load", [&] { return Run(ParseOptions(argc, argv)); });
}

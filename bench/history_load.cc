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
// The data: one change every 10 s for 366 days (3,162,240 rows) ending at
// kEndMs, written straight into the hot store's schema (src/store/hot_store.cc
// kSchemaV1 + kSchemaV2, user_version 2, rowid = change sequence). The times
// are fixed, and the queries use the same absolute from/to, so the database is
// built once and cached as history_load-v1.db in $KOMOKU_BENCH_DIR, else the
// build directory; each run works on a copy in a scratch directory beside it,
// removed afterwards.
//
// Ingest: a thread publishes --rate (50) changes/s round robin to 10 other
// keys (komoku/set/bench/ingest/N) from before the first phase to after the
// last; the store's accepted-changes counter shows that they arrived.
//
// Options: --seconds=N per phase (10), --clients=N (50), --rate=N (50).
// Never fails for being slow; exits 1 only when something does not work.
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdlib.h>  // mkdtemp
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kKey = "bench/temperature";
constexpr int64_t kStepMs = 10000;                    // one change every 10 s
constexpr int64_t kDayMs = 24 * 3600 * 1000LL;
constexpr int64_t kDays = 366;                        // a year, and the day before it
constexpr int64_t kEndMs = 1767225600000;             // 2026-01-01T00:00:00Z, hour-aligned
constexpr int64_t kRows = kDays * kDayMs / kStepMs;   // 3,162,240
constexpr const char* kCacheName = "history_load-v1.db";
constexpr int kIngestKeys = 10;

struct Options {
  int seconds = 10;
  int clients = 50;
  int rate = 50;
};

[[noreturn]] void Fail(const std::string& what) { throw std::runtime_error(what); }

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool WaitFor(const std::function<bool()>& cond, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

std::string BenchBase() {
  const char* dir = std::getenv("KOMOKU_BENCH_DIR");
  return dir && *dir ? dir : KOMOKU_BENCH_BUILD_DIR;
}

// A fresh directory, removed with everything in it.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& base) {
    std::string tmpl = base + "/komoku-history-load-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) Fail("cannot create a directory from " + tmpl);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// --- the data -----------------------------------------------------------------

// The hot store's schema, src/store/hot_store.cc kSchemaV1 then kSchemaV2.
constexpr const char* kSchema = R"sql(
CREATE TABLE keys(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  created_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE changes(
  key_id INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  value ANY NOT NULL
) STRICT;
CREATE INDEX changes_by_key_time ON changes(key_id, time_ms);
ALTER TABLE keys ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN last_seen_ms INTEGER;
PRAGMA user_version=2;
)sql";

// Owns the connection.
class Sqlite {
 public:
  explicit Sqlite(const std::string& path) : path_(path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) Fail(path + ": " + sqlite3_errmsg(db_));
  }
  ~Sqlite() { sqlite3_close(db_); }
  Sqlite(const Sqlite&) = delete;
  Sqlite& operator=(const Sqlite&) = delete;
  sqlite3* get() const { return db_; }
  void Check(int rc, const char* what) const {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
      Fail(path_ + ": " + what + ": " + sqlite3_errmsg(db_));
    }
  }
  void Exec(const char* sql) const { Check(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), sql); }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

// A day's sine around 20 °C with a little deterministic noise, two decimals:
// nearly every change has a new value.
double ValueAt(int64_t i, int64_t time_ms) {
  uint64_t x = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL;
  x ^= x >> 29;
  double noise = static_cast<double>(x % 1000) / 1000.0 - 0.5;
  double phase = 2 * M_PI * static_cast<double>(time_ms % kDayMs) / kDayMs;
  return std::round((20.0 + 5.0 * std::sin(phase) + noise) * 100.0) / 100.0;
}

// Writes the database to a temporary name and renames it into place, so an
// interrupted build never leaves a cache that looks complete.
void BuildDatabase(const std::string& path) {
  const std::string tmp = path + ".tmp";
  std::filesystem::remove(tmp);
  {
    Sqlite db(tmp);
    db.Exec("PRAGMA journal_mode=OFF");
    db.Exec("PRAGMA synchronous=OFF");
    db.Exec("PRAGMA cache_size=-262144");
    db.Exec(kSchema);
    db.Exec("BEGIN");
    sqlite3_stmt* key = nullptr;
    db.Check(sqlite3_prepare_v2(db.get(),
                                "INSERT INTO keys(id, name, type, options, created_ms) "
                                "VALUES(1, ?1, 'numeric', '{}', ?2)",
                                -1, &key, nullptr),
             "prepare keys");
    const int64_t start = kEndMs - kDays * kDayMs;
    sqlite3_bind_text(key, 1, kKey, -1, SQLITE_STATIC);
    sqlite3_bind_int64(key, 2, start);
    db.Check(sqlite3_step(key), "insert key");
    sqlite3_finalize(key);
    sqlite3_stmt* insert = nullptr;
    db.Check(sqlite3_prepare_v2(db.get(),
                                "INSERT INTO changes(rowid, key_id, time_ms, value) "
                                "VALUES(?1, 1, ?2, ?3)",
                                -1, &insert, nullptr),
             "prepare changes");
    for (int64_t i = 0; i < kRows; ++i) {
      const int64_t t = start + i * kStepMs;
      sqlite3_bind_int64(insert, 1, i + 1);
      sqlite3_bind_int64(insert, 2, t);
      sqlite3_bind_double(insert, 3, ValueAt(i, t));
      int rc = sqlite3_step(insert);
      if (rc != SQLITE_DONE) {
        sqlite3_finalize(insert);
        db.Check(rc, "insert change");
      }
      sqlite3_reset(insert);
    }
    sqlite3_finalize(insert);
    db.Exec("COMMIT");
  }
  std::filesystem::rename(tmp, path);
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
  if (rows != 365 * kDayMs / kStepMs || !(sum > 0)) Fail("bare scan read " + std::to_string(rows) + " rows");
  return best;
}

// --- processes ----------------------------------------------------------------

// A child process with stdout and stderr going to a file; stopped by PID
// (SIGTERM, then SIGKILL after 10 s) when it goes away.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log_path) : log_path_(log_path) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = posix_spawn(&pid_, args[0], &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      pid_ = -1;
      Fail("cannot start " + argv[0] + ": " + std::strerror(rc));
    }
  }
  ~Process() { Stop(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool Running() {
    if (pid_ <= 0) return false;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  void Stop() {
    if (!Running()) return;
    kill(pid_, SIGTERM);
    if (WaitFor([&] { return !Running(); }, milliseconds(10000))) return;
    kill(pid_, SIGKILL);
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  std::string Output() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

bool TcpOpen(int port) {
  httplib::Client probe("127.0.0.1", port);
  probe.set_connection_timeout(milliseconds(200));
  // Any answer, even a refused HTTP parse, means something listens.
  auto res = probe.Get("/");
  return res || res.error() != httplib::Error::Connection;
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    Fail("cannot find a free loopback port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// Mosquitto on 127.0.0.1 and a port that was free a moment ago (retried, as
// another process may take it first).
std::unique_ptr<Process> StartBroker(const ScratchDir& dir, int* port) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    *port = FreeLoopbackPort();
    std::string conf = dir.File("mosquitto-" + std::to_string(attempt) + ".conf");
    std::ofstream(conf) << "listener " << *port << " 127.0.0.1\nallow_anonymous true\n";
    auto broker = std::make_unique<Process>(
        std::vector<std::string>{MOSQUITTO_BINARY, "-c", conf}, dir.File("mosquitto.log"));
    if (WaitFor([&] { return TcpOpen(*port) || !broker->Running(); }, milliseconds(5000)) &&
        broker->Running()) {
      return broker;
    }
  }
  Fail("mosquitto did not start");
}

// --- HTTP ---------------------------------------------------------------------

std::unique_ptr<httplib::Client> NewClient(int port) {
  auto cli = std::make_unique<httplib::Client>("127.0.0.1", port);
  cli->set_keep_alive(true);
  cli->set_connection_timeout(std::chrono::seconds(10));
  cli->set_read_timeout(std::chrono::seconds(300));
  return cli;
}

int64_t Metric(int port, const std::string& series) {
  auto cli = NewClient(port);
  auto res = cli->Get("/metrics");
  if (!res || res->status != 200) return -1;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stoll(line.substr(series.size() + 1));
    }
  }
  return 0;
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

// `clients` threads, each with its own keep-alive connection, ask `target`
// until `seconds` have passed; requests in flight then are waited for.
PhaseResult RunPhase(int port, const std::string& target, int clients, int seconds) {
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
        auto res = conns[c]->Get(target);
        auto t1 = Clock::now();
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
  if (res->status != 200) Fail(std::string(what) + ": HTTP " + std::to_string(res->status) + ": " + res->body);
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j["rows"].is_array() || j["rows"].size() != rows) {
    Fail(std::string(what) + ": expected " + std::to_string(rows) + " rows, got " +
         (j.is_discarded() ? std::string("no JSON") : std::to_string(j["rows"].size())));
  }
  std::printf("  %-9s %zu rows, %zu bytes, first answer %.3f s\n", what, rows, res->body.size(), s);
}

// --- ingest -------------------------------------------------------------------

// Publishes `rate` changes/s (QoS 1, each acknowledged) until stopped.
class Ingest {
 public:
  Ingest(const std::string& url, int rate) : client_(url, "history-load-ingest"), rate_(rate) {
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    client_.connect(opts)->wait();
    thread_ = std::thread([this] { Loop(); });
  }
  ~Ingest() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    try {
      if (client_.is_connected()) client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const std::exception&) {
    }
  }
  int64_t published() const { return published_.load(); }
  int64_t failed() const { return failed_.load(); }

 private:
  void Loop() {
    const auto period = std::chrono::nanoseconds(1000000000LL / std::max(rate_, 1));
    auto next = Clock::now();
    for (int64_t n = 0; !stop_.load(); ++n) {
      std::string topic = "komoku/set/bench/ingest/" + std::to_string(n % kIngestKeys);
      std::string payload = std::to_string(static_cast<double>(n % 1000) / 10.0 + 0.05);
      try {
        client_.publish(topic, payload.data(), payload.size(), 1, false)->wait();
        ++published_;
      } catch (const std::exception&) {
        ++failed_;
      }
      next += period;
      std::this_thread::sleep_until(next);
    }
  }

  mqtt::async_client client_;
  int rate_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> published_{0}, failed_{0};
  std::thread thread_;
};

// --- main ---------------------------------------------------------------------

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name, int* out) {
      std::string prefix = std::string(name) + "=";
      if (a.rfind(prefix, 0) != 0) return false;
      *out = std::atoi(a.c_str() + prefix.size());
      if (*out <= 0) Fail("bad " + a);
      return true;
    };
    if (!value("--seconds", &o.seconds) && !value("--clients", &o.clients) &&
        !value("--rate", &o.rate)) {
      Fail("unknown argument " + a + " (known: --seconds=N, --clients=N, --rate=N)");
    }
  }
  return o;
}

std::string MachineLine() {
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  char buf[256];
  std::snprintf(buf, sizeof buf, "%u CPUs (%s), load average %.2f at start",
                std::thread::hardware_concurrency(), model.c_str(), load[0]);
  return buf;
}

void PrintRow(const char* query, const PhaseResult& r) {
  std::printf("%-28s %7d %9zu %9.1f %9.1f %9.1f %7zu %7.1f\n", query, r.clients, r.requests,
              r.rps(), r.p50_ms, r.p99_ms, r.errors, r.seconds);
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

  ScratchDir dir(base);
  auto t0 = Clock::now();
  std::filesystem::create_directories(dir.File("data"));
  std::filesystem::copy_file(cache, dir.File("data/komoku.db"));
  std::printf("copied to a scratch data dir in %.1f s\n", SecondsSince(t0));

  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  const std::string broker_url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  const std::string config = dir.File("komoku.yaml");
  const std::string ready = dir.File("komoku.ready");
  std::ofstream(config) << "mqtt:\n  broker: " << broker_url << "\n  client_id: komoku-bench\n"
                        << "store:\n  data_dir: " << dir.File("data") << "\n"
                        << "http:\n  listen: 127.0.0.1:0\n"
                        << "log:\n  level: warn\n";
  auto komoku = std::make_unique<Process>(
      std::vector<std::string>{KOMOKU_BINARY, "run", "-c", config, "--ready-file", ready},
      dir.File("komoku.log"));
  auto fail_with_log = [&](const std::string& what) {
    Fail(what + "\n--- komoku output ---\n" + komoku->Output());
  };
  if (!WaitFor([&] { return std::filesystem::exists(ready) || !komoku->Running(); },
               milliseconds(60000)) ||
      !komoku->Running()) {
    fail_with_log("komoku did not get ready");
  }
  int port = 0;
  {
    std::ifstream in(ready);
    port = nlohmann::json::parse(in).at("http_port").get<int>();
  }
  if (!WaitFor(
          [&] {
            auto res = NewClient(port)->Get("/healthz");
            if (!res || res->status != 200) return false;
            auto j = nlohmann::json::parse(res->body, nullptr, false);
            return !j.is_discarded() && j["mqtt"]["subscribed"] == true;
          },
          milliseconds(15000))) {
    fail_with_log("komoku did not subscribe to the broker");
  }
  std::printf("komoku (HTTP 127.0.0.1:%d) and mosquitto (%d) up in %.1f s\n", port, broker_port,
              SecondsSince(t0));

  const std::string key = kKey;
  const std::string raw = "/api/v1/history?key=" + key + "&from=" +
                          std::to_string((kEndMs - kDayMs) / 1000) +
                          "&to=" + std::to_string(kEndMs / 1000);
  const std::string year = "/api/v1/history?key=" + key + "&from=" +
                           std::to_string((kEndMs - 365 * kDayMs) / 1000) +
                           "&to=" + std::to_string(kEndMs / 1000) + "&step=1h&agg=avg";
  CheckAnswer(port, raw, kDayMs / kStepMs, "raw day");
  CheckAnswer(port, year, 365 * 24, "year");
  const double bare_scan = BareScanSeconds(dir.File("data/komoku.db"));
  std::printf("  baseline: bare SQLite scan of the year (the store's statement), best of 3: %.3f s\n",
              bare_scan);

  const int64_t accepted_before = Metric(port, "komoku_changes_accepted_total");
  Ingest ingest(broker_url, opt.rate);
  std::this_thread::sleep_for(milliseconds(500));
  std::printf("ingest: %d changes/s over MQTT to %d other keys; %d s per phase\n\n", opt.rate,
              kIngestKeys, opt.seconds);

  std::printf("%-28s %7s %9s %9s %9s %9s %7s %7s\n", "query", "clients", "requests", "req/s",
              "p50 ms", "p99 ms", "errors", "s");
  PhaseResult raw1 = RunPhase(port, raw, 1, opt.seconds);
  PrintRow("raw day (8,640 rows)", raw1);
  PhaseResult rawn = RunPhase(port, raw, opt.clients, opt.seconds);
  PrintRow("raw day (8,640 rows)", rawn);
  PhaseResult year1 = RunPhase(port, year, 1, opt.seconds);
  PrintRow("year, 1h avg (8,760 rows)", year1);
  PhaseResult yearn = RunPhase(port, year, opt.clients, opt.seconds);
  PrintRow("year, 1h avg (8,760 rows)", yearn);
  std::fflush(stdout);

  ingest.Stop();
  // The last publications are acknowledged by the broker, then delivered.
  std::this_thread::sleep_for(milliseconds(1000));
  const int64_t accepted = Metric(port, "komoku_changes_accepted_total") - accepted_before;

  auto ratio = [](const PhaseResult& many, const PhaseResult& one) {
    return one.rps() > 0 ? many.rps() / one.rps() : 0.0;
  };
  std::printf("\n%d-client req/s / 1-client req/s: raw day %.2f, year %.2f\n", opt.clients,
              ratio(rawn, raw1), ratio(yearn, year1));
  std::printf("year query 1-client p50 / bare SQLite scan: %.2f\n",
              bare_scan > 0 ? year1.p50_ms / 1000.0 / bare_scan : 0.0);
  std::printf("ingest during the phases: %lld published, %lld failed, %lld accepted by komoku\n",
              static_cast<long long>(ingest.published()), static_cast<long long>(ingest.failed()),
              static_cast<long long>(accepted));

  komoku->Stop();
  broker->Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A closed connection must not kill the benchmark; the failed request counts.
  signal(SIGPIPE, SIG_IGN);
  // Each line as it comes, also into a log: a phase takes a while.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return Run(ParseOptions(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "history_load: %s\n", e.what());
    return 1;
  }
}

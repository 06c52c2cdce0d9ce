// What the benchmarks that run the real service share (history_load,
// footprint_bench): scratch directories, SQLite in the hot store's schema,
// child processes stopped by PID, a Mosquitto broker and the komoku binary on
// loopback ports the OS chose, HTTP clients, an MQTT publisher at a fixed
// rate, and what /proc says about a process.
//
// Every failure throws std::runtime_error with what went wrong; a benchmark
// catches it in main and exits 1. Slowness is never a failure.
#pragma once

#include <sqlite3.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace httplib {
class Client;
}
namespace mqtt {
class async_client;
}

namespace komoku::bench {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(const std::string& what);

double SecondsSince(Clock::time_point start);

// Polls `cond` every `poll` until it holds (true) or `timeout` passes (false).
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
             std::chrono::milliseconds poll = std::chrono::milliseconds(20));

// Where cached data and scratch directories go: $KOMOKU_BENCH_DIR, else the
// build directory.
std::string BenchBase();

// "2 CPUs (model), load average X at start".
std::string MachineLine();
// The 1- and 5-minute load averages, for a line at the end of a run.
std::string LoadLine();

// A fresh directory under `base`, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir(const std::string& base, const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// --- SQLite -------------------------------------------------------------------

// Owns the connection.
class Sqlite {
 public:
  explicit Sqlite(const std::string& path);
  ~Sqlite();
  Sqlite(const Sqlite&) = delete;
  Sqlite& operator=(const Sqlite&) = delete;
  sqlite3* get() const { return db_; }
  // Throws unless rc is OK, DONE or ROW.
  void Check(int rc, const char* what) const;
  void Exec(const char* sql) const;

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

// A prepared statement owned for its scope.
class Statement {
 public:
  Statement(const Sqlite& db, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  sqlite3_stmt* get() const { return stmt_; }
  // Steps once, expects DONE, and resets for the next bindings.
  void Run();

 private:
  const Sqlite& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Writes a database in the hot store's schema to `path`.tmp, one
// transaction, and renames it to `path` in Finish(), so an interrupted build
// never leaves a file that looks complete. Changes are numbered (rowid) in
// the order they are added, as the store numbers what it accepts, from
// `first_seq` (a hot store that follows a compaction numbers on from the
// manifest's cold_seq).
class HotDbBuilder {
 public:
  explicit HotDbBuilder(const std::string& path, int64_t first_seq = 1);
  ~HotDbBuilder();
  HotDbBuilder(const HotDbBuilder&) = delete;
  HotDbBuilder& operator=(const HotDbBuilder&) = delete;
  // `type`: numeric, counter, boolean, uptime or string; options '{}'.
  void AddKey(int64_t id, const std::string& name, const char* type, int64_t created_ms);
  void AddChange(int64_t key_id, int64_t time_ms, double value);
  void AddChange(int64_t key_id, int64_t time_ms, bool value);
  void AddChange(int64_t key_id, int64_t time_ms, const std::string& value);
  int64_t changes() const { return seq_ - first_seq_ + 1; }
  void Finish();

 private:
  const std::string path_, tmp_;
  std::unique_ptr<Sqlite> db_;
  std::unique_ptr<Statement> key_, change_;
  const int64_t first_seq_;
  int64_t seq_;
};

// --- processes ----------------------------------------------------------------

// A child process with stdout and stderr going to a file; stopped by PID
// (SIGTERM, then SIGKILL after 10 s) when it goes away.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log_path);
  ~Process() { Stop(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  // SIGTERM, then SIGKILL after 10 s. The exit status, -1 when it was not
  // running.
  int Stop();
  // Waits for the process to end by itself: its exit status, -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  std::string Output() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_path_;
};

// Mosquitto on 127.0.0.1 and a port that was free a moment ago (retried, as
// another process may take it first).
std::unique_ptr<Process> StartBroker(const ScratchDir& dir, int* port);

// The komoku binary (`komoku run`) with `config_yaml` as its config, started
// in `dir`, after /readyz answered 200 (store open, HTTP listening, MQTT
// connected and subscribed). Times are from the spawn. Each start has its own
// config and log (komoku-N.yaml, komoku-N.log).
struct Komoku {
  std::unique_ptr<Process> process;
  int port = 0;
  double ready_file_seconds = 0;  // the --ready-file appeared
  double readyz_seconds = 0;      // GET /readyz answered 200
  [[noreturn]] void FailWithLog(const std::string& what) const;
};
// Polls every `poll`, which bounds how exact the times are.
Komoku StartKomoku(const ScratchDir& dir, const std::string& config_yaml,
                   std::chrono::milliseconds poll = std::chrono::milliseconds(20));

// --- HTTP and MQTT ------------------------------------------------------------

// A keep-alive client on 127.0.0.1:port with generous timeouts.
std::unique_ptr<httplib::Client> NewClient(int port);

// What POST /api/v1/compact answered, and how long it took to answer.
struct CompactAnswer {
  double seconds = 0;
  int64_t changes = 0;
  int64_t segments_written = 0, segments_removed = 0;
  int64_t bytes_written = 0;  // day segments and month merges alike
};
// Runs a compaction through the API and waits up to `timeout` for it.
CompactAnswer Compact(int port, std::chrono::seconds timeout);

// GET /api/v1/segments summed over the live segments; with `per_key`
// (keys=true) also the raw and rollup blocks' bytes of every key.
struct SegmentTotals {
  int64_t count = 0, bytes = 0, changes = 0;
  int64_t raw_bytes = 0, rollup_bytes = 0;  // per_key only
};
SegmentTotals Segments(int port, bool per_key = false);

// One series of GET /metrics, -1 when it does not answer.
int64_t Metric(int port, const std::string& series);

// The payload of publication n: `key` = n % keys.size(), `round` =
// n / keys.size().
using PayloadFn = std::function<std::string(size_t key, int64_t round)>;

struct IngestOptions {
  int64_t first = 0;  // the number of the first publication
  int64_t count = 0;  // stop by itself after this many, when > 0
  // Without one, values are numbers with two decimals, round % 1000 / 10 +
  // 0.05, so a key's value changes from one round to the next.
  PayloadFn payload;
};

// Publishes `rate` changes/s to komoku/set/<key>, round robin over `keys`,
// until stopped: QoS 1, each waiting for the broker's acknowledgement.
class Ingest {
 public:
  Ingest(const std::string& url, const std::string& client_id, int rate,
         std::vector<std::string> keys, IngestOptions options = {});
  ~Ingest();
  void Stop();
  int64_t published() const { return published_.load(); }
  int64_t failed() const { return failed_.load(); }
  // Topic and payload bytes of the acknowledged publications.
  int64_t bytes() const { return bytes_.load(); }

 private:
  void Loop();

  std::unique_ptr<mqtt::async_client> client_;
  const int rate_;
  const std::vector<std::string> keys_;
  const IngestOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> published_{0}, failed_{0}, bytes_{0};
  std::thread thread_;
};

// --- /proc --------------------------------------------------------------------

// The "Name: value kB" lines of /proc/PID/status, in bytes (VmRSS, RssAnon,
// RssFile, RssShmem, VmHWM, ...).
std::map<std::string, int64_t> ProcStatus(pid_t pid);

// Reads arguments of the form --name=N (N > 0) into the ints `flags` names;
// anything else throws, listing the known flags.
void ParseIntFlags(int argc, char** argv, const std::vector<std::pair<std::string, int*>>& flags);

// main() of a benchmark: SIGPIPE ignored, stdout line-buffered, and an
// exception from `run` printed after `name` as exit status 1.
int BenchMain(const char* name, const std::function<int()>& run);

// The number of a "field: N" line of /proc/PID/`file` as written there (the
// unit is the file's), -1 when unreadable.
int64_t ProcField(pid_t pid, const std::string& file, const std::string& field);

// A field of /proc/PID/io (write_bytes, read_bytes, ...), -1 when unreadable.
int64_t ProcIo(pid_t pid, const std::string& field);

}  // namespace komoku::bench

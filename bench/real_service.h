// What the benchmarks that run the real service share (history_load,
// footprint_bench, ingest_bench): scratch directories, SQLite in the hot
// store's schema, child processes stopped by PID, a Mosquitto broker and the
// komoku binary on loopback ports the OS chose, HTTP clients, MQTT publishers
// (at a fixed rate, or a flood as fast as the broker takes it), a bare
// counting MQTT consumer, and what /proc says about a process.
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

#include "testing/process.h"

namespace httplib {
class Client;
}
namespace mqtt {
class async_client;
class message;
}  // namespace mqtt

namespace komoku::bench {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(const std::string& what);

double SecondsSince(Clock::time_point start);

// Polls `cond` every `poll` until it holds (true) or `timeout` passes (false).
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
             std::chrono::milliseconds poll = std::chrono::milliseconds(20));

// How a count that grows towards a target went (WaitProgress).
struct Progress {
  int64_t count = 0;     // the last count read
  bool reached = false;  // it reached the target and `complete` agreed
  // From `start` to the read that found the target reached, else to the
  // first read that showed the final count (when it last grew).
  double seconds = 0;
};

// Polls `read` every `poll` until it returns at least `target` and
// `complete` (when given) holds, or until the count has not grown for
// `stall` while `active` (when given) no longer holds, or `limit` passed
// since `start`. `active` is what is still feeding the count (a publisher):
// while it runs, a pause is not yet a stall. Every wait is bounded: a stalled
// count ends the wait after `stall`, whatever it stalls at.
Progress WaitProgress(const std::function<int64_t()>& read, int64_t target, Clock::time_point start,
                      std::chrono::milliseconds stall, std::chrono::milliseconds limit,
                      std::chrono::milliseconds poll,
                      const std::function<bool()>& complete = nullptr,
                      const std::function<bool()>& active = nullptr);

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

// Child processes stopped by PID (SIGTERM, then SIGKILL after 10 s by
// default), and free loopback ports: the launcher the integration tests use
// too (testing/process.h).
using process::FreeLoopbackPort;
using process::Process;

// Mosquitto on 127.0.0.1 and a port that was free a moment ago (retried, as
// another process may take it first), with Mosquitto's defaults and the
// lines of `extra_config` (e.g. "max_queued_messages 0\n").
std::unique_ptr<Process> StartBroker(const ScratchDir& dir, int* port,
                                     const std::string& extra_config = "");

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
// Polls every `poll`, which bounds how exact the times are. `binary`: another
// komoku executable (a baseline build) instead of this build's.
Komoku StartKomoku(const ScratchDir& dir, const std::string& config_yaml,
                   std::chrono::milliseconds poll = std::chrono::milliseconds(20),
                   const std::string& binary = "");

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

// Every series of one GET /metrics (name with labels -> value); empty when
// it does not answer. With `families`, only theirs (GET /metrics?name=…),
// which spares komoku rendering every key's series at each poll.
std::map<std::string, double> Metrics(int port, const std::vector<std::string>& families = {});

// The payload of publication n: `key` = n % keys.size(), `round` =
// n / keys.size().
using PayloadFn = std::function<std::string(size_t key, int64_t round)>;

struct IngestOptions {
  int64_t first = 0;  // the number of the first publication
  int64_t count = 0;  // stop by itself after this many, when > 0
  // Without one, values are numbers with two decimals, round % 1000 / 10 +
  // 0.05, so a key's value changes from one round to the next.
  PayloadFn payload;
  // Called with the publication's number just before it is handed to the
  // client (e.g. to note when it was sent).
  std::function<void(int64_t n)> before_publish;
};

// Publishes `rate` changes/s to komoku/set/<key>, round robin over `keys`,
// until stopped: QoS 1, each waiting for the broker's acknowledgement (up to
// 30 s; one that does not come counts as failed).
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

// One MQTT publication of a flood, made before the clock starts.
struct Publication {
  std::string topic;
  std::string payload;
};

struct FloodOptions {
  int qos = 1;
  // Publications handed to the client and not yet acknowledged (QoS 1) or
  // written (QoS 0), per publisher; Paho's max-inflight is set to it.
  int inflight = 1000;
  // A publisher gives up when the oldest of its publications is not done
  // after this long, and counts the rest as failed.
  std::chrono::seconds stall{30};
  std::string client_id = "bench-flood";  // publisher i is <client_id>-i
};

// Publishes every lane as fast as the broker takes it: one Paho C++ async
// client (MQTT 3.1.1, so the broker's receive maximum does not cap its
// window) and thread per lane, each keeping `inflight` publications
// outstanding, in the lane's order. The clients connect and the messages
// are built in the constructor; the clock starts when the threads are
// released. Not thread-safe: one owner.
class Flood {
 public:
  Flood(const std::string& url, const std::vector<std::vector<Publication>>& lanes,
        FloodOptions options);
  ~Flood();
  Flood(const Flood&) = delete;
  Flood& operator=(const Flood&) = delete;

  Clock::time_point start() const { return start_; }
  bool running() const { return running_lanes_.load() > 0; }
  // Waits for every lane to finish (each bounded by the stall timeout) and
  // disconnects: seconds from the start until the last lane finished.
  double Wait();
  int64_t total() const { return total_; }
  int64_t published() const { return published_.load(); }
  int64_t failed() const { return failed_.load(); }

 private:
  struct Lane;
  void Run(Lane& lane);

  const FloodOptions options_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<std::thread> threads_;
  int64_t total_ = 0;
  Clock::time_point start_;
  std::atomic<bool> go_{false};  // releases the lanes' threads
  std::atomic<int64_t> published_{0}, failed_{0};
  std::atomic<int> running_lanes_{0};
  bool waited_ = false;
};

// A bare MQTT consumer, what Komoku's own client is without Komoku: a Paho
// C++ async_client, MQTT 5, a persistent session (clean start off, a week's
// session expiry, as komoku connects), one filter subscribed at `qos`, and a
// message callback that counts (and calls `handler`, when given, on Paho's
// receive thread). Thread-safe counters.
class Consumer {
 public:
  using Handler = std::function<void(const mqtt::message&, Clock::time_point arrived)>;
  // `receive_maximum` > 0 is sent in CONNECT (MQTT 5 Receive Maximum): how
  // many QoS 1 messages the broker may have unacknowledged at this client.
  // Without it Mosquitto allows its max_inflight_messages (20), queues the
  // rest up to max_queued_messages (1,000) and drops what comes after.
  Consumer(const std::string& url, const std::string& client_id, const std::string& filter, int qos,
           Handler handler = nullptr, int receive_maximum = 0);
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  int64_t count() const { return count_.load(); }
  // When the last message arrived (the epoch of Clock before the first).
  Clock::time_point last() const;
  // Unsubscribes (so the session the broker keeps takes nothing more) and
  // disconnects; bounded waits.
  void Close();

 private:
  std::unique_ptr<mqtt::async_client> client_;
  const std::string filter_;
  const Handler handler_;
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> last_ns_{0};
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

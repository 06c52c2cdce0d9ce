// `komoku import` of a large CSV file (issue 25's bar: >= 200,000 changes/s
// on this VM), beside two baselines measured in the same run:
// - parse only: the same file read by wire/import_format.h's ImportReader,
//   what an import costs before the store sees a row;
// - bare SQLite: the same rows inserted into the hot store's schema
//   (bench/hot_schema.h: the `changes` table and its index) with one
//   prepared statement, in transactions of 20,000 rows, WAL and
//   synchronous=NORMAL as the hot store runs, and nothing else.
// Then the real binary imports the file into an empty data directory (the
// wall time of the whole process, start and final commit included), and a
// second time into the same directory (every row already there). With data
// older than the hot window (`age_hours` > 48), the rows go straight into
// cold segments; then the same file is also imported the way before
// (--no-cold: every row through SQLite) into a directory of its own and
// compacted (`komoku compact`), which leaves the same history. Each run of
// the binary also gives its peak resident memory (VmHWM).
//
// A fourth argument, when given, is passed as --cold-rows (rows gathered
// per hand-over to the segments: less memory, more rewrites).
//
//   import_bench [changes=2000000] [keys=1000] [age_hours=1] [cold_rows]
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "hot_schema.h"
#include "testing/process.h"
#include "wire/import_format.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// CPU seconds (user + system) of this process, or of its children waited
// for, so far.
double CpuSeconds(int who) {
  rusage u{};
  getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// VmHWM of /proc/PID/status in kB, 0 when it cannot be read.
int64_t PeakKb(const std::string& status_path) {
  std::ifstream in(status_path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return 0;
}

void Check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "import_bench: %s: %s\n", what, sqlite3_errmsg(db));
    std::exit(1);
  }
}

// Rows of `keys` sensors, one change each per 10 s, time-ordered, ending
// `age_hours` ago; every value differs from the one before it.
int64_t WriteCsv(const std::string& path, int64_t changes, int keys, int64_t age_hours) {
  std::ofstream out(path);
  out << "key,time,value\n";
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  const int64_t steps = changes / keys;
  const int64_t first = now_s - age_hours * 3600 - steps * 10;
  std::string line;
  int64_t written = 0;
  for (int64_t s = 0; s < steps; ++s) {
    for (int k = 0; k < keys; ++k) {
      char buf[96];
      const int n = std::snprintf(buf, sizeof buf, "sensor/%04d/temperature,%lld.%03d,%.2f\n", k,
                                  static_cast<long long>(first + s * 10), k % 1000,
                                  15.0 + ((s * 7 + k) % 1000) / 100.0);
      out.write(buf, n);
      ++written;
    }
  }
  return written;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t want = argc > 1 ? std::atoll(argv[1]) : 2'000'000;
  const int keys = argc > 2 ? std::atoi(argv[2]) : 1000;
  const int64_t age_hours = argc > 3 ? std::atoll(argv[3]) : 1;
  std::vector<std::string> import_args = {"import"};
  if (argc > 4) import_args = {"import", "--cold-rows", argv[4]};
  import_args.push_back("");        // the file, named below
  const bool old = age_hours > 48;  // older than the default hot window
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("import_bench: load average %.2f %.2f %.2f at the start\n", load[0], load[1],
              load[2]);
  const fs::path dir =
      fs::temp_directory_path() / ("komoku-import-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string csv = (dir / "history.csv").string();
  import_args.back() = csv;
  const int64_t changes = WriteCsv(csv, want, keys, age_hours);
  std::printf("import_bench: %lld changes of %d keys ending %lld h ago, %.1f MB of CSV\n",
              static_cast<long long>(changes), keys, static_cast<long long>(age_hours),
              static_cast<double>(fs::file_size(csv)) / 1e6);

  // Parse only.
  std::vector<komoku::store::ImportRow> all;
  all.reserve(static_cast<size_t>(changes));
  auto t = Clock::now();
  {
    std::ifstream in(csv);
    komoku::store::ImportReader reader(in, komoku::store::ImportFormat::kCsv);
    std::vector<komoku::store::ImportRow> rows;
    komoku::Status error;
    int64_t line = 0;
    while (reader.Next(&rows, &error, &line)) {
      if (!error.ok()) {
        std::fprintf(stderr, "import_bench: line %lld: %s\n", static_cast<long long>(line),
                     error.message().c_str());
        return 1;
      }
      for (auto& r : rows) all.push_back(std::move(r));
    }
  }
  const double parse_s = Since(t);

  // Bare SQLite into the hot store's schema.
  const std::string db_path = (dir / "bare.db").string();
  sqlite3* db = nullptr;
  Check(sqlite3_open(db_path.c_str(), &db), db, "open");
  t = Clock::now();
  const double sqlite_cpu0 = CpuSeconds(RUSAGE_SELF);
  Check(sqlite3_exec(db, komoku::bench::kHotSchema, nullptr, nullptr, nullptr), db, "schema");
  Check(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr,
                     nullptr),
        db, "pragmas");
  sqlite3_stmt* insert = nullptr;
  Check(sqlite3_prepare_v2(db, "INSERT INTO changes(key_id, time_ms, value) VALUES(?, ?, ?)", -1,
                           &insert, nullptr),
        db, "prepare");
  for (size_t i = 0; i < all.size(); ++i) {
    if (i % 20000 == 0) Check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    // The key's id: its number in the name (sensor/NNNN/...).
    sqlite3_bind_int64(insert, 1, std::atoll(all[i].key.c_str() + 7));
    sqlite3_bind_int64(insert, 2, all[i].time_ms);
    sqlite3_bind_double(insert, 3, std::atof(std::get<std::string>(all[i].value).c_str()));
    Check(sqlite3_step(insert), db, "insert");
    sqlite3_reset(insert);
    if (i % 20000 == 19999 || i + 1 == all.size()) {
      Check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
    }
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  const double sqlite_s = Since(t);
  const double sqlite_cpu = CpuSeconds(RUSAGE_SELF) - sqlite_cpu0;
  all.clear();
  all.shrink_to_fit();

  // The real binary: twice into one directory; with old data also the way
  // before (every row through SQLite) and the compaction that takes it to
  // the same segments, into another.
  struct Run {
    const char* name;
    std::vector<std::string> args;
    std::string config;
  };
  const std::string config = (dir / "komoku.yaml").string();
  const std::string config_hot = (dir / "komoku-hot.yaml").string();
  std::ofstream(config) << "store:\n  data_dir: " << (dir / "data").string() << "\n";
  std::ofstream(config_hot) << "store:\n  data_dir: " << (dir / "data-hot").string() << "\n";
  std::vector<Run> runs = {
      {old ? "komoku import, straight to segments" : "komoku import, empty data directory",
       import_args, config},
      {"komoku import again (all already there)", import_args, config},
  };
  if (old) {
    runs.push_back(
        {"komoku import --no-cold (through SQLite)", {"import", "--no-cold", csv}, config_hot});
    runs.push_back({"  then komoku compact", {"compact"}, config_hot});
  }
  std::vector<double> import_s, import_cpu, peak_mb;
  for (size_t run = 0; run < runs.size(); ++run) {
    std::vector<std::string> argv = {KOMOKU_BINARY};
    argv.insert(argv.end(), runs[run].args.begin(), runs[run].args.end());
    argv.push_back("-c");
    argv.push_back(runs[run].config);
    t = Clock::now();
    const double cpu0 = CpuSeconds(RUSAGE_CHILDREN);
    komoku::process::Process p(argv, (dir / ("run-" + std::to_string(run) + ".log")).string());
    // The peak resident memory (VmHWM, a high-water mark) read every 20 ms
    // while it runs: its last reading is at most 20 ms before the end.
    int64_t peak_kb = 0;
    const std::string status_path = "/proc/" + std::to_string(p.pid()) + "/status";
    while (p.Running() && Since(t) < 3600) {
      peak_kb = std::max(peak_kb, PeakKb(status_path));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const int rc = p.Wait(std::chrono::seconds(1));
    import_s.push_back(Since(t));
    peak_mb.push_back(static_cast<double>(peak_kb) / 1024);
    import_cpu.push_back(CpuSeconds(RUSAGE_CHILDREN) - cpu0);
    if (rc != 0) {
      std::fprintf(stderr, "import_bench: %s exited %d:\n%s\n", runs[run].name, rc,
                   p.Output().c_str());
      return 1;
    }
    std::printf("  %s: %s", runs[run].name, p.Output().c_str());
  }

  // Wall time, and CPU time (user + system, every thread): on a machine
  // shared with other work the wall time waits for a CPU as much as for
  // the work.
  auto rate = [&](double s) { return static_cast<double>(changes) / s; };
  std::printf("%-42s %8s %12s %6s %8s %12s %6s %8s\n", "", "wall s", "changes/s", "ratio", "CPU s",
              "per CPU-s", "ratio", "peak MB");
  std::printf("%-42s %8.2f %12.0f %6s %8s %12s %6s\n", "parse only (ImportReader)", parse_s,
              rate(parse_s), "", "", "", "");
  std::printf("%-42s %8.2f %12.0f %6s %8.2f %12.0f %6s\n", "bare SQLite inserts, hot schema",
              sqlite_s, rate(sqlite_s), "1.00", sqlite_cpu, rate(sqlite_cpu), "1.00");
  for (size_t run = 0; run < runs.size(); ++run) {
    std::printf("%-42s %8.2f %12.0f %6.2f %8.2f %12.0f %6.2f %8.0f\n", runs[run].name,
                import_s[run], rate(import_s[run]), sqlite_s / import_s[run], import_cpu[run],
                rate(import_cpu[run]), sqlite_cpu / import_cpu[run], peak_mb[run]);
  }
  getloadavg(load, 3);
  std::printf("import_bench: load average %.2f %.2f %.2f at the end\n", load[0], load[1], load[2]);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

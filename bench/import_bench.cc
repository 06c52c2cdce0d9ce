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
// second time into the same directory (every row already there).
//
//   import_bench [changes=2000000] [keys=1000]
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
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

void Check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "import_bench: %s: %s\n", what, sqlite3_errmsg(db));
    std::exit(1);
  }
}

// Rows of `keys` sensors, one change each per 10 s, time-ordered, ending
// an hour ago; every value differs from the one before it.
int64_t WriteCsv(const std::string& path, int64_t changes, int keys) {
  std::ofstream out(path);
  out << "key,time,value\n";
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  const int64_t steps = changes / keys;
  const int64_t first = now_s - 3600 - steps * 10;
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
  const fs::path dir =
      fs::temp_directory_path() / ("komoku-import-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string csv = (dir / "history.csv").string();
  const int64_t changes = WriteCsv(csv, want, keys);
  std::printf("import_bench: %lld changes of %d keys, %.1f MB of CSV\n",
              static_cast<long long>(changes), keys, static_cast<double>(fs::file_size(csv)) / 1e6);

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

  // The real binary, twice.
  const std::string config = (dir / "komoku.yaml").string();
  std::ofstream(config) << "store:\n  data_dir: " << (dir / "data").string() << "\n";
  double import_s[2] = {0, 0};
  double import_cpu[2] = {0, 0};
  for (int run = 0; run < 2; ++run) {
    t = Clock::now();
    const double cpu0 = CpuSeconds(RUSAGE_CHILDREN);
    komoku::process::Process p({KOMOKU_BINARY, "import", csv, "-c", config},
                               (dir / ("import-" + std::to_string(run) + ".log")).string());
    const int rc = p.Wait(std::chrono::seconds(3600));
    import_s[run] = Since(t);
    import_cpu[run] = CpuSeconds(RUSAGE_CHILDREN) - cpu0;
    if (rc != 0) {
      std::fprintf(stderr, "import_bench: komoku import exited %d:\n%s\n", rc, p.Output().c_str());
      return 1;
    }
    std::printf("  komoku import, run %d: %s", run + 1, p.Output().c_str());
  }

  // Wall time, and CPU time (user + system, every thread): on a machine
  // shared with other work the wall time waits for a CPU as much as for
  // the work.
  auto rate = [&](double s) { return static_cast<double>(changes) / s; };
  std::printf("%-42s %8s %12s %6s %8s %12s %6s\n", "", "wall s", "changes/s", "ratio", "CPU s",
              "per CPU-s", "ratio");
  std::printf("%-42s %8.2f %12.0f %6s %8s %12s %6s\n", "parse only (ImportReader)", parse_s,
              rate(parse_s), "", "", "", "");
  std::printf("%-42s %8.2f %12.0f %6s %8.2f %12.0f %6s\n", "bare SQLite inserts, hot schema",
              sqlite_s, rate(sqlite_s), "1.00", sqlite_cpu, rate(sqlite_cpu), "1.00");
  const char* names[2] = {"komoku import, empty data directory",
                          "komoku import again (all already there)"};
  for (int run = 0; run < 2; ++run) {
    std::printf("%-42s %8.2f %12.0f %6.2f %8.2f %12.0f %6.2f\n", names[run], import_s[run],
                rate(import_s[run]), sqlite_s / import_s[run], import_cpu[run],
                rate(import_cpu[run]), sqlite_cpu / import_cpu[run]);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

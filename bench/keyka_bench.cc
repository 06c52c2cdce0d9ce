// KeyKa benchmarks (Google Benchmark), each beside baselines measured in the
// same run on the same keys:
//   (a) std::lower_bound over an in-memory sorted std::vector<std::string>,
//       the near-physical limit for a comparison search;
//   (b) SQLite, primary key of a WITHOUT ROWID table, statements prepared
//       once, mmap and a 256 MiB page cache so it too reads from memory.
// Keys are shaped like the store's: "room/sensor", 0x00, 8-byte big-endian
// milliseconds. 1M keys by default; --keys=N or KOMOKU_BENCH_KEYS=N for more
// (e.g. 10000000). Files go to $KOMOKU_BENCH_DIR, else $TMPDIR, else /tmp.
// After the run a table prints KeyKa's rate divided by each baseline's.
// Benchmarks never fail for being slow; the figures are for docs/benchmarks.md.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "keyka/packer.h"
#include "keyka/reader.h"

namespace {

using komoku::Result;
using komoku::Status;
namespace keyka = komoku::keyka;

constexpr size_t kProbeCount = size_t{1} << 20;  // a power of two, for masking
constexpr size_t kScanLength = 1000;             // keys per range scan
constexpr uint64_t kStepMs = 10000;              // one reading every 10 s

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "keyka_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string SeriesKey(const std::string& name, uint64_t ms) {
  std::string key = name;
  key.push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(ms >> shift));
  return key;
}

// Everything the benchmarks share, built once before they run.
struct Data {
  size_t count = 0;
  std::string dir;
  std::vector<std::string> names;  // the series, sorted
  std::vector<std::string> keys;   // sorted, as packed
  std::vector<uint64_t> values;
  std::vector<uint32_t> probes;  // random key indexes
  // Probe keys, laid out in probe order so that fetching the probe itself is
  // not a cache miss: copies of stored keys, and keys between two stored keys.
  std::vector<std::string> stored;
  std::vector<std::string> between;
  std::string keyka_path;
  std::string sqlite_path;
};

Data& TheData() {
  static Data data;
  return data;
}

std::string BenchDir() {
  for (const char* var : {"KOMOKU_BENCH_DIR", "TMPDIR"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && *v != '\0') return v;
  }
  return "/tmp";
}

void Check(const Status& st) {
  if (!st.ok()) Die(st.ToString());
}

void PackAll(const Data& d, const std::string& path, bool sync) {
  keyka::PackerOptions options;
  options.sync = sync;
  Result<keyka::Packer> packer = keyka::Packer::Create(path, options);
  Check(packer.status());
  for (size_t i = 0; i < d.count; ++i) Check(packer->Add(d.keys[i], d.values[i]));
  Check(packer->Finish());
}

void SqliteExec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    Die(std::string("sqlite: ") + sql + ": " + msg);
  }
}

// RAII owners for the SQLite handles.
struct Db {
  sqlite3* db = nullptr;
  explicit Db(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) Die("sqlite open " + path);
  }
  ~Db() { sqlite3_close(db); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
};

struct Stmt {
  sqlite3_stmt* stmt = nullptr;
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      Die(std::string("sqlite prepare: ") + sqlite3_errmsg(db));
    }
  }
  ~Stmt() { sqlite3_finalize(stmt); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
};

void SqliteLoad(const Data& d, const std::string& path) {
  ::unlink(path.c_str());
  Db db(path);
  SqliteExec(db.db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;");
  SqliteExec(db.db, "CREATE TABLE t (k BLOB PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID");
  SqliteExec(db.db, "BEGIN");
  Stmt insert(db.db, "INSERT INTO t (k, v) VALUES (?, ?)");
  for (size_t i = 0; i < d.count; ++i) {
    sqlite3_bind_blob(insert.stmt, 1, d.keys[i].data(), static_cast<int>(d.keys[i].size()),
                      SQLITE_STATIC);
    sqlite3_bind_int64(insert.stmt, 2, static_cast<sqlite3_int64>(d.values[i]));
    if (sqlite3_step(insert.stmt) != SQLITE_DONE) Die(sqlite3_errmsg(db.db));
    sqlite3_reset(insert.stmt);
  }
  SqliteExec(db.db, "COMMIT");
}

void Setup(size_t count) {
  Data& d = TheData();
  d.count = count;
  d.dir = BenchDir();
  const std::string tag = std::to_string(::getpid());
  d.keyka_path = d.dir + "/keyka-bench-" + tag + ".keyka";
  d.sqlite_path = d.dir + "/keyka-bench-" + tag + ".sqlite";

  for (const char* room : {"attic", "bathroom", "bedroom", "cellar", "garage", "hall", "kitchen",
                           "living_room", "office", "porch"}) {
    for (const char* sensor : {"battery", "co2", "door", "humidity", "lux", "motion", "noise",
                               "power", "pressure", "temperature"}) {
      d.names.push_back(std::string(room) + "/" + sensor);
    }
  }
  std::sort(d.names.begin(), d.names.end());
  const uint64_t start_ms = 1700000000000;
  const size_t per_name = (count + d.names.size() - 1) / d.names.size();
  d.keys.reserve(count);
  for (size_t n = 0; n < d.names.size() && d.keys.size() < count; ++n) {
    for (size_t i = 0; i < per_name && d.keys.size() < count; ++i) {
      d.keys.push_back(SeriesKey(d.names[n], start_ms + i * kStepMs));
      d.values.push_back(static_cast<uint64_t>(d.keys.size()) * 7);
    }
  }
  std::mt19937_64 rng(42);
  d.probes.resize(kProbeCount);
  for (uint32_t& p : d.probes) p = static_cast<uint32_t>(rng() % count);
  d.stored.resize(kProbeCount);
  d.between.resize(kProbeCount);
  for (size_t i = 0; i < kProbeCount; ++i) {
    const size_t k = d.probes[i];
    d.stored[i] = d.keys[k];
    std::string key = d.keys[k];
    // Low byte of the time changed: never a stored key, as those are 10 s apart.
    key.back() = static_cast<char>(key.back() + 1);
    d.between[i] = std::move(key);
  }

  std::fprintf(stderr, "keyka_bench: %zu keys; packing %s and loading %s ...\n", count,
               d.keyka_path.c_str(), d.sqlite_path.c_str());
  PackAll(d, d.keyka_path, false);
  SqliteLoad(d, d.sqlite_path);
}

// Each lookup benchmark opens its own reader or connection; one untimed
// pass over the whole file first maps every page, so that all contenders are
// measured in the steady state of a long-lived reader with a warm page cache.
void WarmKeyka(const keyka::Reader& reader) {
  uint64_t sum = 0;
  for (keyka::Iterator it = reader.All(); it.Valid(); it.Next()) sum += it.value();
  benchmark::DoNotOptimize(sum);
}

void WarmSqlite(sqlite3* db) {
  Stmt all(db, "SELECT sum(v), sum(length(k)) FROM t");
  while (sqlite3_step(all.stmt) == SQLITE_ROW) {
  }
}

// --- exact lookups

void BM_KeykaGet(benchmark::State& state) {
  const Data& d = TheData();
  Result<keyka::Reader> reader = keyka::Reader::Open(d.keyka_path);
  Check(reader.status());
  WarmKeyka(*reader);
  size_t i = 0;
  for (auto _ : state) {
    Result<uint64_t> v = reader->Get(d.stored[i++ & (kProbeCount - 1)]);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_VectorGet(benchmark::State& state) {
  const Data& d = TheData();
  size_t i = 0;
  for (auto _ : state) {
    const std::string& key = d.stored[i++ & (kProbeCount - 1)];
    auto it = std::lower_bound(d.keys.begin(), d.keys.end(), key);
    bool found = it != d.keys.end() && *it == key;
    uint64_t v = found ? d.values[static_cast<size_t>(it - d.keys.begin())] : 0;
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// Opens the shared database read-only with a 256 MiB cache and mmap.
void SqliteTune(sqlite3* db) {
  SqliteExec(db, "PRAGMA cache_size=-262144; PRAGMA mmap_size=4294967296;");
}

void BM_SqliteGet(benchmark::State& state) {
  const Data& d = TheData();
  Db db(d.sqlite_path);
  SqliteTune(db.db);
  WarmSqlite(db.db);
  Stmt get(db.db, "SELECT v FROM t WHERE k = ?");
  size_t i = 0;
  for (auto _ : state) {
    const std::string& key = d.stored[i++ & (kProbeCount - 1)];
    sqlite3_bind_blob(get.stmt, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_int64 v = sqlite3_step(get.stmt) == SQLITE_ROW ? sqlite3_column_int64(get.stmt, 0) : -1;
    benchmark::DoNotOptimize(v);
    sqlite3_reset(get.stmt);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// --- nearest lookups: the last key <= a time between two readings

void BM_KeykaNearest(benchmark::State& state) {
  const Data& d = TheData();
  Result<keyka::Reader> reader = keyka::Reader::Open(d.keyka_path);
  Check(reader.status());
  WarmKeyka(*reader);
  size_t i = 0;
  for (auto _ : state) {
    Result<keyka::Entry> e = reader->Find(d.between[i++ & (kProbeCount - 1)], keyka::Nearest::kLe);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_VectorNearest(benchmark::State& state) {
  const Data& d = TheData();
  size_t i = 0;
  for (auto _ : state) {
    const std::string& key = d.between[i++ & (kProbeCount - 1)];
    auto it = std::upper_bound(d.keys.begin(), d.keys.end(), key);
    uint64_t v = it == d.keys.begin() ? 0 : d.values[static_cast<size_t>(it - d.keys.begin()) - 1];
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_SqliteNearest(benchmark::State& state) {
  const Data& d = TheData();
  Db db(d.sqlite_path);
  SqliteTune(db.db);
  WarmSqlite(db.db);
  Stmt le(db.db, "SELECT k, v FROM t WHERE k <= ? ORDER BY k DESC LIMIT 1");
  size_t i = 0;
  for (auto _ : state) {
    const std::string& key = d.between[i++ & (kProbeCount - 1)];
    sqlite3_bind_blob(le.stmt, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_int64 v = sqlite3_step(le.stmt) == SQLITE_ROW ? sqlite3_column_int64(le.stmt, 1) : -1;
    benchmark::DoNotOptimize(v);
    sqlite3_reset(le.stmt);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// --- range scans of kScanLength keys from a random start; items are keys

size_t ScanStart(const Data& d, size_t i) {
  const size_t span = d.count > kScanLength ? d.count - kScanLength : 1;
  return d.probes[i & (kProbeCount - 1)] % span;
}

void BM_KeykaRangeScan(benchmark::State& state) {
  const Data& d = TheData();
  Result<keyka::Reader> reader = keyka::Reader::Open(d.keyka_path);
  Check(reader.status());
  WarmKeyka(*reader);
  size_t i = 0;
  int64_t keys = 0;
  for (auto _ : state) {
    const size_t from = ScanStart(d, i++);
    const size_t to = std::min(from + kScanLength, d.count - 1);
    uint64_t sum = 0;
    for (keyka::Iterator it = reader->Range(d.keys[from], d.keys[to]); it.Valid(); it.Next()) {
      sum += it.value() + it.key().size();
      ++keys;
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(keys);
}

void BM_VectorRangeScan(benchmark::State& state) {
  const Data& d = TheData();
  size_t i = 0;
  int64_t keys = 0;
  for (auto _ : state) {
    const size_t from = ScanStart(d, i++);
    const std::string& to = d.keys[std::min(from + kScanLength, d.count - 1)];
    uint64_t sum = 0;
    for (auto it = std::lower_bound(d.keys.begin(), d.keys.end(), d.keys[from]);
         it != d.keys.end() && *it < to; ++it) {
      sum += d.values[static_cast<size_t>(it - d.keys.begin())] + it->size();
      ++keys;
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(keys);
}

void BM_SqliteRangeScan(benchmark::State& state) {
  const Data& d = TheData();
  Db db(d.sqlite_path);
  SqliteTune(db.db);
  WarmSqlite(db.db);
  Stmt range(db.db, "SELECT k, v FROM t WHERE k >= ? AND k < ? ORDER BY k");
  size_t i = 0;
  int64_t keys = 0;
  for (auto _ : state) {
    const size_t from = ScanStart(d, i++);
    const std::string& a = d.keys[from];
    const std::string& b = d.keys[std::min(from + kScanLength, d.count - 1)];
    sqlite3_bind_blob(range.stmt, 1, a.data(), static_cast<int>(a.size()), SQLITE_STATIC);
    sqlite3_bind_blob(range.stmt, 2, b.data(), static_cast<int>(b.size()), SQLITE_STATIC);
    uint64_t sum = 0;
    while (sqlite3_step(range.stmt) == SQLITE_ROW) {
      sum += static_cast<uint64_t>(sqlite3_column_int64(range.stmt, 1)) +
             static_cast<uint64_t>(sqlite3_column_bytes(range.stmt, 0));
      ++keys;
    }
    benchmark::DoNotOptimize(sum);
    sqlite3_reset(range.stmt);
  }
  state.SetItemsProcessed(keys);
}

// --- building: pack (with fsync and rename, as in use) vs a SQLite bulk load

void BM_KeykaPack(benchmark::State& state) {
  const Data& d = TheData();
  const std::string path = d.keyka_path + ".pack";
  uint64_t bytes = 0;
  for (auto _ : state) {
    PackAll(d, path, true);
    bytes += static_cast<uint64_t>(keyka::Reader::Open(path)->file_size());
  }
  ::unlink(path.c_str());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * d.count));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void BM_SqliteLoad(benchmark::State& state) {
  const Data& d = TheData();
  const std::string path = d.sqlite_path + ".load";
  for (auto _ : state) SqliteLoad(d, path);
  ::unlink(path.c_str());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * d.count));
}

// Remembers each benchmark's items/s for the ratio table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      auto it = run.counters.find("items_per_second");
      if (!run.error_occurred && it != run.counters.end()) {
        rates_[run.run_name.function_name] = it->second.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void PrintRatios() const {
    std::printf("\nKeyKa rate / baseline rate (%zu keys; above 1 means KeyKa is faster)\n",
                TheData().count);
    std::printf("%-12s %14s %14s %14s %10s %10s\n", "operation", "keyka/s", "vector/s", "sqlite/s",
                "vs vector", "vs sqlite");
    for (const char* op : {"Get", "Nearest", "RangeScan"}) {
      const double k = Rate(std::string("BM_Keyka") + op);
      const double v = Rate(std::string("BM_Vector") + op);
      const double s = Rate(std::string("BM_Sqlite") + op);
      std::printf("%-12s %14.0f %14.0f %14.0f %10.2f %10.2f\n", op, k, v, s, v > 0 ? k / v : 0.0,
                  s > 0 ? k / s : 0.0);
    }
    const double pack = Rate("BM_KeykaPack");
    const double load = Rate("BM_SqliteLoad");
    std::printf("%-12s %14.0f %14s %14.0f %10s %10.2f\n", "Pack/Load", pack, "-", load, "-",
                load > 0 ? pack / load : 0.0);
  }

 private:
  double Rate(const std::string& name) const {
    auto it = rates_.find(name);
    return it == rates_.end() ? 0.0 : it->second;
  }
  std::map<std::string, double> rates_;
};

}  // namespace

BENCHMARK(BM_KeykaGet);
BENCHMARK(BM_VectorGet);
BENCHMARK(BM_SqliteGet);
BENCHMARK(BM_KeykaNearest);
BENCHMARK(BM_VectorNearest);
BENCHMARK(BM_SqliteNearest);
BENCHMARK(BM_KeykaRangeScan);
BENCHMARK(BM_VectorRangeScan);
BENCHMARK(BM_SqliteRangeScan);
BENCHMARK(BM_KeykaPack)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_SqliteLoad)->Unit(benchmark::kMillisecond)->Iterations(1);

int main(int argc, char** argv) {
  size_t count = 1000000;
  if (const char* env = std::getenv("KOMOKU_BENCH_KEYS")) count = std::strtoull(env, nullptr, 10);
  // --keys=N is ours; everything else goes to Google Benchmark.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--keys=", 7) == 0) {
      count = std::strtoull(argv[i] + 7, nullptr, 10);
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (count < 2 * kScanLength) Die("need at least " + std::to_string(2 * kScanLength) + " keys");
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;

  Setup(count);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  ::unlink(TheData().keyka_path.c_str());
  ::unlink(TheData().sqlite_path.c_str());
  benchmark::Shutdown();
  return 0;
}

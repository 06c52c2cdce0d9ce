// Core Store::Put throughput with the SQLite hot store attached, beside bare
// batched SQLite inserts of the same rows measured in the same run
// (docs/benchmarks.md, "Store put"; the aim of issue 3 is at least 0.7 of
// the bare rate on the group-commit path).
//
// - BM_StorePut/keys:K/wait:0  puts with wait_committed=false (the group
//   commit); an iteration is 4,000 puts and then WaitCommitted, so the
//   commits are inside the measured time.
// - BM_StorePut/keys:K/wait:1  every put waits for its commit, as an MQTT
//   message does, from 1 and from 8 threads (concurrent waiters share a
//   commit).
// - BM_SqliteInsert/keys:K     the same rows into the same schema (keys and
//   changes tables, the index on (key_id, time_ms), explicit rowids) with
//   the store's pragmas (WAL, synchronous=NORMAL, no automatic checkpoint), a
//   statement prepared once, one transaction per 4,000 rows.
//
// Every put has a new value, so same_value_resolution stores all of them.
// Files go to $KOMOKU_BENCH_DIR, else $TMPDIR, else /tmp, removed afterwards.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <stdlib.h>  // mkdtemp

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "hot_schema.h"
#include "store/store.h"

namespace {

using komoku::Result;
using komoku::bench::kHotSchema;
using komoku::store::InputValue;
using komoku::store::PutOptions;
using komoku::store::Store;
using komoku::store::StoreOptions;

constexpr int kBatchRows = 4000;  // the hot store's commit_max_rows default
constexpr int kWaitedPuts = 200;  // puts per iteration when each one waits
constexpr int64_t kBaseTimeMs = 1700000000000;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "store_bench: %s\n", what.c_str());
  std::exit(1);
}

// A fresh directory for one benchmark's files, removed with them.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("KOMOKU_BENCH_DIR");
    if (!base || !*base) base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/komoku-store-bench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) Die("cannot create a directory from " + tmpl);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string> KeyNames(int count) {
  std::vector<std::string> names;
  names.reserve(count);
  for (int i = 0; i < count; ++i) names.push_back("bench/sensor" + std::to_string(i));
  return names;
}

// --- Store::Put -------------------------------------------------------------

struct StoreRun {
  std::unique_ptr<ScratchDir> dir;
  std::unique_ptr<Store> store;
  std::vector<std::string> keys;
  std::atomic<uint64_t> next{0};  // a counter shared by the threads: every value differs
};
StoreRun* g_store_run = nullptr;

void BM_StorePut(benchmark::State& state) {
  const int key_count = static_cast<int>(state.range(0));
  const bool wait = state.range(1) != 0;
  if (state.thread_index() == 0) {
    g_store_run = new StoreRun;
    g_store_run->dir = std::make_unique<ScratchDir>();
    StoreOptions options;
    options.data_dir = g_store_run->dir->path();
    Result<std::unique_ptr<Store>> store = Store::Open(options, nullptr);
    if (!store.ok()) Die(store.status().ToString());
    g_store_run->store = std::move(store).value();
    g_store_run->keys = KeyNames(key_count);
    // Create every key before timing: the benchmark is about changes.
    for (const std::string& k : g_store_run->keys) {
      PutOptions o;
      o.wait_committed = false;
      if (!g_store_run->store->Put(k, InputValue(-1.0), o).ok()) Die("cannot create " + k);
    }
    (void)g_store_run->store->WaitCommitted(1);
  }
  const int per_iteration = wait ? kWaitedPuts : kBatchRows;
  PutOptions options;
  options.wait_committed = wait;
  int64_t failures = 0;
  // Read only inside the loop: the other threads pass the start barrier (the
  // first iteration) only after thread 0 has set it.
  StoreRun* run = nullptr;
  for (auto _ : state) {
    if (!run) run = g_store_run;
    for (int i = 0; i < per_iteration; ++i) {
      uint64_t n = run->next.fetch_add(1, std::memory_order_relaxed);
      Result<komoku::store::Change> c = run->store->Put(
          run->keys[n % run->keys.size()], InputValue(static_cast<double>(n)), options);
      if (!c.ok() || !c->stored) ++failures;
    }
    if (!wait) (void)run->store->WaitCommitted(1);  // the newest op: all of ours
  }
  state.SetItemsProcessed(state.iterations() * per_iteration);
  if (failures) state.SkipWithError("a put failed or was not stored");
  if (state.thread_index() == 0) {
    // The end barrier has passed: every thread is out of the loop.
    g_store_run->store->Close();
    delete g_store_run;
    g_store_run = nullptr;
  }
}

// --- bare SQLite --------------------------------------------------------------

void Check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    Die(std::string(what) + ": " + sqlite3_errmsg(db));
  }
}

void Exec(sqlite3* db, const char* sql) {
  Check(db, sqlite3_exec(db, sql, nullptr, nullptr, nullptr), sql);
}

void BM_SqliteInsert(benchmark::State& state) {
  const int key_count = static_cast<int>(state.range(0));
  ScratchDir dir;
  const std::string path = dir.path() + "/bare.db";
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) Die("cannot open " + path);
  Exec(db, "PRAGMA journal_mode=WAL");
  Exec(db, "PRAGMA synchronous=NORMAL");
  Exec(db, "PRAGMA wal_autocheckpoint=0");
  Exec(db, kHotSchema);
  sqlite3_stmt* key_stmt = nullptr;
  Check(db,
        sqlite3_prepare_v2(db,
                           "INSERT INTO keys(id, name, type, options, created_ms) "
                           "VALUES(?1, ?2, 'numeric', '{\"same_value_resolution\":60.0}', ?3)",
                           -1, &key_stmt, nullptr),
        "prepare keys");
  sqlite3_stmt* insert = nullptr;
  Check(db,
        sqlite3_prepare_v2(
            db, "INSERT INTO changes(rowid, key_id, time_ms, value) VALUES(?4, ?1, ?2, ?3)", -1,
            &insert, nullptr),
        "prepare changes");
  // The same setup as the store: every key with one first value.
  const std::vector<std::string> names = KeyNames(key_count);
  int64_t rowid = 0;
  Exec(db, "BEGIN IMMEDIATE");
  for (int i = 0; i < key_count; ++i) {
    sqlite3_bind_int64(key_stmt, 1, i + 1);
    sqlite3_bind_text(key_stmt, 2, names[i].data(), static_cast<int>(names[i].size()),
                      SQLITE_STATIC);
    sqlite3_bind_int64(key_stmt, 3, kBaseTimeMs);
    Check(db, sqlite3_step(key_stmt), "insert key");
    sqlite3_reset(key_stmt);
    sqlite3_bind_int64(insert, 1, i + 1);
    sqlite3_bind_int64(insert, 2, kBaseTimeMs);
    sqlite3_bind_double(insert, 3, -1.0);
    sqlite3_bind_int64(insert, 4, ++rowid);
    Check(db, sqlite3_step(insert), "insert change");
    sqlite3_reset(insert);
  }
  Exec(db, "COMMIT");

  uint64_t n = 0;
  for (auto _ : state) {
    Exec(db, "BEGIN IMMEDIATE");
    for (int i = 0; i < kBatchRows; ++i, ++n) {
      sqlite3_bind_int64(insert, 1, static_cast<int64_t>(n % key_count) + 1);
      sqlite3_bind_int64(insert, 2, kBaseTimeMs + static_cast<int64_t>(n / key_count));
      sqlite3_bind_double(insert, 3, static_cast<double>(n));
      sqlite3_bind_int64(insert, 4, ++rowid);
      Check(db, sqlite3_step(insert), "insert change");
      sqlite3_reset(insert);
    }
    Exec(db, "COMMIT");
  }
  state.SetItemsProcessed(state.iterations() * kBatchRows);
  sqlite3_finalize(key_stmt);
  sqlite3_finalize(insert);
  sqlite3_close(db);
}

// Remembers each run's items/s for the ratio table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      auto it = run.counters.find("items_per_second");
      if (!run.error_occurred && it != run.counters.end()) {
        rates_[run.benchmark_name()] = it->second.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void PrintRatios() const {
    std::printf(
        "\nStore::Put rate / bare batched SQLite insert rate (aim: at least 0.7 with "
        "wait_committed=false)\n");
    std::printf("%-44s %14s %14s %8s\n", "benchmark", "changes/s", "sqlite/s", "ratio");
    for (const auto& [name, rate] : rates_) {
      if (name.rfind("BM_StorePut/", 0) != 0) continue;
      // "BM_StorePut/keys:1/wait:0/..." -> "BM_SqliteInsert/keys:1/..."
      size_t keys_at = name.find("keys:");
      size_t keys_end = name.find('/', keys_at);
      std::string keys = name.substr(keys_at, keys_end - keys_at);
      double base = 0;
      for (const auto& [other, other_rate] : rates_) {
        if (other.rfind("BM_SqliteInsert/" + keys + "/", 0) == 0 ||
            other == "BM_SqliteInsert/" + keys) {
          base = other_rate;
        }
      }
      std::printf("%-44s %14.0f %14.0f %8.2f\n", name.c_str(), rate, base,
                  base > 0 ? rate / base : 0.0);
    }
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace

BENCHMARK(BM_SqliteInsert)
    ->ArgName("keys")
    ->Arg(1)
    ->Arg(10000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StorePut)
    ->ArgNames({"keys", "wait"})
    ->Args({1, 0})
    ->Args({10000, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StorePut)
    ->ArgNames({"keys", "wait"})
    ->Args({1, 1})
    ->Args({10000, 1})
    ->Threads(1)
    ->Threads(8)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}

// Cold history at the scale of issue #5: one temperature sensor for a year at
// 10 s (bench/sensor_gen.h), put through the Store, then compacted into
// segments. Prints, each beside its baseline from the same run:
// - the hourly mean/min/max of the whole year (8,760 buckets) answered from
//   cold storage, beside the same question as a SQL GROUP BY over the raw
//   SQLite table and beside the store's own walk over the raw hot rows;
// - bytes per sample on disk, cold segments vs the SQLite hot store;
// - compaction speed (samples per second) and peak memory while compacting;
// - the space the hot store gives back (issue 18): komoku.db before and after
//   the compacted rows are deleted and their pages given back in vacuum
//   steps, beside what the file would keep without them, and the data
//   directory beside segments + live hot rows; and the one-time conversion
//   of a database made without auto_vacuum (a VACUUM of the whole year).
// Prints figures only; it never fails for being slow.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "sensor_gen.h"
#include "series/history.h"
#include "store/store.h"
#include "wire/history_json.h"

namespace {

using komoku::store::Agg;
using komoku::store::Store;

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;

class FixedClock : public komoku::store::Clock {
 public:
  explicit FixedClock(int64_t now) : now_(now) {}
  int64_t NowMs() const override { return now_; }

 private:
  int64_t now_;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

template <typename Fn>
double MedianMs(int runs, Fn fn) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(Seconds(t0) * 1000);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// kB of a /proc/self/status line ("VmHWM", "VmRSS").
long StatusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field) + 1);
  }
  return -1;
}

uint64_t FileBytes(const std::string& path) {
  std::error_code ec;
  uint64_t n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// A PRAGMA's integer answer on a connection of its own.
int64_t Pragma(const std::string& path, const std::string& pragma) {
  sqlite3* db = nullptr;
  int64_t v = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    const std::string sql = "PRAGMA " + pragma;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return v;
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file()) n += e.file_size();
  }
  return n;
}

void Die(const std::string& what) {
  std::fprintf(stderr, "cold_bench: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int main() {
  const std::vector<komoku::bench::SensorReading> year = komoku::bench::GenerateSensorYear();
  const int64_t from = year.front().time_ms / kDay * kDay;
  const int64_t to = from + 366 * kDay;
  FixedClock clock(to + 3 * kDay);  // the whole year older than the hot window

  char tmpl[] = "/tmp/komoku-cold-bench-XXXXXX";
  if (!mkdtemp(tmpl)) Die("mkdtemp failed");
  const std::string dir = tmpl;
  komoku::store::StoreOptions options;
  options.data_dir = dir;
  options.clock = &clock;
  options.start_timers = false;
  options.cold.background = false;
  options.cold.raw_retention_ms = 0;  // keep everything: the size is the year's
  auto open = [&] {
    auto opened = Store::Open(options, nullptr);
    if (!opened.ok()) Die(opened.status().ToString());
    return std::move(opened.value());
  };
  std::unique_ptr<Store> store = open();
  komoku::store::KeyOptionsPatch every_value;
  every_value.same_value_resolution_ms.emplace(0);
  if (!store->Define("temp", komoku::store::KeyType::kNumeric, every_value).ok()) {
    Die("define failed");
  }

  auto t0 = std::chrono::steady_clock::now();
  uint64_t last = 0;
  for (const auto& r : year) {
    komoku::store::PutOptions put;
    put.time_ms = r.time_ms;
    put.wait_committed = false;
    auto c = store->Put("temp", komoku::store::InputValue(r.value), put);
    if (!c.ok()) Die(c.status().ToString());
    last = c->seq;
  }
  if (!store->WaitCommitted(last).ok()) Die("commit failed");
  const double put_s = Seconds(t0);
  const uint64_t hot_bytes = DirBytes(dir);  // komoku.db and its WAL

  // The one-time conversion (issue 18): the year's database as an earlier
  // Komoku made it, without auto_vacuum, then opened again.
  const std::string db_path = store->db_path();
  store.reset();
  const uint64_t year_db_bytes = FileBytes(db_path);
  {
    sqlite3* db = nullptr;
    if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK) Die("cannot open the database");
    t0 = std::chrono::steady_clock::now();
    if (sqlite3_exec(db, "PRAGMA auto_vacuum=NONE; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
                     nullptr, nullptr, nullptr) != SQLITE_OK) {
      Die(std::string("VACUUM to auto_vacuum=NONE: ") + sqlite3_errmsg(db));
    }
    sqlite3_close(db);
  }
  const double unconvert_s = Seconds(t0);
  if (Pragma(db_path, "auto_vacuum") != 0) Die("the database still has auto_vacuum");
  t0 = std::chrono::steady_clock::now();
  store = open();
  const double convert_s = Seconds(t0);
  if (Pragma(db_path, "auto_vacuum") != 2) Die("the database was not converted");

  // The question: hourly mean, min and max over the whole year.
  auto query = komoku::store::PlanBuckets("temp", from, to, "1h", "", 100000);
  if (!query.ok()) Die(query.status().ToString());
  std::vector<Agg> aggs = {Agg::kAvg, Agg::kMin, Agg::kMax};
  nlohmann::json hot_answer;
  const double hot_walk_ms = MedianMs(3, [&] {
    auto r = komoku::store::DownsampleJson(*store, *query, aggs);
    if (!r.ok()) Die(r.status().ToString());
    hot_answer = *r;
  });

  // Baseline: SQL GROUP BY over the raw rows, on a connection of its own.
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(store->db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    Die("cannot open the database");
  }
  const std::string sql =
      "SELECT time_ms / 3600000, avg(value), min(value), max(value) FROM changes "
      "WHERE key_id = (SELECT id FROM keys WHERE name = 'temp') AND time_ms >= " +
      std::to_string(from) + " AND time_ms < " + std::to_string(to) + " GROUP BY 1";
  size_t sql_rows = 0;
  const double sql_ms = MedianMs(5, [&] {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    sql_rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) ++sql_rows;
    sqlite3_finalize(st);
  });
  sqlite3_close(db);

  // Compaction, with the peak of resident memory reset just before it.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const long rss_before = StatusKb("VmRSS");
  t0 = std::chrono::steady_clock::now();
  auto report = store->Compact();
  if (!report.ok()) Die(report.status().ToString());
  const double compact_s = Seconds(t0);
  const long peak = StatusKb("VmHWM");

  // The deletion of the compacted rows and the vacuum steps after it.
  const int64_t page_size = Pragma(db_path, "page_size");
  // The WAL's largest size meanwhile, sampled every 10 ms.
  std::atomic<bool> deleted{false};
  uint64_t wal_peak = FileBytes(db_path + "-wal");
  std::thread sampler([&] {
    while (!deleted.load()) {
      wal_peak = std::max(wal_peak, FileBytes(db_path + "-wal"));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  t0 = std::chrono::steady_clock::now();
  store->WaitColdRowsDeleted();
  const double delete_s = Seconds(t0);
  deleted.store(true);
  sampler.join();
  const auto& m = store->metrics();
  const int64_t steps = m.Get("komoku_hot_vacuum_steps_total");
  const int64_t vacuumed = m.Get("komoku_hot_vacuumed_pages_total");
  const int64_t vacuum_us = m.Get("komoku_hot_vacuum_micros_total");
  const int64_t step_max_us = m.Get("komoku_hot_vacuum_step_max_micros");
  const int64_t pages_after = Pragma(db_path, "page_count");
  const int64_t free_after = Pragma(db_path, "freelist_count");
  const uint64_t wal_after_deletion = FileBytes(db_path + "-wal");
  // The WAL on a running service: the sensor goes on reporting, so a commit
  // follows the next checkpoint (every 10 s) and cuts the WAL back.
  const int64_t checkpoints = m.Get("komoku_checkpoints_total");
  for (int i = 0; i < 300 && m.Get("komoku_checkpoints_total") <= checkpoints; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  {
    komoku::store::PutOptions put;
    put.time_ms = to + 3 * kDay - 1000;
    auto c = store->Put("temp", komoku::store::InputValue(20.5), put);
    if (!c.ok()) Die(c.status().ToString());
  }
  const uint64_t wal_running = FileBytes(db_path + "-wal");

  uint64_t seg_bytes = 0;
  for (const auto& s : store->Segments()) seg_bytes += s.bytes;

  nlohmann::json cold_answer;
  const double cold_ms = MedianMs(21, [&] {
    auto r = komoku::store::DownsampleJson(*store, *query, aggs);
    if (!r.ok()) Die(r.status().ToString());
    cold_answer = *r;
  });
  // Where the time goes: deciding where rollups are exact, and reading the
  // year's hourly rollups alone.
  const double coverage_ms = MedianMs(21, [&] { (void)store->RollupCoverage("temp"); });
  size_t rollups = 0;
  const double scan_ms = MedianMs(21, [&] {
    rollups = 0;
    (void)store->ScanRollups("temp", kHour, from, to, [&](const komoku::store::Rollup&) {
      ++rollups;
      return true;
    });
  });
  // The cold answer must be the hot one (rollups add sums in another order).
  double worst = 0;
  size_t buckets = 0;
  for (size_t i = 0; i < hot_answer.size(); ++i) {
    for (size_t j = 1; j < hot_answer[i].size(); ++j) {
      if (hot_answer[i][j].is_null() != cold_answer[i][j].is_null()) Die("answers differ");
      if (hot_answer[i][j].is_null()) continue;
      double a = hot_answer[i][j].get<double>(), b = cold_answer[i][j].get<double>();
      worst = std::max(worst, std::fabs(a - b) / std::max(1e-12, std::fabs(a)));
    }
    buckets += !hot_answer[i][1].is_null();
  }

  const double n = static_cast<double>(year.size());
  std::printf("cold_bench: one sensor, a year at 10 s: %zu samples, %zu hourly buckets with data\n",
              year.size(), buckets);
  std::printf("  put through the Store (hot, group commits)   %10.0f samples/s\n", n / put_s);
  std::printf("  hourly avg/min/max over the year:\n");
  std::printf("    cold (rollups)                              %10.2f ms  (median of 21)\n",
              cold_ms);
  std::printf("      of which: where rollups are exact           %10.2f ms\n", coverage_ms);
  std::printf("      of which: reading %zu hourly rollups       %10.2f ms\n", rollups, scan_ms);
  std::printf(
      "    SQL GROUP BY over the raw SQLite rows       %10.2f ms  (%zu rows; %.0fx the cold "
      "time)\n",
      sql_ms, sql_rows, sql_ms / cold_ms);
  std::printf("    the store's walk over the raw hot rows      %10.2f ms  (%.0fx)\n", hot_walk_ms,
              hot_walk_ms / cold_ms);
  std::printf("    largest relative difference cold vs hot     %10.2g\n", worst);
  std::printf("  size on disk:\n");
  std::printf(
      "    cold segments (raw + 5m/1h/1d rollups)      %10.2f bytes/sample (%llu bytes, %zu "
      "segments)\n",
      static_cast<double>(seg_bytes) / n, static_cast<unsigned long long>(seg_bytes),
      store->Segments().size());
  std::printf("    SQLite hot store before compaction          %10.2f bytes/sample\n",
              static_cast<double>(hot_bytes) / n);
  std::printf("  compaction (day segments, then month merges) %10.0f samples/s (%.2f s)\n",
              n / compact_s, compact_s);
  std::printf("    peak resident memory while compacting       %10.1f MB (%.1f MB before)\n",
              static_cast<double>(peak) / 1024, static_cast<double>(rss_before) / 1024);
  std::printf("  giving space back (issue 18):\n");
  std::printf(
      "    converting the year's database to auto_vacuum  %8.2f s  (%.1f MB; %.2f s per 100 MB;\n"
      "      the VACUUM back to auto_vacuum=NONE took %.2f s)\n",
      convert_s, year_db_bytes / 1e6, convert_s / (year_db_bytes / 1e8), unconvert_s);
  std::printf("    deleting the compacted rows and vacuuming      %8.2f s after compaction\n",
              delete_s);
  std::printf(
      "    vacuum steps                                   %8lld  (%lld pages, %.2f s in all, "
      "%.1f ms the longest step, %.1f ms on average)\n",
      static_cast<long long>(steps), static_cast<long long>(vacuumed), vacuum_us / 1e6,
      step_max_us / 1e3, steps ? vacuum_us / 1e3 / static_cast<double>(steps) : 0.0);
  std::printf(
      "    komoku.db while running                        %8.2f MB  (%lld pages, %lld free)\n",
      pages_after * page_size / 1e6, static_cast<long long>(pages_after),
      static_cast<long long>(free_after));
  std::printf(
      "      WAL                                          %8.2f MB  (%.2f MB at its largest "
      "during the deletion, %.2f MB right after it)\n",
      wal_running / 1e6, wal_peak / 1e6, wal_after_deletion / 1e6);
  std::printf("      without giving pages back it would keep      %8.2f MB\n",
              (pages_after + vacuumed) * page_size / 1e6);
  const int64_t live_hot = (pages_after - free_after) * page_size;
  store.reset();  // the last checkpoint folds the WAL in
  const uint64_t dir_bytes = DirBytes(dir);
  std::printf(
      "    after a stop: komoku.db %.3f MB, data directory %.3f MB, segments + live hot "
      "pages %.3f MB: %.3fx\n",
      FileBytes(db_path) / 1e6, dir_bytes / 1e6, (seg_bytes + live_hot) / 1e6,
      static_cast<double>(dir_bytes) / static_cast<double>(seg_bytes + live_hot));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}

// Size and decode speed of cold segments (docs/segment-format.md) for one
// temperature sensor over a year at 10 s (bench/sensor_gen.h, fixed seed),
// beside baselines measured in the same run:
// - the same changes in an SQLite table shaped like the hot store's
//   `changes` (src/hot/hot_store.cc: STRICT, key_id/time_ms/value ANY, the
//   index on (key_id, time_ms)), bulk-loaded in one transaction;
// - the order-0 entropy of the deltas (time deltas in ms plus value deltas in
//   hundredths, each from its own histogram): what a coder that sees each
//   delta alone, with a perfect model of the whole year, could reach;
// - zigzag varints of the same deltas: the simple coding the Rice coder replaced.
//
// Rollups for the bench come from a plain loop here (5 min / 1 h / 1 d:
// count, sum, min, max, first, last, changes, integral, known_ms,
// unknown_ms), not from the store's rollup code.
//
// Figures print as a table; nothing fails for being slow. Files go to
// $KOMOKU_BENCH_DIR, else $TMPDIR, else /tmp, and are removed afterwards.
#include <sqlite3.h>
#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "cold/segment.h"
#include "sensor_gen.h"

namespace {

using komoku::Status;
using komoku::bench::SensorReading;
using komoku::store::Rollup;
using komoku::store::Sample;
using komoku::store::Segment;
using komoku::store::SegmentKeyData;
using komoku::store::SegmentMeta;
using komoku::store::SegmentWriter;

constexpr int64_t kDayMs = 86'400'000;

std::string BenchDir() {
  for (const char* var : {"KOMOKU_BENCH_DIR", "TMPDIR"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && *v != '\0') return v;
  }
  return "/tmp";
}

void Check(const Status& st, const char* what) {
  if (st.ok()) return;
  std::fprintf(stderr, "segment_bench: %s: %s\n", what, st.ToString().c_str());
  std::exit(1);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Rollups of `v` at `res`: the value of a reading lasts until the next one
// (the last until `to_ms`); time before the first reading is unknown.
std::vector<Rollup> ComputeRollups(const std::vector<Sample>& v, int64_t res, int64_t from_ms,
                                   int64_t to_ms) {
  const int64_t first_bucket = from_ms - from_ms % res;
  std::vector<Rollup> b(static_cast<size_t>((to_ms - first_bucket + res - 1) / res));
  for (size_t i = 0; i < b.size(); ++i)
    b[i].start_ms = first_bucket + static_cast<int64_t>(i) * res;
  auto at = [&](int64_t t) -> Rollup& { return b[static_cast<size_t>((t - first_bucket) / res)]; };
  for (size_t i = 0; i < v.size(); ++i) {
    const double x = std::get<double>(v[i].value);
    Rollup& r = at(v[i].time_ms);
    ++r.count;
    if (i == 0 || std::get<double>(v[i - 1].value) != x) ++r.changes;
    r.sum += x;
    r.min = std::min(r.min, x);
    r.max = std::max(r.max, x);
    if (!r.first) r.first = x;
    r.last = x;
    // The span this reading lasts, split at bucket ends.
    const int64_t end = i + 1 < v.size() ? v[i + 1].time_ms : to_ms;
    for (int64_t s = v[i].time_ms; s < end;) {
      Rollup& span = at(s);
      const int64_t piece = std::min(end, span.start_ms + res) - s;
      span.integral += x * static_cast<double>(piece);
      span.known_ms += piece;
      s += piece;
    }
  }
  std::vector<Rollup> out;
  for (Rollup& r : b) {
    r.unknown_ms = res - r.known_ms;
    if (r.count > 0 || r.known_ms > 0) out.push_back(std::move(r));
  }
  return out;
}

double Entropy(const std::map<int64_t, uint64_t>& hist, uint64_t n) {
  double h = 0;
  for (const auto& [value, count] : hist) {
    const double p = static_cast<double>(count) / static_cast<double>(n);
    h -= p * std::log2(p);
  }
  return h;
}

int VarintBytes(int64_t v) {
  uint64_t z = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  int n = 1;
  while (z >= 128) {
    z >>= 7;
    ++n;
  }
  return n;
}

// Writes `data` as one segment and returns its bytes.
uint64_t WriteSegment(const std::string& base, const SegmentMeta& meta, const SegmentKeyData& data,
                      double* seconds) {
  const auto start = std::chrono::steady_clock::now();
  auto writer = SegmentWriter::Create(base, meta);
  Check(writer.status(), "create");
  Check((*writer)->AddKey(data), "add key");
  Check((*writer)->Finish(), "finish");
  if (seconds) *seconds = Seconds(start);
  auto seg = Segment::Open(base);
  Check(seg.status(), "open");
  Check((*seg)->Verify(), "verify");
  return (*seg)->file_bytes();
}

struct Sqlite {
  sqlite3* db = nullptr;
  ~Sqlite() { sqlite3_close(db); }
  void Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::fprintf(stderr, "segment_bench: sqlite: %s\n", err ? err : "?");
      std::exit(1);
    }
  }
};

uint64_t LoadSqlite(const std::string& path, const std::vector<Sample>& v) {
  Sqlite s;
  sqlite3_open(path.c_str(), &s.db);
  s.Exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;");
  // The hot store's schema (src/hot/hot_store.cc, v1).
  s.Exec(
      "CREATE TABLE keys(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
      " created_ms INTEGER NOT NULL) STRICT;"
      "CREATE TABLE changes(key_id INTEGER NOT NULL, time_ms INTEGER NOT NULL,"
      " value ANY NOT NULL) STRICT;"
      "CREATE INDEX changes_by_key_time ON changes(key_id, time_ms);"
      "INSERT INTO keys VALUES(1, 'living/temperature', 'numeric', 0);");
  s.Exec("BEGIN");
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(s.db, "INSERT INTO changes VALUES(1, ?, ?)", -1, &st, nullptr);
  for (const Sample& x : v) {
    sqlite3_bind_int64(st, 1, x.time_ms);
    sqlite3_bind_double(st, 2, std::get<double>(x.value));
    sqlite3_step(st);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  s.Exec("COMMIT");
  return std::filesystem::file_size(path);
}

// Seconds to read every change back, best of `reps`, and a checksum.
double TimeSqliteRead(const std::string& path, int64_t from, int64_t to, int reps, double* sum) {
  Sqlite s;
  sqlite3_open_v2(path.c_str(), &s.db, SQLITE_OPEN_READONLY, nullptr);
  s.Exec("PRAGMA mmap_size=1073741824; PRAGMA cache_size=-262144;");
  double best = 1e9;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(s.db,
                       "SELECT time_ms, value FROM changes WHERE key_id = 1 AND time_ms >= ?"
                       " AND time_ms < ? ORDER BY time_ms",
                       -1, &st, nullptr);
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    double total = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      total += static_cast<double>(sqlite3_column_int64(st, 0) & 1) + sqlite3_column_double(st, 1);
    }
    sqlite3_finalize(st);
    best = std::min(best, Seconds(start));
    *sum = total;
  }
  return best;
}

double TimeSegmentRead(const std::string& base, int64_t from, int64_t to, int reps, double* sum) {
  auto seg = Segment::Open(base);
  Check(seg.status(), "open");
  double best = 1e9;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    double total = 0;
    Check((*seg)->Scan("living/temperature", from, to,
                       [&](const Sample& x) {
                         total += static_cast<double>(x.time_ms & 1) + std::get<double>(x.value);
                         return true;
                       }),
          "scan");
    best = std::min(best, Seconds(start));
    *sum = total;
  }
  return best;
}

}  // namespace

int main() {
  char tmpl[4096];
  std::snprintf(tmpl, sizeof(tmpl), "%s/komoku-segment-bench-XXXXXX", BenchDir().c_str());
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("segment_bench: mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;

  const komoku::bench::SensorOptions opt;
  const std::vector<SensorReading> year = komoku::bench::GenerateSensorYear(opt);
  const uint64_t n = year.size();
  std::vector<Sample> changes;
  changes.reserve(n);
  for (const auto& r : year) changes.push_back({r.time_ms, r.value});

  SegmentMeta meta;
  meta.from_ms = opt.start_ms - opt.start_ms % kDayMs;
  meta.to_ms = meta.from_ms + 366 * kDayMs;
  meta.max_seq = n;

  SegmentKeyData raw;
  raw.key = "living/temperature";
  raw.type = komoku::store::KeyType::kNumeric;
  raw.stale_after_ms = 0;
  raw.changes = changes;
  SegmentKeyData full = raw;
  size_t rollup_records = 0;
  for (int64_t res : komoku::store::kRollupResolutionsMs) {
    full.rollups.emplace_back(res, ComputeRollups(changes, res, meta.from_ms, meta.to_ms));
    rollup_records += full.rollups.back().second.size();
  }
  SegmentKeyData rollups_only = full;
  rollups_only.changes.clear();
  rollups_only.raw_dropped = true;

  // The same values on an exact 10 s grid: what the values alone cost.
  komoku::bench::SensorOptions steady_opt = opt;
  steady_opt.jitter_ms = 0;
  SegmentKeyData steady = raw;
  steady.changes.clear();
  for (const auto& r : komoku::bench::GenerateSensorYear(steady_opt)) {
    steady.changes.push_back({r.time_ms, r.value});
  }

  double write_s = 0;
  const uint64_t raw_bytes = WriteSegment(dir + "/raw", meta, raw, &write_s);
  const uint64_t steady_bytes = WriteSegment(dir + "/steady", meta, steady, nullptr);
  uint64_t raw_block_bytes = 0;
  {
    auto seg = Segment::Open(dir + "/raw");
    Check(seg.status(), "open");
    for (const auto& info : (*seg)->Keys()) raw_block_bytes += info.raw_bytes;
  }
  const uint64_t full_bytes = WriteSegment(dir + "/full", meta, full, nullptr);
  const uint64_t rollup_bytes = WriteSegment(dir + "/rollups", meta, rollups_only, nullptr);
  const uint64_t sqlite_bytes = LoadSqlite(dir + "/hot.db", changes);

  // Order-0 entropy of the deltas and their zigzag varint size.
  std::map<int64_t, uint64_t> dt_hist, dv_hist;
  uint64_t varint_bytes = 0;
  for (size_t i = 1; i < n; ++i) {
    const int64_t dt = year[i].time_ms - year[i - 1].time_ms;
    const int64_t dv = std::llround(year[i].value * 100) - std::llround(year[i - 1].value * 100);
    ++dt_hist[dt];
    ++dv_hist[dv];
    const int64_t ddt = i > 1 ? dt - (year[i - 1].time_ms - year[i - 2].time_ms) : dt;
    varint_bytes += static_cast<uint64_t>(VarintBytes(ddt) + VarintBytes(dv));
  }
  const double h_t = Entropy(dt_hist, n - 1), h_v = Entropy(dv_hist, n - 1);
  const double entropy_bps = (h_t + h_v) / 8;

  double seg_sum = 0, sql_sum = 0;
  const double seg_s = TimeSegmentRead(dir + "/raw", meta.from_ms, meta.to_ms, 5, &seg_sum);
  const double sql_s = TimeSqliteRead(dir + "/hot.db", meta.from_ms, meta.to_ms, 3, &sql_sum);

  const double dn = static_cast<double>(n);
  std::printf(
      "segment_bench: one sensor, %llu readings (a year at 10 s, 2 decimals, +-%lld ms "
      "jitter, noise sigma %.2f)\n\n",
      static_cast<unsigned long long>(n), static_cast<long long>(opt.jitter_ms), opt.noise_sigma);
  std::printf("%-44s %12s %14s\n", "storage", "bytes", "bytes/reading");
  auto row = [&](const char* what, double bytes) {
    std::printf("%-44s %12.0f %14.3f\n", what, bytes, bytes / dn);
  };
  row("segment: raw (both files)", static_cast<double>(raw_bytes));
  row("segment: raw + rollups 5m/1h/1d", static_cast<double>(full_bytes));
  row("segment: rollups only (raw dropped)", static_cast<double>(rollup_bytes));
  row("segment: raw, the same without time jitter", static_cast<double>(steady_bytes));
  row("baseline: SQLite hot-store changes table", static_cast<double>(sqlite_bytes));
  row("baseline: zigzag varints of the deltas", static_cast<double>(varint_bytes));
  row("baseline: order-0 entropy of the deltas", entropy_bps * dn);
  std::printf("\n  time deltas %.2f bits, value deltas %.2f bits (order-0, per reading)\n", h_t,
              h_v);
  std::printf("  raw: blocks %.3f B/reading, index + header + key metadata %.3f B/reading\n",
              static_cast<double>(raw_block_bytes) / dn,
              static_cast<double>(raw_bytes - raw_block_bytes) / dn);
  std::printf("  rollups: %zu records, %.2f bytes each\n", rollup_records,
              static_cast<double>(rollup_bytes) / static_cast<double>(rollup_records));
  std::printf("  raw / entropy %.3f, raw / SQLite %.4f (SQLite is %.1fx larger)\n",
              static_cast<double>(raw_bytes) / (entropy_bps * dn),
              static_cast<double>(raw_bytes) / static_cast<double>(sqlite_bytes),
              static_cast<double>(sqlite_bytes) / static_cast<double>(raw_bytes));
  std::printf("\n%-44s %12s %14s\n", "read the whole year", "ms", "M readings/s");
  std::printf("%-44s %12.1f %14.1f\n", "segment Scan (decode + checksum)", seg_s * 1e3,
              dn / seg_s / 1e6);
  std::printf("%-44s %12.1f %14.1f\n", "baseline: SQLite SELECT (mmap, cached)", sql_s * 1e3,
              dn / sql_s / 1e6);
  std::printf("  segment / SQLite speed %.2f; write (encode + fsync) %.0f ms; checksums %s\n",
              sql_s / seg_s, write_s * 1e3, seg_sum == sql_sum ? "agree" : "DIFFER");

  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return seg_sum == sql_sum ? 0 : 1;
}

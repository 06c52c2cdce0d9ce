// The footprint figures of issue 9 (docs/benchmarks.md, "Footprint"): the
// real komoku binary with 10,000 keys and a year of cold history, beside the
// same binary on an empty data directory in the same run.
//
// - start-up to ready: --starts (5) starts on the year's data and on an empty
//   data directory, each timed from the spawn to the --ready-file and to
//   GET /readyz answering 200; median and max. Then one start on the year's
//   data after `sync; echo 3 > /proc/sys/vm/drop_caches` (a cold page cache,
//   as after a Pi's boot), "not measured" when this process may not do that.
// - resident memory: VmRSS, RssAnon, RssFile and VmHWM of the komoku process
//   (/proc/PID/status) at ready, once the background segment check that
//   follows every start is done (the process idle for 2 s), after --rate
//   (1,000) changes/s over MQTT for --ingest-seconds (30) round robin over
//   every key, and after queries that read cold history (the key listing
//   with values, a year of hourly averages and a raw day for 5 keys). The
//   empty-directory process gets the same ingest (which creates its 10,000
//   keys) and the same queries. Then where the year process's resident pages
//   are, by mapping (/proc/PID/smaps).
// - disk writes: the year process takes --write-rate (10) changes/s round
//   robin over the keys for --seconds (240); write_bytes of /proc/PID/io
//   (bytes this process sent towards the block layer: the SD card's share)
//   from before the window to one checkpoint after it, scaled to an hour;
//   beside the bytes of the changes themselves (MQTT topic + payload, and
//   16 bytes a change for a time and a value) and komoku's own per-key
//   estimate (GET /api/v1/top); memory after the window, and 11 s later
//   (komoku trims freed heap every 10 s). store.checkpoint_interval is set to its
//   default, 10 s, so the window holds about 25 checkpoints. Compaction's
//   share is estimated from the year's build (segment bytes per key-day and
//   per raw change, and the bytes compaction wrote per byte it kept).
//
// The data, built once and cached as footprint-v2-k<keys>/ in
// $KOMOKU_BENCH_DIR, else the build directory (the segments and a small
// hot store; the build needs about 4 GB more for a while): --keys (10,000) keys, 20 per device
// (home/device-NNNN/<quantity>): 14 numeric, 4 boolean, 1 counter (energy) and 1 string (mode:
// heat, cool, auto, eco). Each key changes once an hour at a minute of its own (±1 min), every
// change a new value, for the 365 days before kEndMs (2026-12-01 00:00 UTC): 87.6 M changes, cold;
// and the 48 hours after it (480,000 changes), hot, as the default 48-hour hot window holds. The
// build writes the year straight into the hot store's schema (HotDbBuilder, key by key), starts
// komoku on it with store.hot_window_hours set so that the cut falls on kEndMs whatever the date
// (no carried-value days after the year), store.raw_retention_days: 0 (the year keeps its raw
// changes) and store.compact_interval: 0, POSTs /api/v1/compact (day segments, then month merges),
// checks that /api/v1/segments holds every change, and kills komoku: the year's SQLite file would
// keep its 4 GB of freed pages, so it is replaced by a new hot store holding the keys and the 48
// hours, numbered on from the compaction's cold_seq, as komoku would have left them.
//
// Each run copies the cache into a scratch directory (segment files
// hard-linked: they are immutable); komoku runs with the
// defaults but store.compact_interval: 0 (a compaction in the middle of a
// measurement would move the 48 hours into segments) and log.level: warn.
// Never fails for being slow; exits 1 only when something does not work.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hot_schema.h"
#include "real_service.h"
#include "sensor_gen.h"

namespace {

using namespace komoku::bench;  // NOLINT(google-build-using-namespace): a program's own helpers
using std::chrono::milliseconds;
namespace fs = std::filesystem;

constexpr int64_t kHourMs = 3600 * 1000LL;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr int64_t kDays = 365;
constexpr int64_t kEndMs = 1796083200000;              // 2026-12-01T00:00:00Z: cold_to
constexpr int64_t kStartMs = kEndMs - kDays * kDayMs;  // 2025-12-01T00:00:00Z
constexpr int64_t kYearHours = kDays * 24;
constexpr int64_t kHotHours = 48;
constexpr const char* kCacheVersion = "v2";
constexpr int kCheckpointSeconds = 10;  // store.checkpoint_interval, its default
constexpr int kQueryKeys = 5;

struct Options {
  int keys = 10000;
  int starts = 5;
  int rate = 1000;
  int ingest_seconds = 30;
  int seconds = 240;
  int write_rate = 10;
};

// --- the keys and their history ---------------------------------------------

enum class Kind { kNumeric, kBoolean, kCounter, kString };

struct Quantity {
  const char* name;
  Kind kind;
  double base, amplitude;  // numeric: the daily cycle
};

// One device's keys: 14 numeric, 4 boolean, 1 counter, 1 string.
constexpr Quantity kQuantities[] = {
    {"temperature", Kind::kNumeric, 20, 3},    {"humidity", Kind::kNumeric, 50, 10},
    {"pressure", Kind::kNumeric, 1013, 8},     {"power", Kind::kNumeric, 120, 100},
    {"voltage", Kind::kNumeric, 230, 3},       {"current", Kind::kNumeric, 0.6, 0.5},
    {"illuminance", Kind::kNumeric, 300, 290}, {"battery", Kind::kNumeric, 80, 15},
    {"linkquality", Kind::kNumeric, 120, 40},  {"co2", Kind::kNumeric, 700, 300},
    {"pm25", Kind::kNumeric, 12, 8},           {"noise", Kind::kNumeric, 40, 10},
    {"setpoint", Kind::kNumeric, 20.5, 1.5},   {"valve", Kind::kNumeric, 40, 35},
    {"contact", Kind::kBoolean, 0, 0},         {"occupancy", Kind::kBoolean, 0, 0},
    {"state", Kind::kBoolean, 0, 0},           {"water_leak", Kind::kBoolean, 0, 0},
    {"energy", Kind::kCounter, 0, 0},          {"mode", Kind::kString, 0, 0},
};
constexpr int kPerDevice = sizeof(kQuantities) / sizeof(kQuantities[0]);
constexpr const char* kModes[] = {"heat", "cool", "auto", "eco"};

const char* TypeName(Kind k) {
  switch (k) {
    case Kind::kNumeric:
      return "numeric";
    case Kind::kBoolean:
      return "boolean";
    case Kind::kCounter:
      return "counter";
    case Kind::kString:
      return "string";
  }
  return "numeric";
}

struct KeySpec {
  std::string name;
  const Quantity* q;
};

std::vector<KeySpec> MakeKeys(int count) {
  std::vector<KeySpec> keys;
  for (int i = 0; i < count; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "home/device-%04d/%s", i / kPerDevice,
                  kQuantities[i % kPerDevice].name);
    keys.push_back({name, &kQuantities[i % kPerDevice]});
  }
  return keys;
}

// One key's changes, one an hour from kStartMs: at a minute of the key's own
// (1 to 59) ± up to a minute, so every change stays inside its hour. Each
// change is a new value: numbers on a daily cycle with noise (2 decimals),
// booleans alternating, a counter rising by up to 0.5 (3 decimals), a mode
// other than the last. Deterministic: SplitMix64 seeded by the key's index.
class KeyHistory {
 public:
  struct Change {
    int64_t time_ms;
    double number;  // numeric, counter
    int choice;     // boolean (0/1), string (index into kModes)
  };

  KeyHistory(int index, const Quantity& q)
      : q_(q), rng_(0x5EED0000ULL + static_cast<uint64_t>(index)) {
    offset_ms_ = rng_.Between(60'000, 3'540'000);
    phase_ = rng_.Uniform() * 6.283185307179586;
    number_ = 1000 + static_cast<double>(index % 500);
    choice_ = index % 2;
  }

  Change Next() {
    const int64_t t = kStartMs + hour_++ * kHourMs + offset_ms_ + rng_.Between(-60'000, 60'000);
    switch (q_.kind) {
      case Kind::kNumeric: {
        const double day = static_cast<double>(t % kDayMs) / kDayMs;
        const double v = q_.base + q_.amplitude * std::sin(6.283185307179586 * day + phase_) +
                         0.05 * q_.amplitude * rng_.Normal();
        number_ = std::round(v * 100) / 100;
        break;
      }
      case Kind::kCounter:
        number_ = std::round((number_ + 0.001 + 0.5 * rng_.Uniform()) * 1000) / 1000;
        break;
      case Kind::kBoolean:
        choice_ = 1 - choice_;
        break;
      case Kind::kString:
        choice_ = static_cast<int>((choice_ + rng_.Between(1, 3)) % 4);
        break;
    }
    return {t, number_, choice_};
  }

 private:
  const Quantity& q_;
  SplitMix64 rng_;
  int64_t hour_ = 0;
  int64_t offset_ms_ = 0;
  double phase_ = 0;
  double number_ = 0;
  int choice_ = 0;
};

void AddChange(HotDbBuilder& db, int64_t id, Kind kind, const KeyHistory::Change& c) {
  switch (kind) {
    case Kind::kNumeric:
    case Kind::kCounter:
      db.AddChange(id, c.time_ms, c.number);
      break;
    case Kind::kBoolean:
      db.AddChange(id, c.time_ms, c.choice != 0);
      break;
    case Kind::kString:
      db.AddChange(id, c.time_ms, std::string(kModes[c.choice]));
      break;
  }
}

// What ingest publishes to a key in round `round`: a value other than the
// round before.
std::string IngestPayload(Kind kind, int64_t round) {
  char buf[32];
  switch (kind) {
    case Kind::kNumeric:
      std::snprintf(buf, sizeof buf, "%.2f", 20.01 + static_cast<double>(round % 50) / 10);
      return buf;
    case Kind::kCounter:
      std::snprintf(buf, sizeof buf, "%.3f", 100000.125 + static_cast<double>(round) / 4);
      return buf;
    case Kind::kBoolean:
      return round % 2 ? "true" : "false";
    case Kind::kString:
      return kModes[round % 4];
  }
  return "0";
}

// --- the cached data ----------------------------------------------------------

// What the build measured, kept beside the data (build.json) so that every
// run can print it.
struct BuildFigures {
  int64_t keys = 0, changes = 0, hot_changes = 0;
  int64_t segments = 0, segment_bytes = 0, raw_bytes = 0, rollup_bytes = 0;
  int64_t compaction_bytes_written = 0;
  double sqlite_bytes = 0;
  std::vector<std::pair<std::string, double>> steps;  // step, seconds
  std::string built;                                  // UTC date of the build
};

nlohmann::json ToJson(const BuildFigures& b) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& [what, s] : b.steps) steps.push_back({what, s});
  return {{"keys", b.keys},
          {"changes", b.changes},
          {"hot_changes", b.hot_changes},
          {"segments", b.segments},
          {"segment_bytes", b.segment_bytes},
          {"raw_bytes", b.raw_bytes},
          {"rollup_bytes", b.rollup_bytes},
          {"compaction_bytes_written", b.compaction_bytes_written},
          {"sqlite_bytes", b.sqlite_bytes},
          {"steps", steps},
          {"built", b.built}};
}

BuildFigures FromJson(const nlohmann::json& j) {
  BuildFigures b;
  b.keys = j.at("keys").get<int64_t>();
  b.changes = j.at("changes").get<int64_t>();
  b.hot_changes = j.at("hot_changes").get<int64_t>();
  b.segments = j.at("segments").get<int64_t>();
  b.segment_bytes = j.at("segment_bytes").get<int64_t>();
  b.raw_bytes = j.at("raw_bytes").get<int64_t>();
  b.rollup_bytes = j.at("rollup_bytes").get<int64_t>();
  b.compaction_bytes_written = j.at("compaction_bytes_written").get<int64_t>();
  b.sqlite_bytes = j.at("sqlite_bytes").get<double>();
  for (const auto& s : j.at("steps"))
    b.steps.emplace_back(s[0].get<std::string>(), s[1].get<double>());
  b.built = j.at("built").get<std::string>();
  return b;
}

std::string Today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::string KomokuConfig(const std::string& broker_url, const std::string& client_id,
                         const std::string& data_dir, const std::string& extra_store = "") {
  return "mqtt:\n  broker: " + broker_url + "\n  client_id: " + client_id +
         "\nstore:\n  data_dir: " + data_dir +
         "\n  compact_interval: 0\n  raw_retention_days: 0\n  checkpoint_interval: " +
         std::to_string(kCheckpointSeconds) + "\n" + extra_store +
         "http:\n  listen: 127.0.0.1:0\nlog:\n  level: warn\n";
}

// The hot window that puts the compaction's cut (now - window, rounded down
// to a UTC day) on kEndMs today.
int HotWindowHoursForCut() {
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const int64_t hours = (now_ms - kEndMs) / kHourMs;
  if (hours < 1) Fail("the clock is before the data's end (2026-12-01); move kEndMs");
  if (hours > 8760) {
    std::printf(
        "note: more than a year since kEndMs: the cut falls %lld days after it, so "
        "compaction also writes days that only carry each key's last value\n",
        static_cast<long long>((hours - 8760) / 24));
    return 8760;
  }
  return static_cast<int>(hours);
}

double Step(BuildFigures& b, const char* what, Clock::time_point t0) {
  const double s = SecondsSince(t0);
  b.steps.emplace_back(what, s);
  std::printf("  %-52s %8.1f s\n", what, s);
  return s;
}

// Builds the cache directory `cache` (data/ and build.json) under a
// temporary name beside it, renamed into place when complete.
BuildFigures BuildCache(const std::string& base, const std::string& cache,
                        const std::vector<KeySpec>& keys) {
  BuildFigures b;
  b.keys = static_cast<int64_t>(keys.size());
  b.built = Today();
  std::printf("building %s (once; cached for later runs):\n", cache.c_str());
  ScratchDir build(base, "footprint-build");
  const std::string data = build.File("cache/data");
  fs::create_directories(data);
  const std::string db_path = data + "/komoku.db";

  // 1. The year, key by key, straight into the hot store's schema; the 48
  //    hours after it are kept for the hot store written in step 4.
  struct HotRow {
    int64_t id;
    Kind kind;
    KeyHistory::Change change;
  };
  std::vector<HotRow> hot;
  hot.reserve(keys.size() * kHotHours);
  auto t0 = Clock::now();
  {
    HotDbBuilder db(db_path);
    for (size_t i = 0; i < keys.size(); ++i) {
      const int64_t id = static_cast<int64_t>(i) + 1;
      const Kind kind = keys[i].q->kind;
      db.AddKey(id, keys[i].name, TypeName(kind), kStartMs);
      KeyHistory h(static_cast<int>(i), *keys[i].q);
      for (int64_t n = 0; n < kYearHours; ++n) AddChange(db, id, kind, h.Next());
      for (int64_t n = 0; n < kHotHours; ++n) hot.push_back({id, kind, h.Next()});
    }
    b.changes = db.changes();
    db.Finish();
  }
  b.sqlite_bytes = static_cast<double>(fs::file_size(db_path));
  std::printf("  year written into SQLite: %lld changes, %.2f GB\n",
              static_cast<long long>(b.changes), b.sqlite_bytes / 1e9);
  Step(b, "1. write the year into a hot-store database", t0);

  // 2. komoku on it; the cut on kEndMs.
  t0 = Clock::now();
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(build, &broker_port);
  const std::string broker_url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  Komoku komoku = StartKomoku(
      build, KomokuConfig(broker_url, "komoku-footprint-build", data,
                          "  hot_window_hours: " + std::to_string(HotWindowHoursForCut()) + "\n"));
  Step(b, "2. start komoku on it (to /readyz)", t0);

  // 3. Everything before the cut into segments.
  const CompactAnswer c = Compact(komoku.port, std::chrono::hours(12));
  std::printf(
      "  POST /api/v1/compact: %lld changes, %lld segments written, %lld removed, "
      "%.1f MB written\n",
      static_cast<long long>(c.changes), static_cast<long long>(c.segments_written),
      static_cast<long long>(c.segments_removed), static_cast<double>(c.bytes_written) / 1e6);
  b.steps.emplace_back("3. compact the year (POST /api/v1/compact)", c.seconds);
  std::printf("  %-52s %8.1f s\n", "3. compact the year (POST /api/v1/compact)", c.seconds);
  b.compaction_bytes_written = c.bytes_written;

  t0 = Clock::now();
  const SegmentTotals seg = Segments(komoku.port, /*per_key=*/true);
  if (seg.count == 0 || seg.changes != b.changes) {
    komoku.FailWithLog("segments: " + std::to_string(seg.count) + " segments holding " +
                       std::to_string(seg.changes) + " changes, expected all " +
                       std::to_string(b.changes));
  }
  b.segments = seg.count;
  b.segment_bytes = seg.bytes;
  b.raw_bytes = seg.raw_bytes;
  b.rollup_bytes = seg.rollup_bytes;
  std::printf(
      "  GET /api/v1/segments: %lld segments, %.1f MB (raw blocks %.1f MB, rollup "
      "blocks %.1f MB), holding all %lld changes\n",
      static_cast<long long>(seg.count), static_cast<double>(seg.bytes) / 1e6,
      static_cast<double>(seg.raw_bytes) / 1e6, static_cast<double>(seg.rollup_bytes) / 1e6,
      static_cast<long long>(seg.changes));
  Step(b, "   check the segments (GET /api/v1/segments?keys=true)", t0);

  // 4. The year's SQLite file goes: after the writer deleted the compacted
  //    rows it would keep their 4 GB as free pages, and the deletion
  //    itself (queued, one statement) would take minutes. The manifest is
  //    committed, so killing komoku here is a crash its design survives. The
  //    new hot store numbers its changes on from the year's (cold_seq).
  t0 = Clock::now();
  kill(komoku.process->pid(), SIGKILL);
  komoku.process->Stop();
  broker->Stop();
  for (const char* f : {"komoku.db", "komoku.db-wal", "komoku.db-shm", "LOCK"}) {
    fs::remove(data + "/" + f);
  }
  {
    HotDbBuilder db(db_path, b.changes + 1);
    for (size_t i = 0; i < keys.size(); ++i) {
      db.AddKey(static_cast<int64_t>(i) + 1, keys[i].name, TypeName(keys[i].q->kind), kStartMs);
    }
    for (const HotRow& r : hot) AddChange(db, r.id, r.kind, r.change);
    b.hot_changes = db.changes();
    db.Finish();
  }
  Step(b, "4. stop komoku, write the hot store (48 hours)", t0);
  std::ofstream(build.File("cache/build.json")) << ToJson(b).dump(1) << "\n";
  fs::rename(build.File("cache"), cache);
  return b;
}

// Copies the cached data directory; segment files are immutable (komoku
// writes new ones and renames), so they are hard-linked rather than copied.
void CopyData(const std::string& from, const std::string& to) {
  fs::create_directories(to);  // the first entry may be a file (an ingest log)
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(from)) {
    const fs::path target = fs::path(to) / fs::relative(e.path(), from);
    if (e.is_directory()) {
      fs::create_directories(target);
    } else if (e.path().extension() == ".kkd" || e.path().extension() == ".kki") {
      fs::create_hard_link(e.path(), target);
    } else {
      fs::copy_file(e.path(), target);
    }
  }
}

// A hot store cached by an older build of this benchmark has SQLite's
// default 4 KB pages; komoku creates its own with kHotPageSize, so the copy
// is rewritten with those (VACUUM) before it is measured.
void ConvertPageSize(const std::string& db_path) {
  Sqlite db(db_path);
  int64_t size = 0;
  {
    Statement q(db, "PRAGMA page_size");
    if (sqlite3_step(q.get()) == SQLITE_ROW) size = sqlite3_column_int64(q.get(), 0);
  }
  if (size == kHotPageSize) return;
  const auto t0 = Clock::now();
  db.Exec("PRAGMA journal_mode=DELETE");
  db.Exec(("PRAGMA page_size=" + std::to_string(kHotPageSize)).c_str());
  db.Exec("VACUUM");
  std::printf(
      "the cached hot store had %lld-byte pages: rewritten with %d (as komoku creates it) "
      "in %.1f s\n",
      static_cast<long long>(size), kHotPageSize, SecondsSince(t0));
}

BuildFigures EnsureCache(const std::string& cache, const std::vector<KeySpec>& keys) {
  if (!fs::exists(cache)) return BuildCache(BenchBase(), cache, keys);
  std::ifstream in(cache + "/build.json");
  const BuildFigures b = FromJson(nlohmann::json::parse(in));
  std::printf("data: %s (cached, built %s):\n", cache.c_str(), b.built.c_str());
  for (const auto& [what, s] : b.steps) std::printf("  %-52s %8.1f s\n", what.c_str(), s);
  return b;
}

// --- measuring ----------------------------------------------------------------

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct StartTimes {
  std::vector<double> ready_file, readyz, stop;
};

// Each start is stopped at once by SIGTERM, which is also timed: a stop
// waits for the background segment check that every start begins.
StartTimes TimeStarts(const ScratchDir& dir, const std::string& config, int n) {
  StartTimes t;
  for (int i = 0; i < n; ++i) {
    Komoku k = StartKomoku(dir, config, milliseconds(5));
    t.ready_file.push_back(k.ready_file_seconds);
    t.readyz.push_back(k.readyz_seconds);
    const auto t0 = Clock::now();
    kill(k.process->pid(), SIGTERM);
    const int status = k.process->Wait(milliseconds(600000));
    t.stop.push_back(SecondsSince(t0));
    if (status != 0)
      k.FailWithLog("komoku did not stop cleanly (status " + std::to_string(status) + ")");
  }
  return t;
}

// sync, then drop the page cache, dentries and inodes; false when not
// permitted (a container without write access to /proc/sys).
bool DropPageCache() {
  sync();
  const int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (fd < 0) return false;
  const bool ok = write(fd, "3\n", 2) == 2;
  close(fd);
  return ok;
}

double Mb(int64_t bytes) { return static_cast<double>(bytes) / 1e6; }

struct MemorySample {
  std::string when;
  std::map<std::string, int64_t> status;  // /proc/PID/status, and "SQLite"
};

// The process's memory now, with the heap SQLite holds
// (komoku_sqlite_memory_bytes), which is part of RssAnon.
MemorySample TakeSample(const char* when, const Komoku& k) {
  MemorySample s{when, ProcStatus(k.process->pid())};
  s.status["SQLite"] = Metric(k.port, "komoku_sqlite_memory_bytes");
  return s;
}

void PrintMemoryHeader() {
  std::printf("%-6s %-32s %8s %8s %8s %8s %8s\n", "data", "when", "VmRSS", "RssAnon", "RssFile",
              "VmHWM", "SQLite");
}

void PrintMemoryRow(const char* data, const MemorySample& s) {
  auto f = [&](const char* k) {
    auto it = s.status.find(k);
    return it == s.status.end() ? 0.0 : Mb(it->second);
  };
  std::printf("%-6s %-32s %8.1f %8.1f %8.1f %8.1f %8.1f\n", data, s.when.c_str(), f("VmRSS"),
              f("RssAnon"), f("RssFile"), f("VmHWM"), f("SQLite"));
}

// The resident bytes of `pid` by what is mapped (/proc/PID/smaps).
std::map<std::string, int64_t> RssByMapping(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::map<std::string, int64_t> out;
  std::string line, group = "other";
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("Rss:", 0) == 0) {
      out[group] += std::stoll(line.substr(4)) * 1024;
      continue;
    }
    // A mapping's first line: address range, perms, offset, device, inode, path.
    const size_t dash = line.find('-');
    if (dash == std::string::npos || dash == 0 ||
        line.find_first_not_of("0123456789abcdef") != dash) {
      continue;
    }
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode, path;
    fields >> range >> perms >> offset >> dev >> inode;
    std::getline(fields, path);
    path.erase(0, path.find_first_not_of(' '));
    auto ends = [&](const char* s) {
      const std::string suffix = s;
      return path.size() >= suffix.size() &&
             path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends(".kkd") || ends(".kki")) {
      group = "segment files (.kkd, .kki)";
    } else if (path.find("komoku.db") != std::string::npos) {
      group = "hot store (komoku.db-shm)";
    } else if (path.find("/komoku") != std::string::npos && ends("komoku")) {
      group = "komoku binary";
    } else if (path.find(".so") != std::string::npos) {
      group = "shared libraries";
    } else if (path.empty() || path == "[heap]" || path.rfind("[anon", 0) == 0 ||
               path == "[stack]") {
      group = "heap, stacks, anonymous";
    } else {
      group = "other";
    }
  }
  return out;
}

// User and system CPU time of `pid` (/proc/PID/stat), in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  // Fields after the command name (which may hold spaces) in parentheses;
  // utime and stime are the 14th and 15th fields of the line.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// GET target: 200 and JSON, or Fail. The seconds it took in *seconds.
nlohmann::json GetJson(int port, const std::string& target, double* seconds) {
  auto cli = NewClient(port);
  const auto t0 = Clock::now();
  auto res = cli->Get(target);
  *seconds = SecondsSince(t0);
  if (!res) Fail(target + ": no answer: " + httplib::to_string(res.error()));
  if (res->status != 200) Fail(target + ": HTTP " + std::to_string(res->status) + ": " + res->body);
  return nlohmann::json::parse(res->body);
}

std::string Seconds(int64_t ms) { return std::to_string(ms / 1000); }

// The key listing with values, a year of hourly averages and the year's last
// day raw for kQueryKeys numeric keys spread over the list; with the year's
// data, the row counts are checked.
void RunQueries(int port, const std::vector<KeySpec>& keys, bool year) {
  double s = 0;
  const nlohmann::json listing = GetJson(port, "/api/v1/keys?values=true", &s);
  const size_t listed = listing.at("keys").size();
  if (listed < keys.size()) {
    Fail("GET /api/v1/keys lists " + std::to_string(listed) + " keys, expected " +
         std::to_string(keys.size()));
  }
  std::printf("  GET /api/v1/keys?values=true: %zu keys in %.3f s\n", listed, s);
  double year_s = 0, day_s = 0;
  int asked = 0;
  for (size_t i = 0; i < keys.size() && asked < kQueryKeys; i += keys.size() / kQueryKeys + 1) {
    size_t k = i;
    while (k < keys.size() && keys[k].q->kind != Kind::kNumeric) ++k;
    if (k == keys.size()) break;
    ++asked;
    const std::string key = keys[k].name;
    const nlohmann::json y = GetJson(port,
                                     "/api/v1/history?key=" + key + "&from=" + Seconds(kStartMs) +
                                         "&to=" + Seconds(kEndMs) + "&step=1h&agg=avg",
                                     &s);
    year_s += s;
    const nlohmann::json d =
        GetJson(port,
                "/api/v1/history?key=" + key + "&from=" + Seconds(kEndMs - kDayMs) +
                    "&to=" + Seconds(kEndMs),
                &s);
    day_s += s;
    if (year &&
        (y.at("rows").size() != static_cast<size_t>(kYearHours) || d.at("rows").size() != 24)) {
      Fail(key + ": the year answered " + std::to_string(y.at("rows").size()) +
           " hourly rows and the last day " + std::to_string(d.at("rows").size()) +
           " raw rows, expected 8760 and 24");
    }
  }
  std::printf("  %d keys: a year of hourly averages %.3f s, the last day raw %.3f s (all keys)\n",
              asked, year_s, day_s);
}

struct Ingested {
  int64_t published = 0, bytes = 0;
  double seconds = 0;
};

// Publishes `rate` changes/s round robin over `keys` (their payloads by
// kind) for `seconds`, from publication `first`; waits until komoku accepted
// every one.
Ingested RunIngest(const Komoku& k, const std::string& broker_url, const std::vector<KeySpec>& keys,
                   int rate, int seconds, int64_t first, const char* client_id) {
  std::vector<std::string> names;
  for (const KeySpec& key : keys) names.push_back(key.name);
  const int64_t accepted0 = Metric(k.port, "komoku_changes_accepted_total");
  Ingested r;
  const auto t0 = Clock::now();
  {
    IngestOptions o;
    o.first = first;
    o.payload = [&keys](size_t key, int64_t round) {
      return IngestPayload(keys[key].q->kind, round);
    };
    Ingest ingest(broker_url, client_id, rate, names, o);
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    ingest.Stop();
    r.seconds = SecondsSince(t0);
    r.published = ingest.published();
    r.bytes = ingest.bytes();
    if (ingest.failed() > 0) Fail(std::to_string(ingest.failed()) + " publications failed");
  }
  if (!WaitFor(
          [&] {
            return Metric(k.port, "komoku_changes_accepted_total") - accepted0 >= r.published;
          },
          milliseconds(60000), milliseconds(100))) {
    k.FailWithLog("komoku accepted " +
                  std::to_string(Metric(k.port, "komoku_changes_accepted_total") - accepted0) +
                  " of " + std::to_string(r.published) + " published changes");
  }
  return r;
}

// A komoku process through the memory phases; kept running for the next.
struct MemoryRun {
  Komoku komoku;
  std::vector<MemorySample> samples;
  int64_t published = 0;
};

MemoryRun RunMemory(const char* label, const ScratchDir& dir, const std::string& config,
                    const std::string& broker_url, const std::vector<KeySpec>& ingest_keys,
                    const std::vector<KeySpec>& keys, const Options& opt, bool year) {
  MemoryRun m;
  m.komoku = StartKomoku(dir, config);
  const pid_t pid = m.komoku.process->pid();
  std::printf("%s: komoku ready in %.2f s (pid %d)\n", label, m.komoku.readyz_seconds, pid);
  m.samples.push_back(TakeSample("at ready", m.komoku));

  // Every start checks each segment's checksums in the background, which
  // maps every page of them; done when the process is idle (under 2% of a
  // core over 2 s), as nothing else runs before the ingest.
  const auto t0 = Clock::now();
  double cpu = CpuSeconds(pid);
  auto since = Clock::now();
  WaitFor(
      [&] {
        if (SecondsSince(since) < 2.0) return false;
        const double now = CpuSeconds(pid);
        const bool idle = now - cpu < 0.04;
        cpu = now;
        since = Clock::now();
        return idle;
      },
      milliseconds(600000), milliseconds(100));
  std::printf("  idle %.1f s after ready (the background segment check)\n", SecondsSince(t0) - 2.0);
  m.samples.push_back(TakeSample("segment check done", m.komoku));

  const Ingested in = RunIngest(m.komoku, broker_url, ingest_keys, opt.rate, opt.ingest_seconds, 0,
                                "footprint-ingest");
  m.published = in.published;
  std::printf("  ingest: %lld changes in %.1f s (%.0f/s) over %zu keys, all accepted%s\n",
              static_cast<long long>(in.published), in.seconds,
              static_cast<double>(in.published) / in.seconds, ingest_keys.size(),
              in.published >= static_cast<int64_t>(ingest_keys.size())
                  ? ", every key changed"
                  : " (NOT every key changed: raise --rate or --ingest-seconds)");
  m.samples.push_back(TakeSample("after ingest", m.komoku));
  RunQueries(m.komoku.port, keys, year);
  m.samples.push_back(TakeSample("after ingest and queries", m.komoku));
  return m;
}

void PrintRssByMapping(const char* label, pid_t pid) {
  std::printf("%s: resident by mapping (/proc/%d/smaps), %d threads:\n", label, pid,
              static_cast<int>(ProcField(pid, "status", "Threads")));
  for (const auto& [group, bytes] : RssByMapping(pid)) {
    std::printf("  %-32s %8.1f MB\n", group.c_str(), Mb(bytes));
  }
}

int64_t HotBytesWritten(int port) {
  double s = 0;
  const nlohmann::json top = GetJson(port, "/api/v1/top?by=writes&limit=100000", &s);
  int64_t sum = 0;
  for (const auto& k : top.at("keys")) sum += k.value("hot_bytes_written", int64_t{0});
  return sum;
}

// What komoku wrote while changes came in at a fixed rate.
struct WriteWindow {
  Ingested ingest;
  int64_t written = 0, cancelled = 0, checkpoints = 0, commits = 0, estimate = 0;
  int64_t wchar = 0;    // bytes komoku passed to write calls (files and sockets)
  int64_t device = -1;  // bytes written to the data directory's block device, -1: unknown
};

// Bytes written so far to the block device holding `path`
// (/sys/dev/block/MAJ:MIN/stat, sectors of 512 bytes): the whole machine's
// writes there, the filesystem's journal included. -1 when unreadable.
int64_t DeviceWrittenBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  std::ifstream in("/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                   std::to_string(minor(st.st_dev)) + "/stat");
  int64_t field = 0, sectors = -1;
  for (int i = 0; i < 7 && (in >> field); ++i) sectors = field;
  return in ? sectors * 512 : -1;
}

// After a quiet spell of two checkpoints, `opt.write_rate` changes/s for
// `opt.seconds`; /proc/PID/io and the store's counters from before the
// window to the checkpoint after it.
WriteWindow MeasureWrites(const Komoku& k, const std::string& broker_url,
                          const std::vector<KeySpec>& keys, const Options& opt, int64_t first,
                          const std::string& data_dir) {
  std::this_thread::sleep_for(std::chrono::seconds(2 * kCheckpointSeconds + 1));
  const pid_t pid = k.process->pid();
  WriteWindow w;
  const int64_t device0 = DeviceWrittenBytes(data_dir);
  const int64_t wchar0 = ProcIo(pid, "wchar");
  const int64_t written0 = ProcIo(pid, "write_bytes");
  const int64_t cancelled0 = ProcIo(pid, "cancelled_write_bytes");
  const int64_t checkpoints0 = Metric(k.port, "komoku_checkpoints_total");
  const int64_t commits0 = Metric(k.port, "komoku_commit_batches_total");
  const int64_t estimate0 = HotBytesWritten(k.port);
  w.ingest = RunIngest(k, broker_url, keys, opt.write_rate, opt.seconds, first, "footprint-writes");
  // The checkpoint that copies the window's last commits into komoku.db.
  std::this_thread::sleep_for(std::chrono::seconds(kCheckpointSeconds + 1));
  w.written = ProcIo(pid, "write_bytes") - written0;
  w.wchar = ProcIo(pid, "wchar") - wchar0;
  const int64_t device1 = DeviceWrittenBytes(data_dir);
  if (device0 >= 0 && device1 >= 0) w.device = device1 - device0;
  w.cancelled = ProcIo(pid, "cancelled_write_bytes") - cancelled0;
  w.checkpoints = Metric(k.port, "komoku_checkpoints_total") - checkpoints0;
  w.commits = Metric(k.port, "komoku_commit_batches_total") - commits0;
  w.estimate = HotBytesWritten(k.port) - estimate0;
  return w;
}

void PrintWrites(const WriteWindow& w, int rate) {
  const double per_hour = 3600.0 / w.ingest.seconds;
  const double changes = static_cast<double>(w.ingest.published);
  std::printf(
      "\ndisk writes at %d changes/s (/proc/PID/io write_bytes of komoku over %.0f s: "
      "%lld changes, %lld commits, %lld checkpoints):\n",
      rate, w.ingest.seconds, static_cast<long long>(w.ingest.published),
      static_cast<long long>(w.commits), static_cast<long long>(w.checkpoints));
  auto row = [&](const char* what, int64_t bytes) {
    std::printf("  %-48s %9.2f MB/h  %8.1f B/change\n", what, Mb(bytes) * per_hour,
                static_cast<double>(bytes) / changes);
  };
  row("written by komoku (write_bytes)", w.written);
  row("  of which cancelled before writeback", w.cancelled);
  // write_bytes counts whole page-cache folios as they turn dirty; on
  // kernels that cache files in large folios (ext4 since Linux 6.16) a 4 KB
  // page write into a folio read in by a copy counts the whole folio, so
  // it can be far above what reaches the device. These two bound the truth.
  row("passed to write calls by komoku (wchar)", w.wchar);
  if (w.device >= 0) {
    row("reached the data directory's device (all processes)", w.device);
  } else {
    std::printf("  reached the data directory's device: not measured (no /sys/dev/block)\n");
  }
  row("komoku's own estimate (GET /api/v1/top)", w.estimate);
  row("baseline: the changes, MQTT topic + payload", w.ingest.bytes);
  row("baseline: the changes, 16 B (time + value)", 16 * w.ingest.published);
  std::printf("  written / (topic + payload): %.0f; written / 16 B a change: %.0f\n",
              static_cast<double>(w.written) / std::max<int64_t>(w.ingest.bytes, 1),
              static_cast<double>(w.written) / std::max(16.0 * changes, 1.0));
}

// --- main ---------------------------------------------------------------------

Options ParseOptions(int argc, char** argv) {
  Options o;
  ParseIntFlags(argc, argv,
                {{"--keys", &o.keys},
                 {"--starts", &o.starts},
                 {"--rate", &o.rate},
                 {"--ingest-seconds", &o.ingest_seconds},
                 {"--seconds", &o.seconds},
                 {"--write-rate", &o.write_rate}});
  return o;
}

void PrintStarts(const char* what, const StartTimes& t) {
  auto max = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  std::printf("%-34s %7.3f %7.3f %9.3f %7.3f %8.2f %7.2f  (%zu starts)\n", what,
              Median(t.ready_file), max(t.ready_file), Median(t.readyz), max(t.readyz),
              Median(t.stop), max(t.stop), t.readyz.size());
}

void PrintStartHeader() {
  std::printf("%-34s %7s %7s %9s %7s %8s %7s\n", "data", "file", "max", "/readyz", "max", "SIGTERM",
              "max");
}

int Run(const Options& opt) {
  std::printf("footprint_bench: %s\n", MachineLine().c_str());
  const std::vector<KeySpec> keys = MakeKeys(opt.keys);
  const std::string base = BenchBase();
  fs::create_directories(base);
  const std::string cache = base + "/footprint-" + kCacheVersion + "-k" + std::to_string(opt.keys);
  const BuildFigures built = EnsureCache(cache, keys);

  ScratchDir dir(base, "komoku-footprint");
  auto t0 = Clock::now();
  const std::string year_data = dir.File("year");
  const std::string empty_data = dir.File("empty");
  CopyData(cache + "/data", year_data);
  ConvertPageSize(year_data + "/komoku.db");
  fs::create_directories(empty_data);
  std::printf("copied to a scratch data dir in %.1f s (segments hard-linked)\n", SecondsSince(t0));

  // Ingest goes round robin over the keys in an order unrelated to their
  // ids (a fixed shuffle), as devices report.
  std::vector<KeySpec> ingest_keys = keys;
  SplitMix64 shuffle(20261201);
  for (size_t i = ingest_keys.size(); i > 1; --i) {
    std::swap(ingest_keys[i - 1], ingest_keys[static_cast<size_t>(shuffle.Next() % i)]);
  }

  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  const std::string broker_url = "tcp://127.0.0.1:" + std::to_string(broker_port);
  const std::string year_config = KomokuConfig(broker_url, "komoku-footprint-year", year_data);
  const std::string empty_config = KomokuConfig(broker_url, "komoku-footprint-empty", empty_data);

  // 1. Start-up.
  std::printf("\nstart-up to ready, seconds from the spawn; then the stop, from SIGTERM:\n");
  PrintStartHeader();
  const StartTimes empty_starts = TimeStarts(dir, empty_config, opt.starts);
  PrintStarts("empty data dir (baseline)", empty_starts);
  const StartTimes year_starts = TimeStarts(dir, year_config, opt.starts);
  PrintStarts("a year of data (page cache warm)", year_starts);
  std::string cold_line = "not measured (cannot write /proc/sys/vm/drop_caches)";
  if (DropPageCache()) {
    const StartTimes cold = TimeStarts(dir, year_config, 1);
    char buf[128];
    std::snprintf(buf, sizeof buf, "%.3f s to the ready file, %.3f s to /readyz, stop %.2f s",
                  cold.ready_file[0], cold.readyz[0], cold.stop[0]);
    cold_line = buf;
  }
  std::printf("a year, page cache dropped first: %s\n", cold_line.c_str());

  // 2. Memory: the empty directory, then the year.
  std::printf("\n");
  MemoryRun empty = RunMemory("empty data dir", dir, empty_config, broker_url, ingest_keys, keys,
                              opt, /*year=*/false);
  PrintRssByMapping("empty data dir", empty.komoku.process->pid());
  empty.komoku.process->Stop();
  std::printf("\n");
  MemoryRun year = RunMemory("a year of data", dir, year_config, broker_url, ingest_keys, keys, opt,
                             /*year=*/true);
  const pid_t pid = year.komoku.process->pid();
  PrintRssByMapping("a year of data", pid);
  const SegmentTotals segs = Segments(year.komoku.port);
  if (segs.changes != built.changes) {
    year.komoku.FailWithLog("the copied segments hold " + std::to_string(segs.changes) +
                            " changes, expected " + std::to_string(built.changes));
  }

  // 3. Disk writes at --write-rate.
  std::printf("\ndisk writes: %d changes/s for %d s round robin over the keys ...\n",
              opt.write_rate, opt.seconds);
  const WriteWindow writes =
      MeasureWrites(year.komoku, broker_url, ingest_keys, opt, year.published, dir.path());
  const MemorySample after_writes = TakeSample("after the write window", year.komoku);
  // komoku gives freed heap back every 10 s (malloc_trim); the sample above
  // follows the window's own requests (/metrics, /api/v1/top) at once.
  std::this_thread::sleep_for(std::chrono::seconds(11));
  const MemorySample after_trim = TakeSample("11 s later (a trim later)", year.komoku);
  year.komoku.process->Stop();
  broker->Stop();

  // --- the summary -----------------------------------------------------------
  std::printf(
      "\n== footprint: %d keys, a year of cold history (%lld changes, %lld segments, "
      "%.1f MB) and %lld hot changes ==\n",
      opt.keys, static_cast<long long>(built.changes), static_cast<long long>(built.segments),
      Mb(built.segment_bytes), static_cast<long long>(built.hot_changes));
  std::printf("\nstart-up to ready (aim <= 1 s), seconds; then the stop, from SIGTERM:\n");
  PrintStartHeader();
  PrintStarts("empty data dir (baseline)", empty_starts);
  PrintStarts("a year of data (page cache warm)", year_starts);
  std::printf("a year, page cache dropped first: %s\n", cold_line.c_str());
  std::printf("median /readyz, year / empty: %.2f\n",
              Median(year_starts.readyz) / std::max(Median(empty_starts.readyz), 1e-9));

  std::printf("\nresident memory (aim <= 30 MB), MB (10^6 bytes):\n");
  PrintMemoryHeader();
  for (const MemorySample& s : empty.samples) PrintMemoryRow("empty", s);
  for (const MemorySample& s : year.samples) PrintMemoryRow("year", s);
  PrintMemoryRow("year", after_writes);
  PrintMemoryRow("year", after_trim);
  auto last = [](const MemoryRun& m, const char* k) { return m.samples.back().status.at(k); };
  std::printf("after ingest and queries, year / empty: VmRSS %.2f, RssAnon %.2f, RssFile %.2f\n",
              static_cast<double>(last(year, "VmRSS")) / last(empty, "VmRSS"),
              static_cast<double>(last(year, "RssAnon")) / last(empty, "RssAnon"),
              static_cast<double>(last(year, "RssFile")) / last(empty, "RssFile"));

  PrintWrites(writes, opt.write_rate);

  // Compaction's share, estimated: a day segment costs, per key, what a
  // key-day of the year cost beside its raw changes (metadata, carry,
  // rollups, index), plus the raw bytes per change times the day's changes;
  // the month merge writes it again (bytes written / bytes kept in the
  // year's build).
  const double key_day = static_cast<double>(built.segment_bytes - built.raw_bytes) /
                         static_cast<double>(built.keys * kDays);
  const double raw_change =
      static_cast<double>(built.raw_bytes) / static_cast<double>(built.changes);
  const double rewrite = static_cast<double>(built.compaction_bytes_written) /
                         static_cast<double>(built.segment_bytes);
  const double day_changes = opt.write_rate * 86400.0;
  const double per_day =
      rewrite * (key_day * static_cast<double>(opt.keys) + raw_change * day_changes);
  std::printf(
      "  compaction, estimated from the year's build: %.0f B per key-day besides raw "
      "changes, %.2f B per raw change, written %.2f times (day segment, month merge):\n"
      "    %.1f MB a day at %d changes/s = %.2f MB/h averaged\n",
      key_day, raw_change, rewrite, per_day / 1e6, opt.write_rate, per_day / 1e6 / 24);
  std::printf("%s\n", LoadLine().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return BenchMain("footprint_bench", [&] { return Run(ParseOptions(argc, argv)); });
}

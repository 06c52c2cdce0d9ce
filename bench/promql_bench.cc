// Issue 23's PromQL speed bar (docs/benchmarks.md, "PromQL from rollups"):
// a year of a 10 s sensor held in cold segments, asked
// `avg_over_time(x[1h])` at step 1h over the whole year through
// GET /api/v1/query_range, beside a real Prometheus 2.42 (Debian's
// `prometheus`) holding the same samples, in the same run. The bar: at
// least 50x faster than Prometheus, and exact.
//
// Measured, interleaved, --rounds times (median and min of each):
// - komoku, the year at step 3600 from the year's first second: every
//   window is a whole hour, answered from hourly rollups;
// - Prometheus, the same query;
// - komoku with the start 1 s later: no window is a whole bucket, so it is
//   answered from the raw changes, the honest "before" beside the rollups.
// Beside wall time, the CPU time each server used for the query (its
// /proc/PID/stat, summed over the rounds), which a busy machine moves less.
// Then min/max/sum/count_over_time once each, on both.
//
// Exact: every answer (the rounds' too) is compared with Prometheus's point
// by point: the same series, the same times, values equal to 1e-9 relative;
// the count compared and the worst difference are printed, and a wrong
// answer exits 1. komoku_promql_read_total{from="changes"|"rollups"} is
// read around each kind of query, to show which one read rollups.
//
// The data: bench/sensor_gen.h's year (2024, 3,153,600 readings at 10 s with
// ±300 ms jitter, 2 decimals, a daily cycle with noise), built once and
// cached as promql_bench-v1/ in $KOMOKU_BENCH_DIR, else the build directory:
// - komoku/: a komoku data directory, the year written straight into the
//   hot store's schema (HotDbBuilder) and compacted into segments through
//   POST /api/v1/compact (store.compact_interval: 0, raw_retention_days: 0,
//   rollup_5m_retention_days: 0, the default 48 h hot window: the whole
//   year is cold), the emptied SQLite file vacuumed;
// - prometheus/: the same samples in OpenMetrics text through `promtool
//   tsdb create-blocks-from openmetrics --max-block-duration=744h`: blocks
//   of 486 h, the largest Prometheus itself compacts into with a retention
//   over 310 days (its default 2 h blocks would make 4,380 of them, and
//   promtool 2.42 reads the whole input once per block: hours). Prometheus
//   is then started on them (--storage.tsdb.retention.time=10y, else it
//   deletes the old blocks) until its first compaction has settled.
// Each run copies both into a scratch directory. A change of the segment
// format needs the cache removed (rm -r promql_bench-v1) to be rebuilt.
//
//   build-bench/bench/promql_bench [--rounds=N]     (N = 9)
//
// Never fails for being slow; exits 1 when an answer is wrong or something
// does not work.
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "real_service.h"
#include "sensor_gen.h"

namespace {

using namespace komoku::bench;  // NOLINT(google-build-using-namespace): a program's own helpers
using nlohmann::json;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

constexpr const char* kCacheName = "promql_bench-v1";
constexpr const char* kKey = "bench/temperature";
constexpr const char* kMetric = "bench_temperature";  // docs/prometheus.md, "Metric name"
constexpr int64_t kStep = 3600;
constexpr double kTolerance = 1e-9;  // relative
constexpr double kBar = 50;          // issue 23: at least 50x faster

struct Options {
  int rounds = 9;
};

// The year's first second and its end (the sensor's start and 365 days on).
int64_t YearStart() { return SensorOptions{}.start_ms / 1000; }
int64_t YearEnd() { return YearStart() + 365 * 86400; }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Encode(const std::string& s) { return httplib::detail::encode_query_param(s); }

void CopyTree(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive);
}

// --- komoku -------------------------------------------------------------------

std::string KomokuConfig(int broker_port, const std::string& data_dir) {
  return "mqtt:\n  broker: tcp://127.0.0.1:" + std::to_string(broker_port) +
         "\n  client_id: komoku-promql-bench\n"
         "store:\n  data_dir: " +
         data_dir +
         "\n  compact_interval: 0\n  raw_retention_days: 0\n  rollup_5m_retention_days: 0\n"
         "http:\n  listen: 127.0.0.1:0\n"
         "log:\n  level: warn\n";
}

// Rows left in the hot store: after a compaction the writer deletes the
// rows now cold.
int64_t HotRows(const std::string& path) {
  Sqlite db(path);
  sqlite3_busy_timeout(db.get(), 10000);
  Statement count(db, "SELECT count(*) FROM changes");
  const int rc = sqlite3_step(count.get());
  if (rc != SQLITE_ROW) db.Check(rc, "count the hot rows");
  return sqlite3_column_int64(count.get(), 0);
}

// --- Prometheus ---------------------------------------------------------------

// A sample of Prometheus's own /metrics (the first series of `name` with no
// labels), -1 when it does not answer or has no such series.
double PromSelfMetric(int port, const std::string& name) {
  auto res = NewClient(port)->Get("/metrics");
  if (!res || res->status != 200) return -1;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > name.size() && line.compare(0, name.size(), name) == 0 &&
        line[name.size()] == ' ') {
      return std::strtod(line.c_str() + name.size() + 1, nullptr);
    }
  }
  return -1;
}

std::unique_ptr<Process> StartPrometheus(const ScratchDir& dir, const std::string& tsdb,
                                         int* port) {
  const std::string conf = dir.File("prometheus.yml");
  std::ofstream(conf) << "global:\n  scrape_interval: 1m\n";
  // The port may be taken between choosing it and Prometheus's bind: try again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    *port = FreeLoopbackPort();
    auto p = std::make_unique<Process>(
        std::vector<std::string>{PROMETHEUS_BINARY, "--config.file=" + conf,
                                 "--storage.tsdb.path=" + tsdb, "--storage.tsdb.retention.time=10y",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(*port)},
        dir.File("prometheus-" + std::to_string(attempt) + ".log"));
    httplib::Client cli("127.0.0.1", *port);
    if (WaitFor(
            [&] {
              auto r = cli.Get("/-/ready");
              return (r && r->status == 200) || !p->Running();
            },
            milliseconds(300000), milliseconds(100)) &&
        p->Running()) {
      return p;
    }
  }
  Fail("Prometheus did not start (logs in " + dir.path() + ")");
}

// --- the cache ----------------------------------------------------------------

struct BuildFigures {
  int64_t samples = 0;
  int64_t segments = 0, segment_bytes = 0;
  int64_t blocks_created = 0, blocks = 0;
  double komoku_seconds = 0, promtool_seconds = 0, prometheus_compact_seconds = 0;
};

json ToJson(const BuildFigures& b) {
  return {{"samples", b.samples},
          {"segments", b.segments},
          {"segment_bytes", b.segment_bytes},
          {"blocks_created", b.blocks_created},
          {"blocks", b.blocks},
          {"komoku_seconds", b.komoku_seconds},
          {"promtool_seconds", b.promtool_seconds},
          {"prometheus_compact_seconds", b.prometheus_compact_seconds}};
}

BuildFigures FromJson(const json& j) {
  BuildFigures b;
  b.samples = j.at("samples").get<int64_t>();
  b.segments = j.at("segments").get<int64_t>();
  b.segment_bytes = j.at("segment_bytes").get<int64_t>();
  b.blocks_created = j.at("blocks_created").get<int64_t>();
  b.blocks = j.at("blocks").get<int64_t>();
  b.komoku_seconds = j.at("komoku_seconds").get<double>();
  b.promtool_seconds = j.at("promtool_seconds").get<double>();
  b.prometheus_compact_seconds = j.at("prometheus_compact_seconds").get<double>();
  return b;
}

void PrintBuild(const BuildFigures& b) {
  std::printf(
      "  %lld samples; komoku: %lld segments, %.1f MB, written and compacted in %.1f s; "
      "Prometheus: %lld blocks from promtool in %.1f s, after Prometheus's compaction %lld, in "
      "%.1f s\n",
      static_cast<long long>(b.samples), static_cast<long long>(b.segments),
      static_cast<double>(b.segment_bytes) / 1e6, b.komoku_seconds,
      static_cast<long long>(b.blocks_created), b.promtool_seconds,
      static_cast<long long>(b.blocks), b.prometheus_compact_seconds);
}

// The block directories of a TSDB (those holding a meta.json).
int64_t CountBlocks(const std::string& tsdb) {
  int64_t n = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(tsdb)) {
    if (e.is_directory() && fs::exists(e.path() / "meta.json")) ++n;
  }
  return n;
}

// Komoku's half: the year into a hot store, komoku on it, POST
// /api/v1/compact, the emptied SQLite file vacuumed.
void BuildKomoku(const ScratchDir& build, const std::string& data,
                 const std::vector<SensorReading>& year, BuildFigures& b) {
  const auto t0 = Clock::now();
  fs::create_directories(data);
  const std::string db_path = data + "/komoku.db";
  {
    HotDbBuilder db(db_path);
    db.AddKey(1, kKey, "numeric", SensorOptions{}.start_ms - 1000);
    for (const SensorReading& r : year) db.AddChange(1, r.time_ms, r.value);
    db.Finish();
  }
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(build, &broker_port);
  Komoku komoku = StartKomoku(build, KomokuConfig(broker_port, data));
  const CompactAnswer c = Compact(komoku.port, std::chrono::seconds(7200));
  const SegmentTotals seg = Segments(komoku.port);
  if (seg.changes != static_cast<int64_t>(year.size())) {
    komoku.FailWithLog("after POST /api/v1/compact the segments hold " +
                       std::to_string(seg.changes) + " changes, expected " +
                       std::to_string(year.size()));
  }
  if (!WaitFor([&] { return HotRows(db_path) == 0; }, milliseconds(3600000), milliseconds(500))) {
    komoku.FailWithLog("the hot store still holds rows an hour after the compaction");
  }
  const int status = komoku.process->Stop(milliseconds(120000));
  if (status != 0) komoku.FailWithLog("komoku stopped with status " + std::to_string(status));
  broker->Stop();
  Sqlite(db_path).Exec("VACUUM");
  b.segments = seg.count;
  b.segment_bytes = seg.bytes;
  b.komoku_seconds = SecondsSince(t0);
  std::printf("  komoku: %lld changes compacted in %.1f s into %lld segments (%.1f MB)\n",
              static_cast<long long>(c.changes), c.seconds, static_cast<long long>(seg.count),
              static_cast<double>(seg.bytes) / 1e6);
}

// Prometheus's half: the samples as OpenMetrics text (the series komoku
// makes of the key, docs/prometheus.md), `promtool tsdb create-blocks-from
// openmetrics`, then Prometheus on the blocks until its compaction settles.
void BuildPrometheus(const ScratchDir& build, const std::string& tsdb,
                     const std::vector<SensorReading>& year, BuildFigures& b) {
  const std::string om = build.File("year.om");
  {
    std::ofstream out(om);
    char line[160];
    for (const SensorReading& r : year) {
      // %.17g reads back as the same double komoku holds.
      std::snprintf(line, sizeof line, "%s{key=\"%s\",type=\"numeric\"} %.17g %lld.%03lld\n",
                    kMetric, kKey, r.value, static_cast<long long>(r.time_ms / 1000),
                    static_cast<long long>(r.time_ms % 1000));
      out << line;
    }
    out << "# EOF\n";
    if (!out) Fail("cannot write " + om);
  }
  auto t0 = Clock::now();
  {
    Process promtool({PROMTOOL_BINARY, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                      "--max-block-duration=744h", om, tsdb},
                     build.File("promtool.log"));
    const int status = promtool.Wait(milliseconds(3600000));
    if (status != 0) {
      Fail("promtool tsdb create-blocks-from openmetrics: status " + std::to_string(status) + "\n" +
           promtool.Output());
    }
  }
  b.promtool_seconds = SecondsSince(t0);
  b.blocks_created = CountBlocks(tsdb);
  fs::remove(om);
  std::printf("  promtool: %lld blocks in %.1f s\n", static_cast<long long>(b.blocks_created),
              b.promtool_seconds);

  // Prometheus compacts a minute after its start, all it can in one go; it
  // has settled when a compaction was triggered and neither the compactions
  // done nor the blocks loaded changed for 30 s.
  t0 = Clock::now();
  int port = 0;
  std::unique_ptr<Process> prom = StartPrometheus(build, tsdb, &port);
  double last_blocks = -1, last_compactions = -1;
  auto since_change = Clock::now();
  const bool settled = WaitFor(
      [&] {
        const double blocks = PromSelfMetric(port, "prometheus_tsdb_blocks_loaded");
        const double compactions = PromSelfMetric(port, "prometheus_tsdb_compactions_total");
        const double triggered =
            PromSelfMetric(port, "prometheus_tsdb_compactions_triggered_total");
        if (blocks != last_blocks || compactions != last_compactions) {
          last_blocks = blocks;
          last_compactions = compactions;
          since_change = Clock::now();
          return false;
        }
        return triggered > 0 && SecondsSince(since_change) > 30;
      },
      milliseconds(3600000), milliseconds(1000));
  if (!settled) Fail("Prometheus's compaction did not settle within an hour");
  b.prometheus_compact_seconds = SecondsSince(t0);
  const int status = prom->Stop(milliseconds(120000));
  if (status != 0) Fail("Prometheus stopped with status " + std::to_string(status));
  b.blocks = CountBlocks(tsdb);
  std::printf("  Prometheus: %lld blocks after its compaction settled, %.1f s\n",
              static_cast<long long>(b.blocks), b.prometheus_compact_seconds);
}

BuildFigures EnsureCache(const std::string& base, const std::string& cache) {
  if (fs::exists(cache + "/build.json")) {
    std::ifstream in(cache + "/build.json");
    const BuildFigures b = FromJson(json::parse(in));
    std::printf("data: %s (cached)\n", cache.c_str());
    PrintBuild(b);
    return b;
  }
  std::printf("building %s (once; cached for later runs):\n", cache.c_str());
  if (fs::exists(cache)) fs::remove_all(cache);  // an interrupted build
  ScratchDir build(base, "promql-bench-build");
  const std::vector<SensorReading> year = GenerateSensorYear();
  BuildFigures b;
  b.samples = static_cast<int64_t>(year.size());
  BuildKomoku(build, build.File("cache/komoku"), year, b);
  BuildPrometheus(build, build.File("cache/prometheus"), year, b);
  std::ofstream(build.File("cache/build.json")) << ToJson(b).dump(1) << "\n";
  fs::rename(build.File("cache"), cache);
  PrintBuild(b);
  return b;
}

// --- answers ------------------------------------------------------------------

// A matrix answer: each series' labels (as JSON text) and its points.
struct Point {
  double t = 0;
  double v = 0;
};
using Matrix = std::map<std::string, std::vector<Point>>;

Matrix ParseMatrix(const std::string& body, const std::string& what) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || j.value("status", "") != "success" ||
      j["data"].value("resultType", "") != "matrix") {
    Fail(what + ": not a matrix answer: " + body.substr(0, 300));
  }
  Matrix m;
  for (const json& s : j["data"]["result"]) {
    std::vector<Point>& points = m[s["metric"].dump()];
    for (const json& p : s["values"]) {
      points.push_back({p[0].get<double>(), std::strtod(p[1].get<std::string>().c_str(), nullptr)});
    }
  }
  return m;
}

struct Comparison {
  int64_t points = 0;
  double worst = 0;  // the largest relative difference
  double worst_at = 0;
};

// Komoku's answer against Prometheus's: the same series at the same times,
// values equal to kTolerance relative. Throws at the first difference.
Comparison Compare(const Matrix& want, const Matrix& got, const std::string& what) {
  if (want.size() != got.size()) {
    Fail(what + ": " + std::to_string(got.size()) + " series, Prometheus " +
         std::to_string(want.size()));
  }
  Comparison c;
  for (const auto& [labels, points] : want) {
    auto it = got.find(labels);
    if (it == got.end()) Fail(what + ": no series " + labels);
    const std::vector<Point>& g = it->second;
    if (g.size() != points.size()) {
      Fail(what + ": " + labels + " has " + std::to_string(g.size()) + " points, Prometheus " +
           std::to_string(points.size()));
    }
    for (size_t i = 0; i < points.size(); ++i) {
      const Point& w = points[i];
      char at[64];
      std::snprintf(at, sizeof at, "%.3f", w.t);
      if (g[i].t != w.t) {
        Fail(what + ": point " + std::to_string(i) + " at " + std::to_string(g[i].t) +
             ", Prometheus's at " + at);
      }
      const double scale = std::max(std::fabs(w.v), std::fabs(g[i].v));
      const double diff = (std::isnan(w.v) && std::isnan(g[i].v)) || w.v == g[i].v
                              ? 0
                              : std::fabs(w.v - g[i].v) / scale;
      if (!(diff <= kTolerance)) {
        char buf[160];
        std::snprintf(buf, sizeof buf, ": at %s komoku %.17g, Prometheus %.17g", at, g[i].v, w.v);
        Fail(what + buf);
      }
      if (diff > c.worst) {
        c.worst = diff;
        c.worst_at = w.t;
      }
      ++c.points;
    }
  }
  return c;
}

// One server's HTTP API, the CPU time its process used around each request.
class Server {
 public:
  Server(std::string name, int port, Process* process)
      : name_(std::move(name)), process_(process), cli_(NewClient(port)) {
    cli_->set_tcp_nodelay(true);
  }
  const std::string& name() const { return name_; }

  struct Answer {
    std::string body;
    double seconds = 0;
    double cpu_seconds = 0;
  };
  // Uncompressed (Accept-Encoding: identity) from both: the engines are
  // compared, not the compressors.
  Answer Get(const std::string& path) {
    Answer a;
    const double cpu0 = process_->CpuSeconds();
    const auto t0 = Clock::now();
    auto r = cli_->Get(path, {{"Accept-Encoding", "identity"}});
    a.seconds = SecondsSince(t0);
    a.cpu_seconds = process_->CpuSeconds() - cpu0;
    if (!r) Fail(name_ + " GET " + path + ": no answer: " + httplib::to_string(r.error()));
    if (r->status != 200) {
      Fail(name_ + " GET " + path + ": HTTP " + std::to_string(r->status) + ": " + r->body);
    }
    a.body = std::move(r->body);
    return a;
  }

 private:
  const std::string name_;
  Process* const process_;
  std::unique_ptr<httplib::Client> cli_;
};

std::string RangePath(const std::string& query, int64_t start, int64_t end) {
  return "/api/v1/query_range?query=" + Encode(query) + "&start=" + std::to_string(start) +
         "&end=" + std::to_string(end) + "&step=" + std::to_string(kStep);
}

// komoku_promql_read_total by its `from` label.
struct Reads {
  double changes = 0, rollups = 0;
};
Reads ReadReads(int port) {
  const std::map<std::string, double> m = Metrics(port, {"komoku_promql_read_total"});
  Reads r;
  for (const auto& [series, value] : m) {
    if (series.find("from=\"changes\"") != std::string::npos) r.changes += value;
    if (series.find("from=\"rollups\"") != std::string::npos) r.rollups += value;
  }
  return r;
}
std::string ReadsDelta(const Reads& before, const Reads& after) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "rollups +%.0f, changes +%.0f", after.rollups - before.rollups,
                after.changes - before.changes);
  return buf;
}

// A query's timings over the rounds.
struct Timings {
  std::vector<double> ms;
  double cpu_seconds = 0;
  void Add(const Server::Answer& a) {
    ms.push_back(a.seconds * 1000);
    cpu_seconds += a.cpu_seconds;
  }
  double median() const { return Median(ms); }
  double min() const { return ms.empty() ? 0 : *std::min_element(ms.begin(), ms.end()); }
  double cpu_ms() const { return ms.empty() ? 0 : cpu_seconds * 1000 / ms.size(); }
};

// "12.3x" (one decimal below 10, none above), "n/a" without a denominator
// (a CPU time under /proc's 10 ms tick over all rounds).
std::string Ratio(double num, double den) {
  if (!(den > 0)) return "n/a";
  char buf[32];
  const double r = num / den;
  std::snprintf(buf, sizeof buf, r < 10 ? "%.1fx" : "%.0fx", r);
  return buf;
}

void PrintTimings(const char* label, const Timings& t) {
  std::printf("  %-48s %10.1f %10.1f %10.1f\n", label, t.median(), t.min(), t.cpu_ms());
}

// Compares komoku's answer with Prometheus's and prints the comparison.
Comparison CheckAndPrint(const std::string& what, const std::string& komoku_body,
                         const std::string& prom_body) {
  const Comparison c =
      Compare(ParseMatrix(prom_body, what + " (Prometheus)"), ParseMatrix(komoku_body, what), what);
  if (c.points == 0) Fail(what + ": Prometheus answered no points");
  std::printf("  %-48s %6lld points equal, worst relative difference %.1e\n", what.c_str(),
              static_cast<long long>(c.points), c.worst);
  return c;
}

int Run(const Options& opt) {
  std::printf("promql_bench: %s\n", MachineLine().c_str());
  const std::string base = BenchBase();
  fs::create_directories(base);
  const std::string cache = base + "/" + kCacheName;
  const BuildFigures built = EnsureCache(base, cache);

  ScratchDir dir(base, "promql-bench");
  CopyTree(cache + "/komoku", dir.File("komoku"));
  CopyTree(cache + "/prometheus", dir.File("prometheus"));
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  Komoku komoku = StartKomoku(dir, KomokuConfig(broker_port, dir.File("komoku")));
  const SegmentTotals seg = Segments(komoku.port);
  if (seg.changes != built.samples) {
    komoku.FailWithLog("the cached segments hold " + std::to_string(seg.changes) +
                       " changes, expected " + std::to_string(built.samples));
  }
  int prom_port = 0;
  std::unique_ptr<Process> prom = StartPrometheus(dir, dir.File("prometheus"), &prom_port);
  const double prom_compactions = PromSelfMetric(prom_port, "prometheus_tsdb_compactions_total");
  std::printf("komoku: %lld segments; Prometheus: %.0f blocks loaded\n",
              static_cast<long long>(seg.count),
              PromSelfMetric(prom_port, "prometheus_tsdb_blocks_loaded"));

  Server k("komoku", komoku.port, komoku.process.get());
  Server p("Prometheus", prom_port, prom.get());
  const int64_t start = YearStart(), end = YearEnd();
  const std::string avg = std::string("avg_over_time(") + kMetric + "[1h])";
  const std::string aligned = RangePath(avg, start, end);
  const std::string shifted = RangePath(avg, start + 1, end);
  // Prometheus's window [t - 1h, t] holds a sample at t, which lies in the
  // next hour's bucket: the edges a rollup answer must get right.
  int64_t on_edge = 0;
  for (const SensorReading& r : GenerateSensorYear()) on_edge += r.time_ms % (kStep * 1000) == 0;
  std::printf("%lld samples lie exactly on an hour's edge\n", static_cast<long long>(on_edge));
  std::printf("query: %s, step %llds, %lld to %lld (the year)\n", avg.c_str(),
              static_cast<long long>(kStep), static_cast<long long>(start),
              static_cast<long long>(end));

  // Exactness first, and which store each kind of query read; the first
  // answers are also the first (cold) timings.
  std::printf("\nexact (1e-9 relative), and komoku_promql_read_total around the query:\n");
  Reads r0 = ReadReads(komoku.port);
  const Server::Answer k_first = k.Get(aligned);
  Reads r1 = ReadReads(komoku.port);
  const Server::Answer p_first = p.Get(aligned);
  CheckAndPrint("avg_over_time, whole hours", k_first.body, p_first.body);
  std::printf("  %-48s %s\n", "", ReadsDelta(r0, r1).c_str());
  const bool from_rollups = r1.rollups > r0.rollups;
  const Server::Answer k_shift_first = k.Get(shifted);
  Reads r2 = ReadReads(komoku.port);
  const Server::Answer p_shift = p.Get(shifted);
  CheckAndPrint("avg_over_time, start + 1 s", k_shift_first.body, p_shift.body);
  std::printf("  %-48s %s\n", "", ReadsDelta(r1, r2).c_str());

  // The rounds, interleaved. Every answer must be the first one again.
  Timings k_aligned, p_aligned, k_shifted;
  for (int i = 0; i < opt.rounds; ++i) {
    std::fprintf(stderr, "round %d of %d\n", i + 1, opt.rounds);
    const Server::Answer a = k.Get(aligned);
    const Server::Answer b = p.Get(aligned);
    const Server::Answer c = k.Get(shifted);
    if (a.body != k_first.body)
      CheckAndPrint("avg_over_time, round " + std::to_string(i + 1), a.body, p_first.body);
    if (b.body != p_first.body)
      CheckAndPrint("Prometheus, round " + std::to_string(i + 1), b.body, p_first.body);
    if (c.body != k_shift_first.body) {
      CheckAndPrint("avg_over_time + 1 s, round " + std::to_string(i + 1), c.body, p_shift.body);
    }
    k_aligned.Add(a);
    p_aligned.Add(b);
    k_shifted.Add(c);
  }
  Reads r3 = ReadReads(komoku.port);

  // The other functions, once each.
  struct Other {
    std::string fn;
    Server::Answer k, p;
  };
  std::vector<Other> others;
  for (const char* fn : {"min_over_time", "max_over_time", "sum_over_time", "count_over_time"}) {
    const std::string path = RangePath(std::string(fn) + "(" + kMetric + "[1h])", start, end);
    Other o{fn, k.Get(path), p.Get(path)};
    CheckAndPrint(o.fn + ", whole hours", o.k.body, o.p.body);
    others.push_back(std::move(o));
  }
  Reads r4 = ReadReads(komoku.port);
  std::printf("  %-48s %s\n", "(the four above)", ReadsDelta(r3, r4).c_str());

  const double prom_compactions_after =
      PromSelfMetric(prom_port, "prometheus_tsdb_compactions_total");
  if (prom_compactions_after != prom_compactions) {
    std::printf("note: Prometheus compacted during the run (%.0f compactions)\n",
                prom_compactions_after - prom_compactions);
  }

  std::printf(
      "\n%d rounds, interleaved; wall ms per query (client side, whole HTTP answer of %zu "
      "bytes from komoku, %zu from Prometheus), server CPU ms per query:\n",
      opt.rounds, k_first.body.size(), p_first.body.size());
  std::printf("  %-48s %10s %10s %10s\n", "", "median", "min", "cpu");
  PrintTimings("komoku, whole hours", k_aligned);
  PrintTimings("Prometheus 2.42, same query", p_aligned);
  PrintTimings("komoku, start + 1 s (raw changes)", k_shifted);
  std::printf("  %-48s %10.1f %10s %10.1f\n", "first komoku query, whole hours",
              k_first.seconds * 1000, "", k_first.cpu_seconds * 1000);
  std::printf("  %-48s %10.1f %10s %10.1f\n", "first Prometheus query", p_first.seconds * 1000, "",
              p_first.cpu_seconds * 1000);
  std::printf("  once each, komoku / Prometheus ms:\n");
  for (const Other& o : others) {
    std::printf("  %-48s %10.1f %10.1f\n", (o.fn + ", whole hours").c_str(), o.k.seconds * 1000,
                o.p.seconds * 1000);
  }

  const double speedup = p_aligned.median() / k_aligned.median();
  std::printf(
      "\nkomoku, whole hours, vs Prometheus: %s faster by median wall time (by min: %s; by server "
      "CPU: %s); the bar, %.0fx: %s\n",
      Ratio(p_aligned.median(), k_aligned.median()).c_str(),
      Ratio(p_aligned.min(), k_aligned.min()).c_str(),
      Ratio(p_aligned.cpu_ms(), k_aligned.cpu_ms()).c_str(), kBar,
      speedup >= kBar ? "met" : "NOT met");
  std::printf(
      "komoku, whole hours vs start + 1 s (raw changes): %s faster by median wall time (server "
      "CPU: %s)\n",
      Ratio(k_shifted.median(), k_aligned.median()).c_str(),
      Ratio(k_shifted.cpu_ms(), k_aligned.cpu_ms()).c_str());
  if (!from_rollups) {
    std::printf(
        "note: komoku_promql_read_total{from=\"rollups\"} did not grow: the whole-hour query did "
        "not read rollups (a komoku without them, or a cache built by one: rm -r %s)\n",
        cache.c_str());
  }
  std::printf("%s\n", LoadLine().c_str());
  prom->Stop();
  komoku.process->Stop();
  broker->Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  return BenchMain("promql_bench", [&] {
    ParseIntFlags(argc, argv, {{"--rounds", &opt.rounds}});
    return Run(opt);
  });
}

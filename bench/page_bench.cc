// The web page's speed (issue 21, docs/benchmarks.md, "Web page"): headless
// Chromium (through chromedriver, testing/webdriver.h) opens the chart of a
// year of a 10 s sensor held in cold segments, and zooms to one day of it,
// against the real komoku binary on loopback. The issue's bars: the year
// drawn within 1 s of opening its page, the day redrawn within 300 ms.
//
// Times come from the page itself: web/app.js sets the performance mark
// `komoku:drawn` each time it has drawn a view. "Open" is that mark's time
// from the navigation's start (loading the HTML, the modules, the API
// answers, drawing); "zoom" is from setting location.hash to the day's view
// (what a drag does) to the next mark. Beside them, measured in the same run,
// the baseline: the same API requests the page makes for that view (stats,
// then history with step=auto), made from C++ on a keep-alive connection —
// what the page cannot be faster than.
//
// Also a boolean that changes every 2–30 minutes for the same year (about
// 33,000 changes): the page draws its state band from every span
// (/api/v1/timespans) when the range holds fewer spans than the chart has
// pixel columns, else from the time in each state per bucket of about a
// pixel (history agg=states). For the year, both answers are compared in
// the same run: bytes (plain and gzipped) and time, median of --rounds×4
// requests each, interleaved.
//
// The data: the sensor of bench/sensor_gen.h (2024, 3,153,600 readings) and
// the boolean, written straight into the hot store's schema
// (HotDbBuilder), cached as page_bench-v1.db in $KOMOKU_BENCH_DIR, else the
// build directory; each run copies it to a scratch directory, starts
// Mosquitto and komoku (store.compact_interval: 0, raw_retention_days: 0) and
// compacts the whole year into segments through POST /api/v1/compact first,
// so every view reads cold history.
//
// Options: --rounds=N (5) opens and zooms per view. Never fails for being
// slow; exits 1 only when something does not work.
#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "real_service.h"
#include "sensor_gen.h"
#include "testing/webdriver.h"

namespace {

using namespace komoku::bench;  // NOLINT(google-build-using-namespace): a program's own helpers
using nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kCacheName = "page_bench-v1.db";
constexpr const char* kSensor = "bench/temperature";
constexpr const char* kDoor = "bench/door";
constexpr int64_t kDaySeconds = 86400;

struct Options {
  int rounds = 5;
};

// The year's first second (the sensor's start) and its length.
int64_t YearStart() { return komoku::bench::SensorOptions{}.start_ms / 1000; }
constexpr int64_t kYearSeconds = 365 * kDaySeconds;

int64_t BuildDatabase(const std::string& path) {
  HotDbBuilder db(path);
  const SensorOptions sensor;
  db.AddKey(1, kSensor, "numeric", sensor.start_ms - 1000);
  db.AddKey(2, kDoor, "boolean", sensor.start_ms - 1000);
  for (const SensorReading& r : GenerateSensorYear(sensor)) db.AddChange(1, r.time_ms, r.value);
  SplitMix64 rng(2121);
  bool open = false;
  for (int64_t t = sensor.start_ms; t < sensor.start_ms + kYearSeconds * 1000;
       t += rng.Between(120, 1800) * 1000) {
    db.AddChange(2, t, open);
    open = !open;
  }
  const int64_t n = db.changes();
  db.Finish();
  return n;
}

// Rows left in the hot store: after a compaction the writer deletes the
// rows now cold; the views are measured once it has.
int64_t HotRows(const std::string& path) {
  Sqlite db(path);
  sqlite3_busy_timeout(db.get(), 10000);
  db.Exec("PRAGMA query_only=1");
  sqlite3_stmt* count = nullptr;
  db.Check(sqlite3_prepare_v2(db.get(), "SELECT count(*) FROM changes", -1, &count, nullptr),
           "prepare count");
  int rc = sqlite3_step(count);
  const int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(count, 0) : -1;
  sqlite3_finalize(count);
  if (rc != SQLITE_ROW) db.Check(rc, "count");
  return n;
}

struct View {
  std::string label;
  std::string key;
  int64_t from = 0, to = 0;
  bool numeric = true;
  // A state band drawn from buckets: their step as the page asked it
  // (seconds; "" when the page drew spans).
  std::string step;

  std::string Hash() const {
    return "#/chart?key=" + key + "&from=" + std::to_string(from) + "&to=" + std::to_string(to);
  }
};

// The requests the page makes for `view` (web/app.js fetchKey), timed.
double ApiSeconds(httplib::Client& cli, const View& v) {
  const std::string range =
      "key=" + v.key + "&from=" + std::to_string(v.from) + "&to=" + std::to_string(v.to);
  auto get = [&](const std::string& path) {
    auto r = cli.Get(path, {{"Accept-Encoding", "gzip"}});
    if (!r || r->status != 200) {
      Fail("GET " + path + ": " + (r ? std::to_string(r->status) + " " + r->body : "no answer"));
    }
    return json::parse(r->body);
  };
  const auto t0 = Clock::now();
  // The page asks for the keys' types first.
  auto keys = cli.Post("/api/v1/komoku", R"({"keys": {"values": false}})", "application/json");
  if (!keys || keys->status != 200) Fail("POST /api/v1/komoku keys: no answer");
  if (v.numeric) {
    const json stats = get("/api/v1/stats?" + range);
    if (stats["count"].get<int64_t>() <= 1500) {
      get("/api/v1/history?" + range);
    } else {
      get("/api/v1/history?" + range + "&step=auto&agg=twavg,min,max");
    }
  } else {
    get("/api/v1/stats?" + range + "&distribution=hour_of_day&tz=UTC");
    if (v.step.empty()) {
      get("/api/v1/timespans?" + range + "&value=true");
      get("/api/v1/timespans?" + range + "&value=false");
    } else {
      get("/api/v1/history?" + range + "&step=" + v.step + "s&agg=states&tz=UTC");
    }
  }
  return SecondsSince(t0);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty()      ? 0
         : v.size() % 2 ? v[v.size() / 2]
                        : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The last `komoku:drawn` mark's time (ms from the navigation's start), when
// it is later than `after`; 0 before.
std::string DrawnAfter(double after) {
  return "const m = performance.getEntriesByName('komoku:drawn');"
         "const t = m.length ? m[m.length - 1].startTime : 0;"
         "return t > " +
         std::to_string(after) + " ? t : 0;";
}

struct Figures {
  std::vector<double> open_ms, zoom_ms, api_open_ms, api_zoom_ms;
  std::string drawn;  // what the last open drew
  std::string step;   // the step of the year's state buckets ("" for spans)
};

// The bucket step (seconds) the state lane on the page was drawn from, ""
// when it was drawn from spans (or is not a state lane).
std::string LaneStep(komoku::webdriver::Browser& browser) {
  json step = browser.Eval(
      "const g = document.querySelector('#chart .lane');"
      "return g && g.getAttribute('data-step') || '';");
  return step.is_string() ? step.get<std::string>() : "";
}

Figures Measure(komoku::webdriver::Browser& browser, httplib::Client& api, int port,
                const View& year, const View& day, int rounds) {
  Figures f;
  const std::string origin = "http://127.0.0.1:" + std::to_string(port) + "/";
  for (int i = 0; i < rounds; ++i) {
    std::fprintf(stderr, "%s: round %d\n", year.label.c_str(), i + 1);
    browser.Go("about:blank");
    browser.Go(origin + year.Hash());
    json open = browser.WaitFor(DrawnAfter(0), milliseconds(60000));
    if (!open.is_number()) Fail(year.label + ": the page drew nothing within 60 s");
    f.open_ms.push_back(open.get<double>());
    f.drawn = browser
                  .Eval(year.numeric
                            ? "const p = document.querySelector('#chart path.line');"
                              "return (p ? p.getAttribute('data-points') : 0) + ' points, ' + "
                              "document.querySelectorAll('#chart svg *').length + ' SVG elements';"
                            : "return document.querySelectorAll('#chart svg *').length + "
                              "' SVG elements';")
                  .dump();

    View year_asked = year;
    if (!year.numeric) f.step = year_asked.step = LaneStep(browser);

    json start = browser.Eval("window.komokuZoomStart = performance.now(); location.hash = '" +
                              day.Hash() + "'; return window.komokuZoomStart;");
    if (!start.is_number()) Fail("could not zoom");
    json zoom = browser.WaitFor(DrawnAfter(start.get<double>()), milliseconds(60000));
    if (!zoom.is_number()) Fail(day.label + ": the page drew nothing within 60 s");
    f.zoom_ms.push_back(zoom.get<double>() - start.get<double>());

    View day_asked = day;
    if (!day.numeric) day_asked.step = LaneStep(browser);
    f.api_open_ms.push_back(ApiSeconds(api, year_asked) * 1000);
    f.api_zoom_ms.push_back(ApiSeconds(api, day_asked) * 1000);
    std::fprintf(stderr, "  open %.0f ms (api %.0f), zoom %.0f ms (api %.0f)\n", f.open_ms.back(),
                 f.api_open_ms.back(), f.zoom_ms.back(), f.api_zoom_ms.back());
  }
  return f;
}

void Print(const std::string& what, const std::vector<double>& page, const std::vector<double>& api,
           double bar_ms) {
  const double med = Median(page);
  std::printf("%-28s %9.0f %9.0f %9.0f %9.1f %8.1f %6.0f  %s\n", what.c_str(), page.front(), med,
              *std::max_element(page.begin(), page.end()), Median(api), med / Median(api), bar_ms,
              med <= bar_ms ? "met" : "MISSED");
}

// One way of answering a state band: its requests, their bytes plain and
// gzipped, and the time of each round of them.
struct StateAnswer {
  std::string label;
  std::vector<std::string> paths;
  int64_t plain_bytes = 0, gzip_bytes = 0;
  std::vector<double> ms;
};

// Every span of the range (two timespans) against time in state per bucket
// (history agg=states) at the page's step and at step=auto, interleaved
// round by round on one keep-alive connection; what each answer weighs is
// read once plain and once gzipped (as the browser asks).
void CompareStateAnswers(int port, const View& v, const std::string& page_step, int rounds) {
  const std::string range =
      "key=" + v.key + "&from=" + std::to_string(v.from) + "&to=" + std::to_string(v.to);
  std::vector<StateAnswer> answers = {
      {"spans (timespans ×2)",
       {"/api/v1/timespans?" + range + "&value=true",
        "/api/v1/timespans?" + range + "&value=false"}},
      {"buckets, step " + page_step + " s (the page's)",
       {"/api/v1/history?" + range + "&step=" + page_step + "s&agg=states&tz=UTC"}},
      {"buckets, step=auto", {"/api/v1/history?" + range + "&step=auto&agg=states&tz=UTC"}},
  };
  // Bytes on the wire: a client that does not inflate, so that a gzipped
  // body is counted as sent.
  httplib::Client raw("127.0.0.1", port);
  raw.set_decompress(false);
  for (StateAnswer& a : answers) {
    for (const std::string& path : a.paths) {
      auto plain = raw.Get(path);
      auto gz = raw.Get(path, {{"Accept-Encoding", "gzip"}});
      if (!plain || plain->status != 200 || !gz || gz->status != 200) Fail("GET " + path);
      a.plain_bytes += static_cast<int64_t>(plain->body.size());
      a.gzip_bytes += static_cast<int64_t>(gz->body.size());
    }
  }
  std::unique_ptr<httplib::Client> cli = NewClient(port);
  cli->set_tcp_nodelay(true);
  for (int i = 0; i < rounds * 4; ++i) {
    for (StateAnswer& a : answers) {
      const auto t0 = Clock::now();
      for (const std::string& path : a.paths) {
        auto r = cli->Get(path, {{"Accept-Encoding", "gzip"}});
        if (!r || r->status != 200) Fail("GET " + path);
      }
      a.ms.push_back(SecondsSince(t0) * 1000);
    }
  }
  std::printf("\n%s: the state band's answers, %d rounds, gzipped as the browser asks\n",
              v.label.c_str(), rounds * 4);
  std::printf("%-36s %12s %12s %10s %10s\n", "answer", "plain bytes", "gzip bytes", "median ms",
              "max ms");
  for (const StateAnswer& a : answers) {
    std::printf("%-36s %12lld %12lld %10.1f %10.1f\n", a.label.c_str(),
                static_cast<long long>(a.plain_bytes), static_cast<long long>(a.gzip_bytes),
                Median(a.ms), *std::max_element(a.ms.begin(), a.ms.end()));
  }
}

int Run(const Options& opt) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("page_bench: %s\n", MachineLine().c_str());
  const std::string base = BenchBase();
  std::filesystem::create_directories(base);
  const std::string cache = base + "/" + kCacheName;
  if (std::filesystem::exists(cache)) {
    std::printf("data: %s (cached)\n", cache.c_str());
  } else {
    const auto t0 = Clock::now();
    const int64_t n = BuildDatabase(cache);
    std::printf("data: %s built in %.1f s (%lld changes)\n", cache.c_str(), SecondsSince(t0),
                static_cast<long long>(n));
  }

  ScratchDir dir(base, "komoku-page-bench");
  std::filesystem::create_directories(dir.File("data"));
  std::filesystem::create_directories(dir.File("browser"));
  std::filesystem::copy_file(cache, dir.File("data/komoku.db"));
  int broker_port = 0;
  std::unique_ptr<Process> broker = StartBroker(dir, &broker_port);
  Komoku komoku =
      StartKomoku(dir, "mqtt:\n  broker: tcp://127.0.0.1:" + std::to_string(broker_port) +
                           "\n  client_id: komoku-page-bench\n"
                           "store:\n  data_dir: " +
                           dir.File("data") +
                           "\n  compact_interval: 0\n  raw_retention_days: 0\n"
                           "http:\n  listen: 127.0.0.1:0\n"
                           "log:\n  level: warn\n");
  const int port = komoku.port;

  const CompactAnswer c = Compact(port, std::chrono::seconds(3600));
  std::printf("compaction: %.1f s, %lld changes into %lld segments\n", c.seconds,
              static_cast<long long>(c.changes), static_cast<long long>(c.segments_written));
  if (!WaitFor([&] { return HotRows(dir.File("data/komoku.db")) == 0; }, milliseconds(120000))) {
    komoku.FailWithLog("the hot store still holds rows after the compaction");
  }

  komoku::webdriver::BrowserOptions bopt;
  bopt.chromedriver = CHROMEDRIVER_BINARY;
  bopt.chromium = CHROMIUM_BINARY;
  bopt.dir = dir.File("browser");
  // A slow page is a figure, not a failure.
  bopt.script_timeout = std::chrono::minutes(10);
  komoku::webdriver::Browser browser(bopt, [](const std::string& what) { Fail(what); });
  if (!browser.ok()) Fail("Chromium did not start: " + browser.Why());
  std::unique_ptr<httplib::Client> api = NewClient(port);
  // As a browser does: without Nagle's algorithm, a POST's header and body
  // do not wait for the server's delayed ACK (40 ms).
  api->set_tcp_nodelay(true);

  const int64_t start = YearStart();
  const int64_t mid = start + 180 * kDaySeconds;
  const View sensor_year{"sensor, year", kSensor, start, start + kYearSeconds, true};
  const View sensor_day{"sensor, day", kSensor, mid, mid + kDaySeconds, true};
  const View door_year{"boolean, year", kDoor, start, start + kYearSeconds, false};
  const View door_day{"boolean, day", kDoor, mid, mid + kDaySeconds, false};

  const Figures s = Measure(browser, *api, port, sensor_year, sensor_day, opt.rounds);
  const Figures d = Measure(browser, *api, port, door_year, door_day, opt.rounds);

  std::printf("\n%d rounds; page: first, median, max ms; api: median ms of the same requests\n",
              opt.rounds);
  std::printf("%-28s %9s %9s %9s %9s %8s %6s\n", "view", "first", "median", "max", "api",
              "page/api", "bar");
  Print("open: sensor, year (cold)", s.open_ms, s.api_open_ms, 1000);
  Print("zoom: sensor, one day", s.zoom_ms, s.api_zoom_ms, 300);
  Print("open: boolean, year (cold)", d.open_ms, d.api_open_ms, 1000);
  Print("zoom: boolean, one day", d.zoom_ms, d.api_zoom_ms, 300);
  std::printf("sensor year drew %s; boolean year drew %s (%s)\n", s.drawn.c_str(), d.drawn.c_str(),
              d.step.empty() ? "from spans" : ("from buckets of " + d.step + " s").c_str());
  CompareStateAnswers(port, door_year, d.step.empty() ? "43200" : d.step, opt.rounds);
  std::printf("%s\n", LoadLine().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--rounds=", 0) == 0) {
      opt.rounds = std::max(1, std::stoi(a.substr(9)));
    } else {
      std::fprintf(stderr, "page_bench: unknown option %s (--rounds=N)\n", a.c_str());
      return 2;
    }
  }
  try {
    return Run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "page_bench: %s\n", e.what());
    return 1;
  }
}

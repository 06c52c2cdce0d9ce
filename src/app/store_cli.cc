#include "app/store_cli.h"

#include <fcntl.h>
#include <httplib.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "app/config.h"
#include "cold/cold_store.h"
#include "series/history.h"
#include "store/store.h"
#include "wire/api.h"
#include "wire/time_param.h"

namespace komoku::app {
namespace {

constexpr const char* kDay = "%Y-%m-%d %H:%M";

// Shows a compaction's progress on stderr, so stdout keeps only the JSON
// report: on a terminal a bar redrawn in place; otherwise (a log, a pipe, a
// cron mail) a line per month of days written, per month merged, per phase,
// and at least every 10 s. It sees what polling Store::CompactionProgressNow
// (or GET /api/v1/compact) shows, so a step shorter than the polling
// interval may pass unseen.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool terminal) : terminal_(terminal) {}

  void Show(const std::optional<store::CompactionProgress>& p) {
    if (!p || (p->phase == "days" && p->total == 0)) return;  // nothing known yet
    const auto now = std::chrono::steady_clock::now();
    if (terminal_) {
      // A phase keeps its own line; \033[K clears what a longer one left.
      if (shown_ && p->phase != last_.phase) std::fputc('\n', stderr);
      std::fprintf(stderr, "\r%s%s\033[K", Bar(*p).c_str(), Describe(*p).c_str());
      std::fflush(stderr);
    } else {
      const bool new_phase = !shown_ || p->phase != last_.phase;
      const bool new_month = p->phase == "days" && p->at_ms != 0 &&
                             (last_.at_ms == 0 || Month(p->at_ms) != Month(last_.at_ms));
      const bool new_merge = p->phase == "months" && p->done != last_.done;
      const bool moved =
          p->done != last_.done || p->phase != last_.phase || p->at_ms != last_.at_ms;
      const bool due = moved && now - last_line_ >= std::chrono::seconds(10);
      if (!new_phase && !new_month && !new_merge && !due) return;
      std::fprintf(stderr, "komoku compact: %s\n", Describe(*p).c_str());
      last_line_ = now;
    }
    shown_ = true;
    last_ = *p;
  }

  // Ends the bar's line and says what follows the compaction.
  void Done(const char* next) {
    if (terminal_ && shown_) std::fputc('\n', stderr);
    if (next != nullptr) std::fprintf(stderr, "komoku compact: %s\n", next);
    std::fflush(stderr);
  }

 private:
  static std::string Month(int64_t ms) { return store::FormatUtc(ms, "%Y-%m"); }

  static std::string Describe(const store::CompactionProgress& p) {
    const std::string of = std::to_string(p.done) + " of " + std::to_string(p.total);
    if (p.phase == "days") {
      return "writing day segments: " + of + " days" +
             (p.at_ms != 0 ? ", through " + store::FormatUtc(p.at_ms, "%Y-%m-%d") : "");
    }
    if (p.phase == "months") {
      return "merging whole months: " + of + " merged" +
             (p.at_ms != 0 ? ", now " + Month(p.at_ms) : "");
    }
    if (p.phase == "retention") return "expiring what retention no longer keeps";
    return p.phase + ": " + of;
  }

  static std::string Bar(const store::CompactionProgress& p) {
    constexpr int kWidth = 30;
    if (p.total <= 0) return "";
    const int filled = static_cast<int>(std::min<int64_t>(kWidth, p.done * kWidth / p.total));
    return "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
  }

  const bool terminal_;
  bool shown_ = false;
  store::CompactionProgress last_;
  std::chrono::steady_clock::time_point last_line_{};
};

// Polls `progress` into `printer` until `finished`.
void ShowUntil(const std::atomic<bool>& finished, std::chrono::milliseconds every,
               ProgressPrinter& printer,
               const std::function<std::optional<store::CompactionProgress>()>& progress) {
  while (!finished.load()) {
    printer.Show(progress());
    const auto until = std::chrono::steady_clock::now() + every;
    while (!finished.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

// Compacts in this process when no service holds the data directory, else
// asks the running service over its HTTP API. Either way progress goes to
// stderr (ProgressPrinter) and the report, as JSON, to stdout.
int Compact(const Config& config) {
  store::StoreOptions options = StoreOptionsOf(config);
  options.start_timers = false;
  options.cold.compact_interval = std::chrono::milliseconds(0);
  options.cold.background = false;  // this process compacts once, in the foreground
  // The store's log lines go to stderr beside the progress: stdout is the
  // report's alone.
  auto log =
      std::make_shared<spdlog::logger>("store", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_pattern("komoku compact: %v");
  Result<std::unique_ptr<store::Store>> store = store::Store::Open(options, log);
  ProgressPrinter printer(isatty(STDERR_FILENO) == 1);
  if (store.ok()) {
    store::Store& s = **store;
    std::atomic<bool> finished{false};
    std::optional<Result<store::CompactionReport>> r;
    std::thread worker([&] {
      r = s.Compact();
      finished.store(true);
    });
    ShowUntil(finished, std::chrono::milliseconds(100), printer,
              [&s] { return s.CompactionProgressNow(); });
    worker.join();
    if (!r->ok()) {
      printer.Done(nullptr);
      std::cerr << "komoku compact: " << r->status().ToString() << "\n";
      return 1;
    }
    // Nothing else writes here: leave SQLite without the rows made cold.
    printer.Done((*r)->changes > 0 ? "deleting the compacted changes from the hot store" : nullptr);
    s.WaitColdRowsDeleted();
    std::cout << store::CompactionJson(**r).dump() << "\n";
    return 0;
  }
  if (store.status().reason() != "locked") {
    std::cerr << "komoku compact: " << store.status().ToString() << "\n";
    return 1;
  }
  const ServiceAddress address = RunningServiceAddress(config);
  const std::string& host = address.host;
  const int port = address.port;
  std::atomic<bool> finished{false};
  std::optional<httplib::Result> posted;
  std::thread worker([&] {
    httplib::Client client(host, port);
    client.set_read_timeout(3600, 0);  // a first compaction of much history takes a while
    if (!config.http_token.empty()) client.set_bearer_token_auth(config.http_token);
    posted = client.Post("/api/v1/compact");
    finished.store(true);
  });
  // The service tells how far it has come (GET /api/v1/compact); one that
  // does not answer that shows no progress, only the report.
  httplib::Client poll(host, port);
  poll.set_read_timeout(5, 0);
  if (!config.http_token.empty()) poll.set_bearer_token_auth(config.http_token);
  ShowUntil(
      finished, std::chrono::milliseconds(200), printer,
      [&poll]() -> std::optional<store::CompactionProgress> {
        httplib::Result got = poll.Get("/api/v1/compact");
        if (!got || got->status != 200) return std::nullopt;
        return store::CompactionProgressFromJson(nlohmann::json::parse(got->body, nullptr, false));
      });
  worker.join();
  printer.Done(nullptr);
  httplib::Result& res = *posted;
  if (!res) {
    std::cerr << "komoku compact: " << store.status().message() << ", and its HTTP API at " << host
              << ":" << port << " does not answer: " << httplib::to_string(res.error()) << "\n";
    return 1;
  }
  if (res->status != 200) {
    std::cerr << "komoku compact: the service answered " << res->status << ": " << res->body
              << "\n";
    return 1;
  }
  std::cout << res->body << "\n";
  return 0;
}

// Lists the live segments; reads only, so it may run beside the service.
int Segments(const Config& config, bool json, bool keys) {
  store::ColdStoreOptions options;
  options.dir = (std::filesystem::path(config.store_data_dir) / "segments").string();
  options.read_only = true;
  if (!std::filesystem::exists(options.dir)) {
    if (json) {
      std::cout << store::SegmentsJson({}, keys).dump() << "\n";
    } else {
      std::cout << "no segments in " << options.dir << "\n";
    }
    return 0;
  }
  Result<std::unique_ptr<store::ColdStore>> cold =
      store::ColdStore::Open(options, nullptr, nullptr);
  if (!cold.ok()) {
    std::cerr << "komoku segments: " << cold.status().ToString() << "\n";
    return 1;
  }
  std::vector<store::SegmentListing> list = store::ListSegments(*(*cold)->state());
  for (const std::string& w : (*cold)->Warnings()) std::cerr << "komoku segments: " << w << "\n";
  if (json) {
    std::cout << store::SegmentsJson(list, keys).dump(1) << "\n";
    return 0;
  }
  std::printf("%-44s %-16s %-16s %6s %10s %10s\n", "segment", "from (UTC)", "to (UTC)", "keys",
              "changes", "bytes");
  uint64_t total = 0;
  for (const store::SegmentListing& seg : list) {
    uint64_t changes = 0;
    for (const auto& k : seg.keys) changes += k.changes;
    total += seg.bytes;
    std::printf("%-44s %-16s %-16s %6zu %10llu %10llu\n", seg.name.c_str(),
                store::FormatUtc(seg.from_ms, kDay).c_str(),
                store::FormatUtc(seg.to_ms, kDay).c_str(), seg.keys.size(),
                static_cast<unsigned long long>(changes),
                static_cast<unsigned long long>(seg.bytes));
    if (!keys) continue;
    for (const auto& k : seg.keys) {
      std::printf("    %-40s %-8s %10llu changes %10llu raw bytes %10llu rollup bytes\n",
                  k.key.c_str(), store::KeyTypeName(k.type),
                  static_cast<unsigned long long>(k.changes),
                  static_cast<unsigned long long>(k.raw_bytes),
                  static_cast<unsigned long long>(k.rollup_bytes));
    }
  }
  std::printf("%zu segments, %llu bytes\n", list.size(), static_cast<unsigned long long>(total));
  return 0;
}

std::string SegmentsDir(const Config& config) {
  return (std::filesystem::path(config.store_data_dir) / "segments").string();
}

void PrintDamage(const store::ColdDamage& d) {
  std::printf(
      "%-44s %-22s %-18s %-20s %-20s %s\n", d.segment.c_str(), d.block.key.c_str(),
      (d.salvaged ? "lost: " + store::DamagedPartName(d.block) : store::DamagedPartName(d.block))
          .c_str(),
      store::FormatUtc(d.block.from_ms, "%Y-%m-%dT%H:%M:%SZ").c_str(),
      store::FormatUtc(d.block.to_ms, "%Y-%m-%dT%H:%M:%SZ").c_str(),
      d.salvaged
          ? "(salvaged)"
          : ("block at offset " + std::to_string(d.block.offset) + ": " + d.block.reason).c_str());
}

// Checks every block of every live segment; reads only, so it may run
// beside the service. Exit status 1 when a segment has a damaged block or
// cannot be read at all (something to salvage or restore), 0 otherwise; the
// history earlier salvages left out is listed but is no longer a fault.
int VerifySegments(const Config& config, bool json) {
  store::ColdStoreOptions options;
  options.dir = SegmentsDir(config);
  options.read_only = true;
  if (!std::filesystem::exists(options.dir)) {
    if (json) {
      std::cout << nlohmann::json{{"segments", 0},
                                  {"damaged", nlohmann::json::array()},
                                  {"unreadable", nlohmann::json::array()}}
                       .dump()
                << "\n";
    } else {
      std::cout << "no segments in " << options.dir << "\n";
    }
    return 0;
  }
  Result<std::unique_ptr<store::ColdStore>> cold =
      store::ColdStore::Open(options, nullptr, nullptr);
  if (!cold.ok()) {
    std::cerr << "komoku segments: " << cold.status().ToString() << "\n";
    return 1;
  }
  std::shared_ptr<const store::ColdState> state = (*cold)->state();
  std::vector<std::string> unreadable = (*cold)->Warnings();  // segments Open refused
  for (const auto& seg : state->segments) {
    Result<std::vector<store::BlockDamage>> blocks = seg->Check({});
    seg->ReleasePages();
    if (!blocks.ok()) {
      unreadable.push_back("segment " + std::filesystem::path(seg->base()).filename().string() +
                           " cannot be read: " + blocks.status().ToString());
    }
  }
  const std::vector<store::ColdDamage> damage = state->Damage();
  size_t live = 0;
  for (const auto& d : damage) live += !d.salvaged;
  if (json) {
    std::cout << nlohmann::json{{"segments", state->segments.size()},
                                {"damaged", store::DamageJson(damage)},
                                {"unreadable", unreadable}}
                     .dump(1)
              << "\n";
  } else {
    for (const std::string& u : unreadable) std::cout << u << "\n";
    if (!damage.empty()) {
      std::printf("%-44s %-22s %-18s %-20s %-20s %s\n", "segment", "key", "missing", "from (UTC)",
                  "to (UTC)", "where");
      for (const auto& d : damage) PrintDamage(d);
    }
    std::printf("%zu segments checked: %zu damaged blocks, %zu unreadable segments%s\n",
                state->segments.size(), live, unreadable.size(),
                live ? "; `komoku segments --salvage <segment>` (service stopped) rewrites a "
                       "segment without its damaged blocks"
                     : "");
  }
  return live > 0 || !unreadable.empty() ? 1 : 0;
}

// Rewrites damaged segments without their damaged blocks (ColdStore::
// Salvage). Needs the data directory to itself: the service keeps segments
// mapped and rewrites the manifest, so it must be stopped first. `which` is
// a segment's name (a path or an extension is accepted) or "all".
int SalvageSegments(const Config& config, const std::string& which) {
  const std::string lock_path = store::Store::LockPath(config.store_data_dir);
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    std::cerr << "komoku segments: cannot open " << lock_path << ": " << std::strerror(errno)
              << "\n";
    return 1;
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock_fd};
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    std::cerr << "komoku segments: " << config.store_data_dir
              << " is in use by a running komoku; stop it first (systemctl stop komoku), salvage, "
                 "then start it again\n";
    return 1;
  }
  store::ColdStoreOptions options;
  options.dir = SegmentsDir(config);
  options.quarantine_dir = (std::filesystem::path(config.store_data_dir) / "quarantine").string();
  Result<std::unique_ptr<store::ColdStore>> cold =
      store::ColdStore::Open(options, nullptr, nullptr);
  if (!cold.ok()) {
    std::cerr << "komoku segments: " << cold.status().ToString() << "\n";
    return 1;
  }
  std::vector<std::string> names;
  if (which == "all") {
    for (const auto& seg : (*cold)->state()->segments) {
      Result<std::vector<store::BlockDamage>> blocks = seg->Check({});
      seg->ReleasePages();
      if (!blocks.ok() || !blocks->empty()) {
        names.push_back(std::filesystem::path(seg->base()).filename().string());
      }
    }
    if (names.empty()) std::cout << "no segment has a damaged block\n";
  } else {
    std::filesystem::path p(which);
    std::string name = p.filename().string();
    if (p.extension() == ".kkd" || p.extension() == ".kki") name = p.stem().string();
    names.push_back(name);
  }
  int rc = 0;
  for (const std::string& name : names) {
    Result<store::ColdStore::SalvageReport> r = (*cold)->Salvage(name, store::ComputeRollups);
    if (!r.ok()) {
      std::cerr << "komoku segments: " << r.status().ToString() << "\n";
      rc = 1;
      continue;
    }
    std::cout << "salvaged " << r->segment << " as " << r->replacement << ": " << r->keys
              << " keys kept; the damaged files are kept as " << r->kept_aside << ".kkd/.kki\n";
    for (const store::BlockDamage& d : r->recovered) {
      std::cout << "  recomputed from intact raw changes: " << store::DamagedPartName(d) << " of "
                << d.key << "\n";
    }
    for (const store::BlockDamage& d : r->lost) {
      PrintDamage({r->segment, true, 0, d});
    }
  }
  return rc;
}

}  // namespace

std::string FindInstalledConfig() {
  for (const char* path : {"/etc/komoku/komoku.yaml", "config/komoku.yaml"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) return path;
  }
  return "";
}

ServiceAddress RunningServiceAddress(const Config& config) {
  ServiceAddress a{config.http_host, config.http_port};
  // The service wrote where it listens into the lock file it holds.
  std::ifstream in(store::Store::LockPath(config.store_data_dir));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json who = nlohmann::json::parse(text.str(), nullptr, false);
  if (who.is_object() && who.value("http_port", 0) > 0) {
    a.host = who.value("http_host", a.host);
    a.port = who.value("http_port", a.port);
  }
  if (a.host == "0.0.0.0" || a.host.empty()) a.host = "127.0.0.1";
  return a;
}

void AddStoreCommands(CLI::App& parent, int* exit_code) {
  static std::string config_path;
  // Loads the config (exit status 2 when it is bad), checks that its data
  // directory exists (an admin command never makes one: `sudo komoku
  // compact` in the wrong directory used to create an empty ./komoku-data
  // and report success), then runs `fn`.
  auto with_config = [exit_code](std::function<int(const Config&)> fn) {
    return [exit_code, fn = std::move(fn)] {
      const std::string path = config_path.empty() ? FindInstalledConfig() : config_path;
      Result<Config> config = LoadConfigOrDefaults(path);
      if (!config.ok()) {
        std::cerr << "komoku: " << config.status().message() << "\n";
        *exit_code = 2;
        return;
      }
      std::error_code ec;
      if (!std::filesystem::is_directory(config->store_data_dir, ec)) {
        std::cerr << "komoku: no data directory at " << config->store_data_dir << " (from "
                  << (path.empty() ? std::string("the built-in defaults") : path)
                  << "); give the service's configuration with -c\n";
        *exit_code = 1;
        return;
      }
      *exit_code = fn(*config);
    };
  };
  auto* compact = parent.add_subcommand(
      "compact", "Move history older than the hot window into segments now, merge and expire");
  compact->add_option(
      "-c,--config", config_path,
      "YAML configuration (default: /etc/komoku/komoku.yaml, else ./config/komoku.yaml)");
  compact->callback(with_config(Compact));

  static bool json = false;
  static bool keys = false;
  static bool verify = false;
  static std::string salvage;
  auto* segments = parent.add_subcommand("segments", "List the cold segments: key, range, sizes");
  segments->add_option(
      "-c,--config", config_path,
      "YAML configuration (default: /etc/komoku/komoku.yaml, else ./config/komoku.yaml)");
  segments->add_flag("--json", json, "Print JSON (as GET /api/v1/segments)");
  segments->add_flag("--keys", keys, "List each segment's keys with their sizes");
  auto* verify_flag = segments->add_flag("--verify", verify,
                                         "Check every block of every segment; list the damaged "
                                         "ones with key and range (exit 1 when any)");
  segments
      ->add_option("--salvage", salvage,
                   "Rewrite a damaged segment (its name, or 'all') without its damaged blocks; "
                   "the service must be stopped")
      ->excludes(verify_flag);
  segments->callback(with_config([](const Config& c) {
    if (!salvage.empty()) return SalvageSegments(c, salvage);
    if (verify) return VerifySegments(c, json);
    return Segments(c, json, keys);
  }));
}

}  // namespace komoku::app

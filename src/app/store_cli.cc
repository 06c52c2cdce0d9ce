#include "app/store_cli.h"

#include <httplib.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <iostream>

#include "app/config.h"
#include "store/api.h"
#include "store/cold_store.h"
#include "store/store.h"
#include "store/time_param.h"

namespace komoku::app {
namespace {

constexpr const char* kDay = "%Y-%m-%d %H:%M";

// Compacts in this process when no service holds the data directory, else
// asks the running service over its HTTP API.
int Compact(const Config& config) {
  store::StoreOptions options = StoreOptionsOf(config);
  options.start_timers = false;
  options.cold.compact_interval = std::chrono::milliseconds(0);
  options.cold.background = false;  // this process compacts once, in the foreground
  Result<std::unique_ptr<store::Store>> store = store::Store::Open(options, nullptr);
  if (store.ok()) {
    Result<store::CompactionReport> r = (*store)->Compact();
    if (!r.ok()) {
      std::cerr << "komoku compact: " << r.status().ToString() << "\n";
      return 1;
    }
    // Nothing else writes here: leave SQLite without the rows made cold.
    (*store)->WaitColdRowsDeleted();
    std::cout << store::CompactionJson(*r).dump() << "\n";
    return 0;
  }
  if (store.status().reason() != "locked") {
    std::cerr << "komoku compact: " << store.status().ToString() << "\n";
    return 1;
  }
  // The service wrote where it listens into the lock file it holds.
  std::string host = config.http_host;
  int port = config.http_port;
  {
    std::ifstream in(store::Store::LockPath(config.store_data_dir));
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json who = nlohmann::json::parse(text.str(), nullptr, false);
    if (who.is_object() && who.value("http_port", 0) > 0) {
      host = who.value("http_host", host);
      port = who.value("http_port", port);
    }
  }
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  httplib::Client client(host, port);
  client.set_read_timeout(3600, 0);  // a first compaction of much history takes a while
  if (!config.http_token.empty()) client.set_bearer_token_auth(config.http_token);
  httplib::Result res = client.Post("/api/v1/compact");
  if (!res) {
    std::cerr << "komoku compact: " << store.status().message() << ", and its HTTP API at "
              << host << ":" << port
              << " does not answer: " << httplib::to_string(res.error()) << "\n";
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
  Result<std::unique_ptr<store::ColdStore>> cold = store::ColdStore::Open(options, nullptr, nullptr);
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
                static_cast<unsigned long long>(changes), static_cast<unsigned long long>(seg.bytes));
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

// The configuration an admin command uses without -c: the installed one
// (/etc/komoku/komoku.yaml), else ./config/komoku.yaml (a checkout), else
// none (the built-in defaults).
std::string FindInstalledConfig() {
  for (const char* path : {"/etc/komoku/komoku.yaml", "config/komoku.yaml"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) return path;
  }
  return "";
}

}  // namespace

void AddStoreCommands(CLI::App& parent, int* exit_code) {
  static std::string config_path;
  // Loads the config (exit status 2 when it is bad), checks that its data
  // directory exists (an admin command never makes one: `sudo komoku
  // compact` in the wrong directory used to create an empty ./komoku-data
  // and report success), then runs `fn`.
  auto with_config = [exit_code](std::function<int(const Config&)> fn) {
    return [exit_code, fn] {
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
  compact->add_option("-c,--config", config_path, "YAML configuration (default: /etc/komoku/komoku.yaml, else ./config/komoku.yaml)");
  compact->callback(with_config(Compact));

  static bool json = false;
  static bool keys = false;
  auto* segments = parent.add_subcommand("segments", "List the cold segments: key, range, sizes");
  segments->add_option("-c,--config", config_path, "YAML configuration (default: /etc/komoku/komoku.yaml, else ./config/komoku.yaml)");
  segments->add_flag("--json", json, "Print JSON (as GET /api/v1/segments)");
  segments->add_flag("--keys", keys, "List each segment's keys with their sizes");
  segments->callback(with_config([](const Config& c) { return Segments(c, json, keys); }));
}

}  // namespace komoku::app

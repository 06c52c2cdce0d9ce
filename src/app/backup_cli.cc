#include "app/backup_cli.h"

#include <httplib.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "app/config.h"
#include "app/store_cli.h"
#include "store/backup.h"
#include "store/store.h"
#include "wire/api.h"

namespace komoku::app {
namespace {

// Backs up in this process when no service holds the data directory (the
// Store is opened, which takes its lock), else asks the running service
// (POST /api/v1/backup), which writes it while ingest goes on: only the
// process holding the store can keep compaction from replacing segments
// between reading the MANIFEST and the hot store (docs/operations.md).
int Backup(const Config& config, const std::string& dir_arg) {
  const std::string dir = std::filesystem::absolute(dir_arg).lexically_normal().string();
  std::error_code ec;
  if (!std::filesystem::is_directory(config.store_data_dir, ec)) {
    std::cerr << "komoku backup: the data directory " << config.store_data_dir
              << " does not exist (store.data_dir; give the service's configuration with -c)\n";
    return 1;
  }
  store::StoreOptions options = StoreOptionsOf(config);
  options.start_timers = false;
  options.cold.compact_interval = std::chrono::milliseconds(0);
  options.cold.background = false;
  auto log =
      std::make_shared<spdlog::logger>("store", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_pattern("komoku backup: %v");
  Result<std::unique_ptr<store::Store>> opened = store::Store::Open(options, log);
  if (opened.ok()) {
    store::BackupOptions b;
    b.dir = dir;
    Result<store::BackupReport> r = (*opened)->Backup(b);
    if (!r.ok()) {
      std::cerr << "komoku backup: " << r.status().ToString() << "\n";
      return 1;
    }
    std::cout << store::BackupJson(*r).dump() << "\n";
    return 0;
  }
  if (opened.status().reason() != "locked") {
    std::cerr << "komoku backup: " << opened.status().ToString() << "\n";
    return 1;
  }
  const ServiceAddress address = RunningServiceAddress(config);
  const std::string& host = address.host;
  const int port = address.port;
  httplib::Client client(host, port);
  client.set_read_timeout(3600, 0);  // waits for a compaction under way, then copies
  if (!config.http_token.empty()) client.set_bearer_token_auth(config.http_token);
  httplib::Result res = client.Post(httplib::append_query_params("/api/v1/backup", {{"dir", dir}}));
  if (!res) {
    std::cerr << "komoku backup: " << opened.status().message() << ", and its HTTP API at " << host
              << ":" << port << " does not answer: " << httplib::to_string(res.error()) << "\n";
    return 1;
  }
  if (res->status != 200) {
    std::cerr << "komoku backup: the service answered " << res->status << ": " << res->body << "\n";
    return 1;
  }
  std::cout << res->body << "\n";
  return 0;
}

int Restore(const Config& config, const std::string& backup, const std::string& data_dir,
            bool force, bool check_only) {
  if (check_only) {
    Result<std::vector<std::string>> files = store::VerifyBackup(backup);
    if (!files.ok()) {
      std::cerr << "komoku restore: " << files.status().message() << "\n";
      return 1;
    }
    std::cout << backup << ": " << files->size() << " files, every checksum right\n";
    return 0;
  }
  store::RestoreOptions options;
  options.backup_dir = backup;
  options.data_dir = data_dir.empty() ? config.store_data_dir : data_dir;
  options.force = force;
  Result<store::RestoreReport> r = store::RestoreBackup(options);
  if (!r.ok()) {
    std::cerr << "komoku restore: " << r.status().message() << "\n";
    return 1;
  }
  std::cout << "restored " << r->files << " files (" << r->bytes << " bytes) from " << backup
            << " into " << options.data_dir
            << (r->replaced.empty() ? "" : "; what it held before is deleted") << "\n";
  return 0;
}

}  // namespace

void AddBackupCommands(CLI::App& parent, int* exit_code) {
  struct Args {
    std::string config_path;
    std::string dir;
    std::string data_dir;
    bool force = false;
    bool check = false;
  };
  auto args = std::make_shared<Args>();
  auto load = [args, exit_code](Config* config) {
    Result<Config> loaded =
        LoadConfigOrDefaults(args->config_path.empty() ? FindInstalledConfig() : args->config_path);
    if (!loaded.ok()) {
      std::cerr << "komoku: " << loaded.status().message() << "\n";
      *exit_code = 2;
      return false;
    }
    *config = std::move(loaded.value());
    return true;
  };

  auto* backup = parent.add_subcommand(
      "backup",
      "Write a consistent backup of the data directory into DIR (new or empty), while the "
      "service runs or not");
  backup->add_option(
      "-c,--config", args->config_path,
      "YAML configuration (default: /etc/komoku/komoku.yaml, else ./config/komoku.yaml)");
  backup->add_option("dir", args->dir, "The backup directory")->required();
  backup->callback([args, exit_code, load] {
    Config config;
    if (!load(&config)) return;
    *exit_code = Backup(config, args->dir);
  });

  auto* restore = parent.add_subcommand(
      "restore",
      "Check a backup's checksums, then restore it into the (stopped) service's data directory");
  restore->add_option(
      "-c,--config", args->config_path,
      "YAML configuration (default: /etc/komoku/komoku.yaml, else ./config/komoku.yaml)");
  restore->add_option("backup", args->dir, "The backup directory")->required();
  restore->add_option("--data-dir", args->data_dir,
                      "Restore here instead of the configuration's store.data_dir");
  restore->add_flag("--force", args->force, "Replace a data directory that holds data");
  restore->add_flag("--check", args->check, "Only check the backup's checksums");
  restore->callback([args, exit_code, load] {
    Config config;
    if (!load(&config)) return;
    *exit_code = Restore(config, args->dir, args->data_dir, args->force, args->check);
  });
}

}  // namespace komoku::app

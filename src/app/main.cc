// The komoku executable: parse the command line, then hand over to the
// subcommand (run, check-config, config-example, config-docs, keyka,
// mappings, store commands, backup, restore, import, export).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "app/backup_cli.h"
#include "app/config.h"
#include "app/import_cli.h"
#include "app/keyka_cli.h"
#include "app/mappings_cli.h"
#include "app/service.h"
#include "app/store_cli.h"

namespace {

// Loads the given file, or the defaults when none is given; prints the error.
bool LoadOrDefault(const std::string& path, komoku::app::Config* config) {
  komoku::Result<komoku::app::Config> loaded = komoku::app::LoadConfigOrDefaults(path);
  if (!loaded.ok()) {
    std::cerr << "komoku: " << loaded.status().message() << "\n";
    return false;
  }
  *config = std::move(loaded.value());
  return true;
}

}  // namespace

namespace {

// The command line (main): a subcommand's exit code, 2 for a usage error.
int Main(int argc, char** argv) {
#if defined(__GLIBC__)
  // glibc gives each thread that allocates an arena of its own and keeps
  // what they freed: komoku's 26 threads (16 HTTP workers) held twice the
  // heap they use (footprint_bench: 66 -> 28 MB RssAnon with 10,000 keys).
  // Two arenas are plenty for its two busy threads, the MQTT callback and
  // the store writer. MALLOC_ARENA_MAX in the environment still wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) (void)mallopt(M_ARENA_MAX, 2);
  // Blocks of 1 MB and more (a /metrics answer on 10,000 keys is 2 MB) are
  // mapped on their own and unmapped when freed. glibc otherwise raises that
  // threshold to the size of each such block freed, after which they come
  // from the heap and stay there: each /metrics on 10,000 keys left 6-10 MB
  // more resident, 1.6 MB with the threshold fixed (docs/benchmarks.md,
  // Footprint). Below it, up to 1 MB free at the top of a heap is kept
  // rather than given back: a query's buffers of a few hundred KB (a year
  // of hourly points) then reuse pages instead of faulting in fresh ones
  // each time, which cost a 5 ms query 3 ms (docs/benchmarks.md, "PromQL
  // from rollups"). MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ in
  // the environment still win.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) {
    (void)mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  }
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) {
    (void)mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
  }
#endif
  CLI::App app{"Komoku: home-automation history over MQTT, with HTTP queries"};
  app.set_version_flag("--version", std::string("komoku ") + KOMOKU_VERSION);
  app.require_subcommand(1);
  int exit_code = 0;

  std::string config_path;
  komoku::app::RunOptions run_options;
  auto* run = app.add_subcommand("run", "Run the service until SIGINT or SIGTERM");
  run->add_option("-c,--config", config_path, "YAML configuration (default: built-in defaults)");
  run->add_option("--ready-file", run_options.ready_file,
                  "Write {\"pid\", \"http_port\"} here once ready");
  run->callback([&] {
    komoku::app::Config config;
    if (!LoadOrDefault(config_path, &config)) {
      exit_code = 2;
      return;
    }
    run_options.config_path = config_path;
    exit_code = komoku::app::RunService(config, run_options);
  });

  auto* check = app.add_subcommand("check-config", "Validate a configuration file and exit");
  check->add_option("-c,--config", config_path, "YAML configuration")->required();
  check->callback([&] {
    komoku::app::Config config;
    if (!LoadOrDefault(config_path, &config)) {
      exit_code = 2;
      return;
    }
    std::cout << config_path << ": OK\n";
  });

  app.add_subcommand("config-example", "Print the commented example configuration")->callback([] {
    std::cout << komoku::app::ConfigExample();
  });
  app.add_subcommand("config-docs", "Print the configuration reference (Markdown)")->callback([] {
    std::cout << komoku::app::ConfigDocs();
  });

  komoku::app::AddKeykaCommand(app, &exit_code);
  komoku::app::AddMappingsCommand(app, &exit_code);
  komoku::app::AddStoreCommands(app, &exit_code);
  komoku::app::AddBackupCommands(app, &exit_code);
  komoku::app::AddImportCommands(app, &exit_code);

  // An unknown command is named as such (CLI11 would say "A subcommand is
  // required"), and every usage error exits 2, as getopt tools do.
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "komoku: unknown command '" << argv[1] << "' (commands: " << names
                << "; komoku --help says more)\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}

}  // namespace

// An exception no subcommand expected ends komoku with a message and exit
// code 1 instead of std::terminate.
int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "komoku: " << e.what() << "\n";
    return 1;
  }
}

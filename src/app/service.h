// `komoku run`: wires the store, the HTTP server and the MQTT bridge, and runs
// until SIGINT or SIGTERM. SIGHUP reloads log.level, keys:, mappings: and
// derived: from the config file, all or none (docs/operations.md).
#pragma once

#include <string>

#include "app/config.h"

namespace komoku::app {

struct RunOptions {
  // When set, written (atomically) once the service is ready:
  // {"pid": N, "http_port": P}. Tests use it to learn the port the OS chose.
  std::string ready_file;
  // The file `config` was read from, read again on SIGHUP; empty for the
  // built-in defaults (then SIGHUP has nothing to reload).
  std::string config_path;
};

// Returns the process exit status: 0 after a clean stop, 1 when the start
// failed (the reason is logged).
int RunService(const Config& config, const RunOptions& options);

}  // namespace komoku::app

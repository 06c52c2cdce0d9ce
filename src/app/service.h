// `komoku run`: wires the store, the HTTP server and the MQTT bridge, and runs
// until SIGINT or SIGTERM.
#pragma once

#include <string>

#include "app/config.h"

namespace komoku::app {

struct RunOptions {
  // When set, written (atomically) once the service is ready:
  // {"pid": N, "http_port": P}. Tests use it to learn the port the OS chose.
  std::string ready_file;
};

// Returns the process exit status: 0 after a clean stop, 1 when the start
// failed (the reason is logged).
int RunService(const Config& config, const RunOptions& options);

}  // namespace komoku::app

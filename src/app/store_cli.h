// `komoku compact` and `komoku segments`: cold history from the command line
// (docs/operations.md).
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace komoku::app {

struct Config;

// The configuration an admin command uses without -c: the installed one
// (/etc/komoku/komoku.yaml), else ./config/komoku.yaml (a checkout), else
// "" (the built-in defaults).
std::string FindInstalledConfig();

// Where the service that holds the data directory's lock answers HTTP: what
// it wrote into the lock file, else the configuration's http.listen; a
// wildcard address becomes 127.0.0.1.
struct ServiceAddress {
  std::string host;
  int port = 0;
};
ServiceAddress RunningServiceAddress(const Config& config);

// Registers `compact` and `segments` on `parent`; their exit status goes to
// *exit_code (which must outlive parent).
void AddStoreCommands(CLI::App& parent, int* exit_code);

}  // namespace komoku::app

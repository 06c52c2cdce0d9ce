// `komoku keyka ...`: the KeyKa command-line tools (pack, get, range, prefix,
// nearest, dump, verify, stats). Owned by the KeyKa work.
#pragma once

namespace CLI {
class App;
}

namespace komoku::app {

// Registers the `keyka` subcommand tree on `parent`. When a keyka subcommand
// runs, it stores its exit status in *exit_code (which must outlive parent).
void AddKeykaCommand(CLI::App& parent, int* exit_code);

}  // namespace komoku::app

// `komoku compact` and `komoku segments`: cold history from the command line
// (docs/operations.md).
#pragma once

namespace CLI {
class App;
}

namespace komoku::app {

// Registers `compact` and `segments` on `parent`; their exit status goes to
// *exit_code (which must outlive parent).
void AddStoreCommands(CLI::App& parent, int* exit_code);

}  // namespace komoku::app

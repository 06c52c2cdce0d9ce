// `komoku backup` and `komoku restore` (docs/operations.md, "Backup and
// restore"); the format and the work are in store/backup.h.
#pragma once

namespace CLI {
class App;
}

namespace komoku::app {

// Registers `backup` and `restore` on `parent`; their exit status goes to
// *exit_code (which must outlive parent).
void AddBackupCommands(CLI::App& parent, int* exit_code);

}  // namespace komoku::app

// `komoku import` and `komoku export` (docs/operations.md, "Import and
// export"); the file formats are in wire/import_format.h.
#pragma once

namespace CLI {
class App;
}

namespace komoku::app {

// Registers `import` and `export` on `parent`; their exit status goes to
// *exit_code (which must outlive parent).
void AddImportCommands(CLI::App& parent, int* exit_code);

}  // namespace komoku::app

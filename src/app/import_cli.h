// `komoku import` and `komoku export` (docs/operations.md, "Import and
// export"); the file formats are in wire/import_format.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>

namespace CLI {
class App;
}

namespace komoku::app {

// Registers `import` and `export` on `parent`; their exit status goes to
// *exit_code (which must outlive parent).
void AddImportCommands(CLI::App& parent, int* exit_code);

// The rows `komoku import` gathers for one hand-over of old rows to
// segments (Store::ImportCold) when --cold-rows does not say: as many as a
// quarter of `available_bytes` holds at ~210 bytes a row (measured, bench/
// import_bench), within [kColdRowsMin, kColdRowsMax]; kColdRowsMax when
// the available memory is unknown (0). A Raspberry Pi with 1 GB, ~750 MB
// available, gets ~890,000; one with 512 MB ~400,000.
inline constexpr size_t kColdRowsMax = 1000000;
inline constexpr size_t kColdRowsMin = 10000;
size_t ColdRowsFor(int64_t available_bytes);

// MemAvailable of a /proc/meminfo text, in bytes: the memory the kernel
// says is available to start new work without swapping; 0 when missing.
int64_t MemAvailableBytes(std::istream& meminfo);

}  // namespace komoku::app

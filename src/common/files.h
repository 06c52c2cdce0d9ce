// Small whole-file operations for the state files Komoku keeps beside its
// database (discovered entities, ...): installed by temporary file, fsync
// and rename, as LevelDB installs its CURRENT file, so that after a crash
// at any moment the file is the old one or the new one, never a part.
//
// Free functions; thread-safe as far as two writers never share a path.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace komoku::store {

// Writes `contents` to `<path>.tmp`, flushes it, renames it over `path` and
// flushes the directory. On failure `path` is untouched, the temporary file
// removed, and the Status names the file, the step and the system's reason.
Status WriteFileAtomically(const std::string& path, std::string_view contents);

// The whole file; NotFound when it does not exist, IOError when it cannot
// be read.
Result<std::string> ReadWholeFile(const std::string& path);

}  // namespace komoku::store

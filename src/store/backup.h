// Backup and restore of a data directory (docs/operations.md, "Backup and
// restore").
//
// A backup is a directory holding what a data directory needs to start
// again: komoku.db (a copy of the hot store made with SQLite's online backup
// API), segments/MANIFEST and the segment files it names (hard links to the
// immutable files, copies across file systems), the state files of the
// adapters (discovery.json, derived-state.json) when present, BACKUP.json
// (when and up to which change) and, written last, SHA256SUMS: the SHA-256
// of every other file in `sha256sum` format. A directory without SHA256SUMS
// is a backup that did not finish.
//
// Store::Backup (store.h) makes one from a running Store; the functions here
// check one and restore it into a stopped data directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace komoku::store {

// What Store::Backup takes.
struct BackupOptions {
  // The backup directory: created; if it exists it must be empty.
  std::string dir;
  // Files of the data directory the adapters keep (names only), copied
  // when present.
  std::vector<std::string> state_files = {"discovery.json", "derived-state.json"};
  // fsync what is written (tests may turn it off).
  bool sync = true;
};

// What a backup holds; BACKUP.json records it.
struct BackupReport {
  std::string dir;
  int64_t created_ms = 0;  // when the hot store's snapshot was taken (UTC ms)
  // Every change with a sequence number up to this is in the backup, and
  // none after it.
  uint64_t seq = 0;
  uint64_t cold_seq = 0;           // what the segments hold (the MANIFEST's mark)
  size_t segments = 0;             // live segments
  size_t linked = 0;               // segment files hard-linked (the rest were copied)
  std::vector<std::string> files;  // every file, relative to dir, SHA256SUMS last
  uint64_t bytes = 0;
};

// The names the backup format uses.
inline constexpr const char* kBackupSums = "SHA256SUMS";
inline constexpr const char* kBackupInfo = "BACKUP.json";

// The SHA-256 of a file, as 64 lowercase hex digits.
Result<std::string> Sha256OfFile(const std::string& path);

// Checks a backup: SHA256SUMS present and well formed, every file it lists
// present with its checksum, komoku.db listed, and every segment the backed
// up MANIFEST names listed. The error names the first file at fault.
// Returns the files checked (relative paths).
Result<std::vector<std::string>> VerifyBackup(const std::string& dir);

struct RestoreOptions {
  std::string backup_dir;
  // The data directory to restore into; it must not be in use by a running
  // komoku, and must be missing or empty unless `force`.
  std::string data_dir;
  bool force = false;
  bool sync = true;
};

struct RestoreReport {
  size_t files = 0;
  uint64_t bytes = 0;
  std::string replaced;  // with force: what the data directory held, now deleted ("" if none)
};

// Verifies the backup (VerifyBackup), copies it into a new directory beside
// the data directory, syncs it, then renames it into place (with `force`,
// the old data directory is first renamed aside and deleted once the new one
// is in place). A failure at any step leaves the data directory as it was
// and removes what it wrote.
Result<RestoreReport> RestoreBackup(const RestoreOptions& options);

}  // namespace komoku::store

// A Home Assistant recorder database (SQLite, schema 31 or newer: `states`
// with `states_meta` and `state_attributes`, long-term `statistics` with
// `statistics_meta`) read as changes for `komoku import`
// (docs/operations.md, "Import and export").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "wire/import_format.h"

namespace komoku::app {

// Whether the file starts as an SQLite database does.
bool IsSqliteFile(const std::string& path);

// Where a change came from: the table and its row id.
struct RecorderRef {
  const char* table;
  int64_t id;
};

// Calls `fn` with each change of the database, oldest first within each
// table: first the long-term statistics older than the entity's first
// state (an hourly mean, or a meter's reading), then the states. Rows a
// change cannot be made of (unknown, unavailable, a removed entity) are
// skipped. The database is opened read-only. An error when the file is not
// a recorder database.
Status ReadRecorder(const std::string& path,
                    const std::function<void(store::ImportRow&& row, RecorderRef ref)>& fn);

}  // namespace komoku::app

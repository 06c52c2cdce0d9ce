// The hot store's schema as src/hot/hot_store.cc creates it (kSchemaV1
// to kSchemaV3, user_version 3, HotStore::kPageSize, auto_vacuum
// INCREMENTAL), for benchmarks that write its tables directly. Keep in step
// with hot_store.cc: a file without auto_vacuum is converted by a VACUUM
// when komoku opens it, minutes for the footprint benchmark's 4 GB year.
#pragma once

namespace komoku::bench {

inline constexpr int kHotPageSize = 1024;

// For a new, empty file (the page size comes first).
inline constexpr const char* kHotSchema = R"sql(
PRAGMA page_size=1024;
PRAGMA auto_vacuum=INCREMENTAL;
CREATE TABLE keys(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  created_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE changes(
  key_id INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  value ANY NOT NULL
) STRICT;
CREATE INDEX changes_by_key_time ON changes(key_id, time_ms);
ALTER TABLE keys ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN last_seen_ms INTEGER;
CREATE TABLE recent(
  key_id INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  value ANY NOT NULL
) STRICT;
PRAGMA user_version=3;
)sql";

}  // namespace komoku::bench

// RAII owners for SQLite handles, internal to the hot store.
//
// A Db and its Stmts belong to one thread at a time (SQLite connections are
// opened in multi-thread mode); a Stmt must not outlive its Db.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace komoku::store {

class Db;

// A prepared statement, prepared once and reset after each use.
class Stmt {
 public:
  Stmt() = default;
  Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Stmt& operator=(Stmt&& other) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  void BindInt64(int index, int64_t v) { sqlite3_bind_int64(stmt_, index, v); }
  void BindDouble(int index, double v) { sqlite3_bind_double(stmt_, index, v); }
  void BindText(int index, std::string_view v) {
    sqlite3_bind_text(stmt_, index, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindNull(int index) { sqlite3_bind_null(stmt_, index); }

  // Steps once: true with a row, false when done; *status set on error.
  bool Step(Status* status);
  // Runs to completion (for statements without rows), then resets.
  Status Run();
  // Resets and clears bindings for the next use.
  void Reset();

  int ColumnType(int col) const { return sqlite3_column_type(stmt_, col); }
  int64_t ColumnInt64(int col) const { return sqlite3_column_int64(stmt_, col); }
  double ColumnDouble(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string ColumnText(int col) const;

 private:
  friend class Db;
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// A connection.
class Db {
 public:
  // Opens (creating when `create`) the database file at `path`.
  static Result<std::unique_ptr<Db>> Open(const std::string& path, bool create);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status Exec(std::string_view sql);
  Result<Stmt> Prepare(std::string_view sql);
  // The first column of the first row of `sql` as an integer.
  Result<int64_t> QueryInt(std::string_view sql);

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* db_;
  std::string path_;
};

// A Status that carries SQLite's own message: "<what>: <sqlite3_errmsg>".
Status SqliteError(sqlite3* db, std::string_view what);

}  // namespace komoku::store

// A thin RAII layer over the SQLite C API (Debian's libsqlite3): a connection,
// prepared statements and transactions, with every failure turned into an
// absl::Status that names the operation and carries SQLite's own message.
//
// Not thread-safe by itself: a Database is used by one thread at a time (the
// Store above it holds a mutex).
#ifndef OTARO_SERVER_STORE_SQLITE_H_
#define OTARO_SERVER_STORE_SQLITE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct sqlite3;
struct sqlite3_stmt;

namespace otaro::server::sqlite {

// A BLOB parameter (strings bind as TEXT).
struct Blob {
  absl::string_view bytes;
};

class Database;

// One prepared statement. Bind parameters (1-based, as SQLite counts), Step
// through rows, read columns (0-based) of the current row.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  absl::Status Bind(int index, int64_t value);
  absl::Status Bind(int index, uint64_t value);
  absl::Status Bind(int index, int value) { return Bind(index, static_cast<int64_t>(value)); }
  absl::Status Bind(int index, double value);
  absl::Status Bind(int index, absl::string_view text);
  absl::Status Bind(int index, const std::string& text) {
    return Bind(index, absl::string_view(text));
  }
  absl::Status Bind(int index, const char* text) { return Bind(index, absl::string_view(text)); }
  absl::Status Bind(int index, Blob blob);
  absl::Status Bind(int index, std::nullptr_t);
  template <typename T>
  absl::Status Bind(int index, const std::optional<T>& value) {
    return value.has_value() ? Bind(index, *value) : Bind(index, nullptr);
  }

  // Binds every argument in order, from parameter 1.
  template <typename... Args>
  absl::Status BindAll(const Args&... args) {
    int index = 0;
    absl::Status status;
    ((status.ok() ? (status = Bind(++index, args), 0) : 0), ...);
    return status;
  }

  // true: a row is ready; false: done.
  absl::StatusOr<bool> Step();
  // Steps a statement that returns no rows (INSERT/UPDATE/DELETE/DDL).
  absl::Status Run();
  // Makes the statement runnable again (bindings are kept).
  void Reset();

  bool IsNull(int column) const;
  int64_t Int(int column) const;
  double Double(int column) const;
  // TEXT or BLOB contents (copied).
  std::string Text(int column) const;

 private:
  friend class Database;
  Statement(Database* db, sqlite3_stmt* stmt, std::string sql)
      : db_(db), stmt_(stmt), sql_(std::move(sql)) {}
  absl::Status CheckBind(int rc, int index) const;

  Database* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
};

struct OpenOptions {
  // How long a statement waits for another connection's lock (other
  // processes may open the same file: tools, tests).
  int busy_timeout_ms = 5000;
};

class Database {
 public:
  // Opens (creating if needed) the file at `path` in WAL mode with
  // synchronous=FULL and foreign keys on: a committed transaction survives a
  // crash or power loss, an uncommitted one leaves no trace.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path,
                                                        const OpenOptions& options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements that return no rows.
  absl::Status Exec(const std::string& sql);
  absl::StatusOr<Statement> Prepare(const std::string& sql);
  // Prepare + BindAll + Run.
  template <typename... Args>
  absl::Status Run(const std::string& sql, const Args&... args) {
    auto statement = Prepare(sql);
    if (!statement.ok()) return statement.status();
    if (absl::Status status = statement->BindAll(args...); !status.ok()) return status;
    return statement->Run();
  }

  int64_t LastInsertRowId() const;
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int Changes() const;
  bool InTransaction() const;
  const std::string& path() const { return path_; }

  // A status for SQLite result code `rc` of operation `what` (e.g. "prepare
  // <sql>"), with the connection's error message.
  absl::Status Error(int rc, absl::string_view what) const;

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* db_;
  std::string path_;
};

// BEGIN IMMEDIATE ... COMMIT. Rolls back on destruction unless committed, so an
// early error return leaves the database as it was.
class Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(Database* db);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  absl::Status Commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;  // null once committed or rolled back
};

}  // namespace otaro::server::sqlite

#endif  // OTARO_SERVER_STORE_SQLITE_H_

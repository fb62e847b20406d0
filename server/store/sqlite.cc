#include "server/store/sqlite.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace otaro::server::sqlite {
namespace {

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      return rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE
                 ? absl::StatusCode::kAlreadyExists
                 : absl::StatusCode::kFailedPrecondition;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
    case SQLITE_ERROR:
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

// --- Statement ---------------------------------------------------------------

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_), sql_(std::move(other.sql_)) {
  other.stmt_ = nullptr;
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = other.stmt_;
    sql_ = std::move(other.sql_);
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

absl::Status Statement::CheckBind(int rc, int index) const {
  if (rc == SQLITE_OK) return absl::OkStatus();
  return db_->Error(rc, absl::StrCat("bind parameter ", index, " of '", sql_, "'"));
}

absl::Status Statement::Bind(int index, int64_t value) {
  return CheckBind(sqlite3_bind_int64(stmt_, index, value), index);
}

absl::Status Statement::Bind(int index, uint64_t value) {
  // SQLite integers are signed 64-bit; larger values would silently wrap.
  if (value > static_cast<uint64_t>(INT64_MAX)) {
    return absl::OutOfRangeError(absl::StrCat("parameter ", index, " of '", sql_, "': ", value,
                                              " does not fit a 64-bit signed integer"));
  }
  return Bind(index, static_cast<int64_t>(value));
}

absl::Status Statement::Bind(int index, double value) {
  return CheckBind(sqlite3_bind_double(stmt_, index, value), index);
}

absl::Status Statement::Bind(int index, absl::string_view text) {
  return CheckBind(
      sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
      index);
}

absl::Status Statement::Bind(int index, Blob blob) {
  // A null data pointer would bind NULL; an empty blob must stay a blob.
  static const char kEmpty = 0;
  const char* data = blob.bytes.empty() ? &kEmpty : blob.bytes.data();
  return CheckBind(sqlite3_bind_blob64(stmt_, index, data, blob.bytes.size(), SQLITE_TRANSIENT),
                   index);
}

absl::Status Statement::Bind(int index, std::nullptr_t) {
  return CheckBind(sqlite3_bind_null(stmt_, index), index);
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // sqlite3_step already reset the error on the connection; report it now.
  return db_->Error(rc, absl::StrCat("run '", sql_, "'"));
}

absl::Status Statement::Run() {
  auto row = Step();
  if (!row.ok()) return row.status();
  if (*row) return absl::InternalError(absl::StrCat("'", sql_, "' returned rows; expected none"));
  return absl::OkStatus();
}

void Statement::Reset() { sqlite3_reset(stmt_); }

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

double Statement::Double(int column) const { return sqlite3_column_double(stmt_, column); }

std::string Statement::Text(int column) const {
  const void* data = sqlite3_column_blob(stmt_, column);
  int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr || size <= 0) return {};
  return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

// --- Database ----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                         const OpenOptions& options) {
  sqlite3* handle = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &handle,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
      nullptr);
  if (rc != SQLITE_OK) {
    std::string message = handle != nullptr ? sqlite3_errmsg(handle) : sqlite3_errstr(rc);
    sqlite3_close_v2(handle);
    return absl::Status(CodeFor(rc),
                        absl::StrCat("cannot open the database ", path, ": ", message));
  }
  std::unique_ptr<Database> db(new Database(handle, path));
  sqlite3_extended_result_codes(handle, 1);
  sqlite3_busy_timeout(handle, options.busy_timeout_ms);
  // journal_mode answers with the mode it set: a file that cannot do WAL (some
  // network file systems) says so instead of silently staying in rollback mode.
  auto mode = db->Prepare("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  auto row = mode->Step();
  if (!row.ok()) return row.status();
  if (!*row || mode->Text(0) != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat("the database ", path, " cannot use write-ahead logging (journal_mode is '",
                     *row ? mode->Text(0) : "", "'): put store.dir on a local file system"));
  }
  absl::Status status = db->Exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  if (!status.ok()) return status;
  return db;
}

Database::~Database() { sqlite3_close_v2(db_); }

absl::Status Database::Error(int rc, absl::string_view what) const {
  std::string message = sqlite3_errmsg(db_);
  if (message.empty() || message == "not an error") message = sqlite3_errstr(rc);
  return absl::Status(CodeFor(rc), absl::StrCat("database ", path_, ": ", what, ": ", message));
}

absl::Status Database::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string message = error != nullptr ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  return absl::Status(CodeFor(rc),
                      absl::StrCat("database ", path_, ": run '", sql, "': ", message));
}

absl::StatusOr<Statement> Database::Prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Error(rc, absl::StrCat("prepare '", sql, "'"));
  }
  return Statement(this, stmt, sql);
}

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }

int Database::Changes() const { return sqlite3_changes(db_); }

bool Database::InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

// --- Transaction -------------------------------------------------------------

absl::StatusOr<Transaction> Transaction::Begin(Database* db) {
  // IMMEDIATE takes the write lock now: a read-then-write transaction cannot
  // fail half-way with SQLITE_BUSY when another writer got there first.
  absl::Status status = db->Exec("BEGIN IMMEDIATE");
  if (!status.ok()) return status;
  return Transaction(db);
}

Transaction::~Transaction() {
  if (db_ != nullptr && db_->InTransaction()) {
    // Nothing to report to: the caller is already returning an error.
    (void)db_->Exec("ROLLBACK");
  }
}

absl::Status Transaction::Commit() {
  if (db_ == nullptr) return absl::FailedPreconditionError("transaction already finished");
  Database* db = db_;
  db_ = nullptr;
  absl::Status status = db->Exec("COMMIT");
  if (!status.ok() && db->InTransaction()) (void)db->Exec("ROLLBACK");
  return status;
}

}  // namespace otaro::server::sqlite

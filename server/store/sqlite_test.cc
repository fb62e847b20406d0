// The SQLite wrapper: pragmas set on open, binding and reading every type,
// transactions that roll back unless committed, and errors that say what failed.
#include "server/store/sqlite.h"

#include "common/testing/shared_data.h"
#include "gtest/gtest.h"

namespace otaro::server::sqlite {
namespace {

std::unique_ptr<Database> OpenFresh(const std::string& name) {
  auto db = Database::Open(testing::ScratchDir(name) + "/test.db");
  EXPECT_TRUE(db.ok()) << db.status();
  return db.ok() ? *std::move(db) : nullptr;
}

std::string Pragma(Database& db, const std::string& name) {
  auto query = db.Prepare("PRAGMA " + name);
  EXPECT_TRUE(query.ok()) << query.status();
  auto row = query->Step();
  EXPECT_TRUE(row.ok() && *row);
  return query->Text(0);
}

TEST(SqliteTest, OpensInWalModeWithFullSyncAndForeignKeys) {
  auto db = OpenFresh("sqlite_pragmas");
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(Pragma(*db, "journal_mode"), "wal");
  EXPECT_EQ(Pragma(*db, "synchronous"), "2");  // FULL
  EXPECT_EQ(Pragma(*db, "foreign_keys"), "1");
}

TEST(SqliteTest, BindsAndReadsEveryType) {
  auto db = OpenFresh("sqlite_types");
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(
      db->Exec("CREATE TABLE t (i INTEGER, u INTEGER, d REAL, s TEXT, b BLOB, n TEXT)").ok());
  const std::string blob("a\0b\xff", 4);
  ASSERT_TRUE(db->Run("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", int64_t{-7}, uint64_t{1} << 62,
                      2.5, "text", Blob{blob}, nullptr)
                  .ok());
  EXPECT_EQ(db->Changes(), 1);
  auto query = db->Prepare("SELECT i, u, d, s, b, n FROM t");
  ASSERT_TRUE(query.ok());
  auto row = query->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(query->Int(0), -7);
  EXPECT_EQ(query->Int(1), int64_t{1} << 62);
  EXPECT_EQ(query->Double(2), 2.5);
  EXPECT_EQ(query->Text(3), "text");
  EXPECT_EQ(query->Text(4), blob);
  EXPECT_TRUE(query->IsNull(5));
  EXPECT_FALSE(query->IsNull(0));
  row = query->Step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);
}

TEST(SqliteTest, RefusesUnsignedValuesThatWouldWrap) {
  auto db = OpenFresh("sqlite_unsigned");
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Exec("CREATE TABLE t (u INTEGER)").ok());
  absl::Status status = db->Run("INSERT INTO t VALUES (?)", ~uint64_t{0});
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
}

TEST(SqliteTest, TransactionRollsBackUnlessCommitted) {
  auto db = OpenFresh("sqlite_transaction");
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Exec("CREATE TABLE t (x INTEGER)").ok());
  {
    auto transaction = Transaction::Begin(db.get());
    ASSERT_TRUE(transaction.ok());
    ASSERT_TRUE(db->Run("INSERT INTO t VALUES (1)").ok());
    EXPECT_TRUE(db->InTransaction());
  }  // no Commit: rolled back
  EXPECT_FALSE(db->InTransaction());
  {
    auto transaction = Transaction::Begin(db.get());
    ASSERT_TRUE(transaction.ok());
    ASSERT_TRUE(db->Run("INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE(transaction->Commit().ok());
    EXPECT_FALSE(transaction->Commit().ok());  // only once
  }
  auto query = db->Prepare("SELECT group_concat(x) FROM t");
  ASSERT_TRUE(query.ok());
  ASSERT_TRUE(*query->Step());
  EXPECT_EQ(query->Text(0), "2");
}

TEST(SqliteTest, ErrorsNameTheStatementAndMapToStatusCodes) {
  auto db = OpenFresh("sqlite_errors");
  ASSERT_NE(db, nullptr);
  auto bad = db->Prepare("SELEKT 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("SELEKT 1"), absl::string_view::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("syntax error"), absl::string_view::npos);

  ASSERT_TRUE(db->Exec("CREATE TABLE t (x INTEGER PRIMARY KEY)").ok());
  ASSERT_TRUE(db->Run("INSERT INTO t VALUES (1)").ok());
  EXPECT_EQ(db->Run("INSERT INTO t VALUES (1)").code(), absl::StatusCode::kAlreadyExists);
  // A statement expected to return nothing that does is a bug, said so.
  EXPECT_EQ(db->Run("SELECT 1").code(), absl::StatusCode::kInternal);
}

TEST(SqliteTest, OpeningSomethingThatIsNotADatabaseFails) {
  std::string dir = testing::ScratchDir("sqlite_not_a_db");
  {
    std::FILE* f = std::fopen((dir + "/junk.db").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("this is definitely not an SQLite database file, just some text ...........", f);
    std::fclose(f);
  }
  auto db = Database::Open(dir + "/junk.db");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss) << db.status();
  EXPECT_NE(db.status().message().find("junk.db"), absl::string_view::npos);

  auto missing = Database::Open(dir + "/no/such/dir/x.db");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no/such/dir"), absl::string_view::npos);
}

}  // namespace
}  // namespace otaro::server::sqlite

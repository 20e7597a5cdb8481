// gtest support: one PgServer per test binary, started on first use and stopped after the last
// test, and a fresh database and Pool for every test.
//
//   class ConsentStoreTest : public qsign::db::testing::PgTest {};
//   TEST_F(ConsentStoreTest, Saves) { ... pool() ... }
#ifndef QSIGN_COMMON_DB_TESTING_PG_TEST_H_
#define QSIGN_COMMON_DB_TESTING_PG_TEST_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/db/pg.h"
#include "common/db/testing/pg_server.h"
#include "gtest/gtest.h"

namespace qsign::db::testing {

class PgTest : public ::testing::Test {
 public:
  // The binary's server, started on first use and stopped after the last test; fails only if it
  // could not start. Also what tests/testing's ServiceTest creates its databases on.
  static absl::StatusOr<PgServer*> Server();

 protected:
  // Starts the shared server if needed, creates this test's database and an 8-connection pool.
  // Subclasses that override SetUp call PgTest::SetUp() first.
  void SetUp() override;

  Pool& pool() { return *pool_; }
  const PgServer::Database& database() const { return database_; }
  // Another pool on this test's database, e.g. to act as a second replica.
  absl::StatusOr<std::unique_ptr<Pool>> NewPool(int size = 8);

 private:
  PgServer::Database database_;
  std::unique_ptr<Pool> pool_;
};

// Ends the PostgreSQL sessions of every db::PgListener on `channel` in `pool`'s database, as a
// server restart or a network cut would; returns how many ended.
absl::StatusOr<int> EndListenerSessions(Pool& pool, std::string_view channel);

}  // namespace qsign::db::testing

#endif  // QSIGN_COMMON_DB_TESTING_PG_TEST_H_

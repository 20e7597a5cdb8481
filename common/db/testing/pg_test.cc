#include "common/db/testing/pg_test.h"

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/db/listener.h"

namespace qsign::db::testing {
namespace {

absl::Mutex server_mu;
// Started by the first test that asks, stopped by the environment after the last test (and
// started again if tests run after that, as with --gtest_recreate_environments_when_repeating).
PgServer* server ABSL_GUARDED_BY(server_mu) = nullptr;
absl::Status* server_error ABSL_GUARDED_BY(server_mu) = nullptr;

class PgServerEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    absl::MutexLock lock(&server_mu);
    delete server;
    server = nullptr;
  }
};

[[maybe_unused]] ::testing::Environment* const environment =
    ::testing::AddGlobalTestEnvironment(new PgServerEnvironment);

}  // namespace

absl::StatusOr<PgServer*> PgTest::Server() {
  absl::MutexLock lock(&server_mu);
  // A server that failed to start once fails every test quickly instead of retrying each time.
  if (server_error != nullptr) return *server_error;
  if (server == nullptr) {
    absl::StatusOr<std::unique_ptr<PgServer>> started = PgServer::Start();
    if (!started.ok()) {
      server_error = new absl::Status(started.status());
      return *server_error;
    }
    server = started->release();
  }
  return server;
}

void PgTest::SetUp() {
  absl::StatusOr<PgServer*> srv = Server();
  ASSERT_TRUE(srv.ok()) << "cannot start PostgreSQL: " << srv.status();
  absl::StatusOr<PgServer::Database> db = (*srv)->CreateDatabase();
  ASSERT_TRUE(db.ok()) << db.status();
  database_ = *std::move(db);
  absl::StatusOr<std::unique_ptr<Pool>> pool = NewPool();
  ASSERT_TRUE(pool.ok()) << pool.status();
  pool_ = *std::move(pool);
}

absl::StatusOr<std::unique_ptr<Pool>> PgTest::NewPool(int size) {
  return Pool::New(PoolConfig{.conninfo = database_.conninfo, .size = size});
}

absl::StatusOr<int> EndListenerSessions(Pool& pool, std::string_view channel) {
  absl::StatusOr<Result> ended = pool.Exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND application_name = $1",
      {Param::Text(PgListener::ApplicationName(channel))});
  if (!ended.ok()) return ended.status();
  return ended->rows();
}

}  // namespace qsign::db::testing

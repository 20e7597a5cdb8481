#include "tests/testing/service_test.h"

#include "common/db/testing/pg_test.h"

namespace qsign::testing {

void ServiceTest::SetUp() {
  db::testing::PgServer* server = nullptr;
  if (options_.database && !options_.own_server) {
    absl::StatusOr<db::testing::PgServer*> shared = db::testing::PgTest::Server();
    ASSERT_TRUE(shared.ok()) << "cannot start PostgreSQL: " << shared.status();
    server = *shared;
  }
  absl::StatusOr<std::unique_ptr<ServiceEnv>> env = ServiceEnv::Start(options_, server);
  ASSERT_TRUE(env.ok()) << env.status();
  env_ = *std::move(env);
}

}  // namespace qsign::testing

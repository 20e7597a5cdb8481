// gtest fixture for tests of services: a fresh PostgreSQL database with a pool, a fresh SoftHSM2
// token and an Hsm open on it for every test (a ServiceEnv, service_env.h), the databases on one
// PostgreSQL server per test binary.
//
//   class SignerTest : public qsign::testing::ServiceTest {
//    protected:
//     SignerTest() : ServiceTest({.pool_size = 4}) {}
//   };
//   TEST_F(SignerTest, Signs) { ... hsm() ... pool() ... conninfo() ... }
//
// Members of the test fixture are destroyed before the environment, so servers and services a
// test keeps in its fixture stop before the Hsm, the pool, the token and the database go.
#ifndef QSIGN_TESTS_TESTING_SERVICE_TEST_H_
#define QSIGN_TESTS_TESTING_SERVICE_TEST_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/db/pg.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/testing/softhsm_token.h"
#include "tests/testing/service_env.h"

namespace qsign::testing {

// gtest fixture: a ServiceEnv per test, its databases on the binary's shared PostgreSQL server
// (db::testing::PgTest::Server). Subclasses that override SetUp call ServiceTest::SetUp() first
// and return if HasFatalFailure().
class ServiceTest : public ::testing::Test {
 protected:
  explicit ServiceTest(ServiceEnvOptions options = {}) : options_(std::move(options)) {}

  void SetUp() override;

  ServiceEnv& env() const { return *env_; }
  // The token of `role` ("signer", "consent", "identity", "lifecycle", ...): each role its own.
  hsm::Hsm& hsm(std::string_view role) const { return env_->hsm(role); }
  db::Pool& pool() const { return env_->pool(); }
  const std::string& conninfo() const { return env_->conninfo(); }
  hsm::testing::SoftHsmToken& token() const { return env_->token(); }
  absl::StatusOr<std::unique_ptr<db::Pool>> NewPool(int size = 8) const {
    return env_->NewPool(size);
  }
  absl::Status OpenHsm(int sessions) { return env_->OpenHsm(sessions); }

 private:
  ServiceEnvOptions options_;
  std::unique_ptr<ServiceEnv> env_;
};

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_SERVICE_TEST_H_

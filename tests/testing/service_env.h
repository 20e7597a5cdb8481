// What a test or benchmark of a service runs on: a fresh PostgreSQL database with a pool, a fresh
// SoftHSM2 token and an Hsm open on it. Benchmarks use it directly; tests use the ServiceTest
// fixture (service_test.h) over it.
#ifndef QSIGN_TESTS_TESTING_SERVICE_ENV_H_
#define QSIGN_TESTS_TESTING_SERVICE_ENV_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/db/pg.h"
#include "common/db/testing/pg_server.h"
#include "hsm/hsm.h"
#include "hsm/testing/softhsm_token.h"

namespace qsign::testing {

struct ServiceEnvOptions {
  // A fresh database on the PostgreSQL server (false: no database, no pool).
  bool database = true;
  // Connections of pool() (0: the database without a pool, e.g. for a separate process).
  int pool_size = 8;
  // The SoftHSM2 token's label.
  std::string token_label = "qsign-test";
  // PKCS#11 sessions of hsm() (0: no Hsm yet; OpenHsm opens one later, e.g. once another
  // process has made the keys).
  int hsm_sessions = 4;
  // Its own PostgreSQL server instead of the shared one (tests that stop and restart it).
  bool own_server = false;
};

class ServiceEnv {
 public:
  // A fresh token and, on `server` (not owned; outlives the env) or on its own server when
  // `server` is null or options.own_server is set, a fresh database.
  static absl::StatusOr<std::unique_ptr<ServiceEnv>> Start(ServiceEnvOptions options = {},
                                                           db::testing::PgServer* server = nullptr);
  ~ServiceEnv();
  ServiceEnv(const ServiceEnv&) = delete;
  ServiceEnv& operator=(const ServiceEnv&) = delete;

  // Opens the Hsm on the token with `sessions` PKCS#11 sessions (replacing an open one).
  absl::Status OpenHsm(int sessions);

  // Each of these crashes when the options left it out.
  hsm::Hsm& hsm() const;
  db::Pool& pool() const;
  const std::string& conninfo() const;
  db::testing::PgServer& pg_server() const;
  hsm::testing::SoftHsmToken& token() const { return *token_; }

  // Another pool on the same database, e.g. to act as a second replica.
  absl::StatusOr<std::unique_ptr<db::Pool>> NewPool(int size) const;

 private:
  ServiceEnv() = default;

  // Declared in construction order: destroyed Hsm first, server last.
  std::unique_ptr<db::testing::PgServer> own_server_;
  db::testing::PgServer* server_ = nullptr;  // own_server_ or the caller's; not owned.
  std::unique_ptr<hsm::testing::SoftHsmToken> token_;
  std::string conninfo_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<hsm::Hsm> hsm_;
};

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_SERVICE_ENV_H_

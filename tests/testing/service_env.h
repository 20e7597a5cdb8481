// What a test or benchmark of a service runs on: a fresh PostgreSQL database with a pool, and
// fresh SoftHSM2 tokens, one per HSM role (common/daemon/token_roles.h: "signer", "consent", ...,
// labelled "qsign-<role>", each with its own PIN, all in one SoftHSM2 directory), open as
// hsm::HsmTokens exactly as the daemon opens them. Benchmarks use it directly; tests use the
// ServiceTest fixture (service_test.h) over it.
#ifndef QSIGN_TESTS_TESTING_SERVICE_ENV_H_
#define QSIGN_TESTS_TESTING_SERVICE_ENV_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

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
  // PKCS#11 sessions of each role's token (0: none open yet; OpenHsm opens them later, e.g.
  // once another process has made the keys).
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

  // Opens every role's token with `sessions` PKCS#11 sessions each (replacing open ones).
  absl::Status OpenHsm(int sessions);
  // Closes them (SoftHSM2 wants one module user at a time per process).
  void CloseHsm() { tokens_.reset(); }

  // The token of `role` ("signer", "consent", "identity", "lifecycle", ...), logged in with that
  // role's PIN. Each of these crashes when the options left it out (or the role is unknown).
  hsm::Hsm& hsm(std::string_view role) const;
  hsm::HsmTokens& tokens() const;
  db::Pool& pool() const;
  const std::string& conninfo() const;
  db::testing::PgServer& pg_server() const;
  // The SoftHSM2 directory (token().dir(): also the test's own files) and its first token.
  hsm::testing::SoftHsmToken& token() const { return *token_; }
  // Module and every role's token (label, PIN file) with `sessions` each, as the daemon's
  // hsm {} section lists them (LaptopConfig takes it).
  hsm::Pkcs11TokensConfig TokensConfig(int sessions = 4) const;

  // The SAD key `key_id` in consent's token (made when missing) and its public key pinned in
  // <dir>/sad-<key_id>.pem, for a signer started without consent in its process. The path.
  // Opens the tokens for a moment when they are closed.
  absl::StatusOr<std::string> SadPublicKeyFile(const std::string& key_id = "qsign-sad-1");

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
  std::vector<hsm::Pkcs11TokenConfig> roles_;  // Every role's token, in kTokenRoles' order.
  std::unique_ptr<hsm::HsmTokens> tokens_;
};

// Where a test pins the SAD key `key_id` (ServiceEnv::SadPublicKeyFile, Stacks, LaptopConfig).
std::string SadPublicKeyPath(const std::string& dir, const std::string& key_id = "qsign-sad-1");

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_SERVICE_ENV_H_

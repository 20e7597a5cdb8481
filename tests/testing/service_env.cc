#include "tests/testing/service_env.h"

#include <cstdlib>
#include <iostream>
#include <utility>

namespace qsign::testing {
namespace {

// A test asked for a part its options left out: a bug in the test.
void Require(bool present, const char* what) {
  if (present) return;
  std::cerr << "ServiceEnv: " << what << "\n";
  std::abort();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServiceEnv>> ServiceEnv::Start(ServiceEnvOptions options,
                                                              db::testing::PgServer* server) {
  std::unique_ptr<ServiceEnv> env(new ServiceEnv());
  absl::StatusOr<std::unique_ptr<hsm::testing::SoftHsmToken>> token =
      hsm::testing::SoftHsmToken::Create(options.token_label);
  if (!token.ok()) return token.status();
  env->token_ = *std::move(token);
  if (options.hsm_sessions > 0) {
    if (absl::Status s = env->OpenHsm(options.hsm_sessions); !s.ok()) return s;
  }
  if (!options.database) return env;

  if (server == nullptr || options.own_server) {
    absl::StatusOr<std::unique_ptr<db::testing::PgServer>> own = db::testing::PgServer::Start();
    if (!own.ok()) return own.status();
    env->own_server_ = *std::move(own);
    server = env->own_server_.get();
  }
  env->server_ = server;
  absl::StatusOr<db::testing::PgServer::Database> database = server->CreateDatabase();
  if (!database.ok()) return database.status();
  env->conninfo_ = database->conninfo;
  if (options.pool_size > 0) {
    absl::StatusOr<std::unique_ptr<db::Pool>> pool = env->NewPool(options.pool_size);
    if (!pool.ok()) return pool.status();
    env->pool_ = *std::move(pool);
  }
  return env;
}

ServiceEnv::~ServiceEnv() = default;

absl::Status ServiceEnv::OpenHsm(int sessions) {
  hsm_.reset();  // SoftHSM2 wants one Pkcs11Hsm at a time.
  absl::StatusOr<std::unique_ptr<hsm::Hsm>> opened = hsm::NewPkcs11Hsm(token_->config(sessions));
  if (!opened.ok()) return opened.status();
  hsm_ = *std::move(opened);
  return absl::OkStatus();
}

hsm::Hsm& ServiceEnv::hsm() const {
  Require(hsm_ != nullptr, "no Hsm open (hsm_sessions = 0 and no OpenHsm)");
  return *hsm_;
}

db::Pool& ServiceEnv::pool() const {
  Require(pool_ != nullptr, "no pool (database = false or pool_size = 0)");
  return *pool_;
}

const std::string& ServiceEnv::conninfo() const {
  Require(server_ != nullptr, "no database (database = false)");
  return conninfo_;
}

db::testing::PgServer& ServiceEnv::pg_server() const {
  Require(server_ != nullptr, "no database (database = false)");
  return *server_;
}

absl::StatusOr<std::unique_ptr<db::Pool>> ServiceEnv::NewPool(int size) const {
  return db::Pool::New(db::PoolConfig{.conninfo = conninfo(), .size = size});
}

}  // namespace qsign::testing

#include "tests/testing/service_env.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/daemon/token_roles.h"
#include "common/strings.h"
#include "consent/sad.h"

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
  // One token per role, in one SoftHSM2 directory: the first made with it, the others added.
  for (const daemon::TokenRole& role : daemon::kTokenRoles) {
    const std::string label = absl::StrCat("qsign-", Av(role.role));
    absl::StatusOr<hsm::Pkcs11Config> token;
    if (env->token_ == nullptr) {
      absl::StatusOr<std::unique_ptr<hsm::testing::SoftHsmToken>> first =
          hsm::testing::SoftHsmToken::Create(label);
      if (!first.ok()) return first.status();
      env->token_ = *std::move(first);
      token = env->token_->config();
    } else {
      token = env->token_->AddToken(label);
    }
    if (!token.ok()) return token.status();
    env->roles_.push_back({.role = std::string(role.role),
                           .token_label = token->token_label,
                           .pin_file = token->pin_file});
  }
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
  tokens_.reset();  // SoftHSM2 wants one module user at a time.
  absl::StatusOr<std::unique_ptr<hsm::HsmTokens>> opened =
      hsm::OpenPkcs11Tokens(TokensConfig(sessions));
  if (!opened.ok()) return opened.status();
  tokens_ = *std::move(opened);
  return absl::OkStatus();
}

hsm::Pkcs11TokensConfig ServiceEnv::TokensConfig(int sessions) const {
  hsm::Pkcs11TokensConfig config{.module_path = hsm::testing::SoftHsmToken::ModulePath()};
  for (hsm::Pkcs11TokenConfig token : roles_) {
    token.session_pool_size = sessions;
    config.tokens.push_back(std::move(token));
  }
  return config;
}

hsm::Hsm& ServiceEnv::hsm(std::string_view role) const {
  Require(tokens_ != nullptr, "no HSM token open (hsm_sessions = 0 and no OpenHsm)");
  hsm::Hsm* token = tokens_->Get(role);
  Require(token != nullptr, "no HSM token of that role (common/daemon/token_roles.h)");
  return *token;
}

hsm::HsmTokens& ServiceEnv::tokens() const {
  Require(tokens_ != nullptr, "no HSM token open (hsm_sessions = 0 and no OpenHsm)");
  return *tokens_;
}

std::string SadPublicKeyPath(const std::string& dir, const std::string& key_id) {
  return absl::StrCat(dir, "/sad-", key_id, ".pem");
}

absl::StatusOr<std::string> ServiceEnv::SadPublicKeyFile(const std::string& key_id) {
  const bool was_open = tokens_ != nullptr;
  if (!was_open) {
    if (absl::Status s = OpenHsm(1); !s.ok()) return s;
  }
  hsm::Hsm& consent = hsm("consent");
  absl::StatusOr<hsm::PublicKey> key = consent.GetPublicKey(key_id);
  if (key.status().code() == absl::StatusCode::kNotFound) {
    key = consent.GenerateKeyPair(key_id, hsm::KeyType::kEcP256);
  }
  if (!was_open) CloseHsm();
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> pem = consent::SadPublicKeyPem(key->spki_der);
  if (!pem.ok()) return pem.status();
  const std::string path = SadPublicKeyPath(token_->dir(), key_id);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << *pem;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write"));
  return path;
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

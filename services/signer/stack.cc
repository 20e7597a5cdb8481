#include "services/signer/stack.h"

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/auth/credential_table.h"
#include "common/daemon/stack_helpers.h"
#include "common/log.h"
#include "consent/sad.h"
#include "services/signer/signer.h"
#include "services/signer/signer_grpc.h"
#include "services/signer/signer_store.h"

namespace qsign::signer {
namespace {

using daemon::Field;

class SignerStack final : public daemon::Stack {
 public:
  static absl::StatusOr<std::unique_ptr<daemon::Stack>> New(const daemon::StackEnv& env);

  std::vector<Served> services() override {
    return {{qsign::v1::Signer::service_full_name(), grpc_.get()}};
  }
  std::string hsm_probe_key() const override { return probe_key_; }

 private:
  std::unique_ptr<consent::SadVerifier> verifier_;
  std::unique_ptr<SignerStore> store_;
  std::unique_ptr<Signer> signer_;
  auth::CredentialTable clients_;
  std::unique_ptr<SignerGrpc> grpc_;
  std::string probe_key_;
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> SignerStack::New(const daemon::StackEnv& env) {
  const auto& c = env.config.signer();
  auto stack = std::make_unique<SignerStack>();
  if (auto s = MigrateSignerSchema(*env.pool); !s.ok()) return s;
  std::map<std::string, std::string> sad_keys;
  for (const std::string& id : c.sad_key_ids()) {
    auto pub = daemon::EnsureKey(env.hsm, env.config, id, "SAD key");
    if (!pub.ok()) return Field("signer.sad_key_ids", pub.status());
    sad_keys[id] = pub->spki_der;
  }
  auto verifier = consent::SadVerifier::New(sad_keys);
  if (!verifier.ok()) return verifier.status();
  stack->verifier_ = *std::move(verifier);
  stack->store_ = NewPostgresSignerStore(env.pool);
  stack->signer_ = std::make_unique<Signer>(
      env.hsm, stack->store_.get(), stack->verifier_.get(), env.clock,
      SignerConfig{.max_batch = c.max_batch(),
                   .max_hashes_per_authorization = c.max_hashes_per_authorization()});
  // Only the lifecycle service may create, certify and destroy user keys.
  if (!env.config.services_file().empty()) {
    auto t = auth::CredentialTable::FromFile(env.config.services_file());
    if (!t.ok()) return Field("services_file", t.status());
    stack->clients_ = *std::move(t);
  } else {
    Log(LogLevel::kWarning, "signer",
        "no services_file: Signer.CreateKey/SetCertificate/DestroyKey accept any caller");
  }
  stack->grpc_ = std::make_unique<SignerGrpc>(
      stack->signer_.get(),
      SignerAccess{.services = stack->clients_.empty() ? nullptr : &stack->clients_});
  stack->probe_key_ = c.sad_key_ids(0);
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "signer", .build = &SignerStack::New};

}  // namespace qsign::signer

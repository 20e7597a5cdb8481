#include "services/signer/stack.h"

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/auth/credential_table.h"
#include "common/daemon/stack_helpers.h"
#include "common/log.h"
#include "consent/sad.h"
#include "services/signer/key_pool.h"
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

  // The key pool's refill, and the orphan-key sweep every sweep_period_ on its own thread (none
  // when zero).
  void Start() override {
    if (key_pool_ != nullptr) key_pool_->Start();
    if (sweep_period_ <= absl::ZeroDuration()) return;
    sweeper_ = std::thread([this] {
      while (!stop_.WaitForNotificationWithTimeout(sweep_period_)) {
        if (auto swept = signer_->SweepOrphanKeys(); !swept.ok()) {
          Log(LogLevel::kError, "signer", "orphan key sweep failed",
              {{"status", swept.status().ToString()}});
        }
      }
    });
  }
  void Stop() override {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (sweeper_.joinable()) sweeper_.join();
    // The pool's unused keys are destroyed: none outlives the process that made it.
    if (key_pool_ != nullptr) key_pool_->Stop();
  }
  ~SignerStack() override { Stop(); }

 private:
  std::unique_ptr<consent::SadVerifier> verifier_;
  std::unique_ptr<SignerStore> store_;
  std::unique_ptr<KeyPool> key_pool_;  // Before signer_: outlives it.
  std::unique_ptr<Signer> signer_;
  auth::CredentialTable clients_;
  std::unique_ptr<SignerGrpc> grpc_;
  absl::Duration sweep_period_;
  absl::Notification stop_;
  std::thread sweeper_;
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> SignerStack::New(const daemon::StackEnv& env) {
  const auto& c = env.config.signer();
  auto stack = std::make_unique<SignerStack>();
  if (auto s = MigrateSignerSchema(*env.pool); !s.ok()) return s;
  auto hsm = env.Token("signer");
  if (!hsm.ok()) return hsm.status();
  // SAD keys are pinned in the config, never looked up in any token: the signer's token holds
  // citizens' keys only, and a key placed there (or in another token) under a SAD key id is not
  // trusted.
  std::map<std::string, std::string> sad_keys;
  for (int i = 0; i < c.sad_keys_size(); ++i) {
    auto spki = consent::ReadSadPublicKeyFile(c.sad_keys(i).public_key_file());
    if (!spki.ok()) {
      return Field(absl::StrCat("signer.sad_keys[", i, "].public_key_file"), spki.status());
    }
    sad_keys[c.sad_keys(i).key_id()] = *std::move(spki);
  }
  if (sad_keys.empty()) {
    return absl::FailedPreconditionError("signer.sad_keys: required (the pinned SAD keys)");
  }
  auto verifier = consent::SadVerifier::New(sad_keys);
  if (!verifier.ok()) return verifier.status();
  stack->verifier_ = *std::move(verifier);
  stack->store_ = NewPostgresSignerStore(env.pool);
  if (c.key_pool_size() > 0) {
    KeyPoolConfig pool{.size = c.key_pool_size(),
                       .types = {},
                       .max_age = absl::Seconds(c.key_pool_max_age_seconds())};
    for (int i = 0; i < c.key_pool_key_types_size(); ++i) {
      auto type = hsm::ParseKeyType(c.key_pool_key_types(i));
      if (!type.ok()) {
        return Field(absl::StrCat("signer.key_pool_key_types[", i, "]"), type.status());
      }
      pool.types.push_back(*type);
    }
    stack->key_pool_ = std::make_unique<KeyPool>(*hsm, env.clock, std::move(pool));
  }
  stack->signer_ = std::make_unique<Signer>(
      *hsm, stack->store_.get(), stack->verifier_.get(), env.clock,
      SignerConfig{.max_batch = c.max_batch(),
                   .max_hashes_per_authorization = c.max_hashes_per_authorization()},
      stack->key_pool_.get());
  // Only the lifecycle service may create, certify and destroy user keys; without service
  // credentials nobody may.
  auto clients = daemon::OptionalCredentialTable(env.config.services_file(), "services_file");
  if (!clients.ok()) return clients.status();
  stack->clients_ = *std::move(clients);
  if (stack->clients_.empty()) {
    Log(LogLevel::kWarning, "signer",
        "no service credentials (services_file missing or empty): "
        "Signer.CreateKey/SetCertificate/DestroyKey refuse every call");
  }
  stack->sweep_period_ = absl::Seconds(c.orphan_key_sweep_seconds());
  stack->grpc_ = std::make_unique<SignerGrpc>(stack->signer_.get(),
                                              SignerAccess{.services = &stack->clients_});
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "signer", .build = &SignerStack::New};

}  // namespace qsign::signer

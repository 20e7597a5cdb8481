#include "services/identity/stack.h"

#include <memory>
#include <string>
#include <utility>

#include "common/daemon/stack_helpers.h"
#include "services/identity/consent_client_grpc.h"
#include "services/identity/identity.h"
#include "services/identity/identity_grpc.h"
#include "services/identity/identity_store.h"

namespace qsign::identity {
namespace {

using daemon::Field;

class IdentityStack final : public daemon::Stack {
 public:
  static absl::StatusOr<std::unique_ptr<daemon::Stack>> New(const daemon::StackEnv& env);

  std::vector<Served> services() override {
    return {{qsign::v1::Identity::service_full_name(), grpc_.get()}};
  }
  std::string hsm_probe_key() const override { return probe_key_; }

 private:
  std::unique_ptr<IdentityStore> store_;
  std::unique_ptr<GrpcConsentClient> consent_;
  std::unique_ptr<Identity> identity_;
  std::unique_ptr<IdentityGrpc> grpc_;
  std::string probe_key_;
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> IdentityStack::New(const daemon::StackEnv& env) {
  const auto& c = env.config.identity();
  auto stack = std::make_unique<IdentityStack>();
  if (auto s = MigrateIdentitySchema(*env.pool); !s.ok()) return s;
  auto hsm = env.Token("identity");
  if (!hsm.ok()) return hsm.status();
  IdentityConfig identity_config;
  for (const std::string& id : c.session_key_ids()) {
    auto pub = daemon::EnsureKey(*hsm, env.config, id, "session-token key");
    if (!pub.ok()) return Field("identity.session_key_ids", pub.status());
    identity_config.session_key_ids.push_back(id);
  }
  identity_config.consent_client_id = c.consent_client_id();
  auto operators = daemon::OptionalCredentialTable(env.config.operators_file(), "operators_file");
  if (!operators.ok()) return operators.status();
  auto services = daemon::OptionalCredentialTable(env.config.services_file(), "services_file");
  if (!services.ok()) return services.status();
  auto secret = daemon::OptionalSecret(c.client_secret_file());
  if (!secret.ok()) return Field("identity.client_secret_file", secret.status());
  stack->consent_ =
      std::make_unique<GrpcConsentClient>(env.channels->To("consent"), "identity", *secret);
  stack->store_ = NewPostgresIdentityStore(env.pool);
  auto service =
      Identity::New(*hsm, stack->store_.get(), stack->consent_.get(), env.clock,
                    *std::move(operators), *std::move(services), std::move(identity_config));
  if (!service.ok()) return service.status();
  stack->identity_ = *std::move(service);
  stack->grpc_ = std::make_unique<IdentityGrpc>(stack->identity_.get());
  stack->probe_key_ = c.session_key_ids(0);
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "identity", .build = &IdentityStack::New};

}  // namespace qsign::identity

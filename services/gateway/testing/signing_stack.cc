#include "services/gateway/testing/signing_stack.h"

#include <utility>

#include "common/clock.h"
#include "common/daemon/deferred_channel.h"
#include "common/grpc_status.h"
#include "common/secret.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/tokens.h"
#include "tests/testing/fake_identity_server.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"
#include "tests/testing/test_pki.h"

namespace qsign::gateway::testing {

namespace pb = ::qsign::v1;

struct SigningStack::Impl {
  std::unique_ptr<qsign::testing::FakeIdentityServer> identity;
  std::unique_ptr<qsign::testing::Stacks> stacks;
  std::unique_ptr<pb::Signer::Stub> signer_stub;
};

SigningStack::SigningStack(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SigningStack::~SigningStack() = default;

absl::StatusOr<std::unique_ptr<SigningStack>> SigningStack::Start(qsign::testing::ServiceEnv* env,
                                                                  SigningStackOptions options) {
  auto s = std::make_unique<Impl>();
  auto identity = qsign::testing::FakeIdentityServer::Start();
  if (!identity.ok()) return identity.status();
  s->identity = *std::move(identity);
  const std::string identity_target = s->identity->target();
  auto stacks = qsign::testing::Stacks::Start(
      *env, {.services = {"signer", "consent"}, .configure = [&](config::v1::ServerConfig& config) {
               config.mutable_peers()->set_identity(identity_target);
               config.mutable_signer()->set_max_batch(options.max_batch);
               config.mutable_signer()->set_max_hashes_per_authorization(
                   options.max_hashes_per_authorization);
               if (options.approvals_per_device_per_minute) {
                 config.mutable_consent()->set_approvals_per_device_per_minute(
                     *options.approvals_per_device_per_minute);
               }
               // Tests and benchmarks sign many times a minute for one account.
               config.mutable_consent()->set_authorizations_per_account_per_minute(0);
             }});
  if (!stacks.ok()) return stacks.status();
  s->stacks = *std::move(stacks);
  s->signer_stub = pb::Signer::NewStub(s->stacks->channel());
  return std::unique_ptr<SigningStack>(new SigningStack(std::move(s)));
}

std::shared_ptr<grpc::Channel> SigningStack::signer_channel() const {
  return impl_->stacks->channel();
}

std::shared_ptr<grpc::Channel> SigningStack::consent_channel() const {
  return impl_->stacks->channel();
}

std::string SigningStack::NewActivationCode(const std::string& account_id) {
  return impl_->identity->NewCode(account_id);
}

absl::StatusOr<std::unique_ptr<consent::ConsentAppSimulator>> SigningStack::EnrolledApp(
    const std::string& account_id, const std::string& pin) {
  auto app = consent::ConsentAppSimulator::New(consent_channel());
  if (!app.ok()) return app.status();
  if (auto s = (*app)->Enroll(NewActivationCode(account_id), "Test phone", pin); !s.ok()) return s;
  if (auto s = (*app)->StartWatching(); !s.ok()) return s;
  return app;
}

absl::StatusOr<pb::CredentialInfo> SigningStack::ActiveCredential(const std::string& credential_id,
                                                                  const std::string& account_id,
                                                                  pb::KeyAlgorithm algorithm) {
  return Activate(credential_id, account_id, algorithm,
                  [](const std::string& spki_der) -> absl::StatusOr<std::vector<std::string>> {
                    return std::vector<std::string>{qsign::testing::CertificateFor(spki_der)};
                  });
}

absl::StatusOr<pb::CredentialInfo> SigningStack::ActiveCredential(
    const std::string& credential_id, const std::string& account_id,
    const std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)>& chain_for) {
  return Activate(credential_id, account_id, pb::KEY_ALGORITHM_EC_P256, chain_for);
}

absl::StatusOr<pb::CredentialInfo> SigningStack::Activate(
    const std::string& credential_id, const std::string& account_id, pb::KeyAlgorithm algorithm,
    const std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)>& chain_for) {
  pb::CreateKeyRequest create;
  create.set_credential_id(credential_id);
  create.set_account_id(account_id);
  create.set_key_algorithm(algorithm);
  pb::CredentialInfo created;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", qsign::testing::ServiceAuthorization("lifecycle"));
    if (grpc::Status s = impl_->signer_stub->CreateKey(&ctx, create, &created); !s.ok()) {
      return FromGrpcStatus(s);
    }
  }
  pb::SetCertificateRequest set;
  set.set_credential_id(credential_id);
  auto chain = chain_for(created.public_key_spki());
  if (!chain.ok()) return chain.status();
  for (std::string& der : *chain) set.add_certificate_chain_der(std::move(der));
  pb::CredentialInfo active;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", qsign::testing::ServiceAuthorization("lifecycle"));
  if (grpc::Status s = impl_->signer_stub->SetCertificate(&ctx, set, &active); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return active;
}

absl::StatusOr<std::unique_ptr<GatewayOverStack>> GatewayOverStack::Start(
    const SigningStack& stack, GatewayConfig config, const GatewayHttpOptions& http_options,
    const std::string& client_id, const std::string& client_secret) {
  auto out = std::unique_ptr<GatewayOverStack>(new GatewayOverStack());
  out->backend_ = std::make_unique<GrpcBackend>(
      daemon::DeferredChannel::Connected("signer", stack.signer_channel()),
      daemon::DeferredChannel::Connected("consent", stack.consent_channel()), "gateway",
      SecretString("gateway-secret"), absl::Seconds(30));
  RelyingPartyTable parties;
  if (auto s = parties.Add(client_id, client_secret, "Test e-service"); !s.ok()) return s;
  if (auto s = parties.AllowClientCredentials(client_id); !s.ok()) return s;
  auto tokens = TokenSealer::New(SecretString(std::string(32, 'k')));
  if (!tokens.ok()) return tokens.status();
  auto gateway = Gateway::New(out->backend_.get(), std::move(parties), *std::move(tokens),
                              &RealClock::Get(), std::move(config));
  if (!gateway.ok()) return gateway.status();
  out->gateway_ = *std::move(gateway);
  auto http = GatewayHttpServer::Start(http_options, out->gateway_.get());
  if (!http.ok()) return http.status();
  out->http_ = *std::move(http);
  return out;
}

}  // namespace qsign::gateway::testing

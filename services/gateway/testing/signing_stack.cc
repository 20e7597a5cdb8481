#include "services/gateway/testing/signing_stack.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth/credential_table.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "consent/sad.h"
#include "hsm/hsm.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/consent/clients.h"
#include "services/consent/consent.h"
#include "services/consent/consent_grpc.h"
#include "services/consent/consent_store.h"
#include "services/consent/device_certificate.h"
#include "services/consent/notifier.h"
#include "services/consent/pin.h"
#include "services/signer/signer.h"
#include "services/signer/signer_grpc.h"
#include "services/signer/signer_store.h"
#include "tests/testing/test_data.h"
#include "tests/testing/test_pki.h"

namespace qsign::gateway::testing {
namespace {

namespace pb = ::qsign::v1;

// Identity's part of enrolment: activation codes handed out by the test.
class FakeIdentityDirectory final : public consent::IdentityDirectory {
 public:
  std::string NewCode(const std::string& account) {
    absl::MutexLock lock(&mu_);
    std::string code = absl::StrCat("CODE-", ++next_);
    codes_[code] = account;
    return code;
  }
  absl::StatusOr<std::string> RedeemActivationCode(std::string_view code,
                                                   std::string_view) override {
    absl::MutexLock lock(&mu_);
    auto it = codes_.find(std::string(code));
    if (it == codes_.end()) return absl::NotFoundError("activation_code: not valid");
    std::string account = it->second;
    codes_.erase(it);
    return account;
  }
  absl::StatusOr<std::optional<absl::Time>> LastProofedAt(std::string_view) override {
    return std::optional<absl::Time>(absl::Now());
  }

 private:
  absl::Mutex mu_;
  int next_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::string> codes_ ABSL_GUARDED_BY(mu_);
};

template <typename T>
absl::Status Assign(absl::StatusOr<T> from, T* to) {
  if (!from.ok()) return from.status();
  *to = *std::move(from);
  return absl::OkStatus();
}

}  // namespace

struct SigningStack::Impl {
  // Destroyed in reverse order: servers first, then what they serve.
  std::unique_ptr<consent::SadMinter> minter;
  std::unique_ptr<consent::SadVerifier> sad_verifier;
  std::unique_ptr<signer::SignerStore> signer_store;
  std::unique_ptr<signer::Signer> signer;
  std::unique_ptr<signer::SignerGrpc> signer_grpc;
  std::unique_ptr<GrpcServer> signer_server;
  std::shared_ptr<grpc::Channel> signer_channel;
  std::unique_ptr<pb::Signer::Stub> signer_stub;
  std::unique_ptr<consent::GrpcCredentialDirectory> credentials;
  std::unique_ptr<consent::HsmDeviceCertificateIssuer> issuer;
  std::unique_ptr<consent::PinHasher> pins;
  std::unique_ptr<consent::ConsentStore> consent_store;
  consent::AccountNotifier notifier;
  std::unique_ptr<consent::PgAccountListener> listener;
  FakeIdentityDirectory identity;
  std::unique_ptr<consent::Consent> consent;
  std::unique_ptr<consent::ConsentGrpc> consent_grpc;
  std::unique_ptr<GrpcServer> consent_server;
  std::shared_ptr<grpc::Channel> consent_channel;

  ~Impl() {
    if (consent) consent->Shutdown();  // Ends the apps' open streams.
    if (consent_server) consent_server->Shutdown(absl::Seconds(2));
    if (signer_server) signer_server->Shutdown(absl::Seconds(2));
  }
};

SigningStack::SigningStack(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SigningStack::~SigningStack() = default;

absl::StatusOr<std::unique_ptr<SigningStack>> SigningStack::Start(qsign::testing::ServiceEnv* env,
                                                                  SigningStackOptions options) {
  auto s = std::make_unique<Impl>();
  hsm::Hsm* const env_hsm = &env->hsm();
  db::Pool* const env_pool = &env->pool();
  for (const char* key : {"sad-key", "device-ca"}) {
    if (auto k = env_hsm->GenerateKeyPair(key, hsm::KeyType::kEcP256); !k.ok()) return k.status();
  }
  if (auto st = signer::MigrateSignerSchema(*env_pool); !st.ok()) return st;
  if (auto st = consent::MigrateConsentSchema(*env_pool); !st.ok()) return st;

  // The signer.
  if (auto st = Assign(consent::SadMinter::New(env_hsm, "sad-key"), &s->minter); !st.ok()) {
    return st;
  }
  if (auto st = Assign(consent::SadVerifier::New({{"sad-key", s->minter->public_key_spki()}}),
                       &s->sad_verifier);
      !st.ok()) {
    return st;
  }
  s->signer_store = signer::NewPostgresSignerStore(env_pool);
  s->signer = std::make_unique<signer::Signer>(
      env_hsm, s->signer_store.get(), s->sad_verifier.get(), &RealClock::Get(),
      signer::SignerConfig{.max_batch = options.max_batch,
                           .max_hashes_per_authorization = options.max_hashes_per_authorization});
  s->signer_grpc = std::make_unique<signer::SignerGrpc>(s->signer.get());
  if (auto st = Assign(GrpcServer::Start({}, {s->signer_grpc.get()}), &s->signer_server);
      !st.ok()) {
    return st;
  }
  s->signer_channel =
      grpc::CreateChannel(s->signer_server->local_target(), grpc::InsecureChannelCredentials());
  s->signer_stub = pb::Signer::NewStub(s->signer_channel);
  s->credentials = std::make_unique<consent::GrpcCredentialDirectory>(
      qsign::daemon::DeferredChannel::Connected("signer", s->signer_channel), "consent",
      SecretString("consent-secret"));

  // The consent service.
  auto ca =
      consent::SelfSignedDeviceCaCertificate(env_hsm, "device-ca", "test device CA", absl::Now());
  if (!ca.ok()) return ca.status();
  if (auto st =
          Assign(consent::HsmDeviceCertificateIssuer::New(env_hsm, "device-ca", *ca), &s->issuer);
      !st.ok()) {
    return st;
  }
  // Cheap PIN hashing keeps tests fast; docs/consent.md has the real parameters.
  if (auto st = Assign(consent::PinHasher::New("k1", SecretString(qsign::testing::PinHashKey()),
                                               {.time_cost = 1, .memory_kib = 256}, 4),
                       &s->pins);
      !st.ok()) {
    return st;
  }
  s->consent_store = consent::NewPostgresConsentStore(env_pool);
  if (auto st = Assign(consent::PgAccountListener::Start(
                           env->conninfo(), std::string(consent::kNotifyChannel), &s->notifier),
                       &s->listener);
      !st.ok()) {
    return st;
  }
  consent::CredentialTable operators, services;
  if (auto st = services.AddSecret(options.service_client_id, options.service_secret); !st.ok()) {
    return st;
  }
  if (auto st = Assign(consent::Consent::New({.store = s->consent_store.get(),
                                              .notifier = &s->notifier,
                                              .pins = s->pins.get(),
                                              .sad_minter = s->minter.get(),
                                              .certificates = s->issuer.get(),
                                              .identity = &s->identity,
                                              .credentials = s->credentials.get(),
                                              .clock = &RealClock::Get()},
                                             std::move(operators), std::move(services),
                                             consent::ConsentConfig{}),
                       &s->consent);
      !st.ok()) {
    return st;
  }
  s->consent_grpc = std::make_unique<consent::ConsentGrpc>(s->consent.get());
  if (auto st = Assign(GrpcServer::Start({}, {s->consent_grpc.get()}), &s->consent_server);
      !st.ok()) {
    return st;
  }
  s->consent_channel =
      grpc::CreateChannel(s->consent_server->local_target(), grpc::InsecureChannelCredentials());
  return std::unique_ptr<SigningStack>(new SigningStack(std::move(s)));
}

std::shared_ptr<grpc::Channel> SigningStack::signer_channel() const {
  return impl_->signer_channel;
}

std::shared_ptr<grpc::Channel> SigningStack::consent_channel() const {
  return impl_->consent_channel;
}

std::string SigningStack::NewActivationCode(const std::string& account_id) {
  return impl_->identity.NewCode(account_id);
}

absl::StatusOr<std::unique_ptr<consent::ConsentAppSimulator>> SigningStack::EnrolledApp(
    const std::string& account_id, const std::string& pin) {
  auto app = consent::ConsentAppSimulator::New(impl_->consent_channel);
  if (!app.ok()) return app.status();
  if (auto s = (*app)->Enroll(NewActivationCode(account_id), "Test phone", pin); !s.ok()) return s;
  if (auto s = (*app)->StartWatching(); !s.ok()) return s;
  return app;
}

absl::StatusOr<pb::CredentialInfo> SigningStack::ActiveCredential(const std::string& credential_id,
                                                                  const std::string& account_id,
                                                                  pb::KeyAlgorithm algorithm) {
  pb::CreateKeyRequest create;
  create.set_credential_id(credential_id);
  create.set_account_id(account_id);
  create.set_key_algorithm(algorithm);
  pb::CredentialInfo created;
  {
    grpc::ClientContext ctx;
    if (grpc::Status s = impl_->signer_stub->CreateKey(&ctx, create, &created); !s.ok()) {
      return FromGrpcStatus(s);
    }
  }
  pb::SetCertificateRequest set;
  set.set_credential_id(credential_id);
  set.add_certificate_chain_der(qsign::testing::CertificateFor(created.public_key_spki()));
  pb::CredentialInfo active;
  grpc::ClientContext ctx;
  if (grpc::Status s = impl_->signer_stub->SetCertificate(&ctx, set, &active); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return active;
}

}  // namespace qsign::gateway::testing

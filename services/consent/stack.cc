#include "services/consent/stack.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/session_feed_grpc.h"
#include "common/auth/session_key_cache.h"
#include "common/daemon/config.h"
#include "common/daemon/stack_helpers.h"
#include "common/file.h"
#include "common/secret.h"
#include "common/task_runner.h"
#include "consent/sad.h"
#include "services/consent/clients.h"
#include "services/consent/consent.h"
#include "services/consent/consent_grpc.h"
#include "services/consent/consent_store.h"
#include "services/consent/device_certificate.h"
#include "services/consent/notifier.h"
#include "services/consent/pin.h"
#include "services/consent/push.h"

namespace qsign::consent {
namespace {

using daemon::Field;
namespace cfg = ::qsign::config::v1;

// consent's own device CA: a key in the HSM and a self-signed certificate, written to
// device_ca_cert_file on the first start (create_missing_keys).
absl::StatusOr<std::unique_ptr<HsmDeviceCertificateIssuer>> LocalDeviceCa(
    const cfg::ServerConfig& config, hsm::Hsm* hsm) {
  const std::string& ca_key = config.consent().device_ca_key_id();
  auto ca_pub = daemon::EnsureKey(hsm, config, ca_key, "device CA key");
  if (!ca_pub.ok()) return Field("consent.device_ca_key_id", ca_pub.status());
  const std::string& ca_file = config.consent().device_ca_cert_file();
  auto ca_cert = ReadFileToString(ca_file);
  if (ca_cert.status().code() == absl::StatusCode::kNotFound && config.create_missing_keys()) {
    ca_cert = SelfSignedDeviceCaCertificate(hsm, ca_key, "qsign device CA", absl::Now());
    if (ca_cert.ok()) {
      std::ofstream out(ca_file, std::ios::binary);
      out << *ca_cert;
      if (!out) {
        return absl::InternalError(
            absl::StrCat("consent.device_ca_cert_file: ", ca_file, ": cannot write"));
      }
    }
  }
  if (!ca_cert.ok()) return Field("consent.device_ca_cert_file", ca_cert.status());
  auto issuer = HsmDeviceCertificateIssuer::New(hsm, ca_key, *ca_cert);
  if (!issuer.ok()) return Field("consent.device_ca_cert_file", issuer.status());
  return issuer;
}

// The SAD key's public key for the signers (signer.sad_keys): written with create_missing_keys
// when the file is missing; when present, it must be this key.
absl::Status SadPublicKeyFile(const cfg::ServerConfig& config, const std::string& spki_der) {
  const std::string& path = config.consent().sad_public_key_file();
  if (path.empty()) return absl::OkStatus();
  auto pinned = ReadSadPublicKeyFile(path);
  if (pinned.status().code() == absl::StatusCode::kNotFound && config.create_missing_keys()) {
    auto pem = SadPublicKeyPem(spki_der);
    if (!pem.ok()) return Field("consent.sad_public_key_file", pem.status());
    std::ofstream out(path, std::ios::binary);
    out << *pem;
    out.close();
    if (!out) {
      return absl::InternalError(
          absl::StrCat("consent.sad_public_key_file: ", path, ": cannot write"));
    }
    return absl::OkStatus();
  }
  if (!pinned.ok()) return Field("consent.sad_public_key_file", pinned.status());
  if (*pinned != spki_der) {
    return absl::FailedPreconditionError(absl::StrCat(
        "consent.sad_public_key_file: ", path, ": not the public key of consent.sad_key_id \"",
        config.consent().sad_key_id(), "\" in consent's token"));
  }
  return absl::OkStatus();
}

// What the section tunes; a config without defaults applied keeps ConsentConfig's.
ConsentConfig ConsentTuning(const cfg::ConsentService& c) {
  ConsentConfig config;
  if (c.has_enrollments_per_address_per_minute()) {
    config.enrollments_per_address_per_minute = c.enrollments_per_address_per_minute();
  }
  if (c.has_approvals_per_device_per_minute()) {
    config.approvals_per_device_per_minute = c.approvals_per_device_per_minute();
  }
  if (c.has_authorizations_per_account_per_minute()) {
    config.authorizations_per_account_per_minute = c.authorizations_per_account_per_minute();
  }
  return config;
}

// Workers of the waits that hold no thread: they run a database read when a wait is woken, so a
// few serve thousands of open streams.
constexpr int kWaitThreads = 4;

class ConsentStack final : public daemon::Stack {
 public:
  static absl::StatusOr<std::unique_ptr<daemon::Stack>> New(const daemon::StackEnv& env);

  std::vector<Served> services() override {
    return {{qsign::v1::Consent::service_full_name(), grpc_.get()}};
  }
  void Start() override { sessions_->Start(); }
  void Stop() override {
    consent_->Shutdown();  // Ends the apps' open streams.
    sessions_->Stop();
  }
  std::string hsm_probe_key() const override { return sad_key_id_; }

 private:
  std::unique_ptr<SadMinter> minter_;
  // The device CA: this process's own, or lifecycle's over gRPC.
  std::unique_ptr<DeviceCertificateIssuer> issuer_;
  std::unique_ptr<PinHasher> pins_;
  std::unique_ptr<ConsentStore> store_;
  AccountNotifier notifier_;
  std::unique_ptr<PgAccountListener> listener_;
  std::unique_ptr<GrpcIdentityDirectory> identity_;
  std::unique_ptr<GrpcCredentialDirectory> credentials_;
  // Users' session tokens, verified here against identity's keys and revocation feed.
  std::unique_ptr<auth::GrpcSessionFeed> session_feed_;
  std::unique_ptr<auth::SessionKeyCache> sessions_;
  std::unique_ptr<HttpWebhookPushGateway> push_gateway_;
  std::unique_ptr<PushDispatcher> push_;
  std::unique_ptr<Consent> consent_;
  // The waits that hold no thread (ConsentGrpc's WatchRequests, AwaitRequest). After consent_:
  // its workers stop before what their tasks use goes.
  std::unique_ptr<TaskRunner> runner_ = std::make_unique<TaskRunner>(kWaitThreads, "consent-wait");
  std::unique_ptr<ConsentGrpc> grpc_;
  std::string sad_key_id_;
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> ConsentStack::New(const daemon::StackEnv& env) {
  const cfg::ServerConfig& config = env.config;
  const cfg::ConsentService& c = config.consent();
  auto stack = std::make_unique<ConsentStack>();
  if (auto s = MigrateConsentSchema(*env.pool); !s.ok()) return s;
  auto hsm = env.Token("consent");
  if (!hsm.ok()) return hsm.status();
  auto sad_pub = daemon::EnsureKey(*hsm, config, c.sad_key_id(), "SAD key");
  if (!sad_pub.ok()) return Field("consent.sad_key_id", sad_pub.status());
  if (auto s = SadPublicKeyFile(config, sad_pub->spki_der); !s.ok()) return s;
  auto minter = SadMinter::New(*hsm, c.sad_key_id());
  if (!minter.ok()) return Field("consent.sad_key_id", minter.status());
  stack->minter_ = *std::move(minter);
  stack->sad_key_id_ = c.sad_key_id();

  // The device CA: lifecycle's when lifecycle is reachable (so that revoke-all revokes device
  // certificates too); else a key in the HSM and its self-signed certificate.
  const bool lifecycle_ca =
      RunsHere(config, "lifecycle") || !PeerTarget(config, "lifecycle").empty();
  if (!lifecycle_ca) {
    auto issuer = LocalDeviceCa(config, *hsm);
    if (!issuer.ok()) return issuer.status();
    stack->issuer_ = *std::move(issuer);
  }

  auto pepper = ReadSecretFile(c.pin_pepper_file());
  if (!pepper.ok()) return Field("consent.pin_pepper_file", pepper.status());
  auto pins = PinHasher::New(c.pin_pepper_id(), *std::move(pepper),
                             {.time_cost = static_cast<uint32_t>(c.pin_argon2_t()),
                              .memory_kib = static_cast<uint32_t>(c.pin_argon2_m_kib()),
                              .parallelism = 1},
                             static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (!pins.ok()) return Field("consent.pin_pepper_id", pins.status());
  stack->pins_ = *std::move(pins);

  auto operators = daemon::OptionalCredentialTable(config.operators_file(), "operators_file");
  if (!operators.ok()) return operators.status();
  auto services = daemon::OptionalCredentialTable(config.services_file(), "services_file");
  if (!services.ok()) return services.status();
  auto secret = daemon::OptionalSecret(c.client_secret_file());
  if (!secret.ok()) return Field("consent.client_secret_file", secret.status());
  if (lifecycle_ca) {
    stack->issuer_ = std::make_unique<GrpcLifecycleDeviceCertificateIssuer>(
        env.channels->To("lifecycle"), c.client_id(), *secret);
  }

  stack->identity_ =
      std::make_unique<GrpcIdentityDirectory>(env.channels->To("identity"), c.client_id(), *secret);
  stack->credentials_ =
      std::make_unique<GrpcCredentialDirectory>(env.channels->To("signer"), c.client_id(), *secret);
  stack->session_feed_ =
      std::make_unique<auth::GrpcSessionFeed>(env.channels->To("identity"), c.client_id(), *secret);
  auto sessions =
      daemon::NewSessionKeyCache(config, env.clock, stack->session_feed_.get(), "consent");
  if (!sessions.ok()) return sessions.status();
  stack->sessions_ = *std::move(sessions);

  stack->store_ = NewPostgresConsentStore(env.pool);
  auto listener = PgAccountListener::Start(config.database().conninfo(),
                                           std::string(kNotifyChannel), &stack->notifier_);
  if (!listener.ok()) return listener.status();
  stack->listener_ = *std::move(listener);
  if (!c.push_webhook_url().empty()) {
    auto hook_secret = daemon::OptionalSecret(c.push_webhook_secret_file());
    if (!hook_secret.ok()) return Field("consent.push_webhook_secret_file", hook_secret.status());
    auto gateway = HttpWebhookPushGateway::New(c.push_webhook_url(), *std::move(hook_secret),
                                               absl::Seconds(5));
    if (!gateway.ok()) return Field("consent.push_webhook_url", gateway.status());
    stack->push_gateway_ = *std::move(gateway);
    stack->push_ = std::make_unique<PushDispatcher>(stack->store_.get(), stack->push_gateway_.get(),
                                                    env.clock, PushDispatcher::Options{});
  }
  auto service = Consent::New({.store = stack->store_.get(),
                               .notifier = &stack->notifier_,
                               .pins = stack->pins_.get(),
                               .sad_minter = stack->minter_.get(),
                               .certificates = stack->issuer_.get(),
                               .identity = stack->identity_.get(),
                               .credentials = stack->credentials_.get(),
                               .sessions = stack->sessions_.get(),
                               .push = stack->push_.get(),
                               .runner = stack->runner_.get(),
                               .clock = env.clock},
                              *std::move(operators), *std::move(services), ConsentTuning(c));
  if (!service.ok()) return service.status();
  stack->consent_ = *std::move(service);
  auto client_address = daemon::ClientAddressResolverOf(config);
  if (!client_address.ok()) return client_address.status();
  stack->grpc_ = std::make_unique<ConsentGrpc>(stack->consent_.get(), *std::move(client_address));
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "consent", .build = &ConsentStack::New};

}  // namespace qsign::consent

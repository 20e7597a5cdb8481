// qsignd: every qsign service in one process on one port, for a laptop, a demo and the tests.
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "common/health.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/log.h"
#include "common/secret.h"
#include "consent/sad.h"
#include "hsm/hsm.h"
#include "services/consent/clients.h"
#include "services/consent/consent.h"
#include "services/consent/consent_grpc.h"
#include "services/consent/consent_store.h"
#include "common/auth/credential_table.h"
#include "services/consent/device_certificate.h"
#include "services/consent/notifier.h"
#include "services/consent/pin.h"
#include "services/consent/push.h"
#include "services/identity/consent_client_grpc.h"
#include "services/identity/identity.h"
#include "services/identity/identity_grpc.h"
#include "services/identity/identity_store.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/ocsp.h"
#include "services/lifecycle/clients_grpc.h"
#include "services/lifecycle/contracts.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_grpc.h"
#include "services/lifecycle/lifecycle_store.h"
#include "services/lifecycle/schema.h"
#include "services/lifecycle/status_http.h"
#include "services/signer/signer.h"
#include "services/signer/signer_grpc.h"
#include "services/signer/signer_store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7443", "gRPC listen address (host:port)");
ABSL_FLAG(std::string, db, "", "libpq connection string of the qsign database");
ABSL_FLAG(int, db_pool_size, 16, "PostgreSQL connections");
ABSL_FLAG(std::string, pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so", "PKCS#11 module path");
ABSL_FLAG(std::string, token_label, "qsign", "HSM token label");
ABSL_FLAG(std::string, pin_file, "", "file holding the HSM user PIN");
ABSL_FLAG(int, hsm_sessions, 8, "PKCS#11 sessions in the pool");
ABSL_FLAG(std::string, sad_key_ids, "qsign-sad-1",
          "comma-separated HSM key ids whose SADs the signer trusts; the first one mints");
ABSL_FLAG(bool, create_missing_keys, false,
          "generate the service keys (SAD key) in the HSM when absent (first start)");
ABSL_FLAG(int, max_batch, 100, "most hashes in one SignHash call");
ABSL_FLAG(std::string, consent_pin_pepper_file, "",
          "file holding the PIN pepper (32+ random bytes, never in the database); empty: the "
          "consent service is not started");
ABSL_FLAG(std::string, consent_pin_pepper_id, "k1", "id of that pepper inside PIN verifiers");
ABSL_FLAG(int, consent_pin_argon2_t, 1, "argon2id passes per PIN check (docs/consent.md)");
ABSL_FLAG(int, consent_pin_argon2_m_kib, 1024, "argon2id memory per PIN check, KiB");
ABSL_FLAG(std::string, consent_operators_file, "",
          "operator credentials for the consent service: lines \"<id> <hex SHA-256 of secret>\"");
ABSL_FLAG(std::string, consent_services_file, "",
          "service client credentials for the consent service (identity, gateway), same format");
ABSL_FLAG(std::string, consent_client_id, "consent",
          "the consent service's own client id at identity and signer");
ABSL_FLAG(std::string, consent_client_secret_file, "",
          "file holding the consent service's own secret at identity and signer");
ABSL_FLAG(std::string, device_ca_key_id, "qsign-device-ca-1",
          "HSM key id (EC P-256) of the device CA that certifies consent apps");
ABSL_FLAG(std::string, device_ca_cert_file, "",
          "device CA certificate (DER); with --create_missing_keys a self-signed one is written "
          "there when the file is absent. Unused when the lifecycle service runs here "
          "(--http_listen): its device CA certifies consent apps");
ABSL_FLAG(std::string, push_webhook_url, "",
          "http(s) URL that receives push wake-ups for consent apps; empty: none are sent");
ABSL_FLAG(std::string, push_webhook_secret_file, "",
          "file holding the bearer secret for the push webhook");
ABSL_FLAG(std::string, operators_file, "",
          "operator credentials for identity and lifecycle (and consent unless "
          "--consent_operators_file): lines \"<id> <hex SHA-256 of secret>\"");
ABSL_FLAG(std::string, services_file, "",
          "service client credentials for identity and lifecycle (and consent unless "
          "--consent_services_file), same format");
ABSL_FLAG(std::string, session_key_ids, "qsign-session-1",
          "comma-separated HSM key ids (EC P-256) of identity's session-token keys; the first "
          "one signs; empty: the identity service is not started");
ABSL_FLAG(std::string, identity_client_secret_file, "",
          "file holding the identity service's own secret (client id \"identity\") at consent");
ABSL_FLAG(std::string, http_listen, "",
          "host:port of the lifecycle service's public OCSP/CRL/CA listener; empty: the lifecycle "
          "service is not started");
ABSL_FLAG(std::string, public_base_url, "",
          "base URL of that listener as relying parties reach it (in certificates); default "
          "http://<--http_listen>");
ABSL_FLAG(std::string, ca_key_type, "EC_P256", "key type of CA keys made by --create_missing_keys");
ABSL_FLAG(std::string, pds_url, "https://qsign.example/pds/en", "PKI disclosure statement URL");
ABSL_FLAG(std::string, lifecycle_client_secret_file, "",
          "file holding the lifecycle service's own secret (client id \"lifecycle\") at the "
          "others");
ABSL_FLAG(std::string, smtp_url, "",
          "smtp://host:port of the mail relay for lifecycle's outbox (contract e-mail, renewal "
          "reminders); empty: the outbox fills but nothing is sent");
ABSL_FLAG(std::string, mail_from, "qsign@localhost", "sender address of lifecycle's e-mail");
ABSL_FLAG(bool, reflection, false, "serve gRPC server reflection (for grpcurl)");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port of the Prometheus /metrics HTTP endpoint (empty: off)");
ABSL_FLAG(int, grace_seconds, 10, "how long in-flight calls may finish on SIGTERM");

namespace qsign {
namespace {

const sigset_t& StopSignals() {
  static const sigset_t set = [] {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    return s;
  }();
  return set;
}

absl::Status Fail(std::string_view what, const absl::Status& status) {
  Log(LogLevel::kError, "qsignd", what, {{"status", status.ToString()}});
  return status;
}

absl::StatusOr<std::string> ReadBinaryFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The consent service calls identity and signer through their gRPC APIs, here on this very
// process's port, known only once the server listens: these forward to clients made then.
class LateIdentityDirectory final : public consent::IdentityDirectory {
 public:
  void Connect(std::unique_ptr<consent::IdentityDirectory> target) {
    owned_ = std::move(target);
    target_.store(owned_.get(), std::memory_order_release);
  }
  absl::StatusOr<std::string> RedeemActivationCode(std::string_view code,
                                                   std::string_view key) override {
    auto* t = target_.load(std::memory_order_acquire);
    if (t == nullptr) return absl::UnavailableError("identity: not connected yet");
    return t->RedeemActivationCode(code, key);
  }
  absl::StatusOr<std::optional<absl::Time>> LastProofedAt(std::string_view account) override {
    auto* t = target_.load(std::memory_order_acquire);
    if (t == nullptr) return absl::UnavailableError("identity: not connected yet");
    return t->LastProofedAt(account);
  }

 private:
  std::unique_ptr<consent::IdentityDirectory> owned_;
  std::atomic<consent::IdentityDirectory*> target_{nullptr};  // owned_, once connected.
};

class LateCredentialDirectory final : public consent::CredentialDirectory {
 public:
  void Connect(std::unique_ptr<consent::CredentialDirectory> target) {
    owned_ = std::move(target);
    target_.store(owned_.get(), std::memory_order_release);
  }
  absl::StatusOr<consent::CredentialSummary> Lookup(std::string_view credential_id) override {
    auto* t = target_.load(std::memory_order_acquire);
    if (t == nullptr) return absl::UnavailableError("signer: not connected yet");
    return t->Lookup(credential_id);
  }

 private:
  std::unique_ptr<consent::CredentialDirectory> owned_;
  std::atomic<consent::CredentialDirectory*> target_{nullptr};  // owned_, once connected.
};

// With lifecycle in this process, consent's device certificates come from lifecycle's device CA
// (Lifecycle.IssueDeviceCertificate), so that revoke-all revokes them too.
class LateDeviceCertificateIssuer final : public consent::DeviceCertificateIssuer {
 public:
  void Connect(std::unique_ptr<consent::DeviceCertificateIssuer> target) {
    owned_ = std::move(target);
    target_.store(owned_.get(), std::memory_order_release);
  }
  absl::StatusOr<std::vector<std::string>> Issue(
      const consent::DeviceCertificateRequest& req) override {
    auto* t = target_.load(std::memory_order_acquire);
    if (t == nullptr) return absl::UnavailableError("lifecycle: not connected");
    return t->Issue(req);
  }

 private:
  std::unique_ptr<consent::DeviceCertificateIssuer> owned_;
  std::atomic<consent::DeviceCertificateIssuer*> target_{nullptr};  // owned_, once connected.
};

// Identity calls consent's CreateRequest/AwaitRequest on this process's port.
class LateConsentClient final : public identity::ConsentClient {
 public:
  void Connect(std::unique_ptr<identity::ConsentClient> target) {
    owned_ = std::move(target);
    target_.store(owned_.get(), std::memory_order_release);
  }
  absl::StatusOr<identity::ConsentRequestStatus> CreateLoginRequest(
      const identity::LoginRequestParams& params) override {
    auto* t = target_.load(std::memory_order_acquire);
    if (t == nullptr) return absl::UnavailableError("consent: not connected");
    return t->CreateLoginRequest(params);
  }
  absl::StatusOr<identity::ConsentRequestStatus> AwaitRequest(std::string_view request_id,
                                                              absl::Duration max_wait) override {
    auto* t = target_.load(std::memory_order_acquire);
    if (t == nullptr) return absl::UnavailableError("consent: not connected");
    return t->AwaitRequest(request_id, max_wait);
  }

 private:
  std::unique_ptr<identity::ConsentClient> owned_;
  std::atomic<identity::ConsentClient*> target_{nullptr};  // owned_, once connected.
};

// Lifecycle's clients of signer, identity and consent, all on this process's port.
class LateLifecycleClients final : public lifecycle::SignerClient,
                                   public lifecycle::IdentityClient,
                                   public lifecycle::ConsentClient {
 public:
  void Connect(const std::shared_ptr<grpc::Channel>& channel,
               const lifecycle::ServiceCredential& credential) {
    signer_ = std::make_unique<lifecycle::GrpcSignerClient>(channel, credential);
    identity_ = std::make_unique<lifecycle::GrpcIdentityClient>(channel, credential);
    consent_ = std::make_unique<lifecycle::GrpcConsentClient>(channel, credential);
    connected_.store(true, std::memory_order_release);
  }
  absl::StatusOr<std::string> CreateKey(std::string_view credential_id, std::string_view account_id,
                                        hsm::KeyType key_type) override {
    if (!connected()) return NotYet();
    return signer_->CreateKey(credential_id, account_id, key_type);
  }
  absl::Status SetCertificate(std::string_view credential_id,
                              const std::vector<std::string>& chain_der) override {
    if (!connected()) return NotYet();
    return signer_->SetCertificate(credential_id, chain_der);
  }
  absl::Status DestroyKey(std::string_view credential_id) override {
    if (!connected()) return NotYet();
    return signer_->DestroyKey(credential_id);
  }
  absl::StatusOr<lifecycle::Account> GetAccount(std::string_view account_id) override {
    if (!connected()) return NotYet();
    return identity_->GetAccount(account_id);
  }
  absl::StatusOr<lifecycle::Session> ValidateSession(std::string_view session_token) override {
    if (!connected()) return NotYet();
    return identity_->ValidateSession(session_token);
  }
  absl::StatusOr<int> RevokeSessions(std::string_view account_id,
                                     std::string_view client_address) override {
    if (!connected()) return NotYet();
    return identity_->RevokeSessions(account_id, client_address);
  }
  absl::StatusOr<int> DeactivateDevices(std::string_view account_id,
                                        std::string_view reason) override {
    if (!connected()) return NotYet();
    return consent_->DeactivateDevices(account_id, reason);
  }

 private:
  bool connected() const { return connected_.load(std::memory_order_acquire); }
  static absl::Status NotYet() { return absl::UnavailableError("qsignd: not listening yet"); }
  std::unique_ptr<lifecycle::GrpcSignerClient> signer_;
  std::unique_ptr<lifecycle::GrpcIdentityClient> identity_;
  std::unique_ptr<lifecycle::GrpcConsentClient> consent_;
  std::atomic<bool> connected_{false};
};

// Consent checks users' Bearer tokens with Identity.ValidateSession, as the consent service.
class LateSessionVerifier final : public consent::SessionVerifier {
 public:
  void Connect(const std::shared_ptr<grpc::Channel>& channel, const std::string& client_id,
               const SecretString& secret) {
    identity_ = std::make_unique<lifecycle::GrpcIdentityClient>(
        channel, lifecycle::ServiceCredential{.client_id = client_id,
                                              .secret = std::string(secret.value())});
    connected_.store(true, std::memory_order_release);
  }
  absl::StatusOr<std::string> Verify(std::string_view session_token) override {
    if (!connected_.load(std::memory_order_acquire)) {
      return absl::UnavailableError("identity: not connected");
    }
    auto session = identity_->ValidateSession(session_token);
    if (!session.ok()) return session.status();
    return session->account_id;
  }

 private:
  std::unique_ptr<lifecycle::GrpcIdentityClient> identity_;
  std::atomic<bool> connected_{false};
};

// The consent service and everything it owns.
struct ConsentStack {
  std::unique_ptr<consent::SadMinter> minter;
  std::unique_ptr<consent::HsmDeviceCertificateIssuer> issuer;
  std::unique_ptr<consent::PinHasher> pins;
  std::unique_ptr<consent::ConsentStore> store;
  consent::AccountNotifier notifier;
  std::unique_ptr<consent::PgAccountListener> listener;
  LateIdentityDirectory identity;
  LateCredentialDirectory credentials;
  LateSessionVerifier sessions;
  LateDeviceCertificateIssuer lifecycle_issuer;  // Used when lifecycle runs here.
  std::unique_ptr<consent::HttpWebhookPushGateway> push_gateway;
  std::unique_ptr<consent::PushDispatcher> push;
  std::unique_ptr<consent::Consent> consent;
  std::unique_ptr<consent::ConsentGrpc> grpc;
  SecretString client_secret;
};

// consent's own device CA: a key in the HSM and a self-signed certificate.
absl::Status SetUpLocalDeviceCa(hsm::Hsm* hsm, ConsentStack& stack_ref) {
  ConsentStack* stack = &stack_ref;
  const std::string ca_key = absl::GetFlag(FLAGS_device_ca_key_id);
  auto ca_pub = hsm->GetPublicKey(ca_key);
  if (ca_pub.status().code() == absl::StatusCode::kNotFound &&
      absl::GetFlag(FLAGS_create_missing_keys)) {
    Log(LogLevel::kInfo, "qsignd", "generating device CA key in the HSM", {{"key_id", ca_key}});
    ca_pub = hsm->GenerateKeyPair(ca_key, hsm::KeyType::kEcP256);
  }
  if (!ca_pub.ok()) return ca_pub.status();
  const std::string ca_file = absl::GetFlag(FLAGS_device_ca_cert_file);
  if (ca_file.empty()) return absl::InvalidArgumentError("--device_ca_cert_file: required");
  auto ca_cert = ReadBinaryFile(ca_file);
  if (ca_cert.status().code() == absl::StatusCode::kNotFound &&
      absl::GetFlag(FLAGS_create_missing_keys)) {
    ca_cert = consent::SelfSignedDeviceCaCertificate(hsm, ca_key, "qsign device CA", absl::Now());
    if (ca_cert.ok()) {
      std::ofstream out(ca_file, std::ios::binary);
      out << *ca_cert;
      if (!out) return absl::InternalError(absl::StrCat(ca_file, ": cannot write"));
    }
  }
  if (!ca_cert.ok()) return ca_cert.status();
  auto issuer = consent::HsmDeviceCertificateIssuer::New(hsm, ca_key, *ca_cert);
  if (!issuer.ok()) return issuer.status();
  stack->issuer = *std::move(issuer);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ConsentStack>> NewConsentStack(hsm::Hsm* hsm, db::Pool* pool,
                                                              const std::string& sad_key_id) {
  auto stack = std::make_unique<ConsentStack>();
  if (auto s = consent::MigrateConsentSchema(*pool); !s.ok()) return s;
  auto minter = consent::SadMinter::New(hsm, sad_key_id);
  if (!minter.ok()) return minter.status();
  stack->minter = *std::move(minter);

  // The device CA: lifecycle's when it runs here; else a key in the HSM and its certificate
  // (self-signed).
  if (absl::GetFlag(FLAGS_http_listen).empty()) {
    if (auto s = SetUpLocalDeviceCa(hsm, *stack); !s.ok()) return s;
  }

  auto pepper = ReadSecretFile(absl::GetFlag(FLAGS_consent_pin_pepper_file));
  if (!pepper.ok()) return pepper.status();
  auto pins = consent::PinHasher::New(
      absl::GetFlag(FLAGS_consent_pin_pepper_id), *std::move(pepper),
      {.time_cost = static_cast<uint32_t>(absl::GetFlag(FLAGS_consent_pin_argon2_t)),
       .memory_kib = static_cast<uint32_t>(absl::GetFlag(FLAGS_consent_pin_argon2_m_kib)),
       .parallelism = 1},
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (!pins.ok()) return pins.status();
  stack->pins = *std::move(pins);

  consent::CredentialTable operators, services;
  std::string operators_file = absl::GetFlag(FLAGS_consent_operators_file);
  if (operators_file.empty()) operators_file = absl::GetFlag(FLAGS_operators_file);
  std::string services_file = absl::GetFlag(FLAGS_consent_services_file);
  if (services_file.empty()) services_file = absl::GetFlag(FLAGS_services_file);
  if (!operators_file.empty()) {
    auto t = consent::CredentialTable::FromFile(operators_file);
    if (!t.ok()) return t.status();
    operators = *std::move(t);
  }
  if (!services_file.empty()) {
    auto t = consent::CredentialTable::FromFile(services_file);
    if (!t.ok()) return t.status();
    services = *std::move(t);
  }
  if (!absl::GetFlag(FLAGS_consent_client_secret_file).empty()) {
    auto secret = ReadSecretFile(absl::GetFlag(FLAGS_consent_client_secret_file));
    if (!secret.ok()) return secret.status();
    stack->client_secret = *std::move(secret);
  }

  stack->store = consent::NewPostgresConsentStore(pool);
  auto listener = consent::PgAccountListener::Start(
      absl::GetFlag(FLAGS_db), std::string(consent::kNotifyChannel), &stack->notifier);
  if (!listener.ok()) return listener.status();
  stack->listener = *std::move(listener);
  if (!absl::GetFlag(FLAGS_push_webhook_url).empty()) {
    SecretString hook_secret;
    if (!absl::GetFlag(FLAGS_push_webhook_secret_file).empty()) {
      auto secret = ReadSecretFile(absl::GetFlag(FLAGS_push_webhook_secret_file));
      if (!secret.ok()) return secret.status();
      hook_secret = *std::move(secret);
    }
    auto gateway = consent::HttpWebhookPushGateway::New(absl::GetFlag(FLAGS_push_webhook_url),
                                                        std::move(hook_secret), absl::Seconds(5));
    if (!gateway.ok()) return gateway.status();
    stack->push_gateway = *std::move(gateway);
    stack->push = std::make_unique<consent::PushDispatcher>(
        stack->store.get(), stack->push_gateway.get(), &RealClock::Get(),
        consent::PushDispatcher::Options{});
  }
  auto service = consent::Consent::New(
      {.store = stack->store.get(),
       .notifier = &stack->notifier,
       .pins = stack->pins.get(),
       .sad_minter = stack->minter.get(),
       .certificates = stack->issuer
                           ? static_cast<consent::DeviceCertificateIssuer*>(stack->issuer.get())
                           : &stack->lifecycle_issuer,
       .identity = &stack->identity,
       .credentials = &stack->credentials,
       .sessions = &stack->sessions,
       .push = stack->push.get(),
       .clock = &RealClock::Get()},
      std::move(operators), std::move(services), consent::ConsentConfig{});
  if (!service.ok()) return service.status();
  stack->consent = *std::move(service);
  stack->grpc = std::make_unique<consent::ConsentGrpc>(stack->consent.get());
  return stack;
}

// Points consent's identity and signer clients at `target` (this process).
void ConnectConsentStack(ConsentStack& stack, const std::string& target) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  const std::string id = absl::GetFlag(FLAGS_consent_client_id);
  stack.identity.Connect(
      std::make_unique<consent::GrpcIdentityDirectory>(channel, id, stack.client_secret));
  stack.credentials.Connect(
      std::make_unique<consent::GrpcCredentialDirectory>(channel, id, stack.client_secret));
  stack.sessions.Connect(channel, id, stack.client_secret);
  if (!stack.issuer) {
    stack.lifecycle_issuer.Connect(std::make_unique<consent::GrpcLifecycleDeviceCertificateIssuer>(
        channel, id, stack.client_secret));
  }
}

// A secret file's content, or empty when no file is named.
absl::StatusOr<SecretString> OptionalSecret(const std::string& path) {
  if (path.empty()) return SecretString();
  return ReadSecretFile(path);
}

struct IdentityStack {
  std::unique_ptr<identity::IdentityStore> store;
  LateConsentClient consent;
  std::unique_ptr<identity::Identity> identity;
  std::unique_ptr<identity::IdentityGrpc> grpc;
  SecretString client_secret;
};

absl::StatusOr<std::unique_ptr<IdentityStack>> NewIdentityStack(hsm::Hsm* hsm, db::Pool* pool) {
  auto stack = std::make_unique<IdentityStack>();
  if (auto s = identity::MigrateIdentitySchema(*pool); !s.ok()) return s;
  identity::IdentityConfig config;
  for (absl::string_view id :
       absl::StrSplit(absl::GetFlag(FLAGS_session_key_ids), ',', absl::SkipEmpty())) {
    config.session_key_ids.emplace_back(id);
    auto pub = hsm->GetPublicKey(config.session_key_ids.back());
    if (pub.status().code() == absl::StatusCode::kNotFound &&
        absl::GetFlag(FLAGS_create_missing_keys)) {
      Log(LogLevel::kInfo, "qsignd", "generating session-token key in the HSM",
          {{"key_id", config.session_key_ids.back()}});
      pub = hsm->GenerateKeyPair(config.session_key_ids.back(), hsm::KeyType::kEcP256);
    }
    if (!pub.ok()) return pub.status();
  }
  config.consent_client_id = absl::GetFlag(FLAGS_consent_client_id);
  identity::CredentialTable operators, services;
  if (!absl::GetFlag(FLAGS_operators_file).empty()) {
    auto t = identity::CredentialTable::FromFile(absl::GetFlag(FLAGS_operators_file));
    if (!t.ok()) return t.status();
    operators = *std::move(t);
  }
  if (!absl::GetFlag(FLAGS_services_file).empty()) {
    auto t = identity::CredentialTable::FromFile(absl::GetFlag(FLAGS_services_file));
    if (!t.ok()) return t.status();
    services = *std::move(t);
  }
  auto secret = OptionalSecret(absl::GetFlag(FLAGS_identity_client_secret_file));
  if (!secret.ok()) return secret.status();
  stack->client_secret = *std::move(secret);
  stack->store = identity::NewPostgresIdentityStore(pool);
  auto service =
      identity::Identity::New(hsm, stack->store.get(), &stack->consent, &RealClock::Get(),
                              std::move(operators), std::move(services), std::move(config));
  if (!service.ok()) return service.status();
  stack->identity = *std::move(service);
  stack->grpc = std::make_unique<identity::IdentityGrpc>(stack->identity.get());
  return stack;
}

struct LifecycleStack {
  std::unique_ptr<lifecycle::CaStore> ca_store;
  std::unique_ptr<lifecycle::CaSet> cas;
  std::unique_ptr<lifecycle::LifecycleStore> store;
  LateLifecycleClients clients;
  std::unique_ptr<lifecycle::Lifecycle> lifecycle;
  std::unique_ptr<lifecycle::IdentityAuthenticator> authenticator;
  std::unique_ptr<lifecycle::LifecycleGrpc> grpc;
  std::unique_ptr<lifecycle::OcspResponder> ocsp;
  std::unique_ptr<lifecycle::StatusHttpServer> http;
  lifecycle::ServiceCredential credential{.client_id = "lifecycle"};
};

absl::StatusOr<lifecycle::CredentialHashes> LoadHashes(const std::string& path) {
  if (path.empty()) return lifecycle::CredentialHashes();
  auto text = ReadBinaryFile(path);
  if (!text.ok()) return text.status();
  return lifecycle::CredentialHashes::Parse(*text);
}

absl::StatusOr<std::unique_ptr<LifecycleStack>> NewLifecycleStack(hsm::Hsm* hsm, db::Pool* pool) {
  auto stack = std::make_unique<LifecycleStack>();
  if (auto s = lifecycle::MigrateLifecycleSchema(*pool); !s.ok()) return s;
  const std::string http_listen = absl::GetFlag(FLAGS_http_listen);
  std::pair<std::string, std::string> host_port =
      absl::StrSplit(http_listen, absl::MaxSplits(':', 1));
  int port = 0;
  if (host_port.first.empty() || !absl::SimpleAtoi(host_port.second, &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError("--http_listen: expected host:port");
  }
  auto key_type = hsm::ParseKeyType(absl::GetFlag(FLAGS_ca_key_type));
  if (!key_type.ok()) return key_type.status();
  std::string base_url = absl::GetFlag(FLAGS_public_base_url);
  if (base_url.empty()) base_url = absl::StrCat("http://", http_listen);
  lifecycle::CaConfig ca_config{.key_type = *key_type, .public_base_url = base_url};
  stack->ca_store = lifecycle::NewPostgresCaStore(pool);
  auto cas = absl::GetFlag(FLAGS_create_missing_keys)
                 ? lifecycle::CaSet::Init(hsm, stack->ca_store.get(), RealClock::Get(), ca_config)
                 : lifecycle::CaSet::Load(hsm, stack->ca_store.get(), ca_config);
  if (!cas.ok()) return cas.status();
  stack->cas = *std::move(cas);
  auto secret = OptionalSecret(absl::GetFlag(FLAGS_lifecycle_client_secret_file));
  if (!secret.ok()) return secret.status();
  stack->credential.secret = std::string(secret->value());
  stack->store = lifecycle::NewPostgresLifecycleStore(pool);
  stack->lifecycle = std::make_unique<lifecycle::Lifecycle>(
      stack->cas.get(), stack->store.get(), &stack->clients, &stack->clients, &stack->clients,
      &lifecycle::ContractRegistry::BuiltIn(), &RealClock::Get(),
      lifecycle::LifecycleConfig{.consent_client_id = absl::GetFlag(FLAGS_consent_client_id),
                                 .pds_url = absl::GetFlag(FLAGS_pds_url)});
  auto operators = LoadHashes(absl::GetFlag(FLAGS_operators_file));
  if (!operators.ok()) return operators.status();
  auto services = LoadHashes(absl::GetFlag(FLAGS_services_file));
  if (!services.ok()) return services.status();
  stack->authenticator = std::make_unique<lifecycle::IdentityAuthenticator>(
      &stack->clients, *std::move(operators), *std::move(services));
  stack->grpc = std::make_unique<lifecycle::LifecycleGrpc>(stack->lifecycle.get(),
                                                           stack->authenticator.get());
  stack->ocsp = std::make_unique<lifecycle::OcspResponder>(
      stack->cas.get(), stack->lifecycle->status_source(), &RealClock::Get());
  auto http =
      lifecycle::StatusHttpServer::Start({.host = host_port.first, .port = port}, stack->ocsp.get(),
                                         stack->lifecycle.get(), stack->cas.get());
  if (!http.ok()) return http.status();
  stack->http = *std::move(http);
  return stack;
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_db).empty()) {
    return Fail("config", absl::InvalidArgumentError("--db: required (libpq connection string)"));
  }
  if (absl::GetFlag(FLAGS_pin_file).empty()) {
    return Fail("config", absl::InvalidArgumentError("--pin_file: required"));
  }
  auto hsm = hsm::NewPkcs11Hsm({.module_path = absl::GetFlag(FLAGS_pkcs11_module),
                                .token_label = absl::GetFlag(FLAGS_token_label),
                                .pin_file = absl::GetFlag(FLAGS_pin_file),
                                .session_pool_size = absl::GetFlag(FLAGS_hsm_sessions)});
  if (!hsm.ok()) return Fail("hsm", hsm.status());

  auto pool = db::Pool::New(
      {.conninfo = absl::GetFlag(FLAGS_db), .size = absl::GetFlag(FLAGS_db_pool_size)});
  if (!pool.ok()) return Fail("postgresql", pool.status());
  if (auto s = signer::MigrateSignerSchema(**pool); !s.ok()) return Fail("migrations", s);

  std::map<std::string, std::string> sad_keys;
  std::vector<std::string> sad_keys_in_order;  // The first one mints.
  for (absl::string_view id_view :
       absl::StrSplit(absl::GetFlag(FLAGS_sad_key_ids), ',', absl::SkipEmpty())) {
    const std::string id(id_view);
    auto pub = (*hsm)->GetPublicKey(id);
    if (pub.status().code() == absl::StatusCode::kNotFound &&
        absl::GetFlag(FLAGS_create_missing_keys)) {
      Log(LogLevel::kInfo, "qsignd", "generating SAD key in the HSM",
          {{"key_id", std::string_view(id)}});
      pub = (*hsm)->GenerateKeyPair(id, hsm::KeyType::kEcP256);
    }
    if (!pub.ok()) return Fail(absl::StrCat("SAD key ", id), pub.status());
    sad_keys[std::string(id)] = pub->spki_der;
    sad_keys_in_order.push_back(id);
  }
  if (sad_keys_in_order.empty()) {
    return Fail("config", absl::InvalidArgumentError("--sad_key_ids: at least one key id"));
  }
  auto verifier = consent::SadVerifier::New(sad_keys);
  if (!verifier.ok()) return Fail("SAD verifier", verifier.status());

  auto store = signer::NewPostgresSignerStore(pool->get());
  signer::Signer signer(hsm->get(), store.get(), verifier->get(), &RealClock::Get(),
                        {.max_batch = absl::GetFlag(FLAGS_max_batch)});
  // Only the lifecycle service may create, certify and destroy user keys.
  auth::CredentialTable signer_clients;
  if (!absl::GetFlag(FLAGS_services_file).empty()) {
    auto t = auth::CredentialTable::FromFile(absl::GetFlag(FLAGS_services_file));
    if (!t.ok()) return Fail("--services_file", t.status());
    signer_clients = *std::move(t);
  } else {
    Log(LogLevel::kWarning, "qsignd",
        "no --services_file: Signer.CreateKey/SetCertificate/DestroyKey accept any caller");
  }
  signer::SignerGrpc signer_grpc(
      &signer, {.services = signer_clients.empty() ? nullptr : &signer_clients});
  std::vector<grpc::Service*> services = {&signer_grpc};
  std::string service_names = "qsign.v1.Signer";

  std::unique_ptr<ConsentStack> consent;
  if (!absl::GetFlag(FLAGS_consent_pin_pepper_file).empty()) {
    auto stack = NewConsentStack(hsm->get(), pool->get(), sad_keys_in_order.front());
    if (!stack.ok()) return Fail("consent", stack.status());
    consent = *std::move(stack);
    services.push_back(consent->grpc.get());
    service_names += ",qsign.v1.Consent";
  } else {
    Log(LogLevel::kInfo, "qsignd", "consent service off: --consent_pin_pepper_file not set");
  }

  std::unique_ptr<IdentityStack> identity;
  if (!absl::GetFlag(FLAGS_session_key_ids).empty()) {
    auto stack = NewIdentityStack(hsm->get(), pool->get());
    if (!stack.ok()) return Fail("identity", stack.status());
    identity = *std::move(stack);
    services.push_back(identity->grpc.get());
    service_names += ",qsign.v1.Identity";
  }
  std::unique_ptr<LifecycleStack> lifecycle;
  if (!absl::GetFlag(FLAGS_http_listen).empty()) {
    auto stack = NewLifecycleStack(hsm->get(), pool->get());
    if (!stack.ok()) return Fail("lifecycle", stack.status());
    lifecycle = *std::move(stack);
    services.push_back(lifecycle->grpc.get());
    service_names += ",qsign.v1.Lifecycle";
    Log(LogLevel::kInfo, "qsignd", "OCSP/CRL listener",
        {{"http", lifecycle->http->base_url()},
         {"http_port", std::to_string(lifecycle->http->port())}});
  }

  auto server = GrpcServer::Start({.listen_address = absl::GetFlag(FLAGS_listen),
                                   .reflection = absl::GetFlag(FLAGS_reflection)},
                                  services);
  if (!server.ok()) return Fail("listen", server.status());
  // Inter-service calls go through gRPC to this very port, with service credentials.
  const std::string self = (*server)->local_target();
  auto self_channel = grpc::CreateChannel(self, grpc::InsecureChannelCredentials());
  if (consent) ConnectConsentStack(*consent, self);
  if (identity) {
    identity->consent.Connect(std::make_unique<identity::GrpcConsentClient>(
        self_channel, "identity", identity->client_secret));
  }
  absl::Notification stop_scheduler;
  std::thread scheduler;
  if (lifecycle) {
    lifecycle->clients.Connect(self_channel, lifecycle->credential);
    std::unique_ptr<lifecycle::Mailer> mailer;
    if (!absl::GetFlag(FLAGS_smtp_url).empty()) {
      mailer = std::make_unique<lifecycle::SmtpMailer>(lifecycle::SmtpConfig{
          .url = absl::GetFlag(FLAGS_smtp_url), .from = absl::GetFlag(FLAGS_mail_from)});
    }
    // CRLs before they go stale, renewal reminders, the outbox (with --smtp_url): every 10
    // minutes.
    scheduler = std::thread([&, mailer = std::move(mailer)] {
      do {
        for (std::string_view ca :
             {lifecycle::kRootCa, lifecycle::kQualifiedCa, lifecycle::kDeviceCa}) {
          if (auto crl = lifecycle->lifecycle->CurrentCrl(ca); !crl.ok()) {
            Log(LogLevel::kError, "qsignd", "scheduled CRL failed",
                {{"ca", ca}, {"status", crl.status().ToString()}});
          }
        }
        if (auto n = lifecycle->lifecycle->QueueRenewalReminders(); !n.ok()) {
          Log(LogLevel::kError, "qsignd", "renewal reminders failed",
              {{"status", n.status().ToString()}});
        }
        if (mailer != nullptr) {
          if (auto run = lifecycle->lifecycle->DeliverOutbox(*mailer, 500); !run.ok()) {
            Log(LogLevel::kError, "qsignd", "outbox delivery failed",
                {{"status", run.status().ToString()}});
          } else if (run->sent + run->failed > 0) {
            Log(LogLevel::kInfo, "qsignd", "outbox delivered",
                {{"sent", std::to_string(run->sent)}, {"failed", std::to_string(run->failed)}});
          }
        }
      } while (!stop_scheduler.WaitForNotificationWithTimeout(absl::Minutes(10)));
    });
  }
  const std::string health_key = sad_keys.begin()->first;
  auto health = std::make_unique<HealthProber>(
      server->get(),
      std::vector<HealthCheck>{{"postgresql", [&] { return (*pool)->Exec("SELECT 1").status(); }},
                               {"hsm", [&] { return (*hsm)->GetPublicKey(health_key).status(); }}},
      absl::Seconds(2));

  std::unique_ptr<metrics::MetricsHttpServer> metrics_http;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    metrics::Registry::Global().AddCollector([pool = pool->get()](metrics::Registry& r) {
      const db::PoolStats stats = pool->Stats();
      r.SetGauge("qsign_db_pool_connections", "PostgreSQL connections by state.",
                 {{"state", "in_use"}}, stats.in_use);
      r.SetGauge("qsign_db_pool_connections", "PostgreSQL connections by state.",
                 {{"state", "open"}}, stats.open);
      r.SetGauge("qsign_db_pool_size", "Configured PostgreSQL pool size.", {}, stats.size);
    });
    auto m = metrics::MetricsHttpServer::Start(absl::GetFlag(FLAGS_metrics_listen),
                                               &metrics::Registry::Global());
    if (!m.ok()) return Fail("metrics", m.status());
    metrics_http = *std::move(m);
  }

  Log(LogLevel::kInfo, "qsignd", "ready",
      {{"listen", absl::GetFlag(FLAGS_listen)}, {"services", service_names}});
  // SIGINT/SIGTERM are blocked in every thread (see main) and taken here synchronously.
  int sig = 0;
  sigwait(&StopSignals(), &sig);
  Log(LogLevel::kInfo, "qsignd", "stopping: finishing in-flight calls");
  health.reset();  // Before the server goes away: the prober updates its health status.
  if (consent) consent->consent->Shutdown();  // Ends the apps' open streams.
  stop_scheduler.Notify();
  if (scheduler.joinable()) scheduler.join();
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_grace_seconds)));
  if (lifecycle) lifecycle->http.reset();
  Log(LogLevel::kInfo, "qsignd", "stopped");
  return absl::OkStatus();
}

}  // namespace
}  // namespace qsign

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask.
  pthread_sigmask(SIG_BLOCK, &qsign::StopSignals(), nullptr);
  absl::ParseCommandLine(argc, argv);
  return qsign::Run().ok() ? 0 : 1;
}

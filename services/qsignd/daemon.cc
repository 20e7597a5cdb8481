#include "services/qsignd/daemon.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "common/auth/credential_table.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/file.h"
#include "common/grpc_server.h"
#include "common/health.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/secret.h"
#include "common/strings.h"
#include "common/tls.h"
#include "consent/sad.h"
#include "hsm/hsm.h"
#include "services/consent/clients.h"
#include "services/consent/consent.h"
#include "services/consent/consent_grpc.h"
#include "services/consent/consent_store.h"
#include "services/consent/device_certificate.h"
#include "services/consent/notifier.h"
#include "services/consent/pin.h"
#include "services/consent/push.h"
#include "services/gateway/backend_grpc.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_http.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/tokens.h"
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
#include "services/qsignd/config.h"
#include "services/signer/signer.h"
#include "services/signer/signer_grpc.h"
#include "services/signer/signer_store.h"

ABSL_FLAG(std::string, config, "",
          "the process's config file (text-format qsign.config.v1.ServerConfig)");
ABSL_FLAG(bool, check_config, false,
          "validate --config (reading every file it names) and exit: 0 valid, 1 not");

namespace qsign {
namespace {

namespace cfg = ::qsign::config::v1;

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

// A secret file's content, or empty when no file is named.
absl::StatusOr<SecretString> OptionalSecret(const std::string& path) {
  if (path.empty()) return SecretString();
  return ReadSecretFile(path);
}

// Names the config field a start-up failure comes from.
absl::Status Field(std::string_view field, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(Av(field), ": ", status.message()));
}

// How this process's gRPC listener and channels are secured: mutual TLS with the allow-lists
// of the config, or plaintext with insecure_dev.
struct Transport {
  std::shared_ptr<grpc::ServerCredentials> server;    // nullptr: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel;  // Insecure with insecure_dev.
  std::string own_name;  // This process's identity (DNS SAN), with TLS.

  static absl::StatusOr<Transport> FromConfig(const cfg::ServerConfig& config) {
    Transport t;
    if (!config.has_tls()) {
      t.channel = grpc::InsecureChannelCredentials();
      return t;
    }
    auto policy = tls::AccessPolicy::New(config.allow());
    if (!policy.ok()) return policy.status();
    auto server = tls::ServerCredentialsFromConfig(config.tls(), *policy);
    if (!server.ok()) return server.status();
    auto channel = tls::ChannelCredentialsFromConfig(config.tls());
    if (!channel.ok()) return channel.status();
    auto name = tls::OwnIdentity(config.tls());
    if (!name.ok()) return name.status();
    t.server = *std::move(server);
    t.channel = *std::move(channel);
    t.own_name = *std::move(name);
    return t;
  }

  // A peer's channel: its certificate must name the target's host.
  std::shared_ptr<grpc::Channel> Peer(const std::string& target) const {
    return grpc::CreateChannel(target, channel);
  }
  // This process's own listener on loopback: its certificate names this process, not 127.0.0.1.
  std::shared_ptr<grpc::Channel> Self(const std::string& loopback_target) const {
    grpc::ChannelArguments args;
    if (!own_name.empty()) args.SetSslTargetNameOverride(own_name);
    return grpc::CreateCustomChannel(loopback_target, channel, args);
  }
};

// The key exists in the HSM, or is made there when create_missing_keys allows it.
absl::StatusOr<hsm::PublicKey> EnsureKey(hsm::Hsm* hsm, const cfg::ServerConfig& config,
                                         const std::string& key_id, std::string_view what) {
  auto pub = hsm->GetPublicKey(key_id);
  if (pub.status().code() == absl::StatusCode::kNotFound && config.create_missing_keys()) {
    Log(LogLevel::kInfo, "hsm", absl::StrCat("generating ", Av(what), " in the HSM"),
        {{"key_id", key_id}});
    pub = hsm->GenerateKeyPair(key_id, hsm::KeyType::kEcP256);
  }
  if (!pub.ok()) {
    return absl::Status(pub.status().code(),
                        absl::StrCat(Av(what), " ", key_id, ": ", pub.status().message()));
  }
  return pub;
}

// A dependency reached through gRPC on this very process's listener, whose port is known only
// once the server listens, after the services are built: UNAVAILABLE until Connect.
template <typename T>
class LateBound {
 public:
  explicit LateBound(std::string_view peer) : peer_(peer) {}

  // Once, from the thread that builds the process.
  void Connect(std::unique_ptr<T> target) {
    // A second Connect would free a target that handler threads may be using.
    if (owned_ != nullptr) std::abort();
    owned_ = std::move(target);
    target_.store(owned_.get(), std::memory_order_release);
  }

  // call(target), or UNAVAILABLE before Connect.
  template <typename Call>
  auto With(Call call) const -> decltype(call(std::declval<T&>())) {
    T* t = target_.load(std::memory_order_acquire);
    if (t == nullptr) return absl::UnavailableError(absl::StrCat(Av(peer_), ": not connected yet"));
    return call(*t);
  }

 private:
  const std::string_view peer_;  // A string literal.
  std::unique_ptr<T> owned_;
  std::atomic<T*> target_{nullptr};  // owned_, once connected.
};

// The clients' constructors keep their own wiped copy of the secret; this one is wiped too.
struct WipedServiceCredential {
  lifecycle::ServiceCredential value;
  WipedServiceCredential(std::string_view client_id, const SecretString& secret)
      : value{.client_id = std::string(client_id), .secret = std::string(secret.value())} {}
  ~WipedServiceCredential() { OPENSSL_cleanse(value.secret.data(), value.secret.size()); }
};

// Consent calls identity (activation codes, proofing dates) and signer (credentials).
class LateIdentityDirectory final : public consent::IdentityDirectory {
 public:
  void Connect(std::unique_ptr<consent::IdentityDirectory> target) {
    target_.Connect(std::move(target));
  }
  absl::StatusOr<std::string> RedeemActivationCode(std::string_view code,
                                                   std::string_view key) override {
    return target_.With([&](auto& t) { return t.RedeemActivationCode(code, key); });
  }
  absl::StatusOr<std::optional<absl::Time>> LastProofedAt(std::string_view account) override {
    return target_.With([&](auto& t) { return t.LastProofedAt(account); });
  }

 private:
  LateBound<consent::IdentityDirectory> target_{"identity"};
};

class LateCredentialDirectory final : public consent::CredentialDirectory {
 public:
  void Connect(std::unique_ptr<consent::CredentialDirectory> target) {
    target_.Connect(std::move(target));
  }
  absl::StatusOr<consent::CredentialSummary> Lookup(std::string_view credential_id) override {
    return target_.With([&](auto& t) { return t.Lookup(credential_id); });
  }

 private:
  LateBound<consent::CredentialDirectory> target_{"signer"};
};

// With lifecycle reachable, consent's device certificates come from lifecycle's device CA
// (Lifecycle.IssueDeviceCertificate), so that revoke-all revokes them too.
class LateDeviceCertificateIssuer final : public consent::DeviceCertificateIssuer {
 public:
  void Connect(std::unique_ptr<consent::DeviceCertificateIssuer> target) {
    target_.Connect(std::move(target));
  }
  absl::StatusOr<std::vector<std::string>> Issue(
      const consent::DeviceCertificateRequest& req) override {
    return target_.With([&](auto& t) { return t.Issue(req); });
  }

 private:
  LateBound<consent::DeviceCertificateIssuer> target_{"lifecycle"};
};

// Identity calls consent's CreateRequest/AwaitRequest (here or at peers.consent).
class LateConsentClient final : public identity::ConsentClient {
 public:
  void Connect(std::unique_ptr<identity::ConsentClient> target) {
    target_.Connect(std::move(target));
  }
  absl::StatusOr<identity::ConsentRequestStatus> CreateLoginRequest(
      const identity::LoginRequestParams& params) override {
    return target_.With([&](auto& t) { return t.CreateLoginRequest(params); });
  }
  absl::StatusOr<identity::ConsentRequestStatus> AwaitRequest(std::string_view request_id,
                                                              absl::Duration max_wait) override {
    return target_.With([&](auto& t) { return t.AwaitRequest(request_id, max_wait); });
  }

 private:
  LateBound<identity::ConsentClient> target_{"consent"};
};

// Lifecycle's clients of signer, identity and consent (here or at their peers).
class LateLifecycleClients final : public lifecycle::SignerClient,
                                   public lifecycle::IdentityClient,
                                   public lifecycle::ConsentClient {
 public:
  void Connect(const std::shared_ptr<grpc::Channel>& signer,
               const std::shared_ptr<grpc::Channel>& identity,
               const std::shared_ptr<grpc::Channel>& consent, std::string_view client_id,
               const SecretString& secret) {
    const WipedServiceCredential credential(client_id, secret);
    signer_.Connect(std::make_unique<lifecycle::GrpcSignerClient>(signer, credential.value));
    identity_.Connect(std::make_unique<lifecycle::GrpcIdentityClient>(identity, credential.value));
    consent_.Connect(std::make_unique<lifecycle::GrpcConsentClient>(consent, credential.value));
  }
  absl::StatusOr<std::string> CreateKey(std::string_view credential_id, std::string_view account_id,
                                        hsm::KeyType key_type) override {
    return signer_.With([&](auto& t) { return t.CreateKey(credential_id, account_id, key_type); });
  }
  absl::Status SetCertificate(std::string_view credential_id,
                              const std::vector<std::string>& chain_der) override {
    return signer_.With([&](auto& t) { return t.SetCertificate(credential_id, chain_der); });
  }
  absl::Status DestroyKey(std::string_view credential_id) override {
    return signer_.With([&](auto& t) { return t.DestroyKey(credential_id); });
  }
  absl::StatusOr<lifecycle::Account> GetAccount(std::string_view account_id) override {
    return identity_.With([&](auto& t) { return t.GetAccount(account_id); });
  }
  absl::StatusOr<lifecycle::Session> ValidateSession(std::string_view session_token) override {
    return identity_.With([&](auto& t) { return t.ValidateSession(session_token); });
  }
  absl::StatusOr<int> RevokeSessions(std::string_view account_id,
                                     std::string_view client_address) override {
    return identity_.With([&](auto& t) { return t.RevokeSessions(account_id, client_address); });
  }
  absl::StatusOr<int> DeactivateDevices(std::string_view account_id,
                                        std::string_view reason) override {
    return consent_.With([&](auto& t) { return t.DeactivateDevices(account_id, reason); });
  }

 private:
  LateBound<lifecycle::SignerClient> signer_{"signer"};
  LateBound<lifecycle::IdentityClient> identity_{"identity"};
  LateBound<lifecycle::ConsentClient> consent_{"consent"};
};

// Consent checks users' Bearer tokens with Identity.ValidateSession, as the consent service.
class LateSessionVerifier final : public consent::SessionVerifier {
 public:
  void Connect(const std::shared_ptr<grpc::Channel>& channel, std::string_view client_id,
               const SecretString& secret) {
    const WipedServiceCredential credential(client_id, secret);
    identity_.Connect(std::make_unique<lifecycle::GrpcIdentityClient>(channel, credential.value));
  }
  absl::StatusOr<std::string> Verify(std::string_view session_token) override {
    return identity_.With([&](auto& t) -> absl::StatusOr<std::string> {
      auto session = t.ValidateSession(session_token);
      if (!session.ok()) return session.status();
      return session->account_id;
    });
  }

 private:
  LateBound<lifecycle::IdentityClient> identity_{"identity"};
};

// The signer service and everything it owns.
struct SignerStack {
  std::unique_ptr<consent::SadVerifier> verifier;
  std::unique_ptr<signer::SignerStore> store;
  std::unique_ptr<signer::Signer> signer;
  auth::CredentialTable clients;
  std::unique_ptr<signer::SignerGrpc> grpc;
};

absl::StatusOr<std::unique_ptr<SignerStack>> NewSignerStack(const cfg::ServerConfig& config,
                                                            hsm::Hsm* hsm, db::Pool* pool) {
  auto stack = std::make_unique<SignerStack>();
  if (auto s = signer::MigrateSignerSchema(*pool); !s.ok()) return s;
  std::map<std::string, std::string> sad_keys;
  for (const std::string& id : config.signer().sad_key_ids()) {
    auto pub = EnsureKey(hsm, config, id, "SAD key");
    if (!pub.ok()) return Field("signer.sad_key_ids", pub.status());
    sad_keys[id] = pub->spki_der;
  }
  auto verifier = consent::SadVerifier::New(sad_keys);
  if (!verifier.ok()) return verifier.status();
  stack->verifier = *std::move(verifier);
  stack->store = signer::NewPostgresSignerStore(pool);
  stack->signer = std::make_unique<signer::Signer>(
      hsm, stack->store.get(), stack->verifier.get(), &RealClock::Get(),
      signer::SignerConfig{.max_batch = config.signer().max_batch()});
  // Only the lifecycle service may create, certify and destroy user keys.
  if (!config.services_file().empty()) {
    auto t = auth::CredentialTable::FromFile(config.services_file());
    if (!t.ok()) return Field("services_file", t.status());
    stack->clients = *std::move(t);
  } else {
    Log(LogLevel::kWarning, "signer",
        "no services_file: Signer.CreateKey/SetCertificate/DestroyKey accept any caller");
  }
  stack->grpc = std::make_unique<signer::SignerGrpc>(
      stack->signer.get(),
      signer::SignerAccess{.services = stack->clients.empty() ? nullptr : &stack->clients});
  return stack;
}

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
  LateDeviceCertificateIssuer lifecycle_issuer;  // Used when lifecycle is reachable.
  std::unique_ptr<consent::HttpWebhookPushGateway> push_gateway;
  std::unique_ptr<consent::PushDispatcher> push;
  std::unique_ptr<consent::Consent> consent;
  std::unique_ptr<consent::ConsentGrpc> grpc;
  SecretString client_secret;
};

// consent's own device CA: a key in the HSM and a self-signed certificate.
absl::Status SetUpLocalDeviceCa(const cfg::ServerConfig& config, hsm::Hsm* hsm,
                                ConsentStack& stack) {
  const std::string& ca_key = config.consent().device_ca_key_id();
  auto ca_pub = EnsureKey(hsm, config, ca_key, "device CA key");
  if (!ca_pub.ok()) return Field("consent.device_ca_key_id", ca_pub.status());
  const std::string& ca_file = config.consent().device_ca_cert_file();
  auto ca_cert = ReadFileToString(ca_file);
  if (ca_cert.status().code() == absl::StatusCode::kNotFound && config.create_missing_keys()) {
    ca_cert = consent::SelfSignedDeviceCaCertificate(hsm, ca_key, "qsign device CA", absl::Now());
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
  auto issuer = consent::HsmDeviceCertificateIssuer::New(hsm, ca_key, *ca_cert);
  if (!issuer.ok()) return Field("consent.device_ca_cert_file", issuer.status());
  stack.issuer = *std::move(issuer);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ConsentStack>> NewConsentStack(const cfg::ServerConfig& config,
                                                              hsm::Hsm* hsm, db::Pool* pool) {
  const cfg::ConsentService& c = config.consent();
  auto stack = std::make_unique<ConsentStack>();
  if (auto s = consent::MigrateConsentSchema(*pool); !s.ok()) return s;
  if (auto pub = EnsureKey(hsm, config, c.sad_key_id(), "SAD key"); !pub.ok()) {
    return Field("consent.sad_key_id", pub.status());
  }
  auto minter = consent::SadMinter::New(hsm, c.sad_key_id());
  if (!minter.ok()) return Field("consent.sad_key_id", minter.status());
  stack->minter = *std::move(minter);

  // The device CA: lifecycle's when lifecycle is reachable (so that revoke-all revokes device
  // certificates too); else a key in the HSM and its self-signed certificate.
  if (!RunsHere(config, "lifecycle") && PeerTarget(config, "lifecycle").empty()) {
    if (auto s = SetUpLocalDeviceCa(config, hsm, *stack); !s.ok()) return s;
  }

  auto pepper = ReadSecretFile(c.pin_pepper_file());
  if (!pepper.ok()) return Field("consent.pin_pepper_file", pepper.status());
  auto pins =
      consent::PinHasher::New(c.pin_pepper_id(), *std::move(pepper),
                              {.time_cost = static_cast<uint32_t>(c.pin_argon2_t()),
                               .memory_kib = static_cast<uint32_t>(c.pin_argon2_m_kib()),
                               .parallelism = 1},
                              static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (!pins.ok()) return Field("consent.pin_pepper_id", pins.status());
  stack->pins = *std::move(pins);

  consent::CredentialTable operators, services;
  if (!config.operators_file().empty()) {
    auto t = consent::CredentialTable::FromFile(config.operators_file());
    if (!t.ok()) return Field("operators_file", t.status());
    operators = *std::move(t);
  }
  if (!config.services_file().empty()) {
    auto t = consent::CredentialTable::FromFile(config.services_file());
    if (!t.ok()) return Field("services_file", t.status());
    services = *std::move(t);
  }
  auto secret = OptionalSecret(c.client_secret_file());
  if (!secret.ok()) return Field("consent.client_secret_file", secret.status());
  stack->client_secret = *std::move(secret);

  stack->store = consent::NewPostgresConsentStore(pool);
  auto listener = consent::PgAccountListener::Start(
      config.database().conninfo(), std::string(consent::kNotifyChannel), &stack->notifier);
  if (!listener.ok()) return listener.status();
  stack->listener = *std::move(listener);
  if (!c.push_webhook_url().empty()) {
    auto hook_secret = OptionalSecret(c.push_webhook_secret_file());
    if (!hook_secret.ok()) return Field("consent.push_webhook_secret_file", hook_secret.status());
    auto gateway = consent::HttpWebhookPushGateway::New(c.push_webhook_url(),
                                                        *std::move(hook_secret), absl::Seconds(5));
    if (!gateway.ok()) return Field("consent.push_webhook_url", gateway.status());
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

struct IdentityStack {
  std::unique_ptr<identity::IdentityStore> store;
  LateConsentClient consent;
  std::unique_ptr<identity::Identity> identity;
  std::unique_ptr<identity::IdentityGrpc> grpc;
  SecretString client_secret;
};

absl::StatusOr<std::unique_ptr<IdentityStack>> NewIdentityStack(const cfg::ServerConfig& config,
                                                                hsm::Hsm* hsm, db::Pool* pool) {
  const cfg::IdentityService& c = config.identity();
  auto stack = std::make_unique<IdentityStack>();
  if (auto s = identity::MigrateIdentitySchema(*pool); !s.ok()) return s;
  identity::IdentityConfig identity_config;
  for (const std::string& id : c.session_key_ids()) {
    auto pub = EnsureKey(hsm, config, id, "session-token key");
    if (!pub.ok()) return Field("identity.session_key_ids", pub.status());
    identity_config.session_key_ids.push_back(id);
  }
  identity_config.consent_client_id = c.consent_client_id();
  identity::CredentialTable operators, services;
  if (!config.operators_file().empty()) {
    auto t = identity::CredentialTable::FromFile(config.operators_file());
    if (!t.ok()) return Field("operators_file", t.status());
    operators = *std::move(t);
  }
  if (!config.services_file().empty()) {
    auto t = identity::CredentialTable::FromFile(config.services_file());
    if (!t.ok()) return Field("services_file", t.status());
    services = *std::move(t);
  }
  auto secret = OptionalSecret(c.client_secret_file());
  if (!secret.ok()) return Field("identity.client_secret_file", secret.status());
  stack->client_secret = *std::move(secret);
  stack->store = identity::NewPostgresIdentityStore(pool);
  auto service = identity::Identity::New(hsm, stack->store.get(), &stack->consent,
                                         &RealClock::Get(), std::move(operators),
                                         std::move(services), std::move(identity_config));
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
  SecretString client_secret;
};

absl::StatusOr<lifecycle::CredentialHashes> LoadHashes(const std::string& path) {
  if (path.empty()) return lifecycle::CredentialHashes();
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return lifecycle::CredentialHashes::Parse(*text);
}

absl::StatusOr<std::unique_ptr<LifecycleStack>> NewLifecycleStack(const cfg::ServerConfig& config,
                                                                  hsm::Hsm* hsm, db::Pool* pool) {
  const cfg::LifecycleService& c = config.lifecycle();
  auto stack = std::make_unique<LifecycleStack>();
  if (auto s = lifecycle::MigrateLifecycleSchema(*pool); !s.ok()) return s;
  auto host_port = ParseHostPort(c.http_listen());
  if (!host_port.ok()) return Field("lifecycle.http_listen", host_port.status());
  auto key_type = hsm::ParseKeyType(c.ca_key_type());
  if (!key_type.ok()) return Field("lifecycle.ca_key_type", key_type.status());
  lifecycle::CaConfig ca_config{.key_type = *key_type, .public_base_url = c.public_base_url()};
  stack->ca_store = lifecycle::NewPostgresCaStore(pool);
  auto cas = config.create_missing_keys()
                 ? lifecycle::CaSet::Init(hsm, stack->ca_store.get(), RealClock::Get(), ca_config)
                 : lifecycle::CaSet::Load(hsm, stack->ca_store.get(), ca_config);
  if (!cas.ok()) return cas.status();
  stack->cas = *std::move(cas);
  auto secret = OptionalSecret(c.client_secret_file());
  if (!secret.ok()) return Field("lifecycle.client_secret_file", secret.status());
  stack->client_secret = *std::move(secret);
  stack->store = lifecycle::NewPostgresLifecycleStore(pool);
  stack->lifecycle = std::make_unique<lifecycle::Lifecycle>(
      stack->cas.get(), stack->store.get(), &stack->clients, &stack->clients, &stack->clients,
      &lifecycle::ContractRegistry::BuiltIn(), &RealClock::Get(),
      lifecycle::LifecycleConfig{.consent_client_id = c.consent_client_id(),
                                 .pds_url = c.pds_url()});
  auto operators = LoadHashes(config.operators_file());
  if (!operators.ok()) return Field("operators_file", operators.status());
  auto services = LoadHashes(config.services_file());
  if (!services.ok()) return Field("services_file", services.status());
  stack->authenticator = std::make_unique<lifecycle::IdentityAuthenticator>(
      &stack->clients, *std::move(operators), *std::move(services));
  stack->grpc = std::make_unique<lifecycle::LifecycleGrpc>(stack->lifecycle.get(),
                                                           stack->authenticator.get());
  stack->ocsp = std::make_unique<lifecycle::OcspResponder>(
      stack->cas.get(), stack->lifecycle->status_source(), &RealClock::Get());
  auto http = lifecycle::StatusHttpServer::Start(
      {.host = host_port->first, .port = host_port->second}, stack->ocsp.get(),
      stack->lifecycle.get(), stack->cas.get());
  if (!http.ok()) return Field("lifecycle.http_listen", http.status());
  stack->http = *std::move(http);
  return stack;
}

// The CSC gateway: HTTP/JSON in front of signer and consent (wherever they run).
struct GatewayStack {
  std::unique_ptr<gateway::GrpcBackend> backend;
  std::unique_ptr<gateway::Gateway> gateway;
  std::unique_ptr<gateway::GatewayHttpServer> http;
};

absl::StatusOr<std::unique_ptr<GatewayStack>> NewGatewayStack(
    const cfg::ServerConfig& config, const std::shared_ptr<grpc::Channel>& signer,
    const std::shared_ptr<grpc::Channel>& consent) {
  const cfg::GatewayService& c = config.gateway();
  auto stack = std::make_unique<GatewayStack>();
  auto host_port = ParseHostPort(c.http_listen());
  if (!host_port.ok()) return Field("gateway.http_listen", host_port.status());
  auto secret = ReadSecretFile(c.client_secret_file());
  if (!secret.ok()) return Field("gateway.client_secret_file", secret.status());
  auto parties = gateway::RelyingPartyTable::FromFile(c.relying_parties_file());
  if (!parties.ok()) return Field("gateway.relying_parties_file", parties.status());
  SecretString key;
  if (c.token_key_file().empty()) {
    std::string random(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()), 32) != 1) {
      return absl::InternalError("gateway: RAND_bytes failed");
    }
    key = SecretString(std::move(random));
    Log(LogLevel::kWarning, "gateway",
        "no gateway.token_key_file: tokens and handles are good for this process only");
  } else {
    auto read = ReadSecretFile(c.token_key_file());
    if (!read.ok()) return Field("gateway.token_key_file", read.status());
    key = *std::move(read);
  }
  auto tokens = gateway::TokenSealer::New(key);
  if (!tokens.ok()) return Field("gateway.token_key_file", tokens.status());
  stack->backend = std::make_unique<gateway::GrpcBackend>(signer, consent, c.client_id(), *secret,
                                                          absl::Seconds(c.rpc_timeout_seconds()));
  auto gw = gateway::Gateway::New(
      stack->backend.get(), *std::move(parties), *std::move(tokens), &RealClock::Get(),
      gateway::GatewayConfig{
          .name = c.name(),
          .logo = c.logo(),
          .region = c.region(),
          .token_lifetime = absl::Seconds(c.token_lifetime_seconds()),
          .authorize_wait = absl::Seconds(c.authorize_wait_seconds()),
          .authorize_check_wait = absl::Seconds(c.authorize_check_wait_seconds())});
  if (!gw.ok()) return Field("gateway", gw.status());
  stack->gateway = *std::move(gw);
  auto http =
      gateway::GatewayHttpServer::Start({.host = host_port->first,
                                         .port = host_port->second,
                                         .threads = c.http_threads(),
                                         .max_body_bytes = static_cast<size_t>(c.max_body_bytes()),
                                         .public_url = c.public_url(),
                                         .cert_file = c.http_cert_file(),
                                         .key_file = c.http_key_file()},
                                        stack->gateway.get());
  if (!http.ok()) return Field("gateway.http_listen", http.status());
  stack->http = *std::move(http);
  return stack;
}

// What the HSM health probe asks for: a key this process relies on. Lifecycle alone has no fixed
// key id; there a NOT_FOUND answer still proves the token answers.
HealthCheck HsmHealthCheck(const cfg::ServerConfig& config, hsm::Hsm* hsm) {
  std::string key;
  if (config.has_signer()) {
    key = config.signer().sad_key_ids(0);
  } else if (config.has_consent()) {
    key = config.consent().sad_key_id();
  } else if (config.has_identity()) {
    key = config.identity().session_key_ids(0);
  }
  if (key.empty()) {
    return {"hsm", [hsm] {
              absl::Status s = hsm->GetPublicKey("qsign-health-probe").status();
              return s.code() == absl::StatusCode::kNotFound ? absl::OkStatus() : s;
            }};
  }
  return {"hsm", [hsm, key] { return hsm->GetPublicKey(key).status(); }};
}

}  // namespace

absl::Status RunDaemon(const cfg::ServerConfig& config, std::string_view component_view) {
  const std::string component(component_view);
  auto fail = [&](std::string_view what, const absl::Status& status) {
    Log(LogLevel::kError, component, what, {{"status", status.ToString()}});
    return status;
  };
  if (config.insecure_dev()) {
    Log(LogLevel::kWarning, component,
        "insecure_dev: plaintext gRPC, no client certificates, no allow-lists; for a laptop only");
  }

  auto transport = Transport::FromConfig(config);
  if (!transport.ok()) return fail("tls", transport.status());

  const bool backend = config.has_signer() || config.has_consent() || config.has_identity() ||
                       config.has_lifecycle();
  std::unique_ptr<hsm::Hsm> hsm;
  std::unique_ptr<db::Pool> pool;
  if (backend) {
    auto h = hsm::NewPkcs11Hsm({.module_path = config.hsm().module(),
                                .token_label = config.hsm().token_label(),
                                .pin_file = config.hsm().pin_file(),
                                .session_pool_size = config.hsm().sessions()});
    if (!h.ok()) return fail("hsm", h.status());
    hsm = *std::move(h);
    auto p = db::Pool::New(
        {.conninfo = config.database().conninfo(), .size = config.database().pool_size()});
    if (!p.ok()) return fail("postgresql", p.status());
    pool = *std::move(p);
  }
  // The global registry outlives this function; what its collectors read (the pool) does not.
  struct Collectors {
    std::vector<metrics::Registry::CollectorId> ids;
    ~Collectors() {
      for (auto id : ids) metrics::Registry::Global().RemoveCollector(id);
    }
  } collectors;
  collectors.ids.push_back(metrics::Registry::Global().AddCollector(
      [insecure = config.insecure_dev()](metrics::Registry& r) {
        r.SetGauge("qsign_insecure_dev", "1 when this process runs with insecure_dev (no TLS).", {},
                   insecure ? 1 : 0);
      }));

  std::vector<grpc::Service*> services;
  std::vector<std::string> service_names;
  std::unique_ptr<SignerStack> signer;
  if (config.has_signer()) {
    auto stack = NewSignerStack(config, hsm.get(), pool.get());
    if (!stack.ok()) return fail("signer", stack.status());
    signer = *std::move(stack);
    services.push_back(signer->grpc.get());
    service_names.push_back("qsign.v1.Signer");
  }
  std::unique_ptr<ConsentStack> consent;
  if (config.has_consent()) {
    auto stack = NewConsentStack(config, hsm.get(), pool.get());
    if (!stack.ok()) return fail("consent", stack.status());
    consent = *std::move(stack);
    services.push_back(consent->grpc.get());
    service_names.push_back("qsign.v1.Consent");
  }
  std::unique_ptr<IdentityStack> identity;
  if (config.has_identity()) {
    auto stack = NewIdentityStack(config, hsm.get(), pool.get());
    if (!stack.ok()) return fail("identity", stack.status());
    identity = *std::move(stack);
    services.push_back(identity->grpc.get());
    service_names.push_back("qsign.v1.Identity");
  }
  std::unique_ptr<LifecycleStack> lifecycle;
  if (config.has_lifecycle()) {
    auto stack = NewLifecycleStack(config, hsm.get(), pool.get());
    if (!stack.ok()) return fail("lifecycle", stack.status());
    lifecycle = *std::move(stack);
    services.push_back(lifecycle->grpc.get());
    service_names.push_back("qsign.v1.Lifecycle");
    Log(LogLevel::kInfo, component, "OCSP/CRL listener",
        {{"http", lifecycle->http->base_url()},
         {"http_port", std::to_string(lifecycle->http->port())}});
  }

  std::unique_ptr<GrpcServer> server;
  std::shared_ptr<grpc::Channel> self_channel;
  if (!services.empty()) {
    GrpcServerOptions options;
    options.listen_address = config.listen();
    options.reflection = config.observability().reflection();
    options.credentials = transport->server;
    auto s = GrpcServer::Start(options, services);
    if (!s.ok()) return fail("listen", Field("listen", s.status()));
    server = *std::move(s);
    // Services in this process call each other through gRPC on this very listener.
    self_channel = transport->Self(server->local_target());
  }
  std::map<std::string, std::shared_ptr<grpc::Channel>> peer_channels;
  auto channel_to = [&](std::string_view service) -> std::shared_ptr<grpc::Channel> {
    if (RunsHere(config, service)) return self_channel;
    const std::string target = PeerTarget(config, service);
    auto& channel = peer_channels[target];
    if (channel == nullptr) channel = transport->Peer(target);
    return channel;
  };

  if (consent) {
    const std::string& id = config.consent().client_id();
    consent->identity.Connect(std::make_unique<consent::GrpcIdentityDirectory>(
        channel_to("identity"), id, consent->client_secret));
    consent->credentials.Connect(std::make_unique<consent::GrpcCredentialDirectory>(
        channel_to("signer"), id, consent->client_secret));
    consent->sessions.Connect(channel_to("identity"), id, consent->client_secret);
    if (!consent->issuer) {
      consent->lifecycle_issuer.Connect(
          std::make_unique<consent::GrpcLifecycleDeviceCertificateIssuer>(
              channel_to("lifecycle"), id, consent->client_secret));
    }
  }
  if (identity) {
    identity->consent.Connect(std::make_unique<identity::GrpcConsentClient>(
        channel_to("consent"), "identity", identity->client_secret));
  }
  absl::Notification stop_scheduler;
  std::thread scheduler;
  if (lifecycle) {
    lifecycle->clients.Connect(channel_to("signer"), channel_to("identity"), channel_to("consent"),
                               "lifecycle", lifecycle->client_secret);
    std::unique_ptr<lifecycle::Mailer> mailer;
    if (!config.lifecycle().smtp_url().empty()) {
      mailer = std::make_unique<lifecycle::SmtpMailer>(lifecycle::SmtpConfig{
          .url = config.lifecycle().smtp_url(), .from = config.lifecycle().mail_from()});
    }
    // CRLs before they go stale, renewal reminders, the outbox (with smtp_url): every 10 minutes.
    scheduler = std::thread([&, mailer = std::move(mailer)] {
      do {
        for (std::string_view ca :
             {lifecycle::kRootCa, lifecycle::kQualifiedCa, lifecycle::kDeviceCa}) {
          if (auto crl = lifecycle->lifecycle->CurrentCrl(ca); !crl.ok()) {
            Log(LogLevel::kError, component, "scheduled CRL failed",
                {{"ca", ca}, {"status", crl.status().ToString()}});
          }
        }
        if (auto n = lifecycle->lifecycle->QueueRenewalReminders(); !n.ok()) {
          Log(LogLevel::kError, component, "renewal reminders failed",
              {{"status", n.status().ToString()}});
        }
        if (mailer != nullptr) {
          if (auto run = lifecycle->lifecycle->DeliverOutbox(*mailer, 500); !run.ok()) {
            Log(LogLevel::kError, component, "outbox delivery failed",
                {{"status", run.status().ToString()}});
          } else if (run->sent + run->failed > 0) {
            Log(LogLevel::kInfo, component, "outbox delivered",
                {{"sent", std::to_string(run->sent)}, {"failed", std::to_string(run->failed)}});
          }
        }
      } while (!stop_scheduler.WaitForNotificationWithTimeout(absl::Minutes(10)));
    });
  }
  // Stops the scheduler on every way out of here.
  struct SchedulerStop {
    absl::Notification* stop;
    std::thread* thread;
    ~SchedulerStop() {
      if (!stop->HasBeenNotified()) stop->Notify();
      if (thread->joinable()) thread->join();
    }
  } scheduler_stop{&stop_scheduler, &scheduler};

  std::vector<HealthCheck> checks;
  if (pool)
    checks.push_back({"postgresql", [p = pool.get()] { return p->Exec("SELECT 1").status(); }});
  if (hsm) checks.push_back(HsmHealthCheck(config, hsm.get()));
  std::unique_ptr<HealthProber> health;
  if (server) health = std::make_unique<HealthProber>(server.get(), checks, absl::Seconds(2));
  // Kubernetes' gRPC probes cannot present a client certificate: a plaintext listener that
  // serves grpc.health.v1 only, kept truthful by its own prober.
  std::unique_ptr<GrpcServer> health_server;
  std::unique_ptr<HealthProber> health_only;
  if (!config.observability().health_listen().empty()) {
    auto s = GrpcServer::Start({.listen_address = config.observability().health_listen()}, {});
    if (!s.ok()) return fail("listen", Field("observability.health_listen", s.status()));
    health_server = *std::move(s);
    health_only = std::make_unique<HealthProber>(health_server.get(), checks, absl::Seconds(2));
  }

  std::unique_ptr<GatewayStack> gateway;
  if (config.has_gateway()) {
    auto stack = NewGatewayStack(config, channel_to("signer"), channel_to("consent"));
    if (!stack.ok()) return fail("gateway", stack.status());
    gateway = *std::move(stack);
    Log(LogLevel::kInfo, component, "CSC gateway listener",
        {{"http", gateway->http->base_url()},
         {"http_port", std::to_string(gateway->http->port())}});
  }

  std::unique_ptr<metrics::MetricsHttpServer> metrics_http;
  if (!config.observability().metrics_listen().empty()) {
    if (pool) {
      collectors.ids.push_back(
          metrics::Registry::Global().AddCollector([p = pool.get()](metrics::Registry& r) {
            const db::PoolStats stats = p->Stats();
            r.SetGauge("qsign_db_pool_connections", "PostgreSQL connections by state.",
                       {{"state", "in_use"}}, stats.in_use);
            r.SetGauge("qsign_db_pool_connections", "PostgreSQL connections by state.",
                       {{"state", "open"}}, stats.open);
            r.SetGauge("qsign_db_pool_size", "Configured PostgreSQL pool size.", {}, stats.size);
          }));
    }
    // With TLS, HTTPS asking the scraper for a client certificate from tls.client_ca_file.
    auto m = config.has_tls()
                 ? metrics::MetricsHttpServer::Start(
                       config.observability().metrics_listen(), &metrics::Registry::Global(),
                       {.cert_file = config.tls().cert_file(),
                        .key_file = config.tls().key_file(),
                        .client_ca_file = config.tls().client_ca_file()})
                 : metrics::MetricsHttpServer::Start(config.observability().metrics_listen(),
                                                     &metrics::Registry::Global());
    if (!m.ok()) return fail("metrics", Field("observability.metrics_listen", m.status()));
    metrics_http = *std::move(m);
  }

  const std::string grpc_port = server ? std::to_string(server->port()) : "";
  Log(LogLevel::kInfo, component, "ready",
      {{"listen", server ? config.listen() : ""},
       {"port", grpc_port},
       {"services", absl::StrJoin(service_names, ",")},
       {"gateway", gateway ? gateway->http->base_url() : ""}});
  // SIGINT/SIGTERM are blocked in every thread (see DaemonMain) and taken here synchronously.
  int sig = 0;
  sigwait(&StopSignals(), &sig);
  Log(LogLevel::kInfo, component, "stopping: finishing in-flight calls");
  health.reset();  // Before the server goes away: the prober updates its health status.
  health_only.reset();
  // Load balancers and readiness probes see NOT_SERVING for the whole grace period, not only
  // once gRPC's shutdown has begun.
  if (server) server->SetServing(false);
  if (health_server) health_server->SetServing(false);
  gateway.reset();                            // Its calls into this process finish first.
  if (consent) consent->consent->Shutdown();  // Ends the apps' open streams.
  stop_scheduler.Notify();
  if (scheduler.joinable()) scheduler.join();
  if (server) server->Shutdown(absl::Seconds(config.observability().grace_seconds()));
  if (health_server) health_server->Shutdown(absl::ZeroDuration());
  if (lifecycle) lifecycle->http.reset();
  Log(LogLevel::kInfo, component, "stopped");
  return absl::OkStatus();
}

int DaemonMain(int argc, char** argv, std::string_view program_view, std::string_view only) {
  // Before any thread exists, so that every thread inherits the mask.
  pthread_sigmask(SIG_BLOCK, &StopSignals(), nullptr);
  const std::string program(program_view);
  absl::SetProgramUsageMessage(
      only.empty()
          ? absl::StrCat(program,
                         " --config=FILE [--check_config]: the qsign services named in FILE")
          : absl::StrCat(program, " --config=FILE [--check_config]: the ", Av(only),
                         " service; FILE has exactly the ", Av(only), " section"));
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_config);
  const bool check = absl::GetFlag(FLAGS_check_config);
  auto config = LoadConfig(path);
  absl::Status status = config.status();
  if (status.ok() && !only.empty()) {
    const std::vector<std::string> present = ConfiguredServices(*config);
    if (present.size() != 1 || present[0] != only) {
      status = absl::InvalidArgumentError(absl::StrCat(
          path, ": ", program, " runs only the ", Av(only), " service, the config has section(s) ",
          present.empty() ? "none" : absl::StrJoin(present, ", "),
          " (use qsignd for several in one process)"));
    }
  }
  if (check && status.ok()) {
    // The certificates and key parse and match, the allow-list names known groups.
    if (auto transport = Transport::FromConfig(*config); !transport.ok()) {
      status = transport.status();
    }
  }
  if (check) {
    if (!status.ok()) {
      // One line a problem.
      std::fprintf(stderr, "config: %s\n",
                   absl::StrReplaceAll(status.message(), {{"\n", "\nconfig: "}}).c_str());
      return 1;
    }
    std::printf("%s: OK (%s)\n", path.c_str(),
                absl::StrJoin(ConfiguredServices(*config), ", ").c_str());
    return 0;
  }
  if (!status.ok()) {
    Log(LogLevel::kError, program, "config", {{"error", Sv(status.message())}});
    return 1;
  }
  return RunDaemon(*config, program).ok() ? 0 : 1;
}

}  // namespace qsign

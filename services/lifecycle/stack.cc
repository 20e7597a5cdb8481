#include "services/lifecycle/stack.h"

#include <openssl/crypto.h>

#include <memory>
#include <string>
#include <utility>

#include "common/auth/authenticator.h"
#include "common/auth/session_feed_grpc.h"
#include "common/auth/session_key_cache.h"
#include "common/daemon/config.h"
#include "common/daemon/stack_helpers.h"
#include "common/file.h"
#include "common/log.h"
#include "common/mail/mailer.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/ocsp.h"
#include "services/lifecycle/clients_grpc.h"
#include "services/lifecycle/contracts.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_grpc.h"
#include "services/lifecycle/lifecycle_store.h"
#include "services/lifecycle/scheduler.h"
#include "services/lifecycle/schema.h"
#include "services/lifecycle/status_cache.h"
#include "services/lifecycle/status_http.h"

namespace qsign::lifecycle {
namespace {

using daemon::Field;
namespace cfg = ::qsign::config::v1;

// The clients' constructors keep their own wiped copy of the secret; this one is wiped too.
struct WipedServiceCredential {
  ServiceCredential value;
  WipedServiceCredential(std::string_view client_id, const SecretString& secret)
      : value{.client_id = std::string(client_id), .secret = std::string(secret.value())} {}
  ~WipedServiceCredential() { OPENSSL_cleanse(value.secret.data(), value.secret.size()); }
};

class LifecycleStack final : public daemon::Stack {
 public:
  static absl::StatusOr<std::unique_ptr<daemon::Stack>> New(const daemon::StackEnv& env);

  std::vector<Served> services() override {
    return {{qsign::v1::Lifecycle::service_full_name(), grpc_.get()}};
  }
  void Start() override {
    sessions_->Start();
    scheduler_->Start();
  }
  void Stop() override {
    scheduler_->Stop();
    sessions_->Stop();
  }
  int http_port() const { return http_->port(); }

 private:
  std::unique_ptr<CaStore> ca_store_;
  std::unique_ptr<CaSet> cas_;
  std::unique_ptr<LifecycleStore> store_;
  std::unique_ptr<GrpcSignerClient> signer_;
  std::unique_ptr<GrpcIdentityClient> identity_;
  std::unique_ptr<GrpcConsentClient> consent_;
  std::unique_ptr<Lifecycle> lifecycle_;
  // Users' session tokens, verified here against identity's keys and revocation feed.
  std::unique_ptr<auth::GrpcSessionFeed> session_feed_;
  std::unique_ptr<auth::SessionKeyCache> sessions_;
  std::unique_ptr<auth::Authenticator> authenticator_;
  std::unique_ptr<LifecycleGrpc> grpc_;
  // Statuses for signed OCSP answers, emptied by every replica's status changes (NOTIFY).
  std::unique_ptr<CachedStatusSource> statuses_;
  std::unique_ptr<OcspResponder> ocsp_;
  std::unique_ptr<StatusHttpServer> http_;
  std::unique_ptr<Scheduler> scheduler_;  // Before http_ and lifecycle_ go.
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> LifecycleStack::New(const daemon::StackEnv& env) {
  const cfg::ServerConfig& config = env.config;
  const cfg::LifecycleService& c = config.lifecycle();
  auto stack = std::make_unique<LifecycleStack>();
  if (auto s = MigrateLifecycleSchema(*env.pool); !s.ok()) return s;
  auto host_port = ParseHostPort(c.http_listen());
  if (!host_port.ok()) return Field("lifecycle.http_listen", host_port.status());
  auto key_type = hsm::ParseKeyType(c.ca_key_type());
  if (!key_type.ok()) return Field("lifecycle.ca_key_type", key_type.status());
  CaConfig ca_config{.key_type = *key_type, .public_base_url = c.public_base_url()};
  auto hsm = env.Token("lifecycle");
  if (!hsm.ok()) return hsm.status();
  stack->ca_store_ = NewPostgresCaStore(env.pool);
  auto cas = config.create_missing_keys()
                 ? CaSet::Init(*hsm, stack->ca_store_.get(), *env.clock, ca_config)
                 : CaSet::Load(*hsm, stack->ca_store_.get(), ca_config);
  if (!cas.ok()) return cas.status();
  stack->cas_ = *std::move(cas);
  auto secret = daemon::OptionalSecret(c.client_secret_file());
  if (!secret.ok()) return Field("lifecycle.client_secret_file", secret.status());
  {
    const WipedServiceCredential credential("lifecycle", *secret);
    stack->signer_ =
        std::make_unique<GrpcSignerClient>(env.channels->To("signer"), credential.value);
    stack->identity_ =
        std::make_unique<GrpcIdentityClient>(env.channels->To("identity"), credential.value);
    stack->consent_ =
        std::make_unique<GrpcConsentClient>(env.channels->To("consent"), credential.value);
  }
  stack->store_ = NewPostgresLifecycleStore(env.pool);
  stack->lifecycle_ = std::make_unique<Lifecycle>(
      stack->cas_.get(), stack->store_.get(), stack->signer_.get(), stack->identity_.get(),
      stack->consent_.get(), &ContractRegistry::BuiltIn(), env.clock,
      LifecycleConfig{.consent_client_id = c.consent_client_id(),
                      .tsa_client_id = c.tsa_client_id().empty() ? "tsa" : c.tsa_client_id(),
                      .pds_url = c.pds_url()});
  auto operators = daemon::OptionalCredentialTable(config.operators_file(), "operators_file");
  if (!operators.ok()) return operators.status();
  auto services = daemon::OptionalCredentialTable(config.services_file(), "services_file");
  if (!services.ok()) return services.status();
  stack->session_feed_ =
      std::make_unique<auth::GrpcSessionFeed>(env.channels->To("identity"), "lifecycle", *secret);
  auto sessions =
      daemon::NewSessionKeyCache(config, env.clock, stack->session_feed_.get(), "lifecycle");
  if (!sessions.ok()) return sessions.status();
  stack->sessions_ = *std::move(sessions);
  stack->authenticator_ = std::make_unique<auth::Authenticator>(
      *std::move(operators), *std::move(services), stack->sessions_.get(), "lifecycle");
  stack->grpc_ =
      std::make_unique<LifecycleGrpc>(stack->lifecycle_.get(), stack->authenticator_.get());
  OcspConfig ocsp_config;
  if (c.has_ocsp_signatures_per_second()) {
    ocsp_config.signatures_per_second = c.ocsp_signatures_per_second();
  }
  auto statuses =
      CachedStatusSource::Start(config.database().conninfo(), stack->lifecycle_->status_source());
  if (!statuses.ok()) return statuses.status();
  stack->statuses_ = *std::move(statuses);
  stack->ocsp_ = std::make_unique<OcspResponder>(stack->cas_.get(), stack->statuses_.get(),
                                                 env.clock, ocsp_config);
  auto http =
      StatusHttpServer::Start({.host = host_port->first,
                               .port = host_port->second,
                               .limits = daemon::HttpLimitsOf(env.config)},
                              stack->ocsp_.get(), stack->lifecycle_.get(), stack->cas_.get());
  if (!http.ok()) return Field("lifecycle.http_listen", http.status());
  stack->http_ = *std::move(http);
  Log(LogLevel::kInfo, env.component, "OCSP/CRL listener",
      {{"http", stack->http_->base_url()}, {"http_port", std::to_string(stack->http_->port())}});
  std::unique_ptr<Mailer> mailer;
  if (!c.smtp_url().empty()) {
    mailer = std::make_unique<SmtpMailer>(SmtpConfig{.url = c.smtp_url(), .from = c.mail_from()});
  }
  stack->scheduler_ =
      std::make_unique<Scheduler>(stack->lifecycle_.get(), std::move(mailer), env.component);
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "lifecycle", .build = &LifecycleStack::New};

int HttpPort(daemon::Stack* stack) {
  auto* lifecycle = dynamic_cast<LifecycleStack*>(stack);
  return lifecycle == nullptr ? 0 : lifecycle->http_port();
}

}  // namespace qsign::lifecycle

#include "services/identity/stack.h"

#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/daemon/stack_helpers.h"
#include "common/log.h"
#include "common/mail/mailer.h"
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

  // Background work: the outbox sent every few seconds (the registration link should arrive
  // while the user waits), and hourly the cleanup of registrations nobody confirmed or proofed.
  void Start() override {
    background_ = std::thread([this] {
      absl::Time next_cleanup = absl::InfinitePast();
      absl::MutexLock lock(&mu_);
      while (!stopping_) {
        mu_.Unlock();
        if (mailer_ != nullptr) {
          if (auto run = identity_->DeliverOutbox(*mailer_, 100); !run.ok()) {
            Log(LogLevel::kError, "identity", "outbox delivery failed",
                {{"status", run.status().ToString()}});
          }
        }
        if (absl::Now() >= next_cleanup) {
          next_cleanup = absl::Now() + absl::Hours(1);
          auto expired = identity_->ExpireUnproofedAccounts();
          if (!expired.ok()) {
            Log(LogLevel::kError, "identity", "expiring unproofed accounts failed",
                {{"status", expired.status().ToString()}});
          } else if (*expired > 0) {
            Log(LogLevel::kInfo, "identity", "unproofed accounts expired",
                {{"count", std::to_string(*expired)}});
          }
        }
        mu_.Lock();
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Seconds(2));
      }
    });
  }
  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (background_.joinable()) background_.join();
  }
  ~IdentityStack() override { Stop(); }

 private:
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread background_;
  std::unique_ptr<Mailer> mailer_;  // nullptr: mail stays queued.
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
  if (c.has_logins_per_account_per_minute()) {
    identity_config.logins_per_account_per_minute = c.logins_per_account_per_minute();
  }
  if (c.has_logins_per_address_per_minute()) {
    identity_config.logins_per_address_per_minute = c.logins_per_address_per_minute();
  }
  if (c.has_registrations_per_address_per_hour()) {
    identity_config.registrations_per_address_per_hour = c.registrations_per_address_per_hour();
  }
  if (c.has_corrections_per_operator_per_hour()) {
    identity_config.corrections_per_operator_per_hour = c.corrections_per_operator_per_hour();
  }
  if (!c.registration_url().empty()) identity_config.registration_url = c.registration_url();
  const std::string from = c.mail_from().empty() ? "qsign@localhost" : c.mail_from();
  if (!c.smtp_url().empty()) {
    stack->mailer_ = std::make_unique<SmtpMailer>(SmtpConfig{.url = c.smtp_url(), .from = from});
  } else if (!c.mail_drop_dir().empty()) {
    stack->mailer_ = std::make_unique<MailDropMailer>(c.mail_drop_dir(), from);
  }
  auto client_address = daemon::ClientAddressResolverOf(env.config);
  if (!client_address.ok()) return client_address.status();
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
  stack->grpc_ = std::make_unique<IdentityGrpc>(stack->identity_.get(), *std::move(client_address));
  stack->probe_key_ = c.session_key_ids(0);
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "identity", .build = &IdentityStack::New};

}  // namespace qsign::identity

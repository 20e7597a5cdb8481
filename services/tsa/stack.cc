#include "services/tsa/stack.h"

#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/synchronization/notification.h"
#include "common/auth/audit_event.h"
#include "common/daemon/stack_helpers.h"
#include "common/http/server.h"
#include "common/log.h"
#include "services/tsa/lifecycle_client.h"
#include "services/tsa/tsa.h"
#include "services/tsa/tsa_grpc.h"
#include "services/tsa/tsa_http.h"
#include "services/tsa/tsa_store.h"

namespace qsign::tsa {
namespace {

using daemon::Field;
namespace cfg = ::qsign::config::v1;

class TsaStack final : public daemon::Stack {
 public:
  static absl::StatusOr<std::unique_ptr<daemon::Stack>> New(const daemon::StackEnv& env);
  ~TsaStack() override { Stop(); }

  std::vector<Served> services() override {
    return {{qsign::v1::Tsa::service_full_name(), grpc_.get()}};
  }
  void Start() override {
    if (authority_->ready()) return;
    fetcher_ = std::thread([this] { FetchCertificate(); });
  }
  void Stop() override {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (fetcher_.joinable()) fetcher_.join();
    if (http_) http_->Stop();
  }
  std::string hsm_probe_key() const override { return authority_->config().key_id; }

 private:
  // Asks lifecycle for the certificate until it answers (it may start after us), keeps it with
  // an audit record, then serves under it.
  void FetchCertificate() {
    absl::Duration wait = absl::Milliseconds(200);
    while (!stop_.HasBeenNotified()) {
      auto cert = lifecycle_->IssueTsaCertificate(authority_->public_key().spki_der, name_);
      if (cert.ok()) {
        const absl::Time now = clock_->Now();
        auto audit = auth::AuditEventOf("tsa", "tsa_certificate.install", cert->serial_hex,
                                        auth::ClientInfo{}, "ok",
                                        absl::StrCat("key_id=", authority_->config().key_id));
        if (auto s = store_->SaveCertificate(authority_->public_key().spki_der, *cert, audit, now);
            s.ok()) {
          Log(LogLevel::kInfo, "tsa", "TSA certificate installed", {{"serial", cert->serial_hex}});
          authority_->SetCertificate(*std::move(cert));
          return;
        } else {
          Log(LogLevel::kWarning, "tsa", "storing the TSA certificate failed",
              {{"status", s.ToString()}});
        }
      } else {
        Log(LogLevel::kWarning, "tsa", "TSA certificate not issued yet; retrying",
            {{"status", cert.status().ToString()}});
      }
      stop_.WaitForNotificationWithTimeout(wait);
      wait = std::min(wait * 2, absl::Seconds(10));
    }
  }

  const Clock* clock_ = nullptr;
  std::string name_;
  std::unique_ptr<TsaStore> store_;
  std::unique_ptr<GrpcLifecycleClient> lifecycle_;
  std::unique_ptr<TimestampAuthority> authority_;
  std::unique_ptr<TsaGrpc> grpc_;
  std::unique_ptr<http::Server> http_;
  absl::Notification stop_;
  std::thread fetcher_;
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> TsaStack::New(const daemon::StackEnv& env) {
  const cfg::ServerConfig& config = env.config;
  const cfg::TsaService& c = config.tsa();
  auto stack = std::make_unique<TsaStack>();
  stack->clock_ = env.clock;
  stack->name_ = c.name();
  if (auto s = MigrateTsaSchema(*env.pool); !s.ok()) return s;
  auto host_port = http::ParseHostPort(c.http_listen());
  if (!host_port.ok()) return Field("tsa.http_listen", host_port.status());
  auto hsm = env.Token("tsa");  // The TSA key's own token (role "tsa").
  if (!hsm.ok()) return hsm.status();
  auto key = daemon::EnsureKey(*hsm, config, c.key_id(), "TSA key");
  if (!key.ok()) return Field("tsa.key_id", key.status());
  stack->store_ = NewPostgresTsaStore(env.pool);
  stack->authority_ = std::make_unique<TimestampAuthority>(
      *hsm, *key, stack->store_.get(), env.clock,
      TsaConfig{.key_id = c.key_id(),
                .policy_oid = c.policy_oid(),
                .accuracy = absl::Milliseconds(c.accuracy_ms())});
  auto stored = stack->store_->FindCertificate(key->spki_der);
  if (!stored.ok()) return stored.status();
  if (stored->has_value() && (*stored)->not_after > env.clock->Now()) {
    stack->authority_->SetCertificate(**std::move(stored));
  }
  auto secret = daemon::OptionalSecret(c.client_secret_file());
  if (!secret.ok()) return Field("tsa.client_secret_file", secret.status());
  stack->lifecycle_ =
      std::make_unique<GrpcLifecycleClient>(env.channels->To("lifecycle"), "tsa", *secret);
  stack->grpc_ = std::make_unique<TsaGrpc>(stack->authority_.get());
  auto http = StartTsaHttp({.host = host_port->first,
                            .port = host_port->second,
                            .threads = c.http_threads(),
                            .limits = daemon::HttpLimitsOf(env.config)},
                           stack->authority_.get());
  if (!http.ok()) return Field("tsa.http_listen", http.status());
  stack->http_ = *std::move(http);
  Log(LogLevel::kInfo, env.component, "TSA listener",
      {{"http", stack->http_->base_url()}, {"http_port", std::to_string(stack->http_->port())}});
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "tsa", .build = &TsaStack::New};

}  // namespace qsign::tsa

// qsign-lifecycle: the lifecycle service on its own (production: one deployment per service).
// gRPC on --listen, the public OCSP/CRL/CA-certificate listener on --http_listen. The CA must
// exist (qsign-ca init), unless --init_ca.
#include <pthread.h>

#include <csignal>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "common/log.h"
#include "common/secret.h"
#include "hsm/hsm.h"
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

ABSL_FLAG(std::string, listen, "127.0.0.1:7445", "gRPC listen address (host:port)");
ABSL_FLAG(std::string, http_host, "127.0.0.1", "OCSP/CRL HTTP listener host");
ABSL_FLAG(int, http_port, 8080, "OCSP/CRL HTTP listener port");
ABSL_FLAG(std::string, db, "", "libpq connection string of the qsign database");
ABSL_FLAG(int, db_pool_size, 8, "PostgreSQL connections");
ABSL_FLAG(std::string, pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so", "PKCS#11 module path");
ABSL_FLAG(std::string, token_label, "qsign", "HSM token label");
ABSL_FLAG(std::string, pin_file, "", "file holding the HSM user PIN");
ABSL_FLAG(bool, init_ca, false, "create the CA hierarchy when missing (as qsign-ca init)");
ABSL_FLAG(std::string, ca_key_type, "EC_P256", "key type of CA keys created by --init_ca");
ABSL_FLAG(std::string, public_base_url, "http://127.0.0.1:8080",
          "base URL of the HTTP listener as relying parties reach it (in certificates)");
ABSL_FLAG(std::string, pds_url, "https://qsign.example/pds/en", "PKI disclosure statement URL");
ABSL_FLAG(std::string, signer_target, "127.0.0.1:7443", "signer gRPC address");
ABSL_FLAG(std::string, identity_target, "127.0.0.1:7443", "identity gRPC address");
ABSL_FLAG(std::string, consent_target, "127.0.0.1:7443", "consent gRPC address");
ABSL_FLAG(std::string, client_id, "lifecycle", "this service's client id at the others");
ABSL_FLAG(std::string, client_secret_file, "", "file holding this service's secret");
ABSL_FLAG(std::string, operators_file, "", "operator credentials: lines \"<id> <sha256 hex>\"");
ABSL_FLAG(std::string, services_file, "", "service credentials, same format");
ABSL_FLAG(std::string, consent_client_id, "consent",
          "the consent service's client id (the only caller of IssueDeviceCertificate)");
ABSL_FLAG(int, grace_seconds, 10, "how long in-flight calls may finish on SIGTERM");

namespace qsign::lifecycle {
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

absl::StatusOr<CredentialHashes> LoadHashes(const std::string& path) {
  if (path.empty()) return CredentialHashes();
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return CredentialHashes::Parse(ss.str());
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_db).empty()) return absl::InvalidArgumentError("--db: required");
  if (absl::GetFlag(FLAGS_pin_file).empty()) {
    return absl::InvalidArgumentError("--pin_file: required");
  }
  auto hsm = hsm::NewPkcs11Hsm({.module_path = absl::GetFlag(FLAGS_pkcs11_module),
                                .token_label = absl::GetFlag(FLAGS_token_label),
                                .pin_file = absl::GetFlag(FLAGS_pin_file)});
  if (!hsm.ok()) return hsm.status();
  auto pool = db::Pool::New(
      {.conninfo = absl::GetFlag(FLAGS_db), .size = absl::GetFlag(FLAGS_db_pool_size)});
  if (!pool.ok()) return pool.status();
  if (auto s = MigrateLifecycleSchema(**pool); !s.ok()) return s;

  auto key_type = hsm::ParseKeyType(absl::GetFlag(FLAGS_ca_key_type));
  if (!key_type.ok()) return key_type.status();
  CaConfig ca_config{.key_type = *key_type,
                     .public_base_url = absl::GetFlag(FLAGS_public_base_url)};
  auto ca_store = NewPostgresCaStore(pool->get());
  auto cas = absl::GetFlag(FLAGS_init_ca)
                 ? CaSet::Init(hsm->get(), ca_store.get(), RealClock::Get(), ca_config)
                 : CaSet::Load(hsm->get(), ca_store.get(), ca_config);
  if (!cas.ok()) return cas.status();

  ServiceCredential credential{.client_id = absl::GetFlag(FLAGS_client_id)};
  if (!absl::GetFlag(FLAGS_client_secret_file).empty()) {
    auto secret = ReadSecretFile(absl::GetFlag(FLAGS_client_secret_file));
    if (!secret.ok()) return secret.status();
    credential.secret = std::string(secret->value());
  }
  auto channel = [](const std::string& target) {
    return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  };
  GrpcSignerClient signer(channel(absl::GetFlag(FLAGS_signer_target)), credential);
  GrpcIdentityClient identity(channel(absl::GetFlag(FLAGS_identity_target)), credential);
  GrpcConsentClient consent(channel(absl::GetFlag(FLAGS_consent_target)), credential);

  auto store = NewPostgresLifecycleStore(pool->get());
  Lifecycle lifecycle(cas->get(), store.get(), &signer, &identity, &consent,
                      &ContractRegistry::BuiltIn(), &RealClock::Get(),
                      {.consent_client_id = absl::GetFlag(FLAGS_consent_client_id),
                       .pds_url = absl::GetFlag(FLAGS_pds_url)});
  auto operators = LoadHashes(absl::GetFlag(FLAGS_operators_file));
  if (!operators.ok()) return operators.status();
  auto services = LoadHashes(absl::GetFlag(FLAGS_services_file));
  if (!services.ok()) return services.status();
  IdentityAuthenticator authenticator(&identity, *std::move(operators), *std::move(services));
  LifecycleGrpc grpc(&lifecycle, &authenticator);
  OcspResponder ocsp(cas->get(), lifecycle.status_source(), &RealClock::Get());

  auto http = StatusHttpServer::Start(
      {.host = absl::GetFlag(FLAGS_http_host), .port = absl::GetFlag(FLAGS_http_port)}, &ocsp,
      &lifecycle, cas->get());
  if (!http.ok()) return http.status();
  auto server = GrpcServer::Start({.listen_address = absl::GetFlag(FLAGS_listen)}, {&grpc});
  if (!server.ok()) return server.status();

  // CRLs before they go stale, renewal reminders: every 10 minutes.
  absl::Notification stop;
  std::thread scheduler([&] {
    do {
      for (std::string_view ca : {kRootCa, kQualifiedCa, kDeviceCa}) {
        if (auto crl = lifecycle.CurrentCrl(ca); !crl.ok()) {
          Log(LogLevel::kError, "lifecycle", "scheduled CRL failed",
              {{"ca", ca}, {"status", crl.status().ToString()}});
        }
      }
      if (auto n = lifecycle.QueueRenewalReminders(); !n.ok()) {
        Log(LogLevel::kError, "lifecycle", "renewal reminders failed",
            {{"status", n.status().ToString()}});
      }
    } while (!stop.WaitForNotificationWithTimeout(absl::Minutes(10)));
  });

  Log(LogLevel::kInfo, "lifecycle", "ready",
      {{"listen", absl::GetFlag(FLAGS_listen)}, {"http", (*http)->base_url()}});
  int sig = 0;
  sigwait(&StopSignals(), &sig);
  Log(LogLevel::kInfo, "lifecycle", "stopping");
  stop.Notify();
  scheduler.join();
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_grace_seconds)));
  http->reset();
  return absl::OkStatus();
}

}  // namespace
}  // namespace qsign::lifecycle

int main(int argc, char** argv) {
  pthread_sigmask(SIG_BLOCK, &qsign::lifecycle::StopSignals(), nullptr);
  absl::ParseCommandLine(argc, argv);
  absl::Status s = qsign::lifecycle::Run();
  if (!s.ok()) {
    qsign::Log(qsign::LogLevel::kError, "lifecycle", "failed", {{"status", s.ToString()}});
    return 1;
  }
  return 0;
}

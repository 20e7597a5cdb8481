// qsignd: every qsign service in one process on one port, for a laptop, a demo and the tests.
#include <pthread.h>

#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "common/health.h"
#include "common/log.h"
#include "consent/sad.h"
#include "hsm/hsm.h"
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
ABSL_FLAG(bool, reflection, false, "serve gRPC server reflection (for grpcurl)");
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
  for (absl::string_view id_view : absl::StrSplit(absl::GetFlag(FLAGS_sad_key_ids), ',',
                                            absl::SkipEmpty())) {
    const std::string id(id_view);
    auto pub = (*hsm)->GetPublicKey(id);
    if (pub.status().code() == absl::StatusCode::kNotFound &&
        absl::GetFlag(FLAGS_create_missing_keys)) {
      Log(LogLevel::kInfo, "qsignd", "generating SAD key in the HSM", {{"key_id", std::string_view(id)}});
      pub = (*hsm)->GenerateKeyPair(id, hsm::KeyType::kEcP256);
    }
    if (!pub.ok()) return Fail(absl::StrCat("SAD key ", id), pub.status());
    sad_keys[std::string(id)] = pub->spki_der;
  }
  auto verifier = consent::SadVerifier::New(sad_keys);
  if (!verifier.ok()) return Fail("SAD verifier", verifier.status());

  auto store = signer::NewPostgresSignerStore(pool->get());
  signer::Signer signer(hsm->get(), store.get(), verifier->get(), &RealClock::Get(),
                        {.max_batch = absl::GetFlag(FLAGS_max_batch)});
  signer::SignerGrpc signer_grpc(&signer);

  auto server = GrpcServer::Start({.listen_address = absl::GetFlag(FLAGS_listen),
                                   .reflection = absl::GetFlag(FLAGS_reflection)},
                                  {&signer_grpc});
  if (!server.ok()) return Fail("listen", server.status());
  const std::string health_key = sad_keys.begin()->first;
  auto health = std::make_unique<HealthProber>(
      server->get(),
      std::vector<HealthCheck>
      {{"postgresql", [&] { return (*pool)->Exec("SELECT 1").status(); }},
       {"hsm", [&] { return (*hsm)->GetPublicKey(health_key).status(); }}},
      absl::Seconds(2));

  Log(LogLevel::kInfo, "qsignd", "ready",
      {{"listen", absl::GetFlag(FLAGS_listen)}, {"services", "qsign.v1.Signer"}});
  // SIGINT/SIGTERM are blocked in every thread (see main) and taken here synchronously.
  int sig = 0;
  sigwait(&StopSignals(), &sig);
  Log(LogLevel::kInfo, "qsignd", "stopping: finishing in-flight calls");
  health.reset();  // Before the server goes away: the prober updates its health status.
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_grace_seconds)));
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

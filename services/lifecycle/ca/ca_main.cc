// qsign-ca: sets up the CA hierarchy (keys generated in the HSM, certificates in PostgreSQL).
//
//   qsign-ca init --db=... --pin_file=... [--key_type=EC_P256] [--public_base_url=...]
//
// Idempotent: a second run reuses what exists and only renews OCSP responder certificates near
// expiry. Prints each CA's name, serial and subject.
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/log.h"
#include "hsm/hsm.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/schema.h"

ABSL_FLAG(std::string, db, "", "libpq connection string of the qsign database");
ABSL_FLAG(std::string, pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so", "PKCS#11 module path");
ABSL_FLAG(std::string, token_label, "qsign-lifecycle",
          "label of the lifecycle role's HSM token (hsm.token { role: \"lifecycle\" })");
ABSL_FLAG(std::string, pin_file, "", "file holding the HSM user PIN");
ABSL_FLAG(std::string, key_type, "EC_P256",
          "key type of new CA keys: EC_P256, EC_P384, RSA_3072 or RSA_4096");
ABSL_FLAG(std::string, organization, "qsign", "O of the CA certificates");
ABSL_FLAG(std::string, public_base_url, "http://127.0.0.1:8080",
          "base URL of the lifecycle HTTP listener (OCSP, CRLs, CA certificates)");
ABSL_FLAG(std::string, key_id_prefix, "qsign-ca-", "HSM key ids are <prefix><ca name>");

namespace qsign::lifecycle {
namespace {

absl::Status Init() {
  if (absl::GetFlag(FLAGS_db).empty()) return absl::InvalidArgumentError("--db: required");
  if (absl::GetFlag(FLAGS_pin_file).empty()) {
    return absl::InvalidArgumentError("--pin_file: required");
  }
  auto key_type = hsm::ParseKeyType(absl::GetFlag(FLAGS_key_type));
  if (!key_type.ok()) return key_type.status();
  if (*key_type == hsm::KeyType::kRsa2048) {
    return absl::InvalidArgumentError("--key_type: RSA_2048 is too weak for a CA");
  }
  auto hsm = hsm::NewPkcs11Hsm({.module_path = absl::GetFlag(FLAGS_pkcs11_module),
                                .token_label = absl::GetFlag(FLAGS_token_label),
                                .pin_file = absl::GetFlag(FLAGS_pin_file),
                                .session_pool_size = 2});
  if (!hsm.ok()) return hsm.status();
  auto pool = db::Pool::New({.conninfo = absl::GetFlag(FLAGS_db), .size = 2});
  if (!pool.ok()) return pool.status();
  if (auto s = MigrateLifecycleSchema(**pool); !s.ok()) return s;
  auto store = NewPostgresCaStore(pool->get());
  CaConfig config{.key_type = *key_type,
                  .organization = absl::GetFlag(FLAGS_organization),
                  .public_base_url = absl::GetFlag(FLAGS_public_base_url),
                  .key_id_prefix = absl::GetFlag(FLAGS_key_id_prefix)};
  auto cas = CaSet::Init(hsm->get(), store.get(), RealClock::Get(), config);
  if (!cas.ok()) return cas.status();
  for (std::string_view name : {kRootCa, kQualifiedCa, kDeviceCa, kQualifiedOcsp, kDeviceOcsp}) {
    const Ca* ca = (*cas)->Find(name);
    std::cout << name << "\t" << ca->record().serial_hex << "\t"
              << hsm::KeyTypeName(ca->key().type()) << "\t"
              << NameText(X509_get_subject_name(ca->cert())) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace qsign::lifecycle

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("qsign-ca init [flags]: create or reuse the CA hierarchy");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2 || std::string(args[1]) != "init") {
    std::cerr << "usage: qsign-ca init [flags] (--help for the flags)\n";
    return 2;
  }
  absl::Status s = qsign::lifecycle::Init();
  if (!s.ok()) {
    qsign::Log(qsign::LogLevel::kError, "qsign-ca", "init failed", {{"status", s.ToString()}});
    return 1;
  }
  return 0;
}

// qsign-audit: verify, sign and export the audit trail (tools/audit/audit_tool.h, docs/audit.md).
//
//   qsign-audit verify --db=... [--audit_public_key=audit.pub]      the database; exit 1 if broken
//   qsign-audit verify --file=export.jsonl [--audit_public_key=...]  an export, offline
//   qsign-audit sign-heads --db=... --pin_file=... [--token_label=qsign-audit] [--key_id=...]
//                          [--every=10m]   again and again, until SIGTERM (the scheduler)
//   qsign-audit export --db=... --from=2026-01-01T00:00:00Z --to=2026-02-01T00:00:00Z [--schema=]
#include <pthread.h>
#include <signal.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/pg.h"
#include "hsm/hsm.h"
#include "tools/audit/audit_tool.h"

ABSL_FLAG(std::string, db, "", "libpq connection string of the qsign database");
ABSL_FLAG(std::string, file, "", "verify: an export (JSON lines) instead of the database");
ABSL_FLAG(std::string, audit_public_key, "",
          "verify: the audit key's public key (PEM or DER), pinned; without it signatures of "
          "chain heads are not checked");
ABSL_FLAG(std::string, pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so", "PKCS#11 module path");
ABSL_FLAG(std::string, token_label, "qsign-audit", "sign-heads: the audit role's HSM token");
ABSL_FLAG(std::string, pin_file, "", "sign-heads: file holding the audit token's user PIN");
ABSL_FLAG(std::string, key_id, "qsign-audit-1", "sign-heads: the audit key's id in the token");
ABSL_FLAG(bool, create_key, false, "sign-heads: generate the audit key when missing");
ABSL_FLAG(std::string, public_key_out, "",
          "sign-heads: also write the audit key's public key (DER) here, to pin it");
ABSL_FLAG(absl::Duration, every, absl::ZeroDuration(),
          "sign-heads: sign again every this long (e.g. 10m) until SIGTERM or SIGINT; a failed "
          "round is reported and the next one tried. 0: once");
ABSL_FLAG(std::string, from, "", "export: first instant (RFC 3339), inclusive");
ABSL_FLAG(std::string, to, "", "export: last instant (RFC 3339), exclusive");
ABSL_FLAG(std::string, schema, "", "export: only this schema");

namespace qsign::audit {
namespace {

absl::StatusOr<std::unique_ptr<db::Pool>> OpenDb() {
  if (absl::GetFlag(FLAGS_db).empty()) return absl::InvalidArgumentError("--db: required");
  return db::Pool::New({.conninfo = absl::GetFlag(FLAGS_db), .size = 2});
}

absl::StatusOr<std::string> PinnedKey() {
  const std::string path = absl::GetFlag(FLAGS_audit_public_key);
  if (path.empty()) return std::string();
  return ReadPublicKeyFile(path);
}

int PrintReport(const Report& report) {
  for (const std::string& line : report.lines) std::cout << line << "\n";
  std::cout << (report.ok ? "audit: verified" : "audit: BROKEN (first broken links above)") << "\n";
  return report.ok ? 0 : 1;
}

int Run(const std::string& command) {
  auto fail = [](const absl::Status& s) {
    std::cerr << "qsign-audit: " << s << "\n";
    return 2;
  };
  if (command == "verify") {
    auto key = PinnedKey();
    if (!key.ok()) return fail(key.status());
    if (const std::string file = absl::GetFlag(FLAGS_file); !file.empty()) {
      std::ifstream in(file, std::ios::binary);
      if (!in) return fail(absl::NotFoundError(absl::StrCat("--file: cannot open ", file)));
      return PrintReport(VerifyExport(in, *key));
    }
    auto pool = OpenDb();
    if (!pool.ok()) return fail(pool.status());
    return PrintReport(Verify(**pool, *key));
  }
  if (command == "sign-heads") {
    if (absl::GetFlag(FLAGS_pin_file).empty()) {
      return fail(absl::InvalidArgumentError("--pin_file: required"));
    }
    const absl::Duration every = absl::GetFlag(FLAGS_every);
    if (every < absl::ZeroDuration()) return fail(absl::InvalidArgumentError("--every: negative"));
    // The scheduler stops between rounds on SIGTERM/SIGINT (blocked here, waited for below).
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    if (every > absl::ZeroDuration()) pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    auto pool = OpenDb();
    if (!pool.ok()) return fail(pool.status());
    auto hsm = hsm::NewPkcs11Hsm({.module_path = absl::GetFlag(FLAGS_pkcs11_module),
                                  .token_label = absl::GetFlag(FLAGS_token_label),
                                  .pin_file = absl::GetFlag(FLAGS_pin_file),
                                  .session_pool_size = 1});
    if (!hsm.ok()) return fail(hsm.status());
    for (bool create_key = absl::GetFlag(FLAGS_create_key);; create_key = false) {
      auto heads = SignHeads(**pool, **hsm, absl::GetFlag(FLAGS_key_id), create_key, absl::Now());
      if (!heads.ok()) {
        if (every == absl::ZeroDuration()) return fail(heads.status());
        std::cerr << "qsign-audit: sign-heads failed, next round in " << absl::FormatDuration(every)
                  << ": " << heads.status() << "\n";
      } else {
        for (const SignedHead& h : *heads) {
          std::cout << h.schema << "\tseq " << h.seq << "\t" << absl::BytesToHexString(h.hash)
                    << "\t" << absl::FormatTime(h.signed_at, absl::UTCTimeZone()) << "\n";
        }
        std::cout.flush();
      }
      if (every == absl::ZeroDuration()) break;
      const timespec wait = absl::ToTimespec(every);
      if (sigtimedwait(&stop_signals, nullptr, &wait) > 0) return 0;
    }
    if (const std::string out = absl::GetFlag(FLAGS_public_key_out); !out.empty()) {
      auto key = (*hsm)->GetPublicKey(absl::GetFlag(FLAGS_key_id));
      if (!key.ok()) return fail(key.status());
      std::ofstream f(out, std::ios::binary);
      f << key->spki_der;
      if (!f) return fail(absl::UnavailableError(absl::StrCat("--public_key_out: ", out)));
    }
    return 0;
  }
  if (command == "export") {
    absl::Time from, to;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, absl::GetFlag(FLAGS_from), &from, &err)) {
      return fail(absl::InvalidArgumentError(absl::StrCat("--from: ", err)));
    }
    if (!absl::ParseTime(absl::RFC3339_full, absl::GetFlag(FLAGS_to), &to, &err)) {
      return fail(absl::InvalidArgumentError(absl::StrCat("--to: ", err)));
    }
    auto pool = OpenDb();
    if (!pool.ok()) return fail(pool.status());
    if (auto s = Export(**pool, from, to, absl::GetFlag(FLAGS_schema), std::cout); !s.ok()) {
      return fail(s);
    }
    return 0;
  }
  std::cerr << "usage: qsign-audit verify|sign-heads|export [flags] (--help for the flags)\n";
  return 2;
}

}  // namespace
}  // namespace qsign::audit

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "qsign-audit verify|sign-heads|export [flags]: prove the audit trail (docs/audit.md)");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << "usage: qsign-audit verify|sign-heads|export [flags] (--help for the flags)\n";
    return 2;
  }
  return qsign::audit::Run(args[1]);
}

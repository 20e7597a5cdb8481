// qsign-audit: proves the audit trail of every service schema (docs/audit.md).
//
// verify   every hash-chained audit_log of every schema (each record's hash over its content,
//          each prev_hash the hash before, seq without gaps), every append-only journal (its
//          refusing triggers present and enabled), and every signed chain head (the audit key's
//          signature verifies with the pinned public key, the chain still has that hash at that
//          seq, and is at least that long). A database administrator who rewrites a whole chain
//          and its hashes, or drops its newest records, is caught by the heads.
// sign-heads  signs each chain's newest record with the audit key in the HSM (its own token
//          role) and records the signed heads in the `audit` schema; run it periodically.
// export   the records of a time range, with the hash before the first one (the anchor) and the
//          signed heads inside the range, as JSON lines that `verify --file` checks offline.
#ifndef QSIGN_TOOLS_AUDIT_AUDIT_TOOL_H_
#define QSIGN_TOOLS_AUDIT_AUDIT_TOOL_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/pg.h"
#include "hsm/hsm.h"

namespace qsign::audit {

// What verify found, one line per chain, journal and signed head; `ok` when nothing is broken.
struct Report {
  bool ok = true;
  std::vector<std::string> lines;
  void Fail(std::string line) {
    ok = false;
    lines.push_back("BROKEN " + std::move(line));
  }
  void Pass(std::string line) { lines.push_back("OK " + std::move(line)); }
};

// Every schema with an audit_log table, in name order.
absl::StatusOr<std::vector<std::string>> AuditedSchemas(db::Pool& pool);

// A signed chain head: "the audit_log of `schema` had `hash` at `seq`", signed at `signed_at`.
struct SignedHead {
  std::string schema;
  int64_t seq = 0;
  std::string hash;  // 32 bytes.
  absl::Time signed_at;
  std::string key_id;
  std::string signature;  // ECDSA P-256 over SHA-256(HeadSigningInput), DER.
};

// "qsign.audit.head.v1" || u64 len(schema) || schema || u64 seq || hash || u64 signed_at (Unix
// microseconds); integers big-endian.
std::string HeadSigningInput(const SignedHead& head);

// The `audit` schema and its append-only chain_heads table.
absl::Status MigrateAuditSchema(db::Pool& pool);

// Signs the current head of every audited schema with `key_id` (created, EC P-256, when
// `create_key` and missing) and appends the signed heads. Returns them.
absl::StatusOr<std::vector<SignedHead>> SignHeads(db::Pool& pool, hsm::Hsm& hsm,
                                                  std::string_view key_id, bool create_key,
                                                  absl::Time now);

// Verifies the database. `audit_key_spki` (DER; empty: signatures are not checked, and the
// report says so) is the pinned public key of the audit key.
Report Verify(db::Pool& pool, std::string_view audit_key_spki);

// Writes the records with from <= at < to of every audited schema (or only `schema`) as JSON
// lines (see docs/audit.md).
absl::Status Export(db::Pool& pool, absl::Time from, absl::Time to, std::string_view schema,
                    std::ostream& out);

// Verifies an export offline: each schema's records run from their anchor without a gap, each
// record's hash matches its content, each signed head's signature verifies (when
// `audit_key_spki` is given) and matches the record it names when that record is in the file.
Report VerifyExport(std::istream& in, std::string_view audit_key_spki);

// A public key file, PEM or DER, as SubjectPublicKeyInfo DER.
absl::StatusOr<std::string> ReadPublicKeyFile(const std::string& path);

}  // namespace qsign::audit

#endif  // QSIGN_TOOLS_AUDIT_AUDIT_TOOL_H_

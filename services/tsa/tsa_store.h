// The tsa schema in PostgreSQL: the serial-number sequence, the append-only journal of every
// token issued (ETSI EN 319 421 7.6.8: events of the TSA are recorded), the TSA certificates
// lifecycle issued, and the audit log.
#ifndef QSIGN_SERVICES_TSA_TSA_STORE_H_
#define QSIGN_SERVICES_TSA_TSA_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/pg.h"

namespace qsign::tsa {

// What the journal keeps of one token (never the requester's data beyond the imprint).
struct TokenEvent {
  absl::Time gen_time;
  std::string hash_oid;  // Imprint algorithm, dotted.
  std::string imprint;   // The hashed message (bytes).
  std::string policy_oid;
  std::string certificate_serial_hex;  // The TSA certificate that signs.
  bool has_nonce = false;
};

// The TSA certificate and its issuers (the issuing CA first, up to the root).
struct TsaCertificate {
  std::string serial_hex;
  std::string certificate_der;
  std::vector<std::string> chain_der;
  absl::Time not_after;
};

class TsaStore {
 public:
  virtual ~TsaStore() = default;
  // Draws the next serial from the sequence (never repeats, also across replicas and restarts)
  // and journals the token under it, in one statement. The serial is burnt even if signing then
  // fails.
  virtual absl::StatusOr<int64_t> IssueSerial(const TokenEvent& event) = 0;
  // The newest TSA certificate stored for `public_key` (SPKI DER); nullopt when none.
  virtual absl::StatusOr<std::optional<TsaCertificate>> FindCertificate(
      std::string_view public_key) = 0;
  // Keeps a certificate lifecycle issued, with its audit record, in one transaction (nothing
  // when that serial is stored already).
  virtual absl::Status SaveCertificate(std::string_view public_key, const TsaCertificate& cert,
                                       const db::AuditEvent& audit, absl::Time at) = 0;
};

absl::Status MigrateTsaSchema(db::Pool& pool);
std::unique_ptr<TsaStore> NewPostgresTsaStore(db::Pool* pool);  // `pool` not owned.

}  // namespace qsign::tsa

#endif  // QSIGN_SERVICES_TSA_TSA_STORE_H_

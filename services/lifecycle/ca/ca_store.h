// The CA hierarchy's rows in the "lifecycle" schema: which HSM key and which certificate each
// CA (and OCSP responder) has.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_CA_STORE_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_CA_STORE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "hsm/hsm.h"

namespace qsign::lifecycle {

struct CaRecord {
  std::string name;    // "root", "qualified", ...
  std::string key_id;  // In the HSM.
  hsm::KeyType key_type = hsm::KeyType::kEcP256;
  std::string issuer;  // Name of the issuing CA's record; the root names itself.
  std::string certificate_der;
  std::string serial_hex;
  absl::Time not_after;
  absl::Time created_at;
};

class CaStore {
 public:
  virtual ~CaStore() = default;
  virtual absl::StatusOr<std::vector<CaRecord>> ListCas() = 0;
  // ALREADY_EXISTS when a CA of that name (or that key id) exists. Writes `audit` in the same
  // transaction.
  virtual absl::Status InsertCa(const CaRecord& ca, const db::AuditEvent& audit) = 0;
  // A new certificate for an existing CA's key (an OCSP responder's renewal).
  virtual absl::Status ReplaceCaCertificate(std::string_view name, std::string_view der,
                                            std::string_view serial_hex, absl::Time not_after,
                                            absl::Time at, const db::AuditEvent& audit) = 0;
};

// `pool` must outlive the store; the schema must be migrated (MigrateLifecycleSchema).
std::unique_ptr<CaStore> NewPostgresCaStore(db::Pool* pool);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_CA_STORE_H_

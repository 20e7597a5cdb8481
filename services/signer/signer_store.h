// The signer's own tables: credentials and the journal of used SADs. PostgreSQL schema "signer".
#ifndef QSIGN_SERVICES_SIGNER_SIGNER_STORE_H_
#define QSIGN_SERVICES_SIGNER_SIGNER_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "hsm/hsm.h"

namespace qsign::signer {

// kDisabled: revoked or abandoned; kExpired: its certificate ended. Neither ever signs again.
enum class CredentialStatus { kPending, kActive, kDisabled, kExpired };
std::string_view CredentialStatusName(CredentialStatus status);

struct Credential {
  std::string credential_id;
  std::string account_id;
  CredentialStatus status = CredentialStatus::kPending;
  hsm::KeyType key_type = hsm::KeyType::kEcP256;
  std::string public_key_spki;
  // End-entity first; empty while pending.
  std::vector<std::string> chain_der;
  absl::Time created_at;
  std::optional<absl::Time> valid_from;
  std::optional<absl::Time> valid_to;
  // When the HSM key was destroyed (DestroyKey); unset while it exists.
  std::optional<absl::Time> key_destroyed_at;
};

// One SignHash call's use of a SAD: the signing journal, append-only.
struct SadUse {
  std::string sad_id;
  std::string credential_id;
  std::string account_id;
  std::string consent_request_id;
  int num_hashes = 0;
  absl::Time used_at;
  absl::Time sad_expires_at;
  std::string caller;
};

// FAILED_PRECONDITION naming the credential when `now` is outside its certificate's validity
// (valid_from..valid_to, both inclusive as RFC 5280 says): Refusal CREDENTIAL_EXPIRED or
// CREDENTIAL_NOT_YET_VALID. OK when no certificate is attached (the status decides then).
absl::Status CheckValidity(const Credential& credential, absl::Time now);

// The status callers see: an ACTIVE credential past its certificate's notAfter is EXPIRED even
// before the sweeper records it.
CredentialStatus EffectiveStatus(const Credential& credential, absl::Time now);

class SignerStore {
 public:
  virtual ~SignerStore() = default;
  // NOT_FOUND naming the credential.
  virtual absl::StatusOr<Credential> GetCredential(std::string_view credential_id) = 0;
  virtual absl::StatusOr<std::vector<Credential>> ListCredentials(std::string_view account_id,
                                                                  bool only_active) = 0;
  // ALREADY_EXISTS when the id is taken. Writes `audit` in the same transaction.
  virtual absl::Status CreateCredential(const Credential& credential,
                                        const db::AuditEvent& audit) = 0;
  // Attaches the chain and makes a PENDING credential ACTIVE.
  virtual absl::Status ActivateCredential(std::string_view credential_id,
                                          const std::vector<std::string>& chain_der,
                                          absl::Time valid_from, absl::Time valid_to,
                                          const db::AuditEvent& audit) = 0;
  // PENDING or ACTIVE -> `to` (kDisabled or kExpired) with `audit`, in one transaction; a
  // credential already DISABLED or EXPIRED is left as it is (OK, no audit). NOT_FOUND naming it.
  virtual absl::Status DisableCredential(std::string_view credential_id, CredentialStatus to,
                                         const db::AuditEvent& audit) = 0;
  // Records that the HSM key is gone, with `audit`, once (later calls change nothing).
  virtual absl::Status MarkKeyDestroyed(std::string_view credential_id, absl::Time at,
                                        const db::AuditEvent& audit) = 0;
  // An audit record of an act that changes no credential row (an orphan key's destruction).
  virtual absl::Status RecordAudit(const db::AuditEvent& audit, absl::Time at) = 0;
  // Records the use of a SAD, atomically with the check that the credential is ACTIVE and that
  // `use.used_at` lies within its certificate's validity (valid_from..valid_to, inclusive).
  // FAILED_PRECONDITION "sad: already used" when any replica recorded it before;
  // FAILED_PRECONDITION naming the state (CREDENTIAL_INACTIVE) or the validity
  // (CREDENTIAL_EXPIRED, CREDENTIAL_NOT_YET_VALID) otherwise.
  virtual absl::Status ConsumeSad(const SadUse& use) = 0;
  // Takes back a use ConsumeSad recorded when the HSM then made no signature: the journal holds
  // only SADs that signed, and the relying party may send the SAD again. Idempotent.
  virtual absl::Status ReleaseSad(std::string_view sad_id) = 0;
};

// Migrations of the "signer" schema.
absl::Status MigrateSignerSchema(db::Pool& pool);

// `pool` must outlive the store.
std::unique_ptr<SignerStore> NewPostgresSignerStore(db::Pool* pool);

}  // namespace qsign::signer

#endif  // QSIGN_SERVICES_SIGNER_SIGNER_STORE_H_

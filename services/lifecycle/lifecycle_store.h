// The lifecycle service's tables in the "lifecycle" schema: certificates (with the issuance
// intent recorded before anything is signed), contract acceptances, legal-person approvals,
// revoke-all requests, CRLs and the e-mail outbox. Every state change writes its audit record in
// the same transaction.
#ifndef QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_STORE_H_
#define QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "common/mail/outbox.h"
#include "hsm/hsm.h"
#include "services/lifecycle/ca/crl.h"
#include "services/lifecycle/ca/profile.h"

namespace qsign::lifecycle {

enum class CertKind { kQualified, kDevice, kTsa };
// kPending: intent recorded (serial reserved), nothing signed yet.
// kIssued: certificate signed and stored (OCSP answers good); `attached` once the signer has it.
// kRevoked: on the CRL, OCSP answers revoked.
// kAbandoned: an intent given up before anything was signed; its key destroyed.
enum class CertState { kPending, kIssued, kRevoked, kAbandoned };
std::string_view CertKindName(CertKind kind);
std::string_view CertStateName(CertState state);

struct CertRecord {
  std::string certificate_id;  // QUALIFIED: also the signer's credential id.
  std::string account_id;
  CertKind kind = CertKind::kQualified;
  CertState state = CertState::kPending;
  std::string ca_name;
  std::string serial_hex;
  hsm::KeyType key_type = hsm::KeyType::kEcP256;
  // Idempotency: the caller's id and what it asked for.
  std::string client_request_id;
  std::string request_fingerprint;
  std::string renewal_of;  // The certificate this one renews; empty for an issue.
  // The subject as recorded with the intent (QUALIFIED), so that a resumed issuance and a renewal
  // certify the same person.
  NaturalPersonSubject subject;
  std::string device_id;          // DEVICE only.
  std::string device_name;        // DEVICE only.
  std::string device_public_key;  // DEVICE only: SPKI DER.
  std::string certificate_der;    // Empty while PENDING.
  std::string subject_dn;
  absl::Time not_before;
  absl::Time not_after;
  absl::Time created_at;
  bool attached = false;
  std::optional<absl::Time> revoked_at;
  int revocation_reason = 0;
  bool key_destroyed = false;
};

// What OCSP needs of an issued certificate.
struct IssuedStatus {
  CertState state = CertState::kIssued;  // kIssued or kRevoked.
  std::optional<absl::Time> revoked_at;  // kRevoked only.
  int revocation_reason = 0;             // RFC 5280 CRLReason; 0 = none given.
};

struct ContractAcceptance {
  std::string account_id;
  std::string version;
  std::string text_sha256;
  absl::Time accepted_at;
  std::string client_address;
};

struct LegalPersonApproval {
  std::string approval_id;
  std::string account_id;
  LegalPersonSubject legal_person;
  std::string approved_by;
  std::string note;
  absl::Time approved_at;
};

// What CreateIntent checks atomically with the insert (under a per-account lock).
struct IntentChecks {
  // ALREADY_EXISTS when the account has an issued, unrevoked qualified certificate valid at
  // `now` (the message names its serial and says to use Renew).
  bool no_active_qualified = false;
  absl::Time now;
  // A PENDING qualified intent of another request younger than this is ABORTED ("in
  // progress"); older ones are abandoned and returned so their keys can be destroyed.
  absl::Duration stale_after = absl::Minutes(2);
  // When the request's login was approved (the user's session auth_time). Stored with the
  // intent; FAILED_PRECONDITION here, and the intent ABANDONED at MarkIssued, while a revoke-all
  // of the account is unfinished or finished at or after it: a request authorised before a
  // revoke-all never yields an active credential after it. Unset: not checked.
  std::optional<absl::Time> authorized_at;
};

// A revocation asked for and not yet finished (lifecycle.revocation_requests): recorded before
// the credential is disabled at the signer, finished by MarkRevoked; the sweeper finishes those a
// failure left behind.
struct RevocationRequest {
  std::string certificate_id;
  int reason = 0;
  std::string requested_by;
  std::string client_address;
  absl::Time requested_at;
};

struct IntentResult {
  CertRecord record;
  // True when (account, client_request_id) existed: `record` is that earlier intent, unchanged.
  bool existed = false;
  // Stale intents this call abandoned; destroy their keys.
  std::vector<CertRecord> abandoned;
};

// A revoke-all, as a durable job (lifecycle.revoke_all_jobs): started in the transaction of its
// audit record, its steps marked done one by one, resumed by the scheduler until finished.
struct RevokeAllJob {
  int64_t id = 0;
  std::string account_id;
  int reason = 0;
  std::string requested_by;  // The audit actor who asked.
  std::string client_address;
  bool devices_done = false;
  bool sessions_done = false;
  bool certificates_done = false;
  bool keys_done = false;
  int devices_deactivated = 0;
  int sessions_ended = 0;
  int certificates_revoked = 0;
  int attempts = 0;
  std::string last_error;
  absl::Time created_at;
  std::optional<absl::Time> finished_at;
};
enum class RevokeAllStep { kDevices, kSessions, kCertificates, kKeys };

struct CrlSnapshot {
  int64_t crl_number = 0;
  std::vector<RevokedEntry> revoked;
};

class LifecycleStore {
 public:
  virtual ~LifecycleStore() = default;

  // Contracts. RecordAcceptance inserts the acceptance and queues `mail` in one transaction;
  // when (account, version) was accepted before it returns that first record and queues
  // nothing.
  virtual absl::StatusOr<ContractAcceptance> RecordAcceptance(const ContractAcceptance& acceptance,
                                                              const OutboxMessage& mail,
                                                              const db::AuditEvent& audit) = 0;
  // The acceptance of `version`, if any.
  virtual absl::StatusOr<std::optional<ContractAcceptance>> FindAcceptance(
      std::string_view account_id, std::string_view version) = 0;
  // The newest acceptance of any version.
  virtual absl::StatusOr<std::optional<ContractAcceptance>> LatestAcceptance(
      std::string_view account_id) = 0;

  // Legal persons.
  virtual absl::Status InsertApproval(const LegalPersonApproval& approval,
                                      const db::AuditEvent& audit) = 0;
  virtual absl::StatusOr<std::optional<LegalPersonApproval>> FindApproval(
      std::string_view account_id, std::string_view pib) = 0;

  // Certificates. NOT_FOUND for an unknown id or serial.
  virtual absl::StatusOr<CertRecord> GetCertificate(std::string_view certificate_id) = 0;
  virtual absl::StatusOr<CertRecord> GetBySerial(std::string_view serial_hex) = 0;
  // Newest first (by created_at); PENDING and ABANDONED intents included.
  virtual absl::StatusOr<std::vector<CertRecord>> ListCertificates(std::string_view account_id) = 0;
  // The audit records about the account: target the account or the serial of one of its
  // certificates (any kind), or actor the account; newest first (db::ListAuditRecords).
  virtual absl::StatusOr<db::AuditPage> ListAccountAudit(std::string_view account_id, int page_size,
                                                         std::string_view page_token) = 0;
  // The certificate a renewal of `certificate_id` produced (or is producing), if any.
  virtual absl::StatusOr<std::optional<CertRecord>> FindRenewalOf(
      std::string_view certificate_id) = 0;

  // Records a qualified issuance (or renewal) intent, checking `checks` and, for a renewal, that
  // `intent.renewal_of` was not renewed before (FAILED_PRECONDITION naming the successor), all
  // under a per-account lock. An intent with the same (account, client_request_id) is returned
  // as it is (existed = true), without checks.
  virtual absl::StatusOr<IntentResult> CreateIntent(const CertRecord& intent,
                                                    const IntentChecks& checks,
                                                    const db::AuditEvent& audit) = 0;
  // PENDING -> ISSUED with the certificate. FAILED_PRECONDITION when no longer PENDING; also
  // when a revoke-all of the account ran since the intent's authorized_at (IntentChecks), and
  // then the intent is ABANDONED, audited, in the same transaction.
  virtual absl::Status MarkIssued(std::string_view certificate_id, std::string_view der,
                                  std::string_view subject_dn, absl::Time at,
                                  const db::AuditEvent& audit) = 0;
  virtual absl::Status MarkAttached(std::string_view certificate_id) = 0;
  // ISSUED -> REVOKED, finishing the certificate's revocation request if any. FAILED_PRECONDITION
  // when not ISSUED (the record tells why).
  virtual absl::StatusOr<CertRecord> MarkRevoked(std::string_view certificate_id, int reason,
                                                 absl::Time at, const db::AuditEvent& audit) = 0;
  // key_destroyed = true; with `audit` (in the same transaction) only when it was false.
  virtual absl::Status MarkKeyDestroyed(std::string_view certificate_id,
                                        const std::optional<db::AuditEvent>& audit,
                                        absl::Time at) = 0;
  // Qualified certificates whose key still has to go, oldest first, at most `limit`: REVOKED and
  // ABANDONED ones not recorded destroyed, and ISSUED ones past not_after (< now).
  virtual absl::StatusOr<std::vector<CertRecord>> ListKeysToDestroy(absl::Time now, int limit) = 0;
  // PENDING -> ABANDONED.
  virtual absl::Status MarkAbandoned(std::string_view certificate_id, absl::Time at,
                                     const db::AuditEvent& audit) = 0;

  // Device certificates: inserted ISSUED in one step (no key to generate), revoking the
  // account's earlier ISSUED device certificates as superseded in the same transaction.
  // Returns the revoked ones.
  virtual absl::StatusOr<std::vector<CertRecord>> InsertDeviceCertificate(
      const CertRecord& cert, const db::AuditEvent& audit) = 0;
  virtual absl::StatusOr<std::optional<CertRecord>> FindDeviceCertificate(
      std::string_view account_id, std::string_view device_id,
      std::string_view device_public_key) = 0;
  // Certificates of qsign's own services (the TSA): no account; the key in device_public_key.
  // Insert writes the certificate and the audit record in one transaction; Find answers the
  // newest ISSUED one of `kind` for `public_key`.
  virtual absl::Status InsertServiceCertificate(const CertRecord& cert,
                                                const db::AuditEvent& audit) = 0;
  virtual absl::StatusOr<std::optional<CertRecord>> FindServiceCertificate(
      CertKind kind, std::string_view public_key) = 0;

  // Revocation requests. RequestRevocation records (or, while unfinished, updates) the request of
  // an ISSUED certificate with `audit` in one transaction; FAILED_PRECONDITION when the
  // certificate is not ISSUED. Unfinished ones asked for before `requested_before`, oldest first;
  // Finish closes one whose certificate
  // is no longer ISSUED; a failure is counted with its error for operators.
  virtual absl::Status RequestRevocation(const RevocationRequest& request,
                                         const db::AuditEvent& audit) = 0;
  virtual absl::StatusOr<std::vector<RevocationRequest>> ListUnfinishedRevocations(
      absl::Time requested_before, int limit) = 0;
  virtual absl::Status FinishRevocationRequest(std::string_view certificate_id, absl::Time at) = 0;
  virtual absl::Status RecordRevocationFailure(std::string_view certificate_id,
                                               std::string_view error) = 0;

  // Revoke-all jobs. StartRevokeAllJob inserts a job with `audit` in one transaction, or, when
  // the account has an unfinished job, returns that one (second = false, no audit written).
  virtual absl::StatusOr<std::pair<RevokeAllJob, bool>> StartRevokeAllJob(
      const RevokeAllJob& job, const db::AuditEvent& audit) = 0;
  // Marks `step` done with how many things it ended (devices, sessions, certificates).
  virtual absl::Status RecordRevokeAllStep(int64_t id, RevokeAllStep step, int count,
                                           absl::Time at) = 0;
  // Counts a failed attempt and keeps its error for operators.
  virtual absl::Status RecordRevokeAllFailure(int64_t id, std::string_view error,
                                              absl::Time at) = 0;
  // Finished, with `audit` in the same transaction; once.
  virtual absl::Status FinishRevokeAllJob(int64_t id, absl::Time at,
                                          const db::AuditEvent& audit) = 0;
  virtual absl::StatusOr<RevokeAllJob> GetRevokeAllJob(int64_t id) = 0;
  // Unfinished jobs, oldest first.
  virtual absl::StatusOr<std::vector<RevokeAllJob>> ListUnfinishedRevokeAllJobs(int limit) = 0;

  // OCSP: the status of what `ca_name` issued with this serial (ISSUED or REVOKED; nullopt for
  // anything else). Three columns only: it is read for every signed OCSP answer.
  virtual absl::StatusOr<std::optional<IssuedStatus>> FindIssued(std::string_view ca_name,
                                                                 std::string_view serial_hex) = 0;

  // CRLs. NextCrl takes the CA's next CRL number and, in the same transaction, the revoked
  // certificates it issued; SaveCrl stores the signed CRL; LatestCrl is the highest number.
  virtual absl::StatusOr<CrlSnapshot> NextCrl(std::string_view ca_name) = 0;
  virtual absl::Status SaveCrl(std::string_view ca_name, int64_t crl_number, absl::Time this_update,
                               absl::Time next_update, std::string_view der) = 0;
  struct StoredCrl {
    int64_t crl_number = 0;
    absl::Time this_update;
    absl::Time next_update;
    std::string der;
  };
  virtual absl::StatusOr<std::optional<StoredCrl>> LatestCrl(std::string_view ca_name) = 0;

  // Renewal reminders: ISSUED qualified certificates whose window opened by `now`, not yet
  // reminded; QueueReminder marks one reminded and queues its mail (false if already done).
  virtual absl::StatusOr<std::vector<CertRecord>> ListRenewalDue(absl::Time now,
                                                                 absl::Duration window) = 0;
  virtual absl::StatusOr<bool> QueueReminder(std::string_view certificate_id,
                                             const OutboxMessage& mail) = 0;

  // The outbox, oldest first; a sender marks what it delivered.
  virtual absl::StatusOr<std::vector<OutboxMessage>> PendingOutbox(int limit) = 0;
  virtual absl::Status MarkSent(int64_t id, absl::Time at) = 0;
  // Claims the oldest undelivered message with id > after_id (FOR UPDATE SKIP LOCKED, so
  // concurrent senders never send one twice), calls `send` with the row locked and records the
  // outcome in the same transaction: sent_at = now on success; otherwise attempts + 1,
  // last_attempt_at and last_error, the row staying undelivered. nullopt when none is left.
  virtual absl::StatusOr<std::optional<OutboxAttempt>> DeliverNextOutbox(
      int64_t after_id, absl::Time now,
      const std::function<absl::Status(const OutboxMessage&)>& send) = 0;
};

// `pool` must outlive the store; the schema must be migrated (MigrateLifecycleSchema).
std::unique_ptr<LifecycleStore> NewPostgresLifecycleStore(db::Pool* pool);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_STORE_H_

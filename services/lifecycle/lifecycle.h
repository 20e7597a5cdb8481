// The lifecycle service's logic: contract acceptance, issuing, renewing and revoking qualified
// certificates (keys through the signer, certificates from the qualified CA), revoke-all,
// device certificates, CRLs. No gRPC types here; the identity, consent and signer services are
// reached through the small interfaces below.
#ifndef QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_H_
#define QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/caller.h"
#include "common/clock.h"
#include "hsm/hsm.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ocsp.h"
#include "services/lifecycle/contracts.h"
#include "services/lifecycle/lifecycle_store.h"
#include "common/mail/outbox.h"

namespace qsign::lifecycle {

// --- What lifecycle needs from other services --------------------------------------------------

enum class AssuranceLevel { kUnspecified, kLow, kSubstantial, kHigh };

struct Account {
  std::string account_id;
  std::string username;  // The login e-mail: where mail goes.
  std::string given_name;
  std::string surname;
  std::string national_id;
  std::string certificate_email;  // Empty: no e-mail in certificates.
  AssuranceLevel assurance_level = AssuranceLevel::kUnspecified;
};

// The identity service (Identity.GetAccount, RevokeSessions). Users' session tokens are verified
// locally (common/auth), not here.
class IdentityClient {
 public:
  virtual ~IdentityClient() = default;
  // NOT_FOUND for an unknown account.
  virtual absl::StatusOr<Account> GetAccount(std::string_view account_id) = 0;
  // Ends every session of the account; how many were live.
  virtual absl::StatusOr<int> RevokeSessions(std::string_view account_id,
                                             std::string_view client_address) = 0;
};

// The consent service (Consent.DeactivateDevices).
class ConsentClient {
 public:
  virtual ~ConsentClient() = default;
  // How many devices were active and are now deactivated.
  virtual absl::StatusOr<int> DeactivateDevices(std::string_view account_id,
                                                std::string_view reason) = 0;
};

// Why lifecycle ends a key: revoked (or an abandoned intent), or its certificate ended.
enum class KeyEnd { kRevoked, kExpired };

// The signer, which owns users' keys (Signer.CreateKey, SetCertificate, DisableCredential,
// DestroyKey). Lifecycle never touches a user key in the HSM itself.
class SignerClient {
 public:
  virtual ~SignerClient() = default;
  // The new (or, on a retry, the existing) key's SubjectPublicKeyInfo.
  virtual absl::StatusOr<std::string> CreateKey(std::string_view credential_id,
                                                std::string_view account_id,
                                                hsm::KeyType key_type) = 0;
  virtual absl::Status SetCertificate(std::string_view credential_id,
                                      const std::vector<std::string>& chain_der) = 0;
  // Once OK, no signer replica signs with the credential. Idempotent; NOT_FOUND when the signer
  // never had the credential.
  virtual absl::Status DisableCredential(std::string_view credential_id) = 0;
  // Disables (kRevoked) or expires (kExpired: refused before notAfter) the credential and
  // destroys its key. Idempotent; NOT_FOUND when the signer never had the credential.
  virtual absl::Status DestroyKey(std::string_view credential_id, KeyEnd why) = 0;
};

// --- Callers -----------------------------------------------------------------------------------

// Who calls, as the gRPC edge authenticated them (common/auth): kUser carries the session's
// claims (auth_time for freshness), every caller the gRPC peer for the audit trail. The edge
// refuses kAnonymous before any method is reached.
using ::qsign::auth::Caller;
using ::qsign::auth::CallerKind;

// --- Inputs and results ------------------------------------------------------------------------

struct IssueInput {
  std::string client_request_id;
  std::optional<hsm::KeyType> key_type;  // Unset: EC_P256.
  std::optional<LegalPersonSubject> legal_person;
  std::string client_address;
};

struct RenewInput {
  std::string client_request_id;
  std::string certificate_id;
  std::optional<hsm::KeyType> key_type;  // Unset: as the certificate renewed.
  std::string client_address;
};

struct RevokeInput {
  std::string certificate_id;  // Exactly one of these two.
  std::string serial_hex;
  int reason = 0;  // RFC 5280 CRLReason.
  std::string client_address;
};

enum class CertStatusView { kActive, kRevoked, kExpired, kPending };

// A certificate as callers see it.
struct CertView {
  CertRecord record;
  CertStatusView status = CertStatusView::kPending;
  std::vector<std::string> issuer_chain_der;
  std::optional<absl::Time> renew_opens_at;  // QUALIFIED only.
};

struct RevokeAllResult {
  // The durable job (lifecycle.revoke_all_jobs) this call started or resumed.
  int64_t job_id = 0;
  // Every step done: devices, sessions, certificates (credentials disabled first), keys.
  bool complete = false;
  std::vector<CertView> revoked;
  int devices_deactivated = 0;
  int sessions_ended = 0;
};

// One run of the background work that makes revocation and expiry finish.
struct SweepResult {
  int jobs_resumed = 0;
  int jobs_finished = 0;
  int revocations_finished = 0;  // Revocations a failed Revoke left unfinished.
  int keys_destroyed = 0;        // Of revoked or abandoned certificates.
  int keys_expired = 0;          // Of certificates past notAfter.
  int failures = 0;              // Steps that failed and are retried next time.
};

enum class AccountCertState { kNone, kActive, kRevoked, kExpired };

struct AccountStatus {
  AccountCertState state = AccountCertState::kNone;
  std::optional<CertView> certificate;
  std::optional<absl::Time> valid_until;
  std::optional<absl::Time> renew_opens_at;
  bool renewal_open = false;
  std::string current_contract_version;
  std::string accepted_contract_version;
};

struct LifecycleConfig {
  // A user session is fresh while its login was approved at most this long ago.
  absl::Duration fresh_session = absl::Minutes(5);
  // Renew is accepted in [not_after - renew_window, not_after).
  absl::Duration renew_window = absl::Hours(24 * 30);
  // An issuance intent older than this that never finished may be abandoned by a new Issue.
  absl::Duration stale_intent = absl::Minutes(2);
  // nextUpdate of CRLs = thisUpdate + this.
  absl::Duration crl_validity = absl::Hours(24);
  int device_certificate_years = 3;
  // The consent service's client id: the only caller of IssueDeviceCertificate.
  std::string consent_client_id = "consent";
  // The tsa service's client id: the only caller of IssueTsaCertificate.
  std::string tsa_client_id = "tsa";
  // Validity of TSA certificates: longer than a qualified certificate's 5 years, so that a
  // signature timestamp outlives the certificate it protects.
  int tsa_certificate_years = 10;
  // QcPDS URL in qualified certificates.
  std::string pds_url = "https://qsign.example/pds/en";
};

// One file per workflow: lifecycle.cc (construction, shared checks), contract_acceptance.cc,
// issue.cc (with legal-person approval), renew.cc, revoke.cc (one and all), account_status.cc,
// device_certificates.cc, revocation_status.cc (CRLs, OCSP source), outbox.cc (reminders, mail);
// shared helpers in lifecycle_internal.h.
class Lifecycle {
 public:
  // None of the pointers is owned; all must outlive the Lifecycle.
  Lifecycle(const CaSet* cas, LifecycleStore* store, SignerClient* signer, IdentityClient* identity,
            ConsentClient* consent, const ContractRegistry* contracts, const Clock* clock,
            LifecycleConfig config);

  absl::StatusOr<ContractText> GetContract(std::string_view version) const;
  absl::StatusOr<ContractAcceptance> AcceptContract(const Caller& caller, std::string_view version,
                                                    std::string_view text_sha256,
                                                    std::string_view client_address);
  absl::StatusOr<CertView> Issue(const Caller& caller, const IssueInput& in);
  absl::StatusOr<CertView> Renew(const Caller& caller, const RenewInput& in);
  absl::StatusOr<CertView> Revoke(const Caller& caller, const RevokeInput& in);
  absl::StatusOr<RevokeAllResult> RevokeAll(const Caller& caller, std::string_view account_id,
                                            int reason, std::string_view client_address);
  absl::StatusOr<AccountStatus> GetStatus(const Caller& caller, std::string_view account_id);
  absl::StatusOr<std::vector<CertView>> ListCertificates(const Caller& caller,
                                                         std::string_view account_id,
                                                         bool include_device);
  absl::StatusOr<LegalPersonApproval> ApproveLegalPerson(const Caller& caller,
                                                         std::string_view account_id,
                                                         const LegalPersonSubject& legal_person,
                                                         std::string_view note,
                                                         std::string_view client_address);
  // The account's records in lifecycle's audit chain (account_audit.cc): operators only.
  absl::StatusOr<db::AuditPage> ListAccountAudit(const Caller& caller, std::string_view account_id,
                                                 int page_size, std::string_view page_token);
  absl::StatusOr<CertView> IssueDeviceCertificate(const Caller& caller, std::string_view account_id,
                                                  std::string_view device_id,
                                                  std::string_view device_public_key,
                                                  std::string_view device_name);
  // The TSA's certificate from the qualified CA (tsa_certificates.cc); the tsa service only.
  absl::StatusOr<CertView> IssueTsaCertificate(const Caller& caller, std::string_view public_key,
                                               std::string_view name);

  // Signs and stores a new CRL for `ca_name` (after every revocation, and on schedule).
  absl::Status IssueCrl(std::string_view ca_name);
  // The newest CRL of `ca_name`, issuing one first if there is none or it is past half its
  // validity. NOT_FOUND for an unknown CA.
  absl::StatusOr<std::string> CurrentCrl(std::string_view ca_name);
  // The sweeper (lifecycle's scheduler calls it every few seconds): resumes every unfinished
  // revoke-all job, finishes every revocation a failed Revoke left behind (disabled at the signer,
  // then marked revoked), destroys the keys of revoked and abandoned certificates left behind by a
  // failed call, and expires the credentials of qualified certificates past notAfter (the signer
  // marks them EXPIRED and destroys their keys; the audit record here is written with the
  // change). Every step is idempotent, so replicas may run it concurrently. A store error stops
  // the run; a peer's failure is counted and retried next time.
  absl::StatusOr<SweepResult> Sweep();

  // Queues one reminder e-mail per qualified certificate whose renewal window has opened.
  // Returns how many were queued.
  absl::StatusOr<int> QueueRenewalReminders();
  // Sends up to `max` undelivered outbox messages through `mailer`, oldest first. A failed send
  // stays queued with its attempt count and error for the next run. A store error stops the run.
  absl::StatusOr<OutboxRun> DeliverOutbox(Mailer& mailer, int max);

  const ContractText& current_contract() const { return contracts_->current(); }

  // The OCSP responder's view of the certificates table.
  CertStatusSource* status_source() { return &status_source_; }

 private:
  class StoreStatusSource final : public CertStatusSource {
   public:
    explicit StoreStatusSource(LifecycleStore* store) : store_(store) {}
    absl::StatusOr<CertStatus> Status(std::string_view ca_name,
                                      std::string_view serial_hex) override;
    uint64_t Generation() const override { return generation_.load(); }
    // After a revocation here: OCSP answers cached before it are not served again.
    void Changed() { generation_.fetch_add(1); }

   private:
    LifecycleStore* store_;  // Not owned.
    std::atomic<uint64_t> generation_{0};
  };

  // Issue and Renew alike: a retry with the same client_request_id answers (and if need be
  // finishes) the first attempt. nullopt for a new id; INVALID_ARGUMENT when it came with other
  // parameters; FAILED_PRECONDITION when that `what` ("issuance", "renewal") was abandoned.
  absl::StatusOr<std::optional<CertView>> AnswerRetry(const Caller& caller,
                                                      std::string_view client_request_id,
                                                      std::string_view fingerprint,
                                                      std::string_view what);
  // Issue and Renew alike: records the intent (with its audit record), destroys the keys of
  // abandoned stale intents, refuses a reused client_request_id with other parameters, then
  // completes the certificate.
  absl::StatusOr<CertView> RecordIntentAndComplete(const CertRecord& intent,
                                                   const IntentChecks& checks, std::string action,
                                                   std::string_view fingerprint,
                                                   std::string_view client_address,
                                                   const Caller& caller);
  absl::StatusOr<CertView> Complete(CertRecord record, const Caller& caller);
  absl::StatusOr<std::string> ResolveAccount(const Caller& caller, std::string_view account_id);
  absl::Status CheckFresh(const Caller& caller) const;
  absl::Status CheckContractAccepted(std::string_view account_id);
  // Destroys the key of a REVOKED or ABANDONED (kRevoked) or expired (kExpired) qualified
  // certificate at the signer and records it, with `audit` when given, once.
  absl::Status DestroyKey(const CertRecord& record, KeyEnd why = KeyEnd::kRevoked,
                          std::optional<db::AuditEvent> audit = std::nullopt);
  // The steps of one recorded revocation: the credential disabled at the signer, the
  // certificate marked revoked (finishing the request, with `audit`), a new CRL, the key
  // destroyed. UNAVAILABLE (the failure recorded on the request) when the signer could not
  // disable the credential; the sweeper retries.
  absl::StatusOr<CertRecord> FinishRevocation(const CertRecord& record, int reason,
                                              db::AuditEvent audit);
  // Runs the steps of a revoke-all job that are not done yet, in order: devices deactivated and
  // sessions ended, then each qualified credential disabled at the signer before its certificate
  // is marked revoked (device certificates revoked, pending intents abandoned), then the keys
  // destroyed; the job is finished (with its audit record) when all are done. `actor` names who
  // runs it in the audit records.
  absl::StatusOr<RevokeAllResult> RunRevokeAllJob(const RevokeAllJob& job, const Caller& actor);
  CertView View(CertRecord record) const;
  absl::Time Now() const;

  const CaSet* cas_;                   // Not owned.
  LifecycleStore* store_;              // Not owned.
  SignerClient* signer_;               // Not owned.
  IdentityClient* identity_;           // Not owned.
  ConsentClient* consent_;             // Not owned.
  const ContractRegistry* contracts_;  // Not owned.
  const Clock* clock_;                 // Not owned.
  const LifecycleConfig config_;
  StoreStatusSource status_source_;
  // One stale-CRL re-issue at a time when many relying parties fetch at once.
  absl::Mutex crl_mu_;
};

// "client_request_id: ..." unless 1..64 characters of [A-Za-z0-9._-].
absl::Status ValidateRequestId(std::string_view id, std::string_view field);
// INVALID_ARGUMENT for reasons Revoke never accepts; PERMISSION_DENIED for
// privilegeWithdrawn from a user.
absl::Status ValidateRevocationReason(int reason, CallerKind caller);
std::string_view RevocationReasonName(int reason);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_H_

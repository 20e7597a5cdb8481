// The identity service's tables, PostgreSQL schema "identity": accounts, proofings, activation
// codes (SHA-256 only), logins (keyed by SHA-256 of the login id), sessions, the session
// revocation feed and the hash-chained audit log. Every state change is written with its audit
// record in one transaction.
#ifndef QSIGN_SERVICES_IDENTITY_IDENTITY_STORE_H_
#define QSIGN_SERVICES_IDENTITY_IDENTITY_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "common/mail/outbox.h"
#include "services/identity/session_token.h"

namespace qsign::identity {

// The values of qsign.v1.AssuranceLevel.
enum class AssuranceLevel { kUnspecified = 0, kLow = 1, kSubstantial = 2, kHigh = 3 };
std::string_view AssuranceLevelName(AssuranceLevel level);

// The values of qsign.v1.IdentityDocumentType.
enum class DocumentType { kUnspecified = 0, kNationalIdCard = 1, kPassport = 2 };
std::string_view DocumentTypeName(DocumentType type);

// The values of qsign.v1.LoginState.
enum class LoginState { kPending = 1, kApproved = 2, kDenied = 3, kExpired = 4 };
std::string_view LoginStateName(LoginState state);

struct Account {
  std::string account_id;
  // Lower-cased.
  std::string username;
  std::string given_name;
  std::string surname;
  std::string national_id;
  std::string certificate_email;
  AssuranceLevel assurance_level = AssuranceLevel::kLow;
  std::optional<absl::Time> proofed_at;
  absl::Time created_at;
};

// A registration waiting for its e-mail link (RegisterAccount → ConfirmRegistration).
struct PendingRegistration {
  std::string token_sha256;  // SHA-256 of the link's token; the token itself is never stored.
  std::string username;      // Lower-cased.
  std::string given_name;
  std::string surname;
  std::string national_id;
  std::string certificate_email;
  absl::Time created_at;
  absl::Time expires_at;
};

struct ProofingRecord {
  std::string account_id;
  std::string operator_id;
  AssuranceLevel assurance_level = AssuranceLevel::kUnspecified;
  DocumentType document_type = DocumentType::kUnspecified;
  std::string document_number;
  std::string note;
  absl::Time proofed_at;
  // The new activation code: its SHA-256 and expiry.
  std::string activation_code_sha256;
  absl::Time activation_code_expires_at;
};

struct RedeemedActivationCode {
  std::string account_id;
  AssuranceLevel assurance_level = AssuranceLevel::kUnspecified;
  // Redeemed before with the same device key (a retried enrolment).
  bool repeated = false;
};

struct LoginRecord {
  std::string login_id_sha256;
  // Empty for a login that can never be approved (unknown username, no active device).
  std::string account_id;
  std::string consent_request_id;
  LoginState state = LoginState::kPending;
  absl::Time created_at;
  absl::Time expires_at;
  // The account's level when read by GetLogin (kUnspecified without an account); not stored.
  AssuranceLevel assurance_level = AssuranceLevel::kUnspecified;
};

struct SessionRecord {
  std::string session_id;
  std::string account_id;
  std::string key_id;
  absl::Time issued_at;
  absl::Time auth_time;
  absl::Time expires_at;
  AssuranceLevel assurance_level = AssuranceLevel::kUnspecified;
};

class IdentityStore {
 public:
  virtual ~IdentityStore() = default;

  // Queues `mail` and, unless null, stores `registration`, with the audit record, in one
  // transaction.
  virtual absl::Status QueueRegistration(const PendingRegistration* registration,
                                         const OutboxMessage& mail,
                                         const db::AuditEvent& audit) = 0;
  // Consumes the registration with this token (unexpired at `account.created_at`) and creates
  // `account` from it (account_id, level and created_at from `account`, the rest from the
  // registration), with the audit record. NOT_FOUND "token: ..." when there is none;
  // ALREADY_EXISTS "username: ..." when the username was registered meanwhile (the registration
  // is consumed anyway).
  virtual absl::StatusOr<Account> ConfirmRegistration(std::string_view token_sha256,
                                                      Account account,
                                                      const db::AuditEvent& audit) = 0;
  // Deletes registrations whose link expired before `now`; answers how many.
  virtual absl::StatusOr<int> DeleteExpiredRegistrations(absl::Time now) = 0;
  // Hands the oldest unsent mail after `after_id` to `send` (rows locked: one sender per message
  // across replicas) and records the outcome (sent: the body, which may hold a registration
  // link, cleared). nullopt when none is left.
  virtual absl::StatusOr<std::optional<OutboxAttempt>> DeliverNextOutbox(
      int64_t after_id, absl::Time now,
      absl::FunctionRef<absl::Status(const OutboxMessage&)> send) = 0;

  // Deletes up to `limit` accounts never proofed and created before `created_before`, each with
  // its audit record (`audit` with the account id as target) at `now`; answers their ids.
  virtual absl::StatusOr<std::vector<std::string>> ExpireUnproofedAccounts(
      absl::Time created_before, int limit, absl::Time now, const db::AuditEvent& audit) = 0;
  // NOT_FOUND when there is no such account.
  virtual absl::StatusOr<Account> GetAccountById(std::string_view account_id) = 0;
  virtual absl::StatusOr<Account> GetAccountByUsername(std::string_view username) = 0;

  // With the account row locked: `check(current account)`, then raise the level, record the
  // proofing, cancel every earlier activation code of the account and store the new one.
  // Answers the updated account. NOT_FOUND when there is no such account; FAILED_PRECONDITION
  // "national_id: ..." when another proofed account holds its national id; `check`'s error as is.
  virtual absl::StatusOr<Account> RecordProofing(
      const ProofingRecord& proofing, absl::FunctionRef<absl::Status(const Account&)> check,
      const db::AuditEvent& audit) = 0;

  // With the account row locked: `decide(current account)` answers the audit record of the
  // correction (or its refusal, answered as is); then sets the names and national id of
  // `corrected` (account_id names the account) and appends the record at `at`. Answers the
  // updated account. NOT_FOUND when there is no such account.
  virtual absl::StatusOr<Account> CorrectIdentity(
      const Account& corrected, absl::Time at,
      absl::FunctionRef<absl::StatusOr<db::AuditEvent>(const Account&)> decide) = 0;

  // The account's records in the audit chain and the logins journal (target the account, or
  // actor "account:<id>"), newest first (common/db/audit.h ListAuditRecords).
  virtual absl::StatusOr<db::AuditPage> ListAccountAudit(std::string_view account_id, int page_size,
                                                         std::string_view page_token) = 0;

  // Consumes the code: unused, not cancelled, not expired at `now`. A repeat with the same
  // device_key_sha256 after success answers again (while the code is current and unexpired).
  // NOT_FOUND "activation_code: ..." otherwise. `audit.target` is set to the account id.
  virtual absl::StatusOr<RedeemedActivationCode> RedeemActivationCode(
      std::string_view code_sha256, std::string_view device_key_sha256, absl::Time now,
      db::AuditEvent audit) = 0;

  // Login events go to the logins journal (identity.login_journal), not the audit chain: each
  // is written in the one statement that makes the change it records (docs/identity.md).
  // Stores the PENDING login and its journal row `event`.
  virtual absl::Status CreateLogin(const LoginRecord& login, const db::AuditEvent& event) = 0;
  // With the account's current assurance level. NOT_FOUND when unknown.
  virtual absl::StatusOr<LoginRecord> GetLogin(std::string_view login_id_sha256) = 0;
  // Moves a PENDING login to `state` and journals `event`; for APPROVED also records `session`,
  // with the account row shared-locked. FAILED_PRECONDITION when the login is no longer PENDING
  // (another call completed it, or revoke-all ended it); ABORTED when the account's assurance
  // level is no longer session->assurance_level (read it again, mint again).
  virtual absl::Status FinishLogin(std::string_view login_id_sha256, LoginState state,
                                   absl::Time at, const SessionRecord* session,
                                   const db::AuditEvent& event) = 0;

  // Ends one session and publishes its revocation (kept until `keep_until`). False when it had
  // ended before.
  virtual absl::StatusOr<bool> EndSession(std::string_view session_id, absl::Time at,
                                          absl::Time keep_until, const db::AuditEvent& audit) = 0;
  // Ends every session of the account, denies its pending logins and publishes a revocation for
  // each session ended plus an account-wide one (every token issued at or before `at`, kept until
  // `keep_until`). Answers how many live sessions ended.
  // NOT_FOUND when there is no such account.
  virtual absl::StatusOr<int> RevokeAccountSessions(std::string_view account_id, absl::Time at,
                                                    absl::Time keep_until,
                                                    const db::AuditEvent& audit) = 0;
  // The authoritative revocation check.
  virtual absl::StatusOr<bool> IsSessionRevoked(const SessionClaims& claims) = 0;
  // Feed entries after `after_sequence` still kept at `now`, in order, at most `limit`.
  virtual absl::StatusOr<std::vector<SessionRevocation>> ListRevocations(uint64_t after_sequence,
                                                                         absl::Time now,
                                                                         int limit) = 0;
};

// Migrations of the "identity" schema.
absl::Status MigrateIdentitySchema(db::Pool& pool);

// `pool` must outlive the store.
std::unique_ptr<IdentityStore> NewPostgresIdentityStore(db::Pool* pool);

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_IDENTITY_STORE_H_

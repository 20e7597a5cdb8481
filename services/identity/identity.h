// The identity service: accounts, registration-authority proofing, push-approved login and
// sessions. No gRPC types here; identity_grpc.h is the edge.
//
// Security contract: the service never stores an activation code or a login id, only their
// SHA-256; session tokens are signed by a key that stays in the HSM; the answer to StartLogin does
// not depend on whether the username exists; every state change is written with its audit record
// in one transaction.
#ifndef QSIGN_SERVICES_IDENTITY_IDENTITY_H_
#define QSIGN_SERVICES_IDENTITY_IDENTITY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/authenticator.h"
#include "common/auth/caller.h"
#include "common/auth/credential_table.h"
#include "common/clock.h"
#include "common/mail/outbox.h"
#include "common/rate_limit.h"
#include "common/recent_map.h"
#include "common/secret.h"
#include "common/task_runner.h"
#include "hsm/hsm.h"
#include "services/identity/identity_store.h"
#include "services/identity/session_token.h"

namespace qsign::identity {

using ::qsign::db::AuditPage;

// Operator and service credentials are checked the same way by every service (common/auth).
using ::qsign::auth::CredentialTable;
using ::qsign::auth::ParseAuthorization;
using ::qsign::auth::PresentedCredential;
using ::qsign::auth::Sha256;
using ::qsign::auth::ValidateCredentialId;
// Callers are described the same way in every service (common/auth).
using ::qsign::auth::Caller;
using ::qsign::auth::CallerKind;
using ::qsign::auth::ClientInfo;

// ---- The consent service, as identity uses it (Consent.CreateRequest / AwaitRequest). ----

enum class ConsentState { kPending, kApproved, kDenied, kExpired, kCancelled };

struct ConsentRequestStatus {
  std::string request_id;
  std::string account_id;
  ConsentState state = ConsentState::kPending;
  absl::Time expires_at;
  // APPROVED or DENIED only.
  std::optional<absl::Time> decided_at;
};

struct LoginRequestParams {
  std::string account_id;
  // Shown by the portal and by the app next to the request.
  std::string verification_code;
  // Where the login was started, shown so that the user can spot a stranger.
  std::string client_description;
  // The language of the app's text (consent/statement.h ParseDisplayLanguage).
  std::string language;
  absl::Duration lifetime;
};

using ConsentStatusDone = absl::AnyInvocable<void(absl::StatusOr<ConsentRequestStatus>) &&>;

class ConsentClient {
 public:
  virtual ~ConsentClient() = default;
  // Creates a LOGIN request for the account's active device. FAILED_PRECONDITION when the
  // account has no active device.
  virtual absl::StatusOr<ConsentRequestStatus> CreateLoginRequest(
      const LoginRequestParams& params) = 0;
  // Waits up to `max_wait` for the request to leave PENDING and answers its state.
  virtual absl::StatusOr<ConsentRequestStatus> AwaitRequest(std::string_view request_id,
                                                            absl::Duration max_wait) = 0;
  // The same without blocking while it waits: `done` runs once, on a thread of the client's
  // (gRPC's for GrpcConsentClient, so it must hand blocking work over). Answers what cancels the
  // call (any time, also after `done`). By default the blocking call on this thread (fakes).
  virtual absl::AnyInvocable<void()> StartAwaitRequest(std::string_view request_id,
                                                       absl::Duration max_wait,
                                                       ConsentStatusDone done) {
    std::move(done)(AwaitRequest(request_id, max_wait));
    return [] {};
  }
};

// ---- Inputs and results. ----

struct RegisterAccountInput {
  std::string username;
  std::string given_name;
  std::string surname;
  std::string national_id;
  std::string certificate_email;
};

// The one answer to every well-formed RegisterAccount.
struct RegistrationAnswer {
  absl::Time link_expires_at;
};

struct ProofIdentityInput {
  std::string account_id;
  AssuranceLevel assurance_level = AssuranceLevel::kUnspecified;
  DocumentType document_type = DocumentType::kUnspecified;
  std::string document_number;
  std::string note;
};

struct CorrectIdentityInput {
  std::string account_id;
  std::string given_name;
  std::string surname;
  std::string national_id;
  std::string note;
};

struct ProofIdentityResult {
  Account account;
  // Grouped Crockford base32, "XXXX-XXXX-XXXX-XXXX" (80 bits). A secret.
  SecretString activation_code;
  absl::Time activation_code_expires_at;
};

struct LoginStart {
  // 43 base64url characters (256 bits); the bearer of it receives the session token.
  std::string login_id;
  // Four digits.
  std::string verification_code;
  absl::Time expires_at;
};

struct LoginOutcome {
  LoginState state = LoginState::kPending;
  // APPROVED only.
  SecretString session_token;
  absl::Time session_expires_at;
  std::string account_id;
};

struct SessionInfo {
  SessionClaims claims;
  bool fresh = false;
};

struct SessionKeyInfo {
  std::string key_id;
  std::string public_key_spki;
  absl::Time not_after;
};

struct RevocationPage {
  std::vector<SessionRevocation> revocations;
  uint64_t last_sequence = 0;
};

struct IdentityConfig {
  // HSM key ids (EC P-256) of the session-token keys; the first one signs, all verify.
  std::vector<std::string> session_key_ids;
  absl::Duration session_lifetime = absl::Minutes(15);
  absl::Duration fresh_login_window = kDefaultFreshLoginWindow;
  absl::Duration login_lifetime = absl::Minutes(2);
  absl::Duration activation_code_lifetime = absl::Hours(72);
  // Longest AwaitLogin wait.
  absl::Duration max_await = absl::Seconds(30);
  // The service client id of the consent service: the only caller of RedeemActivationCode.
  std::string consent_client_id = "consent";
  // StartLogin calls per username per minute, counted whether or not the account exists (so
  // the limit tells nothing) and before any push: no push bombing. 0: unlimited.
  int logins_per_account_per_minute = 5;
  // StartLogin calls per client address (ClientInfo.network_address) per minute; 0: unlimited.
  int logins_per_address_per_minute = 60;
  // RegisterAccount calls per client address per hour; 0: unlimited.
  int registrations_per_address_per_hour = 20;
  // CorrectIdentity calls per operator per hour; 0: unlimited.
  int corrections_per_operator_per_hour = 30;
  // How long a registration's e-mail link works.
  absl::Duration registration_link_lifetime = absl::Hours(24);
  // The portal page the link opens ("?token=..." appended).
  std::string registration_url = "https://localhost/register/confirm";
  // A registration nobody proofed within this long is deleted (ExpireUnproofedAccounts).
  absl::Duration unproofed_account_lifetime = absl::Hours(24 * 30);
};

using LoginOutcomeDone = absl::AnyInvocable<void(absl::StatusOr<LoginOutcome>) &&>;

// An AwaitLogin in progress.
class LoginWait {
 public:
  // The caller went away: the wait ends soon (its `done` still runs, once).
  void Cancel() {
    absl::AnyInvocable<void()> cancel;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      cancel = std::move(cancel_);
    }
    if (cancel) cancel();
  }
  // What ends the step in flight early; run at once when cancelled already.
  void SetCancel(absl::AnyInvocable<void()> cancel) {
    {
      absl::MutexLock lock(&mu_);
      if (!cancelled_) {
        cancel_ = std::move(cancel);
        return;
      }
    }
    cancel();
  }

 private:
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::AnyInvocable<void()> cancel_ ABSL_GUARDED_BY(mu_);
};

// Identity verifies Bearer tokens itself, authoritatively: its keys and its own table of ended
// sessions (every other service uses a SessionKeyCache over GetSessionKeys and the feed).
class Identity final : public auth::SessionVerifier {
 public:
  // None of the pointers is owned; all must outlive the Identity. Every session key must exist
  // in the HSM and be EC P-256.
  static absl::StatusOr<std::unique_ptr<Identity>> New(hsm::Hsm* hsm, IdentityStore* store,
                                                       ConsentClient* consent, const Clock* clock,
                                                       CredentialTable operators,
                                                       CredentialTable services,
                                                       IdentityConfig config);

  // Who is calling, from the `authorization` header value. Empty: kAnonymous. A Bearer token is
  // checked fully (signature, expiry, not revoked, authoritative from the database) unless
  // `allow_revoked`. Bad credentials of any kind: UNAUTHENTICATED.
  absl::StatusOr<Caller> Authenticate(std::string_view authorization, bool allow_revoked = false);
  // auth::SessionVerifier: signature, expiry and, unless `allow_revoked`, the database.
  absl::StatusOr<SessionClaims> Verify(std::string_view token, bool allow_revoked) override;

  // Anyone. The same answer for every well-formed request: an e-mail to the username holds the
  // link that finishes the registration (ConfirmRegistration), or, for a registered username,
  // says so. Nothing is reserved by it.
  absl::StatusOr<RegistrationAnswer> RegisterAccount(const RegisterAccountInput& input,
                                                     const ClientInfo& client);
  // Whoever holds the e-mailed token: creates the account at level LOW.
  absl::StatusOr<Account> ConfirmRegistration(std::string_view token, const ClientInfo& client);
  // Sends up to `max` queued e-mails through `mailer`, oldest first (a failure is retried on the
  // next run).
  absl::StatusOr<OutboxRun> DeliverOutbox(Mailer& mailer, int max);
  // Operators.
  absl::StatusOr<ProofIdentityResult> ProofIdentity(const Caller& caller,
                                                    const ProofIdentityInput& input,
                                                    const ClientInfo& client);
  // Operators. The corrected name and national id of an account never proofed.
  absl::StatusOr<Account> CorrectIdentity(const Caller& caller, const CorrectIdentityInput& input,
                                          const ClientInfo& client);
  // Operators. The account's records in the audit chain and the logins journal, newest first.
  absl::StatusOr<AuditPage> ListAccountAudit(const Caller& caller, std::string_view account_id,
                                             int page_size, std::string_view page_token);
  // A user (own account), operators and services (exactly one of account_id, username).
  absl::StatusOr<Account> GetAccount(const Caller& caller, std::string_view account_id,
                                     std::string_view username);
  // Anyone. Same answer shape, and the same work (one consent call), whether or not the username
  // exists or has a device. RESOURCE_EXHAUSTED (with a retry delay) past the per-username or
  // per-address limit.
  // `language`: of the app's text ("sr-Cyrl", empty, "sr-Latn", "en").
  absl::StatusOr<LoginStart> StartLogin(std::string_view username, const ClientInfo& client,
                                        std::string_view language = "");
  // Whoever holds the login id. Waits at most min(max_wait, config max_await), holding no thread:
  // the checks and the database work run on `runner`, the wait for the decision is consent's
  // AwaitRequest called asynchronously. `done` runs once, on `runner`; `runner` must outlive it.
  std::shared_ptr<LoginWait> AwaitLogin(std::string login_id, absl::Duration max_wait,
                                        TaskRunner* runner, LoginOutcomeDone done);
  // A user (authenticated with allow_revoked, so that a repeated logout succeeds).
  absl::Status Logout(const Caller& caller, const ClientInfo& client);
  // Services.
  absl::StatusOr<SessionInfo> ValidateSession(const Caller& caller, std::string_view token);
  absl::StatusOr<int> RevokeSessions(const Caller& caller, std::string_view account_id,
                                     const ClientInfo& client);
  absl::StatusOr<std::vector<SessionKeyInfo>> GetSessionKeys(const Caller& caller);
  absl::StatusOr<RevocationPage> ListSessionRevocations(const Caller& caller,
                                                        uint64_t after_sequence);
  // The consent service only.
  absl::StatusOr<RedeemedActivationCode> RedeemActivationCode(const Caller& caller,
                                                              std::string_view activation_code,
                                                              std::string_view device_key_sha256,
                                                              const ClientInfo& client);

  // The scheduled cleanup: deletes accounts registered more than unproofed_account_lifetime ago
  // and never proofed (an unproofed registration reserves nothing, not even for long), each with
  // an `identity.account.expire` audit record. Answers how many.
  absl::StatusOr<int> ExpireUnproofedAccounts();

  // Public keys of the session-token keys, for a local SessionTokenVerifier.
  const SessionTokenVerifier& verifier() const { return *verifier_; }
  const IdentityConfig& config() const { return config_; }

 private:
  Identity(IdentityStore* store, ConsentClient* consent, const Clock* clock,
           CredentialTable operators, CredentialTable services, IdentityConfig config,
           std::unique_ptr<SessionTokenMinter> minter,
           std::unique_ptr<SessionTokenVerifier> verifier, std::vector<SessionKeyInfo> keys);

  absl::StatusOr<LoginOutcome> FinishLogin(const LoginRecord& login, LoginState state,
                                           const ConsentRequestStatus* approval);
  // What AwaitLogin answers once consent answered for the pending `login`.
  absl::StatusOr<LoginOutcome> LoginAfterConsent(
      const LoginRecord& login, const absl::StatusOr<ConsentRequestStatus>& status);
  // The final state of a login another call completed first.
  absl::StatusOr<LoginOutcome> CompletedLogin(std::string_view login_id_sha256);
  void RecordConsentLatency(absl::Duration d);
  absl::Duration TypicalConsentLatency();

  IdentityStore* store_;                     // Not owned.
  ConsentClient* consent_;                   // Not owned.
  const Clock* clock_;                       // Not owned.
  const auth::Authenticator authenticator_;  // Bearer tokens through this->Verify.
  const IdentityConfig config_;
  std::unique_ptr<SessionTokenMinter> minter_;
  std::unique_ptr<SessionTokenVerifier> verifier_;
  std::vector<SessionKeyInfo> keys_;  // Without not_after; filled per call.
  RateLimiter login_account_limiter_;
  RateLimiter login_address_limiter_;
  RateLimiter register_address_limiter_;
  RateLimiter correction_limiter_;

  // Logins started here lately, as stored (with the account's level), for the AwaitLogin that
  // usually follows; every later step is guarded in its statement (state PENDING, the level).
  RecentMap<LoginRecord> recent_logins_{1024};

  absl::Mutex mu_;
  // Moving average of the latency of a Consent.CreateRequest that pushed a request: a StartLogin
  // that pushed nothing (unknown username, no device) is padded to it.
  absl::Duration consent_latency_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(2);
};

// "XXXX-XXXX-XXXX-XXXX" from 80 random bits; and the canonical form of what a user typed (upper
// case, separators and spaces dropped, O->0, I/L->1), empty when it cannot be a code.
std::string FormatActivationCode(std::string_view sixteen_symbols);
std::string NormalizeActivationCode(std::string_view typed);

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_IDENTITY_H_

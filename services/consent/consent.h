// The consent service: the authorization engine. It pushes requests (login, sign) to the
// account's one active device, verifies the approval (device signature over the statement the
// server rebuilt from its own record, then the PIN) and, for a sign request, mints the SAD bound
// to exactly the approved hashes. No gRPC types here; consent_grpc.h is the edge.
//
// Security contract: only the stored statement is ever checked (never a client's copy); a
// request is decided once; every PIN attempt needs a one-time challenge signed by the device and
// is counted, under the PIN row's lock, before the PIN is checked; five wrong PINs in a row
// block approvals until an operator, after re-proofing, opens a reset and the user sets a new
// PIN on the app; PINs and activation codes are never stored, logged or echoed;
// every state change is written with its audit record in one transaction.
#ifndef QSIGN_SERVICES_CONSENT_CONSENT_H_
#define QSIGN_SERVICES_CONSENT_CONSENT_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/authenticator.h"
#include "common/auth/caller.h"
#include "common/auth/credential_table.h"
#include "common/clock.h"
#include "common/rate_limit.h"
#include "common/recent_map.h"
#include "common/secret.h"
#include "common/task_runner.h"
#include "consent/sad.h"
#include "consent/statement.h"
#include "services/consent/account_wait.h"
#include "services/consent/consent_store.h"
#include "services/consent/device_certificate.h"
#include "services/consent/notifier.h"
#include "services/consent/pin.h"
#include "services/consent/push.h"

namespace qsign::consent {

// Operator and service credentials are checked the same way by every service (common/auth).
using ::qsign::auth::CredentialTable;
using ::qsign::auth::ParseAuthorization;
using ::qsign::auth::PresentedCredential;
using ::qsign::auth::Sha256;
// Callers and users' sessions are described and checked the same way in every service.
using ::qsign::auth::Caller;
using ::qsign::auth::CallerKind;
using ::qsign::auth::ClientInfo;
using ::qsign::auth::SessionVerifier;

// ---- What consent needs from other services (services/consent/clients.h: over gRPC). ----

struct RedeemedCode {
  std::string account_id;
  bool repeated = false;
};

// The identity service.
class IdentityDirectory {
 public:
  virtual ~IdentityDirectory() = default;
  // Identity.RedeemActivationCode: consumes the code and answers its account, and whether the
  // code had been redeemed before with the same key (a retried enrolment). NOT_FOUND when the
  // code is unknown, used (by another key) or expired.
  virtual absl::StatusOr<RedeemedCode> RedeemActivationCode(std::string_view activation_code,
                                                            std::string_view device_key_sha256) = 0;
  // Identity.GetAccount's proofed_at; nullopt while never proofed. NOT_FOUND for no account.
  virtual absl::StatusOr<std::optional<absl::Time>> LastProofedAt(std::string_view account_id) = 0;
};

struct CredentialSummary {
  std::string account_id;
  bool active = false;
  int max_hashes_per_authorization = 0;
  // The certificate's validity (notBefore..notAfter, inclusive); unset while none is attached.
  std::optional<absl::Time> valid_from;
  std::optional<absl::Time> valid_to;
};

// The signer's view of a credential (Signer.GetCredentialInfo).
class CredentialDirectory {
 public:
  virtual ~CredentialDirectory() = default;
  // NOT_FOUND when there is no such credential.
  virtual absl::StatusOr<CredentialSummary> Lookup(std::string_view credential_id) = 0;
};

// ---- Inputs and results. ----

struct ConsentConfig {
  absl::Duration login_lifetime = absl::Minutes(2);
  absl::Duration sign_lifetime = absl::Minutes(5);
  // Longest lifetime a CreateRequest caller may ask for.
  absl::Duration max_lifetime = absl::Minutes(10);
  absl::Duration challenge_lifetime = absl::Seconds(60);
  // Longest AwaitRequest / AwaitAuthorization wait.
  absl::Duration max_await = absl::Seconds(30);
  // How often an AwaitRequest / AwaitAuthorization re-reads the database when no notification
  // came: commits of this process and, through LISTEN/NOTIFY, of every replica wake waiters at
  // once; this also answers EXPIRED within a second of a request's expiry.
  absl::Duration poll_interval = absl::Seconds(1);
  // The same for an open WatchRequests stream, which waits for hours and needs no expiry: only a
  // safety net, since a NOTIFY lost while the listener was down is made good when it reconnects
  // (it wakes every waiter). At 1 s, 1,000 idle streams read 1,000 times a second.
  absl::Duration stream_poll_interval = absl::Seconds(30);
  // An operator's UnblockPin needs a proofing at most this old.
  absl::Duration reproof_window = absl::Hours(1);
  // After UnblockPin the user may set a new PIN on the app (ResetPin) for this long.
  absl::Duration pin_reset_window = absl::Hours(24);
  // A repeated EnrollDevice (same code, same key) answers the committed enrolment only within
  // this time of it, and only while its PIN was never tried.
  absl::Duration enrollment_retry_window = absl::Minutes(10);
  int max_pin_failures = 5;
  // Approve, ChangePin and ResetPin calls per device per minute, counted before any check;
  // 0: unlimited.
  int approvals_per_device_per_minute = 20;
  // EnrollDevice attempts per client address (common/client_address.h: the peer's, or the
  // trusted proxy's header) per minute, counted before any check; 0: unlimited.
  int enrollments_per_address_per_minute = 30;
  // Authorize calls per account (the credential's owner) per minute, counted before the push;
  // 0: unlimited.
  int authorizations_per_account_per_minute = 10;
  absl::Duration sad_lifetime = kDefaultSadLifetime;
};

struct EnrollInput {
  SecretString activation_code;
  std::string device_public_key;  // SPKI DER.
  std::string device_name;
  SecretString pin;
  std::string push_token;
};

struct EnrollResult {
  std::string device_id;
  std::string account_id;
  std::vector<std::string> certificate_chain_der;
};

struct ChallengeResult {
  std::string challenge;
  absl::Time expires_at;
};

// One request as the app receives it: the statement and its decoded content.
struct PendingRequest {
  std::string statement_bytes;
  Statement statement;
};

struct ApproveInput {
  std::string request_id;
  std::string device_id;
  std::optional<Decision> decision;  // nullopt: not given.
  SecretString pin;
  std::string device_signature;
  std::string challenge;  // From GetApprovalChallenge.
};

struct PinOperationInput {
  std::string device_id;
  std::string challenge;  // From GetApprovalChallenge with no request.
  std::string device_signature;
  SecretString old_pin;  // ChangePin only.
  SecretString new_pin;
};

enum class ChangePinResult { kChanged, kPinWrong, kPinBlocked };

struct ChangePinOutcome {
  ChangePinResult result = ChangePinResult::kPinWrong;
  int remaining_pin_attempts = 0;  // kPinWrong only.
};

enum class ApproveResult { kApproved, kDenied, kPinWrong, kPinBlocked };

struct ApproveOutcome {
  ApproveResult result = ApproveResult::kDenied;
  int remaining_pin_attempts = 0;  // kPinWrong only.
  RequestState state = RequestState::kPending;
};

struct RequestStatus {
  std::string request_id;
  std::string account_id;
  RequestKind kind = RequestKind::kLogin;
  RequestState state = RequestState::kPending;  // PENDING past expires_at reads EXPIRED.
  absl::Time created_at;
  absl::Time expires_at;
  std::optional<absl::Time> decided_at;  // APPROVED or DENIED only.
  std::string device_id;                 // APPROVED or DENIED by a device only.
};

struct LoginRequestInput {
  std::string account_id;
  LoginDetails login;
  // The display text's language tag (consent/statement.h ParseDisplayLanguage).
  std::string language;
  absl::Duration lifetime = absl::ZeroDuration();  // Zero: the default.
};

struct AuthorizeInput {
  std::string credential_id;
  std::string hash_algorithm_oid;
  std::vector<std::string> hashes;
  uint32_t num_signatures = 0;
  std::vector<DocumentInfo> documents;
  std::string relying_party_name;
  // The display text's language tag (consent/statement.h ParseDisplayLanguage).
  std::string language;
};

struct AuthorizeResult {
  std::string request_id;
  absl::Time expires_at;
};

struct AuthorizationOutcome {
  RequestState state = RequestState::kPending;
  std::string sad;  // APPROVED and not yet expired only.
  std::optional<absl::Time> sad_expires_at;
};

// The gRPC edge's end of an open WatchRequests stream; called on the consent runner.
class RequestStream {
 public:
  virtual ~RequestStream() = default;
  // The device is authenticated: tell the app the stream is open.
  virtual void Opened() = 0;
  // Queues one request for the app; never blocks.
  virtual void Send(PendingRequest request) = 0;
  // Once, last: how the stream ends.
  virtual void Done(absl::Status status) = 0;
};

using RequestStatusDone = absl::AnyInvocable<void(absl::StatusOr<RequestStatus>) &&>;
using AuthorizationDone = absl::AnyInvocable<void(absl::StatusOr<AuthorizationOutcome>) &&>;

struct ConsentDeps {
  ConsentStore* store = nullptr;
  AccountNotifier* notifier = nullptr;
  const PinHasher* pins = nullptr;
  const SadMinter* sad_minter = nullptr;
  DeviceCertificateIssuer* certificates = nullptr;
  IdentityDirectory* identity = nullptr;
  CredentialDirectory* credentials = nullptr;
  // Users' session tokens (a SessionKeyCache over identity's keys and revocation feed).
  // Optional: without it Bearer tokens are refused.
  SessionVerifier* sessions = nullptr;
  // Optional: without it no push wake-ups are sent (the outbox still fills).
  PushDispatcher* push = nullptr;
  // Runs the waits that hold no thread (WatchRequests, AwaitRequest, AwaitAuthorization) and
  // their database reads.
  TaskRunner* runner = nullptr;
  const Clock* clock = nullptr;
};

// One file per workflow: consent.cc (construction, callers), enrolment.cc, watch.cc (the app's
// request stream), approval.cc, requests.cc, authorization.cc (signing authorization, SAD),
// devices.cc, pin_unblock.cc (UnblockPin, ChangePin, ResetPin); shared helpers in
// consent_internal.h.
class Consent {
 public:
  // None of the pointers in `deps` is owned; all must outlive the Consent.
  static absl::StatusOr<std::unique_ptr<Consent>> New(ConsentDeps deps, CredentialTable operators,
                                                      CredentialTable services,
                                                      ConsentConfig config);

  // Who is calling, from the `authorization` header value. Empty: kAnonymous. Bad credentials of
  // any kind: UNAUTHENTICATED.
  absl::StatusOr<Caller> Authenticate(std::string_view authorization);

  // The consent app (authenticated by the activation code).
  absl::StatusOr<EnrollResult> EnrollDevice(const EnrollInput& input, const ClientInfo& client);
  absl::StatusOr<ChallengeResult> GetChallenge(std::string_view device_id);
  // The app's stream, holding no thread while it waits: on `deps.runner` authenticates the device
  // (failures UNAUTHENTICATED), calls stream->Opened(), then stream->Send()s every pending
  // request and each new one, until the handle is cancelled (CANCELLED), the device is
  // deactivated (PERMISSION_DENIED) or Shutdown (UNAVAILABLE): then stream->Done(status), once.
  // `stream` must stay valid until Done.
  std::shared_ptr<WaitHandle> WatchRequests(std::string device_id, std::string challenge,
                                            std::string signature, RequestStream* stream);
  // A one-time challenge for one Approve of `request_id` by `device_id`, or (request_id empty)
  // one ChangePin / ResetPin by it.
  absl::StatusOr<ChallengeResult> GetApprovalChallenge(std::string_view request_id,
                                                       std::string_view device_id);
  absl::StatusOr<ApproveOutcome> Approve(const ApproveInput& input, const ClientInfo& client);
  // The user's own PIN change (old PIN counted as an attempt) and the new PIN after an operator's
  // UnblockPin.
  absl::StatusOr<ChangePinOutcome> ChangePin(const PinOperationInput& input,
                                             const ClientInfo& client);
  absl::Status ResetPin(const PinOperationInput& input, const ClientInfo& client);

  // Services.
  absl::StatusOr<RequestStatus> CreateLoginRequest(const Caller& caller,
                                                   const LoginRequestInput& input,
                                                   const ClientInfo& client);
  absl::StatusOr<RequestStatus> GetRequest(const Caller& caller, std::string_view request_id);
  // Authenticates the `authorization` header value (a service), then answers the request's
  // status once it leaves PENDING or after max_wait (at most config.max_await), holding no
  // thread while it waits: `done` runs once, on `deps.runner`.
  std::shared_ptr<WaitHandle> AwaitRequest(std::string authorization, std::string request_id,
                                           absl::Duration max_wait, RequestStatusDone done);
  absl::StatusOr<Deactivation> DeactivateDevices(const Caller& caller, std::string_view account_id,
                                                 std::string_view reason, const ClientInfo& client);

  // Users (their own credentials) and services.
  absl::StatusOr<AuthorizeResult> Authorize(const Caller& caller, const AuthorizeInput& input,
                                            const ClientInfo& client);
  // Authenticates the `authorization` header value (a user's session or a service: the one
  // that asked, else NOT_FOUND), then answers the SIGN request's state (and its SAD once
  // APPROVED) once it leaves PENDING or after max_wait (at most config.max_await), holding no
  // thread while it waits: `done` runs once, on `deps.runner`.
  std::shared_ptr<WaitHandle> AwaitAuthorization(std::string authorization, std::string request_id,
                                                 absl::Duration max_wait, AuthorizationDone done);

  // Operators: opens a PIN reset (the user sets the new PIN on the app); answers until when.
  absl::StatusOr<absl::Time> UnblockPin(const Caller& caller, std::string_view account_id,
                                        std::string_view note, const ClientInfo& client);

  // Operators: the account's records in consent's audit chain and decisions journal
  // (account_audit.cc).
  absl::StatusOr<db::AuditPage> ListAccountAudit(const Caller& caller, std::string_view account_id,
                                                 int page_size, std::string_view page_token);

  // Ends open streams and waits (server shutdown): each ends UNAVAILABLE.
  void Shutdown();
  bool shutting_down() const { return deps_.notifier->closed(); }

  const ConsentConfig& config() const { return config_; }

 private:
  Consent(ConsentDeps deps, CredentialTable operators, CredentialTable services,
          ConsentConfig config)
      : deps_(deps),
        authenticator_(std::move(operators), std::move(services), deps.sessions, "consent"),
        config_(config),
        enroll_limiter_(config.enrollments_per_address_per_minute, absl::Minutes(1)),
        approve_limiter_(config.approvals_per_device_per_minute, absl::Minutes(1)),
        authorize_limiter_(config.authorizations_per_account_per_minute, absl::Minutes(1)) {}

  absl::Time Now() const;
  RequestState EffectiveState(const RequestRecord& r, absl::Time now) const;
  RequestStatus StatusOf(const RequestRecord& r, absl::Time now) const;
  // Builds, stores and announces a request for the account's active device
  // (FAILED_PRECONDITION when it has none).
  absl::StatusOr<RequestRecord> CreateRequest(Statement statement, std::string_view account_id,
                                              std::string requester);
  // The checks WatchRequests makes before it streams: the device's signature over a fresh
  // challenge of its own, and the device active.
  absl::StatusOr<DeviceRecord> AuthenticateWatch(std::string_view device_id,
                                                 std::string_view challenge,
                                                 std::string_view signature);
  using MaySee = absl::AnyInvocable<absl::Status(const RequestRecord&) &&>;
  using DecisionDone = absl::AnyInvocable<void(absl::StatusOr<RequestRecord>) &&>;
  // On the runner: reads the request, lets `may_see` refuse it, then waits without a thread
  // (attached to `handle`) until it leaves PENDING or max_wait (at most config.max_await)
  // passes, and answers its latest record.
  void AwaitDecision(std::shared_ptr<WaitHandle> handle, std::string request_id,
                     absl::Duration max_wait, MaySee may_see, DecisionDone done);
  // Who may wait, from the caller: what they may see of a request, or the refusal.
  using Admit = absl::AnyInvocable<absl::StatusOr<MaySee>(const Caller&) &&>;
  // AwaitRequest's and AwaitAuthorization's common start: on the runner, authenticates
  // `authorization`, lets `admit` refuse the caller, validates request_id and max_wait, then
  // AwaitDecision.
  std::shared_ptr<WaitHandle> AwaitAsCaller(std::string authorization, std::string request_id,
                                            absl::Duration max_wait, Admit admit,
                                            DecisionDone done);
  // For an approved SIGN request: the SAD bound to exactly the stored statement's hashes, set in
  // `decision`, and the audit details.
  absl::Status MintSad(std::string_view request_id, const RequestRecord& request, absl::Time now,
                       RequestDecision* decision, std::string* details) const;
  // A repeated enrolment of `device` (same code, same key): its enrolment as committed when this
  // is a retry after a lost reply (device active, recent, PIN never tried); nullopt otherwise.
  absl::StatusOr<std::optional<EnrollResult>> RetriedEnrolment(const DeviceRecord& device) const;
  // Approve's checks of what it read: the request is the device's account's (else NOT_FOUND),
  // the device active, its signature over the stored statement, the decision and the challenge.
  absl::Status AdmitApproval(const ApprovalContext& context, const ApproveInput& in) const;
  // Approve's answer once the store has answered its attempt (decided, PIN wrong or blocked, or
  // refused before the PIN).
  absl::StatusOr<ApproveOutcome> AfterApproval(const AttemptResult& out,
                                               const RequestRecord& request,
                                               const RequestDecision& decision);
  // Wakes the account's waiters with `decision`, just committed on `request`.
  void NotifyDecided(const RequestRecord& request, const RequestDecision& decision);
  // OK while `state` is PENDING; else the FAILED_PRECONDITION an attempt on it gets.
  absl::Status RequireOpen(const RequestRecord& request, RequestState state) const;
  // The refusal for an attempt the store refused before its PIN was checked (challenge not
  // valid, request no longer open); OK otherwise.
  absl::Status RefusalOf(const AttemptResult& out, const RequestRecord& request) const;
  // Whether `pin` matches `verifier`; counts the check (qsign_consent_pin_checks_total).
  absl::StatusOr<bool> CheckPin(const SecretString& pin, const std::string& verifier) const;
  // The checks every PIN operation makes before its attempt (the device's rate, input, the
  // signature of the account's active device over `op` and the challenge); the new PIN's
  // verifier in *new_verifier; the attempt to record.
  absl::StatusOr<PinAttempt> StartPinOperation(const PinOperationInput& in, PinOperation op,
                                               std::string* new_verifier);

  const ConsentDeps deps_;
  const auth::Authenticator authenticator_;
  const ConsentConfig config_;
  RateLimiter enroll_limiter_;
  RateLimiter approve_limiter_;
  RateLimiter authorize_limiter_;
  // Requests created here lately, each with its account's notifier version right after the
  // creation was notified, for the wait that usually follows (AwaitDecision).
  RecentMap<std::pair<RequestRecord, uint64_t>> recent_{1024};
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_CONSENT_H_

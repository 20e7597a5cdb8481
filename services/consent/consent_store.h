// The consent service's own tables (PostgreSQL schema "consent"): devices, PIN verifiers,
// requests, WatchRequests challenges, the push outbox and the decisions journal. Every state
// change is written with its audit record (hash chain) or, for requests and decisions, its
// journal row, and announces the account on the NOTIFY channel kNotifyChannel, in one
// transaction.
#ifndef QSIGN_SERVICES_CONSENT_CONSENT_STORE_H_
#define QSIGN_SERVICES_CONSENT_CONSENT_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "consent/statement.h"

namespace qsign::consent {

// NOTIFY channel; the payload is NotifyPayload(the account id whose devices or requests changed).
inline constexpr std::string_view kNotifyChannel = "qsign_consent";

enum class RequestState { kPending, kApproved, kDenied, kExpired, kCancelled };
std::string_view RequestStateName(RequestState state);

struct DeviceRecord {
  std::string device_id;
  std::string account_id;
  std::string name;
  std::string public_key_spki;
  std::string push_token;
  // The device certificate, DER.
  std::string certificate_der;
  bool active = false;
  absl::Time enrolled_at;
};

struct PinRecord {
  std::string verifier;
  int failures = 0;
  bool blocked = false;
  absl::Time updated_at;
};

struct RequestRecord {
  std::string request_id;
  std::string account_id;
  RequestKind kind = RequestKind::kLogin;
  // As stored: PENDING past expires_at is still PENDING here (see Consent's effective state).
  RequestState state = RequestState::kPending;
  // The canonical statement, built at creation; the only copy approvals are checked against.
  std::string statement;
  absl::Time created_at;
  absl::Time expires_at;
  // Who asked: "service:<client id>" or "user:<account id>".
  std::string requester;
  std::optional<absl::Time> decided_at;
  std::string decided_by_device;
  // SIGN, APPROVED only.
  std::string sad;
  std::optional<absl::Time> sad_expires_at;
};

struct ApprovalContext {
  RequestRecord request;
  std::string device_account_id;
  std::string device_public_key_spki;
  bool device_active = false;
  std::optional<PinRecord> pin;  // Of the request's account.
};

struct CreatedRequest {
  std::string device_id;  // The account's active device, which the request is for.
  bool pushed = false;    // A push job was queued.
};

// What an open WatchRequests stream needs on each look.
struct WatchSnapshot {
  bool device_active = false;
  std::vector<RequestRecord> pending;  // Oldest first.
};

struct Deactivation {
  std::vector<std::string> device_ids;
  int requests_cancelled = 0;
};

// A wake-up to send through the push gateway.
struct PushJob {
  int64_t id = 0;
  std::string push_token;
  std::string request_id;
  RequestKind kind = RequestKind::kLogin;
  int attempts = 0;
};

struct RequestDecision {
  RequestState state;  // kApproved or kDenied.
  std::string device_id;
  absl::Time decided_at;
  std::string sad;
  std::optional<absl::Time> sad_expires_at;
};

// What a one-time challenge opens: a WatchRequests stream, one Approve of one request, or one
// PIN operation (ChangePin, ResetPin). Stored by SHA-256, bound to a device.
enum class ChallengePurpose { kWatch, kApprove, kPin };

// One attempt that presents a challenge (and, to approve or change the PIN, a PIN).
struct PinAttempt {
  std::string account_id;
  std::string device_id;
  std::string challenge_sha256;
  ChallengePurpose purpose = ChallengePurpose::kApprove;  // kApprove or kPin.
  std::string request_id;                                 // kApprove only.
  int max_failures = 5;
  absl::Time now;
};

enum class AttemptOutcome {
  kChallengeInvalid,  // Not issued for this, used or expired: nothing happened.
  kNoPin,             // The account has no PIN row.
  kNotPending,        // The request is no longer PENDING (see request_state): PIN not checked.
  kBlocked,           // Blocked before: PIN not checked; a pending request is now DENIED.
  kNotOpen,           // ResetPin only: no operator reset open for the account.
  kWrong,             // Counted, checked, wrong. `failures` after it; `blocked` if it blocked.
  kDone,              // Approved / denied / changed / reset: committed.
};

struct AttemptResult {
  AttemptOutcome outcome = AttemptOutcome::kChallengeInvalid;
  int failures = 0;
  bool blocked = false;
  // kApprove: the request's state as stored after the attempt (PENDING past expires_at is
  // still PENDING here) and its expiry.
  RequestState request_state = RequestState::kPending;
  absl::Time request_expires_at;
};

// Called inside the attempt's transaction, with the PIN row locked and the attempt already
// counted: whether the PIN matches `verifier`.
using PinCheck = absl::FunctionRef<absl::StatusOr<bool>(const std::string& verifier)>;
// Called inside an approval's transaction with what it read under the attempt's locks (the
// request, PENDING and unexpired; the signing device, active, of the request's account): OK to
// go on to the PIN, any error to roll the attempt back untouched.
using ApprovalAdmission = absl::FunctionRef<absl::Status(const ApprovalContext& context)>;

class ConsentStore {
 public:
  virtual ~ConsentStore() = default;

  // Deactivates the account's devices, cancels their pending requests, adds `device` as the
  // active one and sets its PIN verifier (failures 0, unblocked).
  virtual absl::StatusOr<Deactivation> EnrollDevice(const DeviceRecord& device,
                                                    std::string_view pin_verifier,
                                                    const db::AuditEvent& audit) = 0;
  // NOT_FOUND "device_id: ..." when unknown.
  virtual absl::StatusOr<DeviceRecord> GetDevice(std::string_view device_id) = 0;
  virtual absl::StatusOr<std::optional<DeviceRecord>> GetActiveDevice(
      std::string_view account_id) = 0;
  // Idempotent; an empty Deactivation when nothing was active. Writes the audit record only
  // when something changed.
  virtual absl::StatusOr<Deactivation> DeactivateDevices(std::string_view account_id, absl::Time at,
                                                         const db::AuditEvent& audit) = 0;

  // `request_id` is for kApprove only (empty otherwise).
  virtual absl::Status AddChallenge(std::string_view challenge_sha256, std::string_view device_id,
                                    ChallengePurpose purpose, std::string_view request_id,
                                    absl::Time expires_at, absl::Time now) = 0;
  // Removes a WatchRequests challenge and answers its expiry; NOT_FOUND when it was not issued
  // to this device for WatchRequests or was used before.
  virtual absl::StatusOr<absl::Time> TakeChallenge(std::string_view challenge_sha256,
                                                   std::string_view device_id) = 0;

  // Inserts the request for the account's active device, and a push job when that device has a
  // push token; answers that device and whether a push job was queued. FAILED_PRECONDITION when
  // the account has no active device. One statement, not audited: the requests table is the
  // journal of requests (who asked, when, the statement); decisions are audited
  // (docs/consent.md).
  virtual absl::StatusOr<CreatedRequest> CreateRequest(const RequestRecord& request) = 0;
  // NOT_FOUND "request_id: ..." when unknown.
  virtual absl::StatusOr<RequestRecord> GetRequest(std::string_view request_id) = 0;
  // What Approve needs, in one query: the request, the device and the PIN of the request's
  // account. NOT_FOUND when the request or the device is unknown.
  virtual absl::StatusOr<ApprovalContext> GetApprovalContext(std::string_view request_id,
                                                             std::string_view device_id) = 0;
  // The device's state and its account's PENDING requests unexpired at `now`, in one query.
  // NOT_FOUND when the device is unknown.
  virtual absl::StatusOr<WatchSnapshot> Watch(std::string_view device_id, absl::Time now) = 0;
  // An approval's common case in one transaction of two round trips, with nothing read before
  // it: one statement consumes the challenge, counts the attempt on the PIN row of the request's
  // account unless it is blocked, locks the request if it is PENDING and unexpired, and reads
  // the request and the signing device's key (the device must be the account's active one);
  // then `admit` (the device's signature over the request as read), `check` (the PIN) and, as
  // ApproveWithPin, the decision or the wrong PIN. nullopt when any of that refuses before the
  // PIN (the challenge, the device, the PIN blocked, the request no longer open, `admit`): the
  // attempt rolled back untouched, the PIN not checked; the full path (GetApprovalContext,
  // ApproveWithPin) then answers why. `attempt.account_id` is the request's, read here.
  // `decision` and `event` are read after `check` returns true (it may complete them).
  virtual absl::StatusOr<std::optional<AttemptResult>> ApproveAsRead(
      const PinAttempt& attempt, ApprovalAdmission admit, PinCheck check,
      const RequestDecision& decision, const db::AuditEvent& event) = 0;
  // Every PIN attempt, in one transaction (max one at a time per account: the PIN row is
  // locked): consumes the challenge (kChallengeInvalid, nothing else happens, when it is not
  // there); locks the PIN row and, for an approval, the request; a request no longer PENDING
  // or expired answers kNotPending and a blocked PIN kBlocked (denying the request) without
  // counting or checking; otherwise counts the attempt (failures + 1), only then calls
  // `check`, and then:
  // - right: `decision` (APPROVED, with its SAD) is recorded in the statement that resets the
  //   count, with its decisions journal row `event`;
  // - wrong: the count stays; at max_failures the PIN is blocked and the request DENIED (a
  //   decisions row, outcome "pin_blocked"); `audit` (outcome "pin_wrong") goes to the chain.
  // A NOTIFY for the account goes out at commit.
  virtual absl::StatusOr<AttemptResult> ApproveWithPin(const PinAttempt& attempt, PinCheck check,
                                                       const RequestDecision& decision,
                                                       const db::AuditEvent& event,
                                                       const db::AuditEvent& audit) = 0;
  // DENY: consumes the challenge and moves the PENDING request to DENIED with its decisions
  // journal row, in one transaction. kChallengeInvalid / kNotPending / kDone.
  virtual absl::StatusOr<AttemptResult> DenyWithChallenge(const PinAttempt& attempt,
                                                          const db::AuditEvent& event) = 0;
  // ChangePin: as ApproveWithPin without a request; right: the verifier becomes
  // `new_verifier`, failures 0, `audit` (outcome ok) in the chain; wrong: `audit` with outcome
  // "pin_wrong".
  virtual absl::StatusOr<AttemptResult> ChangePin(const PinAttempt& attempt, PinCheck check,
                                                  std::string_view new_verifier,
                                                  const db::AuditEvent& audit) = 0;
  // ResetPin: consumes the challenge; kNotOpen unless an operator reset is open at `now`;
  // else sets `new_verifier`, failures 0, unblocked, closes the reset, audits. No PIN check.
  virtual absl::StatusOr<AttemptResult> ResetPin(const PinAttempt& attempt,
                                                 std::string_view new_verifier,
                                                 const db::AuditEvent& audit) = 0;
  // UnblockPin: lets the account's user set a new PIN on the app until `until`. NOT_FOUND when
  // the account has no PIN.
  virtual absl::Status OpenPinReset(std::string_view account_id, absl::Time until, absl::Time at,
                                    const db::AuditEvent& audit) = 0;

  // NOT_FOUND when the account has no PIN.
  virtual absl::StatusOr<PinRecord> GetPin(std::string_view account_id) = 0;
  // The newest device of `account_id` with this key (any state); nullopt when none.
  virtual absl::StatusOr<std::optional<DeviceRecord>> FindDeviceByKey(
      std::string_view account_id, std::string_view public_key_spki) = 0;

  // The audit records about the account, from the audit chain and the decisions journal: target
  // the account or one of its devices (any state), or actor the account or one of its devices;
  // newest first (db::ListAuditRecords).
  virtual absl::StatusOr<db::AuditPage> ListAccountAudit(std::string_view account_id, int page_size,
                                                         std::string_view page_token) = 0;

  // Push jobs due at `now`, marked as attempted (next try at `retry_at`), at most `limit`. Every
  // replica may call this; a job goes to one of them at a time.
  virtual absl::StatusOr<std::vector<PushJob>> ClaimPushJobs(absl::Time now, absl::Time retry_at,
                                                             int limit) = 0;
  virtual absl::Status DeletePushJob(int64_t id) = 0;
};

// Migrations of the "consent" schema.
absl::Status MigrateConsentSchema(db::Pool& pool);

// `pool` must outlive the store.
std::unique_ptr<ConsentStore> NewPostgresConsentStore(db::Pool* pool);

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_CONSENT_STORE_H_

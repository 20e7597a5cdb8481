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
  // APPROVE with a correct PIN: the failure count goes back to 0 unless the PIN (identified by
  // its verifier) was blocked or changed meanwhile, in which case nothing is written and the
  // answer is FAILED_PRECONDITION "pin: changed or blocked meanwhile".
  std::optional<std::string> reset_pin_verifier;
};

struct PinFailure {
  int failures = 0;
  bool blocked = false;
  // True when this failure blocked the PIN and the request was DENIED with it.
  bool request_denied = false;
};

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

  virtual absl::Status AddChallenge(std::string_view challenge_sha256, std::string_view device_id,
                                    absl::Time expires_at, absl::Time now) = 0;
  // Removes the challenge and answers its expiry; NOT_FOUND when it was not issued to this device
  // or was used before.
  virtual absl::StatusOr<absl::Time> TakeChallenge(std::string_view challenge_sha256,
                                                   std::string_view device_id) = 0;

  // Inserts the request for the account's active device, and a push job when that device has a
  // push token; answers whether a push job was queued. FAILED_PRECONDITION when the account has
  // no active device. One statement, not audited: the requests table is the journal of
  // requests (who asked, when, the statement); decisions are audited (docs/consent.md).
  virtual absl::StatusOr<bool> CreateRequest(const RequestRecord& request) = 0;
  // NOT_FOUND "request_id: ..." when unknown.
  virtual absl::StatusOr<RequestRecord> GetRequest(std::string_view request_id) = 0;
  // What Approve needs, in one query: the request, the device and the PIN of the request's
  // account. NOT_FOUND when the request or the device is unknown.
  virtual absl::StatusOr<ApprovalContext> GetApprovalContext(std::string_view request_id,
                                                             std::string_view device_id) = 0;
  // The device's state and its account's PENDING requests unexpired at `now`, in one query.
  // NOT_FOUND when the device is unknown.
  virtual absl::StatusOr<WatchSnapshot> Watch(std::string_view device_id, absl::Time now) = 0;
  // Moves a PENDING request to decision.state and records `event` in the decisions journal
  // (consent.decisions, not the audit chain), in one statement. FAILED_PRECONDITION "already
  // decided" when it is no longer PENDING.
  virtual absl::Status DecideRequest(std::string_view request_id, std::string_view account_id,
                                     const RequestDecision& decision,
                                     const db::AuditEvent& event) = 0;

  // NOT_FOUND when the account has no PIN.
  virtual absl::StatusOr<PinRecord> GetPin(std::string_view account_id) = 0;
  // Counts a wrong PIN; at `max_failures` blocks it and DENIES `request_id` if still pending.
  // An already blocked PIN answers blocked without counting.
  virtual absl::StatusOr<PinFailure> RecordPinFailure(std::string_view account_id,
                                                      std::string_view request_id, int max_failures,
                                                      absl::Time at,
                                                      const db::AuditEvent& audit) = 0;
  // Sets a new verifier, failures 0, unblocked. NOT_FOUND when the account has no PIN.
  virtual absl::Status SetPin(std::string_view account_id, std::string_view verifier, absl::Time at,
                              const db::AuditEvent& audit) = 0;

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

#include "services/consent/consent_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/db/journal.h"
#include "common/db/migrate.h"
#include "common/strings.h"
#include "services/consent/notifier.h"

namespace qsign::consent {
namespace {

using db::Param;

constexpr std::string_view kSchema = "consent";

std::string_view KindName(RequestKind kind) {
  return kind == RequestKind::kSign ? "SIGN" : "LOGIN";
}

absl::StatusOr<RequestKind> ParseKind(std::string_view s) {
  if (s == "LOGIN") return RequestKind::kLogin;
  if (s == "SIGN") return RequestKind::kSign;
  return absl::InternalError(absl::StrCat("consent.requests: unknown kind ", Av(s)));
}

absl::StatusOr<RequestState> ParseState(std::string_view s) {
  if (s == "PENDING") return RequestState::kPending;
  if (s == "APPROVED") return RequestState::kApproved;
  if (s == "DENIED") return RequestState::kDenied;
  if (s == "EXPIRED") return RequestState::kExpired;
  if (s == "CANCELLED") return RequestState::kCancelled;
  return absl::InternalError(absl::StrCat("consent.requests: unknown state ", Av(s)));
}

absl::Status Notify(db::Tx& tx, std::string_view account_id) {
  // Delivered at COMMIT to every replica listening (consent_notifier.h).
  auto res = tx.Exec("SELECT pg_notify($1, $2)",
                     {Param::Text(kNotifyChannel), Param::Text(NotifyPayload(account_id))});
  return res.status();
}

constexpr char kDeviceColumns[] =
    "device_id, account_id, name, public_key_spki, push_token, certificate_der, active, "
    "enrolled_at";

absl::StatusOr<DeviceRecord> ReadDevice(const db::Result& r, int row, int col = 0) {
  DeviceRecord d;
  d.device_id = std::string(r.Get(row, col + 0));
  d.account_id = std::string(r.Get(row, col + 1));
  d.name = std::string(r.Get(row, col + 2));
  auto spki = r.GetBytes(row, col + 3);
  if (!spki.ok()) return spki.status();
  d.public_key_spki = *std::move(spki);
  d.push_token = std::string(r.Get(row, col + 4));
  auto cert = r.GetBytes(row, col + 5);
  if (!cert.ok()) return cert.status();
  d.certificate_der = *std::move(cert);
  auto active = r.GetBool(row, col + 6);
  if (!active.ok()) return active.status();
  d.active = *active;
  auto at = r.GetTime(row, col + 7);
  if (!at.ok()) return at.status();
  d.enrolled_at = *at;
  return d;
}

// verifier, failures, blocked from columns col..col+2.
absl::StatusOr<PinRecord> ReadPin(const db::Result& r, int row, int col) {
  PinRecord p;
  p.verifier = std::string(r.Get(row, col));
  auto failures = r.GetInt64(row, col + 1);
  if (!failures.ok()) return failures.status();
  p.failures = static_cast<int>(*failures);
  auto blocked = r.GetBool(row, col + 2);
  if (!blocked.ok()) return blocked.status();
  p.blocked = *blocked;
  return p;
}

constexpr char kRequestColumns[] =
    "request_id, account_id, kind, state, statement, created_at, expires_at, requester, "
    "decided_at, decided_by_device, sad, sad_expires_at";

constexpr char kRequestColumnsOfR[] =
    "r.request_id, r.account_id, r.kind, r.state, r.statement, r.created_at, r.expires_at, "
    "r.requester, r.decided_at, r.decided_by_device, r.sad, r.sad_expires_at";

absl::StatusOr<RequestRecord> ReadRequest(const db::Result& r, int row, int col = 0) {
  RequestRecord q;
  q.request_id = std::string(r.Get(row, col + 0));
  q.account_id = std::string(r.Get(row, col + 1));
  auto kind = ParseKind(r.Get(row, col + 2));
  if (!kind.ok()) return kind.status();
  q.kind = *kind;
  auto state = ParseState(r.Get(row, col + 3));
  if (!state.ok()) return state.status();
  q.state = *state;
  auto statement = r.GetBytes(row, col + 4);
  if (!statement.ok()) return statement.status();
  q.statement = *std::move(statement);
  auto created = r.GetTime(row, col + 5);
  if (!created.ok()) return created.status();
  q.created_at = *created;
  auto expires = r.GetTime(row, col + 6);
  if (!expires.ok()) return expires.status();
  q.expires_at = *expires;
  q.requester = std::string(r.Get(row, col + 7));
  if (!r.IsNull(row, col + 8)) {
    auto t = r.GetTime(row, col + 8);
    if (!t.ok()) return t.status();
    q.decided_at = *t;
  }
  q.decided_by_device = std::string(r.Get(row, col + 9));
  q.sad = std::string(r.Get(row, col + 10));
  if (!r.IsNull(row, col + 11)) {
    auto t = r.GetTime(row, col + 11);
    if (!t.ok()) return t.status();
    q.sad_expires_at = *t;
  }
  return q;
}

// Deactivates the account's active devices and cancels their pending requests, inside `tx`.
absl::StatusOr<Deactivation> DeactivateIn(db::Tx& tx, std::string_view account_id, absl::Time at) {
  Deactivation out;
  auto devices = tx.Exec(
      "UPDATE consent.devices SET active = false, deactivated_at = $2 "
      "WHERE account_id = $1 AND active RETURNING device_id",
      {Param::Text(account_id), Param::Time(at)});
  if (!devices.ok()) return devices.status();
  for (int i = 0; i < devices->rows(); ++i) out.device_ids.emplace_back(devices->Get(i, 0));
  auto cancelled = tx.Exec(
      "UPDATE consent.requests SET state = 'CANCELLED', decided_at = $2 "
      "WHERE account_id = $1 AND state = 'PENDING' AND expires_at > $2",
      {Param::Text(account_id), Param::Time(at)});
  if (!cancelled.ok()) return cancelled.status();
  out.requests_cancelled = static_cast<int>(cancelled->affected_rows());
  return out;
}

std::string_view PurposeName(ChallengePurpose purpose) {
  switch (purpose) {
    case ChallengePurpose::kWatch:
      return "watch";
    case ChallengePurpose::kApprove:
      return "approve";
    case ChallengePurpose::kPin:
      return "pin";
  }
  return "watch";
}

// Moves the attempt's PENDING request to `state` with its decisions journal row, inside `tx`.
absl::Status DecideIn(db::Tx& tx, const PinAttempt& at, RequestState state,
                      const db::AuditEvent& event) {
  auto res = tx.Exec(
      "WITH upd AS (UPDATE consent.requests SET state = $2, decided_at = $3, "
      "decided_by_device = $4 WHERE request_id = $1 AND state = 'PENDING' RETURNING request_id) "
      "INSERT INTO consent.decisions (request_id, at, actor, action, client_address, outcome, "
      "details) SELECT upd.request_id, $3, $5, $6, $7, $8, $9 FROM upd",
      {Param::Text(at.request_id), Param::Text(RequestStateName(state)), Param::Time(at.now),
       Param::Text(at.device_id), Param::Text(event.actor), Param::Text(event.action),
       Param::Text(event.client_address), Param::Text(event.outcome), Param::Text(event.details)});
  if (!res.ok()) return res.status();
  return Notify(tx, at.account_id);
}

// Attempts on one account queue on its PIN row; none waits for long (every transaction that
// runs BeginAttempt or ApproveAsReadSql sets it).
constexpr absl::Duration kAttemptLockTimeout = absl::Seconds(5);

// The start of every attempt that presents a challenge, inside `tx`: the challenge consumed,
// the PIN row (lock_pin) and the request (kApprove) locked and looked at. Leaves
// out->outcome kDone when the attempt may go on (`pin` set when lock_pin), else the refusal.
absl::Status BeginAttempt(db::Tx& tx, const PinAttempt& at, bool lock_pin, AttemptResult* out,
                          std::optional<PinRecord>* pin, bool reset = false) {
  auto taken = tx.Exec(
      "DELETE FROM consent.challenges WHERE challenge_sha256 = $1 AND device_id = $2 AND "
      "purpose = $3 AND request_id = $4 AND expires_at > $5 RETURNING 1",
      {Param::Bytes(at.challenge_sha256), Param::Text(at.device_id),
       Param::Text(PurposeName(at.purpose)), Param::Text(at.request_id), Param::Time(at.now)});
  if (!taken.ok()) return taken.status();
  if (taken->rows() == 0) {
    out->outcome = AttemptOutcome::kChallengeInvalid;
    return absl::OkStatus();
  }
  if (lock_pin) {
    auto p = tx.Exec(
        "SELECT verifier, failures, blocked FROM consent.pins WHERE account_id = $1 FOR UPDATE",
        {Param::Text(at.account_id)});
    if (!p.ok()) return p.status();
    if (p->rows() == 0) {
      out->outcome = AttemptOutcome::kNoPin;
      return absl::OkStatus();
    }
    auto record = ReadPin(*p, 0, 0);
    if (!record.ok()) return record.status();
    out->failures = record->failures;
    out->blocked = record->blocked;
    *pin = *std::move(record);
  }
  if (at.purpose == ChallengePurpose::kApprove) {
    auto r =
        tx.Exec("SELECT state, expires_at FROM consent.requests WHERE request_id = $1 FOR UPDATE",
                {Param::Text(at.request_id)});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::NotFoundError("request_id: no such request");
    auto state = ParseState(r->Get(0, 0));
    if (!state.ok()) return state.status();
    auto expires = r->GetTime(0, 1);
    if (!expires.ok()) return expires.status();
    out->request_state = *state;
    out->request_expires_at = *expires;
    if (*state != RequestState::kPending || *expires <= at.now) {
      out->outcome = AttemptOutcome::kNotPending;
      return absl::OkStatus();
    }
  }
  if (lock_pin && !reset && (*pin)->blocked) {
    out->outcome = AttemptOutcome::kBlocked;
    return absl::OkStatus();
  }
  out->outcome = AttemptOutcome::kDone;
  return absl::OkStatus();
}

// An UPDATE ... RETURNING of the PIN row this attempt locked: exactly one row, or INTERNAL.
absl::StatusOr<db::Result> UpdateLockedPin(db::Tx& tx, std::string_view sql,
                                           std::initializer_list<Param> params) {
  auto res = tx.Exec(sql, params);
  if (!res.ok()) return res.status();
  if (res->rows() != 1) return absl::InternalError("pin attempt: the locked PIN row is gone");
  return res;
}

// Records the attempt before its PIN is checked: failures + 1. Answers the new count.
absl::StatusOr<int> CountAttempt(db::Tx& tx, const PinAttempt& at) {
  auto res = UpdateLockedPin(
      tx,
      "UPDATE consent.pins SET failures = failures + 1, updated_at = $2 WHERE account_id = $1 "
      "RETURNING failures",
      {Param::Text(at.account_id), Param::Time(at.now)});
  if (!res.ok()) return res.status();
  auto failures = res->GetInt64(0, 0);
  if (!failures.ok()) return failures.status();
  return static_cast<int>(*failures);
}

// A blocked PIN met an approval: the pending request is DENIED (decisions row "pin_blocked").
absl::Status DenyForBlock(db::Tx& tx, const PinAttempt& at, const db::AuditEvent& event,
                          AttemptResult* out) {
  db::AuditEvent denied = event;
  denied.outcome = "pin_blocked";
  denied.details.clear();
  if (auto s = DecideIn(tx, at, RequestState::kDenied, denied); !s.ok()) return s;
  out->request_state = RequestState::kDenied;
  return absl::OkStatus();
}

// A wrong PIN, already counted: blocks at max_failures (denying the attempt's request), and
// appends `audit` with outcome "pin_wrong" to the chain.
absl::Status RecordWrong(db::Tx& tx, const PinAttempt& at, const db::AuditEvent& event,
                         const db::AuditEvent& audit, AttemptResult* out) {
  out->outcome = AttemptOutcome::kWrong;
  auto upd =
      UpdateLockedPin(tx,
                      "UPDATE consent.pins SET blocked = failures >= $2 WHERE account_id = $1 "
                      "RETURNING failures, blocked",
                      {Param::Text(at.account_id), Param::Int(at.max_failures)});
  if (!upd.ok()) return upd.status();
  auto failures = upd->GetInt64(0, 0);
  if (!failures.ok()) return failures.status();
  auto blocked = upd->GetBool(0, 1);
  if (!blocked.ok()) return blocked.status();
  out->failures = static_cast<int>(*failures);
  out->blocked = *blocked;
  bool denied = false;
  if (out->blocked && at.purpose == ChallengePurpose::kApprove) {
    if (auto s = DenyForBlock(tx, at, event, out); !s.ok()) return s;
    denied = true;
  }
  db::AuditEvent wrong = audit;
  wrong.outcome = "pin_wrong";
  wrong.details = absl::StrCat("failures ", out->failures, out->blocked ? ", blocked" : "",
                               denied ? ", request denied" : "");
  if (auto s = db::AppendAudit(tx, kSchema, wrong, at.now); !s.ok()) return s;
  return Notify(tx, at.account_id);
}

// The start of an approval's common case, inside `tx`, in one statement: the challenge
// consumed, the PIN row of the request's account locked and the attempt counted (failures + 1)
// if the PIN is not blocked, then the request locked if it is still PENDING and unexpired, in
// that order (as BeginAttempt takes them), and read with the signing device's key: the device
// must be active and of the request's account. One row (verifier, failures, the device's key,
// the request's columns) if the attempt may go on; none if any step refused, and then the caller
// rolls back and takes the full path to learn why.
const std::string& ApproveAsReadSql() {
  static const std::string* const sql = new std::string(absl::StrCat(
      "WITH ch AS (DELETE FROM consent.challenges WHERE challenge_sha256 = $1 AND device_id = $2 "
      "AND purpose = $3 AND request_id = $4 AND expires_at > $5 RETURNING 1), "
      "dev AS (SELECT d.account_id, d.public_key_spki FROM consent.devices d "
      "JOIN consent.requests q ON q.account_id = d.account_id AND q.request_id = $4 "
      "WHERE d.device_id = $2 AND d.active), "
      "p AS (UPDATE consent.pins SET failures = failures + 1, updated_at = $5 "
      "WHERE account_id = (SELECT account_id FROM dev) AND NOT blocked "
      "AND EXISTS (SELECT 1 FROM ch) RETURNING verifier, failures), "
      "r AS (SELECT ",
      kRequestColumns,
      " FROM consent.requests WHERE request_id = $4 AND state = 'PENDING' AND expires_at > $5 "
      "AND EXISTS (SELECT 1 FROM p) FOR UPDATE) "
      "SELECT p.verifier, p.failures, dev.public_key_spki, ",
      kRequestColumnsOfR, " FROM p, dev, r"));
  return *sql;
}

// The approval of a PENDING request whose PIN was right, the last statement of `tx`: the
// request APPROVED, the failures reset, the journal row and the NOTIFY, in one statement sent
// with COMMIT. The request row is locked by this transaction and was PENDING, so it cannot have
// moved; if it did anyway, the statement raises (consent.ensure) and the COMMIT sent with it
// never runs: nothing of the attempt is committed.
absl::Status ApproveIn(db::Tx& tx, const PinAttempt& at, const RequestDecision& d,
                       const db::AuditEvent& event, AttemptResult* out) {
  auto res = tx.ExecAndCommit(
      "WITH upd AS (UPDATE consent.requests SET state = 'APPROVED', decided_at = $2, "
      "decided_by_device = $3, sad = $4, sad_expires_at = $5 "
      "WHERE request_id = $1 AND state = 'PENDING' RETURNING request_id), "
      "pin AS (UPDATE consent.pins SET failures = 0 WHERE account_id = $6 AND "
      "EXISTS (SELECT 1 FROM upd) RETURNING 1), "
      "j AS (INSERT INTO consent.decisions (request_id, at, actor, action, "
      "client_address, outcome, details) SELECT upd.request_id, $2, $7, $8, $9, $10, $11 "
      "FROM upd RETURNING 1) "
      "SELECT consent.ensure((SELECT count(*) FROM upd) = 1 AND (SELECT count(*) FROM j) = 1, "
      "'approval: the locked request moved'), pg_notify($12, $13)",
      {Param::Text(at.request_id), Param::Time(d.decided_at), Param::Text(d.device_id),
       d.sad.empty() ? Param::Null() : Param::Text(d.sad),
       d.sad_expires_at ? Param::Time(*d.sad_expires_at) : Param::Null(),
       Param::Text(at.account_id), Param::Text(event.actor), Param::Text(event.action),
       Param::Text(event.client_address), Param::Text(event.outcome), Param::Text(event.details),
       Param::Text(kNotifyChannel), Param::Text(NotifyPayload(at.account_id))});
  if (!res.ok()) return res.status();
  out->request_state = RequestState::kApproved;
  return absl::OkStatus();
}

// Checks the PIN of an attempt already counted (row locked); a wrong one is recorded
// (RecordWrong). Answers whether the PIN was right.
absl::StatusOr<bool> CheckCounted(db::Tx& tx, const PinAttempt& at, const std::string& verifier,
                                  PinCheck check, const db::AuditEvent& event,
                                  const db::AuditEvent& audit, AttemptResult* out) {
  // Only now, with the attempt counted and the row locked, is the PIN checked.
  auto right = check(verifier);
  if (!right.ok()) return right.status();
  if (!*right) {
    if (auto s = RecordWrong(tx, at, event, audit, out); !s.ok()) return s;
    return false;
  }
  out->failures = 0;
  return true;
}

// Counts the attempt, then checks the PIN (`pin` locked); a wrong one is recorded
// (RecordWrong). Answers whether the PIN was right.
absl::StatusOr<bool> CountThenCheck(db::Tx& tx, const PinAttempt& at, const PinRecord& pin,
                                    PinCheck check, const db::AuditEvent& event,
                                    const db::AuditEvent& audit, AttemptResult* out) {
  auto counted = CountAttempt(tx, at);
  if (!counted.ok()) return counted.status();
  out->failures = *counted;
  return CheckCounted(tx, at, pin.verifier, check, event, audit, out);
}

class PostgresConsentStore final : public ConsentStore {
 public:
  explicit PostgresConsentStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<Deactivation> EnrollDevice(const DeviceRecord& d, std::string_view verifier,
                                            const db::AuditEvent& audit) override {
    Deactivation out;
    absl::Status st = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      // The PIN row first, as every PIN attempt locks it, then the requests.
      auto locked = tx.Exec("SELECT 1 FROM consent.pins WHERE account_id = $1 FOR UPDATE",
                            {Param::Text(d.account_id)});
      if (!locked.ok()) return locked.status();
      auto deactivated = DeactivateIn(tx, d.account_id, d.enrolled_at);
      if (!deactivated.ok()) return deactivated.status();
      out = *std::move(deactivated);
      auto ins = tx.Exec(
          "INSERT INTO consent.devices (device_id, account_id, name, public_key_spki, "
          "push_token, certificate_der, active, enrolled_at) "
          "VALUES ($1, $2, $3, $4, $5, $6, true, $7)",
          {Param::Text(d.device_id), Param::Text(d.account_id), Param::Text(d.name),
           Param::Bytes(d.public_key_spki), Param::Text(d.push_token),
           Param::Bytes(d.certificate_der), Param::Time(d.enrolled_at)});
      if (!ins.ok()) {
        // A concurrent enrolment of the same account won the one active slot: start over.
        if (ins.status().code() == absl::StatusCode::kAlreadyExists) {
          return absl::AbortedError("concurrent enrolment");
        }
        return ins.status();
      }
      auto pin = tx.Exec(
          "INSERT INTO consent.pins (account_id, verifier, failures, blocked, updated_at) "
          "VALUES ($1, $2, 0, false, $3) ON CONFLICT (account_id) DO UPDATE SET "
          "verifier = EXCLUDED.verifier, failures = 0, blocked = false, reset_until = NULL, "
          "updated_at = EXCLUDED.updated_at",
          {Param::Text(d.account_id), Param::Text(verifier), Param::Time(d.enrolled_at)});
      if (!pin.ok()) return pin.status();
      if (auto s = db::AppendAudit(tx, kSchema, audit, d.enrolled_at); !s.ok()) return s;
      return Notify(tx, d.account_id);
    });
    if (!st.ok()) return st;
    return out;
  }

  absl::StatusOr<DeviceRecord> GetDevice(std::string_view device_id) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kDeviceColumns, " FROM consent.devices WHERE device_id = $1"),
        {Param::Text(device_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError("device_id: no such device");
    return ReadDevice(*res, 0);
  }

  absl::StatusOr<std::optional<DeviceRecord>> GetActiveDevice(
      std::string_view account_id) override {
    auto res = pool_->Exec(absl::StrCat("SELECT ", kDeviceColumns,
                                        " FROM consent.devices WHERE account_id = $1 AND active"),
                           {Param::Text(account_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return std::optional<DeviceRecord>();
    auto d = ReadDevice(*res, 0);
    if (!d.ok()) return d.status();
    return std::optional<DeviceRecord>(*std::move(d));
  }

  absl::StatusOr<Deactivation> DeactivateDevices(std::string_view account_id, absl::Time at,
                                                 const db::AuditEvent& audit) override {
    Deactivation out;
    absl::Status st = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto deactivated = DeactivateIn(tx, account_id, at);
      if (!deactivated.ok()) return deactivated.status();
      out = *std::move(deactivated);
      if (out.device_ids.empty() && out.requests_cancelled == 0) return absl::OkStatus();
      db::AuditEvent event = audit;
      event.details =
          absl::StrCat(event.details, event.details.empty() ? "" : "; ", "devices ",
                       out.device_ids.size(), ", requests cancelled ", out.requests_cancelled);
      if (auto s = db::AppendAudit(tx, kSchema, event, at); !s.ok()) return s;
      return Notify(tx, account_id);
    });
    if (!st.ok()) return st;
    return out;
  }

  absl::Status AddChallenge(std::string_view challenge_sha256, std::string_view device_id,
                            ChallengePurpose purpose, std::string_view request_id,
                            absl::Time expires_at, absl::Time now) override {
    // Expired challenges go with the next one issued; the index keeps that cheap.
    auto res = pool_->Exec(
        "WITH gone AS (DELETE FROM consent.challenges WHERE expires_at < $4) "
        "INSERT INTO consent.challenges (challenge_sha256, device_id, expires_at, purpose, "
        "request_id) VALUES ($1, $2, $3, $5, $6)",
        {Param::Bytes(challenge_sha256), Param::Text(device_id), Param::Time(expires_at),
         Param::Time(now), Param::Text(PurposeName(purpose)), Param::Text(request_id)});
    return res.status();
  }

  absl::StatusOr<absl::Time> TakeChallenge(std::string_view challenge_sha256,
                                           std::string_view device_id) override {
    auto res = pool_->Exec(
        "DELETE FROM consent.challenges WHERE challenge_sha256 = $1 AND device_id = $2 "
        "AND purpose = 'watch' RETURNING expires_at",
        {Param::Bytes(challenge_sha256), Param::Text(device_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError("challenge: not issued or used before");
    return res->GetTime(0, 0);
  }

  absl::StatusOr<CreatedRequest> CreateRequest(const RequestRecord& q) override {
    // One round trip: the insert happens only for an account with an active device, whose push
    // token (if any) queues a wake-up; the NOTIFY goes out at COMMIT.
    auto res = pool_->Exec(
        "WITH dev AS (SELECT device_id, push_token FROM consent.devices "
        "WHERE account_id = $2 AND active), "
        "ins AS (INSERT INTO consent.requests (request_id, account_id, kind, state, statement, "
        "created_at, expires_at, requester) SELECT $1, $2, $3, 'PENDING', $4, $5, $6, $7 "
        "FROM dev RETURNING request_id), "
        "push AS (INSERT INTO consent.push_outbox (push_token, request_id, kind, attempts, "
        "next_attempt_at) SELECT dev.push_token, ins.request_id, $3, 0, $5 FROM dev, ins "
        "WHERE dev.push_token <> '' RETURNING 1) "
        "SELECT (SELECT count(*) FROM push) > 0, dev.device_id, pg_notify($8, $9) FROM ins, dev",
        {Param::Text(q.request_id), Param::Text(q.account_id), Param::Text(KindName(q.kind)),
         Param::Bytes(q.statement), Param::Time(q.created_at), Param::Time(q.expires_at),
         Param::Text(q.requester), Param::Text(kNotifyChannel),
         Param::Text(NotifyPayload(q.account_id))});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) {
      return absl::FailedPreconditionError("account_id: the account has no active consent app");
    }
    auto pushed = res->GetBool(0, 0);
    if (!pushed.ok()) return pushed.status();
    return CreatedRequest{.device_id = std::string(res->Get(0, 1)), .pushed = *pushed};
  }

  absl::StatusOr<ApprovalContext> GetApprovalContext(std::string_view request_id,
                                                     std::string_view device_id) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kRequestColumnsOfR,
                     ", d.account_id, d.public_key_spki, d.active, p.verifier, p.failures, "
                     "p.blocked FROM consent.requests r JOIN consent.devices d ON d.device_id = $2 "
                     "LEFT JOIN consent.pins p ON p.account_id = r.account_id "
                     "WHERE r.request_id = $1"),
        {Param::Text(request_id), Param::Text(device_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError("request_id: no such request");
    ApprovalContext out;
    auto request = ReadRequest(*res, 0);
    if (!request.ok()) return request.status();
    out.request = *std::move(request);
    out.device_account_id = std::string(res->Get(0, 12));
    auto spki = res->GetBytes(0, 13);
    if (!spki.ok()) return spki.status();
    out.device_public_key_spki = *std::move(spki);
    auto active = res->GetBool(0, 14);
    if (!active.ok()) return active.status();
    out.device_active = *active;
    if (!res->IsNull(0, 15)) {
      auto pin = ReadPin(*res, 0, 15);
      if (!pin.ok()) return pin.status();
      out.pin = *std::move(pin);
    }
    return out;
  }

  absl::StatusOr<RequestRecord> GetRequest(std::string_view request_id) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kRequestColumns, " FROM consent.requests WHERE request_id = $1"),
        {Param::Text(request_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError("request_id: no such request");
    return ReadRequest(*res, 0);
  }

  absl::StatusOr<WatchSnapshot> Watch(std::string_view device_id, absl::Time now) override {
    // One round trip: the device's state, then its account's pending requests (if any).
    auto res =
        pool_->Exec(absl::StrCat("SELECT d.active, ", kRequestColumnsOfR,
                                 " FROM consent.devices d LEFT JOIN consent.requests r "
                                 "ON r.account_id = d.account_id AND r.state = 'PENDING' AND "
                                 "r.expires_at > $2 WHERE d.device_id = $1 ORDER BY r.seq"),
                    {Param::Text(device_id), Param::Time(now)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError("device_id: no such device");
    WatchSnapshot out;
    auto active = res->GetBool(0, 0);
    if (!active.ok()) return active.status();
    out.device_active = *active;
    for (int i = 0; i < res->rows(); ++i) {
      if (res->IsNull(i, 1)) continue;
      auto q = ReadRequest(*res, i, 1);
      if (!q.ok()) return q.status();
      out.pending.push_back(*std::move(q));
    }
    return out;
  }

  absl::StatusOr<std::optional<AttemptResult>> ApproveAsRead(const PinAttempt& attempt,
                                                             ApprovalAdmission admit,
                                                             PinCheck check,
                                                             const RequestDecision& d,
                                                             const db::AuditEvent& event) override {
    // Two round trips: BEGIN with ApproveAsReadSql, then the approval (or the wrong PIN's
    // records) with COMMIT. Any refusal rolls back untouched, the PIN unchecked.
    AttemptResult out;
    bool refused = false;
    absl::Status st = pool_->InTransaction(
        [&](db::Tx& tx) -> absl::Status {
          out = AttemptResult{};
          refused = false;
          auto begun =
              tx.Exec(ApproveAsReadSql(),
                      {Param::Bytes(attempt.challenge_sha256), Param::Text(attempt.device_id),
                       Param::Text(PurposeName(ChallengePurpose::kApprove)),
                       Param::Text(attempt.request_id), Param::Time(attempt.now)});
          if (!begun.ok()) return begun.status();
          if (begun->rows() != 1) {
            refused = true;
            return absl::CancelledError("approval refused; rolled back for the full path");
          }
          auto failures = begun->GetInt64(0, 1);
          if (!failures.ok()) return failures.status();
          auto spki = begun->GetBytes(0, 2);
          if (!spki.ok()) return spki.status();
          auto request = ReadRequest(*begun, 0, 3);
          if (!request.ok()) return request.status();
          ApprovalContext context{.request = *std::move(request),
                                  .device_public_key_spki = *std::move(spki),
                                  .device_active = true};
          context.device_account_id = context.request.account_id;
          if (absl::Status s = admit(context); !s.ok()) {
            refused = true;
            return absl::CancelledError("approval not admitted; rolled back for the full path");
          }
          PinAttempt at = attempt;
          at.account_id = context.request.account_id;
          out.outcome = AttemptOutcome::kDone;
          out.failures = static_cast<int>(*failures);
          out.request_expires_at = context.request.expires_at;
          auto right =
              CheckCounted(tx, at, std::string(begun->Get(0, 0)), check, event, event, &out);
          if (!right.ok() || !*right) return right.status();
          return ApproveIn(tx, at, d, event, &out);
        },
        // A retried transaction would check a PIN a second time.
        {.max_retries = 0, .lock_timeout = kAttemptLockTimeout});
    if (refused) return std::nullopt;
    if (!st.ok()) return st;
    return out;
  }

  absl::StatusOr<AttemptResult> ApproveWithPin(const PinAttempt& at, PinCheck check,
                                               const RequestDecision& d,
                                               const db::AuditEvent& event,
                                               const db::AuditEvent& audit) override {
    // The full path: every step on its own, so a refusal says exactly why.
    AttemptResult out;
    absl::Status st = pool_->InTransaction(
        [&](db::Tx& tx) -> absl::Status {
          out = AttemptResult{};
          std::optional<PinRecord> pin;
          if (auto s = BeginAttempt(tx, at, /*lock_pin=*/true, &out, &pin); !s.ok()) return s;
          if (out.outcome != AttemptOutcome::kDone) {
            if (out.outcome == AttemptOutcome::kBlocked) {
              return DenyForBlock(tx, at, event, &out);
            }
            return absl::OkStatus();
          }
          auto right = CountThenCheck(tx, at, *pin, check, event, audit, &out);
          if (!right.ok() || !*right) return right.status();
          return ApproveIn(tx, at, d, event, &out);
        },
        {.max_retries = 0, .lock_timeout = kAttemptLockTimeout});
    if (!st.ok()) return st;
    return out;
  }

  absl::StatusOr<AttemptResult> DenyWithChallenge(const PinAttempt& at,
                                                  const db::AuditEvent& event) override {
    AttemptResult out;
    absl::Status st = pool_->InTransaction(
        [&](db::Tx& tx) -> absl::Status {
          out = AttemptResult{};
          std::optional<PinRecord> pin;
          if (auto s = BeginAttempt(tx, at, /*lock_pin=*/false, &out, &pin); !s.ok()) return s;
          if (out.outcome != AttemptOutcome::kDone) return absl::OkStatus();
          if (auto s = DecideIn(tx, at, RequestState::kDenied, event); !s.ok()) return s;
          out.request_state = RequestState::kDenied;
          return absl::OkStatus();
        },
        {.lock_timeout = kAttemptLockTimeout});
    if (!st.ok()) return st;
    return out;
  }

  absl::StatusOr<AttemptResult> ChangePin(const PinAttempt& at, PinCheck check,
                                          std::string_view new_verifier,
                                          const db::AuditEvent& audit) override {
    AttemptResult out;
    absl::Status st = pool_->InTransaction(
        [&](db::Tx& tx) -> absl::Status {
          out = AttemptResult{};
          std::optional<PinRecord> pin;
          if (auto s = BeginAttempt(tx, at, /*lock_pin=*/true, &out, &pin); !s.ok()) return s;
          if (out.outcome != AttemptOutcome::kDone) return absl::OkStatus();
          auto right = CountThenCheck(tx, at, *pin, check, audit, audit, &out);
          if (!right.ok() || !*right) return right.status();
          auto upd = tx.Exec(
              "UPDATE consent.pins SET verifier = $2, failures = 0, updated_at = $3 "
              "WHERE account_id = $1",
              {Param::Text(at.account_id), Param::Text(new_verifier), Param::Time(at.now)});
          if (!upd.ok()) return upd.status();
          return db::AppendAudit(tx, kSchema, audit, at.now);
        },
        {.max_retries = 0, .lock_timeout = kAttemptLockTimeout});
    if (!st.ok()) return st;
    return out;
  }

  absl::StatusOr<AttemptResult> ResetPin(const PinAttempt& at, std::string_view new_verifier,
                                         const db::AuditEvent& audit) override {
    AttemptResult out;
    absl::Status st = pool_->InTransaction(
        [&](db::Tx& tx) -> absl::Status {
          out = AttemptResult{};
          std::optional<PinRecord> pin;
          if (auto s = BeginAttempt(tx, at, /*lock_pin=*/true, &out, &pin, /*reset=*/true);
              !s.ok()) {
            return s;
          }
          if (out.outcome != AttemptOutcome::kDone) return absl::OkStatus();
          auto upd = tx.Exec(
              "UPDATE consent.pins SET verifier = $2, failures = 0, blocked = false, "
              "reset_until = NULL, updated_at = $3 WHERE account_id = $1 AND reset_until > $3 "
              "RETURNING 1",
              {Param::Text(at.account_id), Param::Text(new_verifier), Param::Time(at.now)});
          if (!upd.ok()) return upd.status();
          if (upd->rows() == 0) {
            out.outcome = AttemptOutcome::kNotOpen;
            return absl::OkStatus();
          }
          if (auto s = db::AppendAudit(tx, kSchema, audit, at.now); !s.ok()) return s;
          return Notify(tx, at.account_id);
        },
        {.lock_timeout = kAttemptLockTimeout});
    if (!st.ok()) return st;
    return out;
  }

  absl::Status OpenPinReset(std::string_view account_id, absl::Time until, absl::Time at,
                            const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto upd =
          tx.Exec("UPDATE consent.pins SET reset_until = $2 WHERE account_id = $1 RETURNING 1",
                  {Param::Text(account_id), Param::Time(until)});
      if (!upd.ok()) return upd.status();
      if (upd->rows() == 0) return absl::NotFoundError("account_id: no PIN set");
      return db::AppendAudit(tx, kSchema, audit, at);
    });
  }

  absl::StatusOr<std::optional<DeviceRecord>> FindDeviceByKey(
      std::string_view account_id, std::string_view public_key_spki) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kDeviceColumns,
                     " FROM consent.devices WHERE account_id = $1 AND public_key_spki = $2 "
                     "ORDER BY enrolled_at DESC LIMIT 1"),
        {Param::Text(account_id), Param::Bytes(public_key_spki)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return std::optional<DeviceRecord>();
    auto d = ReadDevice(*res, 0);
    if (!d.ok()) return d.status();
    return std::optional<DeviceRecord>(*std::move(d));
  }

  absl::StatusOr<PinRecord> GetPin(std::string_view account_id) override {
    auto res = pool_->Exec(
        "SELECT verifier, failures, blocked, updated_at FROM consent.pins WHERE account_id = $1",
        {Param::Text(account_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError("account_id: no PIN set");
    auto p = ReadPin(*res, 0, 0);
    if (!p.ok()) return p.status();
    auto updated = res->GetTime(0, 3);
    if (!updated.ok()) return updated.status();
    p->updated_at = *updated;
    return p;
  }

  absl::StatusOr<std::vector<PushJob>> ClaimPushJobs(absl::Time now, absl::Time retry_at,
                                                     int limit) override {
    auto res = pool_->Exec(
        "UPDATE consent.push_outbox SET attempts = attempts + 1, next_attempt_at = $2 "
        "WHERE id IN (SELECT id FROM consent.push_outbox WHERE next_attempt_at <= $1 "
        "ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
        "RETURNING id, push_token, request_id, kind, attempts",
        {Param::Time(now), Param::Time(retry_at), Param::Int(limit)});
    if (!res.ok()) return res.status();
    std::vector<PushJob> out;
    for (int i = 0; i < res->rows(); ++i) {
      PushJob job;
      auto id = res->GetInt64(i, 0);
      if (!id.ok()) return id.status();
      job.id = *id;
      job.push_token = std::string(res->Get(i, 1));
      job.request_id = std::string(res->Get(i, 2));
      auto kind = ParseKind(res->Get(i, 3));
      if (!kind.ok()) return kind.status();
      job.kind = *kind;
      auto attempts = res->GetInt64(i, 4);
      if (!attempts.ok()) return attempts.status();
      job.attempts = static_cast<int>(*attempts);
      out.push_back(std::move(job));
    }
    return out;
  }

  absl::StatusOr<db::AuditPage> ListAccountAudit(std::string_view account_id, int page_size,
                                                 std::string_view page_token) override {
    auto devices = pool_->Exec(
        "SELECT device_id FROM consent.devices WHERE account_id = $1 ORDER BY enrolled_at",
        {Param::Text(account_id)});
    if (!devices.ok()) return devices.status();
    db::AuditQuery query{.tables = {{"consent.audit_log"}, {"consent.decisions", "request_id"}},
                         .targets = {std::string(account_id)},
                         .actors = {absl::StrCat("account:", Av(account_id))},
                         .page_size = page_size,
                         .page_token = page_token};
    for (int r = 0; r < devices->rows(); ++r) {
      query.targets.emplace_back(devices->Get(r, 0));
      query.actors.push_back(absl::StrCat("device:", Av(devices->Get(r, 0))));
    }
    return db::ListAuditRecords(*pool_, query);
  }

  absl::Status DeletePushJob(int64_t id) override {
    return pool_->Exec("DELETE FROM consent.push_outbox WHERE id = $1", {Param::Int(id)}).status();
  }

 private:
  db::Pool* pool_;  // Not owned.
};

constexpr char kV1[] = R"sql(
-- One active device per account; older ones stay for the record.
CREATE TABLE devices (
  device_id       text PRIMARY KEY,
  account_id      text NOT NULL,
  name            text NOT NULL,
  public_key_spki bytea NOT NULL,
  push_token      text NOT NULL,
  certificate_der bytea NOT NULL,
  active          boolean NOT NULL,
  enrolled_at     timestamptz NOT NULL,
  deactivated_at  timestamptz
);
CREATE UNIQUE INDEX devices_one_active ON devices (account_id) WHERE active;
CREATE INDEX devices_account ON devices (account_id);

-- The PIN verifier (pin.h): never the PIN, never anything guessable without the pepper.
CREATE TABLE pins (
  account_id text PRIMARY KEY,
  verifier   text NOT NULL,
  failures   int NOT NULL,
  blocked    boolean NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE requests (
  request_id        text PRIMARY KEY,
  seq               bigint GENERATED ALWAYS AS IDENTITY,  -- Creation order.
  account_id        text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('LOGIN', 'SIGN')),
  state             text NOT NULL
                    CHECK (state IN ('PENDING', 'APPROVED', 'DENIED', 'EXPIRED', 'CANCELLED')),
  statement         bytea NOT NULL,
  created_at        timestamptz NOT NULL,
  expires_at        timestamptz NOT NULL,
  requester         text NOT NULL,
  decided_at        timestamptz,
  decided_by_device text,
  sad               text,
  sad_expires_at    timestamptz
);
CREATE INDEX requests_pending ON requests (account_id, seq) WHERE state = 'PENDING';

-- Single-use WatchRequests challenges, by SHA-256.
CREATE TABLE challenges (
  challenge_sha256 bytea PRIMARY KEY,
  device_id        text NOT NULL,
  expires_at       timestamptz NOT NULL
);
CREATE INDEX challenges_expiry ON challenges (expires_at);

-- Wake-ups to send through the push gateway, written with the request they announce.
CREATE TABLE push_outbox (
  id              bigserial PRIMARY KEY,
  push_token      text NOT NULL,
  request_id      text NOT NULL,
  kind            text NOT NULL,
  attempts        int NOT NULL,
  next_attempt_at timestamptz NOT NULL
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_at);
)sql";

// The decisions journal: one append-only row per decision on a request (approve, deny, denied for
// a blocked PIN), written in the statement that decides. With `requests` (who asked what, when)
// it is the record of every consent; the audit chain keeps enrolment, PIN failures and
// unblocks, deactivations (docs/consent.md). The columns are an audit record's; target is
// request_id.
constexpr char kV2[] = R"sql(
CREATE TABLE decisions (
  seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  request_id     text NOT NULL,
  at             timestamptz NOT NULL,
  actor          text NOT NULL,
  action         text NOT NULL,
  client_address text NOT NULL,
  outcome        text NOT NULL,
  details        text NOT NULL
);
CREATE INDEX decisions_request ON decisions (request_id);
CREATE INDEX decisions_at ON decisions (at);
)sql";

// Approval and PIN-operation challenges share the WatchRequests challenge table; the operator's
// PIN reset window.
constexpr char kV3[] = R"sql(
ALTER TABLE challenges ADD COLUMN purpose text NOT NULL DEFAULT 'watch'
  CHECK (purpose IN ('watch', 'approve', 'pin'));
ALTER TABLE challenges ADD COLUMN request_id text NOT NULL DEFAULT '';
ALTER TABLE pins ADD COLUMN reset_until timestamptz;
)sql";

// An account's audit trail (ListAccountAudit) reads the decisions its devices made by actor;
// AuditIndexSql indexes audit_log where consent owns it (else deploy/postgres/roles.sql does).
constexpr char kV4[] = R"sql(
CREATE INDEX decisions_actor ON decisions (actor, at);
)sql";

// A statement that must not go on raises by itself (SQLSTATE P0001 with `message`: INTERNAL), so
// the COMMIT sent with it in one pipeline (db::Tx::ExecAndCommit) never runs.
constexpr char kV5[] = R"sql(
CREATE FUNCTION ensure(ok boolean, message text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION '%', message;
  END IF;
  RETURN true;
END
$$;
)sql";

}  // namespace

std::string_view RequestStateName(RequestState state) {
  switch (state) {
    case RequestState::kPending:
      return "PENDING";
    case RequestState::kApproved:
      return "APPROVED";
    case RequestState::kDenied:
      return "DENIED";
    case RequestState::kExpired:
      return "EXPIRED";
    case RequestState::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

absl::Status MigrateConsentSchema(db::Pool& pool) {
  static const std::string v1 = absl::StrCat(kV1, Av(db::AuditTableSql()));
  static const std::string v2 = absl::StrCat(kV2, db::AppendOnlySql("decisions"));
  static const std::string v4 = absl::StrCat(kV4, Av(db::AuditIndexSql()));
  const db::Migration migrations[] = {
      {1, "devices, pins, requests, challenges, push outbox, audit log", v1},
      {2, "decisions journal", v2},
      {3, "approval and PIN challenges, PIN reset window", kV3},
      {4, "audit trail of an account: audit log and decisions by actor", v4},
      {5, "ensure(): a statement that raises by itself before its pipelined COMMIT", kV5}};
  return db::ApplyMigrations(pool, kSchema, migrations);
}

std::unique_ptr<ConsentStore> NewPostgresConsentStore(db::Pool* pool) {
  return std::make_unique<PostgresConsentStore>(pool);
}

}  // namespace qsign::consent

// The consent app's answer to a request: device signature, then decision and PIN attempts.

#include <openssl/rand.h>

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {
namespace {

// One per Approve call that reached a decision point: approved, denied, pin_failed (wrong PIN,
// still open), blocked (PIN blocked, now or before), expired (the answer came too late).
void CountOutcome(RequestKind kind, std::string_view outcome) {
  metrics::Registry::Global().AddCounter(
      "qsign_consent_request_outcomes_total",
      "Answers from consent apps, by request kind and outcome (approved, denied, pin_failed, "
      "blocked, expired).",
      {{"kind", KindLabel(kind)}, {"outcome", std::string(outcome)}});
}

}  // namespace

absl::StatusOr<bool> Consent::CheckPin(const SecretString& pin, const std::string& verifier) const {
  metrics::Registry::Global().AddCounter(
      "qsign_consent_pin_checks_total",
      "PINs checked against their verifier (Approve, ChangePin), each after its attempt was "
      "counted.",
      {});
  return deps_.pins->Verify(pin.value(), verifier);
}

absl::StatusOr<ChallengeResult> Consent::GetApprovalChallenge(std::string_view request_id,
                                                              std::string_view device_id) {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  if (!request_id.empty()) {
    if (auto s = ValidateRequestId(request_id); !s.ok()) return s;
  }
  std::string challenge(kApprovalChallengeBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(challenge.data()), kApprovalChallengeBytes) !=
      1) {
    return absl::InternalError("no randomness");
  }
  const absl::Time now = Now();
  const absl::Time expires_at = now + config_.challenge_lifetime;
  // Unknown devices and requests get one too: the call that presents it refuses them.
  if (auto s = deps_.store->AddChallenge(
          Sha256(challenge), device_id,
          request_id.empty() ? ChallengePurpose::kPin : ChallengePurpose::kApprove, request_id,
          expires_at, now);
      !s.ok()) {
    return s;
  }
  return ChallengeResult{.challenge = std::move(challenge), .expires_at = expires_at};
}

absl::StatusOr<ApproveOutcome> Consent::Approve(const ApproveInput& in, const ClientInfo& client) {
  if (auto s = ValidateRequestId(in.request_id); !s.ok()) return s;
  if (auto s = ValidateDeviceId(in.device_id); !s.ok()) return s;
  if (!in.decision.has_value()) {
    return absl::InvalidArgumentError("decision: APPROVE or DENY");
  }
  if (in.device_signature.empty()) {
    return absl::InvalidArgumentError("device_signature: required");
  }
  if (auto s = ValidateApprovalChallenge(in.challenge); !s.ok()) return s;
  const bool approve = *in.decision == Decision::kApprove;
  if (approve && in.pin.empty()) return absl::InvalidArgumentError("pin: required to approve");
  const absl::Time now = Now();
  // Counted before anything else, so that no answer is cheaper to get than the limit allows.
  if (auto s = approve_limiter_.Acquire(in.device_id, now, "too many approvals from this device");
      !s.ok()) {
    return s;
  }
  const std::string actor = absl::StrCat("device:", in.device_id);
  PinAttempt attempt{.device_id = in.device_id,
                     .challenge_sha256 = Sha256(in.challenge),
                     .purpose = ChallengePurpose::kApprove,
                     .request_id = in.request_id,
                     .max_failures = config_.max_pin_failures,
                     .now = now};
  // The request as read (by the approval's first statement, or by GetApprovalContext).
  RequestRecord request;
  db::AuditEvent event;
  auto admit = [&](const ApprovalContext& context) -> absl::Status {
    if (auto s = AdmitApproval(context, in); !s.ok()) return s;
    request = context.request;
    const std::string action = request.kind == RequestKind::kSign ? "sign" : "login";
    event = auth::AuditEventOf(actor, absl::StrCat(action, approve ? ".approve" : ".deny"),
                               in.request_id, client);
    return absl::OkStatus();
  };
  // 4. The PIN: counted under the PIN row's lock, then checked; for a sign request, the SAD
  // bound to exactly the stored hashes is minted once the PIN is right.
  RequestDecision decision{
      .state = RequestState::kApproved, .device_id = in.device_id, .decided_at = now};
  auto check = [&](const std::string& verifier) -> absl::StatusOr<bool> {
    auto right = CheckPin(in.pin, verifier);
    if (!right.ok() || !*right) return right;
    if (request.kind == RequestKind::kSign) {
      if (auto s = MintSad(in.request_id, request, now, &decision, &event.details); !s.ok()) {
        return s;
      }
    }
    return true;
  };

  if (approve) {
    // The common case: steps 1-3 on what the approval's own first statement read, under its
    // locks. Any refusal there changed nothing; the full path below says why.
    auto out = deps_.store->ApproveAsRead(attempt, admit, check, decision, event);
    if (!out.ok()) return out.status();
    if (out->has_value()) return AfterApproval(**out, request, decision);
  }

  // 1. The request belongs to the device's account (one query brings request, device and PIN).
  auto context = deps_.store->GetApprovalContext(in.request_id, in.device_id);
  if (!context.ok()) {
    return context.status().code() == absl::StatusCode::kNotFound
               ? absl::NotFoundError("request_id: no such request")
               : context.status();
  }
  // 2. Signed by the account's active device, over the statement as we stored it, the decision
  // and this attempt's challenge.
  if (auto s = admit(*context); !s.ok()) return s;
  // 3. Still open (checked again, under lock, in the attempt's transaction).
  if (auto s = RequireOpen(request, EffectiveState(request, now)); !s.ok()) return s;
  attempt.account_id = request.account_id;

  if (!approve) {
    auto out = deps_.store->DenyWithChallenge(attempt, event);
    if (!out.ok()) return out.status();
    if (auto s = RefusalOf(*out, request); !s.ok()) return s;
    NotifyDecided(
        request, RequestDecision{
                     .state = RequestState::kDenied, .device_id = in.device_id, .decided_at = now});
    CountOutcome(request.kind, "denied");
    return ApproveOutcome{.result = ApproveResult::kDenied, .state = RequestState::kDenied};
  }
  auto out = deps_.store->ApproveWithPin(attempt, check, decision, event, event);
  if (!out.ok()) return out.status();
  return AfterApproval(*out, request, decision);
}

absl::Status Consent::AdmitApproval(const ApprovalContext& context, const ApproveInput& in) const {
  if (context.device_account_id != context.request.account_id) {
    return absl::NotFoundError("request_id: no such request");
  }
  if (!context.device_active) {
    return absl::PermissionDeniedError("device_signature: not the account's active device");
  }
  if (!VerifyDeviceSignature(context.device_public_key_spki,
                             ApprovalMessage(context.request.statement, *in.decision, in.challenge),
                             in.device_signature)) {
    return absl::PermissionDeniedError(
        "device_signature: does not verify over the request's statement, decision and "
        "challenge");
  }
  return absl::OkStatus();
}

absl::StatusOr<ApproveOutcome> Consent::AfterApproval(const AttemptResult& out,
                                                      const RequestRecord& request,
                                                      const RequestDecision& decision) {
  if (out.outcome == AttemptOutcome::kNoPin) {
    return absl::InternalError(absl::StrCat("account ", request.account_id, " has no PIN"));
  }
  if (auto s = RefusalOf(out, request); !s.ok()) return s;
  if (out.outcome == AttemptOutcome::kDone) {
    NotifyDecided(request, decision);
  } else {
    deps_.notifier->Notify(request.account_id);
  }
  switch (out.outcome) {
    case AttemptOutcome::kDone:
      CountOutcome(request.kind, "approved");
      return ApproveOutcome{.result = ApproveResult::kApproved, .state = RequestState::kApproved};
    case AttemptOutcome::kWrong:
      if (!out.blocked) {
        CountOutcome(request.kind, "pin_failed");
        return ApproveOutcome{.result = ApproveResult::kPinWrong,
                              .remaining_pin_attempts = config_.max_pin_failures - out.failures,
                              .state = RequestState::kPending};
      }
      Log(LogLevel::kWarning, "consent", "PIN blocked after wrong attempts",
          {{"account_id", request.account_id}});
      [[fallthrough]];
    default:
      // Blocked, now or before: the same answer whatever PIN came with the attempt.
      CountOutcome(request.kind, "blocked");
      return ApproveOutcome{.result = ApproveResult::kPinBlocked, .state = RequestState::kDenied};
  }
}

void Consent::NotifyDecided(const RequestRecord& request, const RequestDecision& decision) {
  // As stored: PostgreSQL keeps microseconds (Now() is truncated already).
  auto event = std::make_shared<AccountEvent>(
      AccountEvent{.kind = AccountEvent::Kind::kRequestDecided,
                   .request = {.request_id = request.request_id,
                               .account_id = request.account_id,
                               .kind = request.kind,
                               .state = decision.state,
                               .decided_at = TruncateToMicros(decision.decided_at),
                               .decided_by_device = decision.device_id,
                               .sad = decision.sad}});
  if (decision.sad_expires_at) {
    event->request.sad_expires_at = TruncateToMicros(*decision.sad_expires_at);
  }
  deps_.notifier->Notify(request.account_id, std::move(event));
}

absl::Status Consent::RequireOpen(const RequestRecord& request, RequestState state) const {
  switch (state) {
    case RequestState::kPending:
      return absl::OkStatus();
    case RequestState::kExpired:
      CountOutcome(request.kind, "expired");
      return absl::FailedPreconditionError("request_id: expired");
    case RequestState::kCancelled:
      return absl::FailedPreconditionError("request_id: cancelled (the device was replaced)");
    case RequestState::kApproved:
    case RequestState::kDenied:
      break;
  }
  return absl::FailedPreconditionError("request_id: already decided");
}

absl::Status Consent::RefusalOf(const AttemptResult& out, const RequestRecord& request) const {
  switch (out.outcome) {
    case AttemptOutcome::kChallengeInvalid:
      return absl::PermissionDeniedError(kChallengeRefusal);
    case AttemptOutcome::kNotPending: {
      RequestRecord now_stored = request;
      now_stored.state = out.request_state;
      now_stored.expires_at = out.request_expires_at;
      absl::Status s = RequireOpen(now_stored, EffectiveState(now_stored, Now()));
      return s.ok() ? absl::FailedPreconditionError("request_id: expired") : s;
    }
    default:
      return absl::OkStatus();
  }
}

}  // namespace qsign::consent

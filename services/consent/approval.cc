// The consent app's answer to a request: device signature, then decision and PIN attempts.

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

absl::StatusOr<ApproveOutcome> Consent::Approve(const ApproveInput& in, const ClientInfo& client) {
  if (auto s = ValidateRequestId(in.request_id); !s.ok()) return s;
  if (auto s = ValidateDeviceId(in.device_id); !s.ok()) return s;
  if (!in.decision.has_value()) {
    return absl::InvalidArgumentError("decision: APPROVE or DENY");
  }
  if (in.device_signature.empty()) {
    return absl::InvalidArgumentError("device_signature: required");
  }
  const bool approve = *in.decision == Decision::kApprove;
  if (approve && in.pin.empty()) return absl::InvalidArgumentError("pin: required to approve");

  // 1. The request belongs to the device's account (one query brings request, device and PIN).
  const absl::Status not_found = absl::NotFoundError("request_id: no such request");
  auto context = deps_.store->GetApprovalContext(in.request_id, in.device_id);
  if (!context.ok()) {
    return context.status().code() == absl::StatusCode::kNotFound ? not_found : context.status();
  }
  const RequestRecord* request = &context->request;
  if (context->device_account_id != request->account_id) return not_found;

  // 2. Signed by the account's active device, over the statement as we stored it.
  const std::string actor = absl::StrCat("device:", in.device_id);
  if (!context->device_active) {
    return absl::PermissionDeniedError("device_signature: not the account's active device");
  }
  if (!VerifyDeviceSignature(context->device_public_key_spki,
                             DecisionMessage(request->statement, *in.decision),
                             in.device_signature)) {
    return absl::PermissionDeniedError(
        "device_signature: does not verify over the request's statement and decision");
  }

  // 3. Still open.
  const absl::Time now = Now();
  switch (EffectiveState(*request, now)) {
    case RequestState::kPending:
      break;
    case RequestState::kExpired:
      CountOutcome(request->kind, "expired");
      return absl::FailedPreconditionError("request_id: expired");
    case RequestState::kCancelled:
      return absl::FailedPreconditionError("request_id: cancelled (the device was replaced)");
    case RequestState::kApproved:
    case RequestState::kDenied:
      return absl::FailedPreconditionError("request_id: already decided");
  }
  const std::string action = request->kind == RequestKind::kSign ? "sign" : "login";

  if (!approve) {
    if (auto s = deps_.store->DecideRequest(
            in.request_id, request->account_id,
            {.state = RequestState::kDenied, .device_id = in.device_id, .decided_at = now},
            auth::AuditEventOf(actor, absl::StrCat(action, ".deny"), in.request_id, client));
        !s.ok()) {
      return s;
    }
    deps_.notifier->Notify(request->account_id);
    CountOutcome(request->kind, "denied");
    return ApproveOutcome{.result = ApproveResult::kDenied, .state = RequestState::kDenied};
  }

  // 4. The PIN.
  const std::optional<PinRecord>& pin = context->pin;
  if (!pin.has_value()) {
    return absl::InternalError(absl::StrCat("account ", request->account_id, " has no PIN"));
  }
  if (pin->blocked) {
    absl::Status s = deps_.store->DecideRequest(
        in.request_id, request->account_id,
        {.state = RequestState::kDenied, .device_id = in.device_id, .decided_at = now},
        auth::AuditEventOf(actor, absl::StrCat(action, ".approve"), in.request_id, client,
                           "pin_blocked"));
    if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition) return s;
    deps_.notifier->Notify(request->account_id);
    CountOutcome(request->kind, "blocked");
    return ApproveOutcome{.result = ApproveResult::kPinBlocked, .state = RequestState::kDenied};
  }
  auto correct = deps_.pins->Verify(in.pin.value(), pin->verifier);
  if (!correct.ok()) return correct.status();
  if (!*correct) {
    auto failure = deps_.store->RecordPinFailure(
        request->account_id, in.request_id, config_.max_pin_failures, now,
        auth::AuditEventOf(actor, absl::StrCat(action, ".approve"), in.request_id, client,
                           "pin_wrong"));
    if (!failure.ok()) return failure.status();
    deps_.notifier->Notify(request->account_id);
    if (failure->blocked) {
      Log(LogLevel::kWarning, "consent", "PIN blocked after wrong attempts",
          {{"account_id", request->account_id}});
      CountOutcome(request->kind, "blocked");
      auto after = deps_.store->GetRequest(in.request_id);
      if (!after.ok()) return after.status();
      return ApproveOutcome{.result = ApproveResult::kPinBlocked,
                            .state = EffectiveState(*after, now)};
    }
    CountOutcome(request->kind, "pin_failed");
    return ApproveOutcome{.result = ApproveResult::kPinWrong,
                          .remaining_pin_attempts = config_.max_pin_failures - failure->failures,
                          .state = RequestState::kPending};
  }

  // 5. Approved: for a sign request, the SAD bound to exactly the stored hashes.
  RequestDecision decision{.state = RequestState::kApproved,
                           .device_id = in.device_id,
                           .decided_at = now,
                           .reset_pin_verifier = pin->verifier};
  std::string details;
  if (request->kind == RequestKind::kSign) {
    if (auto s = MintSad(in.request_id, *request, now, &decision, &details); !s.ok()) return s;
  }
  absl::Status s =
      deps_.store->DecideRequest(in.request_id, request->account_id, decision,
                                 auth::AuditEventOf(actor, absl::StrCat(action, ".approve"),
                                                    in.request_id, client, "ok", details));
  if (!s.ok()) return s;
  deps_.notifier->Notify(request->account_id);
  CountOutcome(request->kind, "approved");
  return ApproveOutcome{.result = ApproveResult::kApproved, .state = RequestState::kApproved};
}

}  // namespace qsign::consent

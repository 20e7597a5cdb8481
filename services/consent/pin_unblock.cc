// The PIN after enrolment: the user's own change (old PIN counted as an attempt), an operator's
// reset after re-proofing, and the new PIN the user then sets on the app. The officer never sees
// or types a PIN.

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {

absl::StatusOr<absl::Time> Consent::UnblockPin(const Caller& caller, std::string_view account_id,
                                               std::string_view note, const ClientInfo& client) {
  if (auto s = RequireOperator(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(account_id); !s.ok()) return s;
  if (auto s = ValidateText(note, "note", 0, 500); !s.ok()) return s;
  const absl::Time now = Now();
  auto proofed = deps_.identity->LastProofedAt(account_id);
  if (!proofed.ok()) return proofed.status();
  if (!proofed->has_value() || **proofed < now - config_.reproof_window) {
    return absl::FailedPreconditionError(
        "account_id: re-proof first (Identity.ProofIdentity within the last hour)");
  }
  auto device = deps_.store->GetActiveDevice(account_id);
  if (!device.ok()) return device.status();
  if (!device->has_value()) {
    return absl::FailedPreconditionError("account_id: the account has no active consent app");
  }
  const absl::Time until = now + config_.pin_reset_window;
  absl::Status s =
      deps_.store->OpenPinReset(account_id, until, now,
                                auth::AuditEventOf(auth::ActorName(caller), "pin.unblock",
                                                   account_id, client, "ok", std::string(note)));
  if (s.code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError("account_id: the account has no PIN");
  }
  if (!s.ok()) return s;
  return until;
}

absl::StatusOr<PinAttempt> Consent::StartPinOperation(const PinOperationInput& in, PinOperation op,
                                                      std::string* new_verifier) {
  if (auto s = ValidateDeviceId(in.device_id); !s.ok()) return s;
  const absl::Time now = Now();
  if (auto s =
          approve_limiter_.Acquire(in.device_id, now, "too many PIN attempts from this device");
      !s.ok()) {
    return s;
  }
  if (auto s = ValidateApprovalChallenge(in.challenge); !s.ok()) return s;
  if (in.device_signature.empty()) {
    return absl::InvalidArgumentError("device_signature: required");
  }
  if (auto s = ValidateNewPin(in.new_pin.value(), "new_pin"); !s.ok()) return s;
  auto device = deps_.store->GetDevice(in.device_id);
  const absl::Status denied =
      absl::PermissionDeniedError("device_signature: not the account's active device");
  if (!device.ok()) {
    return device.status().code() == absl::StatusCode::kNotFound ? denied : device.status();
  }
  if (!device->active) return denied;
  if (!VerifyDeviceSignature(device->public_key_spki,
                             PinOperationMessage(op, in.device_id, in.challenge),
                             in.device_signature)) {
    return absl::PermissionDeniedError(
        "device_signature: does not verify over the PIN operation and challenge");
  }
  // Hashed before the attempt: the PIN row stays locked only for the check.
  auto verifier = deps_.pins->Hash(in.new_pin.value());
  if (!verifier.ok()) return verifier.status();
  *new_verifier = *std::move(verifier);
  return PinAttempt{.account_id = device->account_id,
                    .device_id = in.device_id,
                    .challenge_sha256 = Sha256(in.challenge),
                    .purpose = ChallengePurpose::kPin,
                    .max_failures = config_.max_pin_failures,
                    .now = now};
}

absl::StatusOr<ChangePinOutcome> Consent::ChangePin(const PinOperationInput& in,
                                                    const ClientInfo& client) {
  if (in.old_pin.empty()) return absl::InvalidArgumentError("old_pin: required");
  std::string verifier;
  auto attempt = StartPinOperation(in, PinOperation::kChange, &verifier);
  if (!attempt.ok()) return attempt.status();
  auto out = deps_.store->ChangePin(
      *attempt, [&](const std::string& stored) { return CheckPin(in.old_pin, stored); }, verifier,
      auth::AuditEventOf(absl::StrCat("device:", in.device_id), "pin.change", attempt->account_id,
                         client, "ok"));
  if (!out.ok()) return out.status();
  switch (out->outcome) {
    case AttemptOutcome::kChallengeInvalid:
      return absl::PermissionDeniedError(kChallengeRefusal);
    case AttemptOutcome::kNoPin:
      return absl::InternalError(absl::StrCat("account ", attempt->account_id, " has no PIN"));
    case AttemptOutcome::kDone:
      return ChangePinOutcome{.result = ChangePinResult::kChanged};
    case AttemptOutcome::kWrong:
      if (!out->blocked) {
        return ChangePinOutcome{.result = ChangePinResult::kPinWrong,
                                .remaining_pin_attempts = config_.max_pin_failures - out->failures};
      }
      break;
    default:
      break;
  }
  return ChangePinOutcome{.result = ChangePinResult::kPinBlocked};
}

absl::Status Consent::ResetPin(const PinOperationInput& in, const ClientInfo& client) {
  std::string verifier;
  auto attempt = StartPinOperation(in, PinOperation::kReset, &verifier);
  if (!attempt.ok()) return attempt.status();
  auto out =
      deps_.store->ResetPin(*attempt, verifier,
                            auth::AuditEventOf(absl::StrCat("device:", in.device_id), "pin.reset",
                                               attempt->account_id, client, "ok"));
  if (!out.ok()) return out.status();
  switch (out->outcome) {
    case AttemptOutcome::kChallengeInvalid:
      return absl::PermissionDeniedError(kChallengeRefusal);
    case AttemptOutcome::kDone:
      deps_.notifier->Notify(attempt->account_id);
      return absl::OkStatus();
    default:
      return absl::FailedPreconditionError(
          "device_id: no PIN reset open for the account (a registration officer re-proofs you "
          "and unblocks the PIN first)");
  }
}

}  // namespace qsign::consent

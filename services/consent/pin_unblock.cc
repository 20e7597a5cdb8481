// An operator sets a new PIN after re-proofing, ending a PIN block.

#include "absl/status/status.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {
namespace {

absl::Status RequireOperator(const Caller& caller) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: an operator credential is required");
  }
  if (caller.kind != CallerKind::kOperator) {
    return absl::PermissionDeniedError("only operators may call this");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Consent::UnblockPin(const Caller& caller, std::string_view account_id,
                                 const SecretString& new_pin, std::string_view note,
                                 const ClientInfo& client) {
  if (auto s = RequireOperator(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(account_id); !s.ok()) return s;
  if (auto s = ValidateNewPin(new_pin.value(), "new_pin"); !s.ok()) return s;
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
  auto verifier = deps_.pins->Hash(new_pin.value());
  if (!verifier.ok()) return verifier.status();
  absl::Status s =
      deps_.store->SetPin(account_id, *verifier, now,
                          auth::AuditEventOf(auth::ActorName(caller), "pin.unblock", account_id,
                                             client, "ok", std::string(note)));
  if (s.code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError("account_id: the account has no PIN");
  }
  return s;
}

}  // namespace qsign::consent

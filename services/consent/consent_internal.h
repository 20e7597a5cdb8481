// Helpers shared by the consent service's workflow files (enrolment.cc, watch.cc, approval.cc,
// requests.cc, authorization.cc, devices.cc, pin_unblock.cc, account_audit.cc). Not part of the
// service's interface: only services/consent/*.cc include it.
#ifndef QSIGN_SERVICES_CONSENT_CONSENT_INTERNAL_H_
#define QSIGN_SERVICES_CONSENT_CONSENT_INTERNAL_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/auth/audit_event.h"
#include "common/db/audit.h"
#include "consent/statement.h"
#include "services/consent/consent.h"

namespace qsign::consent {

inline constexpr std::string_view kDevicePrefix = "dev-";
inline constexpr std::string_view kRequestPrefix = "req-";
// GetApprovalChallenge's challenges: random bytes, signed inside the approval or PIN message.
inline constexpr int kApprovalChallengeBytes = 32;
// What every attempt with a challenge that is not (or no longer) valid is told.
inline constexpr char kChallengeRefusal[] =
    "challenge: not issued to this device for this, used before or expired; get a new one "
    "(GetApprovalChallenge)";

// INVALID_ARGUMENT unless `challenge` has the length GetApprovalChallenge gives.
absl::Status ValidateApprovalChallenge(std::string_view challenge);

// `prefix` and 32 random lowercase hex digits.
absl::StatusOr<std::string> NewId(std::string_view prefix);

absl::Status ValidateDeviceId(std::string_view id);
absl::Status ValidateRequestId(std::string_view id);
absl::Status ValidateAccountId(std::string_view id);

// UNAUTHENTICATED without credentials, PERMISSION_DENIED for anyone but an operator.
absl::Status RequireOperator(const Caller& caller);
// UTF-8 without control characters, `min_chars` to `max_chars` characters; errors name `field`.
absl::Status ValidateText(std::string_view value, std::string_view field, int min_chars,
                          int max_chars);

// INVALID_ARGUMENT unless `spki` is a P-256 SubjectPublicKeyInfo (DER).
absl::Status ValidateDeviceKey(std::string_view spki);
// ECDSA P-256 over SHA-256(message) with the device key; the signature DER encoded or the raw
// 64-byte r||s (WebCrypto's encoding).
bool VerifyDeviceSignature(std::string_view spki, std::string_view message,
                           std::string_view signature);

absl::Status RequireService(const Caller& caller);
// Who a request belongs to: "user:<account id>" or "service:<client id>".
std::string RequesterOf(const Caller& caller);
// The metrics label of a request kind.
std::string KindLabel(RequestKind kind);

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_CONSENT_INTERNAL_H_

// Renewing a qualified certificate inside its renewal window: a new key, the same subject.
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/strings.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {

absl::StatusOr<CertView> Lifecycle::Renew(const Caller& caller, const RenewInput& in) {
  if (caller.kind != CallerKind::kUser) {
    return absl::PermissionDeniedError("Renew: the account holder only, with a fresh session");
  }
  if (auto s = ValidateRequestId(in.client_request_id, "client_request_id"); !s.ok()) return s;
  if (auto s = ValidateRequestId(in.certificate_id, "certificate_id"); !s.ok()) return s;
  if (in.key_type.has_value() && *in.key_type != hsm::KeyType::kEcP256 &&
      *in.key_type != hsm::KeyType::kRsa3072) {
    return absl::InvalidArgumentError(
        "key_algorithm: EC_P256 or RSA_3072 (unset: as the certificate renewed)");
  }
  if (auto s = CheckFresh(caller); !s.ok()) return s;

  auto old = store_->GetCertificate(in.certificate_id);
  if (!old.ok() || old->account_id != caller.id) {
    if (!old.ok() && old.status().code() != absl::StatusCode::kNotFound) return old.status();
    return absl::NotFoundError(
        absl::StrCat("certificate_id: no certificate ", Echo(in.certificate_id)));
  }
  const hsm::KeyType type = in.key_type.value_or(old->key_type);
  const std::string fingerprint =
      absl::StrCat("renew of=", old->certificate_id, " key=", Av(hsm::KeyTypeName(type)));
  auto retry = AnswerRetry(caller, in.client_request_id, fingerprint, "renewal");
  if (!retry.ok()) return retry.status();
  if (retry->has_value()) return **std::move(retry);

  if (old->kind != CertKind::kQualified) {
    return absl::FailedPreconditionError("certificate_id: not a qualified certificate");
  }
  if (old->state == CertState::kRevoked) {
    return absl::FailedPreconditionError(
        absl::StrCat("certificate_id: revoked at ", TimeText(*old->revoked_at),
                     "; a revoked certificate is not renewed: use Issue"));
  }
  if (old->state != CertState::kIssued) {
    return absl::FailedPreconditionError("certificate_id: not issued");
  }
  const absl::Time now_exact = clock_->Now();
  const absl::Time opens = old->not_after - config_.renew_window;
  if (now_exact >= old->not_after) {
    return absl::FailedPreconditionError(absl::StrCat("certificate expired at ",
                                                      TimeText(old->not_after),
                                                      ": an expired certificate is not renewed, "
                                                      "use Issue"));
  }
  if (now_exact < opens) {
    return absl::FailedPreconditionError(absl::StrCat(
        "renewal opens at ", TimeText(opens), " (", absl::FormatDuration(config_.renew_window),
        " before the certificate expires at ", TimeText(old->not_after), ")"));
  }
  if (auto s = CheckContractAccepted(caller.id); !s.ok()) return s;

  const absl::Time now = Now();
  CertRecord intent =
      QualifiedIntent(caller.id, type, in.client_request_id, fingerprint, old->subject, now);
  intent.renewal_of = old->certificate_id;
  return RecordIntentAndComplete(
      intent, {.no_active_qualified = false, .now = now, .stale_after = config_.stale_intent},
      "certificate.renew.intent", fingerprint, in.client_address, caller);
}

}  // namespace qsign::lifecycle

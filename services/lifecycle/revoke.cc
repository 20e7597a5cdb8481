// Revoking one certificate, or all of an account's (with its devices and sessions).
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {

std::string_view RevocationReasonName(int reason) {
  switch (reason) {
    case 0:
      return "unspecified";
    case 1:
      return "keyCompromise";
    case 2:
      return "cACompromise";
    case 3:
      return "affiliationChanged";
    case 4:
      return "superseded";
    case 5:
      return "cessationOfOperation";
    case 6:
      return "certificateHold";
    case 8:
      return "removeFromCRL";
    case 9:
      return "privilegeWithdrawn";
    case 10:
      return "aACompromise";
  }
  return "unknown";
}

absl::Status ValidateRevocationReason(int reason, CallerKind caller) {
  switch (reason) {
    case 0:
    case 1:
    case 3:
    case 4:
    case 5:
      return absl::OkStatus();
    case 9:
      if (caller == CallerKind::kOperator) return absl::OkStatus();
      return absl::PermissionDeniedError("reason: privilegeWithdrawn is for operators only");
    case 2:
      return absl::InvalidArgumentError("reason: cACompromise is not for end-entity certificates");
    case 6:
      return absl::InvalidArgumentError(
          "reason: certificateHold is not accepted (qualified certificates are never suspended)");
    case 8:
      return absl::InvalidArgumentError("reason: removeFromCRL is for delta CRLs only");
    case 10:
      return absl::InvalidArgumentError("reason: aACompromise is for attribute certificates only");
  }
  return absl::InvalidArgumentError(absl::StrCat("reason: unknown value ", reason));
}

namespace {

// A second revocation's answer: when and why the certificate was revoked.
absl::Status AlreadyRevoked(const CertRecord& record) {
  return absl::FailedPreconditionError(
      absl::StrCat("certificate: already revoked at ", TimeText(*record.revoked_at), " (",
                   Av(RevocationReasonName(record.revocation_reason)), ")"));
}

}  // namespace

absl::StatusOr<CertView> Lifecycle::Revoke(const Caller& caller, const RevokeInput& in) {
  if (caller.kind == CallerKind::kService) {
    return absl::PermissionDeniedError("Revoke: the account holder or an operator");
  }
  if (in.certificate_id.empty() == in.serial_hex.empty()) {
    return absl::InvalidArgumentError("certificate: set exactly one of certificate_id, serial_hex");
  }
  if (!in.serial_hex.empty() &&
      (in.serial_hex.size() > 64 ||
       in.serial_hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)) {
    return absl::InvalidArgumentError("serial_hex: hex digits only, no separators");
  }
  if (auto s = ValidateRevocationReason(in.reason, caller.kind); !s.ok()) return s;
  if (auto s = CheckFresh(caller); !s.ok()) return s;

  auto record = in.certificate_id.empty()
                    ? store_->GetBySerial(absl::AsciiStrToUpper(in.serial_hex))
                    : store_->GetCertificate(in.certificate_id);
  const bool not_found = !record.ok() && record.status().code() == absl::StatusCode::kNotFound;
  if (!record.ok() && !not_found) return record.status();
  // Another account's certificate does not exist as far as a user can tell.
  if (not_found || (caller.kind == CallerKind::kUser && record->account_id != caller.id) ||
      record->state == CertState::kPending || record->state == CertState::kAbandoned) {
    return absl::NotFoundError("certificate: no such certificate");
  }
  if (record->kind != CertKind::kQualified) {
    return absl::FailedPreconditionError(
        "certificate: a device certificate; it is revoked by RevokeAll or a new enrolment");
  }
  if (record->state == CertState::kRevoked) {
    // Finish what an interrupted revocation left.
    if (auto s = DestroyKey(*record); !s.ok()) return s;
    return AlreadyRevoked(*record);
  }
  auto revoked = store_->MarkRevoked(
      record->certificate_id, in.reason, Now(),
      Audit(caller, "certificate.revoke", record->serial_hex,
            absl::StrCat("certificate_id=", record->certificate_id, " account=", record->account_id,
                         " reason=", Av(RevocationReasonName(in.reason)),
                         " client_address=", in.client_address)));
  status_source_.Changed();
  if (revoked.status().code() == absl::StatusCode::kFailedPrecondition) {
    // Revoked concurrently: answer as for a second revocation.
    auto again = store_->GetCertificate(record->certificate_id);
    if (!again.ok()) return again.status();
    if (again->state == CertState::kRevoked) {
      return AlreadyRevoked(*again);
    }
    return revoked.status();
  }
  if (!revoked.ok()) return revoked.status();
  CountRevoked(revoked->ca_name, RevocationReasonName(in.reason));
  if (auto s = IssueCrl(revoked->ca_name); !s.ok()) {
    // OCSP already answers revoked; the scheduled CRL picks it up.
    Log(LogLevel::kError, "lifecycle", "CRL after revocation failed", {{"status", s.ToString()}});
  }
  if (auto s = DestroyKey(*revoked); !s.ok()) {
    Log(LogLevel::kError, "lifecycle", "key destruction after revocation failed",
        {{"certificate_id", revoked->certificate_id}, {"status", s.ToString()}});
    return absl::UnavailableError(
        "certificate revoked, but destroying its key failed: call Revoke again to finish");
  }
  revoked->key_destroyed = true;
  return View(*std::move(revoked));
}

absl::StatusOr<RevokeAllResult> Lifecycle::RevokeAll(const Caller& caller,
                                                     std::string_view account_id, int reason,
                                                     std::string_view client_address) {
  if (caller.kind == CallerKind::kService) {
    return absl::PermissionDeniedError("RevokeAll: the account holder or an operator");
  }
  if (auto s = ValidateRevocationReason(reason, caller.kind); !s.ok()) return s;
  if (auto s = CheckFresh(caller); !s.ok()) return s;
  auto account = ResolveAccount(caller, account_id);
  if (!account.ok()) return account.status();
  if (caller.kind == CallerKind::kUser) {
    if (auto exists = identity_->GetAccount(*account); !exists.ok()) return exists.status();
  }
  const absl::Time now = Now();
  auto job = store_->StartRevokeAll(*account, reason, now,
                                    Audit(caller, "account.revoke_all.start", *account,
                                          absl::StrCat("reason=", Av(RevocationReasonName(reason)),
                                                       " client_address=", Av(client_address))));
  if (!job.ok()) return job.status();

  RevokeAllResult result;
  std::set<std::string> touched_cas;
  auto certs = store_->ListCertificates(*account);
  if (!certs.ok()) return certs.status();
  absl::Status first_error;
  for (CertRecord& c : *certs) {
    if (c.state == CertState::kIssued) {
      auto revoked = store_->MarkRevoked(
          c.certificate_id, reason, now,
          Audit(caller, "certificate.revoke", c.serial_hex,
                absl::StrCat("certificate_id=", c.certificate_id,
                             " revoke_all reason=", Av(RevocationReasonName(reason)))));
      status_source_.Changed();
      if (revoked.ok()) {
        CountRevoked(revoked->ca_name, RevocationReasonName(reason));
        touched_cas.insert(revoked->ca_name);
        c = *revoked;
        result.revoked.push_back(View(*revoked));
      } else if (revoked.status().code() != absl::StatusCode::kFailedPrecondition) {
        if (first_error.ok()) first_error = revoked.status();
        continue;
      }
    } else if (c.state == CertState::kPending) {
      if (auto s = store_->MarkAbandoned(
              c.certificate_id, now,
              Audit(caller, "certificate.abandon", c.serial_hex, "revoke_all"));
          !s.ok()) {
        if (first_error.ok()) first_error = s;
        continue;
      }
      c.state = CertState::kAbandoned;
    }
    if (c.state == CertState::kRevoked || c.state == CertState::kAbandoned) {
      if (auto s = DestroyKey(c); !s.ok() && first_error.ok()) first_error = s;
    }
  }
  for (const std::string& ca : touched_cas) {
    if (auto s = IssueCrl(ca); !s.ok()) {
      Log(LogLevel::kError, "lifecycle", "CRL after revoke-all failed", {{"status", s.ToString()}});
    }
  }
  if (!first_error.ok()) return first_error;

  auto devices = consent_->DeactivateDevices(*account, "revoke-all");
  if (!devices.ok()) return devices.status();
  result.devices_deactivated = *devices;
  auto sessions = identity_->RevokeSessions(*account, client_address);
  if (!sessions.ok()) return sessions.status();
  result.sessions_ended = *sessions;
  if (auto s = store_->FinishRevokeAll(*job, Now(),
                                       absl::StrCat("certificates=", result.revoked.size(),
                                                    " devices=", result.devices_deactivated,
                                                    " sessions=", result.sessions_ended));
      !s.ok()) {
    return s;
  }
  return result;
}

}  // namespace qsign::lifecycle

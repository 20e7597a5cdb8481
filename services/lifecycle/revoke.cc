// Revoking one certificate, or all of an account's (with its devices and sessions).
#include <functional>
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
    // Finish what an interrupted revocation left (the sweeper would, too).
    if (auto s = DestroyKey(*record); !s.ok()) return s;
    return AlreadyRevoked(*record);
  }
  // A FAILED_PRECONDITION from the store below means the certificate was revoked concurrently
  // (by a retry or a revoke-all): answer as for a second revocation.
  auto revoked_meanwhile = [&](absl::Status refused) -> absl::Status {
    auto again = store_->GetCertificate(record->certificate_id);
    if (!again.ok()) return again.status();
    if (again->state == CertState::kRevoked) return AlreadyRevoked(*again);
    return refused;
  };
  // 0. The request, recorded: whatever fails below, the sweeper finishes it.
  const std::string details = absl::StrCat(
      "certificate_id=", record->certificate_id, " account=", record->account_id,
      " reason=", Av(RevocationReasonName(in.reason)), " client_address=", Av(in.client_address));
  if (auto s = store_->RequestRevocation(
          RevocationRequest{.certificate_id = record->certificate_id,
                            .reason = in.reason,
                            .requested_by = auth::ActorName(caller),
                            .client_address = std::string(in.client_address),
                            .requested_at = Now()},
          Audit(caller, "certificate.revoke.request", record->serial_hex, details));
      !s.ok()) {
    if (s.code() != absl::StatusCode::kFailedPrecondition) return s;
    return revoked_meanwhile(s);
  }
  auto revoked = FinishRevocation(*record, in.reason,
                                  Audit(caller, "certificate.revoke", record->serial_hex, details));
  if (revoked.status().code() == absl::StatusCode::kFailedPrecondition) {
    return revoked_meanwhile(revoked.status());
  }
  if (!revoked.ok()) return revoked.status();
  return View(*std::move(revoked));
}

absl::StatusOr<CertRecord> Lifecycle::FinishRevocation(const CertRecord& record, int reason,
                                                       db::AuditEvent audit) {
  // 1. Disabled at the signer first: a certificate marked revoked never has a key that signs.
  if (auto s = signer_->DisableCredential(record.certificate_id);
      !s.ok() && s.code() != absl::StatusCode::kNotFound) {
    Log(LogLevel::kError, "lifecycle", "disabling the credential before revocation failed",
        {{"certificate_id", record.certificate_id}, {"status", s.ToString()}});
    if (auto r = store_->RecordRevocationFailure(record.certificate_id, s.ToString()); !r.ok()) {
      return r;
    }
    return absl::UnavailableError(
        "certificate: not revoked yet, the signer could not disable its key now; the revocation "
        "is recorded and finished in the background (or call Revoke again)");
  }
  // 2. Revoked, with its audit record; the request finished in the same transaction. Until this
  // commits the certificate is GOOD with a disabled key: the request makes the sweeper finish it.
  auto revoked = store_->MarkRevoked(record.certificate_id, reason, Now(), std::move(audit));
  status_source_.Changed();
  if (!revoked.ok()) {
    if (revoked.status().code() != absl::StatusCode::kFailedPrecondition) {
      if (auto r =
              store_->RecordRevocationFailure(record.certificate_id, revoked.status().ToString());
          !r.ok()) {
        Log(LogLevel::kError, "lifecycle", "recording a revocation failure failed",
            {{"certificate_id", record.certificate_id}, {"status", r.ToString()}});
      }
    }
    return revoked.status();
  }
  CountRevoked(revoked->ca_name, RevocationReasonName(reason));
  if (auto s = IssueCrl(revoked->ca_name); !s.ok()) {
    // OCSP already answers revoked; the scheduled CRL picks it up.
    Log(LogLevel::kError, "lifecycle", "CRL after revocation failed", {{"status", s.ToString()}});
  }
  // 3. The key destroyed. It is disabled already; if this fails the sweeper destroys it.
  if (auto s = DestroyKey(*revoked); !s.ok()) {
    Log(LogLevel::kError, "lifecycle",
        "key destruction after revocation failed; the sweeper "
        "retries",
        {{"certificate_id", revoked->certificate_id}, {"status", s.ToString()}});
  } else {
    revoked->key_destroyed = true;
  }
  return revoked;
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
  auto job =
      store_->StartRevokeAllJob(RevokeAllJob{.account_id = *account,
                                             .reason = reason,
                                             .requested_by = auth::ActorName(caller),
                                             .client_address = std::string(client_address),
                                             .created_at = now},
                                Audit(caller, "account.revoke_all.start", *account,
                                      absl::StrCat("reason=", Av(RevocationReasonName(reason)),
                                                   " client_address=", Av(client_address))));
  if (!job.ok()) return job.status();
  auto result = RunRevokeAllJob(job->first, caller);
  if (!result.ok()) return result.status();
  auto state = store_->GetRevokeAllJob(result->job_id);
  if (!state.ok()) return state.status();
  // The answer waits for what stops the account acting at once; the rest may follow.
  if (!state->devices_done || !state->sessions_done) {
    return absl::UnavailableError(
        absl::StrCat("revoke-all: recorded as job ", result->job_id, ", but ",
                     !state->devices_done ? "the consent app could not be deactivated"
                                          : "the sessions could not be ended",
                     " yet; it is retried in the background, or call RevokeAll again"));
  }
  return result;
}

absl::StatusOr<RevokeAllResult> Lifecycle::RunRevokeAllJob(const RevokeAllJob& job,
                                                           const Caller& actor) {
  RevokeAllResult result{.job_id = job.id};
  absl::Status first_error;
  auto failed = [&](absl::Status s) {
    if (first_error.ok()) first_error = std::move(s);
  };
  const std::string& account = job.account_id;
  const std::string reason_name(RevocationReasonName(job.reason));
  // One step that ends things at a peer, unless done; false when the peer failed.
  auto counted_step = [&](bool done, RevokeAllStep step,
                          const std::function<absl::StatusOr<int>()>& run,
                          int* count) -> absl::StatusOr<bool> {
    if (done) return true;
    auto n = run();
    if (!n.ok()) {
      failed(n.status());
      return false;
    }
    if (auto s = store_->RecordRevokeAllStep(job.id, step, *n, Now()); !s.ok()) return s;
    *count = *n;
    return true;
  };
  // 1. What lets the account act at once: the phone, then the sessions.
  auto devices_done = counted_step(
      job.devices_done, RevokeAllStep::kDevices,
      [&] { return consent_->DeactivateDevices(account, "revoke-all"); },
      &result.devices_deactivated);
  if (!devices_done.ok()) return devices_done.status();
  auto sessions_done = counted_step(
      job.sessions_done, RevokeAllStep::kSessions,
      [&] { return identity_->RevokeSessions(account, job.client_address); },
      &result.sessions_ended);
  if (!sessions_done.ok()) return sessions_done.status();

  // 2. Every certificate: a qualified one's credential disabled at the signer before the
  // certificate is marked revoked; device certificates revoked; pending intents abandoned.
  bool certificates_done = job.certificates_done;
  if (!certificates_done) {
    auto certs = store_->ListCertificates(account);
    if (!certs.ok()) return certs.status();
    std::set<std::string> touched_cas;
    bool all = true;
    for (CertRecord& c : *certs) {
      if (c.state == CertState::kIssued) {
        if (c.kind == CertKind::kQualified) {
          if (auto s = signer_->DisableCredential(c.certificate_id);
              !s.ok() && s.code() != absl::StatusCode::kNotFound) {
            failed(s);
            all = false;
            continue;
          }
        }
        auto revoked = store_->MarkRevoked(
            c.certificate_id, job.reason, Now(),
            Audit(actor, "certificate.revoke", c.serial_hex,
                  absl::StrCat("certificate_id=", c.certificate_id, " revoke_all job=", job.id,
                               " reason=", Av(reason_name))));
        status_source_.Changed();
        if (revoked.ok()) {
          CountRevoked(revoked->ca_name, reason_name);
          touched_cas.insert(revoked->ca_name);
          result.revoked.push_back(View(*std::move(revoked)));
        } else if (revoked.status().code() != absl::StatusCode::kFailedPrecondition) {
          return revoked.status();
        }
      } else if (c.state == CertState::kPending) {
        if (auto s = store_->MarkAbandoned(c.certificate_id, Now(),
                                           Audit(actor, "certificate.abandon", c.serial_hex,
                                                 absl::StrCat("revoke_all job=", job.id)));
            !s.ok()) {
          return s;
        }
      }
    }
    for (const std::string& ca : touched_cas) {
      if (auto s = IssueCrl(ca); !s.ok()) {
        Log(LogLevel::kError, "lifecycle", "CRL after revoke-all failed",
            {{"status", s.ToString()}});
      }
    }
    if (all) {
      if (auto s = store_->RecordRevokeAllStep(job.id, RevokeAllStep::kCertificates,
                                               static_cast<int>(result.revoked.size()), Now());
          !s.ok()) {
        return s;
      }
      certificates_done = true;
    }
  }

  // 3. The keys: every revoked or abandoned qualified certificate's.
  bool keys_done = job.keys_done;
  if (certificates_done && !keys_done) {
    auto certs = store_->ListCertificates(account);
    if (!certs.ok()) return certs.status();
    bool all = true;
    for (const CertRecord& c : *certs) {
      if (c.state != CertState::kRevoked && c.state != CertState::kAbandoned) continue;
      if (auto s = DestroyKey(c); !s.ok()) {
        failed(s);
        all = false;
      }
    }
    if (all) {
      if (auto s = store_->RecordRevokeAllStep(job.id, RevokeAllStep::kKeys, 0, Now()); !s.ok()) {
        return s;
      }
      keys_done = true;
    }
  }

  if (*devices_done && *sessions_done && certificates_done && keys_done) {
    auto done = store_->GetRevokeAllJob(job.id);
    if (!done.ok()) return done.status();
    if (auto s = store_->FinishRevokeAllJob(
            job.id, Now(),
            Audit(actor, "account.revoke_all.done", account,
                  absl::StrCat("job=", job.id, " requested_by=", Av(job.requested_by),
                               " certificates=", done->certificates_revoked, " devices=",
                               done->devices_deactivated, " sessions=", done->sessions_ended)));
        !s.ok()) {
      return s;
    }
    result.complete = true;
  } else {
    Log(LogLevel::kWarning, "lifecycle", "revoke-all job unfinished; the scheduler resumes it",
        {{"job", std::to_string(job.id)}, {"status", first_error.ToString()}});
    if (auto s = store_->RecordRevokeAllFailure(job.id, first_error.ToString(), Now()); !s.ok()) {
      return s;
    }
  }
  return result;
}

}  // namespace qsign::lifecycle

// Issuing a qualified certificate: checks, the recorded intent, the key from the signer and
// the certificate from the qualified CA; and the operator approval a legal person's one needs.
#include <openssl/x509.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/strings.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {
namespace {

absl::Status ValidateLegalPerson(const LegalPersonSubject& lp) {
  const size_t len = Utf8Length(lp.organization_name);
  if (len < 1 || len > 64) {
    return absl::InvalidArgumentError("legal_person.organization_name: 1..64 characters");
  }
  return ValidatePib(lp.pib, "legal_person.pib");
}

std::string SerialBytes(std::string_view hex) { return absl::HexStringToBytes(Av(hex)); }

// Key generation fails now and then for reasons a retry fixes (an HSM that lost a race, a signer
// restarting): the signer answers UNAVAILABLE then, having kept nothing. CreateKey is idempotent
// on the credential id (a key it made is found again, a leftover without a record is replaced),
// so retrying is safe; a citizen's Issue must not fail for it.
constexpr int kCreateKeyAttempts = 4;

absl::StatusOr<std::string> CreateKeyRetrying(SignerClient& signer, const CertRecord& record) {
  absl::StatusOr<std::string> spki;
  for (int attempt = 1;; ++attempt) {
    spki = signer.CreateKey(record.certificate_id, record.account_id, record.key_type);
    const absl::StatusCode code = spki.status().code();
    const bool transient =
        code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded;
    if (spki.ok() || !transient || attempt == kCreateKeyAttempts) return spki;
    Log(LogLevel::kWarning, "lifecycle", "key generation failed; retrying",
        {{"certificate_id", record.certificate_id},
         {"attempt", std::to_string(attempt)},
         {"status", spki.status().ToString()}});
    absl::SleepFor(absl::Milliseconds(25 * attempt));
  }
}

}  // namespace

absl::StatusOr<CertView> Lifecycle::Issue(const Caller& caller, const IssueInput& in) {
  if (caller.kind != CallerKind::kUser) {
    return absl::PermissionDeniedError("Issue: the account holder only, with a fresh session");
  }
  if (auto s = ValidateRequestId(in.client_request_id, "client_request_id"); !s.ok()) return s;
  const hsm::KeyType type = in.key_type.value_or(hsm::KeyType::kEcP256);
  if (type != hsm::KeyType::kEcP256 && type != hsm::KeyType::kRsa3072) {
    return absl::InvalidArgumentError("key_algorithm: EC_P256 (the default) or RSA_3072");
  }
  if (in.legal_person.has_value()) {
    if (auto s = ValidateLegalPerson(*in.legal_person); !s.ok()) return s;
  }
  if (auto s = CheckFresh(caller); !s.ok()) return s;
  std::string fingerprint = absl::StrCat("issue key=", Av(hsm::KeyTypeName(type)));
  if (in.legal_person.has_value()) {
    absl::StrAppend(&fingerprint, " o=", in.legal_person->organization_name,
                    " pib=", in.legal_person->pib);
  }

  auto retry = AnswerRetry(caller, in.client_request_id, fingerprint, "issuance");
  if (!retry.ok()) return retry.status();
  if (retry->has_value()) return **std::move(retry);

  auto account = identity_->GetAccount(caller.id);
  if (!account.ok()) return account.status();
  if (account->assurance_level != AssuranceLevel::kHigh) {
    return absl::FailedPreconditionError(
        "identity not proofed: a registration-authority operator must verify your identity "
        "(assurance level HIGH) before a qualified certificate is issued");
  }
  if (auto s = CheckContractAccepted(caller.id); !s.ok()) return s;
  if (in.legal_person.has_value()) {
    auto approval = store_->FindApproval(caller.id, in.legal_person->pib);
    if (!approval.ok()) return approval.status();
    if (!approval->has_value() ||
        (*approval)->legal_person.organization_name != in.legal_person->organization_name) {
      return absl::FailedPreconditionError(
          absl::StrCat("legal_person: no operator approval for acting on behalf of ",
                       in.legal_person->organization_name, " (PIB ", in.legal_person->pib, ")"));
    }
  }

  const absl::Time now = Now();
  const CertRecord intent = QualifiedIntent(caller.id, type, in.client_request_id, fingerprint,
                                            {.given_name = account->given_name,
                                             .surname = account->surname,
                                             .national_id = account->national_id,
                                             .email = account->certificate_email,
                                             .legal_person = in.legal_person},
                                            now);
  return RecordIntentAndComplete(
      intent, {.no_active_qualified = true, .now = now, .stale_after = config_.stale_intent},
      "certificate.issue.intent", fingerprint, in.client_address, caller);
}

absl::StatusOr<std::optional<CertView>> Lifecycle::AnswerRetry(const Caller& caller,
                                                               std::string_view client_request_id,
                                                               std::string_view fingerprint,
                                                               std::string_view what) {
  auto certs = store_->ListCertificates(caller.id);
  if (!certs.ok()) return certs.status();
  for (CertRecord& c : *certs) {
    if (c.client_request_id != client_request_id) continue;
    if (c.request_fingerprint != fingerprint) {
      return absl::InvalidArgumentError(
          "client_request_id: used before with other parameters; use a new id");
    }
    if (c.state == CertState::kAbandoned) {
      return absl::FailedPreconditionError(
          absl::StrCat("client_request_id: that ", Av(what), " was abandoned; use a new id"));
    }
    auto done = Complete(std::move(c), caller);
    if (!done.ok()) return done.status();
    return *std::move(done);
  }
  return std::nullopt;
}

absl::StatusOr<CertView> Lifecycle::RecordIntentAndComplete(
    const CertRecord& intent, const IntentChecks& checks, std::string action,
    std::string_view fingerprint, std::string_view client_address, const Caller& caller) {
  IntentChecks checked = checks;
  // What the user's login authorised: void once a revoke-all ran after it.
  if (caller.kind == CallerKind::kUser) checked.authorized_at = caller.session.auth_time;
  auto created = store_->CreateIntent(
      intent, checked,
      Audit(caller, std::move(action), intent.serial_hex,
            absl::StrCat("certificate_id=", intent.certificate_id, " ", Av(fingerprint),
                         " client_address=", Av(client_address))));
  if (!created.ok()) return created.status();
  for (const CertRecord& abandoned : created->abandoned) {
    if (auto s = DestroyKey(abandoned); !s.ok()) {
      Log(LogLevel::kWarning, "lifecycle", "destroying an abandoned intent's key failed",
          {{"certificate_id", abandoned.certificate_id}, {"status", s.ToString()}});
    }
  }
  if (created->existed && created->record.request_fingerprint != fingerprint) {
    return absl::InvalidArgumentError(
        "client_request_id: used before with other parameters; use a new id");
  }
  return Complete(std::move(created->record), caller);
}

absl::StatusOr<CertView> Lifecycle::Complete(CertRecord record, const Caller& caller) {
  const Ca& ca = cas_->qualified();
  if (record.state == CertState::kPending) {
    // The signer's CreateKey is idempotent on the credential id: a retry finds the same key.
    auto spki = CreateKeyRetrying(*signer_, record);
    if (!spki.ok()) return spki.status();
    auto spec = QualifiedCertificateSpec(
        record.subject, *spki, SerialBytes(record.serial_hex), record.not_before,
        {.urls = cas_->UrlsFor(kQualifiedCa), .pds_url = config_.pds_url});
    if (!spec.ok()) return spec.status();
    spec->not_after = record.not_after;
    auto issued = IssueCertificate(ca.key(), ca.cert(), *spec);
    if (!issued.ok()) return issued.status();
    const std::string dn = NameText(X509_get_subject_name(issued->cert.get()));
    auto marked = store_->MarkIssued(
        record.certificate_id, issued->der, dn, Now(),
        Audit(
            caller, record.renewal_of.empty() ? "certificate.issue" : "certificate.renew",
            record.serial_hex,
            absl::StrCat(
                "certificate_id=", record.certificate_id, " not_after=", TimeText(record.not_after),
                record.renewal_of.empty() ? "" : absl::StrCat(" renews=", record.renewal_of))));
    if (marked.code() == absl::StatusCode::kFailedPrecondition) {
      // A concurrent retry stored it first, or a newer Issue or a revoke-all abandoned this
      // intent.
      auto now_stored = store_->GetCertificate(record.certificate_id);
      if (!now_stored.ok()) return now_stored.status();
      if (now_stored->state == CertState::kAbandoned) {
        // The key was made above, maybe after whoever abandoned the intent destroyed "its" key
        // (then nothing would again): destroyed here; the sweeper retries if this fails.
        if (auto s = signer_->DestroyKey(record.certificate_id, KeyEnd::kRevoked);
            !s.ok() && s.code() != absl::StatusCode::kNotFound) {
          Log(LogLevel::kWarning, "lifecycle", "destroying an abandoned issuance's key failed",
              {{"certificate_id", record.certificate_id}, {"status", s.ToString()}});
        }
        if (absl::StrContains(marked.message(), "revoke-all")) return marked;
        return absl::AbortedError("this issuance was abandoned by a newer request");
      }
      record = *std::move(now_stored);
    } else if (!marked.ok()) {
      return marked;
    } else {
      record.state = CertState::kIssued;
      record.certificate_der = issued->der;
      record.subject_dn = dn;
      CountIssued(record);
    }
  }
  if (record.state == CertState::kIssued && !record.attached) {
    std::vector<std::string> chain = {record.certificate_der};
    for (std::string& der : cas_->ChainDer(ca)) chain.push_back(std::move(der));
    if (auto s = signer_->SetCertificate(record.certificate_id, chain); !s.ok()) return s;
    if (auto s = store_->MarkAttached(record.certificate_id); !s.ok()) return s;
    record.attached = true;
  }
  if (record.state == CertState::kAbandoned) {
    return absl::FailedPreconditionError(
        "this issuance was abandoned; use a new client_request_id");
  }
  return View(std::move(record));
}

absl::StatusOr<LegalPersonApproval> Lifecycle::ApproveLegalPerson(
    const Caller& caller, std::string_view account_id, const LegalPersonSubject& legal_person,
    std::string_view note, std::string_view client_address) {
  if (caller.kind != CallerKind::kOperator) {
    return absl::PermissionDeniedError("ApproveLegalPerson: operators only");
  }
  if (auto s = ValidateLegalPerson(legal_person); !s.ok()) return s;
  auto account = ResolveAccount(caller, account_id);
  if (!account.ok()) return account.status();
  LegalPersonApproval approval{.approval_id = RandomId("lpa-"),
                               .account_id = *account,
                               .legal_person = legal_person,
                               .approved_by = caller.id,
                               .note = std::string(note),
                               .approved_at = Now()};
  if (auto s = store_->InsertApproval(
          approval,
          Audit(caller, "legal_person.approve", *account,
                absl::StrCat("o=", legal_person.organization_name, " pib=", legal_person.pib,
                             " note=", Av(note), " client_address=", Av(client_address))));
      !s.ok()) {
    return s;
  }
  return approval;
}

}  // namespace qsign::lifecycle

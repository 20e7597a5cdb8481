#include "services/lifecycle/lifecycle.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>

#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/ca/crl.h"
#include "services/lifecycle/ca/ossl.h"

namespace qsign::lifecycle {
namespace {

std::string TimeText(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string RandomId(std::string_view prefix) {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof(bytes));
  return absl::StrCat(
      Av(prefix), absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), 16)));
}

std::string ActorName(const Caller& c) {
  switch (c.kind) {
    case CallerKind::kUser:
      return absl::StrCat("account:", c.id);
    case CallerKind::kOperator:
      return absl::StrCat("operator:", c.id);
    case CallerKind::kService:
      return absl::StrCat("service:", c.id);
  }
  return c.id;
}

db::AuditEvent Audit(const Caller& caller, std::string action, std::string target,
                     std::string details = "") {
  return db::AuditEvent{.actor = ActorName(caller),
                        .action = std::move(action),
                        .target = std::move(target),
                        .client_address = caller.peer,
                        .outcome = "ok",
                        .details = std::move(details)};
}

size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) ++n;
  }
  return n;
}

absl::Status ValidateLegalPerson(const LegalPersonSubject& lp) {
  const size_t len = Utf8Length(lp.organization_name);
  if (len < 1 || len > 64) {
    return absl::InvalidArgumentError("legal_person.organization_name: 1..64 characters");
  }
  return ValidatePib(lp.pib, "legal_person.pib");
}

std::string SerialBytes(std::string_view hex) { return absl::HexStringToBytes(Av(hex)); }

bool IsP256Spki(std::string_view spki) {
  EvpPkeyPtr key = ParsePublicKey(spki);
  if (key == nullptr || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC) return false;
  char curve[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), "group", curve, sizeof(curve), &len) != 1) {
    return false;
  }
  return std::string_view(curve, len) == "prime256v1" || std::string_view(curve, len) == "P-256";
}

// Certificates issued, renewed and revoked, by CA (and key type or reason): a few per user per
// years, so the registry's lookup per event is fine.
void CountIssued(const CertRecord& r) {
  const bool renewal = !r.renewal_of.empty();
  metrics::Registry::Global().AddCounter(
      renewal ? "qsign_lifecycle_certificates_renewed_total"
              : "qsign_lifecycle_certificates_issued_total",
      renewal ? "Qualified certificates issued as renewals, by CA and key type."
              : "Certificates issued (not counting renewals), by CA and key type.",
      {{"ca", r.ca_name}, {"key_type", std::string(hsm::KeyTypeName(r.key_type))}});
}

void CountRevoked(std::string_view ca_name, std::string_view reason) {
  metrics::Registry::Global().AddCounter("qsign_lifecycle_certificates_revoked_total",
                                         "Certificates revoked, by CA and RFC 5280 reason.",
                                         {{"ca", std::string(ca_name)},
                                          {"reason", std::string(reason)}});
}

}  // namespace

absl::Status ValidateRequestId(std::string_view id, std::string_view field) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(Av(field), ": required"));
  if (id.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(Av(field), ": at most 64 characters"));
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat(Av(field), ": only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

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

Lifecycle::Lifecycle(const CaSet* cas, LifecycleStore* store, SignerClient* signer,
                     IdentityClient* identity, ConsentClient* consent,
                     const ContractRegistry* contracts, const Clock* clock, LifecycleConfig config)
    : cas_(cas),
      store_(store),
      signer_(signer),
      identity_(identity),
      consent_(consent),
      contracts_(contracts),
      clock_(clock),
      config_(std::move(config)),
      status_source_(store) {}

absl::Time Lifecycle::Now() const {
  // Certificates and CRLs carry whole seconds; so do the records about them.
  return absl::FromUnixSeconds(absl::ToUnixSeconds(clock_->Now()));
}

absl::Status Lifecycle::CheckFresh(const Caller& caller) const {
  if (caller.kind != CallerKind::kUser) return absl::OkStatus();
  if (clock_->Now() - caller.auth_time > config_.fresh_session) {
    return absl::FailedPreconditionError(
        absl::StrCat("log in again: this needs a login approved on the phone within the last ",
                     absl::FormatDuration(config_.fresh_session)));
  }
  return absl::OkStatus();
}

absl::Status Lifecycle::CheckContractAccepted(std::string_view account_id) {
  const ContractText& current = contracts_->current();
  auto accepted = store_->FindAcceptance(account_id, current.version);
  if (!accepted.ok()) return accepted.status();
  if (!accepted->has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("contract version ", current.version,
                                                      " not accepted: call AcceptContract first"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Lifecycle::ResolveAccount(const Caller& caller,
                                                      std::string_view account_id) {
  switch (caller.kind) {
    case CallerKind::kUser:
      if (!account_id.empty() && account_id != caller.id) {
        return absl::PermissionDeniedError("account_id: users leave it empty (their own account)");
      }
      return caller.id;
    case CallerKind::kOperator:
    case CallerKind::kService: {
      if (account_id.empty()) return absl::InvalidArgumentError("account_id: required");
      auto account = identity_->GetAccount(account_id);
      if (!account.ok()) return account.status();
      return std::string(account_id);
    }
  }
  return absl::InternalError("unknown caller kind");
}

CertView Lifecycle::View(CertRecord record) const {
  CertView v;
  const absl::Time now = clock_->Now();
  switch (record.state) {
    case CertState::kIssued:
      v.status = now < record.not_after ? CertStatusView::kActive : CertStatusView::kExpired;
      break;
    case CertState::kRevoked:
      v.status = CertStatusView::kRevoked;
      break;
    case CertState::kPending:
    case CertState::kAbandoned:
      v.status = CertStatusView::kPending;
      break;
  }
  if (const Ca* ca = cas_->Find(record.ca_name); ca != nullptr) {
    v.issuer_chain_der = cas_->ChainDer(*ca);
  }
  if (record.kind == CertKind::kQualified) {
    v.renew_opens_at = record.not_after - config_.renew_window;
  }
  v.record = std::move(record);
  return v;
}

absl::StatusOr<ContractText> Lifecycle::GetContract(std::string_view version) const {
  if (version.empty()) return contracts_->current();
  auto c = contracts_->Find(version);
  if (!c.ok()) return c.status();
  return **c;
}

absl::StatusOr<ContractAcceptance> Lifecycle::AcceptContract(const Caller& caller,
                                                             std::string_view version,
                                                             std::string_view text_sha256,
                                                             std::string_view client_address) {
  if (caller.kind != CallerKind::kUser) {
    return absl::PermissionDeniedError("AcceptContract: the account holder only");
  }
  if (version.empty()) return absl::InvalidArgumentError("version: required");
  auto contract = contracts_->Find(version);
  if (!contract.ok()) return contract.status();
  if ((*contract)->version != contracts_->current().version) {
    return absl::FailedPreconditionError(absl::StrCat("version: ", Av(version),
                                                      " is not the current contract; accept ",
                                                      contracts_->current().version));
  }
  if (text_sha256 != (*contract)->sha256) {
    return absl::InvalidArgumentError(absl::StrCat("text_sha256: not the SHA-256 of contract ",
                                                   Av(version),
                                                   " (accept exactly the text that was shown)"));
  }
  auto account = identity_->GetAccount(caller.id);
  if (!account.ok()) return account.status();
  const absl::Time now = Now();
  ContractAcceptance acceptance{
      .account_id = caller.id,
      .version = std::string(version),
      .text_sha256 = (*contract)->sha256,
      .accepted_at = now,
      .client_address = std::string(client_address.empty() ? caller.peer : client_address)};
  OutboxMessage mail{.kind = "contract",
                     .recipient = account->username,
                     .subject = absl::StrCat("Your qsign contract, version ", Av(version)),
                     .body = (*contract)->text,
                     .created_at = now};
  return store_->RecordAcceptance(
      acceptance, mail,
      Audit(caller, "contract.accept", caller.id,
            absl::StrCat("version=", Av(version), " client_address=", acceptance.client_address)));
}

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

  // A retry answers (and if need be finishes) the first attempt.
  auto certs = store_->ListCertificates(caller.id);
  if (!certs.ok()) return certs.status();
  for (CertRecord& c : *certs) {
    if (c.client_request_id != in.client_request_id) continue;
    if (c.request_fingerprint != fingerprint) {
      return absl::InvalidArgumentError(
          "client_request_id: used before with other parameters; use a new id");
    }
    if (c.state == CertState::kAbandoned) {
      return absl::FailedPreconditionError(
          "client_request_id: that issuance was abandoned; use a new id");
    }
    return Complete(std::move(c), caller);
  }

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
  const std::string serial = RandomSerial();
  CertRecord intent{.certificate_id = RandomId("qc-"),
                    .account_id = caller.id,
                    .kind = CertKind::kQualified,
                    .state = CertState::kPending,
                    .ca_name = std::string(kQualifiedCa),
                    .serial_hex = absl::AsciiStrToUpper(absl::BytesToHexString(serial)),
                    .key_type = type,
                    .client_request_id = in.client_request_id,
                    .request_fingerprint = fingerprint,
                    .subject = {.given_name = account->given_name,
                                .surname = account->surname,
                                .national_id = account->national_id,
                                .email = account->certificate_email,
                                .legal_person = in.legal_person},
                    .not_before = now,
                    .not_after = AddYears(now, 5),
                    .created_at = now};
  return RecordIntentAndComplete(
      intent, {.no_active_qualified = true, .now = now, .stale_after = config_.stale_intent},
      "certificate.issue.intent", fingerprint, in.client_address, caller);
}

absl::StatusOr<CertView> Lifecycle::RecordIntentAndComplete(
    const CertRecord& intent, const IntentChecks& checks, std::string action,
    std::string_view fingerprint, std::string_view client_address, const Caller& caller) {
  auto created = store_->CreateIntent(
      intent, checks,
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
    auto spki = signer_->CreateKey(record.certificate_id, record.account_id, record.key_type);
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
      // A concurrent retry stored it first, or a newer Issue abandoned this intent.
      auto now_stored = store_->GetCertificate(record.certificate_id);
      if (!now_stored.ok()) return now_stored.status();
      if (now_stored->state == CertState::kAbandoned) {
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
    return absl::NotFoundError(absl::StrCat("certificate_id: no certificate ", in.certificate_id));
  }
  const hsm::KeyType type = in.key_type.value_or(old->key_type);
  const std::string fingerprint =
      absl::StrCat("renew of=", old->certificate_id, " key=", Av(hsm::KeyTypeName(type)));
  auto certs = store_->ListCertificates(caller.id);
  if (!certs.ok()) return certs.status();
  for (CertRecord& c : *certs) {
    if (c.client_request_id != in.client_request_id) continue;
    if (c.request_fingerprint != fingerprint) {
      return absl::InvalidArgumentError(
          "client_request_id: used before with other parameters; use a new id");
    }
    if (c.state == CertState::kAbandoned) {
      return absl::FailedPreconditionError(
          "client_request_id: that renewal was abandoned; use a new id");
    }
    return Complete(std::move(c), caller);
  }

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
  const std::string serial = RandomSerial();
  CertRecord intent{.certificate_id = RandomId("qc-"),
                    .account_id = caller.id,
                    .kind = CertKind::kQualified,
                    .state = CertState::kPending,
                    .ca_name = std::string(kQualifiedCa),
                    .serial_hex = absl::AsciiStrToUpper(absl::BytesToHexString(serial)),
                    .key_type = type,
                    .client_request_id = in.client_request_id,
                    .request_fingerprint = fingerprint,
                    .renewal_of = old->certificate_id,
                    .subject = old->subject,
                    .not_before = now,
                    .not_after = AddYears(now, 5),
                    .created_at = now};
  return RecordIntentAndComplete(
      intent, {.no_active_qualified = false, .now = now, .stale_after = config_.stale_intent},
      "certificate.renew.intent", fingerprint, in.client_address, caller);
}

absl::Status Lifecycle::DestroyKey(const CertRecord& record) {
  if (record.kind != CertKind::kQualified || record.key_destroyed) return absl::OkStatus();
  auto s = signer_->DestroyKey(record.certificate_id);
  if (!s.ok() && s.code() != absl::StatusCode::kNotFound) return s;
  return store_->MarkKeyDestroyed(record.certificate_id);
}

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
    return absl::FailedPreconditionError(
        absl::StrCat("certificate: already revoked at ", TimeText(*record->revoked_at), " (",
                     Av(RevocationReasonName(record->revocation_reason)), ")"));
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
      return absl::FailedPreconditionError(
          absl::StrCat("certificate: already revoked at ", TimeText(*again->revoked_at), " (",
                       Av(RevocationReasonName(again->revocation_reason)), ")"));
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

absl::StatusOr<AccountStatus> Lifecycle::GetStatus(const Caller& caller,
                                                   std::string_view account_id) {
  auto account = ResolveAccount(caller, account_id);
  if (!account.ok()) return account.status();
  auto certs = store_->ListCertificates(*account);
  if (!certs.ok()) return certs.status();
  AccountStatus out;
  out.current_contract_version = contracts_->current().version;
  auto accepted = store_->LatestAcceptance(*account);
  if (!accepted.ok()) return accepted.status();
  if (accepted->has_value()) out.accepted_contract_version = (*accepted)->version;

  const absl::Time now = clock_->Now();
  const CertRecord* newest = nullptr;
  const CertRecord* active = nullptr;
  for (const CertRecord& c : *certs) {  // Newest first.
    if (c.kind != CertKind::kQualified ||
        (c.state != CertState::kIssued && c.state != CertState::kRevoked)) {
      continue;
    }
    if (newest == nullptr) newest = &c;
    if (active == nullptr && c.state == CertState::kIssued && now < c.not_after) active = &c;
  }
  if (active != nullptr) {
    out.state = AccountCertState::kActive;
    out.certificate = View(*active);
    out.valid_until = active->not_after;
    out.renew_opens_at = active->not_after - config_.renew_window;
    if (now >= *out.renew_opens_at) {
      auto successor = store_->FindRenewalOf(active->certificate_id);
      if (!successor.ok()) return successor.status();
      out.renewal_open = !successor->has_value();
    }
  } else if (newest != nullptr) {
    out.state = newest->state == CertState::kRevoked ? AccountCertState::kRevoked
                                                     : AccountCertState::kExpired;
    out.certificate = View(*newest);
  }
  return out;
}

absl::StatusOr<std::vector<CertView>> Lifecycle::ListCertificates(const Caller& caller,
                                                                  std::string_view account_id,
                                                                  bool include_device) {
  auto account = ResolveAccount(caller, account_id);
  if (!account.ok()) return account.status();
  auto certs = store_->ListCertificates(*account);
  if (!certs.ok()) return certs.status();
  std::vector<CertView> out;
  for (CertRecord& c : *certs) {
    if (c.state != CertState::kIssued && c.state != CertState::kRevoked) continue;
    if (c.kind == CertKind::kDevice && !include_device) continue;
    out.push_back(View(std::move(c)));
  }
  return out;
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

absl::StatusOr<CertView> Lifecycle::IssueDeviceCertificate(const Caller& caller,
                                                           std::string_view account_id,
                                                           std::string_view device_id,
                                                           std::string_view device_public_key,
                                                           std::string_view device_name) {
  if (caller.kind != CallerKind::kService || caller.id != config_.consent_client_id) {
    return absl::PermissionDeniedError("IssueDeviceCertificate: the consent service only");
  }
  if (auto s = ValidateRequestId(device_id, "device_id"); !s.ok()) return s;
  if (!IsP256Spki(device_public_key)) {
    return absl::InvalidArgumentError("device_public_key: a P-256 SubjectPublicKeyInfo (DER)");
  }
  if (Utf8Length(device_name) > 64) {
    return absl::InvalidArgumentError("device_name: at most 64 characters");
  }
  auto account = ResolveAccount(caller, account_id);
  if (!account.ok()) return account.status();
  auto existing = store_->FindDeviceCertificate(*account, device_id, device_public_key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) return View(**std::move(existing));

  const Ca& ca = cas_->device();
  const absl::Time now = Now();
  const std::string serial = RandomSerial();
  auto spec = DeviceCertificateSpec(std::string(device_name), std::string(device_id),
                                    cas_->config().country, std::string(device_public_key), serial,
                                    now, AddYears(now, config_.device_certificate_years),
                                    cas_->UrlsFor(kDeviceCa));
  if (!spec.ok()) return spec.status();
  auto issued = IssueCertificate(ca.key(), ca.cert(), *spec);
  if (!issued.ok()) return issued.status();
  CertRecord record{.certificate_id = RandomId("dc-"),
                    .account_id = *account,
                    .kind = CertKind::kDevice,
                    .state = CertState::kIssued,
                    .ca_name = std::string(kDeviceCa),
                    .serial_hex = SerialHex(issued->cert.get()),
                    .key_type = hsm::KeyType::kEcP256,
                    .device_id = std::string(device_id),
                    .device_name = std::string(device_name),
                    .device_public_key = std::string(device_public_key),
                    .certificate_der = issued->der,
                    .subject_dn = NameText(X509_get_subject_name(issued->cert.get())),
                    .not_before = spec->not_before,
                    .not_after = spec->not_after,
                    .created_at = now,
                    .attached = true,
                    .key_destroyed = true};  // No key of ours: it lives on the phone.
  auto superseded = store_->InsertDeviceCertificate(
      record, Audit(caller, "device_certificate.issue", record.serial_hex,
                    absl::StrCat("account=", *account, " device_id=", Av(device_id))));
  if (!superseded.ok()) return superseded.status();
  CountIssued(record);
  for (size_t i = 0; i < superseded->size(); ++i) {
    CountRevoked(kDeviceCa, RevocationReasonName(4));  // The new enrolment supersedes them.
  }
  if (!superseded->empty()) {
    status_source_.Changed();
    if (auto s = IssueCrl(kDeviceCa); !s.ok()) {
      Log(LogLevel::kError, "lifecycle", "CRL after device re-enrolment failed",
          {{"status", s.ToString()}});
    }
  }
  return View(std::move(record));
}

absl::Status Lifecycle::IssueCrl(std::string_view ca_name) {
  const Ca* ca = cas_->Find(ca_name);
  if (ca == nullptr || (ca_name != kRootCa && ca_name != kQualifiedCa && ca_name != kDeviceCa)) {
    return absl::NotFoundError(absl::StrCat("no CRL issuer ", Av(ca_name)));
  }
  auto snapshot = store_->NextCrl(ca_name);
  if (!snapshot.ok()) return snapshot.status();
  const absl::Time now = Now();
  CrlContents contents{.crl_number = snapshot->crl_number,
                       .this_update = now,
                       .next_update = now + config_.crl_validity,
                       .revoked = std::move(snapshot->revoked)};
  auto der = BuildCrl(*ca, contents);
  if (!der.ok()) return der.status();
  return store_->SaveCrl(ca_name, contents.crl_number, contents.this_update, contents.next_update,
                         *der);
}

absl::StatusOr<std::string> Lifecycle::CurrentCrl(std::string_view ca_name) {
  if (ca_name != kRootCa && ca_name != kQualifiedCa && ca_name != kDeviceCa) {
    return absl::NotFoundError(absl::StrCat("no CRL issuer ", Av(ca_name)));
  }
  auto fresh = [&](const std::optional<LifecycleStore::StoredCrl>& crl) {
    return crl.has_value() && clock_->Now() < crl->this_update + config_.crl_validity / 2;
  };
  auto latest = store_->LatestCrl(ca_name);
  if (!latest.ok()) return latest.status();
  if (fresh(*latest)) return (*latest)->der;
  absl::MutexLock lock(&crl_mu_);
  latest = store_->LatestCrl(ca_name);  // Another thread may have issued it meanwhile.
  if (!latest.ok()) return latest.status();
  if (fresh(*latest)) return (*latest)->der;
  if (auto s = IssueCrl(ca_name); !s.ok()) {
    // A CRL still within its validity is better than none.
    if (latest->has_value() && clock_->Now() < (*latest)->next_update) return (*latest)->der;
    return s;
  }
  latest = store_->LatestCrl(ca_name);
  if (!latest.ok()) return latest.status();
  if (!latest->has_value()) return absl::InternalError("CRL vanished");
  return (*latest)->der;
}

absl::StatusOr<int> Lifecycle::QueueRenewalReminders() {
  const absl::Time now = Now();
  auto due = store_->ListRenewalDue(now, config_.renew_window);
  if (!due.ok()) return due.status();
  int queued = 0;
  for (const CertRecord& c : *due) {
    auto successor = store_->FindRenewalOf(c.certificate_id);
    if (!successor.ok()) return successor.status();
    if (successor->has_value()) continue;
    auto account = identity_->GetAccount(c.account_id);
    if (!account.ok()) return account.status();
    OutboxMessage mail{
        .kind = "renewal_reminder",
        .recipient = account->username,
        .subject = "Your qualified certificate can be renewed now",
        .body = absl::StrCat("Your qualified certificate (serial ", c.serial_hex, ") expires at ",
                             TimeText(c.not_after),
                             ". You can renew it in the portal until then; the new certificate "
                             "has a new key and the old one stays valid until it expires.\n"),
        .created_at = now};
    auto q = store_->QueueReminder(c.certificate_id, mail);
    if (!q.ok()) return q.status();
    if (*q) ++queued;
  }
  return queued;
}

absl::StatusOr<Lifecycle::OutboxRun> Lifecycle::DeliverOutbox(Mailer& mailer, int max) {
  OutboxRun run;
  int64_t after = 0;
  while (run.sent + run.failed < max) {
    auto attempt = store_->DeliverNextOutbox(after, Now(), [&](const OutboxMessage& m) {
      return mailer.Send(m.recipient, m.subject, m.body);
    });
    if (!attempt.ok()) return attempt.status();
    if (!attempt->has_value()) break;
    after = (*attempt)->id;
    if ((*attempt)->result.ok()) {
      ++run.sent;
    } else {
      ++run.failed;
      Log(LogLevel::kWarning, "lifecycle", "outbox mail not delivered",
          {{"id", std::to_string(after)}, {"status", (*attempt)->result.ToString()}});
    }
  }
  return run;
}

absl::StatusOr<CertStatus> Lifecycle::StoreStatusSource::Status(std::string_view ca_name,
                                                                std::string_view serial_hex) {
  auto record = store_->FindIssued(ca_name, serial_hex);
  if (!record.ok()) return record.status();
  CertStatus out;
  if (!record->has_value()) return out;  // Unknown.
  if ((*record)->state == CertState::kRevoked) {
    out.kind = CertStatus::Kind::kRevoked;
    out.revoked_at = *(*record)->revoked_at;
    out.reason = (*record)->revocation_reason;
  } else {
    out.kind = CertStatus::Kind::kGood;
  }
  return out;
}

}  // namespace qsign::lifecycle

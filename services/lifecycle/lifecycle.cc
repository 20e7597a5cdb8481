#include "services/lifecycle/lifecycle.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::lifecycle {

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
  if (clock_->Now() - caller.session.auth_time > config_.fresh_session) {
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
    case CallerKind::kAnonymous:
      return absl::UnauthenticatedError("authorization: credentials required");
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

absl::Status Lifecycle::DestroyKey(const CertRecord& record, KeyEnd why,
                                   std::optional<db::AuditEvent> audit) {
  if (record.kind != CertKind::kQualified || record.key_destroyed) return absl::OkStatus();
  auto s = signer_->DestroyKey(record.certificate_id, why);
  if (!s.ok() && s.code() != absl::StatusCode::kNotFound) return s;
  return store_->MarkKeyDestroyed(record.certificate_id, audit, Now());
}

}  // namespace qsign::lifecycle

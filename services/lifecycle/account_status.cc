// What an account holds: its certificate state and its certificates.
#include <utility>

#include "absl/status/status.h"
#include "services/lifecycle/lifecycle.h"

namespace qsign::lifecycle {

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

}  // namespace qsign::lifecycle

// Revocation status for relying parties: CRLs (issued, kept fresh) and the OCSP source.
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "services/lifecycle/ca/crl.h"
#include "services/lifecycle/lifecycle.h"

namespace qsign::lifecycle {

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

// An account's audit trail as consent keeps it, for the registration office's console.

#include "absl/status/status.h"
#include "common/db/audit.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {

absl::StatusOr<db::AuditPage> Consent::ListAccountAudit(const Caller& caller,
                                                        std::string_view account_id, int page_size,
                                                        std::string_view page_token) {
  if (auto s = RequireOperator(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(account_id); !s.ok()) return s;
  auto size = db::AccountAuditPageSize(page_size, page_token);
  if (!size.ok()) return size.status();
  // Identity knows the accounts: an unknown one is NOT_FOUND, as from identity and lifecycle.
  if (auto proofed = deps_.identity->LastProofedAt(account_id); !proofed.ok()) {
    return proofed.status();
  }
  return deps_.store->ListAccountAudit(account_id, *size, page_token);
}

}  // namespace qsign::consent

// An account's audit trail as lifecycle keeps it, for the registration office's console.

#include "absl/status/status.h"
#include "common/db/audit.h"
#include "services/lifecycle/lifecycle.h"

namespace qsign::lifecycle {

absl::StatusOr<db::AuditPage> Lifecycle::ListAccountAudit(const Caller& caller,
                                                          std::string_view account_id,
                                                          int page_size,
                                                          std::string_view page_token) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: an operator credential is required");
  }
  if (caller.kind != CallerKind::kOperator) {
    return absl::PermissionDeniedError("ListAccountAudit: operators only");
  }
  auto size = db::AccountAuditPageSize(page_size, page_token);
  if (!size.ok()) return size.status();
  auto account = ResolveAccount(caller, account_id);
  if (!account.ok()) return account.status();
  return store_->ListAccountAudit(*account, *size, page_token);
}

}  // namespace qsign::lifecycle

// The account holder reads and accepts the current contract (mailed to them, audited).
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/strings.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {

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
    return absl::FailedPreconditionError(absl::StrCat("version: ", Echo(version),
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

}  // namespace qsign::lifecycle

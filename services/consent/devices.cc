// A service deactivates an account's devices (revoke-all).

#include "absl/status/status.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {

absl::StatusOr<Deactivation> Consent::DeactivateDevices(const Caller& caller,
                                                        std::string_view account_id,
                                                        std::string_view reason,
                                                        const ClientInfo& client) {
  if (auto s = RequireService(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(account_id); !s.ok()) return s;
  if (auto s = ValidateText(reason, "reason", 0, 500); !s.ok()) return s;
  auto out = deps_.store->DeactivateDevices(
      account_id, Now(),
      auth::AuditEventOf(auth::ActorName(caller), "device.deactivate_all", account_id, client, "ok",
                         std::string(reason)));
  if (!out.ok()) return out.status();
  deps_.notifier->Notify(account_id);
  return out;
}

}  // namespace qsign::consent

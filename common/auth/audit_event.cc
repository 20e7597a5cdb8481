#include "common/auth/audit_event.h"

#include <utility>

namespace qsign::auth {

db::AuditEvent AuditEventOf(std::string actor, std::string action, std::string_view target,
                            const ClientInfo& client, std::string outcome, std::string details) {
  return db::AuditEvent{.actor = std::move(actor),
                        .action = std::move(action),
                        .target = std::string(target),
                        .client_address = AddressOf(client),
                        .outcome = std::move(outcome),
                        .details = std::move(details)};
}

db::AuditEvent AuditEventOf(const Caller& caller, std::string action, std::string_view target,
                            const ClientInfo& client, std::string outcome, std::string details) {
  return AuditEventOf(ActorName(caller), std::move(action), target, client, std::move(outcome),
                      std::move(details));
}

}  // namespace qsign::auth

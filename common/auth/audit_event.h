// The audit record of an action (common/db/audit.h), built the same way by every service.
#ifndef QSIGN_COMMON_AUTH_AUDIT_EVENT_H_
#define QSIGN_COMMON_AUTH_AUDIT_EVENT_H_

#include <string>
#include <string_view>

#include "common/auth/caller.h"
#include "common/db/audit.h"

namespace qsign::auth {

// `action` on `target` by `actor`, from AddressOf(client).
db::AuditEvent AuditEventOf(std::string actor, std::string action, std::string_view target,
                            const ClientInfo& client, std::string outcome = "ok",
                            std::string details = "");

// The same with ActorName(caller) as the actor.
db::AuditEvent AuditEventOf(const Caller& caller, std::string action, std::string_view target,
                            const ClientInfo& client, std::string outcome = "ok",
                            std::string details = "");

}  // namespace qsign::auth

#endif  // QSIGN_COMMON_AUTH_AUDIT_EVENT_H_

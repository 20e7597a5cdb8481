// Helpers shared by the lifecycle service's workflow files (contract_acceptance.cc, issue.cc,
// renew.cc, revoke.cc, account_status.cc, device_certificates.cc, revocation_status.cc,
// outbox.cc). Not part of the service's interface: only services/lifecycle/*.cc include it.
#ifndef QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_INTERNAL_H_
#define QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_INTERNAL_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "common/auth/audit_event.h"
#include "common/db/audit.h"
#include "hsm/hsm.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_store.h"

namespace qsign::lifecycle {

// RFC 3339, whole seconds, UTC: how times read in messages and mail.
std::string TimeText(absl::Time t);
// `prefix` and 32 random hex digits.
std::string RandomId(std::string_view prefix);
// The audit record of an action by `caller` (outcome "ok"): auth::AuditEventOf from caller.peer.
db::AuditEvent Audit(const Caller& caller, std::string action, std::string target,
                     std::string details = "");
// Number of UTF-8 characters (bytes that do not continue a sequence).
size_t Utf8Length(std::string_view s);

// A pending qualified certificate of `account_id` (Issue and Renew alike): new id and serial,
// valid five years from `now`.
CertRecord QualifiedIntent(std::string account_id, hsm::KeyType key_type,
                           std::string client_request_id, std::string fingerprint,
                           NaturalPersonSubject subject, absl::Time now);

// Certificates issued, renewed and revoked, by CA (and key type or reason): a few per user per
// years, so the registry's lookup per event is fine.
void CountIssued(const CertRecord& r);
void CountRevoked(std::string_view ca_name, std::string_view reason);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_INTERNAL_H_

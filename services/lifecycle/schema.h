// The lifecycle service's PostgreSQL schema "lifecycle": CAs, CRLs, certificates, contract
// acceptances, legal-person approvals, the outbox and the audit log.
#ifndef QSIGN_SERVICES_LIFECYCLE_SCHEMA_H_
#define QSIGN_SERVICES_LIFECYCLE_SCHEMA_H_

#include <string_view>

#include "absl/status/status.h"
#include "common/db/pg.h"

namespace qsign::lifecycle {

inline constexpr std::string_view kSchema = "lifecycle";

// Applies the schema's migrations (every replica at start-up; qsign-ca init too).
absl::Status MigrateLifecycleSchema(db::Pool& pool);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_SCHEMA_H_

// An audit page (common/db/audit.h) as every service's ListAccountAudit answers it.
#ifndef QSIGN_COMMON_AUDIT_PROTO_H_
#define QSIGN_COMMON_AUDIT_PROTO_H_

#include "common/db/audit.h"
#include "qsign/v1/common.pb.h"

namespace qsign {

void ToProto(const db::AuditPage& page, qsign::v1::ListAccountAuditResponse* out);

}  // namespace qsign

#endif  // QSIGN_COMMON_AUDIT_PROTO_H_

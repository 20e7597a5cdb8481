// The one place where absl::Status becomes grpc::Status (the gRPC edge).
#ifndef QSIGN_COMMON_GRPC_STATUS_H_
#define QSIGN_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string_view>

#include "absl/status/status.h"

namespace qsign {

// Same code, same message, and the typed refusal (common/refusal.h), if any, in the status
// details. INTERNAL and UNKNOWN messages are replaced by a generic text (the detail is logged by
// the caller) so that internals never reach a client; other payloads never cross.
grpc::Status ToGrpcStatus(const absl::Status& status);

// What every RPC handler returns on failure: logs the full status when it is the server's fault
// (INTERNAL, UNKNOWN, UNAVAILABLE, DATA_LOSS) under `component` and `rpc`, then ToGrpcStatus.
grpc::Status LoggedReply(std::string_view component, std::string_view rpc,
                         const absl::Status& status);

// The reverse, for clients of other qsign services: the refusal in the details comes back as
// the status's payload (GetRefusal).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace qsign

#endif  // QSIGN_COMMON_GRPC_STATUS_H_

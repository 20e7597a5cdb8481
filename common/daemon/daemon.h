// The qsign process: runs the stacks whose sections are in its config (qsignd: any of them;
// qsign-<name>: exactly one), on one gRPC listener, until SIGINT/SIGTERM. A service in this
// process is called on this process's own listener, one elsewhere at peers.<name>.
#ifndef QSIGN_COMMON_DAEMON_DAEMON_H_
#define QSIGN_COMMON_DAEMON_DAEMON_H_

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/daemon/stack.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign::daemon {

// Builds the stacks of a validated config (LoadConfig) from `factories`, with the shared HSM,
// PostgreSQL pool, transport, health probes and metrics; serves until SIGINT or SIGTERM arrives,
// then finishes in-flight calls within observability.grace_seconds. The caller blocks
// SIGINT/SIGTERM in every thread first (Main does). `component` names the log lines.
absl::Status Run(const config::v1::ServerConfig& config, std::string_view component,
                 absl::Span<const StackFactory> factories);

// main() of qsignd (every factory: any sections) and of qsign-<svc> (one factory: the config
// has exactly its section): --config=FILE, --check_config. Returns the process exit code.
int Main(int argc, char** argv, std::string_view program, std::vector<StackFactory> factories);

}  // namespace qsign::daemon

#endif  // QSIGN_COMMON_DAEMON_DAEMON_H_

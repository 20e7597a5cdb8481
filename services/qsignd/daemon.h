// The qsign process: runs the services whose sections are in its config (qsignd: any of them;
// qsign-<name>: exactly one), on one gRPC listener, until SIGINT/SIGTERM. A service in this
// process is called on this process's own listener, one elsewhere at peers.<name>.
#ifndef QSIGN_SERVICES_QSIGND_DAEMON_H_
#define QSIGN_SERVICES_QSIGND_DAEMON_H_

#include <string_view>

#include "absl/status/status.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign {

// Builds the service stacks of a validated config (LoadConfig), serves until SIGINT or SIGTERM
// arrives, then finishes in-flight calls within observability.grace_seconds. The caller blocks
// SIGINT/SIGTERM in every thread first (DaemonMain does). `component` names the log lines.
absl::Status RunDaemon(const config::v1::ServerConfig& config, std::string_view component);

// main() of qsignd (`only` empty: any sections) and of qsign-<only> (exactly the `only`
// section): --config=FILE, --check_config. Returns the process exit code.
int DaemonMain(int argc, char** argv, std::string_view program, std::string_view only);

}  // namespace qsign

#endif  // QSIGN_SERVICES_QSIGND_DAEMON_H_

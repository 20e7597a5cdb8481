// The real qsignd (or a qsign-<service> binary) in a test: its config written to a file in the
// test's temp dir, the process started on it, its JSON log read back. The one place tests know
// how these binaries are launched.
#ifndef QSIGN_TESTS_TESTING_QSIGND_PROCESS_H_
#define QSIGN_TESTS_TESTING_QSIGND_PROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsm/hsm.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign::testing {

// A laptop config: insecure_dev, gRPC on 127.0.0.1:0, keys created on the first start, the given
// database, and the sections of `services` ("signer", "consent", ...) with exactly their roles'
// tokens from `tokens` (ServiceEnv::TokensConfig). The signer trusts the SAD key pinned at
// SadPublicKeyPath(dir); with consent in the same config consent writes it there on its first
// start, else the test makes it first (ServiceEnv::SadPublicKeyFile). Further fields are the
// caller's to set.
config::v1::ServerConfig LaptopConfig(std::string_view conninfo,
                                      const hsm::Pkcs11TokensConfig& tokens,
                                      const std::vector<std::string>& services,
                                      const std::string& dir);
// Replaces the hsm.token entries of `config` with those its sections need, from `tokens` (after
// a test added or removed a section).
void SetTokens(config::v1::ServerConfig& config, const hsm::Pkcs11TokensConfig& tokens);

// Writes `config` (text format) to `path`.
void WriteConfig(const config::v1::ServerConfig& config, const std::string& path);

class QsigndProcess {
 public:
  // Writes `config` to <dir>/<name>.textproto, runs `binary --config=<that>` with stderr in
  // <dir>/<name>.log and waits up to `ready_within` for its "ready" line.
  static absl::StatusOr<std::unique_ptr<QsigndProcess>> Start(
      const std::string& binary, const config::v1::ServerConfig& config, const std::string& dir,
      const std::string& name = "qsignd", absl::Duration ready_within = absl::Seconds(60));
  ~QsigndProcess();  // SIGKILL if still running.
  QsigndProcess(const QsigndProcess&) = delete;
  QsigndProcess& operator=(const QsigndProcess&) = delete;

  // The gRPC port from the "ready" line (0 when no gRPC service runs) and its loopback target.
  int port() const { return port_; }
  std::string target() const;
  // The port of a listener the log names: "serving /metrics", "OCSP/CRL listener" (http_port),
  // "CSC gateway listener" (http_port); 0 when not found.
  int LoggedPort(std::string_view msg, std::string_view field = "port") const;
  std::string log() const;
  const std::string& config_path() const { return config_path_; }

  void Terminate();
  // The wait status once it has exited, or nullopt if still running after `timeout`.
  std::optional<int> WaitExit(absl::Duration timeout);
  // SIGTERM, then the wait status.
  int Stop() { return SignalAndWait(SIGTERM); }
  // kill -9 (a crash, an OOM kill, a node lost), then the wait status.
  int Kill() { return SignalAndWait(SIGKILL); }
  pid_t pid() const { return pid_; }

 private:
  QsigndProcess(pid_t pid, std::string config_path, std::string log_path)
      : pid_(pid), config_path_(std::move(config_path)), log_path_(std::move(log_path)) {}
  absl::Status WaitReady(absl::Duration within);
  int SignalAndWait(int signal);

  pid_t pid_;
  const std::string config_path_;
  const std::string log_path_;
  int port_ = 0;
};

// `binary --config=<path> --check_config`: exit code and stdout+stderr.
struct CheckConfigResult {
  int exit_code = -1;
  std::string output;
};
CheckConfigResult CheckConfig(const std::string& binary, const std::string& config_path);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_QSIGND_PROCESS_H_

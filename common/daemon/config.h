// The one config file of every qsign process (proto/qsign/config/v1/config.proto), loaded the
// same way by qsignd and the per-service binaries: parsed as text format, defaults applied, then
// validated, reading every file it names (secrets through ReadSecretFile, then wiped). An error
// names the field path and the rule ("consent.pin_pepper_file: required"), never a secret.
#ifndef QSIGN_COMMON_DAEMON_CONFIG_H_
#define QSIGN_COMMON_DAEMON_CONFIG_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/http/server.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign {

// Reads `path`, parses it, applies the defaults and validates. A parse error reads
// "<path>:<line>:<column>: <what>", a validation error "<field path>: <rule>".
absl::StatusOr<config::v1::ServerConfig> LoadConfig(std::string_view path);

// The steps of LoadConfig, for tests and for configs built in code.
absl::StatusOr<config::v1::ServerConfig> ParseConfigText(std::string_view text,
                                                         std::string_view source_name);
void ApplyConfigDefaults(config::v1::ServerConfig& config);
absl::Status ValidateConfig(const config::v1::ServerConfig& config);

// The service sections present, in the order signer, consent, identity, lifecycle, gateway.
std::vector<std::string> ConfiguredServices(const config::v1::ServerConfig& config);

// The HSM token roles the sections of this config need (common/daemon/token_roles.h), in the
// table's order: exactly these have an hsm.token.
std::vector<std::string_view> NeededTokenRoles(const config::v1::ServerConfig& config);

// Whether `service` ("signer", "identity", "consent", "lifecycle") runs in this process, and the
// peers.<service> target otherwise ("" when not configured).
bool RunsHere(const config::v1::ServerConfig& config, std::string_view service);
std::string PeerTarget(const config::v1::ServerConfig& config, std::string_view service);

// "host:port" or "[v6]:port" -> {host, port}; port 0..65535, host non-empty (common/http).
using http::ParseHostPort;

}  // namespace qsign

#endif  // QSIGN_COMMON_DAEMON_CONFIG_H_

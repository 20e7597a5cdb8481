// Small helpers every services/<svc>/stack.cc uses to build its service from the config.
#ifndef QSIGN_COMMON_DAEMON_STACK_HELPERS_H_
#define QSIGN_COMMON_DAEMON_STACK_HELPERS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/auth/credential_table.h"
#include "common/auth/session_key_cache.h"
#include "common/client_address.h"
#include "common/clock.h"
#include "common/http/server.h"
#include "common/secret.h"
#include "hsm/hsm.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign::daemon {

// `status` with the config field it comes from in front: "consent.sad_key_id: <message>".
absl::Status Field(std::string_view field, const absl::Status& status);

// A secret file's content, or empty when no file is named.
absl::StatusOr<SecretString> OptionalSecret(const std::string& path);

// The credential table in `path` (operators_file, services_file), empty when no file is named;
// an error names `field`.
absl::StatusOr<auth::CredentialTable> OptionalCredentialTable(const std::string& path,
                                                              std::string_view field);

// Users' session tokens verified locally (common/auth): identity's keys and revocation feed read
// through `feed` every session_verification.refresh_interval_ms, Bearer calls UNAVAILABLE once
// the copy is older than max_staleness_ms. `component` labels the metric ("consent").
absl::StatusOr<std::unique_ptr<auth::SessionKeyCache>> NewSessionKeyCache(
    const config::v1::ServerConfig& config, const Clock* clock, auth::SessionFeed* feed,
    std::string component);

// The config's http section (defaults applied) as every HTTP listener of the process takes it.
http::ConnectionLimits HttpLimitsOf(const config::v1::ServerConfig& config);

// The tokens of the config's hsm section, for hsm::OpenPkcs11Tokens.
hsm::Pkcs11TokensConfig HsmTokensConfig(const config::v1::Hsm& hsm);

// The client_address section: whose header names the end user's address (common/client_address.h).
absl::StatusOr<ClientAddressResolver> ClientAddressResolverOf(
    const config::v1::ServerConfig& config);
// The same for another ClientAddress message (e.g. web.client_address); errors name `field`.
absl::StatusOr<ClientAddressResolver> ClientAddressResolverOf(const config::v1::ClientAddress& c,
                                                              std::string_view field);

// The key exists in the HSM, or is made there (EC P-256) when create_missing_keys allows it.
// `what` names it in the log line and the error ("SAD key").
absl::StatusOr<hsm::PublicKey> EnsureKey(hsm::Hsm* hsm, const config::v1::ServerConfig& config,
                                         const std::string& key_id, std::string_view what);

}  // namespace qsign::daemon

#endif  // QSIGN_COMMON_DAEMON_STACK_HELPERS_H_

#include "common/daemon/stack_helpers.h"

#include "absl/strings/str_cat.h"
#include "common/daemon/stack.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::daemon {

absl::Status Field(std::string_view field, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(Av(field), ": ", status.message()));
}

absl::StatusOr<SecretString> OptionalSecret(const std::string& path) {
  if (path.empty()) return SecretString();
  return ReadSecretFile(path);
}

absl::StatusOr<auth::CredentialTable> OptionalCredentialTable(const std::string& path,
                                                              std::string_view field) {
  if (path.empty()) return auth::CredentialTable();
  auto table = auth::CredentialTable::FromFile(path);
  if (!table.ok()) return Field(field, table.status());
  return table;
}

absl::StatusOr<std::unique_ptr<auth::SessionKeyCache>> NewSessionKeyCache(
    const config::v1::ServerConfig& config, const Clock* clock, auth::SessionFeed* feed,
    std::string component) {
  const config::v1::SessionVerification& v = config.session_verification();
  auto cache =
      auth::SessionKeyCache::New(feed, clock,
                                 {.refresh_interval = absl::Milliseconds(v.refresh_interval_ms()),
                                  .max_staleness = absl::Milliseconds(v.max_staleness_ms()),
                                  .component = std::move(component)});
  if (!cache.ok()) return Field("session_verification", cache.status());
  return cache;
}

hsm::Pkcs11TokensConfig HsmTokensConfig(const config::v1::Hsm& hsm) {
  hsm::Pkcs11TokensConfig tokens{.module_path = hsm.module()};
  if (hsm.has_serialize_object_creation()) {
    tokens.serialize_object_creation = hsm.serialize_object_creation();
  }
  for (const config::v1::HsmToken& t : hsm.token()) {
    tokens.tokens.push_back(
        {.role = t.role(),
         .token_label = t.label(),
         .pin_file = t.pin_file(),
         .session_pool_size = t.sessions() > 0 ? t.sessions() : hsm.sessions()});
  }
  return tokens;
}

absl::StatusOr<hsm::Hsm*> StackEnv::Token(std::string_view role) const {
  hsm::Hsm* hsm = tokens == nullptr ? nullptr : tokens->Get(role);
  if (hsm == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("hsm.token: no token for role \"", Av(role), "\" in this process"));
  }
  return hsm;
}

absl::StatusOr<hsm::PublicKey> EnsureKey(hsm::Hsm* hsm, const config::v1::ServerConfig& config,
                                         const std::string& key_id, std::string_view what) {
  auto pub = hsm->GetPublicKey(key_id);
  if (pub.status().code() == absl::StatusCode::kNotFound && config.create_missing_keys()) {
    Log(LogLevel::kInfo, "hsm", absl::StrCat("generating ", Av(what), " in the HSM"),
        {{"key_id", key_id}});
    pub = hsm->GenerateKeyPair(key_id, hsm::KeyType::kEcP256);
  }
  if (!pub.ok()) {
    return absl::Status(pub.status().code(),
                        absl::StrCat(Av(what), " ", key_id, ": ", pub.status().message()));
  }
  return pub;
}

absl::StatusOr<ClientAddressResolver> ClientAddressResolverOf(
    const config::v1::ServerConfig& config) {
  return ClientAddressResolverOf(config.client_address(), "client_address");
}

absl::StatusOr<ClientAddressResolver> ClientAddressResolverOf(const config::v1::ClientAddress& c,
                                                              std::string_view field) {
  return ClientAddressResolver::New(
      c.header(), std::vector<std::string>(c.trusted_proxies().begin(), c.trusted_proxies().end()),
      field);
}

http::ConnectionLimits HttpLimitsOf(const config::v1::ServerConfig& config) {
  const config::v1::HttpLimits& h = config.http();
  http::ConnectionLimits limits;
  if (h.max_connections() > 0) limits.max_connections = h.max_connections();
  if (h.has_max_connections_per_address()) {
    limits.max_connections_per_address = h.max_connections_per_address();
  }
  if (h.max_header_bytes() > 0) limits.max_header_bytes = static_cast<size_t>(h.max_header_bytes());
  if (h.idle_timeout_seconds() > 0) limits.idle_timeout = absl::Seconds(h.idle_timeout_seconds());
  return limits;
}

}  // namespace qsign::daemon

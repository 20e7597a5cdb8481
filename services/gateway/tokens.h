// Access tokens and authorization handles of the CSC gateway, sealed with HMAC-SHA256 under a key
// only the gateway holds (a file shared by its replicas), so that any replica accepts what any
// other issued and none needs a database:
//   access token  "at1.<base64url(client id \n expiry \n 16 random bytes)>.<base64url(mac)>"
//   handle        "ah1.<base64url(consent request id)>.<base64url(mac)>"
// The handle's MAC also covers the relying party's client id (not written in the handle), so a
// handle is good only for the client that started the authorization. Tokens and handles use
// separate subkeys: one can never pass as the other. Tokens cannot be revoked one by one; they
// are short-lived, and a client removed from the relying-party file loses them at once.
#ifndef QSIGN_SERVICES_GATEWAY_TOKENS_H_
#define QSIGN_SERVICES_GATEWAY_TOKENS_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/secret.h"

namespace qsign::gateway {

struct VerifiedToken {
  std::string client_id;
  absl::Time expires_at;
};

class TokenSealer {
 public:
  // `key`: at least 32 bytes of secret randomness. INVALID_ARGUMENT when shorter.
  static absl::StatusOr<std::unique_ptr<TokenSealer>> New(const SecretString& key);
  TokenSealer(const TokenSealer&) = delete;
  TokenSealer& operator=(const TokenSealer&) = delete;

  // A new access token for `client_id`, valid until `expires_at`.
  absl::StatusOr<std::string> IssueAccessToken(std::string_view client_id,
                                               absl::Time expires_at) const;
  // UNAUTHENTICATED "invalid" for anything this gateway did not issue (the caller answers
  // invalid_token) and DEADLINE_EXCEEDED for a genuine token at or past its expiry (the caller
  // answers expired_token). Never echoes the token.
  absl::StatusOr<VerifiedToken> VerifyAccessToken(std::string_view token, absl::Time now) const;

  // The handle of a pending authorization of `request_id` for `client_id`.
  std::string SealHandle(std::string_view client_id, std::string_view request_id) const;
  // The request id, when `handle` was sealed for `client_id`; NOT_FOUND otherwise.
  absl::StatusOr<std::string> OpenHandle(std::string_view client_id, std::string_view handle) const;

 private:
  TokenSealer(SecretString token_key, SecretString handle_key)
      : token_key_(std::move(token_key)), handle_key_(std::move(handle_key)) {}
  const SecretString token_key_;
  const SecretString handle_key_;
};

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_TOKENS_H_

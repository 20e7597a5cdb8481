// Access tokens, authorization codes, authorization handles and sign-in tickets of the CSC
// gateway, sealed under a key only the gateway holds (a file shared by its replicas), so that any
// replica accepts what any other issued and none needs a database:
//   access token  "at2.<base64url(claims JSON)>.<base64url(HMAC-SHA256)>"
//   code          "ac1.<base64url(claims JSON)>.<base64url(HMAC-SHA256)>"       (oauth2/authorize)
//   handle        "ah1.<base64url(consent request id)>.<base64url(HMAC-SHA256)>"
//   ticket        "lt1.<base64url(IV || AES-256-GCM ciphertext || tag)>"     (the sign-in page)
// The handle's MAC also covers the relying party's client id (not written in the handle), so a
// handle is good only for the client that started the authorization. Each kind has its own
// subkey: one can never pass as another. Tokens cannot be revoked one by one; they are
// short-lived, and a client removed from the relying-party file loses them at once. Codes are
// not single use (there is no store): they live 60 s, are bound to the client, its redirect URI
// and the PKCE challenge, so only the client that asked can redeem them. Tickets are encrypted:
// they carry the identity login id, which must not reach the browser in clear.
#ifndef QSIGN_SERVICES_GATEWAY_TOKENS_H_
#define QSIGN_SERVICES_GATEWAY_TOKENS_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/secret.h"

namespace qsign::gateway {

// What an access token says.
struct TokenClaims {
  std::string client_id;
  absl::Time expires_at;
  // The citizen who signed in (authorization code grant); empty for a client credentials token,
  // whose relying party names users by userID.
  std::string account_id;
  // "service" or "credential" (CSC §8.3.2).
  std::string scope = "service";
  // scope "credential": the one credential, and the SAD of the user's approval on the app, bound
  // to exactly the hashes of the authorization request.
  std::string credential_id;
  std::string sad;
};
using VerifiedToken = TokenClaims;

// What an authorization code says: the token it becomes, and what redeeming it must present.
struct CodeClaims {
  TokenClaims token;  // token.expires_at: when the code expires.
  std::string redirect_uri;
  // base64url(SHA-256(code_verifier)) (PKCE S256, RFC 7636).
  std::string code_challenge;
};

class TokenSealer {
 public:
  // `key`: at least 32 bytes of secret randomness. INVALID_ARGUMENT when shorter.
  static absl::StatusOr<std::unique_ptr<TokenSealer>> New(const SecretString& key);
  TokenSealer(const TokenSealer&) = delete;
  TokenSealer& operator=(const TokenSealer&) = delete;

  // A new access token for `client_id`, valid until `expires_at` (client credentials).
  absl::StatusOr<std::string> IssueAccessToken(std::string_view client_id,
                                               absl::Time expires_at) const;
  absl::StatusOr<std::string> IssueAccessToken(const TokenClaims& claims) const;
  // UNAUTHENTICATED "invalid" for anything this gateway did not issue (the caller answers
  // invalid_token) and DEADLINE_EXCEEDED for a genuine token at or past its expiry (the caller
  // answers expired_token). Never echoes the token.
  absl::StatusOr<VerifiedToken> VerifyAccessToken(std::string_view token, absl::Time now) const;

  std::string SealCode(const CodeClaims& claims) const;
  // The claims of a genuine, unexpired code; UNAUTHENTICATED otherwise.
  absl::StatusOr<CodeClaims> OpenCode(std::string_view code, absl::Time now) const;

  // The handle of a pending authorization of `request_id` for `client_id`.
  std::string SealHandle(std::string_view client_id, std::string_view request_id) const;
  // The request id, when `handle` was sealed for `client_id`; NOT_FOUND otherwise.
  absl::StatusOr<std::string> OpenHandle(std::string_view client_id, std::string_view handle) const;

  // Encrypted and authenticated; UNAUTHENTICATED for a ticket this gateway did not make.
  std::string SealTicket(std::string_view plaintext) const;
  absl::StatusOr<std::string> OpenTicket(std::string_view ticket) const;

 private:
  TokenSealer(SecretString token_key, SecretString handle_key, SecretString code_key,
              SecretString ticket_key)
      : token_key_(std::move(token_key)),
        handle_key_(std::move(handle_key)),
        code_key_(std::move(code_key)),
        ticket_key_(std::move(ticket_key)) {}
  const SecretString token_key_;
  const SecretString handle_key_;
  const SecretString code_key_;
  const SecretString ticket_key_;
};

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_TOKENS_H_

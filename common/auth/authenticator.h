// The one authenticator of every qsign service: turns the `authorization` metadata value
// (identity.proto states the convention) into a Caller. Operator and service secrets are checked
// against CredentialTables; Bearer session tokens through a SessionVerifier: identity's own
// (its store) or, in every other service, a SessionKeyCache (common/auth/session_key_cache.h).
#ifndef QSIGN_COMMON_AUTH_AUTHENTICATOR_H_
#define QSIGN_COMMON_AUTH_AUTHENTICATOR_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/auth/caller.h"
#include "common/auth/credential_table.h"
#include "common/auth/session_token.h"

namespace qsign::auth {

// Checks a user's session token.
class SessionVerifier {
 public:
  virtual ~SessionVerifier() = default;
  // The token's claims. UNAUTHENTICATED ("session token: ...") when it is not valid; UNAVAILABLE
  // when its validity cannot be decided now (fail closed). `allow_revoked` skips the revocation
  // check only (identity's Logout, so that a repeated logout succeeds).
  virtual absl::StatusOr<SessionClaims> Verify(std::string_view token, bool allow_revoked) = 0;
};

// Thread-safe; immutable after construction.
class Authenticator {
 public:
  // `sessions` is not owned and must outlive this; nullptr: Bearer tokens are refused.
  // `component` names the log line of a refused secret.
  Authenticator(CredentialTable operators, CredentialTable services, SessionVerifier* sessions,
                std::string component);

  // Who is calling, from the `authorization` value. Empty: kAnonymous. Bad credentials of any
  // kind: UNAUTHENTICATED, never echoing the credential.
  absl::StatusOr<Caller> Authenticate(std::string_view authorization,
                                      bool allow_revoked = false) const;

  const CredentialTable& services() const { return services_; }

 private:
  const CredentialTable operators_;
  const CredentialTable services_;
  SessionVerifier* const sessions_;  // Not owned; may be null.
  const std::string component_;
};

}  // namespace qsign::auth

#endif  // QSIGN_COMMON_AUTH_AUTHENTICATOR_H_

// Minting session tokens: the identity service signs them with an ECDSA P-256 key held in the
// HSM. The format, the claims and verification (what every service does) are in
// common/auth/session_token.h.
#ifndef QSIGN_SERVICES_IDENTITY_SESSION_TOKEN_H_
#define QSIGN_SERVICES_IDENTITY_SESSION_TOKEN_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/auth/session_token.h"
#include "hsm/hsm.h"

namespace qsign::identity {

using ::qsign::auth::IsFresh;
using ::qsign::auth::kDefaultFreshLoginWindow;
using ::qsign::auth::kMaxClockSkew;
using ::qsign::auth::SessionClaims;
using ::qsign::auth::SessionRevocation;
using ::qsign::auth::SessionRevocationList;
using ::qsign::auth::SessionTokenVerifier;

// Mints tokens with a P-256 key in the HSM. Thread-safe.
class SessionTokenMinter {
 public:
  // `hsm` is not owned and must outlive the minter. The key must exist and be EC P-256.
  static absl::StatusOr<std::unique_ptr<SessionTokenMinter>> New(hsm::Hsm* hsm, std::string key_id);

  // Signs `claims` (key_id is overwritten with this minter's). INVALID_ARGUMENT for claims that
  // do not fit the format (empty ids, expiry not after issue).
  absl::StatusOr<std::string> Mint(SessionClaims claims) const;

  const std::string& key_id() const { return key_id_; }
  // SubjectPublicKeyInfo DER of the signing key.
  const std::string& public_key_spki() const { return spki_der_; }

 private:
  SessionTokenMinter(hsm::Hsm* hsm, std::string key_id, std::string spki_der)
      : hsm_(hsm), key_id_(std::move(key_id)), spki_der_(std::move(spki_der)) {}
  hsm::Hsm* hsm_;  // Not owned.
  std::string key_id_;
  std::string spki_der_;
};

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_SESSION_TOKEN_H_

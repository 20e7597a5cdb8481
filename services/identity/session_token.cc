#include "services/identity/session_token.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/auth/credential_table.h"
#include "common/strings.h"

namespace qsign::identity {

absl::StatusOr<std::unique_ptr<SessionTokenMinter>> SessionTokenMinter::New(hsm::Hsm* hsm,
                                                                            std::string key_id) {
  if (key_id.empty() || key_id.size() > 128) {
    return absl::InvalidArgumentError("session key id: 1..128 bytes");
  }
  auto pub = hsm->GetPublicKey(key_id);
  if (!pub.ok()) return pub.status();
  if (pub->type != hsm::KeyType::kEcP256) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session key ", key_id, " must be EC_P256, is ", Av(hsm::KeyTypeName(pub->type))));
  }
  return std::unique_ptr<SessionTokenMinter>(
      new SessionTokenMinter(hsm, std::move(key_id), std::move(pub->spki_der)));
}

absl::StatusOr<std::string> SessionTokenMinter::Mint(SessionClaims claims) const {
  claims.key_id = key_id_;
  auto payload = auth::SessionTokenPayload(claims);
  if (!payload.ok()) return payload.status();
  auto sig = hsm_->SignDigest(
      key_id_,
      {.scheme = hsm::SignScheme::kEcdsa, .hash = hsm::HashAlgorithm::kSha256, .ecdsa_der = true},
      auth::Sha256(*payload));
  if (!sig.ok()) return sig.status();
  return auth::JoinSessionToken(*payload, *sig);
}

}  // namespace qsign::identity

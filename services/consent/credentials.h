// Operator and service credentials at the consent service, per the convention in identity.proto:
//   authorization: Operator <operator id>.<secret>
//   authorization: Service <client id>.<secret>
//   authorization: Bearer <session token>
// The service holds only SHA-256 of each secret (a file of "<id> <64 hex digits>" lines, the
// same format identity reads) and compares in constant time.
// TODO(consent): move to common/auth together with identity's copy once both have landed.
#ifndef QSIGN_SERVICES_CONSENT_CREDENTIALS_H_
#define QSIGN_SERVICES_CONSENT_CREDENTIALS_H_

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/secret.h"

namespace qsign::consent {

struct PresentedCredential {
  enum class Scheme { kNone, kBearer, kOperator, kService };
  Scheme scheme = Scheme::kNone;
  std::string id;       // Operator or client id; empty for Bearer.
  SecretString secret;  // The token or the secret. Never logged.
};

// An empty value is kNone; anything that is not one of the three forms is UNAUTHENTICATED (the
// value is never echoed).
absl::StatusOr<PresentedCredential> ParseAuthorization(std::string_view authorization);

// Known ids and the SHA-256 of their secrets. Immutable once built; thread-safe to read.
class CredentialTable {
 public:
  // Lines "<id> <64 hex digits>"; blank lines and '#' comments skipped. INVALID_ARGUMENT naming
  // the line number otherwise.
  static absl::StatusOr<CredentialTable> Parse(std::string_view text);
  static absl::StatusOr<CredentialTable> FromFile(std::string_view path);

  // Adds `id` with the hash of `secret` (tests and provisioning tools).
  absl::Status AddSecret(std::string_view id, std::string_view secret);

  // Whether `id` is known and SHA-256(secret) matches; an unknown id costs the same.
  bool Check(std::string_view id, std::string_view secret) const;

 private:
  absl::Status Add(std::string_view id, std::string hash);
  absl::flat_hash_map<std::string, std::string> hashes_;
};

// SHA-256 of `data`, 32 bytes.
std::string Sha256(std::string_view data);

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_CREDENTIALS_H_

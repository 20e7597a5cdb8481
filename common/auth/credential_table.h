// Operator and service credentials, as identity.proto states the convention:
//   authorization: Operator <operator id>.<secret>
//   authorization: Service <client id>.<secret>
// The server holds only SHA-256 of each secret, read from a file named in the config, and
// compares in constant time. An id is 1..64 characters of [A-Za-z0-9_-] (no '.', which ends it).
#ifndef QSIGN_COMMON_AUTH_CREDENTIAL_TABLE_H_
#define QSIGN_COMMON_AUTH_CREDENTIAL_TABLE_H_

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/ossl.h"
#include "common/secret.h"

namespace qsign::auth {

// What an `authorization` header value claims to be.
struct PresentedCredential {
  enum class Scheme { kNone, kBearer, kOperator, kService };
  Scheme scheme = Scheme::kNone;
  // Operator or client id; empty for Bearer.
  std::string id;
  // The session token (Bearer) or the secret. Never logged.
  SecretString secret;
};

// Splits an `authorization` header value. An empty value is Scheme::kNone; a value that is none
// of the three forms is UNAUTHENTICATED naming the expected forms (never echoing the value).
absl::StatusOr<PresentedCredential> ParseAuthorization(std::string_view authorization);

// Known ids and the SHA-256 of their secrets. Immutable after construction; thread-safe.
class CredentialTable {
 public:
  CredentialTable() = default;

  // Lines "<id> <64 hex digits of SHA-256(secret)>"; blank lines and lines starting with '#' are
  // skipped. INVALID_ARGUMENT naming the line for anything else or a repeated id.
  static absl::StatusOr<CredentialTable> Parse(std::string_view text);
  static absl::StatusOr<CredentialTable> FromFile(std::string_view path);

  // Adds `id` with the hash of `secret` (tests, and tools that provision secrets).
  absl::Status AddSecret(std::string_view id, std::string_view secret);

  // True when `id` is known and SHA-256(secret) matches, compared in constant time. An unknown
  // id costs the same hash and comparison.
  bool Check(std::string_view id, std::string_view secret) const;

  bool empty() const { return hashes_.empty(); }

 private:
  absl::Status Add(std::string_view id, std::string hash);
  absl::flat_hash_map<std::string, std::string> hashes_;  // id -> SHA-256 (32 bytes).
};

// OK when `id` is 1..64 characters of [A-Za-z0-9_-].
absl::Status ValidateCredentialId(std::string_view id);

// SHA-256 of `data`, 32 bytes (common/ossl.h).
using ::qsign::Sha256;

}  // namespace qsign::auth

#endif  // QSIGN_COMMON_AUTH_CREDENTIAL_TABLE_H_

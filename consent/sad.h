// Signature activation data (SAD): minted by the consent service after the user approved a
// SIGN request with their PIN, verified by the signer before any key is touched. A SAD binds
// account, credential, hash algorithm, the exact hashes, the number of signatures, issue and
// expiry time and a unique id, and is signed (ECDSA P-256) by a key that lives in the HSM.
// Verification needs only the public key, so the signer never holds the SAD private key.
#ifndef QSIGN_CONSENT_SAD_H_
#define QSIGN_CONSENT_SAD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/ossl.h"
#include "hsm/hsm.h"

namespace qsign::consent {

// What a SAD grants, decoded.
struct SadGrant {
  std::string sad_id;  // 16 random bytes; set by the minter.
  std::string account_id;
  std::string credential_id;
  std::string hash_algorithm_oid;
  std::vector<std::string> hashes;
  uint32_t num_signatures = 0;
  absl::Time issued_at;   // Set by the minter.
  absl::Time expires_at;  // Set by the minter.
  std::string consent_request_id;
};

inline constexpr absl::Duration kDefaultSadLifetime = absl::Minutes(5);
inline constexpr size_t kMaxSadHashes = 1000;

// Mints SADs with a P-256 key held in the HSM.
class SadMinter {
 public:
  // `hsm` must outlive the minter. The key must exist and be EC P-256.
  static absl::StatusOr<std::unique_ptr<SadMinter>> New(hsm::Hsm* hsm, std::string key_id);

  // Fills sad_id, issued_at = now and expires_at = now + lifetime, and returns the SAD as an
  // opaque base64url string. The grant must name account, credential, hash algorithm and
  // 1..kMaxSadHashes hashes; num_signatures defaults to the number of hashes.
  absl::StatusOr<std::string> Mint(SadGrant grant, absl::Time now,
                                   absl::Duration lifetime = kDefaultSadLifetime) const;

  // SubjectPublicKeyInfo of the SAD key, for the signer's verifier.
  const std::string& public_key_spki() const { return spki_der_; }
  const std::string& key_id() const { return key_id_; }

 private:
  SadMinter(hsm::Hsm* hsm, std::string key_id, std::string spki_der)
      : hsm_(hsm), key_id_(std::move(key_id)), spki_der_(std::move(spki_der)) {}
  hsm::Hsm* hsm_;  // Not owned.
  std::string key_id_;
  std::string spki_der_;
};

// Verifies SADs against a fixed set of trusted SAD public keys (by key id). Thread-safe. The
// OpenSSL objects a verification needs (SHA-256, a verify context per key) are fetched once and
// reused, so a call does no provider look-up: only the hash and the ECDSA verification.
class SadVerifier {
 public:
  // `trusted_keys`: key id -> SubjectPublicKeyInfo DER (P-256).
  static absl::StatusOr<std::unique_ptr<SadVerifier>> New(
      const std::map<std::string, std::string>& trusted_keys);
  ~SadVerifier();

  // Decodes and checks the signature and the validity period. Errors, all prefixed "sad:" and
  // carrying a typed qsign.v1.Refusal (SAD_MISSING, SAD_MALFORMED, SAD_UNKNOWN_KEY, ...):
  // INVALID_ARGUMENT when empty or not a SAD; PERMISSION_DENIED when signed by an unknown key
  // or the signature does not verify, or when expired or not yet valid.
  // Binding to a credential and hashes is the caller's check (see CheckSadCovers).
  absl::StatusOr<SadGrant> Verify(std::string_view sad, absl::Time now) const;

 private:
  struct Key;
  explicit SadVerifier(std::map<std::string, std::unique_ptr<Key>> keys);
  std::map<std::string, std::unique_ptr<Key>, std::less<>> keys_;
};

// The pinned public key of a SAD key (signer.sad_keys, consent.sad_public_key_file): a PEM file
// holding a SubjectPublicKeyInfo ("PUBLIC KEY") or a certificate, returned as SPKI DER of an EC
// P-256 key. INVALID_ARGUMENT naming the file when it holds neither or another key type.
absl::StatusOr<std::string> ReadSadPublicKeyFile(const std::string& path);
// The PEM ("PUBLIC KEY") text of a SPKI DER, as ReadSadPublicKeyFile reads it.
absl::StatusOr<std::string> SadPublicKeyPem(std::string_view spki_der);

// Checks that `grant` authorizes signing `hashes` (with `hash_algorithm_oid`) with
// `credential_id` of `account_id`: same account and credential, same hash algorithm, every hash
// listed, no more hashes than num_signatures. PERMISSION_DENIED naming the mismatch, with its
// Refusal reason (SAD_OTHER_CREDENTIAL, SAD_OTHER_HASHES, ...).
absl::Status CheckSadCovers(const SadGrant& grant, std::string_view account_id,
                            std::string_view credential_id, std::string_view hash_algorithm_oid,
                            const std::vector<std::string>& hashes);

}  // namespace qsign::consent

#endif  // QSIGN_CONSENT_SAD_H_

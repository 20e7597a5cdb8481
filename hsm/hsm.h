// The HSM as the rest of qsign sees it: keys addressed by id, generated inside the token,
// private halves sensitive and never extractable, used only to sign pre-computed digests.
// Only hsm/ includes the PKCS#11 header; nothing here exposes a PKCS#11 type.
#ifndef QSIGN_HSM_HSM_H_
#define QSIGN_HSM_HSM_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsign::hsm {

enum class KeyType { kEcP256, kEcP384, kRsa2048, kRsa3072, kRsa4096 };

// "EC_P256", "RSA_3072", ... for logs and configs; ParseKeyType accepts the same names.
std::string_view KeyTypeName(KeyType type);
absl::StatusOr<KeyType> ParseKeyType(std::string_view name);
bool IsEc(KeyType type);
int KeyBits(KeyType type);

enum class HashAlgorithm { kSha256, kSha384, kSha512 };
size_t DigestLength(HashAlgorithm hash);

enum class SignScheme {
  kEcdsa,     // ECDSA over the digest.
  kRsaPkcs1,  // RSASSA-PKCS1-v1_5: DigestInfo(hash, digest) built by hsm/, then CKM_RSA_PKCS.
  kRsaPss,    // RSASSA-PSS with MGF1(hash), salt length = digest length.
};

struct SignParams {
  SignScheme scheme = SignScheme::kEcdsa;
  HashAlgorithm hash = HashAlgorithm::kSha256;
  // ECDSA only: DER-encoded Ecdsa-Sig-Value when true, raw r||s (PKCS#11 native) when false.
  bool ecdsa_der = true;
};

struct PublicKey {
  KeyType type;
  // SubjectPublicKeyInfo, DER.
  std::string spki_der;
};

// Everything that touches private keys. Implementations are thread-safe.
class Hsm {
 public:
  virtual ~Hsm() = default;

  // Generates a key pair in the token. The private key is CKA_TOKEN, CKA_PRIVATE,
  // CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only; CKA_ID and CKA_LABEL are `key_id`.
  // ALREADY_EXISTS when a key with that id exists.
  virtual absl::StatusOr<PublicKey> GenerateKeyPair(std::string_view key_id, KeyType type) = 0;

  // The public half of an existing key. NOT_FOUND when there is no such key.
  virtual absl::StatusOr<PublicKey> GetPublicKey(std::string_view key_id) = 0;

  // Destroys both halves. NOT_FOUND when there is no such key.
  virtual absl::Status DestroyKeyPair(std::string_view key_id) = 0;

  // Gives both halves of key `from_id` the id (CKA_ID and CKA_LABEL) `to_id`; nothing else of
  // the key changes (it stays sensitive, never extractable). NOT_FOUND when there is no key
  // `from_id`, ALREADY_EXISTS when a key `to_id` exists. For the signer's pool of pre-generated
  // keys; UNIMPLEMENTED unless an implementation says otherwise.
  virtual absl::Status RenameKeyPair(std::string_view from_id, std::string_view to_id);

  // The ids of the keys (either half) whose id starts with `prefix`, sorted, each once. For
  // reconciling the token with a service's records (the signer's orphan-key sweep).
  virtual absl::StatusOr<std::vector<std::string>> ListKeyIds(std::string_view prefix) = 0;

  // Signs each digest with the key, results in input order. Each digest must be exactly
  // DigestLength(params.hash) bytes (INVALID_ARGUMENT otherwise); the scheme must fit the key
  // type (FAILED_PRECONDITION otherwise). One session is used for the whole batch.
  virtual absl::StatusOr<std::vector<std::string>> SignDigests(
      std::string_view key_id, const SignParams& params, std::span<const std::string> digests) = 0;

  // Convenience for one digest.
  absl::StatusOr<std::string> SignDigest(std::string_view key_id, const SignParams& params,
                                         std::string digest);
};

struct Pkcs11Config {
  // Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
  std::string module_path;
  // Label of the token to use (the slot is found by it).
  std::string token_label;
  // File holding the user PIN (trailing newline ignored). The PIN is never logged.
  std::string pin_file;
  // Number of PKCS#11 sessions kept open; bounds concurrent HSM operations.
  int session_pool_size = 8;
  // Create and destroy token objects one at a time (SoftHSM2 file tokens fail concurrent
  // C_GenerateKeyPair at random: SoftHSMv2 issue 573). Unset: IsSoftHsm2(module_path).
  std::optional<bool> serialize_object_creation;
};

// Whether `module_path` names SoftHSM2 (its file name contains "softhsm").
bool IsSoftHsm2(std::string_view module_path);

// Opens the module, finds the token and logs in. The returned Hsm owns the module: one
// Pkcs11Hsm (or Pkcs11Tokens) per module per process (PKCS#11 is initialised once per process).
absl::StatusOr<std::unique_ptr<Hsm>> NewPkcs11Hsm(const Pkcs11Config& config);

// One token of a process, for a role (key separation, docs/security-model.md).
struct Pkcs11TokenConfig {
  std::string role;         // "signer", "consent", ...: names it, unique.
  std::string token_label;  // 1 to 32 bytes.
  std::string pin_file;     // That token's user PIN.
  int session_pool_size = 8;
};

struct Pkcs11TokensConfig {
  std::string module_path;
  std::optional<bool> serialize_object_creation;  // As in Pkcs11Config.
  std::vector<Pkcs11TokenConfig> tokens;
};

// The HSM tokens of one process by role, on one module: each token its own session pool, logged
// in with its own PIN; an Hsm of one role sees only its own token's objects.
class HsmTokens {
 public:
  HsmTokens() = default;
  HsmTokens(const HsmTokens&) = delete;
  HsmTokens& operator=(const HsmTokens&) = delete;
  ~HsmTokens();

  // The token of `role`; nullptr when this process has none for it. Not owned.
  Hsm* Get(std::string_view role) const;
  std::vector<std::string> roles() const;

  // Takes `hsm` as the token of `role` (tests; OpenPkcs11Tokens fills it).
  void Add(std::string role, std::unique_ptr<Hsm> hsm);

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Hsm>>> tokens_;
};

// Loads the module once and opens every token of `config`. An error names the role and label.
absl::StatusOr<std::unique_ptr<HsmTokens>> OpenPkcs11Tokens(const Pkcs11TokensConfig& config);

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_HSM_H_

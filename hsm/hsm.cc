#include "hsm/hsm.h"

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::hsm {

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return "EC_P256";
    case KeyType::kEcP384:
      return "EC_P384";
    case KeyType::kRsa2048:
      return "RSA_2048";
    case KeyType::kRsa3072:
      return "RSA_3072";
    case KeyType::kRsa4096:
      return "RSA_4096";
  }
  return "UNKNOWN";
}

absl::StatusOr<KeyType> ParseKeyType(std::string_view name) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa2048, KeyType::kRsa3072,
                       KeyType::kRsa4096}) {
    if (name == KeyTypeName(type)) return type;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown key type \"", Av(name),
                   "\": expected one of EC_P256, EC_P384, RSA_2048, RSA_3072, RSA_4096"));
}

bool IsEc(KeyType type) { return type == KeyType::kEcP256 || type == KeyType::kEcP384; }

int KeyBits(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return 256;
    case KeyType::kEcP384:
      return 384;
    case KeyType::kRsa2048:
      return 2048;
    case KeyType::kRsa3072:
      return 3072;
    case KeyType::kRsa4096:
      return 4096;
  }
  return 0;
}

size_t DigestLength(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return 32;
    case HashAlgorithm::kSha384:
      return 48;
    case HashAlgorithm::kSha512:
      return 64;
  }
  return 0;
}

absl::Status Hsm::RenameKeyPair(std::string_view from_id, std::string_view to_id) {
  return absl::UnimplementedError("this HSM cannot rename keys");
}

absl::StatusOr<std::string> Hsm::SignDigest(std::string_view key_id, const SignParams& params,
                                            std::string digest) {
  absl::StatusOr<std::vector<std::string>> signatures =
      SignDigests(key_id, params, std::span<const std::string>(&digest, 1));
  if (!signatures.ok()) return signatures.status();
  return std::move(signatures->front());
}

}  // namespace qsign::hsm

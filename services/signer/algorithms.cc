#include "services/signer/algorithms.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::signer {
namespace {

using hsm::HashAlgorithm;
using hsm::SignScheme;

struct SignOid {
  const char* oid;
  SignAlgorithm algorithm;
};

const SignOid kSignOids[] = {
    {"1.2.840.10045.4.3.2", {SignScheme::kEcdsa, HashAlgorithm::kSha256}},
    {"1.2.840.10045.4.3.3", {SignScheme::kEcdsa, HashAlgorithm::kSha384}},
    {"1.2.840.10045.4.3.4", {SignScheme::kEcdsa, HashAlgorithm::kSha512}},
    {"1.2.840.10045.2.1", {SignScheme::kEcdsa, std::nullopt}},
    {"1.2.840.113549.1.1.11", {SignScheme::kRsaPkcs1, HashAlgorithm::kSha256}},
    {"1.2.840.113549.1.1.12", {SignScheme::kRsaPkcs1, HashAlgorithm::kSha384}},
    {"1.2.840.113549.1.1.13", {SignScheme::kRsaPkcs1, HashAlgorithm::kSha512}},
    {"1.2.840.113549.1.1.1", {SignScheme::kRsaPkcs1, std::nullopt}},
    {"1.2.840.113549.1.1.10", {SignScheme::kRsaPss, std::nullopt}},
};

}  // namespace

absl::StatusOr<HashAlgorithm> ParseHashOid(std::string_view oid) {
  if (oid == kSha256Oid) return HashAlgorithm::kSha256;
  if (oid == kSha384Oid) return HashAlgorithm::kSha384;
  if (oid == kSha512Oid) return HashAlgorithm::kSha512;
  if (oid.empty()) return absl::InvalidArgumentError("hash_algorithm_oid: required");
  return absl::InvalidArgumentError(absl::StrCat(
      "hash_algorithm_oid: '", Av(oid.substr(0, 64)), "' is not supported (SHA-256, SHA-384, SHA-512)"));
}

absl::StatusOr<SignAlgorithm> ParseSignOid(std::string_view oid) {
  for (const auto& s : kSignOids) {
    if (oid == s.oid) return s.algorithm;
  }
  if (oid.empty()) return absl::InvalidArgumentError("sign_algorithm_oid: required");
  return absl::InvalidArgumentError(
      absl::StrCat("sign_algorithm_oid: '", Av(oid.substr(0, 64)), "' is not supported"));
}

std::vector<std::string> SignOidsFor(hsm::KeyType type) {
  if (hsm::IsEc(type)) {
    return {"1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4",
            "1.2.840.10045.2.1"};
  }
  return {"1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13",
          "1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"};
}

}  // namespace qsign::signer

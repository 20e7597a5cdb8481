#include "services/signer/algorithms.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/oids.h"
#include "common/strings.h"

namespace qsign::signer {
namespace {

using hsm::HashAlgorithm;
using hsm::SignScheme;

SignScheme SchemeOf(oid::SignFamily family) {
  switch (family) {
    case oid::SignFamily::kEcdsa:
      return SignScheme::kEcdsa;
    case oid::SignFamily::kRsaPkcs1:
      return SignScheme::kRsaPkcs1;
    case oid::SignFamily::kRsaPss:
      return SignScheme::kRsaPss;
  }
  return SignScheme::kEcdsa;
}

}  // namespace

absl::StatusOr<HashAlgorithm> ParseHashOid(std::string_view oid) {
  if (oid == oid::kSha256) return HashAlgorithm::kSha256;
  if (oid == oid::kSha384) return HashAlgorithm::kSha384;
  if (oid == oid::kSha512) return HashAlgorithm::kSha512;
  if (oid.empty()) return absl::InvalidArgumentError("hash_algorithm_oid: required");
  return absl::InvalidArgumentError(absl::StrCat(
      "hash_algorithm_oid: '", Echo(oid), "' is not supported (SHA-256, SHA-384, SHA-512)"));
}

absl::StatusOr<SignAlgorithm> ParseSignOid(std::string_view oid) {
  if (const oid::SignOid* s = oid::FindSignOid(oid); s != nullptr) {
    SignAlgorithm algorithm{.scheme = SchemeOf(s->family)};
    if (s->implied_hash != nullptr) algorithm.hash = *ParseHashOid(s->implied_hash);
    return algorithm;
  }
  if (oid.empty()) return absl::InvalidArgumentError("sign_algorithm_oid: required");
  return absl::InvalidArgumentError(
      absl::StrCat("sign_algorithm_oid: '", Echo(oid), "' is not supported"));
}

std::vector<std::string> SignOidsFor(hsm::KeyType type) {
  const bool ec = hsm::IsEc(type);
  std::vector<std::string> out;
  for (const oid::SignOid& s : oid::SignOids()) {
    if ((s.family == oid::SignFamily::kEcdsa) == ec) out.push_back(s.oid);
  }
  return out;
}

}  // namespace qsign::signer

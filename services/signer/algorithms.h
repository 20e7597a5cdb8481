// The hash and signature algorithm OIDs the signer accepts (CSC hashAlgorithmOID / signAlgo), as
// hsm/ parameters; the OIDs themselves are common/oids.h.
#ifndef QSIGN_SERVICES_SIGNER_ALGORITHMS_H_
#define QSIGN_SERVICES_SIGNER_ALGORITHMS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "hsm/hsm.h"

namespace qsign::signer {

// INVALID_ARGUMENT naming hash_algorithm_oid when unsupported.
absl::StatusOr<hsm::HashAlgorithm> ParseHashOid(std::string_view oid);

struct SignAlgorithm {
  hsm::SignScheme scheme;
  // Set when the OID fixes the hash (ecdsa-with-SHA256, sha256WithRSAEncryption, ...).
  std::optional<hsm::HashAlgorithm> hash;
};

// INVALID_ARGUMENT naming sign_algorithm_oid when unsupported.
absl::StatusOr<SignAlgorithm> ParseSignOid(std::string_view oid);

// The signature algorithm OIDs a key of this type can produce, the preferred one first.
std::vector<std::string> SignOidsFor(hsm::KeyType type);

}  // namespace qsign::signer

#endif  // QSIGN_SERVICES_SIGNER_ALGORITHMS_H_

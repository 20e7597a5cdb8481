// The terms of service (contracts), versioned in the repository under
// services/lifecycle/contracts/<version>.txt and compiled into the binary.
#ifndef QSIGN_SERVICES_LIFECYCLE_CONTRACTS_H_
#define QSIGN_SERVICES_LIFECYCLE_CONTRACTS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ossl.h"

namespace qsign::lifecycle {

struct ContractText {
  std::string version;  // The file name without ".txt", e.g. "2025-01".
  std::string text;     // UTF-8.
  std::string sha256;   // 32 bytes, of text.
};

class ContractRegistry {
 public:
  // `contracts` oldest first; the last one is current. Must not be empty.
  explicit ContractRegistry(std::vector<ContractText> contracts);
  // The contracts compiled in from services/lifecycle/contracts/.
  static const ContractRegistry& BuiltIn();

  // NOT_FOUND naming the version.
  absl::StatusOr<const ContractText*> Find(std::string_view version) const;
  const ContractText& current() const { return contracts_.back(); }

 private:
  std::vector<ContractText> contracts_;
};

// SHA-256, 32 bytes (common/ossl.h).
using ::qsign::Sha256;

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CONTRACTS_H_

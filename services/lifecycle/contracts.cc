#include "services/lifecycle/contracts.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/strings.h"

namespace qsign::lifecycle {

// Generated from contracts/*.txt by CMake (contracts_data.cc).
extern const std::vector<std::pair<std::string_view, std::string_view>>& EmbeddedContracts();

ContractRegistry::ContractRegistry(std::vector<ContractText> contracts)
    : contracts_(std::move(contracts)) {
  for (ContractText& c : contracts_) c.sha256 = Sha256(c.text);
}

const ContractRegistry& ContractRegistry::BuiltIn() {
  static const ContractRegistry* registry = [] {
    std::vector<ContractText> contracts;
    for (const auto& [version, text] : EmbeddedContracts()) {
      contracts.push_back({std::string(version), std::string(text), ""});
    }
    return new ContractRegistry(std::move(contracts));
  }();
  return *registry;
}

absl::StatusOr<const ContractText*> ContractRegistry::Find(std::string_view version) const {
  for (const ContractText& c : contracts_) {
    if (c.version == version) return &c;
  }
  return absl::NotFoundError(absl::StrCat("version: no contract \"", Echo(version), "\""));
}

}  // namespace qsign::lifecycle

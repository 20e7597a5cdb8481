// `verify FILE.p7s`: a validation report of a detached CAdES signature (common/cades/verify.h),
// offline — who signed, when (the signature timestamp's time), the certificates' status at that
// time from the revocation data in the signature, the chain to the trust anchor — with --json.
#ifndef QSIGN_TOOLS_CLI_VERIFY_H_
#define QSIGN_TOOLS_CLI_VERIFY_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "tools/cli/context.h"

namespace qsign::cli {

// Exit code of a signature that is not TOTAL-PASSED (invalid or indeterminate).
inline constexpr int kNotValid = 4;

class VerifyCommand {
 public:
  // Adds `verify FILE` to `qsign`; once parsed it is set into *selected.
  void Add(CLI::App* qsign, Command* selected);

 private:
  Result Verify(Context& ctx) const;

  std::vector<std::string> files_;
  std::string content_;
  std::string ca_file_;
  std::string at_;
};

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_VERIFY_H_

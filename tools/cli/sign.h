// The user's `sign FILE`: a detached CMS/CAdES-B signature (common/cades/signed_data.h) whose hash
// the user approves in the consent app (Consent.Authorize, AwaitAuthorization) and the signer signs
// with the credential's HSM key (Signer.SignHash, with the SAD).
#ifndef QSIGN_TOOLS_CLI_SIGN_H_
#define QSIGN_TOOLS_CLI_SIGN_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "tools/cli/context.h"

namespace qsign::cli {

class SignCommand {
 public:
  // Adds `sign FILE` to `qsign`; once parsed it is set into *selected.
  void Add(CLI::App* qsign, Command* selected);

 private:
  Result Sign(Context& ctx) const;

  std::vector<std::string> files_;
  std::string out_;
  std::string timeout_ = "120";
  std::string format_ = "cades";
  std::string level_ = "B-B";
  std::string tsa_url_ = "http://127.0.0.1:8318/tsa";
};

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_SIGN_H_

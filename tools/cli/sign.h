// The user's `sign FILE`: a PAdES signature in a PDF (sign_pdf.h), or a detached CMS/CAdES
// signature (common/cades/signed_data.h); the user approves the hash of the signed attributes in
// the consent app (remote_sign.h) and the signer signs with the credential's HSM key.
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
  std::string format_;  // Empty: pades for *.pdf, else cades.
  std::string level_ = "B-B";
  bool visible_ = false;
  std::string tsa_url_ = "http://127.0.0.1:8318/tsa";
  std::string out_;
  std::string timeout_ = "120";
};

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_SIGN_H_

// The registration officer's commands: proof-identity (answers the activation code for the
// user's consent app) and unblock-pin. Credentials "<id>.<secret>" come from --operator_file
// or $QSIGN_OPERATOR and are sent as "Operator <id>.<secret>".
#ifndef QSIGN_TOOLS_CLI_OPERATOR_H_
#define QSIGN_TOOLS_CLI_OPERATOR_H_

#include <CLI/CLI.hpp>
#include <string>

#include "tools/cli/context.h"

namespace qsign::cli {

class OperatorCommands {
 public:
  // Adds --operator_file to `qsign` and its commands; the one parsed is set into *selected.
  void Add(CLI::App* qsign, Command* selected);

 private:
  Result Authorization(std::string* authorization) const;
  Result AccountIdByUsername(Context& ctx, const std::string& authorization,
                             std::string* account_id) const;
  Result ProofIdentity(Context& ctx) const;
  Result UnblockPin(Context& ctx) const;

  CLI::Option* operator_file_option_ = nullptr;
  std::string operator_file_;
  std::string username_;
  std::string document_number_ = "000000000";
  std::string assurance_ = "high";
  std::string proof_note_ = "proofed with qsign proof-identity";
  std::string unblock_note_ = "unblocked with qsign unblock-pin";
};

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_OPERATOR_H_

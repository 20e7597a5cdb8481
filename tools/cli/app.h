// A simulated consent app (consent/app_simulator.h) on the command line: enrol with the
// activation code and a PIN, then watch for login and sign requests and approve or deny them.
// The device key lives in DIR/app, mode 0600.
#ifndef QSIGN_TOOLS_CLI_APP_H_
#define QSIGN_TOOLS_CLI_APP_H_

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "consent/app_simulator.h"
#include "tools/cli/context.h"

namespace qsign::cli {

class AppCommands {
 public:
  // Adds `app enroll|watch|deny|change-pin|reset-pin` to `qsign`; the one parsed is set into
  // *selected.
  void Add(CLI::App* qsign, Command* selected);

 private:
  Result Load(Context& ctx, std::unique_ptr<consent::ConsentAppSimulator>* app) const;
  Result Enroll(Context& ctx) const;
  Result Watch(Context& ctx) const;
  Result Deny(Context& ctx) const;
  Result ChangePin(Context& ctx) const;
  Result ResetPin(Context& ctx) const;

  std::string activation_code_;
  std::string pin_;
  std::string old_pin_;
  std::string new_pin_;
  std::string device_name_ = "qsign CLI app";
  std::string approve_with_pin_;
  std::string count_ = "0";
  std::string watch_timeout_ = "0";
  std::string deny_timeout_ = "60";
};

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_APP_H_

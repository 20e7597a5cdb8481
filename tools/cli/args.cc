#include "tools/cli/args.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace qsign::cli {

CLI::Option* AddOption(CLI::App* app, const std::string& name, std::string* value,
                       const std::string& description) {
  std::string names = absl::StrCat("--", name);
  if (name.find('_') != std::string::npos) {
    absl::StrAppend(&names, ",--", absl::StrReplaceAll(name, {{"_", "-"}}));
  }
  // Zero or one value: given bare, the option's value is "true".
  return app->add_option(names, *value, description)->expected(0, 1);
}

CLI::App* AddCommand(CLI::App* parent, const std::string& name, const std::string& description) {
  CLI::App* command = parent->add_subcommand(name, description);
  // --help anywhere prints the one usage text of the whole CLI.
  command->set_help_flag();
  command->fallthrough();
  command->require_subcommand(0, 1);
  return command;
}

}  // namespace qsign::cli

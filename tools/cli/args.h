// The qsign CLI's command line on CLI11, with the spellings it has always accepted: --name=value
// or --name value; a multi-word name with underscores or dashes (--state_dir, --state-dir); a
// bare --name is the value "true" (which Required() treats as missing). Options of the whole
// CLI may also follow the command.
#ifndef QSIGN_TOOLS_CLI_ARGS_H_
#define QSIGN_TOOLS_CLI_ARGS_H_

#include <CLI/CLI.hpp>
#include <string>

namespace qsign::cli {

// Adds --`name` (a name with underscores) storing into *value; *value keeps its initial value
// (the default) unless the option is given.
CLI::Option* AddOption(CLI::App* app, const std::string& name, std::string* value,
                       const std::string& description);

// Adds the command `name` below `parent`: its own options, and its parent's after it.
CLI::App* AddCommand(CLI::App* parent, const std::string& name, const std::string& description);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_ARGS_H_

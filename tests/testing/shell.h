// Independent tools in tests (openssl, curl, pdfsig): a shell command's exit code and output.
#ifndef QSIGN_TESTS_TESTING_SHELL_H_
#define QSIGN_TESTS_TESTING_SHELL_H_

#include <string>

namespace qsign::testing {

// Runs `command` through /bin/sh with stderr joined to stdout; *output gets both. The exit code,
// or -1 when it did not exit normally.
int RunCommand(const std::string& command, std::string* output);

// `s` in single quotes for the shell.
std::string ShellQuote(const std::string& s);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_SHELL_H_

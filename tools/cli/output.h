// What the qsign CLI tells its user: human lines, or one JSON object per line with --json (which
// scripts parse), and the exit code of a failed command.
#ifndef QSIGN_TOOLS_CLI_OUTPUT_H_
#define QSIGN_TOOLS_CLI_OUTPUT_H_

#include <grpcpp/support/status.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace qsign::cli {

// Exit codes (documented in --help; scripts/journey.sh and tests/e2e rely on them).
inline constexpr int kOk = 0;
inline constexpr int kUsage = 1;        // Usage, or a local problem (files, arguments).
inline constexpr int kRefused = 2;      // The server refused; its status is shown.
inline constexpr int kUnreachable = 3;  // The server could not be reached.

// A failed command: its exit code and what to tell the user.
struct Failure {
  int code;
  std::string message;
};
// What a command ends with: nothing when it succeeded.
using Result = std::optional<Failure>;

// A usage error, pointing at --help.
Failure Usage(const std::string& what);
// A refusal or an unreachable server (UNAVAILABLE), with a hint at what to do next.
Failure FromGrpc(const std::string& what, const grpc::Status& status, const std::string& server);
Failure FromStatus(const std::string& what, const absl::Status& status, const std::string& server);

// The result of one command: a headline and key/value fields ("  key: value" lines), or with
// --json the fields as one JSON object, in the order they were added.
class Output {
 public:
  explicit Output(bool json) : json_(json) {}

  bool json() const { return json_; }
  void Add(const std::string& key, const std::string& value) { fields_.emplace_back(key, value); }
  // Prints the headline and the fields added so far.
  void Print(const std::string& headline) const;
  // A progress line: `human` without --json; with --json the object of `json_fields`, or
  // nothing when there are none.
  void Line(const std::string& human,
            const std::vector<std::pair<std::string, std::string>>& json_fields = {}) const;
  // Prints the failure (stderr, or the JSON object {"error":..., "exit_code":...} on stdout)
  // and answers its exit code.
  int Report(const Failure& failure) const;

 private:
  bool json_;
  std::vector<std::pair<std::string, std::string>> fields_;
};

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_OUTPUT_H_

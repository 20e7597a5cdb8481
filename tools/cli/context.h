// What every qsign CLI command works with: the server and its channel, the state directory and
// the output, plus the helpers commands share (call contexts, the stored portal session).
#ifndef QSIGN_TOOLS_CLI_CONTEXT_H_
#define QSIGN_TOOLS_CLI_CONTEXT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "tools/cli/output.h"
#include "tools/cli/state_dir.h"

namespace qsign::cli {

struct Context {
  std::string server;
  StateDir state;
  Output out;
  std::shared_ptr<grpc::Channel> channel;

  // A call with a deadline `timeout` from now and, unless empty, `authorization` metadata.
  std::unique_ptr<grpc::ClientContext> Call(const std::string& authorization = "",
                                            absl::Duration timeout = absl::Seconds(30)) const;
  // Calls the unary RPC `method` of a stub over `channel`; a failure named `what` unless it
  // answers OK.
  template <typename Stub, typename Request, typename Response>
  Result Unary(const std::string& what,
               grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
               const Request& request, Response* response, const std::string& authorization = "",
               absl::Duration timeout = absl::Seconds(30)) const {
    Stub stub(channel);
    std::unique_ptr<grpc::ClientContext> call = Call(authorization, timeout);
    grpc::Status s = (stub.*method)(call.get(), request, response);
    if (!s.ok()) return FromGrpc(what, s);
    return std::nullopt;
  }
  Failure FromGrpc(const std::string& what, const grpc::Status& s) const {
    return cli::FromGrpc(what, s, server);
  }
  Failure FromStatus(const std::string& what, const absl::Status& s) const {
    return cli::FromStatus(what, s, server);
  }
  // "Bearer <token>" and the account id from the stored portal session; a usage failure saying
  // to log in when there is none.
  Result LoadBearer(std::string* bearer, std::string* account_id) const;
};

// A parsed command, run once the channel is up.
using Command = std::function<Result(Context&)>;

// A usage failure "--<flag> is required" when `value` is empty or the flag was given bare.
Result Required(std::string_view flag, const std::string& value);

// Seconds in `text` (a flag's value) into *seconds: false unless a number, at least `min`.
bool ParseSeconds(const std::string& text, int min, int* seconds);

// "2026-01-31 12:00:00 UTC".
std::string FormatTime(const google::protobuf::Timestamp& t);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_CONTEXT_H_

// The stacks of the sections present in a config, built in the order of their factories and
// served on one gRPC listener, with the channels between them connected. qsignd and the
// per-service binaries run one (common/daemon/daemon.h); tests run one on port 0 with a test
// token, database and clock, so that a service is constructed in one place.
#ifndef QSIGN_COMMON_DAEMON_STACK_SERVER_H_
#define QSIGN_COMMON_DAEMON_STACK_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "common/daemon/stack.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "hsm/hsm.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign::daemon {

class StackServer {
 public:
  struct Options {
    // Not owned; each outlives the StackServer. tokens and pool may be nullptr when only the
    // gateway runs.
    const config::v1::ServerConfig* config = nullptr;
    const hsm::HsmTokens* tokens = nullptr;
    db::Pool* pool = nullptr;
    const Clock* clock = &RealClock::Get();
    std::shared_ptr<grpc::ServerCredentials> server_credentials;    // nullptr: plaintext.
    std::shared_ptr<grpc::ChannelCredentials> channel_credentials;  // nullptr: plaintext.
    std::string own_name;              // With TLS: this process's DNS name (tls::OwnIdentity).
    std::string component = "qsignd";  // Names the log lines.
  };

  // Builds the stack of every section present that has a factory, listens on config.listen()
  // (when a stack serves gRPC), connects the channels to this process, then Start()s each
  // stack. A failure is logged naming the stack ("signer") or "listen", and returned.
  static absl::StatusOr<std::unique_ptr<StackServer>> Start(
      const Options& options, absl::Span<const StackFactory> factories);
  ~StackServer();  // Shutdown(zero) if not done.
  StackServer(const StackServer&) = delete;
  StackServer& operator=(const StackServer&) = delete;

  GrpcServer* server() { return server_.get(); }  // nullptr when no stack serves gRPC.
  int port() const;                               // 0 without a listener.
  std::string target() const;                     // Its loopback target, "" without one.
  Stack* stack(std::string_view section);         // nullptr when not built.
  // Full names of the gRPC services served ("qsign.v1.Signer"), in build order.
  const std::vector<std::string>& service_names() const { return service_names_; }
  // The HSM key the health probe of `role`'s token reads: the key named by the stack of that
  // role's section ("" for none).
  std::string hsm_probe_key(std::string_view role) const;

  // Stop() on every stack in reverse build order (so a front end drains before the streams it
  // calls end), then gRPC shutdown, finishing calls in flight within `grace`. Once.
  void Shutdown(absl::Duration grace);

 private:
  StackServer(const Options& options);

  const std::string component_;
  Channels channels_;
  std::vector<std::pair<std::string_view, std::unique_ptr<Stack>>> stacks_;  // By section.
  std::vector<std::string> service_names_;
  std::unique_ptr<GrpcServer> server_;  // After stacks_: stops before the services go.
  bool shut_down_ = false;
};

}  // namespace qsign::daemon

#endif  // QSIGN_COMMON_DAEMON_STACK_SERVER_H_

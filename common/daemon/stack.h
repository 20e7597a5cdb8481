// The interface between the daemon runtime and a service: each services/<svc>/stack.h exports a
// StackFactory that builds its service from its own config section and a StackEnv, and the
// runtime (common/daemon/stack_server.h) serves, starts and stops what it built.
#ifndef QSIGN_COMMON_DAEMON_STACK_H_
#define QSIGN_COMMON_DAEMON_STACK_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/daemon/deferred_channel.h"
#include "common/db/pg.h"
#include "hsm/hsm.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign::daemon {

// Channels from this process to the services it calls: its own listener for a service whose
// section is in the config (set by ConnectSelf once listening), peers.<name> otherwise.
class Channels {
 public:
  // `credentials`: nullptr for plaintext. `own_name`: with TLS, this process's DNS name, which
  // its certificate names instead of the loopback address.
  Channels(const config::v1::ServerConfig& config,
           std::shared_ptr<grpc::ChannelCredentials> credentials, std::string own_name = "");

  // "signer", "consent", "identity", "lifecycle".
  std::shared_ptr<const DeferredChannel> To(std::string_view service);
  // Once, after the listener is up.
  void ConnectSelf(const std::string& loopback_target);

 private:
  const config::v1::ServerConfig& config_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const std::string own_name_;
  std::map<std::string, std::shared_ptr<DeferredChannel>, std::less<>> self_;  // By service.
  std::map<std::string, std::shared_ptr<grpc::Channel>> peers_;                // By target.
  std::shared_ptr<grpc::Channel> self_channel_;  // Once ConnectSelf ran.
};

// What a stack is built from, valid while it is built (keep the pointers, not the StackEnv).
// Pointers are not owned and outlive the stack.
struct StackEnv {
  // The whole file: the stack's own section and the shared fields (operators_file,
  // services_file, create_missing_keys, database).
  const config::v1::ServerConfig& config;
  // The HSM tokens of this process by role (common/daemon/token_roles.h); nullptr without a
  // backend section (the gateway alone). A stack uses only its own role's token: Token(role).
  const hsm::HsmTokens* tokens = nullptr;
  db::Pool* pool = nullptr;  // nullptr without a backend section.
  const Clock* clock = nullptr;
  Channels* channels = nullptr;
  std::string_view component;  // Names the process's log lines ("qsignd", "qsign-signer").

  // The token of `role` ("signer", "consent", ...). FAILED_PRECONDITION naming hsm.token when
  // this process has none for it (the config validation makes that a bug).
  absl::StatusOr<hsm::Hsm*> Token(std::string_view role) const;
};

// One service built from its section.
class Stack {
 public:
  virtual ~Stack() = default;

  // A gRPC service and its full name ("qsign.v1.Signer"), served on the process's one listener.
  struct Served {
    std::string_view name;
    grpc::Service* service;
  };
  virtual std::vector<Served> services() { return {}; }
  // After the listener is up and the channels to this process are connected: background work.
  virtual void Start() {}
  // On SIGTERM, before gRPC shutdown (stacks in reverse order): end open streams, stop
  // background work and front ends that call into this process.
  virtual void Stop() {}
  // A key in its role's token this service relies on, read by the health probe; "" for none
  // (the probe then only checks that the token answers).
  virtual std::string hsm_probe_key() const { return ""; }
};

struct StackFactory {
  std::string_view section;  // "signer", "consent", "identity", "lifecycle", "gateway".
  absl::StatusOr<std::unique_ptr<Stack>> (*build)(const StackEnv& env);
};

}  // namespace qsign::daemon

#endif  // QSIGN_COMMON_DAEMON_STACK_H_

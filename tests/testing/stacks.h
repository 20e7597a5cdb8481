// Any subset of the qsign services on real gRPC in the test's process, built by the same
// services/<svc>/stack.h the daemon uses (through daemon::StackServer), so that a service is
// constructed in one place. The services share one listener on 127.0.0.1:0 and call each other
// on it, as in qsignd.
//
//   auto stacks = Stacks::Start(env(), {.services = {"identity", "consent"}});
//   auto identity = qsign::v1::Identity::NewStub((*stacks)->channel());
//
// The config is a laptop config (insecure_dev, keys created on first use) on the test's token
// and database, with the files the stacks read written to the token's directory: the operator
// kOperatorId and every service accept test_data.h's credentials, and each service presents
// ServiceSecret(<its name>); cheap PIN hashing. `configure` edits it before the stacks are built.
#ifndef QSIGN_TESTS_TESTING_STACKS_H_
#define QSIGN_TESTS_TESTING_STACKS_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/daemon/stack_server.h"
#include "qsign/config/v1/config.pb.h"
#include "tests/testing/service_env.h"

namespace qsign::testing {

struct StacksOptions {
  // Config sections to run: "signer", "consent", "identity", "lifecycle", "tsa", "gateway", "web"
  // (built in the daemon's order whatever the order here). gateway and web listen on 127.0.0.1
  // port 0: web::HttpPort(stacks->server().stack("web")), gateway::HttpPort(...); the gateway
  // reads <token dir>/relying-parties (empty; write yours before Start).
  std::vector<std::string> services;
  const Clock* clock = &RealClock::Get();
  // Called on the config after the defaults above, before the stacks are built.
  std::function<void(config::v1::ServerConfig&)> configure;
};

class Stacks {
 public:
  // On `env`'s Hsm, pool and database (not owned; must outlive the Stacks).
  static absl::StatusOr<std::unique_ptr<Stacks>> Start(ServiceEnv& env, StacksOptions options);
  ~Stacks();  // Shutdown(zero) if not done.
  Stacks(const Stacks&) = delete;
  Stacks& operator=(const Stacks&) = delete;

  // A channel to the listener that serves every service started.
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // Another channel to it on a connection of its own (e.g. one per kind of client in a
  // benchmark, as separate processes would have).
  std::shared_ptr<grpc::Channel> NewChannel() const;
  std::string target() const { return server_->target(); }
  const config::v1::ServerConfig& config() const { return config_; }
  daemon::StackServer& server() { return *server_; }

  // Stops every stack (consent's streams end) and the listener, finishing calls in flight
  // within `grace`. Once; later calls do nothing.
  void Shutdown(absl::Duration grace = absl::Seconds(2));

 private:
  Stacks() = default;

  config::v1::ServerConfig config_;  // The stacks hold a reference: declared before them.
  std::unique_ptr<daemon::StackServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_STACKS_H_

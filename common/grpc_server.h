// Starting and stopping a gRPC server the same way in every service, qsignd and the tests.
#ifndef QSIGN_COMMON_GRPC_SERVER_H_
#define QSIGN_COMMON_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics.h"

namespace qsign {

struct GrpcServerOptions {
  // host:port; port 0 picks a free port (tests).
  std::string listen_address = "127.0.0.1:0";
  // Largest request accepted; a SignHash batch of 1000 SHA-512 hashes is ~70 KiB.
  int max_receive_message_bytes = 4 << 20;
  // Worker threads of the synchronous server (0 = gRPC's default).
  int max_threads = 0;
  // Idle worker threads the synchronous server keeps waiting for the next call. gRPC's default
  // (2) ends every thread beyond two as soon as its call returns and starts a new one for the
  // next: under concurrent calls most CPU went to creating and ending threads.
  int idle_threads = 32;
  // Server reflection (grpcurl and friends); off unless asked for.
  bool reflection = false;
  // Where per-RPC counts and latencies go; nullptr: metrics::Registry::Global().
  metrics::Registry* metrics = nullptr;
  // Mutual TLS and allow-lists (tls::ServerCredentialsFromConfig, common/tls.h); nullptr:
  // plaintext, for insecure_dev and tests only.
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

class GrpcServer {
 public:
  // `services` are not owned and must outlive the server.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const GrpcServerOptions& options, const std::vector<grpc::Service*>& services);
  ~GrpcServer();

  int port() const { return port_; }
  // "127.0.0.1:<port>" for clients on this machine.
  std::string local_target() const;
  // Stops accepting, lets in-flight calls finish until `grace` has passed, then cancels them.
  void Shutdown(absl::Duration grace);
  // grpc.health.v1 status of the server as a whole ("" service) and of every service on it.
  void SetServing(bool serving);
  void Wait();

 private:
  GrpcServer(std::unique_ptr<grpc::Server> server, int port)
      : server_(std::move(server)), port_(port) {}
  std::unique_ptr<grpc::Server> server_;
  int port_;
};

}  // namespace qsign

#endif  // QSIGN_COMMON_GRPC_SERVER_H_

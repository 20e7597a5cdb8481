// The CSC gateway's HTTP edge (the one HTTP server, common/http/server.h): POST /csc/v2/<method> ->
// Gateway::Handle, and the errors the HTTP layer finds itself (body over the limit: 413, unknown
// path: 404, wrong HTTP method: 405), all with CSC JSON error bodies. GET /healthz answers 200
// while it serves. Every response carries X-Request-Id: the request's own when well-formed, else a
// fresh one; it is in the gateway's log lines and forwarded to the services (common/request_id.h).
// Plain HTTP: TLS is terminated in front of it (ingress, proxy), as in deploy/.
#ifndef QSIGN_SERVICES_GATEWAY_GATEWAY_HTTP_H_
#define QSIGN_SERVICES_GATEWAY_GATEWAY_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/server.h"
#include "services/gateway/gateway.h"

namespace qsign::gateway {

struct GatewayHttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (tests).
  // Worker threads; credentials/authorize holds one for up to authorize_wait.
  int threads = 64;
  // Largest request body; larger ones get 413 before they are read.
  size_t max_body_bytes = 256 * 1024;
  int read_timeout_seconds = 10;
  // "https://csc.example.rs" as clients reach the gateway (info.oauth2); empty: taken from the
  // request's Host header.
  std::string public_url;
  // HTTPS with this PEM certificate chain and key (config gateway.http_cert_file/_key_file);
  // both empty: plain HTTP (insecure_dev, or TLS terminated in front).
  std::string cert_file;
  std::string key_file;
  http::ConnectionLimits limits;
};

class GatewayHttpServer {
 public:
  // `gateway` is not owned and must outlive the server.
  static absl::StatusOr<std::unique_ptr<GatewayHttpServer>> Start(const GatewayHttpOptions& options,
                                                                  const Gateway* gateway);
  GatewayHttpServer(const GatewayHttpServer&) = delete;
  GatewayHttpServer& operator=(const GatewayHttpServer&) = delete;

  int port() const { return server_->port(); }
  // "http(s)://<host>:<port>".
  std::string base_url() const { return server_->base_url(); }

 private:
  explicit GatewayHttpServer(std::unique_ptr<http::Server> server) : server_(std::move(server)) {}
  std::unique_ptr<http::Server> server_;  // Stops and joins when destroyed.
};

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_GATEWAY_HTTP_H_

// The lifecycle service's public HTTP listener for relying parties (no authentication):
//   POST /ocsp                 RFC 6960 request body (application/ocsp-request)
//   GET  /ocsp/<base64 url-encoded request>
//   GET  /crl/<ca>.crl         the CA's current CRL, DER (root, qualified, device)
//   GET  /ca/<ca>.crt          the CA's certificate, DER
// These are the URLs CaConfig::public_base_url puts into certificates.
#ifndef QSIGN_SERVICES_LIFECYCLE_STATUS_HTTP_H_
#define QSIGN_SERVICES_LIFECYCLE_STATUS_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/server.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ocsp.h"
#include "services/lifecycle/lifecycle.h"

namespace qsign::lifecycle {

struct StatusHttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (tests).
  int threads = 8;
  http::ConnectionLimits limits;
};

class StatusHttpServer {
 public:
  // None of the pointers is owned; all must outlive the server.
  static absl::StatusOr<std::unique_ptr<StatusHttpServer>> Start(const StatusHttpOptions& options,
                                                                 OcspResponder* ocsp,
                                                                 Lifecycle* lifecycle,
                                                                 const CaSet* cas);
  StatusHttpServer(const StatusHttpServer&) = delete;
  StatusHttpServer& operator=(const StatusHttpServer&) = delete;

  int port() const { return server_->port(); }
  // "http://127.0.0.1:<port>".
  std::string base_url() const { return server_->base_url(); }

 private:
  explicit StatusHttpServer(std::unique_ptr<http::Server> server) : server_(std::move(server)) {}
  std::unique_ptr<http::Server> server_;  // Stops and joins when destroyed.
};

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_STATUS_HTTP_H_

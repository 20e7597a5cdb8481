// Serves GET /metrics (Prometheus text format) from a Registry on its own HTTP or HTTPS port
// (the one HTTP server, common/http/server.h).
#ifndef QSIGN_COMMON_METRICS_HTTP_H_
#define QSIGN_COMMON_METRICS_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/server.h"
#include "common/metrics.h"

namespace qsign::metrics {

// HTTPS for /metrics: the same files as config.v1.Tls, errors name those fields.
struct MetricsTlsFiles {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;   // PEM private key
  // PEM CA(s) a scraper's client certificate must chain to; empty: no client certificate asked.
  std::string client_ca_file;
};

class MetricsHttpServer {
 public:
  // `listen` is host:port; port 0 picks a free one. `registry` is not owned. Plain HTTP
  // (insecure_dev only).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& listen,
                                                                  Registry* registry);
  // HTTPS (TLS 1.2+), requiring a verified client certificate when tls.client_ca_file is set.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& listen,
                                                                  Registry* registry,
                                                                  const MetricsTlsFiles& tls);
  int port() const { return server_->port(); }

 private:
  explicit MetricsHttpServer(std::unique_ptr<http::Server> server) : server_(std::move(server)) {}
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Serve(const std::string& listen,
                                                                  Registry* registry,
                                                                  const MetricsTlsFiles* tls);
  std::unique_ptr<http::Server> server_;
};

}  // namespace qsign::metrics

#endif  // QSIGN_COMMON_METRICS_HTTP_H_

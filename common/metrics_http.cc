#include "common/metrics_http.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace qsign::metrics {

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, Registry* registry) {
  return Serve(listen, registry, nullptr);
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, Registry* registry, const MetricsTlsFiles& tls) {
  return Serve(listen, registry, &tls);
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Serve(
    const std::string& listen, Registry* registry, const MetricsTlsFiles* tls) {
  auto host_port = http::ParseHostPort(listen);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: '", listen, "' is not host:port"));
  }
  http::ServerOptions options{.name = "metrics",
                              .host = host_port->first,
                              .port = host_port->second,
                              .tls = tls != nullptr};
  if (tls != nullptr) {
    options.tls_files = {.cert_file = tls->cert_file,
                         .key_file = tls->key_file,
                         .client_ca_file = tls->client_ca_file};
  }
  auto server = http::StartServer(
      options, {{.method = "GET",
                 .pattern = "/metrics",
                 .handler = [registry](const http::Request&, http::Response& res) {
                   res.SetContent(registry->Render(), "text/plain; version=0.0.4");
                 }}});
  // "HTTP: cannot listen on <address> (...)" when it is taken.
  if (!server.ok()) return server.status();
  Log(LogLevel::kInfo, "metrics", "serving /metrics",
      {{"address", host_port->first}, {"port", absl::StrCat((*server)->port())}});
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(*std::move(server)));
}

}  // namespace qsign::metrics

#include "services/lifecycle/status_http.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::lifecycle {
namespace {

constexpr size_t kMaxOcspRequest = 64 * 1024;

bool IsCrlIssuer(std::string_view name) {
  return name == kRootCa || name == kQualifiedCa || name == kDeviceCa;
}

void OcspReply(http::Response& res, std::string der) {
  res.status = 200;
  res.SetContent(std::move(der), "application/ocsp-response");
}

}  // namespace

absl::StatusOr<std::unique_ptr<StatusHttpServer>> StatusHttpServer::Start(
    const StatusHttpOptions& options, OcspResponder* ocsp, Lifecycle* lifecycle, const CaSet* cas) {
  std::vector<http::Route> routes;
  routes.push_back(
      {.method = "POST",
       .pattern = "/ocsp",
       .handler = [ocsp](const http::Request& req,
                         http::Response& res) { OcspReply(res, ocsp->Respond(req.body)); },
       // A pre-signed answer goes out from the I/O thread, no worker involved.
       .quick =
           [ocsp](const http::Request& req, http::Response& res) {
             std::optional<std::string> cached = ocsp->CachedAnswer(req.body);
             if (!cached.has_value()) return false;
             OcspReply(res, *std::move(cached));
             return true;
           }});
  routes.push_back(
      {.method = "GET",
       .pattern = R"(/ocsp/(.+))",
       .handler = [ocsp](const http::Request& req, http::Response& res) {
         // RFC 6960 A.1: base64 of the DER, URL-encoded (the path is decoded).
         std::string der;
         if (!absl::Base64Unescape(Av(req.matches[1]), &der)) {
           OcspReply(res, OcspResponder::ErrorResponse(OcspResponseStatus::kMalformedRequest));
           return;
         }
         OcspReply(res, ocsp->Respond(der));
       }});
  routes.push_back({.method = "GET",
                    .pattern = R"(/crl/([a-z-]+)\.crl)",
                    .handler = [lifecycle](const http::Request& req, http::Response& res) {
                      const std::string name(req.matches[1]);
                      if (!IsCrlIssuer(name)) {
                        res.status = 404;
                        return;
                      }
                      auto crl = lifecycle->CurrentCrl(name);
                      if (!crl.ok()) {
                        Log(LogLevel::kError, "lifecycle-http", "CRL unavailable",
                            {{"ca", name}, {"status", crl.status().ToString()}});
                        res.status = 503;
                        return;
                      }
                      res.SetContent(*std::move(crl), "application/pkix-crl");
                    }});
  routes.push_back({.method = "GET",
                    .pattern = R"(/ca/([a-z-]+)\.crt)",
                    .handler = [cas](const http::Request& req, http::Response& res) {
                      const std::string name(req.matches[1]);
                      const Ca* ca = IsCrlIssuer(name) ? cas->Find(name) : nullptr;
                      if (ca == nullptr) {
                        res.status = 404;
                        return;
                      }
                      res.SetContent(ca->cert_der(), "application/pkix-cert");
                    }});
  // Small request, small response: no Nagle delay, and keep connections for many requests.
  auto server = http::StartServer({.name = "lifecycle-http",
                                   .host = options.host,
                                   .port = options.port,
                                   .threads = options.threads,
                                   .limits = options.limits,
                                   .max_body_bytes = kMaxOcspRequest,
                                   .read_timeout = absl::Seconds(5),
                                   .write_timeout = absl::Seconds(5),
                                   .tcp_nodelay = true,
                                   .keep_alive_max_requests = 10000},
                                  std::move(routes));
  if (!server.ok()) return server.status();
  return std::unique_ptr<StatusHttpServer>(new StatusHttpServer(*std::move(server)));
}

}  // namespace qsign::lifecycle

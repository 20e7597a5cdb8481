#include "services/lifecycle/status_http.h"

#include <httplib.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::lifecycle {
namespace {

constexpr size_t kMaxOcspRequest = 64 * 1024;

bool IsCrlIssuer(const std::string& name) {
  return name == kRootCa || name == kQualifiedCa || name == kDeviceCa;
}

}  // namespace

absl::StatusOr<std::unique_ptr<StatusHttpServer>> StatusHttpServer::Start(
    const StatusHttpOptions& options, OcspResponder* ocsp, Lifecycle* lifecycle, const CaSet* cas) {
  auto out = std::unique_ptr<StatusHttpServer>(new StatusHttpServer());
  out->server_ = std::make_unique<httplib::Server>();
  out->host_ = options.host;
  httplib::Server& svr = *out->server_;
  const int threads = options.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(kMaxOcspRequest);
  svr.set_read_timeout(5, 0);
  // Small request, small response: no Nagle delay, and keep connections for many requests.
  svr.set_tcp_nodelay(true);
  svr.set_keep_alive_max_count(10000);
  svr.set_write_timeout(5, 0);

  auto ocsp_reply = [](httplib::Response& res, std::string der) {
    res.status = 200;
    res.set_content(std::move(der), "application/ocsp-response");
  };
  svr.Post("/ocsp", [ocsp, ocsp_reply](const httplib::Request& req, httplib::Response& res) {
    ocsp_reply(res, ocsp->Respond(req.body));
  });
  svr.Get(R"(/ocsp/(.+))", [ocsp, ocsp_reply](const httplib::Request& req, httplib::Response& res) {
    // RFC 6960 A.1: base64 of the DER, URL-encoded (httplib has decoded the path).
    std::string der;
    if (!absl::Base64Unescape(req.matches[1].str(), &der)) {
      ocsp_reply(res, OcspResponder::ErrorResponse(OcspResponseStatus::kMalformedRequest));
      return;
    }
    ocsp_reply(res, ocsp->Respond(der));
  });
  svr.Get(R"(/crl/([a-z-]+)\.crl)",
          [lifecycle](const httplib::Request& req, httplib::Response& res) {
            const std::string name = req.matches[1].str();
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
            res.set_content(*std::move(crl), "application/pkix-crl");
          });
  svr.Get(R"(/ca/([a-z-]+)\.crt)", [cas](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1].str();
    const Ca* ca = IsCrlIssuer(name) ? cas->Find(name) : nullptr;
    if (ca == nullptr) {
      res.status = 404;
      return;
    }
    res.set_content(ca->cert_der(), "application/pkix-cert");
  });

  if (options.port == 0) {
    out->port_ = svr.bind_to_any_port(options.host);
  } else {
    out->port_ = svr.bind_to_port(options.host, options.port) ? options.port : -1;
  }
  if (out->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("HTTP: cannot listen on ", options.host, ":", options.port));
  }
  out->thread_ = std::thread([srv = out->server_.get()] { srv->listen_after_bind(); });
  return out;
}

StatusHttpServer::~StatusHttpServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string StatusHttpServer::base_url() const {
  return absl::StrCat("http://", host_, ":", port_);
}

}  // namespace qsign::lifecycle

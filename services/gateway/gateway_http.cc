#include "services/gateway/gateway_http.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::gateway {
namespace {

constexpr std::string_view kPrefix = "/csc/v2/";

void Write(const CscReply& reply, http::Response& res) {
  res.status = reply.http_status;
  for (const auto& [name, value] : reply.headers) res.SetHeader(name, value);
  res.SetContent(reply.body, reply.content_type.empty() ? "application/json" : reply.content_type);
}

SignInRequest SignInOf(const http::Request& req) {
  return SignInRequest{.params = req.params,
                       .body = req.body,
                       .accept_language = req.Header("Accept-Language"),
                       .remote_address = req.remote_address,
                       .user_agent = req.Header("User-Agent")};
}

// The method part of a /csc/v2/ path, for error replies and logs.
std::string_view MethodOf(std::string_view path) {
  return path.substr(0, kPrefix.size()) == kPrefix ? path.substr(kPrefix.size()) : path;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayHttpServer>> GatewayHttpServer::Start(
    const GatewayHttpOptions& options, const Gateway* gateway) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS: certificate and key go together");
  }
  const bool tls = !options.cert_file.empty();
  const std::string scheme = tls ? "https" : "http";
  const std::string public_url = options.public_url;
  const size_t max_body = options.max_body_bytes;

  std::vector<http::Route> routes;
  // oauth2/authorize's sign-in pages (a browser's, not a relying party's), before the CSC
  // methods: the first route that matches serves.
  routes.push_back({.method = "GET",
                    .pattern = "/csc/v2/oauth2/authorize",
                    .handler = [gateway](const http::Request& req, http::Response& res) {
                      Write(gateway->SignInPage(SignInOf(req)), res);
                    }});
  routes.push_back({.method = "POST",
                    .pattern = "/csc/v2/oauth2/authorize",
                    .handler = [gateway](const http::Request& req, http::Response& res) {
                      Write(gateway->SignInStart(SignInOf(req)), res);
                    }});
  routes.push_back({.method = "POST",
                    .pattern = "/csc/v2/oauth2/authorize/poll",
                    .handler = [gateway](const http::Request& req, http::Response& res) {
                      Write(gateway->SignInPoll(SignInOf(req)), res);
                    }});
  routes.push_back({.method = "GET",
                    .pattern = "/csc/v2/oauth2/signin.js",
                    .handler = [](const http::Request&, http::Response& res) {
                      res.SetHeader("X-Content-Type-Options", "nosniff");
                      res.SetContent(std::string(Gateway::SignInScript()),
                                     "text/javascript; charset=utf-8");
                    }});
  routes.push_back(
      {.method = "POST",
       .pattern = R"(/csc/v2/(.+))",
       .handler = [gateway, public_url, scheme](const http::Request& req, http::Response& res) {
         const std::string_view method = req.matches[1];
         if (req.HeaderCount("Authorization") > 1) {
           Write(gateway->ErrorReply(method,
                                     absl::InvalidArgumentError("Malformed authorization header: "
                                                                "given more than once")),
                 res);
           return;
         }
         CscRequest request{.authorization = req.Header("Authorization"),
                            .content_type = req.Header("Content-Type"),
                            .body = req.body,
                            .remote_address = req.remote_address,
                            .base_url = public_url.empty()
                                            ? absl::StrCat(scheme, "://", Av(req.Header("Host")))
                                            : public_url};
         Write(gateway->Handle(method, request), res);
       }});
  // Every CSC method is a POST.
  const auto not_allowed = [gateway](const http::Request& req, http::Response& res) {
    CscReply reply = gateway->ErrorReply(
        MethodOf(req.path), CscStatus(absl::StatusCode::kInvalidArgument, "invalid_request",
                                      "CSC methods are called with POST", 405));
    reply.headers.emplace_back("Allow", "POST");
    Write(reply, res);
  };
  for (const char* method : {"GET", "PUT", "DELETE", "PATCH"}) {
    routes.push_back({.method = method, .pattern = R"(/csc/v2/.*)", .handler = not_allowed});
  }
  routes.push_back({.method = "GET",
                    .pattern = "/healthz",
                    .handler = [](const http::Request&, http::Response& res) {
                      res.SetContent("{\"status\":\"ok\"}", "application/json");
                    }});

  http::ServerOptions server_options{
      .name = "gateway-http",
      .host = options.host,
      .port = options.port,
      .tls = tls,
      .tls_files = {.cert_file = options.cert_file,
                    .key_file = options.key_file,
                    .cert_field = "gateway.http_cert_file",
                    .key_field = "gateway.http_key_file"},
      .threads = options.threads,
      .limits = options.limits,
      .max_body_bytes = options.max_body_bytes,
      .read_timeout = absl::Seconds(options.read_timeout_seconds),
      .write_timeout = absl::Seconds(options.read_timeout_seconds),
      .request_ids = true,
      // What the server itself refuses (unknown path, body over the limit, malformed HTTP, a
      // failed handler) also gets a CSC error body.
      .on_error = [gateway, max_body](const http::Request& req, http::Response& res) {
        absl::Status status;
        switch (res.status) {
          case 404:
            status = CscStatus(absl::StatusCode::kNotFound, "invalid_request",
                               "No such endpoint; CSC methods are POST /csc/v2/<method>", 404);
            break;
          case 413:
            status = CscStatus(absl::StatusCode::kInvalidArgument, "invalid_request",
                               absl::StrCat("The request body is larger than ", max_body, " bytes"),
                               413);
            break;
          default:
            status = CscStatus(res.status >= 500 ? absl::StatusCode::kInternal
                                                 : absl::StatusCode::kInvalidArgument,
                               res.status >= 500 ? "server_error" : "invalid_request",
                               res.status >= 500 ? "Internal error"
                                                 : "Malformed HTTP request (a POST needs a "
                                                   "Content-Length, 0 for an empty body)",
                               res.status);
            break;
        }
        Write(gateway->ErrorReply(MethodOf(req.path), status), res);
      }};
  auto server = http::StartServer(server_options, std::move(routes));
  if (!server.ok()) return server.status();
  return std::unique_ptr<GatewayHttpServer>(new GatewayHttpServer(*std::move(server)));
}

}  // namespace qsign::gateway

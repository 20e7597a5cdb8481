#include "services/gateway/gateway_http.h"

#include <httplib.h>

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/request_id.h"
#include "common/strings.h"

namespace qsign::gateway {
namespace {

constexpr char kPrefix[] = "/csc/v2/";

// The request being handled on this worker thread, from routing until its response is written.
thread_local std::optional<request_id::ScopedRequestId> request_scope;

void Write(const CscReply& reply, httplib::Response& res) {
  res.status = reply.http_status;
  for (const auto& [name, value] : reply.headers) res.set_header(name, value);
  res.set_content(reply.body, "application/json");
}

// The method part of a /csc/v2/ path, for error replies and logs.
std::string MethodOf(const std::string& path) {
  return path.rfind(kPrefix, 0) == 0 ? path.substr(sizeof(kPrefix) - 1) : path;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayHttpServer>> GatewayHttpServer::Start(
    const GatewayHttpOptions& options, const Gateway* gateway) {
  auto out = std::unique_ptr<GatewayHttpServer>(new GatewayHttpServer());
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS: certificate and key go together");
  }
  if (options.cert_file.empty()) {
    out->server_ = std::make_unique<httplib::Server>();
  } else {
    auto https = std::make_unique<httplib::SSLServer>(options.cert_file.c_str(),
                                                      options.key_file.c_str());
    if (!https->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "HTTPS: cannot use certificate ", options.cert_file, " with key ", options.key_file));
    }
    out->server_ = std::move(https);
    out->scheme_ = "https";
  }
  out->host_ = options.host;
  httplib::Server& svr = *out->server_;
  const int threads = options.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(options.max_body_bytes);
  svr.set_read_timeout(options.read_timeout_seconds, 0);
  svr.set_write_timeout(options.read_timeout_seconds, 0);
  const size_t max_body = options.max_body_bytes;
  const std::string public_url = options.public_url;

  // Every request gets an id (X-Request-Id when well-formed, else a fresh one): in the thread's log
  // lines, forwarded to the services, echoed in the response.
  svr.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    std::string id = request_id::AcceptOrGenerate(req.get_header_value(request_id::kHttpHeader));
    res.set_header(request_id::kHttpHeader, id);
    request_scope.emplace(std::move(id));
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Runs before every response is written, routed or not (a 413 is refused before routing).
  svr.set_post_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    request_scope.reset();
    if (!res.has_header(request_id::kHttpHeader)) {
      res.set_header(request_id::kHttpHeader,
                     request_id::AcceptOrGenerate(req.get_header_value(request_id::kHttpHeader)));
    }
  });

  svr.Post(R"(/csc/v2/(.+))", [gateway, public_url, scheme = out->scheme_](
                                  const httplib::Request& req, httplib::Response& res) {
    const std::string authorization = req.get_header_value("Authorization");
    const std::string content_type = req.get_header_value("Content-Type");
    if (req.get_header_value_count("Authorization") > 1) {
      Write(gateway->ErrorReply(req.matches[1].str(),
                                absl::InvalidArgumentError("Malformed authorization header: "
                                                           "given more than once")),
            res);
      return;
    }
    CscRequest request{.authorization = authorization,
                       .content_type = content_type,
                       .body = req.body,
                       .remote_address = req.remote_addr,
                       .base_url = public_url.empty()
                                       ? absl::StrCat(scheme, "://", req.get_header_value("Host"))
                                       : public_url};
    Write(gateway->Handle(req.matches[1].str(), request), res);
  });
  // Every CSC method is a POST.
  const auto not_allowed = [gateway](const httplib::Request& req, httplib::Response& res) {
    CscReply reply = gateway->ErrorReply(
        MethodOf(req.path), CscStatus(absl::StatusCode::kInvalidArgument, "invalid_request",
                                      "CSC methods are called with POST", 405));
    reply.headers.emplace_back("Allow", "POST");
    Write(reply, res);
  };
  svr.Get(R"(/csc/v2/.*)", not_allowed);
  svr.Put(R"(/csc/v2/.*)", not_allowed);
  svr.Delete(R"(/csc/v2/.*)", not_allowed);
  svr.Patch(R"(/csc/v2/.*)", not_allowed);
  svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });

  // What httplib itself refuses (unknown path, body over the limit, malformed HTTP) also gets a
  // CSC error body.
  svr.set_error_handler(httplib::Server::HandlerWithResponse(
      [gateway, max_body](const httplib::Request& req,
                          httplib::Response& res) -> httplib::Server::HandlerResponse {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
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
        return httplib::Server::HandlerResponse::Handled;
      }));
  // A safety net only: the gateway does not throw, but nothing from a client may crash it.
  svr.set_exception_handler(
      [gateway](const httplib::Request& req, httplib::Response& res, const std::exception_ptr& ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        Write(gateway->ErrorReply(MethodOf(req.path), absl::InternalError(what)), res);
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
  out->thread_ = std::thread([srv = out->server_.get(), done = &out->listen_returned_] {
    srv->listen_after_bind();
    done->store(true);
  });
  return out;
}

GatewayHttpServer::~GatewayHttpServer() {
  if (server_) {
    // stop() is a no-op until the listener runs: let it start first (it does within
    // microseconds unless listening failed).
    for (int i = 0; i < 5000 && !server_->is_running() && !listen_returned_.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    server_->stop();
  }
  if (thread_.joinable()) thread_.join();
}

std::string GatewayHttpServer::base_url() const {
  return absl::StrCat(scheme_, "://", host_, ":", port_);
}

}  // namespace qsign::gateway

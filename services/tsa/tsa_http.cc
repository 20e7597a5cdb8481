#include "services/tsa/tsa_http.h"

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/strings.h"

namespace qsign::tsa {
namespace {

constexpr char kReplyType[] = "application/timestamp-reply";

void Reply(http::Response& res, TimestampReply reply) {
  res.SetContent(std::move(reply.der), kReplyType);
  res.SetHeader("Cache-Control", "no-store");
}

}  // namespace

absl::StatusOr<std::unique_ptr<http::Server>> StartTsaHttp(const TsaHttpOptions& options,
                                                           TimestampAuthority* authority) {
  std::vector<http::Route> routes;
  routes.push_back({.method = "POST",
                    .pattern = "/tsa",
                    .handler = [authority](const http::Request& req, http::Response& res) {
                      res.status = 200;
                      const std::string type =
                          absl::AsciiStrToLower(Av(req.Header("Content-Type")));
                      if (!absl::StartsWith(type, "application/timestamp-query")) {
                        Reply(res, TimestampAuthority::Rejection(
                                       FailureInfo::kBadRequest,
                                       "Content-Type: application/timestamp-query expected"));
                        return;
                      }
                      Reply(res, authority->Respond(req.body));
                    }});
  return http::StartServer(
      {.name = "tsa-http",
       .host = options.host,
       .port = options.port,
       .threads = options.threads,
       .limits = options.limits,
       .max_body_bytes = kMaxQueryBytes,
       .tcp_nodelay = true,
       .keep_alive_max_requests = 100,
       .on_error =
           [](const http::Request&, http::Response& res) {
             if (res.status == 413) {
               Reply(res, TimestampAuthority::Rejection(FailureInfo::kBadDataFormat,
                                                        "TimeStampReq larger than 16384 bytes"));
             }
           }},
      std::move(routes));
}

}  // namespace qsign::tsa

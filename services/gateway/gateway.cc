#include "services/gateway/gateway.h"

#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/log.h"
#include "common/strings.h"
#include "services/gateway/errors.h"
#include "services/gateway/result.h"

namespace qsign::gateway {
namespace {

// CSC API v2 methods (and the OAuth 2.0 endpoints it defines) that are not implemented: 501.
bool IsKnownUnimplemented(std::string_view method) {
  static const auto* methods =
      new std::set<std::string, std::less<>>{"auth/login",
                                             "auth/revoke",
                                             "credentials/extendTransaction",
                                             "credentials/getChallenge",
                                             "credentials/sendOTP",
                                             "credentials/create",
                                             "credentials/delete",
                                             "signatures/signPolling",
                                             "signatures/timestamp",
                                             "oauth2/pushed_authorize",
                                             "oauth2/revoke"};
  return methods->contains(method);
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::New(Backend* backend,
                                                      RelyingPartyTable relying_parties,
                                                      std::unique_ptr<TokenSealer> tokens,
                                                      const Clock* clock, GatewayConfig config) {
  if (backend == nullptr || tokens == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("gateway: backend, tokens and clock are required");
  }
  if (config.token_lifetime <= absl::ZeroDuration() ||
      config.authorize_wait < absl::ZeroDuration() ||
      config.authorize_check_wait < absl::ZeroDuration() || config.max_hashes < 1) {
    return absl::InvalidArgumentError("gateway: lifetimes and waits must not be negative");
  }
  return std::unique_ptr<Gateway>(new Gateway(backend, std::move(relying_parties),
                                              std::move(tokens), clock, std::move(config)));
}

CscReply Gateway::Handle(std::string_view method, const CscRequest& request) const {
  auto result = Dispatch(method, request);
  if (!result.ok()) return ErrorReply(method, result.status());
  CscReply reply{.http_status = result->http_status,
                 .body = Dump(result->body),
                 .headers = std::move(result->headers)};
  // Tokens and SADs must not be cached by anyone (RFC 6749 §5.1); no CSC answer should be.
  reply.headers.emplace_back("Cache-Control", "no-store");
  return reply;
}

CscReply Gateway::ErrorReply(std::string_view method, const absl::Status& status) const {
  const CscError error = ToCscError(status);
  if (error.http_status >= 500 && error.http_status != 501) {
    Log(LogLevel::kError, "gateway", "request failed",
        {{"method", method.substr(0, 64)}, {"status", status.ToString()}});
  }
  CscReply reply{
      .http_status = error.http_status,
      .body = Dump(Json{{"error", error.error}, {"error_description", error.description}})};
  if (error.http_status == 401) {
    reply.headers.emplace_back(
        "WWW-Authenticate",
        error.error == "invalid_client"
            ? std::string("Basic realm=\"qsign\"")
            : absl::StrCat("Bearer realm=\"qsign\", error=\"", error.error, "\""));
  }
  reply.headers.emplace_back("Cache-Control", "no-store");
  return reply;
}

absl::StatusOr<Gateway::Result> Gateway::Dispatch(std::string_view method,
                                                  const CscRequest& request) const {
  if (method == "info") return Info(request);
  if (method == "oauth2/token") return Token(request);
  if (method == "credentials/list") return CredentialsList(request);
  if (method == "credentials/info") return CredentialsInfo(request);
  if (method == "credentials/authorize") return CredentialsAuthorize(request);
  if (method == "credentials/authorizeCheck") return CredentialsAuthorizeCheck(request);
  if (method == "signatures/signHash") return SignaturesSignHash(request);
  if (method == "signatures/timestamp" && config_.timestamps) return SignaturesTimestamp(request);
  if (method == "signatures/signDoc") return SignaturesSignDoc(request);
  if (IsKnownUnimplemented(method)) {
    return absl::UnimplementedError(
        absl::StrCat("Method ", Echo(method), " is not implemented; info lists the methods"));
  }
  return CscStatus(absl::StatusCode::kNotFound, "invalid_request",
                   "No such method; info lists the methods", 404);
}

absl::StatusOr<Gateway::Call> Gateway::Authenticate(const CscRequest& request) const {
  if (request.authorization.empty()) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "invalid_token",
                     "An access token is required: Authorization: Bearer <token from "
                     "oauth2/token>");
  }
  std::string_view token = request.authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (token.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(Av(token.substr(0, kBearer.size())), Av(kBearer))) {
    return absl::InvalidArgumentError("Malformed authorization header");
  }
  token.remove_prefix(kBearer.size());
  auto verified = tokens_->VerifyAccessToken(token, clock_->Now());
  if (verified.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "expired_token",
                     "The access token has expired; get a new one from oauth2/token");
  }
  if (!verified.ok()) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "invalid_token",
                     "The access token is not valid");
  }
  auto client = relying_parties_.Find(verified->client_id);
  if (!client) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "invalid_token",
                     "The access token's client is no longer registered");
  }
  // A client credentials token lives only while the operator allows the grant.
  if (verified->account_id.empty() && !client->client_credentials) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "invalid_token",
                     "The client may no longer use the client credentials grant");
  }
  return Call{.client = *std::move(client), .token = *std::move(verified)};
}

absl::StatusOr<Gateway::Call> Gateway::Begin(const CscRequest& request) const {
  auto call = Authenticate(request);
  if (!call.ok()) return call.status();
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  call->body = *std::move(body);
  return call;
}

absl::StatusOr<Gateway::Call> Gateway::BeginOnCredential(const CscRequest& request,
                                                         bool fetch_info) const {
  auto call = Begin(request);
  if (!call.ok()) return call.status();
  auto credential_id = CredentialIdParam(Params(call->body));
  if (!credential_id.ok()) return credential_id.status();
  call->credential_id = *std::move(credential_id);
  const bool user_bound = !call->token.account_id.empty();  // Not client credentials.
  if (user_bound && call->token.scope == "credential" &&
      call->credential_id != call->token.credential_id) {
    return InvalidParameter("credentialID", "no such credential");
  }
  if (!user_bound && !fetch_info) return call;
  qsign::v1::GetCredentialInfoRequest req;
  req.set_credential_id(call->credential_id);
  auto info = backend_->GetCredentialInfo(req);
  if (!info.ok()) return FromService("signer", info.status());
  if (user_bound && info->account_id() != call->token.account_id) {
    return InvalidParameter("credentialID", "no such credential");
  }
  call->credential = *std::move(info);
  return call;
}

}  // namespace qsign::gateway

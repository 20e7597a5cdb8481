// info and oauth2/token: what the gateway offers, and access tokens for relying parties (the
// OAuth 2.0 client credentials grant).
#include <openssl/crypto.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/echo.h"
#include "common/log.h"
#include "common/oids.h"
#include "common/strings.h"
#include "services/gateway/errors.h"
#include "services/gateway/gateway.h"
#include "services/gateway/params.h"
#include "services/gateway/result.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

constexpr char kSpecs[] = "2.0.0.2";

// The methods of CSC API v2 this gateway implements, as info lists them.
const std::vector<std::string>& ImplementedMethods() {
  static const auto* methods = new std::vector<std::string>{
      "credentials/list",           "credentials/info",    "credentials/authorize",
      "credentials/authorizeCheck", "signatures/signHash", "signatures/signDoc"};
  return *methods;
}

std::vector<std::string> Methods(bool timestamps) {
  std::vector<std::string> out = ImplementedMethods();
  if (timestamps) out.push_back("signatures/timestamp");
  return out;
}

}  // namespace

// ---- info ----

absl::StatusOr<Gateway::Result> Gateway::Info(const CscRequest& request) const {
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  Params p(*body);
  if (auto s = CheckOptionalText(p, "lang", 64); !s.ok()) return s;
  Json algos = Json::array();
  for (const SignOid& s : oid::SignOids()) algos.push_back(s.oid);
  Json out = {{"specs", kSpecs},
              {"name", config_.name},
              {"logo", config_.logo},
              {"region", config_.region},
              {"lang", config_.lang},
              {"description", config_.description},
              {"authType", Json::array({"oauth2code", "oauth2client"})},
              {"oauth2", absl::StrCat(request.base_url, "/csc/v2/")},
              {"asynchronousOperationMode", false},
              {"methods", Methods(config_.timestamps)},
              {"validationInfo", false},
              {"signAlgorithms", {{"algos", std::move(algos)}}},
              {"signature_formats", SignDocFormatsInfo()},
              {"conformance_levels", SignDocLevelsInfo(!config_.tsa_url.empty())}};
  return Result{.body = std::move(out)};
}

// ---- oauth2/token: the client credentials grant (RFC 6749 §4.4). ----

absl::StatusOr<Gateway::Result> Gateway::Token(const CscRequest& request) const {
  // Parameters: form-encoded as RFC 6749 says, or a JSON object as some CSC clients send.
  std::map<std::string, std::string> params;
  if (absl::StartsWithIgnoreCase(Av(request.content_type), "application/json")) {
    auto body = ParseJsonObject(request.body);
    if (!body.ok()) return body.status();
    for (const auto& [name, value] : body->items()) {
      if (value.is_null()) continue;
      if (!value.is_string()) return MissingParameter("string", name);
      params[name] = value.get<std::string>();
    }
  } else {
    auto form = ParseFormUrlEncoded(request.body);
    if (!form)
      return absl::InvalidArgumentError("Malformed application/x-www-form-urlencoded body");
    for (auto& [name, value] : *form) {
      if (!params.emplace(name, value).second) {
        return absl::InvalidArgumentError(absl::StrCat("Parameter ", Echo(name), " repeated"));
      }
    }
  }
  auto param = [&](const char* name) -> std::string_view {
    auto it = params.find(name);
    return it == params.end() ? std::string_view() : std::string_view(it->second);
  };

  const std::string_view grant_type = param("grant_type");
  if (grant_type.empty()) return absl::InvalidArgumentError("Missing parameter grant_type");
  if (grant_type != "client_credentials" && grant_type != "authorization_code") {
    return CscStatus(absl::StatusCode::kInvalidArgument, "unsupported_grant_type",
                     "Supported grants: authorization_code (with PKCE) and client_credentials");
  }
  const std::string_view scope = param("scope");
  if (grant_type == "client_credentials" && !scope.empty() && scope != "service") {
    return CscStatus(absl::StatusCode::kInvalidArgument, "invalid_scope",
                     "Only the scope \"service\" is supported");
  }

  // Client authentication: HTTP Basic (RFC 6749 §2.3.1) or client_id + client_secret in the
  // body, never both.
  std::string client_id, secret;
  const absl::Status bad_client = CscStatus(absl::StatusCode::kUnauthenticated, "invalid_client",
                                            "Client authentication failed");
  if (!request.authorization.empty()) {
    absl::string_view auth = Av(request.authorization);
    if (!absl::ConsumePrefix(&auth, "Basic ")) {
      return absl::InvalidArgumentError("Malformed authorization header: Basic expected");
    }
    if (!param("client_secret").empty()) {
      return absl::InvalidArgumentError("Use one client authentication method, not two");
    }
    auto decoded = DecodeBase64(Sv(auth));
    const size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError("Malformed authorization header");
    }
    auto id = PercentDecode(std::string_view(*decoded).substr(0, colon));
    auto pw = PercentDecode(std::string_view(*decoded).substr(colon + 1));
    if (!id || !pw) return absl::InvalidArgumentError("Malformed authorization header");
    client_id = *std::move(id);
    secret = *std::move(pw);
    if (!param("client_id").empty() && param("client_id") != client_id) {
      return absl::InvalidArgumentError("client_id differs from the authorization header's");
    }
  } else {
    client_id = std::string(param("client_id"));
    secret = std::string(param("client_secret"));
    if (client_id.empty()) return absl::InvalidArgumentError("Missing parameter client_id");
    if (secret.empty()) return bad_client;
  }
  auto client = relying_parties_.Authenticate(client_id, secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  if (!client) {
    Log(LogLevel::kInfo, "gateway", "client authentication failed",
        {{"client_id", IsValidClientId(client_id) ? std::string_view(client_id) : "(malformed)"},
         {"remote", request.remote_address}});
    return bad_client;
  }
  const absl::Time now = clock_->Now();
  TokenClaims claims{.client_id = client->client_id, .expires_at = now + config_.token_lifetime};
  if (grant_type == "client_credentials") {
    if (!client->client_credentials) {
      return CscStatus(absl::StatusCode::kInvalidArgument, "unauthorized_client",
                       "This client may not use the client_credentials grant; let the user sign "
                       "in with oauth2/authorize");
    }
  } else {
    // The authorization code grant with PKCE (RFC 6749 §4.1.3, RFC 7636 §4.6).
    const absl::Status bad_grant = CscStatus(absl::StatusCode::kInvalidArgument, "invalid_grant",
                                             "The code is invalid, expired, or not for this "
                                             "client, redirect_uri and code_verifier");
    auto code = tokens_->OpenCode(param("code"), now);
    if (!code.ok() || code->token.client_id != client->client_id ||
        code->redirect_uri != param("redirect_uri") ||
        !PkceMatches(param("code_verifier"), code->code_challenge)) {
      return bad_grant;
    }
    claims.account_id = code->token.account_id;
    claims.scope = code->token.scope;
    claims.credential_id = code->token.credential_id;
    claims.sad = code->token.sad;
  }
  auto token = tokens_->IssueAccessToken(claims);
  if (!token.ok()) return token.status();
  Json body = {{"access_token", *token},
               {"token_type", "Bearer"},
               {"expires_in", absl::ToInt64Seconds(config_.token_lifetime)}};
  if (grant_type == "authorization_code") body["scope"] = claims.scope;
  if (!claims.credential_id.empty()) body["credentialID"] = claims.credential_id;
  return Result{.body = std::move(body), .headers = {{"Pragma", "no-cache"}}};
}

}  // namespace qsign::gateway

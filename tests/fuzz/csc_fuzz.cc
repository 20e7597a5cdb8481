// Every CSC API v2 method of the gateway (services/gateway/gateway.h) with a fuzzed body, as a
// relying party sends it: JSON bodies, and the OAuth 2.0 token request as a form or JSON body.
// Byte 0 picks the method, byte 1 the Authorization header (a valid access token, the client's
// Basic credentials, none, or fuzzed bytes) and the content type; the rest is the body. The
// services behind are a fake that answers every call (one active credential, an approved
// authorization, one signature per hash), so the handlers run to the end.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/secret.h"
#include "nlohmann/json.hpp"
#include "services/gateway/backend.h"
#include "services/gateway/gateway.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/tokens.h"

namespace gw = ::qsign::gateway;
namespace pb = ::qsign::v1;

namespace {

constexpr std::string_view kMethods[] = {
    "info",
    "oauth2/token",
    "credentials/list",
    "credentials/info",
    "credentials/authorize",
    "credentials/authorizeCheck",
    "signatures/signHash",
    "signatures/signDoc",
    "oauth2/authorize",
    "nope",
};

class FakeBackend final : public gw::Backend {
 public:
  absl::StatusOr<pb::ListCredentialsResponse> ListCredentials(
      const pb::ListCredentialsRequest&) override {
    pb::ListCredentialsResponse r;
    *r.add_credentials() = Credential();
    return r;
  }
  absl::StatusOr<pb::CredentialInfo> GetCredentialInfo(
      const pb::GetCredentialInfoRequest& request) override {
    if (request.credential_id() != "cred-1") return absl::NotFoundError("credential_id: unknown");
    return Credential();
  }
  absl::StatusOr<pb::SignHashResponse> SignHash(const pb::SignHashRequest& request) override {
    pb::SignHashResponse r;
    for (int i = 0; i < request.hashes_size(); ++i) r.add_signatures(std::string(64, 's'));
    return r;
  }
  absl::StatusOr<pb::AuthorizeResponse> Authorize(const pb::AuthorizeRequest&) override {
    pb::AuthorizeResponse r;
    r.set_request_id("req-00112233445566778899aabbccddeeff");
    r.mutable_expires_at()->set_seconds(1'800'000'300);
    return r;
  }
  absl::StatusOr<pb::AwaitAuthorizationResponse> AwaitAuthorization(
      const pb::AwaitAuthorizationRequest&) override {
    pb::AwaitAuthorizationResponse r;
    r.set_state(pb::CONSENT_REQUEST_STATE_APPROVED);
    r.set_sad("sad");
    r.mutable_sad_expires_at()->set_seconds(1'800'000'300);
    return r;
  }

 private:
  static pb::CredentialInfo Credential() {
    pb::CredentialInfo c;
    c.set_credential_id("cred-1");
    c.set_account_id("alice");
    c.set_status(pb::CREDENTIAL_STATUS_ACTIVE);
    c.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
    c.set_key_bits(256);
    c.add_sign_algorithm_oids("1.2.840.10045.4.3.2");
    c.set_scal("SCAL2");
    return c;
  }
};

struct Env {
  FakeBackend backend;
  qsign::FakeClock clock{absl::FromUnixSeconds(1'800'000'000)};
  std::unique_ptr<gw::Gateway> gateway;
  std::string bearer;
  std::string basic;
  Env() {
    gw::RelyingPartyTable parties;
    if (!parties.Add("eservice", "eservice-secret", "e-Uprava").ok() ||
        !parties.AllowClientCredentials("eservice").ok()) {
      std::abort();
    }
    auto sealer = gw::TokenSealer::New(qsign::SecretString(std::string(32, 'k')));
    if (!sealer.ok()) std::abort();
    auto token = (*sealer)->IssueAccessToken("eservice", clock.Now() + absl::Minutes(10));
    if (!token.ok()) std::abort();
    bearer = absl::StrCat("Bearer ", *token);
    basic = absl::StrCat("Basic ", absl::Base64Escape("eservice:eservice-secret"));
    auto g = gw::Gateway::New(
        &backend, std::move(parties), *std::move(sealer), &clock,
        {.authorize_wait = absl::ZeroDuration(), .authorize_check_wait = absl::ZeroDuration()});
    if (!g.ok()) std::abort();
    gateway = *std::move(g);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = new Env;
  if (size < 2) return 0;
  const std::string_view method = kMethods[data[0] % std::size(kMethods)];
  std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string authorization;
  switch (data[1] % 4) {
    case 0:
      authorization = env->bearer;
      break;
    case 1:
      authorization = env->basic;
      break;
    case 2:
      break;
    case 3: {  // The header is the body's first line.
      const size_t nl = body.find('\n');
      authorization = std::string(body.substr(0, nl));
      body = nl == std::string_view::npos ? std::string_view() : body.substr(nl + 1);
      break;
    }
  }
  const std::string_view content_type =
      (data[1] & 4) != 0 ? "application/x-www-form-urlencoded" : "application/json";
  const gw::CscReply reply = env->gateway->Handle(method, {.authorization = authorization,
                                                           .content_type = content_type,
                                                           .body = body,
                                                           .remote_address = "192.0.2.1",
                                                           .base_url = "https://csc.example"});
  if (reply.http_status < 200 || reply.http_status > 599) std::abort();
  // Every answer is a JSON document (CSC errors included).
  if (!reply.body.empty() && !nlohmann::json::accept(reply.body)) std::abort();
  return 0;
}

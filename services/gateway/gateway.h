// The CSC API v2 gateway's logic: relying parties authenticate with the OAuth 2.0 client
// credentials grant, list and describe credentials, ask the credential's owner to authorize a
// signature (SCAL2: the SAD is bound to the hashes; the owner approves on the consent app with
// their PIN) and sign hashes. It speaks CSC JSON in and out but knows no HTTP library: the
// adapter (gateway_http.h) hands it a CscRequest and writes back the CscReply.
//
// The contract: every input is checked here, before any service is called (params.h); a
// service's refusal is read by its code and typed reason (common/refusal.h), never by its text;
// every error leaves through ToCscError (errors.h); no secret (client secret, token key, SAD) is
// logged. docs/csc.md lists what is supported and how errors map.
//
// Where things are: gateway.cc dispatch, bearer check and replies; info_handlers.cc info and
// oauth2/token; credentials_handlers.cc credentials/*; signatures_handlers.cc signHash;
// signdoc_handlers.cc signDoc (the documents' side in common/signdoc/signdoc.h);
// params.h request parsing; errors.h error mapping; credential_json.h credential rendering.
#ifndef QSIGN_SERVICES_GATEWAY_GATEWAY_H_
#define QSIGN_SERVICES_GATEWAY_GATEWAY_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "services/gateway/backend.h"
#include "services/gateway/errors.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/tokens.h"

namespace qsign::gateway {

struct GatewayConfig {
  // info: name, logo URI, ISO 3166-1 country, language, description.
  std::string name = "qsign";
  std::string logo = "";
  std::string region = "RS";
  std::string lang = "en-US";
  std::string description = "Remote qualified electronic signatures, approved in the consent app";
  // Lifetime of access tokens from oauth2/token.
  absl::Duration token_lifetime = absl::Minutes(10);
  // How long credentials/authorize waits for the user's decision before it answers 202 with a
  // handle; the consent service caps any wait at 30 s.
  absl::Duration authorize_wait = absl::Seconds(25);
  // How long credentials/authorizeCheck waits for a decision before answering 202 again.
  absl::Duration authorize_check_wait = absl::Seconds(10);
  // Most hashes in one authorize or signHash request (the services have their own, lower,
  // limits: multisign and the signer's batch size).
  int max_hashes = 1000;
  // A timestamp authority is reachable (Backend::Timestamp): signatures/timestamp is served and
  // info lists it.
  bool timestamps = false;
  // signatures/signDoc: the RFC 3161 TSA over HTTP (empty: Ades-B-B only), the wait for the
  // user's decision, the largest document (larger: 413) and the most documents in one call.
  std::string tsa_url;
  absl::Duration signdoc_wait = absl::Seconds(120);
  size_t signdoc_max_document_bytes = size_t{8} << 20;
  int signdoc_max_documents = 20;
};

// One CSC or OAuth 2.0 call as the HTTP adapter hands it over.
struct CscRequest {
  std::string_view authorization;  // The Authorization header; empty when absent.
  std::string_view content_type;
  std::string_view body;
  std::string remote_address;  // The relying party's address, for the audit trail.
  // "https://host[:port]" under which the client reached the gateway (info.oauth2).
  std::string base_url;
};

struct CscReply {
  int http_status = 200;
  std::string body;  // JSON.
  std::vector<std::pair<std::string, std::string>> headers;
  // Empty: application/json. The sign-in pages of oauth2/authorize are text/html.
  std::string content_type;
};

// One call to the sign-in pages of oauth2/authorize (a browser, not a relying party).
struct SignInRequest {
  // Decoded query (GET) or form (POST) parameters.
  std::vector<std::pair<std::string_view, std::string_view>> params;
  std::string_view body;  // The poll's JSON.
  std::string_view accept_language;
  std::string remote_address;
  std::string_view user_agent;
};

class Gateway {
 public:
  // `backend` and `clock` are not owned and must outlive the gateway.
  static absl::StatusOr<std::unique_ptr<Gateway>> New(Backend* backend,
                                                      RelyingPartyTable relying_parties,
                                                      std::unique_ptr<TokenSealer> tokens,
                                                      const Clock* clock, GatewayConfig config);
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Serves POST /csc/v2/<method>, e.g. method "credentials/list". Thread-safe. Unknown methods
  // get 404, CSC methods this gateway does not implement 501.
  CscReply Handle(std::string_view method, const CscRequest& request) const;

  // The reply for an error found outside Handle (the adapter's 413, 404, 405).
  CscReply ErrorReply(std::string_view method, const absl::Status& status) const;

  // OAuth 2.0 authorization code + PKCE (CSC v2 §8.3.2, RFC 7636), oauth_handlers.cc:
  // GET oauth2/authorize checks the client, its registered redirect URI (exact match) and the
  // PKCE challenge and shows the sign-in page: which e-service asks, and the username
  // (scope=service) or the documents to sign (scope=credential). POST oauth2/authorize starts
  // the push (a LOGIN with the verification code, or the SIGN request for exactly the hashes)
  // and shows the waiting page, whose script polls POST oauth2/authorize/poll; once the user
  // approved on the app, the browser goes to the redirect URI with a code bound to the client,
  // the redirect URI, the challenge and the user (and, for scope=credential, the SAD).
  CscReply SignInPage(const SignInRequest& request) const;
  CscReply SignInStart(const SignInRequest& request) const;
  CscReply SignInPoll(const SignInRequest& request) const;
  // The sign-in page's script (no inline script: the CSP forbids it).
  static std::string_view SignInScript();

  const GatewayConfig& config() const { return config_; }

 private:
  struct Result;  // result.h
  struct Call;    // result.h
  Gateway(Backend* backend, RelyingPartyTable relying_parties, std::unique_ptr<TokenSealer> tokens,
          const Clock* clock, GatewayConfig config)
      : backend_(backend),
        relying_parties_(std::move(relying_parties)),
        tokens_(std::move(tokens)),
        clock_(clock),
        config_(std::move(config)) {}

  absl::StatusOr<Result> Dispatch(std::string_view method, const CscRequest& request) const;
  // The client and what its access token says (the user it is bound to, its scope).
  absl::StatusOr<Call> Authenticate(const CscRequest& request) const;
  // Authenticate, then the body as a JSON object (every method but info and oauth2/token).
  absl::StatusOr<Call> Begin(const CscRequest& request) const;

  absl::StatusOr<Result> Info(const CscRequest& request) const;
  absl::StatusOr<Result> Token(const CscRequest& request) const;
  absl::StatusOr<Result> CredentialsList(const CscRequest& request) const;
  absl::StatusOr<Result> CredentialsInfo(const CscRequest& request) const;
  absl::StatusOr<Result> CredentialsAuthorize(const CscRequest& request) const;
  absl::StatusOr<Result> CredentialsAuthorizeCheck(const CscRequest& request) const;
  absl::StatusOr<Result> SignaturesSignHash(const CscRequest& request) const;
  absl::StatusOr<Result> SignaturesTimestamp(const CscRequest& request) const;
  absl::StatusOr<Result> SignaturesSignDoc(const CscRequest& request) const;  // signdoc_handlers.cc
  // Begin, then the body's credentialID. A user-bound token may only name its user's credentials
  // (and a credential-scope token only its credential): "no such credential" otherwise, so that
  // existence does not leak. The credential's info is fetched for that check, and always when
  // `fetch_info` (the caller needs it): one GetCredentialInfo at most per call.
  absl::StatusOr<Call> BeginOnCredential(const CscRequest& request, bool fetch_info) const;
  // Waits up to `wait` for the consent request and turns its state into the CSC answer.
  absl::StatusOr<Result> AwaitOutcome(const RelyingParty& client, const std::string& request_id,
                                      absl::Duration wait) const;

  Backend* backend_;  // Not owned.
  const RelyingPartyTable relying_parties_;
  const std::unique_ptr<TokenSealer> tokens_;
  const Clock* clock_;  // Not owned.
  const GatewayConfig config_;
};

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_GATEWAY_H_

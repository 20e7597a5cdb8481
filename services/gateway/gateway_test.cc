// The CSC gateway over real HTTP (cpp-httplib client) in front of the real signer and consent
// services (gRPC on loopback, SoftHSM2, PostgreSQL), with consent-app simulators approving on the
// user's behalf. Checks the relying party's journey (token -> list -> info -> authorize ->
// signHash, the signature verified with OpenSSL against the certificate), the asynchronous
// authorization (202 + handle, authorizeCheck), and that bad input of every kind gets its CSC
// error and HTTP status. The last test walks the journey with curl and openssl.
#include "services/gateway/gateway.h"

#include <httplib.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/cades/timestamp.h"
#include "common/cades/validation_data.h"
#include "common/clock.h"
#include "common/grpc_server.h"
#include "common/pades/pdf_signature.h"
#include "common/pades/testing/test_pdfs.h"
#include "common/request_id.h"
#include "consent/app_simulator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/gateway/backend_grpc.h"
#include "services/gateway/gateway_http.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/testing/signing_stack.h"
#include "services/gateway/text.h"
#include "services/gateway/tokens.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_data.h"
#include "tests/testing/test_pki.h"

namespace qsign::gateway {
namespace {

namespace pb = ::qsign::v1;
using Json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

using ::qsign::testing::kPin;
constexpr char kRp[] = "e-uprava";
constexpr char kRpSecret[] = "3f1c0a9be4d27c5186a0f2e9b7d4c3a1";
constexpr char kRpName[] = "e-Uprava";
constexpr char kOtherRp[] = "other.rp";
constexpr char kOtherSecret[] = "9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a";
constexpr char kSha256[] = "2.16.840.1.101.3.4.2.1";
constexpr char kSha384[] = "2.16.840.1.101.3.4.2.2";
constexpr char kEcdsaSha256[] = "1.2.840.10045.4.3.2";
constexpr char kAccount[] = "acct-ana";
constexpr char kCredential[] = "cred-ana-1";

std::string Sha256(std::string_view data) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string B64(const std::string& bytes) { return absl::Base64Escape(bytes); }

std::string Unb64(const std::string& s) {
  std::string out;
  EXPECT_TRUE(absl::Base64Unescape(s, &out)) << s;
  return out;
}

using ::qsign::testing::SpkiOfCertificate;

struct Response {
  int status = 0;
  Json body;
  std::string raw;
  httplib::Headers headers;
};

// ---- Unit tests of the pieces (no services). ----

TEST(TextTest, Base64InBothAlphabetsWithOrWithoutPadding) {
  const std::string bytes = "\xfb\xff\xfe hash";
  EXPECT_EQ(DecodeBase64(absl::Base64Escape(bytes)), bytes);
  EXPECT_EQ(DecodeBase64(absl::WebSafeBase64Escape(bytes)), bytes);
  EXPECT_EQ(DecodeBase64("YWJj"), "abc");
  EXPECT_EQ(DecodeBase64("YWI="), "ab");
  EXPECT_EQ(DecodeBase64("YWI"), "ab");
  EXPECT_FALSE(DecodeBase64("YW J"));
  EXPECT_FALSE(DecodeBase64("YW*J"));
  EXPECT_FALSE(DecodeBase64("+-"));  // Both alphabets at once.
  EXPECT_FALSE(DecodeBase64Url("YW+I"));
}

TEST(TextTest, FormBodies) {
  auto form = ParseFormUrlEncoded("grant_type=client_credentials&client_id=a%2Eb&x=1+2&empty=");
  ASSERT_TRUE(form);
  ASSERT_EQ(form->size(), 4u);
  EXPECT_EQ((*form)[1], std::make_pair(std::string("client_id"), std::string("a.b")));
  EXPECT_EQ((*form)[2].second, "1 2");
  EXPECT_EQ((*form)[3].second, "");
  EXPECT_FALSE(ParseFormUrlEncoded("a=%4"));
  EXPECT_FALSE(ParseFormUrlEncoded("a=%zz"));
  EXPECT_FALSE(PercentDecode("%"));
}

TEST(TextTest, DisplayText) {
  EXPECT_TRUE(IsDisplayText("Ugovor o radu — Šabac", 1, 200));
  EXPECT_FALSE(IsDisplayText("", 1, 200));
  EXPECT_FALSE(IsDisplayText("a\nb", 1, 200));
  EXPECT_FALSE(IsDisplayText("\xc3", 1, 200));
  EXPECT_FALSE(IsDisplayText(std::string(201, 'a'), 1, 200));
}

TEST(TextTest, ConsentLanguageOfCscLang) {
  EXPECT_EQ(ConsentLanguage("sr-Latn"), "sr-Latn");
  EXPECT_EQ(ConsentLanguage("SR-latn-rs"), "sr-Latn");
  EXPECT_EQ(ConsentLanguage("en"), "en");
  EXPECT_EQ(ConsentLanguage("en-US"), "en");
  EXPECT_EQ(ConsentLanguage("sr-Cyrl-RS"), "sr-Cyrl");
  EXPECT_EQ(ConsentLanguage("sr"), "sr-Cyrl");
  EXPECT_EQ(ConsentLanguage(""), "sr-Cyrl");
  EXPECT_EQ(ConsentLanguage("hu-HU"), "sr-Cyrl");  // No texts in Hungarian: the default.
  EXPECT_EQ(ConsentLanguage("de-Latn"), "sr-Cyrl");
  for (const std::string& bad :
       std::vector<std::string>{"en_US", "e", "1sr", "sr--Latn", "sr-", "en-toolongsubtag", "срп",
                                "en US", std::string(36, 'a')}) {
    EXPECT_EQ(ConsentLanguage(bad), std::nullopt) << bad;
  }
}

TEST(TokenSealerTest, AccessTokensVerifyUntilTheyExpireAndNotWhenTampered) {
  auto sealer = TokenSealer::New(SecretString(std::string(32, 'k')));
  ASSERT_TRUE(sealer.ok());
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  auto token = (*sealer)->IssueAccessToken("e-uprava", now + absl::Minutes(10));
  ASSERT_TRUE(token.ok());
  auto verified = (*sealer)->VerifyAccessToken(*token, now);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->client_id, "e-uprava");
  EXPECT_EQ((*sealer)->VerifyAccessToken(*token, now + absl::Minutes(10)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  std::string tampered = *token;
  tampered[tampered.size() / 2] ^= 1;
  EXPECT_EQ((*sealer)->VerifyAccessToken(tampered, now).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*sealer)->VerifyAccessToken("at1.x.y", now).status().code(),
            absl::StatusCode::kUnauthenticated);
  // Another key's token is not ours.
  auto other = TokenSealer::New(SecretString(std::string(32, 'o')));
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE((*other)->VerifyAccessToken(*token, now).ok());
  EXPECT_FALSE(TokenSealer::New(SecretString(std::string(31, 'k'))).ok());
}

TEST(TokenSealerTest, HandlesOpenOnlyForTheirClientAndNeverPassAsTokens) {
  auto sealer = TokenSealer::New(SecretString(std::string(32, 'k')));
  ASSERT_TRUE(sealer.ok());
  const std::string handle = (*sealer)->SealHandle("e-uprava", "req-123");
  EXPECT_EQ((*sealer)->OpenHandle("e-uprava", handle).value_or(""), "req-123");
  EXPECT_EQ((*sealer)->OpenHandle("other", handle).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE((*sealer)->VerifyAccessToken(handle, absl::Now()).ok());
  auto token = (*sealer)->IssueAccessToken("e-uprava", absl::Now() + absl::Minutes(1));
  ASSERT_TRUE(token.ok());
  EXPECT_FALSE((*sealer)->OpenHandle("e-uprava", *token).ok());
}

TEST(RelyingPartyTableTest, ParsesTheFileAndChecksSecrets) {
  const std::string hash = absl::BytesToHexString(Sha256("s3cret-s3cret"));
  auto table = RelyingPartyTable::Parse(
      absl::StrCat("# relying parties\n\n", "e-uprava ", hash, " e-Uprava (Kancelarija za IT)\n"));
  ASSERT_TRUE(table.ok()) << table.status();
  auto rp = table->Authenticate("e-uprava", "s3cret-s3cret");
  ASSERT_TRUE(rp);
  EXPECT_EQ(rp->name, "e-Uprava (Kancelarija za IT)");
  EXPECT_FALSE(table->Authenticate("e-uprava", "wrong"));
  EXPECT_FALSE(table->Authenticate("nobody", "s3cret-s3cret"));
  for (const std::string& bad : std::vector<std::string>{
           absl::StrCat("e-uprava ", hash), absl::StrCat("e uprava ", hash, " x"),
           "e-uprava abc name", absl::StrCat("e-uprava ", hash, " a\x01")}) {
    auto t = RelyingPartyTable::Parse(bad);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("line 1"));
  }
  auto twice = RelyingPartyTable::Parse(absl::StrCat("a ", hash, " A\na ", hash, " A\n"));
  EXPECT_THAT(std::string(twice.status().message()), HasSubstr("repeated"));
}

TEST(RelyingPartyTableTest, RedirectUrisAndTheClientCredentialsGrantAreRegisteredPerClient) {
  const std::string hash = absl::BytesToHexString(Sha256("s3cret-s3cret"));
  auto table = RelyingPartyTable::Parse(absl::StrCat(
      "e-uprava ", hash, " e-Uprava\n", "+redirect_uri e-uprava https://e-uprava.example/cb\n",
      "legacy ", hash, " Legacy\n", "+client_credentials legacy\n"));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_FALSE(table->Find("e-uprava")->client_credentials);
  EXPECT_TRUE(table->Find("legacy")->client_credentials);
  EXPECT_TRUE(table->IsRedirectUri("e-uprava", "https://e-uprava.example/cb"));
  // Exact match only.
  EXPECT_FALSE(table->IsRedirectUri("e-uprava", "https://e-uprava.example/cb/"));
  EXPECT_FALSE(table->IsRedirectUri("e-uprava", "https://e-uprava.example/cb?x=1"));
  EXPECT_FALSE(table->IsRedirectUri("legacy", "https://e-uprava.example/cb"));
  for (const std::string& bad : std::vector<std::string>{
           "+redirect_uri nobody https://x.example/cb", "+redirect_uri e-uprava http://x.example/",
           "+redirect_uri e-uprava https://x.example/#f", "+client_credentials", "+other x"}) {
    auto t = RelyingPartyTable::Parse(absl::StrCat("e-uprava ", hash, " E\n", bad, "\n"));
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("line 2")) << bad;
  }
}

TEST(TokenSealerTest, CodesCarryTheUserAndOpenOnlyUnexpired) {
  auto sealer = TokenSealer::New(SecretString(std::string(32, 'k')));
  ASSERT_TRUE(sealer.ok());
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  const std::string code = (*sealer)->SealCode({.token = {.client_id = "e-uprava",
                                                          .expires_at = now + absl::Seconds(60),
                                                          .account_id = "acc-1",
                                                          .scope = "credential",
                                                          .credential_id = "qc-1",
                                                          .sad = "sad"},
                                                .redirect_uri = "https://e-uprava.example/cb",
                                                .code_challenge = std::string(43, 'c')});
  auto opened = (*sealer)->OpenCode(code, now);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->token.account_id, "acc-1");
  EXPECT_EQ(opened->token.scope, "credential");
  EXPECT_EQ(opened->token.sad, "sad");
  EXPECT_EQ(opened->redirect_uri, "https://e-uprava.example/cb");
  EXPECT_FALSE((*sealer)->OpenCode(code, now + absl::Seconds(60)).ok());
  // A code is not a token, nor a token a code.
  EXPECT_FALSE((*sealer)->VerifyAccessToken(code, now).ok());
  auto token = (*sealer)->IssueAccessToken(opened->token);
  ASSERT_TRUE(token.ok());
  EXPECT_FALSE((*sealer)->OpenCode(*token, now).ok());
  auto verified = (*sealer)->VerifyAccessToken(*token, now);
  ASSERT_TRUE(verified.ok());
  EXPECT_EQ(verified->account_id, "acc-1");
  EXPECT_EQ(verified->credential_id, "qc-1");
}

TEST(TokenSealerTest, TicketsAreEncryptedAndAuthenticated) {
  auto sealer = TokenSealer::New(SecretString(std::string(32, 'k')));
  ASSERT_TRUE(sealer.ok());
  const std::string ticket = (*sealer)->SealTicket("login-id-secret");
  EXPECT_THAT(ticket, Not(HasSubstr("login-id")));
  EXPECT_EQ((*sealer)->OpenTicket(ticket).value_or(""), "login-id-secret");
  std::string tampered = ticket;
  tampered[tampered.size() - 3] ^= 1;
  EXPECT_FALSE((*sealer)->OpenTicket(tampered).ok());
  auto other = TokenSealer::New(SecretString(std::string(32, 'o')));
  EXPECT_FALSE((*other)->OpenTicket(ticket).ok());
}

TEST(PkceTest, S256ChallengeAndVerifier) {
  // RFC 7636 appendix B.
  EXPECT_TRUE(PkceMatches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                          "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
  EXPECT_FALSE(PkceMatches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
                           "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
  EXPECT_FALSE(PkceMatches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
  EXPECT_TRUE(IsPkceChallenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
  EXPECT_FALSE(IsPkceChallenge("plain-challenge"));
  EXPECT_EQ(PercentEncode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
}

TEST(CscErrorTest, OneMappingFromStatusToCscError) {
  struct Case {
    absl::Status status;
    int http;
    const char* error;
  };
  const Case cases[] = {
      {absl::InvalidArgumentError("x"), 400, "invalid_request"},
      {absl::NotFoundError("x"), 400, "invalid_request"},
      {absl::FailedPreconditionError("x"), 400, "invalid_request"},
      {absl::UnauthenticatedError("x"), 401, "invalid_token"},
      {absl::PermissionDeniedError("x"), 403, "access_denied"},
      {absl::UnavailableError("x"), 503, "temporarily_unavailable"},
      {absl::DeadlineExceededError("x"), 503, "temporarily_unavailable"},
      {absl::UnimplementedError("x"), 501, "invalid_request"},
      {absl::InternalError("secret detail"), 500, "server_error"},
      {CscStatus(absl::StatusCode::kUnauthenticated, "expired_token", "x"), 401, "expired_token"},
      {CscStatus(absl::StatusCode::kInvalidArgument, "invalid_request", "x", 413), 413,
       "invalid_request"},
  };
  for (const Case& c : cases) {
    const CscError e = ToCscError(c.status);
    EXPECT_EQ(e.http_status, c.http) << c.status;
    EXPECT_EQ(e.error, c.error) << c.status;
  }
  EXPECT_THAT(ToCscError(absl::InternalError("secret detail")).description,
              Not(HasSubstr("secret")));
}

// ---- The gateway in front of the real services. ----

class GatewayTest : public qsign::testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    auto stack = testing::SigningStack::Start(&env());
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    // The services mint on the real clock: the gateway's starts there once they run, not when
    // the fixture was made (a set-up slower than 1 s made expiresIn 301 > 300).
    clock_.Set(absl::Now());
    backend_ = std::make_unique<GrpcBackend>(
        qsign::daemon::DeferredChannel::Connected("signer", stack_->signer_channel()),
        qsign::daemon::DeferredChannel::Connected("consent", stack_->consent_channel()), "gateway",
        SecretString("gateway-secret"), absl::Seconds(10));
    StartGateway(
        {.authorize_wait = absl::Seconds(10), .authorize_check_wait = absl::Milliseconds(300)});
  }

  void TearDown() override {
    server_.reset();
    gateway_.reset();
  }

  // (Re)starts the gateway and its HTTP server with `config` over `backend` (default: the
  // fixture's).
  void StartGateway(GatewayConfig config, Backend* backend = nullptr,
                    size_t max_body_bytes = 64 * 1024) {
    server_.reset();
    RelyingPartyTable parties;
    ASSERT_TRUE(parties.Add(kRp, kRpSecret, kRpName).ok());
    ASSERT_TRUE(parties.Add(kOtherRp, kOtherSecret, "Other relying party").ok());
    // These tests play relying parties the operator allowed the client credentials grant.
    ASSERT_TRUE(parties.AllowClientCredentials(kRp).ok());
    ASSERT_TRUE(parties.AllowClientCredentials(kOtherRp).ok());
    auto tokens = TokenSealer::New(SecretString(std::string(32, 'k')));
    ASSERT_TRUE(tokens.ok());
    auto gateway = Gateway::New(backend ? backend : backend_.get(), std::move(parties),
                                *std::move(tokens), &clock_, std::move(config));
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    auto server = GatewayHttpServer::Start({.max_body_bytes = max_body_bytes}, gateway_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  Response Post(const std::string& path, const std::string& body,
                const std::string& authorization = "",
                const std::string& content_type = "application/json") {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(30, 0);
    httplib::Headers headers;
    if (!authorization.empty()) headers.emplace("Authorization", authorization);
    auto res = client.Post(path, headers, body, content_type);
    Response out;
    if (!res) {
      ADD_FAILURE() << "no HTTP response: " << httplib::to_string(res.error());
      return out;
    }
    out.status = res->status;
    out.raw = res->body;
    out.headers = res->headers;
    out.body = Json::parse(res->body, nullptr, false);
    EXPECT_FALSE(out.body.is_discarded()) << "not JSON: " << res->body;
    if (res->status >= 400) {
      // Every error is a CSC error body.
      EXPECT_TRUE(out.body.is_object() && out.body.contains("error") &&
                  out.body["error"].is_string() && out.body.contains("error_description"))
          << res->body;
    }
    return out;
  }

  Response Call(const std::string& method, const Json& body, const std::string& token) {
    return Post(absl::StrCat("/csc/v2/", method), body.dump(),
                token.empty() ? "" : absl::StrCat("Bearer ", token));
  }

  std::string Token(const char* client = kRp, const char* secret = kRpSecret) {
    Response r = Post(
        "/csc/v2/oauth2/token",
        absl::StrCat("grant_type=client_credentials&client_id=", client, "&client_secret=", secret),
        "", "application/x-www-form-urlencoded");
    EXPECT_EQ(r.status, 200) << r.raw;
    return r.body.value("access_token", "");
  }

  // The owner's approval, on the app, of the next request (which must carry `hash`).
  std::future<absl::Status> ApproveNext(consent::ConsentAppSimulator* app, std::string hash,
                                        bool approve = true) {
    return std::async(std::launch::async, [app, hash, approve]() -> absl::Status {
      auto request = app->NextRequest(absl::Seconds(15));
      if (!request.ok()) return request.status();
      if (request->sign().hashes_size() != 1 || request->sign().hashes(0) != hash) {
        return absl::InternalError("the app was shown other hashes");
      }
      if (request->sign().relying_party_name() != kRpName) {
        return absl::InternalError(
            absl::StrCat("requester shown: ", request->sign().relying_party_name()));
      }
      auto decided = approve ? app->Approve(*request, kPin) : app->Deny(*request);
      return decided.status();
    });
  }

  Json AuthorizeBody(const std::string& hash, const std::string& credential = kCredential) {
    return {{"credentialID", credential},
            {"numSignatures", 1},
            {"hashes", {B64(hash)}},
            {"hashAlgorithmOID", kSha256},
            {"description", "Ugovor o radu"}};
  }

  Json SignBody(const std::string& hash, const std::string& sad,
                const std::string& credential = kCredential) {
    return {{"credentialID", credential},
            {"hashes", {B64(hash)}},
            {"signAlgo", kEcdsaSha256},
            {"SAD", sad}};
  }

  // An approved SAD for `hash` on kCredential.
  std::string ApprovedSad(consent::ConsentAppSimulator* app, const std::string& hash,
                          const std::string& token) {
    auto approval = ApproveNext(app, hash);
    Response r = Call("credentials/authorize", AuthorizeBody(hash), token);
    EXPECT_TRUE(approval.get().ok());
    EXPECT_EQ(r.status, 200) << r.raw;
    return r.body.value("SAD", "");
  }

  static void ExpectError(const Response& r, int status, const std::string& error,
                          const std::string& description_part = "") {
    EXPECT_EQ(r.status, status) << r.raw;
    EXPECT_EQ(r.body.value("error", ""), error) << r.raw;
    if (!description_part.empty()) {
      EXPECT_THAT(r.body.value("error_description", ""), HasSubstr(description_part)) << r.raw;
    }
  }

  FakeClock clock_{absl::Now()};
  std::unique_ptr<testing::SigningStack> stack_;
  std::unique_ptr<GrpcBackend> backend_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<GatewayHttpServer> server_;
};

TEST_F(GatewayTest, InfoDescribesTheServiceWithoutAToken) {
  Response r = Post("/csc/v2/info", "");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["specs"], "2.0.0.2");
  EXPECT_EQ(r.body["region"], "RS");
  EXPECT_EQ(r.body["authType"], Json::array({"oauth2code", "oauth2client"}));
  EXPECT_EQ(r.body["oauth2"], absl::StrCat("http://127.0.0.1:", server_->port(), "/csc/v2/"));
  EXPECT_THAT(r.body["methods"].get<std::vector<std::string>>(),
              ::testing::UnorderedElementsAre("credentials/list", "credentials/info",
                                              "credentials/authorize", "credentials/authorizeCheck",
                                              "signatures/signHash", "signatures/signDoc"));
  // signDoc: PAdES ("P") and detached CAdES ("C"); B-T and B-LT only with a TSA configured.
  EXPECT_EQ(r.body["signature_formats"]["formats"], Json::array({"C", "P"}));
  EXPECT_EQ(r.body["conformance_levels"], Json::array({"Ades-B-B"}));
  EXPECT_THAT(r.body["signAlgorithms"]["algos"].get<std::vector<std::string>>(),
              ::testing::Contains(kEcdsaSha256));
  EXPECT_EQ(Post("/csc/v2/info", "{\"lang\":\"en-US\"}").status, 200);
}

TEST_F(GatewayTest, RelyingPartyJourneyTokenListInfoAuthorizeSignHash) {
  auto cred = stack_->ActiveCredential(kCredential, kAccount);
  ASSERT_TRUE(cred.ok()) << cred.status();
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  ASSERT_FALSE(token.empty());

  // credentials/list with everything.
  Response list = Call("credentials/list",
                       {{"userID", kAccount},
                        {"credentialInfo", true},
                        {"certificates", "chain"},
                        {"certInfo", true},
                        {"authInfo", true}},
                       token);
  ASSERT_EQ(list.status, 200) << list.raw;
  EXPECT_EQ(list.body["credentialIDs"], Json::array({kCredential}));
  ASSERT_EQ(list.body["credentialInfos"].size(), 1u);
  const Json& ci = list.body["credentialInfos"][0];
  EXPECT_EQ(ci["credentialID"], kCredential);
  EXPECT_EQ(ci["key"]["status"], "enabled");
  EXPECT_EQ(ci["key"]["len"], 256);
  EXPECT_EQ(ci["key"]["curve"], "1.2.840.10045.3.1.7");
  EXPECT_THAT(ci["key"]["algo"].get<std::vector<std::string>>(), ::testing::Contains(kEcdsaSha256));
  EXPECT_EQ(ci["cert"]["status"], "valid");
  EXPECT_EQ(ci["cert"]["subjectDN"], "CN=Test");
  EXPECT_EQ(ci["cert"]["serialNumber"], "2A");
  EXPECT_THAT(ci["cert"]["validFrom"].get<std::string>(), ::testing::MatchesRegex("[0-9]{14}Z"));
  EXPECT_EQ(ci["auth"]["mode"], "explicit");
  EXPECT_EQ(ci["auth"]["objects"][0]["type"], "PasswordOOB");
  EXPECT_EQ(ci["SCAL"], "2");
  EXPECT_EQ(ci["multisign"], 10);
  // Someone without credentials: an empty list, not an error.
  Response none = Call("credentials/list", {{"userID", "acct-nobody"}}, token);
  ASSERT_EQ(none.status, 200) << none.raw;
  EXPECT_EQ(none.body["credentialIDs"], Json::array());
  EXPECT_FALSE(none.body.contains("credentialInfos"));

  // credentials/info: the end-entity certificate by default.
  Response info = Call("credentials/info", {{"credentialID", kCredential}}, token);
  ASSERT_EQ(info.status, 200) << info.raw;
  EXPECT_FALSE(info.body.contains("credentialID"));
  ASSERT_EQ(info.body["cert"]["certificates"].size(), 1u);
  const std::string cert_der = Unb64(info.body["cert"]["certificates"][0]);
  EXPECT_EQ(cert_der, cred->certificate_chain_der(0));
  EXPECT_FALSE(info.body["cert"].contains("subjectDN"));
  EXPECT_EQ(
      Call("credentials/info", {{"credentialID", kCredential}, {"certificates", "none"}}, token)
          .body["cert"]
          .contains("certificates"),
      false);

  // credentials/authorize: the owner approves on the app while the call waits.
  const std::string hash = Sha256("Ugovor o radu, Ana Anić");
  auto approval = ApproveNext(app->get(), hash);
  Response auth = Call("credentials/authorize", AuthorizeBody(hash), token);
  ASSERT_TRUE(approval.get().ok());
  ASSERT_EQ(auth.status, 200) << auth.raw;
  const std::string sad = auth.body.value("SAD", "");
  ASSERT_FALSE(sad.empty());
  EXPECT_GT(auth.body["expiresIn"].get<int>(), 0);
  EXPECT_LE(auth.body["expiresIn"].get<int>(), 300);
  EXPECT_EQ(auth.headers.find("Cache-Control")->second, "no-store");

  // signatures/signHash, verified against the certificate's public key.
  Response sign = Call("signatures/signHash", SignBody(hash, sad), token);
  ASSERT_EQ(sign.status, 200) << sign.raw;
  ASSERT_EQ(sign.body["signatures"].size(), 1u);
  const std::string signature = Unb64(sign.body["signatures"][0]);
  EXPECT_TRUE(qsign::testing::VerifyDigestSignature(SpkiOfCertificate(cert_der), hash, signature,
                                                    EVP_sha256()));
  EXPECT_FALSE(qsign::testing::VerifyDigestSignature(
      SpkiOfCertificate(cert_der), Sha256("another document"), signature, EVP_sha256()));

  // The SAD is single-use.
  ExpectError(Call("signatures/signHash", SignBody(hash, sad), token), 400, "invalid_request",
              "already used");
}

// credentials/authorize's `lang` chooses the language of the text the app shows (and the approval
// signs): Serbian Latin, English, and Serbian Cyrillic for Serbian, for none and for a language
// qsign has no texts in; a malformed tag is refused by name before anything reaches the app.
TEST_F(GatewayTest, CredentialsAuthorizeAsksTheAppInTheRequestedLanguage) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  ASSERT_FALSE(token.empty());
  const std::string hash = Sha256("Ugovor o radu, Ana Anić");
  for (const auto& [lang, shown] :
       std::vector<std::pair<std::string, std::string>>{{"sr-Latn-RS", "Potpiši „Ugovor o radu“"},
                                                        {"EN-gb", "Sign \"Ugovor o radu\""},
                                                        {"sr", "Потпиши „Ugovor o radu“"},
                                                        {"de-DE", "Потпиши „Ugovor o radu“"},
                                                        {"", "Потпиши „Ugovor o radu“"}}) {
    SCOPED_TRACE(lang);
    consent::ConsentAppSimulator* phone = app->get();
    auto approval = std::async(std::launch::async, [phone]() -> absl::StatusOr<std::string> {
      auto request = phone->NextRequest(absl::Seconds(15));
      if (!request.ok()) return request.status();
      auto decided = phone->Approve(*request, kPin);
      if (!decided.ok()) return decided.status();
      return request->display_text();
    });
    Json body = AuthorizeBody(hash);
    if (!lang.empty()) body["lang"] = lang;
    Response auth = Call("credentials/authorize", body, token);
    auto text = approval.get();
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_THAT(*text, ::testing::StartsWith(shown));
    EXPECT_EQ(auth.status, 200) << auth.raw;
  }
  for (const char* bad : {"en_US", "sr-Latn-RS-toolongsubtag", "1sr", "x", "српски"}) {
    Json body = AuthorizeBody(hash);
    body["lang"] = bad;
    ExpectError(Call("credentials/authorize", body, token), 400, "invalid_request", "lang");
  }
}

TEST_F(GatewayTest, SlowUserGetsA202HandleAndAuthorizeCheckAnswersTheSad) {
  StartGateway(
      {.authorize_wait = absl::ZeroDuration(), .authorize_check_wait = absl::Milliseconds(200)});
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  const std::string hash = Sha256("slow");

  Response auth = Call("credentials/authorize", AuthorizeBody(hash), token);
  ASSERT_EQ(auth.status, 202) << auth.raw;
  EXPECT_FALSE(auth.body.contains("SAD"));
  const std::string handle = auth.body.value("handle", "");
  ASSERT_FALSE(handle.empty());

  // Not answered yet: 202 again, same handle.
  Response pending = Call("credentials/authorizeCheck", {{"handle", handle}}, token);
  ASSERT_EQ(pending.status, 202) << pending.raw;
  EXPECT_EQ(pending.body["handle"], handle);
  // Another relying party cannot use the handle; nor can anyone use a made-up one.
  ExpectError(
      Call("credentials/authorizeCheck", {{"handle", handle}}, Token(kOtherRp, kOtherSecret)), 400,
      "invalid_request", "handle");
  ExpectError(Call("credentials/authorizeCheck", {{"handle", "ah1.AAAA.AAAA"}}, token), 400,
              "invalid_request", "handle");
  ExpectError(Call("credentials/authorizeCheck", Json::object(), token), 400, "invalid_request",
              "handle");

  // The user approves; the next check answers the SAD.
  auto request = (*app)->NextRequest(absl::Seconds(10));
  ASSERT_TRUE(request.ok()) << request.status();
  ASSERT_TRUE((*app)->Approve(*request, kPin).ok());
  Response done;
  for (int i = 0; i < 20; ++i) {
    done = Call("credentials/authorizeCheck", {{"handle", handle}}, token);
    if (done.status != 202) break;
  }
  ASSERT_EQ(done.status, 200) << done.raw;
  const std::string sad = done.body.value("SAD", "");
  ASSERT_FALSE(sad.empty());
  Response sign = Call("signatures/signHash", SignBody(hash, sad), token);
  ASSERT_EQ(sign.status, 200) << sign.raw;
}

TEST_F(GatewayTest, RefusalOnTheAppIsAccessDenied) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  const std::string hash = Sha256("not mine");
  auto refusal = ApproveNext(app->get(), hash, /*approve=*/false);
  Response r = Call("credentials/authorize", AuthorizeBody(hash), token);
  ASSERT_TRUE(refusal.get().ok());
  ExpectError(r, 403, "access_denied", "refused");
}

TEST_F(GatewayTest, SadForOtherHashesOrAnotherCredentialIsRefusedAndNotUsedUp) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  ASSERT_TRUE(stack_->ActiveCredential("cred-ana-2", kAccount).ok());
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  const std::string approved = Sha256("approved document");
  const std::string sad = ApprovedSad(app->get(), approved, token);
  ASSERT_FALSE(sad.empty());

  ExpectError(Call("signatures/signHash", SignBody(Sha256("other document"), sad), token), 400,
              "invalid_request", "Hash is not authorized by the SAD");
  ExpectError(Call("signatures/signHash", SignBody(approved, sad, "cred-ana-2"), token), 400,
              "invalid_request", "Invalid parameter SAD: issued for another credential");
  ExpectError(Call("signatures/signHash", SignBody(approved, "not-a-sad"), token), 400,
              "invalid_request", "Invalid parameter SAD");
  // SHA-384 with a SHA-256 SAD.
  Json sha384 = SignBody(std::string(48, 'x'), sad);
  sha384["signAlgo"] = "1.2.840.10045.4.3.3";
  ExpectError(Call("signatures/signHash", sha384, token), 400, "invalid_request", "SAD");
  // None of those used the SAD up.
  EXPECT_EQ(Call("signatures/signHash", SignBody(approved, sad), token).status, 200);
}

TEST_F(GatewayTest, UnknownOrUnusableCredentialsAreInvalidRequests) {
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  ExpectError(Call("credentials/info", {{"credentialID", "cred-nobody"}}, token), 400,
              "invalid_request", "credentialID");
  ExpectError(Call("credentials/authorize", AuthorizeBody(Sha256("x"), "cred-nobody"), token), 400,
              "invalid_request", "credentialID");
  ExpectError(Call("signatures/signHash", SignBody(Sha256("x"), "sad", "cred-nobody"), token), 400,
              "invalid_request", "credentialID");
  ExpectError(Call("credentials/info", {{"credentialID", "bad id!"}}, token), 400,
              "invalid_request", "Invalid parameter credentialID");
  // A credential whose owner has no consent app cannot be authorized.
  ASSERT_TRUE(stack_->ActiveCredential("cred-bob-1", "acct-bob").ok());
  ExpectError(Call("credentials/authorize", AuthorizeBody(Sha256("x"), "cred-bob-1"), token), 400,
              "invalid_request", "no active consent app");
}

TEST_F(GatewayTest, TokenEndpointFollowsOAuth2ClientCredentials) {
  const std::string path = "/csc/v2/oauth2/token";
  const std::string form = "application/x-www-form-urlencoded";
  // Form body, HTTP Basic, and a JSON body all work.
  Response ok = Post(path,
                     absl::StrCat("grant_type=client_credentials&client_id=", kRp,
                                  "&client_secret=", kRpSecret, "&scope=service"),
                     "", form);
  ASSERT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body["token_type"], "Bearer");
  EXPECT_EQ(ok.body["expires_in"], 600);
  EXPECT_EQ(ok.headers.find("Cache-Control")->second, "no-store");
  Response basic = Post(path, "grant_type=client_credentials",
                        absl::StrCat("Basic ", B64(absl::StrCat(kRp, ":", kRpSecret))), form);
  EXPECT_EQ(basic.status, 200) << basic.raw;
  Response json = Post(
      path,
      Json{{"grant_type", "client_credentials"}, {"client_id", kRp}, {"client_secret", kRpSecret}}
          .dump());
  EXPECT_EQ(json.status, 200) << json.raw;

  // Failures.
  Response wrong = Post(
      path, absl::StrCat("grant_type=client_credentials&client_id=", kRp, "&client_secret=wrong"),
      "", form);
  ExpectError(wrong, 401, "invalid_client");
  EXPECT_THAT(wrong.raw, Not(HasSubstr("wrong")));
  ExpectError(
      Post(path, "grant_type=client_credentials&client_id=nobody&client_secret=x", "", form), 401,
      "invalid_client");
  Response basic_wrong = Post(path, "grant_type=client_credentials",
                              absl::StrCat("Basic ", B64(absl::StrCat(kRp, ":nope"))), form);
  ExpectError(basic_wrong, 401, "invalid_client");
  EXPECT_THAT(basic_wrong.headers.find("WWW-Authenticate")->second, HasSubstr("Basic"));
  ExpectError(Post(path, absl::StrCat("client_id=", kRp, "&client_secret=", kRpSecret), "", form),
              400, "invalid_request", "grant_type");
  ExpectError(
      Post(path, absl::StrCat("grant_type=password&client_id=", kRp, "&client_secret=", kRpSecret),
           "", form),
      400, "unsupported_grant_type");
  // An authorization code this gateway did not issue.
  ExpectError(Post(path,
                   absl::StrCat("grant_type=authorization_code&code=x&client_id=", kRp,
                                "&client_secret=", kRpSecret),
                   "", form),
              400, "invalid_grant");
  ExpectError(Post(path,
                   absl::StrCat("grant_type=client_credentials&client_id=", kRp,
                                "&client_secret=", kRpSecret, "&scope=credential"),
                   "", form),
              400, "invalid_scope");
  ExpectError(Post(path,
                   absl::StrCat("grant_type=client_credentials&grant_type=client_credentials"
                                "&client_id=",
                                kRp, "&client_secret=", kRpSecret),
                   "", form),
              400, "invalid_request", "repeated");
  ExpectError(Post(path, "grant_type=client_credentials&client_id=%zz", "", form), 400,
              "invalid_request", "Malformed");
  ExpectError(Post(path, "grant_type=client_credentials", "Basic !!!", form), 400,
              "invalid_request", "authorization header");
  ExpectError(Post(path, "{\"grant_type\": 1}"), 400, "invalid_request", "grant_type");
}

TEST_F(GatewayTest, AccessTokensAreCheckedOnEveryMethod) {
  const Json body = {{"userID", kAccount}};
  for (const char* method : {"credentials/list", "credentials/info", "credentials/authorize",
                             "credentials/authorizeCheck", "signatures/signHash"}) {
    SCOPED_TRACE(method);
    Response none = Call(method, body, "");
    ExpectError(none, 401, "invalid_token", "access token is required");
    EXPECT_THAT(none.headers.find("WWW-Authenticate")->second, HasSubstr("Bearer"));
    ExpectError(Post(absl::StrCat("/csc/v2/", method), body.dump(), "Basic abc"), 400,
                "invalid_request", "Malformed authorization header");
    ExpectError(Call(method, body, "at1.garbage.garbage"), 401, "invalid_token");
  }
  std::string token = Token();
  EXPECT_EQ(Call("credentials/list", body, token).status, 200);
  // "bearer" is case-insensitive (RFC 6750 uses the RFC 7235 scheme rules).
  EXPECT_EQ(Post("/csc/v2/credentials/list", body.dump(), absl::StrCat("bearer ", token)).status,
            200);
  std::string tampered = token;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  ExpectError(Call("credentials/list", body, tampered), 401, "invalid_token");
  clock_.Advance(absl::Minutes(10));
  ExpectError(Call("credentials/list", body, token), 401, "expired_token");
  // The same token given twice in two headers is malformed.
  httplib::Client client("127.0.0.1", server_->port());
  auto twice = client.Post("/csc/v2/credentials/list",
                           {{"Authorization", "Bearer " + token}, {"Authorization", "Bearer x"}},
                           body.dump(), "application/json");
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->status, 400);
}

TEST_F(GatewayTest, MalformedBodiesGetInvalidRequestAndNeverCrashTheGateway) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  const std::string token = Token();
  const std::string bearer = absl::StrCat("Bearer ", token);
  const std::string hash = B64(Sha256("x"));
  struct Case {
    const char* method;
    std::string body;
    const char* description;
  };
  const Case cases[] = {
      {"credentials/list", "{", "Malformed JSON"},
      {"credentials/list", "{\"userID\": \"a\",}", "Malformed JSON"},
      {"credentials/list", "[1, 2]", "JSON object"},
      {"credentials/list", "\"acct\"", "JSON object"},
      {"credentials/list", "{\"userID\": \"\xff\xfe\"}", "Malformed JSON"},
      {"credentials/list", "{}", "string parameter userID"},
      {"credentials/list", "{\"userID\": 7}", "string parameter userID"},
      {"credentials/list", "{\"userID\": \"a b\"}", "Invalid parameter userID"},
      {"credentials/list", "{\"userID\": \"a\", \"credentialInfo\": \"yes\"}",
       "boolean parameter credentialInfo"},
      {"credentials/list", "{\"userID\": \"a\", \"certificates\": \"all\"}",
       "Invalid parameter certificates"},
      {"credentials/info", "{\"credentialID\": [\"cred\"]}", "string parameter credentialID"},
      {"credentials/info", "{\"credentialID\": \"\"}", "string parameter credentialID"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "integer parameter numSignatures"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential,
                    "\",\"numSignatures\":\"1\",\"hashes\":[\"", hash,
                    "\"],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "integer parameter numSignatures"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":1.5,\"hashes\":[\"",
                    hash, "\"],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "integer parameter numSignatures"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":0,\"hashes\":[\"",
                    hash, "\"],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "numSignatures"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":2,\"hashes\":[\"",
                    hash, "\"],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "must equal the number of hashes"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential,
                    "\",\"numSignatures\":99999999999999999999,\"hashes\":[\"", hash,
                    "\"],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "numSignatures"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":1,\"hashes\":\"",
                    hash, "\",\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "array parameter hashes"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential,
                    "\",\"numSignatures\":1,\"hashes\":[],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "empty array"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential,
                    "\",\"numSignatures\":1,\"hashes\":[\"not base64!\"],\"hashAlgorithmOID\":\"",
                    kSha256, "\"}"),
       "not Base64"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential,
                    "\",\"numSignatures\":1,\"hashes\":[\"YWJj\"],\"hashAlgorithmOID\":\"", kSha256,
                    "\"}"),
       "Invalid digest value length"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":2,\"hashes\":[\"",
                    hash, "\",\"", hash, "\"],\"hashAlgorithmOID\":\"", kSha256, "\"}"),
       "repeats"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":1,\"hashes\":[\"",
                    hash, "\"]}"),
       "string parameter hashAlgorithmOID"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":1,\"hashes\":[\"",
                    hash, "\"],\"hashAlgorithmOID\":\"1.3.14.3.2.26\"}"),
       "Invalid parameter hashAlgorithmOID"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":1,\"hashes\":[\"",
                    hash, "\"],\"hashAlgorithmOID\":\"", kSha256, "\",\"description\":\"a\\nb\"}"),
       "Invalid parameter description"},
      {"credentials/authorize",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"numSignatures\":1,\"hashes\":[\"",
                    hash, "\"],\"hashAlgorithmOID\":\"", kSha256, "\",\"authData\":{}}"),
       "array parameter authData"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"signAlgo\":\"", kEcdsaSha256, "\"}"),
       "string parameter SAD"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"SAD\":\"x\"}"),
       "string parameter signAlgo"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"SAD\":\"x\",\"signAlgo\":\"1.2.3\"}"),
       "Invalid parameter signAlgo"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"SAD\":\"x\",\"signAlgo\":\"1.2.840.10045.2.1\"}"),
       "string parameter hashAlgorithmOID"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"SAD\":\"x\",\"signAlgo\":\"", kEcdsaSha256, "\",\"hashAlgorithmOID\":\"",
                    kSha384, "\"}"),
       "contradicts"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"SAD\":\"x\",\"signAlgo\":\"", kEcdsaSha256,
                    "\",\"operationMode\":\"A\"}"),
       "operationMode"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"SAD\":\"x\",\"signAlgo\":\"1.2.840.113549.1.1.10\","
                    "\"hashAlgorithmOID\":\"",
                    kSha256, "\",\"signAlgoParams\":\"MAA=\"}"),
       "signAlgoParams"},
      {"signatures/signHash",
       absl::StrCat("{\"credentialID\":\"", kCredential, "\",\"hashes\":[\"", hash,
                    "\"],\"SAD\":\"x\",\"signAlgo\":\"", kEcdsaSha256,
                    "\",\"clientData\":{\"a\":1}}"),
       "string parameter clientData"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.method, " ", c.body));
    ExpectError(Post(absl::StrCat("/csc/v2/", c.method), c.body, bearer), 400, "invalid_request",
                c.description);
  }
  // A PIN sent in band is refused, never forwarded.
  Json with_pin = AuthorizeBody(Sha256("x"));
  with_pin["authData"] = Json::array({{{"id", "PIN"}, {"value", kPin}}});
  Response pin = Call("credentials/authorize", with_pin, token);
  ExpectError(pin, 400, "invalid_authentication_data");
  EXPECT_THAT(pin.raw, Not(HasSubstr(kPin)));
  // Deep nesting within the size limit: refused, no stack overflow.
  const std::string deep = std::string(30000, '[') + std::string(30000, ']');
  ExpectError(Post("/csc/v2/credentials/list", deep, bearer), 400, "invalid_request");
  const std::string deep_object =
      absl::StrCat("{\"userID\":\"a\",\"clientData\":", std::string(30000, '['), "1",
                   std::string(30000, ']'), "}");
  ExpectError(Post("/csc/v2/credentials/list", deep_object, bearer), 400, "invalid_request");
  // Non-JSON bytes.
  ExpectError(Post("/csc/v2/credentials/list", std::string("\0\x01\x02", 3), bearer), 400,
              "invalid_request", "Malformed JSON");
  // Still serving.
  EXPECT_EQ(Call("credentials/list", {{"userID", kAccount}}, token).status, 200);
}

TEST_F(GatewayTest, HttpLevelErrorsAreCscErrorsToo) {
  const std::string token = Token();
  // Over the configured body limit: 413, before anything is parsed.
  Response big = Post("/csc/v2/credentials/list",
                      absl::StrCat("{\"userID\":\"", std::string(70 * 1024, 'a'), "\"}"),
                      absl::StrCat("Bearer ", token));
  ExpectError(big, 413, "invalid_request", "larger than 65536 bytes");
  ExpectError(Post("/csc/v2/nonsense", "{}"), 404, "invalid_request", "No such method");
  ExpectError(Post("/elsewhere", "{}"), 404, "invalid_request", "No such endpoint");
  ExpectError(Post("/csc/v2/signatures/signPolling", "{}", absl::StrCat("Bearer ", token)), 501,
              "invalid_request", "not implemented");
  ExpectError(Post("/csc/v2/credentials/extendTransaction", "{}"), 501, "invalid_request");
  httplib::Client client("127.0.0.1", server_->port());
  auto get = client.Get("/csc/v2/info");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(get->get_header_value("Allow"), "POST");
  EXPECT_EQ(Json::parse(get->body, nullptr, false).value("error", ""), "invalid_request");
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST_F(GatewayTest, ServiceOutagesAre503AndTheGatewaysOwnCredentialProblemsAre500) {
  const std::string token = Token();
  // Nothing listens on the backend's port.
  GrpcBackend down(
      qsign::daemon::DeferredChannel::Connected(
          "signer", grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials())),
      qsign::daemon::DeferredChannel::Connected(
          "consent", grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials())),
      "gateway", SecretString("gateway-secret"), absl::Seconds(2));
  StartGateway({}, &down);
  ExpectError(Call("credentials/list", {{"userID", kAccount}}, token), 503,
              "temporarily_unavailable", "retry");

  // The consent service refuses the gateway's credential: the relying party is not to blame.
  GrpcBackend misconfigured(
      qsign::daemon::DeferredChannel::Connected("signer", stack_->signer_channel()),
      qsign::daemon::DeferredChannel::Connected("consent", stack_->consent_channel()), "gateway",
      SecretString("wrong-secret"), absl::Seconds(5));
  StartGateway({}, &misconfigured);
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  Response r = Call("credentials/authorize", AuthorizeBody(Sha256("x")), token);
  ExpectError(r, 500, "server_error");
  EXPECT_THAT(r.raw, Not(HasSubstr("credential")));
}

// A signer that remembers the request id its handler ran under (common/request_id.h).
class RequestIdSigner final : public qsign::v1::Signer::Service {
 public:
  grpc::Status ListCredentials(grpc::ServerContext*, const qsign::v1::ListCredentialsRequest*,
                               qsign::v1::ListCredentialsResponse*) override {
    absl::MutexLock lock(&mu_);
    seen_ = std::string(request_id::Current());
    return grpc::Status::OK;
  }
  std::string seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  absl::Mutex mu_;
  std::string seen_ ABSL_GUARDED_BY(mu_);
};

TEST_F(GatewayTest, RequestIdsAreEchoedAndForwardedToTheServices) {
  const std::string token = Token();
  RequestIdSigner signer;
  auto signer_server = GrpcServer::Start({}, {&signer});
  ASSERT_TRUE(signer_server.ok()) << signer_server.status();
  auto channel =
      grpc::CreateChannel((*signer_server)->local_target(), grpc::InsecureChannelCredentials());
  GrpcBackend backend(qsign::daemon::DeferredChannel::Connected("signer", channel),
                      qsign::daemon::DeferredChannel::Connected("consent", channel), "gateway",
                      SecretString("gateway-secret"), absl::Seconds(5));
  StartGateway({}, &backend);
  httplib::Client client("127.0.0.1", server_->port());
  const std::string body = Json{{"userID", kAccount}}.dump();

  auto given = client.Post(
      "/csc/v2/credentials/list",
      {{"Authorization", absl::StrCat("Bearer ", token)}, {"X-Request-Id", "rp-trace.42"}}, body,
      "application/json");
  ASSERT_TRUE(given);
  EXPECT_EQ(given->status, 200) << given->body;
  EXPECT_EQ(given->get_header_value("X-Request-Id"), "rp-trace.42");
  EXPECT_EQ(signer.seen(), "rp-trace.42");

  auto malformed = client.Post(
      "/csc/v2/credentials/list",
      {{"Authorization", absl::StrCat("Bearer ", token)}, {"X-Request-Id", "no spaces allowed"}},
      body, "application/json");
  ASSERT_TRUE(malformed);
  const std::string generated = malformed->get_header_value("X-Request-Id");
  EXPECT_THAT(generated, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(signer.seen(), generated);

  // Errors found by the HTTP layer carry one too.
  auto missing = client.Get("/elsewhere", {{"X-Request-Id", "rp-404"}});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->get_header_value("X-Request-Id"), "rp-404");
  auto too_big = client.Post("/csc/v2/credentials/list", {{"X-Request-Id", "rp-413"}},
                             std::string(70 * 1024, 'a'), "application/json");
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413);
  EXPECT_EQ(too_big->get_header_value("X-Request-Id"), "rp-413");
}

// ---- The same journey driven by curl and checked by openssl, as a relying party would. ----

std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// Runs `command` through the shell; its stdout, and its exit status in *status.
std::string RunShell(const std::string& command, int* status) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int rc = pclose(pipe);
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

TEST_F(GatewayTest, CurlAndOpensslJourney) {
  const std::string curl = CURL_PATH;
  const std::string openssl = OPENSSL_PATH;
  if (curl.find("NOTFOUND") != std::string::npos || openssl.find("NOTFOUND") != std::string::npos) {
    GTEST_SKIP() << "curl or openssl not installed";
  }
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  char dir_template[] = "/tmp/qsign-gateway-curl-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string base = absl::StrCat("http://127.0.0.1:", server_->port(), "/csc/v2/");
  int status = 0;
  auto curl_json = [&](const std::string& method, const std::string& token, const Json& body) {
    WriteFile(dir + "/body.json", body.dump());
    const std::string out =
        RunShell(absl::StrCat(curl, " -sS -X POST -H 'Content-Type: application/json' -H ",
                              ShellQuote("Authorization: Bearer " + token), " --data-binary @", dir,
                              "/body.json ", ShellQuote(base + method)),
                 &status);
    EXPECT_EQ(status, 0) << method;
    return Json::parse(out, nullptr, false);
  };

  // 1. A token with HTTP Basic client authentication.
  Json token = Json::parse(
      RunShell(
          absl::StrCat(curl, " -sS -u ", ShellQuote(absl::StrCat(kRp, ":", kRpSecret)),
                       " -d grant_type=client_credentials ", ShellQuote(base + "oauth2/token")),
          &status),
      nullptr, false);
  ASSERT_EQ(status, 0);
  const std::string access_token = token.value("access_token", "");
  ASSERT_FALSE(access_token.empty()) << token;
  // 2. The credential and its certificate.
  Json list = curl_json("credentials/list", access_token, {{"userID", kAccount}});
  ASSERT_EQ(list.value("credentialIDs", Json::array()), Json::array({kCredential})) << list;
  Json info = curl_json("credentials/info", access_token, {{"credentialID", kCredential}});
  const std::string cert_b64 = info["cert"]["certificates"][0].get<std::string>();
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (size_t i = 0; i < cert_b64.size(); i += 64)
    absl::StrAppend(&pem, cert_b64.substr(i, 64), "\n");
  absl::StrAppend(&pem, "-----END CERTIFICATE-----\n");
  WriteFile(dir + "/cert.pem", pem);
  // 3. Authorize (the user approves on the app) and sign.
  const std::string hash = Sha256("document signed through curl");
  auto approval = ApproveNext(app->get(), hash);
  Json auth = curl_json("credentials/authorize", access_token, AuthorizeBody(hash));
  ASSERT_TRUE(approval.get().ok());
  const std::string sad = auth.value("SAD", "");
  ASSERT_FALSE(sad.empty()) << auth;
  Json sign = curl_json("signatures/signHash", access_token, SignBody(hash, sad));
  ASSERT_EQ(sign.value("signatures", Json::array()).size(), 1u) << sign;
  WriteFile(dir + "/hash.bin", hash);
  WriteFile(dir + "/sig.der", Unb64(sign["signatures"][0]));
  // 4. openssl: the signature over the hash verifies with the certificate's public key.
  RunShell(absl::StrCat(openssl, " x509 -in ", dir, "/cert.pem -pubkey -noout > ", dir, "/pub.pem"),
           &status);
  ASSERT_EQ(status, 0);
  const std::string verified =
      RunShell(absl::StrCat(openssl, " pkeyutl -verify -pubin -inkey ", dir, "/pub.pem -in ", dir,
                            "/hash.bin -sigfile ", dir, "/sig.der 2>&1"),
               &status);
  EXPECT_EQ(status, 0) << verified;
  EXPECT_THAT(verified, HasSubstr("Signature Verified Successfully"));
  WriteFile(dir + "/other.bin", Sha256("another document"));
  RunShell(absl::StrCat(openssl, " pkeyutl -verify -pubin -inkey ", dir, "/pub.pem -in ", dir,
                        "/other.bin -sigfile ", dir, "/sig.der >/dev/null 2>&1"),
           &status);
  EXPECT_NE(status, 0);
  RunShell(absl::StrCat("rm -rf ", ShellQuote(dir)), &status);
}

// ---- signatures/signDoc ----

// The owner's approval, on the app, of the next request; *shown gets what the app was shown.
std::future<absl::Status> ApproveDocuments(consent::ConsentAppSimulator* app,
                                           qsign::v1::ConsentRequest* shown, bool approve = true) {
  return std::async(std::launch::async, [app, shown, approve]() -> absl::Status {
    auto request = app->NextRequest(absl::Seconds(20));
    if (!request.ok()) return request.status();
    *shown = *request;
    auto decided = approve ? app->Approve(*request, kPin) : app->Deny(*request);
    return decided.status();
  });
}

std::string Pdfsig(const std::string& dir, const std::string& name, const std::string& pdf) {
  WriteFile(absl::StrCat(dir, "/", name), pdf);
  int status = 0;
  return RunShell(absl::StrCat("pdfsig ", dir, "/", name, " 2>&1"), &status);
}

// `openssl cms -verify` accepts the detached `p7s` over `content` (signature only, no chain).
void ExpectOpensslCmsVerifies(const std::string& dir, const std::string& content,
                              const std::string& p7s) {
  WriteFile(dir + "/izjava.txt", content);
  WriteFile(dir + "/izjava.p7s", p7s);
  int status = 0;
  const std::string cms =
      RunShell(absl::StrCat("openssl cms -verify -binary -inform DER -noverify -in ", dir,
                            "/izjava.p7s -content ", dir, "/izjava.txt -out /dev/null 2>&1"),
               &status);
  EXPECT_EQ(status, 0) << cms;
  EXPECT_THAT(cms, HasSubstr("Verification successful"));
}

TEST_F(GatewayTest, SignDocAsksTheAppInTheRequestedLanguage) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  const auto body = [&](std::string_view lang) {
    Json b = {{"credentialID", kCredential},
              {"description", "Izjava"},
              {"documents",
               {{{"document", B64("Izjava: saglasan sam.\n")},
                 {"signature_format", "C"},
                 {"conformance_level", "Ades-B-B"},
                 {"signed_envelope_property", "Detached"}}}}};
    if (!lang.empty()) b["lang"] = lang;
    return b;
  };
  for (const auto& [lang, verb] : std::vector<std::pair<std::string, std::string>>{
           {"sr-Latn-RS", "Potpiši "}, {"EN-gb", "Sign "}, {"", "Потпиши "}}) {
    SCOPED_TRACE(lang);
    qsign::v1::ConsentRequest shown;
    auto approval = ApproveDocuments(app->get(), &shown);
    Response r = Call("signatures/signDoc", body(lang), token);
    ASSERT_TRUE(approval.get().ok());
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_THAT(shown.display_text(), ::testing::StartsWith(verb));
  }
  ExpectError(Call("signatures/signDoc", body("en_US"), token), 400, "invalid_request", "lang");
}

TEST_F(GatewayTest, SignDocPadesAndCadesUnderOneApprovalAreValidForPdfsigAndOpenssl) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string token = Token();
  const std::string contract = qsign::pades::testing::SimplePdf(2, "Ugovor o radu");
  const std::string annex =
      qsign::pades::testing::WithObjectStreams(qsign::pades::testing::SimplePdf(1, "Aneks"));
  const std::string text = "Izjava: saglasan sam.\n";
  qsign::v1::ConsentRequest shown;
  auto approval = ApproveDocuments(app->get(), &shown);
  Response r = Call("signatures/signDoc",
                    {{"credentialID", kCredential},
                     {"description", "Ugovor o radu"},
                     {"documents",
                      {{{"document", B64(contract)},
                        {"signature_format", "P"},
                        {"conformance_level", "Ades-B-B"}},
                       {{"document", B64(annex)},
                        {"signature_format", "P"},
                        {"signed_envelope_property", "Revision"},
                        {"visible_signature", true}},
                       {{"document", B64(text)},
                        {"signature_format", "C"},
                        {"conformance_level", "Ades-B-B"},
                        {"signed_envelope_property", "Detached"}}}}},
                    token);
  ASSERT_TRUE(approval.get().ok());
  ASSERT_EQ(r.status, 200) << r.raw;
  // One approval for the three documents; the app showed each one's pages and SHA-256.
  ASSERT_EQ(shown.sign().hashes_size(), 3);
  ASSERT_EQ(shown.sign().documents_size(), 3);
  EXPECT_EQ(shown.sign().documents(0).page_count(), 2u);
  EXPECT_EQ(shown.sign().documents(0).document_digest(), Sha256(contract));
  EXPECT_EQ(shown.sign().documents(0).label(), "Ugovor o radu");
  EXPECT_EQ(shown.sign().documents(1).page_count(), 1u);
  EXPECT_EQ(shown.sign().documents(2).page_count(), 0u);
  EXPECT_EQ(shown.sign().documents(2).document_digest(), Sha256(text));
  EXPECT_EQ(shown.sign().relying_party_name(), kRpName);
  EXPECT_THAT(r.headers.find("Server-Timing")->second, HasSubstr("signer;dur="));

  ASSERT_EQ(r.body["DocumentWithSignature"].size(), 2u);
  ASSERT_EQ(r.body["SignatureObject"].size(), 1u);
  const std::string dir = ServiceTest::token().dir();
  const std::string signed_contract = Unb64(r.body["DocumentWithSignature"][0]);
  const std::string signed_annex = Unb64(r.body["DocumentWithSignature"][1]);
  EXPECT_TRUE(signed_contract.starts_with(contract)) << "not an incremental update";
  for (const auto& [name, pdf] :
       {std::pair{"contract.pdf", signed_contract}, std::pair{"annex.pdf", signed_annex}}) {
    const std::string report = Pdfsig(dir, name, pdf);
    EXPECT_THAT(report, HasSubstr("Signature Validation: Signature is Valid.")) << report;
    EXPECT_THAT(report, HasSubstr("Total document signed")) << report;
    EXPECT_THAT(report, HasSubstr("ETSI.CAdES.detached")) << report;
  }
  ExpectOpensslCmsVerifies(dir, text, Unb64(r.body["SignatureObject"][0]));
}

// An RFC 3161 TSA that is not qsign's: `openssl ts -reply` behind a loopback HTTP listener, with
// its own self-signed certificate (extendedKeyUsage timeStamping, critical).
// An openssl command behind an HTTP POST endpoint on loopback: each request's body is written to
// <dir>/<name>.in, `command` runs in `dir` and writes <dir>/<name>.out, which is the answer.
class OpensslResponder {
 public:
  OpensslResponder(std::string dir, std::string name, std::string content_type, std::string command)
      : dir_(std::move(dir)),
        name_(std::move(name)),
        content_type_(std::move(content_type)),
        command_(std::move(command)) {
    server_.Post("/" + name_, [this](const httplib::Request& req, httplib::Response& res) {
      absl::MutexLock lock(&mu_);
      ++queries_;
      if (broken_) {
        res.set_content("not an answer", content_type_);
        return;
      }
      WriteFile(absl::StrCat(dir_, "/", name_, ".in"), req.body);
      int rc = 0;
      const std::string out = RunShell(absl::StrCat("cd ", dir_, " && ", command_, " 2>&1"), &rc);
      EXPECT_EQ(rc, 0) << out;
      std::ifstream in(absl::StrCat(dir_, "/", name_, ".out"), std::ios::binary);
      res.set_content(std::string(std::istreambuf_iterator<char>(in), {}), content_type_);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~OpensslResponder() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/", name_); }
  int queries() {
    absl::MutexLock lock(&mu_);
    return queries_;
  }
  // From now on every reply is garbage.
  void Break() {
    absl::MutexLock lock(&mu_);
    broken_ = true;
  }

 private:
  const std::string dir_;
  const std::string name_;
  const std::string content_type_;
  const std::string command_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  absl::Mutex mu_;
  int queries_ ABSL_GUARDED_BY(mu_) = 0;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
};

// A CA made with the openssl CLI, and its OCSP responder (`openssl ocsp -index`): certificates
// it issues name that responder in their AIA, so a B-LT signature can fetch their status from a
// judge qsign did not write.
class OpensslCa {
 public:
  explicit OpensslCa(std::string dir)
      : dir_(std::move(dir)),
        ocsp_(dir_, "ocsp", "application/ocsp-response",
              "openssl ocsp -index index.txt -CA ca.pem -rsigner ca.pem -rkey ca.key "
              "-reqin ocsp.in -respout ocsp.out") {
    int status = 0;
    const std::string out = RunShell(
        absl::StrCat(
            "cd ", dir_, " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 ",
            "-nodes -keyout ca.key -out ca.pem -days 30 -subj '/CN=Test Root CA' 2>&1 && ",
            ": > index.txt && printf '[leaf]\nkeyUsage = critical,nonRepudiation\n",
            "authorityInfoAccess = OCSP;URI:", ocsp_.url(), "\n[tsa]\n",
            "keyUsage = critical,digitalSignature\n", "extendedKeyUsage = critical,timeStamping\n",
            "authorityInfoAccess = OCSP;URI:", ocsp_.url(), "\n' > ext.cnf"),
        &status);
    EXPECT_EQ(status, 0) << out;
  }
  int queries() { return ocsp_.queries(); }

  // A certificate over `spki_der` (`extensions`: "leaf" or "tsa" of ext.cnf) with serial
  // `serial_hex`, written to <dir>/<name>.pem and listed as valid in the responder's index; its
  // DER, or "" when openssl failed (the test's EXPECT says why).
  std::string Issue(const std::string& name, const std::string& spki_der,
                    const std::string& serial_hex, const std::string& extensions) {
    WriteFile(absl::StrCat(dir_, "/", name, ".spki"), spki_der);
    int status = 0;
    const std::string out = RunShell(
        absl::StrCat("cd ", dir_, " && openssl pkey -pubin -inform DER -in ", name, ".spki -out ",
                     name, ".pub && openssl req -new -newkey ec -pkeyopt ",
                     "ec_paramgen_curve:P-256 -nodes -keyout ", name, ".throwaway -subj '/CN=",
                     name, "' -out ", name, ".csr 2>&1 && openssl x509 -req -in ", name,
                     ".csr -CA ca.pem -CAkey ca.key -force_pubkey ", name, ".pub -set_serial 0x",
                     serial_hex, " -days 30 -extfile ext.cnf -extensions ", extensions, " -out ",
                     name, ".pem 2>&1 && printf 'V\\t", "351231000000Z\\t\\t", serial_hex,
                     "\\tunknown\\t/CN=", name, "\\n' >> index.txt && ", "openssl x509 -in ", name,
                     ".pem -outform DER -out ", name, ".der"),
        &status);
    EXPECT_EQ(status, 0) << out;
    std::ifstream in(absl::StrCat(dir_, "/", name, ".der"), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string RootDer() {
    int status = 0;
    RunShell(absl::StrCat("cd ", dir_, " && openssl x509 -in ca.pem -outform DER -out ca.der"),
             &status);
    std::ifstream in(dir_ + "/ca.der", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  const std::string dir_;
  OpensslResponder ocsp_;
};

// An RFC 3161 TSA made of `openssl ts -reply`.
class OpensslTsa {
 public:
  // Its certificate self-signed, or issued by `ca` (then `dir` is the CA's directory).
  static std::unique_ptr<OpensslTsa> Start(const std::string& dir, OpensslCa* ca = nullptr) {
    int status = 0;
    if (ca != nullptr) {
      const std::string out = RunShell(
          absl::StrCat("cd ", dir, " && openssl genpkey -algorithm EC -pkeyopt ",
                       "ec_paramgen_curve:P-256 -out tsa.key 2>&1 && openssl pkey -in tsa.key ",
                       "-pubout -outform DER -out tsa-key.spki 2>&1"),
          &status);
      EXPECT_EQ(status, 0) << out;
      std::ifstream spki(dir + "/tsa-key.spki", std::ios::binary);
      ca->Issue("tsa", std::string(std::istreambuf_iterator<char>(spki), {}), "1002", "tsa");
    }
    const std::string out = RunShell(
        absl::StrCat(
            "cd ", dir, " && ",
            ca != nullptr
                ? std::string("true")
                : std::string("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                              "-nodes -keyout tsa.key -out tsa.pem -days 30 -subj '/CN=test TSA' "
                              "-addext 'extendedKeyUsage=critical,timeStamping'"),
            " 2>&1 && printf '", "[tsa]\\ndefault_tsa = t\\n[t]\\nserial = ", dir, "/tsa.serial\\n",
            "signer_digest = sha256\\ndefault_policy = 1.3.6.1.4.1.99999.1\\n",
            "digests = sha256\\n", "ess_cert_id_alg = sha256\\naccuracy = secs:1\\n' > ts.cnf && ",
            "echo 01 > tsa.serial"),
        &status);
    EXPECT_EQ(status, 0) << out;
    return std::make_unique<OpensslTsa>(dir);
  }
  explicit OpensslTsa(const std::string& dir)
      : responder_(dir, "tsa", "application/timestamp-reply",
                   "openssl ts -reply -config ts.cnf -section t -queryfile tsa.in -signer "
                   "tsa.pem -inkey tsa.key -out tsa.out") {}
  std::string url() const { return responder_.url(); }
  int queries() { return responder_.queries(); }
  // From now on every reply is garbage.
  void Break() { responder_.Break(); }

 private:
  OpensslResponder responder_;
};

TEST_F(GatewayTest, SignDocBTHasTheTsaTimestampPdfsigAndOpensslAccept) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  const std::string dir = ServiceTest::token().dir() + "/tsa";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  std::unique_ptr<OpensslTsa> tsa = OpensslTsa::Start(dir);
  GatewayConfig config{.authorize_wait = absl::Seconds(10)};
  config.tsa_url = tsa->url();
  StartGateway(config, nullptr, 1 << 20);
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string contract =
      qsign::pades::testing::WithObjectStreams(qsign::pades::testing::SimplePdf(2, "Ugovor"));
  const std::string text = "Izjava sa vremenskim žigom.\n";
  qsign::v1::ConsentRequest shown;
  auto approval = ApproveDocuments(app->get(), &shown);
  const absl::Time before = absl::Now() - absl::Seconds(2);
  Response r = Call(
      "signatures/signDoc",
      {{"credentialID", kCredential},
       {"documents",
        {{{"document", B64(contract)},
          {"signature_format", "P"},
          {"conformance_level", "Ades-B-T"}},
         {{"document", B64(text)}, {"signature_format", "C"}, {"conformance_level", "Ades-B-T"}}}}},
      Token());
  ASSERT_TRUE(approval.get().ok());
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(tsa->queries(), 2);  // One signature timestamp per document.
  EXPECT_THAT(r.headers.find("Server-Timing")->second, HasSubstr("tsa;dur="));

  // The PDF: pdfsig accepts it; its CMS carries a timestamp over its signature from this TSA.
  const std::string signed_pdf = Unb64(r.body["DocumentWithSignature"][0]);
  const std::string report = Pdfsig(dir, "contract.pdf", signed_pdf);
  EXPECT_THAT(report, HasSubstr("Signature Validation: Signature is Valid.")) << report;
  EXPECT_THAT(report, HasSubstr("Total document signed")) << report;
  absl::StatusOr<qsign::pades::PdfFacts> facts = qsign::pades::ReadPdf(signed_pdf);
  ASSERT_TRUE(facts.ok()) << facts.status();
  ASSERT_EQ(facts->signatures.size(), 1u);
  // The .p7s: openssl cms accepts it; both tokens verify with `openssl ts -verify` against the
  // TSA's certificate, over the signature value they stamp.
  const std::string p7s = Unb64(r.body["SignatureObject"][0]);
  ExpectOpensslCmsVerifies(dir, text, p7s);
  int status = 0;
  for (const auto& [name, cms_der] :
       {std::pair{"pdf", facts->signatures[0].cms_der}, std::pair{"p7s", p7s}}) {
    SCOPED_TRACE(name);
    absl::StatusOr<std::vector<std::string>> tokens =
        qsign::cades::SignatureTimestampTokens(cms_der);
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    ASSERT_EQ(tokens->size(), 1u);
    absl::StatusOr<qsign::cades::TimestampToken> token =
        qsign::cades::ReadTimestampToken((*tokens)[0]);
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_GE(token->gen_time, before);
    EXPECT_LE(token->gen_time, absl::Now() + absl::Seconds(2));
    WriteFile(absl::StrCat(dir, "/", name, ".tst"), token->der);
    WriteFile(absl::StrCat(dir, "/", name, ".sig"), qsign::testing::SignatureValue(cms_der));
    const std::string verified =
        RunShell(absl::StrCat("openssl ts -verify -token_in -in ", dir, "/", name, ".tst -data ",
                              dir, "/", name, ".sig -CAfile ", dir, "/tsa.pem 2>&1"),
                 &status);
    EXPECT_EQ(status, 0) << verified;
    EXPECT_THAT(verified, HasSubstr("Verification: OK"));
  }

  // A TSA answering garbage: the caller is told it is the server side's fault (502), by name.
  tsa->Break();
  auto second = ApproveDocuments(app->get(), &shown);
  Response bad = Call(
      "signatures/signDoc",
      {{"credentialID", kCredential},
       {"documents",
        {{{"document", B64(text)}, {"signature_format", "C"}, {"conformance_level", "Ades-B-T"}}}}},
      Token());
  ASSERT_TRUE(second.get().ok());
  ExpectError(bad, 502, "server_error", "timestamp");
}

TEST_F(GatewayTest, SignDocBLTCarriesTheChainsOcspAnswersThatOpensslAccepts) {
  // A CA made with openssl, its OCSP responder (openssl ocsp), and a TSA it certified.
  const std::string dir = ServiceTest::token().dir() + "/pki";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  auto ca = std::make_unique<OpensslCa>(dir);
  std::unique_ptr<OpensslTsa> tsa = OpensslTsa::Start(dir, ca.get());
  const std::string root = ca->RootDer();
  ASSERT_FALSE(root.empty());
  auto credential = stack_->ActiveCredential(
      kCredential, kAccount,
      [&](const std::string& spki) -> absl::StatusOr<std::vector<std::string>> {
        return std::vector<std::string>{ca->Issue("signer", spki, "1001", "leaf"), root};
      });
  ASSERT_TRUE(credential.ok()) << credential.status();
  GatewayConfig config{.authorize_wait = absl::Seconds(10)};
  config.tsa_url = tsa->url();
  StartGateway(config, nullptr, 1 << 20);
  auto app = stack_->EnrolledApp(kAccount, kPin);
  ASSERT_TRUE(app.ok()) << app.status();

  const std::string contract = qsign::pades::testing::SimplePdf(1, "Ugovor");
  const std::string text = "Izjava, dugoročno proverljiva.\n";
  qsign::v1::ConsentRequest shown;
  auto approval = ApproveDocuments(app->get(), &shown);
  Response r = Call("signatures/signDoc",
                    {{"credentialID", kCredential},
                     {"returnValidationInfo", true},
                     {"documents",
                      {{{"document", B64(contract)},
                        {"signature_format", "P"},
                        {"conformance_level", "Ades-B-LT"}},
                       {{"document", B64(text)},
                        {"signature_format", "C"},
                        {"conformance_level", "Ades-B-LT"}}}}},
                    Token());
  ASSERT_TRUE(approval.get().ok());
  ASSERT_EQ(r.status, 200) << r.raw;
  // The signer's and the TSA's certificates, each asked of the responder, per document.
  EXPECT_GE(ca->queries(), 2);
  ASSERT_TRUE(r.body.contains("validationInfo")) << r.raw;
  ASSERT_GE(r.body["validationInfo"]["ocsp"].size(), 2u) << r.raw;

  // Every OCSP answer given back verifies with openssl against the root, and says the signer's
  // certificate is good.
  int good = 0;
  for (const auto& o : r.body["validationInfo"]["ocsp"]) {
    WriteFile(dir + "/answer.ocsp", Unb64(o.get<std::string>()));
    int status = 0;
    const std::string out =
        RunShell(absl::StrCat("cd ", dir, " && openssl ocsp -respin answer.ocsp -CAfile ca.pem ",
                              "-issuer ca.pem -cert signer.pem 2>&1"),
                 &status);
    EXPECT_THAT(out, HasSubstr("Response verify OK")) << out;
    if (out.find("signer.pem: good") != std::string::npos) ++good;
  }
  EXPECT_EQ(good, 2);  // One per document.

  // The PDF: a DSS with the responder's answers, and pdfsig accepts the signature.
  const std::string signed_pdf = Unb64(r.body["DocumentWithSignature"][0]);
  absl::StatusOr<qsign::pades::PdfFacts> facts = qsign::pades::ReadPdf(signed_pdf);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_GE(facts->dss.ocsp_responses_der.size(), 2u);
  EXPECT_GE(facts->dss.certificates_der.size(), 2u);
  const std::string report = Pdfsig(dir, "contract.pdf", signed_pdf);
  EXPECT_THAT(report, HasSubstr("Signature Validation: Signature is Valid.")) << report;
  // The .p7s: the answers travel inside it, and openssl cms verifies it with the chain to the
  // root (not -noverify).
  const std::string p7s = Unb64(r.body["SignatureObject"][0]);
  absl::StatusOr<qsign::cades::ValidationData> embedded = qsign::cades::EmbeddedValidationData(p7s);
  ASSERT_TRUE(embedded.ok()) << embedded.status();
  EXPECT_GE(embedded->ocsp_responses_der.size(), 2u);
  WriteFile(dir + "/izjava.txt", text);
  WriteFile(dir + "/izjava.p7s", p7s);
  int status = 0;
  const std::string cms = RunShell(
      absl::StrCat("cd ", dir, " && openssl cms -verify -binary -inform DER -in izjava.p7s ",
                   "-content izjava.txt -CAfile ca.pem -purpose any -out /dev/null 2>&1"),
      &status);
  EXPECT_EQ(status, 0) << cms;
  EXPECT_THAT(cms, HasSubstr("Verification successful"));
}

TEST_F(GatewayTest, SignDocRefusesOversizedDocumentsWith413AndBadInputByName) {
  ASSERT_TRUE(stack_->ActiveCredential(kCredential, kAccount).ok());
  GatewayConfig config{.authorize_wait = absl::Seconds(10)};
  config.signdoc_max_document_bytes = 4096;
  StartGateway(config);
  const std::string token = Token();
  const auto doc = [](const std::string& content, const char* format) {
    return Json{{"document", B64(content)}, {"signature_format", format}};
  };
  const auto body = [&](Json document) {
    return Json{{"credentialID", kCredential}, {"documents", Json::array({document})}};
  };
  ExpectError(Call("signatures/signDoc", body(doc(std::string(5000, 'x'), "C")), token), 413,
              "invalid_request", "larger than 4096 bytes");
  ExpectError(Call("signatures/signDoc", body(doc("not a pdf", "P")), token), 400,
              "invalid_request", "documents[0]");
  ExpectError(Call("signatures/signDoc", body(doc("x", "X")), token), 400, "invalid_request",
              "signature_format");
  Json with_sad = body(doc("x", "C"));
  with_sad["SAD"] = "abc";
  ExpectError(Call("signatures/signDoc", with_sad, token), 400, "invalid_request", "SAD");
  Json bt = doc("x", "C");
  bt["conformance_level"] = "Ades-B-T";
  ExpectError(Call("signatures/signDoc", body(bt), token), 400, "invalid_request",
              "no timestamp authority");
  Json lta = doc("x", "C");
  lta["conformance_level"] = "Ades-B-LTA";
  ExpectError(Call("signatures/signDoc", body(lta), token), 400, "invalid_request",
              "conformance_level");
  ExpectError(Call("signatures/signDoc", {{"credentialID", kCredential}}, token), 400,
              "invalid_request", "documents");
  const std::string pdf = qsign::pades::testing::SimplePdf(1, "Twice");
  ExpectError(Call("signatures/signDoc",
                   {{"credentialID", kCredential},
                    {"documents", Json::array({doc(pdf, "P"), doc(pdf, "P")})}},
                   token),
              400, "invalid_request", "the same document as documents[0]");
}

}  // namespace
}  // namespace qsign::gateway

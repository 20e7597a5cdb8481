// The web front ends against the real services (tests/testing Stacks: identity, consent,
// lifecycle and signer on PostgreSQL and SoftHSM2, the web stack on 127.0.0.1 port 0), driven
// over HTTP the way a browser would: cookies, CSRF tokens from the page, form posts. The
// consent app is the simulator here; the browser app is exercised by tests/web (Chromium).
#include <httplib.h>
#include <openssl/sha.h>

#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/cades/timestamp.h"
#include "common/cades/validation_data.h"
#include "common/pades/pdf_signature.h"
#include "common/pades/testing/test_pdfs.h"
#include "common/signdoc/signdoc.h"
#include "consent/app_simulator.h"
#include "consent/statement.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "services/gateway/stack.h"
#include "services/lifecycle/stack.h"
#include "services/web/html.h"
#include "services/web/i18n.h"
#include "services/web/sessions.h"
#include "services/web/stack.h"
#include "tests/testing/registration.h"
#include "tests/testing/service_test.h"
#include "tests/testing/shell.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"
#include "tests/testing/test_pki.h"

namespace qsign::web {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A browser's share of HTTP: a cookie jar, the page's CSRF token, form posts.
class Browser {
 public:
  // `from`: the loopback address the browser connects from (e.g. "127.0.0.2"), or the default.
  explicit Browser(int port, const std::string& from = "") : from_(from) { Use(port); }

  // From now on this browser's requests go to the web listening on `port` (another replica:
  // the same cookies, as behind a round-robin balancer).
  void Use(int port) {
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port);
    client_->set_read_timeout(60, 0);
    if (!from_.empty()) client_->set_interface(from_);
  }

  httplib::Result Get(const std::string& path) {
    auto res = client_->Get(path, Headers());
    Keep(res);
    return res;
  }

  // A form post with the CSRF token of the last page seen.
  httplib::Result Post(const std::string& path, httplib::Params params, bool with_csrf = true,
                       std::string origin = "") {
    if (with_csrf) params.emplace("csrf", csrf_);
    httplib::Headers headers = Headers();
    if (!origin.empty()) headers.emplace("Origin", origin);
    auto res = client_->Post(path, headers, params);
    Keep(res);
    return res;
  }

  // A form with one file (multipart/form-data) and the CSRF token.
  httplib::Result Upload(const std::string& path, const std::string& filename,
                         const std::string& content, const std::string& type,
                         const std::string& level = "") {
    httplib::MultipartFormDataItems items = {{"csrf", csrf_, "", ""},
                                             {"file", content, filename, type}};
    if (!level.empty()) items.push_back({"level", level, "", ""});
    auto res = client_->Post(path, Headers(), items);
    Keep(res);
    return res;
  }

  // A script's POST: the token in X-CSRF-Token.
  httplib::Result PostJson(const std::string& path, const std::string& body) {
    httplib::Headers headers = Headers();
    headers.emplace("X-CSRF-Token", csrf_);
    auto res = client_->Post(path, headers, body, "application/json");
    Keep(res);
    return res;
  }

  void SetLang(const std::string& tag) { cookies_["qsign_lang"] = tag; }
  void SetCookie(const std::string& name, const std::string& value) { cookies_[name] = value; }
  // A header sent with every request from now on (e.g. a forged X-Forwarded-For).
  void SetHeader(const std::string& name, const std::string& value) { extra_[name] = value; }
  const std::string& csrf() const { return csrf_; }
  std::string cookie(const std::string& name) const {
    auto it = cookies_.find(name);
    return it == cookies_.end() ? "" : it->second;
  }
  const std::vector<std::string>& set_cookie_lines() const { return set_cookie_lines_; }

 private:
  httplib::Headers Headers() const {
    std::string jar;
    for (const auto& [name, value] : cookies_) absl::StrAppend(&jar, name, "=", value, "; ");
    httplib::Headers headers = {{"Cookie", jar}, {"User-Agent", "web_test"}};
    for (const auto& [name, value] : extra_) headers.emplace(name, value);
    return headers;
  }

  void Keep(const httplib::Result& res) {
    if (!res) return;
    for (auto [it, end] = res->headers.equal_range("Set-Cookie"); it != end; ++it) {
      set_cookie_lines_.push_back(it->second);
      const std::string& line = it->second;
      const size_t eq = line.find('=');
      const size_t semi = line.find(';');
      const std::string name = line.substr(0, eq);
      const std::string value = line.substr(eq + 1, semi - eq - 1);
      if (absl::StrContains(line, "Max-Age=0")) {
        cookies_.erase(name);
      } else {
        cookies_[name] = value;
      }
    }
    static const std::regex kCsrf("<meta name=\"csrf-token\" content=\"([^\"]+)\">");
    std::smatch m;
    if (std::regex_search(res->body, m, kCsrf)) csrf_ = m[1];
  }

  std::string from_;
  std::unique_ptr<httplib::Client> client_;
  std::map<std::string, std::string> cookies_;
  std::map<std::string, std::string> extra_;
  std::string csrf_;
  std::vector<std::string> set_cookie_lines_;
};

class WebTest : public testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    // An e-service registered for the sign-in (authorization code + PKCE) only, and one the
    // operator allowed the client credentials grant.
    std::ofstream(token().dir() + "/relying-parties")
        << "e-uprava " << absl::BytesToHexString(Sha256(kRpSecret)) << " e-Управа\n"
        << "+redirect_uri e-uprava " << kRedirect << "\n"
        << "legacy " << absl::BytesToHexString(Sha256(kRpSecret)) << " Legacy\n"
        << "+client_credentials legacy\n";
    std::vector<std::string> services = {"signer",    "consent", "identity",
                                         "lifecycle", "gateway", "web"};
    if (with_tsa_) services.push_back("tsa");
    auto stacks = testing::Stacks::Start(
        env(), {.services = services, .configure = [this](config::v1::ServerConfig& c) {
                  c.mutable_consent()->set_enrollments_per_address_per_minute(0);
                  Configure(c);
                }});
    ASSERT_TRUE(stacks.ok()) << stacks.status();
    stacks_ = *std::move(stacks);
    port_ = HttpPort(stacks_->server().stack("web"));
    ASSERT_GT(port_, 0);
    gateway_port_ = gateway::HttpPort(stacks_->server().stack("gateway"));
    ASSERT_GT(gateway_port_, 0);
    WaitForSessionFeeds();
  }

  // A test fixture's own settings, after the defaults above.
  virtual void Configure(config::v1::ServerConfig& c) {}
  // Set by a fixture's constructor: the TSA runs too (its own config in Configure).
  bool with_tsa_ = false;
  // How long the user reads a request on the app before approving it.
  absl::Duration reading_time_ = absl::ZeroDuration();

  // Uploads `content` as `name` on the sign page at `level` ("" leaves the form's choice out),
  // approves the request on `app` (checking what it shows) and polls once: the poll's JSON
  // answer; `job` gets the job's id.
  std::string UploadApprovePoll(Browser& portal, consent::ConsentAppSimulator& app,
                                const std::string& name, const std::string& content,
                                const std::string& type, uint32_t pages, const std::string& level,
                                std::string* job) {
    portal.Get("/sign");
    auto up = portal.Upload("/sign", name, content, type, level);
    EXPECT_TRUE(up && up->status == 303);
    if (!up) return "";
    const std::string wait_url = up->get_header_value("Location");
    EXPECT_THAT(wait_url, HasSubstr("/sign/wait?job="));
    auto wait = portal.Get(wait_url);
    EXPECT_TRUE(wait && wait->status == 200);
    if (!wait) return "";
    EXPECT_THAT(wait->body, HasSubstr(absl::BytesToHexString(Sha256(content))));
    auto request = app.NextRequest(absl::Seconds(10));
    EXPECT_TRUE(request.ok()) << request.status();
    if (!request.ok()) return "";
    EXPECT_EQ(request->kind(), qsign::v1::CONSENT_REQUEST_KIND_SIGN);
    EXPECT_EQ(request->sign().documents(0).document_name(), name);
    EXPECT_EQ(request->sign().documents(0).document_digest(), Sha256(content));
    EXPECT_EQ(request->sign().documents(0).page_count(), pages);
    absl::SleepFor(reading_time_);
    auto approved = app.Approve(*request, testing::kPin);
    EXPECT_TRUE(approved.ok() && approved->result() == qsign::v1::APPROVE_RESULT_APPROVED);
    *job = wait_url.substr(wait_url.find("job=") + 4);
    auto polled = portal.PostJson("/sign/poll?job=" + *job, "");
    EXPECT_TRUE(polled && polled->status == 200);
    return polled ? polled->body : "";
  }

  // A PDF signed at `level`, approved, whose poll answers `state` (tsa_failed, ocsp_failed): the
  // waiting page is then a 503 error page in every language, its text the state's. The job.
  std::string ExpectFailurePage(Browser& portal, consent::ConsentAppSimulator& app,
                                const std::string& level, const std::string& state) {
    std::string job;
    const std::string polled =
        UploadApprovePoll(portal, app, "ugovor.pdf", pades::testing::SimplePdf(1, "Ugovor"),
                          "application/pdf", 1, level, &job);
    EXPECT_EQ(polled, Cat(R"({"state":")", state, "\"}"));
    for (Lang lang : AllLangs()) {
      portal.SetLang(std::string(LangTag(lang)));
      auto page = portal.Get("/sign/wait?job=" + job);
      EXPECT_TRUE(page);
      if (!page) continue;
      EXPECT_EQ(page->status, 503);
      EXPECT_THAT(page->body, HasSubstr(Esc(T(lang, "sign.failed.title"))));
      EXPECT_THAT(page->body, HasSubstr(Esc(T(lang, Cat("sign.", state)))));
      EXPECT_THAT(page->body, HasSubstr(R"(id="sign-again")"));
    }
    return job;
  }

  // As UploadApprovePoll, expecting the signed file: its download.
  std::string SignThroughThePortal(Browser& portal, consent::ConsentAppSimulator& app,
                                   const std::string& name, const std::string& content,
                                   const std::string& type, uint32_t pages,
                                   const std::string& level = "") {
    std::string job;
    const std::string polled =
        UploadApprovePoll(portal, app, name, content, type, pages, level, &job);
    EXPECT_EQ(polled, Cat(R"({"state":"done","download":"/sign/download?job=)", job, "\"}"));
    auto download = portal.Get("/sign/download?job=" + job);
    EXPECT_TRUE(download && download->status == 200);
    if (!download) return "";
    EXPECT_THAT(download->get_header_value("Content-Disposition"), HasSubstr("filename*=UTF-8''"));
    // Another browser cannot fetch it.
    Browser other(port_);
    auto stolen = other.Get("/sign/download?job=" + job);
    EXPECT_TRUE(stolen && stolen->status != 200);
    return download->body;
  }

  // Lifecycle and consent verify session tokens from identity's feed, read in the background:
  // until the first read they answer UNAVAILABLE (a loaded machine takes a moment).
  void WaitForSessionFeeds() {
    auto lifecycle = qsign::v1::Lifecycle::NewStub(stacks_->channel());
    auto consent = qsign::v1::Consent::NewStub(stacks_->channel());
    for (int i = 0; i < 200; ++i) {
      grpc::ClientContext a, b;
      a.AddMetadata("authorization", "Bearer not-a-token");
      b.AddMetadata("authorization", "Bearer not-a-token");
      qsign::v1::GetStatusResponse status;
      qsign::v1::AuthorizeResponse authorized;
      const bool ready =
          lifecycle->GetStatus(&a, {}, &status).error_code() != grpc::StatusCode::UNAVAILABLE &&
          consent->Authorize(&b, {}, &authorized).error_code() != grpc::StatusCode::UNAVAILABLE;
      if (ready) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    FAIL() << "the session feeds were not read within 10 s";
  }

  static constexpr char kRpSecret[] = "e-uprava-secret-e-uprava-secret";
  static constexpr char kRedirect[] = "http://127.0.0.1:9/callback";

  // A citizen with an active certificate and a watching app, through the pages.
  // A citizen with an active certificate and an app that watches; `portal` (if given) stays
  // logged in as them.
  std::unique_ptr<consent::ConsentAppSimulator> CitizenWithCertificate(
      const std::string& username, int n, Browser* logged_in = nullptr) {
    const std::string code = RegisterAndProof(username, n);
    auto app = consent::ConsentAppSimulator::New(stacks_->NewChannel());
    EXPECT_TRUE(app.ok());
    if (!app.ok() || code.empty()) return nullptr;
    EXPECT_TRUE((*app)->Enroll(code, "phone", testing::kPin).ok());
    EXPECT_TRUE((*app)->StartWatching().ok());
    Browser own(port_);
    Browser& portal = logged_in != nullptr ? *logged_in : own;
    LogIn(portal, **app, username);
    auto contract = portal.Get("/contract");
    std::smatch m;
    static const std::regex kVersion("name=\"version\" value=\"([^\"]+)\"");
    EXPECT_TRUE(std::regex_search(contract->body, m, kVersion));
    portal.Post("/contract/accept", {{"version", m[1]}});
    portal.Get("/cert/issue");
    portal.Post("/cert/issue", {});
    auto account = portal.Get("/account");
    EXPECT_THAT(account->body, HasSubstr(T(Lang::kSrCyrl, "cert.state.active")));
    return *std::move(app);
  }

  // The e-service's side of the authorization code grant: the sign-in in the browser (pages of
  // the gateway), the approval on the app, the code at the redirect URI, the token.
  // `shown` (optional) gets the request's text as the app showed it.
  nlohmann::json SignInAtTheGateway(consent::ConsentAppSimulator& app, const std::string& query,
                                    const std::string& username, std::string* redirect,
                                    std::string* shown = nullptr) {
    const std::string verifier = "a-pkce-verifier-of-at-least-43-characters-0123456789";
    const std::string challenge = absl::WebSafeBase64Escape(Sha256(verifier));
    httplib::Client gw("127.0.0.1", gateway_port_);
    gw.set_read_timeout(60, 0);
    auto page = gw.Get(Cat("/csc/v2/oauth2/authorize?response_type=code&client_id=e-uprava",
                           "&redirect_uri=", kRedirect, "&code_challenge=", challenge,
                           "&code_challenge_method=S256&state=st-42", query));
    EXPECT_TRUE(page && page->status == 200);
    if (!page || page->status != 200) return {};
    EXPECT_THAT(page->body, HasSubstr("e-Управа"));
    EXPECT_EQ(page->get_header_value("Content-Security-Policy").find("script-src 'self'") !=
                  std::string::npos,
              true);
    std::smatch m;
    static const std::regex kTicket("name=\"ticket\" value=\"([^\"]+)\"");
    EXPECT_TRUE(std::regex_search(page->body, m, kTicket));
    httplib::Params form{{"ticket", m[1]}};
    if (!username.empty()) form.emplace("username", username);
    auto started = gw.Post("/csc/v2/oauth2/authorize", form);
    EXPECT_TRUE(started && started->status == 200);
    if (!started) return {};
    static const std::regex kWait("data-ticket=\"([^\"]+)\"");
    EXPECT_TRUE(std::regex_search(started->body, m, kWait)) << started->body;
    const std::string wait_ticket = m[1];
    auto request = app.NextRequest(absl::Seconds(10));
    EXPECT_TRUE(request.ok()) << request.status();
    if (!request.ok()) return {};
    if (shown != nullptr) *shown = request->display_text();
    if (request->has_login()) {
      static const std::regex kCode("id=\"code\" class=\"code\">([0-9]+)<");
      EXPECT_TRUE(std::regex_search(started->body, m, kCode));
      EXPECT_EQ(request->login().verification_code(), m[1]);
      // The app shows which e-service asks.
      EXPECT_THAT(request->login().client_description(), HasSubstr("e-service: e-Управа"));
    } else {
      EXPECT_EQ(request->sign().relying_party_name(), "e-Управа");
    }
    EXPECT_TRUE(app.Approve(*request, testing::kPin).ok());
    auto polled = gw.Post("/csc/v2/oauth2/authorize/poll",
                          nlohmann::json({{"ticket", wait_ticket}}).dump(), "application/json");
    EXPECT_TRUE(polled && polled->status == 200);
    if (!polled) return {};
    const auto answer = nlohmann::json::parse(polled->body);
    EXPECT_EQ(answer["state"], "done") << polled->body;
    *redirect = answer.value("redirect", "");
    EXPECT_THAT(*redirect, HasSubstr(Cat(kRedirect, "?code=")));
    EXPECT_THAT(*redirect, HasSubstr("&state=st-42"));
    const std::string code = redirect->substr(
        redirect->find("code=") + 5, redirect->find("&state") - redirect->find("code=") - 5);
    // Another verifier does not redeem the code.
    auto stolen = gw.Post("/csc/v2/oauth2/token",
                          Cat("grant_type=authorization_code&code=", code,
                              "&redirect_uri=", kRedirect, "&code_verifier=", std::string(43, 'x'),
                              "&client_id=e-uprava&client_secret=", kRpSecret),
                          "application/x-www-form-urlencoded");
    EXPECT_EQ(stolen->status, 400);
    EXPECT_THAT(stolen->body, HasSubstr("invalid_grant"));
    auto token =
        gw.Post("/csc/v2/oauth2/token",
                Cat("grant_type=authorization_code&code=", code, "&redirect_uri=", kRedirect,
                    "&code_verifier=", verifier, "&client_id=e-uprava&client_secret=", kRpSecret),
                "application/x-www-form-urlencoded");
    EXPECT_TRUE(token && token->status == 200) << (token ? token->body : "");
    if (!token || token->status != 200) return {};
    return nlohmann::json::parse(token->body);
  }

  nlohmann::json Csc(const std::string& method, const nlohmann::json& body,
                     const std::string& access_token, int* status = nullptr) {
    httplib::Client gw("127.0.0.1", gateway_port_);
    auto res = gw.Post(Cat("/csc/v2/", method), {{"Authorization", Cat("Bearer ", access_token)}},
                       body.dump(), "application/json");
    if (status != nullptr) *status = res ? res->status : 0;
    return res ? nlohmann::json::parse(res->body, nullptr, false) : nlohmann::json();
  }

  // Registers through the portal and proofs through the office console; answers the
  // activation code shown to the officer.
  std::string RegisterAndProof(const std::string& username, int n) {
    if (!Register(username, n)) return "";
    return Proof(username);
  }

  // Registers through the portal: the form, then the e-mailed link's page.
  bool Register(const std::string& username, int n) {
    Browser portal(port_);
    portal.Get("/register");
    auto reg = portal.Post("/register", {{"username", username},
                                         {"given_name", "Ана"},
                                         {"surname", "Петровић"},
                                         {"national_id", testing::NationalId(n)}});
    EXPECT_TRUE(reg && reg->status == 200);
    if (!reg) return false;
    EXPECT_THAT(reg->body, HasSubstr("id=\"registered\""));
    // The e-mailed link (identity's outbox) opens the confirmation page; its button finishes it.
    auto token = testing::RegistrationToken(pool(), username);
    EXPECT_TRUE(token.ok()) << token.status();
    if (!token.ok()) return false;
    auto page = portal.Get("/register/confirm?token=" + *token);
    EXPECT_TRUE(page && page->status == 200);
    auto confirmed = portal.Post("/register/confirm", {{"token", *token}});
    EXPECT_TRUE(confirmed && confirmed->status == 200);
    if (!confirmed) return false;
    EXPECT_THAT(confirmed->body, HasSubstr("id=\"confirmed\""));
    return true;
  }

  // Proofs the account through the office console; answers the activation code shown.
  std::string Proof(const std::string& username) {
    Browser office(port_);
    office.Get("/office/login");
    auto in = office.Post("/office/login", {{"operator_id", testing::kOperatorId},
                                            {"secret", testing::kOperatorSecret}});
    EXPECT_TRUE(in && in->status == 303 && in->get_header_value("Location") == "/office");
    auto found = office.Get("/office?q=" + username);
    EXPECT_TRUE(found && found->status == 200);
    if (!found) return "";
    EXPECT_THAT(found->body, HasSubstr("Ана Петровић"));
    std::smatch m;
    static const std::regex kAccount("name=\"account_id\" value=\"([^\"]+)\"");
    EXPECT_TRUE(std::regex_search(found->body, m, kAccount));
    const std::string account_id = m[1];
    auto proofed = office.Post("/office/proof", {{"account_id", account_id},
                                                 {"q", username},
                                                 {"document_type", "id_card"},
                                                 {"document_number", "009876543"},
                                                 {"document_expiry", "2031-01-01"},
                                                 {"place", "Београд"}});
    EXPECT_TRUE(proofed && proofed->status == 200);
    if (!proofed) return "";
    static const std::regex kCode("id=\"activation-code\">([A-Z0-9-]+)<");
    EXPECT_TRUE(std::regex_search(proofed->body, m, kCode)) << proofed->body;
    return m[1];
  }

  // A browser signed in to the office console as the test officer.
  std::unique_ptr<Browser> Officer() {
    auto office = std::make_unique<Browser>(port_);
    office->Get("/office/login");
    auto in = office->Post("/office/login", {{"operator_id", testing::kOperatorId},
                                             {"secret", testing::kOperatorSecret}});
    EXPECT_TRUE(in && in->status == 303 && in->get_header_value("Location") == "/office");
    return office;
  }

  // Starts a login in `portal`; answers the request the app received (its code checked).
  absl::StatusOr<qsign::v1::ConsentRequest> StartLogin(Browser& portal,
                                                       consent::ConsentAppSimulator& app,
                                                       const std::string& username) {
    portal.Get("/login");
    auto started = portal.Post("/login", {{"username", username}});
    if (!started || started->status != 303) return absl::InternalError("login not started");
    auto wait = portal.Get("/login/wait");
    std::smatch m;
    static const std::regex kCode("id=\"code\">([0-9]+)<");
    if (!wait || !std::regex_search(wait->body, m, kCode)) return absl::InternalError("no code");
    auto request = app.NextRequest(absl::Seconds(10));
    if (request.ok() && request->login().verification_code() != m[1]) {
      return absl::InternalError("the codes differ");
    }
    return request;
  }

  // Logs `portal` in, the app approving with the PIN; checks the code on both sides.
  void LogIn(Browser& portal, consent::ConsentAppSimulator& app, const std::string& username) {
    portal.Get("/login");
    auto started = portal.Post("/login", {{"username", username}});
    ASSERT_TRUE(started && started->status == 303);
    ASSERT_EQ(started->get_header_value("Location"), "/login/wait");
    auto wait = portal.Get("/login/wait");
    ASSERT_TRUE(wait && wait->status == 200);
    std::smatch m;
    static const std::regex kCode("id=\"code\">([0-9]+)<");
    ASSERT_TRUE(std::regex_search(wait->body, m, kCode));
    const std::string code = m[1];
    auto request = app.NextRequest(absl::Seconds(10));
    ASSERT_TRUE(request.ok()) << request.status();
    EXPECT_EQ(request->login().verification_code(), code);
    ASSERT_TRUE(app.Approve(*request, testing::kPin).ok());
    auto polled = portal.PostJson("/login/poll", "");
    ASSERT_TRUE(polled && polled->status == 200);
    EXPECT_EQ(polled->body, R"({"state":"approved"})");
  }

  // One row of the console's audit trail page.
  struct AuditRow {
    std::string at;  // The datetime attribute: RFC 3339 to the microsecond, sorts as text.
    std::string source;
    std::string seq;
    std::string action;
  };
  // The rows of one audit trail page, in page order; `older` gets the next page's link.
  static std::vector<AuditRow> AuditRows(const std::string& page, std::string* older = nullptr) {
    static const std::regex kRow(
        "<tr class=\"audit-record\" data-action=\"([a-z_.]+)\" data-source=\"([a-z_.]+)\" "
        "data-seq=\"([0-9]+)\"><td><time datetime=\"([^\"]+)\">");
    std::vector<AuditRow> rows;
    for (std::sregex_iterator it(page.begin(), page.end(), kRow), end; it != end; ++it) {
      rows.push_back({.at = (*it)[4], .source = (*it)[2], .seq = (*it)[3], .action = (*it)[1]});
    }
    if (older != nullptr) {
      std::smatch m;
      static const std::regex kOlder("id=\"audit-older\" href=\"([^\"]+)\"");
      *older = std::regex_search(page, m, kOlder)
                   ? std::regex_replace(m[1].str(), std::regex("&amp;"), "&")
                   : "";
    }
    return rows;
  }

  static std::string Sha256(std::string_view data) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
    return std::string(reinterpret_cast<const char*>(md), sizeof(md));
  }

  std::unique_ptr<testing::Stacks> stacks_;
  int port_ = 0;
  int gateway_port_ = 0;
};

TEST_F(WebTest, PagesCarryStrictHeadersAndCookies) {
  Browser b(port_);
  auto res = b.Get("/login");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Security-Policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  EXPECT_EQ(res->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(res->get_header_value("X-Frame-Options"), "DENY");
  EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store");
  ASSERT_FALSE(b.set_cookie_lines().empty());
  EXPECT_THAT(b.set_cookie_lines()[0], HasSubstr("; HttpOnly; Secure; SameSite=Lax"));
  // No inline script or style anywhere: the CSP would block it.
  EXPECT_THAT(res->body, Not(HasSubstr("<script>")));
  EXPECT_THAT(res->body, Not(HasSubstr("style=")));
  EXPECT_THAT(res->body, HasSubstr("<html lang=\"sr-Cyrl\">"));
  auto js = b.Get("/static/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_THAT(js->get_header_value("Content-Type"), HasSubstr("text/javascript"));
  EXPECT_THAT(js->body, HasSubstr("namedCurve: 'P-256' }, false"));  // Not extractable.
  auto missing = b.Get("/static/nope.js");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

// Every text the app's script looks up by name is in the page's #texts (else the app shows
// "undefined" or throws).
TEST_F(WebTest, TheAppPageCarriesEveryTextItsScriptNames) {
  Browser b(port_);
  auto page = b.Get("/app");
  auto js = b.Get("/static/app.js");
  ASSERT_TRUE(page && js);
  static const std::regex kUse(R"re(texts\['([a-z_.]+)'\])re");
  int n = 0;
  for (std::sregex_iterator it(js->body.begin(), js->body.end(), kUse), end; it != end; ++it, ++n) {
    EXPECT_THAT(page->body, HasSubstr(Cat("\"", (*it)[1].str(), "\":"))) << (*it)[1];
  }
  EXPECT_GT(n, 20);
}

TEST_F(WebTest, EveryChangeNeedsTheSessionsCsrfTokenAndThisOrigin) {
  Browser b(port_);
  b.Get("/login");
  auto no_token = b.Post("/login", {{"username", "a@example.rs"}}, /*with_csrf=*/false);
  ASSERT_TRUE(no_token);
  EXPECT_EQ(no_token->status, 403);
  auto wrong_origin =
      b.Post("/login", {{"username", "a@example.rs"}}, true, "https://evil.example");
  ASSERT_TRUE(wrong_origin);
  EXPECT_EQ(wrong_origin->status, 403);
  // Another browser's token does not pass in this one.
  Browser other(port_);
  other.Get("/login");
  httplib::Client raw("127.0.0.1", port_);
  auto foreign = raw.Post("/login", {{"Cookie", "qsign_sid=" + b.cookie("qsign_sid")}},
                          httplib::Params{{"username", "a@example.rs"}, {"csrf", other.csrf()}});
  ASSERT_TRUE(foreign);
  EXPECT_EQ(foreign->status, 403);
  auto json = b.PostJson("/app/api/challenge", R"({"device_id":"dev-x"})");
  ASSERT_TRUE(json);
  EXPECT_NE(json->status, 403);
}

TEST_F(WebTest, EveryPageInEveryLanguage) {
  for (Lang lang : AllLangs()) {
    Browser b(port_);
    b.SetLang(std::string(LangTag(lang)));
    const std::pair<const char*, const char*> pages[] = {
        {"/login", "login.intro"},
        {"/register", "register.intro"},
        {"/register/confirm?token=x", "register.confirm.intro"},
        {"/app", "app.enrol.intro"},
        {"/office/login", "office.login.intro"}};
    for (const auto& [path, key] : pages) {
      auto res = b.Get(path);
      ASSERT_TRUE(res) << path;
      EXPECT_EQ(res->status, 200) << path;
      EXPECT_TRUE(absl::StrContains(res->body, Cat("<html lang=\"", LangTag(lang), "\">"))) << path;
      EXPECT_TRUE(absl::StrContains(res->body, Esc(T(lang, key)))) << path << " " << key;
      // Every id once (the scripts find elements by id).
      static const std::regex kId(" id=\"([^\"]+)\"");
      std::set<std::string> ids;
      for (std::sregex_iterator it(res->body.begin(), res->body.end(), kId), end; it != end; ++it) {
        EXPECT_TRUE(ids.insert((*it)[1]).second) << path << ": id " << (*it)[1] << " twice";
      }
      // The switch offers the other two languages, each in its own name.
      for (Lang other : AllLangs()) {
        EXPECT_TRUE(absl::StrContains(res->body, Esc(T(other, "lang.name")))) << path;
      }
    }
  }
  // The switch sets the cookie and goes back to the page.
  Browser b(port_);
  auto sw = b.Get("/lang?to=en&next=/register");
  ASSERT_TRUE(sw);
  EXPECT_EQ(sw->status, 303);
  EXPECT_EQ(sw->get_header_value("Location"), "/register");
  EXPECT_EQ(b.cookie("qsign_lang"), "en");
  auto away = b.Get("/lang?to=en&next=//evil.example/");
  EXPECT_EQ(away->get_header_value("Location"), "/");
}

TEST(WebTextTest, EveryMessageExistsInEveryLanguage) {
  for (std::string_view key : MessageKeys()) {
    for (Lang lang : AllLangs()) {
      const std::string text = T(lang, key);
      EXPECT_FALSE(text.empty()) << key;
      EXPECT_NE(text, key) << key;
    }
    // Latin has no Cyrillic letter left.
    const std::string latin = T(Lang::kSrLatn, key);
    for (size_t i = 0; i + 1 < latin.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(latin[i]);
      EXPECT_FALSE(c == 0xD0 || c == 0xD1) << key << ": " << latin;
    }
  }
  EXPECT_EQ(CyrillicToLatin("Љубица Ђорђевић, Џон, њива"), "Ljubica Đorđević, Džon, njiva");
}

TEST_F(WebTest, RegisterProofEnrolLogInIssueRevokeAll) {
  const std::string username = "ana.web@example.rs";
  const std::string code = RegisterAndProof(username, 11);
  ASSERT_FALSE(code.empty());
  auto app = consent::ConsentAppSimulator::New(stacks_->NewChannel());
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE((*app)->Enroll(code, "Ana's phone", testing::kPin).ok());
  ASSERT_TRUE((*app)->StartWatching().ok());

  Browser portal(port_);
  LogIn(portal, **app, username);
  if (HasFatalFailure()) return;
  auto account = portal.Get("/account");
  ASSERT_TRUE(account && account->status == 200);
  EXPECT_THAT(account->body, HasSubstr("Ана Петровић"));
  EXPECT_THAT(account->body, HasSubstr(T(Lang::kSrCyrl, "cert.state.none")));
  EXPECT_THAT(account->body, HasSubstr(T(Lang::kSrCyrl, "account.proofed")));

  // Issuing before the contract is refused by lifecycle, and said so.
  portal.Get("/cert/issue");
  auto early = portal.Post("/cert/issue", {});
  ASSERT_TRUE(early && early->status == 303);
  auto refused = portal.Get("/account");
  EXPECT_THAT(refused->body, HasSubstr("class=\"flash error\""));

  auto contract = portal.Get("/contract");
  ASSERT_TRUE(contract && contract->status == 200);
  EXPECT_THAT(contract->body, HasSubstr("id=\"contract-text\""));
  std::smatch m;
  static const std::regex kVersion("name=\"version\" value=\"([^\"]+)\"");
  ASSERT_TRUE(std::regex_search(contract->body, m, kVersion));
  auto accepted = portal.Post("/contract/accept", {{"version", m[1]}});
  ASSERT_TRUE(accepted && accepted->status == 303);
  portal.Get("/cert/issue");
  auto issued = portal.Post("/cert/issue", {});
  ASSERT_TRUE(issued && issued->status == 303);
  account = portal.Get("/account");
  EXPECT_THAT(account->body, HasSubstr(T(Lang::kSrCyrl, "cert.issue.done")));
  EXPECT_THAT(account->body, HasSubstr(T(Lang::kSrCyrl, "cert.state.active")));
  EXPECT_THAT(account->body, HasSubstr("id=\"renew-opens\""));
  // Renewal is not open yet: no form leads to it.
  EXPECT_THAT(account->body, HasSubstr("class=\"button disabled\" id=\"go-renew\""));

  auto confirm = portal.Get("/cert/revoke-all");
  EXPECT_THAT(confirm->body, HasSubstr(Esc(T(Lang::kSrCyrl, "cert.revoke-all.confirm"))));
  auto all = portal.Post("/cert/revoke-all", {{"reason", "cessation"}});
  ASSERT_TRUE(all && all->status == 200);
  EXPECT_THAT(all->body, HasSubstr("id=\"revoked-all\""));
  // The app's stream ends: the device is no longer active.
  for (int i = 0; i < 50 && (*app)->watch_status().ok(); ++i)
    absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE((*app)->watch_status().ok());
  auto after = portal.Get("/account");
  EXPECT_EQ(after->status, 303);

  // The officer reads the account's whole trail on one page: identity's, lifecycle's
  // (certificates) and consent's (the app: enrolment, approvals), newest first.
  auto office = Officer();
  auto found = office->Get("/office?q=" + username);
  ASSERT_TRUE(found && found->status == 200);
  static const std::regex kAccount("name=\"account_id\" value=\"([^\"]+)\"");
  ASSERT_TRUE(std::regex_search(found->body, m, kAccount));
  auto trail = office->Get(Cat("/office/audit?account_id=", m[1].str(), "&q=", username));
  ASSERT_TRUE(trail && trail->status == 200);
  std::vector<AuditRow> rows = AuditRows(trail->body);
  std::set<std::string> seen;
  for (const AuditRow& r : rows) seen.insert(Cat(r.source, " ", r.action));
  for (const char* expected :
       {"identity.audit_log identity.proof", "lifecycle.audit_log contract.accept",
        "lifecycle.audit_log certificate.issue", "lifecycle.audit_log certificate.revoke",
        "lifecycle.audit_log account.revoke_all.done", "consent.audit_log device.enroll",
        "consent.decisions login.approve", "consent.audit_log device.deactivate_all"}) {
    EXPECT_TRUE(seen.count(expected)) << expected;
  }
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end(),
                             [](const AuditRow& a, const AuditRow& b) { return a.at > b.at; }));
  EXPECT_THAT(trail->body, HasSubstr(Esc(T(Lang::kSrCyrl, "audit.certificate.issue"))));
  EXPECT_THAT(trail->body, HasSubstr(Esc(T(Lang::kSrCyrl, "audit.device.enroll"))));
  EXPECT_THAT(trail->body, HasSubstr(Esc(T(Lang::kSrCyrl, "audit.login.approve"))));
}

// The console pages through the merged trail: each record once, newest first across pages,
// exactly the three services' own answers together.
class WebAuditPagesTest : public WebTest {
 protected:
  void Configure(config::v1::ServerConfig& c) override { c.mutable_web()->set_audit_page_size(3); }
};

TEST_F(WebAuditPagesTest, OlderPagesContinueEachServicesTrailWithoutGapsOrRepeats) {
  const std::string username = "pages.web@example.rs";
  const std::string code = RegisterAndProof(username, 24);
  ASSERT_FALSE(code.empty());
  auto app = consent::ConsentAppSimulator::New(stacks_->NewChannel());
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE((*app)->Enroll(code, "phone", testing::kPin).ok());
  ASSERT_TRUE((*app)->StartWatching().ok());
  Browser portal(port_);
  LogIn(portal, **app, username);
  if (HasFatalFailure()) return;
  LogIn(portal, **app, username);
  if (HasFatalFailure()) return;

  // What each service answers the officer, all at once.
  std::set<std::string> expected;
  const std::string account_id = (*app)->account_id();
  {
    qsign::v1::ListAccountAuditRequest req;
    req.set_account_id(account_id);
    req.set_page_size(200);
    qsign::v1::ListAccountAuditResponse identity, lifecycle, consent;
    grpc::ClientContext a, b, c;
    for (grpc::ClientContext* ctx : {&a, &b, &c}) {
      ctx->AddMetadata("authorization", testing::OperatorAuthorization());
    }
    ASSERT_TRUE(qsign::v1::Identity::NewStub(stacks_->channel())
                    ->ListAccountAudit(&a, req, &identity)
                    .ok());
    ASSERT_TRUE(qsign::v1::Lifecycle::NewStub(stacks_->channel())
                    ->ListAccountAudit(&b, req, &lifecycle)
                    .ok());
    ASSERT_TRUE(
        qsign::v1::Consent::NewStub(stacks_->channel())->ListAccountAudit(&c, req, &consent).ok());
    for (const auto* resp : {&identity, &lifecycle, &consent}) {
      for (const qsign::v1::AuditRecord& r : resp->records()) {
        expected.insert(Cat(r.source(), " #", r.seq()));
      }
    }
    EXPECT_GT(lifecycle.records_size(), 0);  // The app's certificate.
    EXPECT_GT(consent.records_size(), 2);    // Enrolment, two approvals.
  }

  auto office = Officer();
  std::string next = Cat("/office/audit?account_id=", account_id);
  std::vector<AuditRow> all;
  int pages = 0;
  while (!next.empty() && pages < 50) {
    auto page = office->Get(next);
    ASSERT_TRUE(page && page->status == 200);
    std::vector<AuditRow> rows = AuditRows(page->body, &next);
    EXPECT_LE(rows.size(), 3u);
    all.insert(all.end(), rows.begin(), rows.end());
    ++pages;
  }
  EXPECT_GT(pages, 3);
  std::set<std::string> shown;
  for (const AuditRow& r : all) {
    EXPECT_TRUE(shown.insert(Cat(r.source, " #", r.seq)).second)
        << "twice: " << r.source << " #" << r.seq;
  }
  EXPECT_EQ(shown, expected);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end(),
                             [](const AuditRow& a, const AuditRow& b) { return a.at > b.at; }));

  // A page token the console did not make is refused, naming it.
  auto bad = office->Get(Cat("/office/audit?account_id=", account_id, "&page=x~y"));
  ASSERT_TRUE(bad && bad->status == 200);
  EXPECT_THAT(bad->body, HasSubstr("id=\"audit-error\""));
  EXPECT_THAT(bad->body, HasSubstr("page: not a page of this audit trail"));
}

// Identity believes the web's x-forwarded-for (the web at 127.0.0.1 is its trusted proxy, as
// deploy/ and k8s/ configure it) and allows two logins per address a minute. The web itself
// trusts only an ingress at 127.0.0.9 to name the browser.
class WebAddressTest : public WebTest {
 protected:
  void Configure(config::v1::ServerConfig& c) override {
    c.mutable_client_address()->set_header("x-forwarded-for");
    c.mutable_client_address()->add_trusted_proxies("127.0.0.1");
    c.mutable_identity()->set_logins_per_address_per_minute(2);
    c.mutable_identity()->set_logins_per_account_per_minute(0);
    c.mutable_web()->mutable_client_address()->set_header("x-forwarded-for");
    c.mutable_web()->mutable_client_address()->add_trusted_proxies("127.0.0.9");
  }

  // Starts a login for a fresh username; true when the page went on to the code, false when
  // it came back with the "too many attempts" message.
  bool Started(Browser& b) {
    static int n = 0;
    b.Get("/login");
    auto started = b.Post("/login", {{"username", Cat("nobody", ++n, "@example.rs")}});
    EXPECT_TRUE(started && started->status == 303);
    if (!started) return false;
    if (started->get_header_value("Location") == "/login/wait") return true;
    auto page = b.Get("/login");
    EXPECT_THAT(page->body, HasSubstr(Esc(T(Lang::kSrCyrl, "err.too_many"))));
    return false;
  }
};

TEST_F(WebAddressTest, IdentityLimitsEachBrowsersAddressNotTheWebs) {
  // Two browsers on two addresses: each has its own two logins a minute.
  Browser a(port_, "127.0.0.2");
  Browser b(port_, "127.0.0.3");
  EXPECT_TRUE(Started(a));
  EXPECT_TRUE(Started(a));
  EXPECT_FALSE(Started(a));
  EXPECT_TRUE(Started(b));
  // A browser's own X-Forwarded-For is not believed: the web names its socket's address.
  b.SetHeader("X-Forwarded-For", "203.0.113.50");
  EXPECT_TRUE(Started(b));
  b.SetHeader("X-Forwarded-For", "203.0.113.51");
  EXPECT_FALSE(Started(b));

  // Through the trusted ingress, the address it names counts.
  Browser via_ingress(port_, "127.0.0.9");
  via_ingress.SetHeader("X-Forwarded-For", "198.51.100.7");
  EXPECT_TRUE(Started(via_ingress));
  EXPECT_TRUE(Started(via_ingress));
  EXPECT_FALSE(Started(via_ingress));
  via_ingress.SetHeader("X-Forwarded-For", "198.51.100.8");
  EXPECT_TRUE(Started(via_ingress));

  // Identity's login journal names the browser's address, as the web passed it on.
  auto rows = pool().Exec(
      "SELECT count(*) FROM identity.login_journal WHERE client_address LIKE '198.51.100.8 via %'");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->Get(0, 0), "1");
}

TEST_F(WebTest, TheOfficeCorrectsATypoBeforeProofingAndReadsTheAuditTrail) {
  const std::string username = "typo.web@example.rs";
  ASSERT_TRUE(Register(username, 21));
  auto office = Officer();
  auto found = office->Get("/office?q=" + username);
  ASSERT_TRUE(found && found->status == 200);
  // Before proofing the console offers the correction, filled with what was registered.
  EXPECT_THAT(found->body, HasSubstr("id=\"correct\""));
  EXPECT_THAT(found->body, HasSubstr(Cat("value=\"", testing::NationalId(21), "\"")));
  std::smatch m;
  static const std::regex kAccount("name=\"account_id\" value=\"([^\"]+)\"");
  ASSERT_TRUE(std::regex_search(found->body, m, kAccount));
  const std::string account_id = m[1];

  // A JMBG with a wrong check digit is refused, naming the field.
  std::string bad = testing::NationalId(22);
  bad.back() = bad.back() == '9' ? '0' : static_cast<char>(bad.back() + 1);
  auto refused = office->Post("/office/correct", {{"account_id", account_id},
                                                  {"q", username},
                                                  {"given_name", "Ана"},
                                                  {"surname", "Петровић"},
                                                  {"national_id", bad}});
  ASSERT_TRUE(refused && refused->status == 303);
  auto page = office->Get(refused->get_header_value("Location"));
  EXPECT_THAT(page->body, HasSubstr("class=\"flash error\""));
  EXPECT_THAT(page->body, HasSubstr("national_id"));

  auto corrected = office->Post("/office/correct", {{"account_id", account_id},
                                                    {"q", username},
                                                    {"given_name", "Ана"},
                                                    {"surname", "Петровић-Јовановић"},
                                                    {"national_id", testing::NationalId(22)},
                                                    {"correct_note", "као у личној карти"}});
  ASSERT_TRUE(corrected && corrected->status == 303);
  page = office->Get(corrected->get_header_value("Location"));
  EXPECT_THAT(page->body, HasSubstr(Esc(T(Lang::kSrCyrl, "office.correct.done"))));
  EXPECT_THAT(page->body, HasSubstr("Ана Петровић-Јовановић"));
  EXPECT_THAT(page->body, HasSubstr(testing::NationalId(22)));

  // Proofed: the data is bound to the document, the console no longer offers the correction.
  ASSERT_FALSE(Proof(username).empty());
  page = office->Get("/office?q=" + username);
  EXPECT_THAT(page->body, Not(HasSubstr("id=\"correct\"")));
  ASSERT_THAT(page->body, HasSubstr("id=\"go-audit\""));

  // The audit trail lists what the test did, newest first, in the page's language.
  for (Lang lang : AllLangs()) {
    office->SetLang(std::string(LangTag(lang)));
    auto audit = office->Get(Cat("/office/audit?account_id=", account_id, "&q=", username));
    ASSERT_TRUE(audit && audit->status == 200);
    EXPECT_THAT(audit->body, HasSubstr(Esc(T(lang, "audit.action"))));
    EXPECT_THAT(audit->body, HasSubstr(Esc(T(lang, "audit.identity.correct"))));
    EXPECT_THAT(audit->body, HasSubstr(Esc(T(lang, "audit.identity.proof"))));
    static const std::regex kAction("data-action=\"([a-z_.]+)\"");
    std::vector<std::string> actions;
    for (std::sregex_iterator it(audit->body.begin(), audit->body.end(), kAction), end; it != end;
         ++it) {
      actions.push_back((*it)[1]);
    }
    EXPECT_THAT(actions, ::testing::ElementsAre("identity.proof", "identity.correct",
                                                "identity.account.register"));
    EXPECT_THAT(audit->body,
                HasSubstr(Esc(Cat("surname: Петровић -> Петровић-Јовановић; "
                                  "national_id: ",
                                  testing::NationalId(21), " -> ", testing::NationalId(22)))));
  }

  // Not for anyone but a signed-in officer.
  Browser citizen(port_);
  auto away = citizen.Get(Cat("/office/audit?account_id=", account_id));
  ASSERT_TRUE(away);
  EXPECT_EQ(away->status, 303);
  EXPECT_EQ(away->get_header_value("Location"), "/office/login");
}

// The portal asks for the login in its page's language: the app receives the request's text in
// Cyrillic, Latin or English, inside the statement its signature covers.
TEST_F(WebTest, TheAppGetsTheRequestInThePortalsLanguage) {
  const std::string username = "lang.web@example.rs";
  const std::string code = RegisterAndProof(username, 23);
  ASSERT_FALSE(code.empty());
  auto app = consent::ConsentAppSimulator::New(stacks_->NewChannel());
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE((*app)->Enroll(code, "phone", testing::kPin).ok());
  ASSERT_TRUE((*app)->StartWatching().ok());
  const std::pair<Lang, const char*> expected[] = {{Lang::kSrCyrl, "Пријава на еИД портал, код "},
                                                   {Lang::kSrLatn, "Prijava na eID portal, kod "},
                                                   {Lang::kEn, "Log in to eID portal, code "}};
  for (const auto& [lang, text] : expected) {
    Browser portal(port_);
    portal.SetLang(std::string(LangTag(lang)));
    auto request = StartLogin(portal, **app, username);
    ASSERT_TRUE(request.ok()) << request.status();
    const std::string shown = Cat(text, request->login().verification_code());
    EXPECT_EQ(request->display_text(), shown);
    auto statement = consent::DecodeStatement(request->statement());
    ASSERT_TRUE(statement.ok());
    EXPECT_EQ(statement->display_text, shown);
    // Consent checks the device's signature over this statement.
    auto approved = (*app)->Approve(*request, testing::kPin);
    ASSERT_TRUE(approved.ok()) << approved.status();
    EXPECT_EQ(approved->result(), qsign::v1::APPROVE_RESULT_APPROVED);
    auto polled = portal.PostJson("/login/poll", "");
    ASSERT_TRUE(polled && polled->status == 200);
    EXPECT_EQ(polled->body, R"({"state":"approved"})");
  }
}

TEST_F(WebTest, OfficerSignInNeedsTheOfficersCredential) {
  Browser office(port_);
  office.Get("/office/login");
  auto wrong =
      office.Post("/office/login", {{"operator_id", testing::kOperatorId}, {"secret", "not-it"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->get_header_value("Location"), "/office/login");
  auto console = office.Get("/office");
  EXPECT_EQ(console->status, 303);
  auto page = office.Get("/office/login");
  EXPECT_THAT(page->body, HasSubstr(T(Lang::kSrCyrl, "office.login.refused")));
}

// The browser app's calls, made here with the simulator's device key over the web's JSON API:
// every Approve takes a fresh one-time challenge inside the signed approval message; the PIN
// is changed and, after the office opens an unblock (no PIN field: the officer never sees one),
// set again by the user, each over a PIN operation message.
TEST_F(WebTest, AppApiSignsChallengesForApprovalsAndPinOperations) {
  const std::string username = "pin.web@example.rs";
  const std::string code = RegisterAndProof(username, 12);
  ASSERT_FALSE(code.empty());
  auto app = consent::ConsentAppSimulator::New(stacks_->NewChannel());
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE((*app)->Enroll(code, "Web phone", testing::kPin).ok());
  ASSERT_TRUE((*app)->StartWatching().ok());
  const std::string device = (*app)->device_id();

  Browser page(port_);  // The app's page: its CSRF token.
  page.Get("/app");
  auto challenge = [&](const std::string& request_id) {
    auto res =
        page.PostJson("/app/api/approval-challenge",
                      Cat(R"({"device_id":")", device, R"(","request_id":")", request_id, R"("})"));
    EXPECT_TRUE(res && res->status == 200) << (res ? res->body : "no answer");
    static const std::regex kChallenge(R"re("challenge":"([^"]+)")re");
    std::smatch m;
    std::string bytes;
    if (res && std::regex_search(res->body, m, kChallenge))
      absl::Base64Unescape(m[1].str(), &bytes);
    EXPECT_EQ(bytes.size(), 32u);
    return bytes;
  };
  auto signed_b64 = [&](const std::string& message) {
    auto sig = (*app)->Sign(message);
    EXPECT_TRUE(sig.ok());
    return absl::Base64Escape(sig.ok() ? *sig : "");
  };

  Browser portal(port_);
  auto request = StartLogin(portal, **app, username);
  ASSERT_TRUE(request.ok()) << request.status();
  auto decide = [&](const std::string& ch, const std::string& pin) {
    const std::string sig =
        signed_b64(consent::ApprovalMessage(request->statement(), consent::Decision::kApprove, ch));
    return page.PostJson(
        "/app/api/decide",
        Cat(R"({"device_id":")", device, R"(","request_id":")", request->request_id(),
            R"(","decision":"approve","pin":")", pin, R"(","challenge":")", absl::Base64Escape(ch),
            R"(","signature":")", sig, R"("})"));
  };
  std::string ch = challenge(request->request_id());
  auto wrong = decide(ch, "99999999");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 200);
  EXPECT_EQ(wrong->body, R"({"remaining":4,"result":"pin_wrong"})");
  // The challenge served that attempt only.
  auto again = decide(ch, testing::kPin);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 400);
  auto approved = decide(challenge(request->request_id()), testing::kPin);
  ASSERT_TRUE(approved);
  EXPECT_EQ(approved->body, R"({"remaining":0,"result":"approved"})");
  auto polled = portal.PostJson("/login/poll", "");
  ASSERT_TRUE(polled);
  EXPECT_EQ(polled->body, R"({"state":"approved"})");

  auto pin_operation = [&](consent::PinOperation op, const std::string& fields) {
    const std::string ch = challenge("");
    const std::string sig = signed_b64(consent::PinOperationMessage(op, device, ch));
    return page.PostJson(
        op == consent::PinOperation::kChange ? "/app/api/change-pin" : "/app/api/reset-pin",
        Cat(R"({"device_id":")", device, R"(","challenge":")", absl::Base64Escape(ch),
            R"(","signature":")", sig, R"(",)", fields, "}"));
  };
  auto changed = pin_operation(consent::PinOperation::kChange,
                               Cat(R"("old_pin":")", testing::kPin, R"(","new_pin":"13572468")"));
  ASSERT_TRUE(changed);
  EXPECT_EQ(changed->body, R"({"remaining":0,"result":"changed"})");
  // No reset without an office's unblock.
  auto early = pin_operation(consent::PinOperation::kReset, R"("new_pin":"24681357")");
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 400);

  auto office = Officer();
  auto found = office->Get("/office?q=" + username);
  ASSERT_TRUE(found && found->status == 200);
  EXPECT_THAT(found->body, Not(HasSubstr("name=\"new_pin\"")));
  std::smatch m;
  static const std::regex kAccount("name=\"account_id\" value=\"([^\"]+)\"");
  ASSERT_TRUE(std::regex_search(found->body, m, kAccount));
  auto unblock = office->Post(
      "/office/unblock",
      {{"account_id", m[1]}, {"q", username}, {"note", "forgotten, re-proofed with ID card"}});
  ASSERT_TRUE(unblock && unblock->status == 303);
  auto after = office->Get(unblock->get_header_value("Location"));
  ASSERT_TRUE(after);
  EXPECT_THAT(after->body, HasSubstr(Esc(T(Lang::kSrCyrl, "office.unblock.done"))));
  auto reset = pin_operation(consent::PinOperation::kReset, R"("new_pin":"24681357")");
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->body, R"({"result":"reset"})");

  // The PIN the user set is the one that approves now.
  Browser portal2(port_);
  auto next = StartLogin(portal2, **app, username);
  ASSERT_TRUE(next.ok()) << next.status();
  auto ok = (*app)->Approve(*next, "24681357");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->result(), qsign::v1::APPROVE_RESULT_APPROVED);
}

TEST_F(WebTest, OAuthSignInBindsTheTokenToTheCitizenAndCredentialScopeSigns) {
  auto app = CitizenWithCertificate("oauth.citizen@example.rs", 31);
  ASSERT_NE(app, nullptr);
  if (HasFatalFailure()) return;

  // scope=service: the push login; the token lists this citizen's credentials only. The
  // e-service asked for English (CSC lang): the app's text is English.
  std::string redirect, shown;
  auto token = SignInAtTheGateway(*app, "&scope=service&lang=en-GB", "oauth.citizen@example.rs",
                                  &redirect, &shown);
  EXPECT_THAT(shown, ::testing::StartsWith("Log in")) << shown;
  ASSERT_TRUE(token.contains("access_token")) << token;
  EXPECT_EQ(token["scope"], "service");
  const std::string access = token["access_token"];
  auto list = Csc("credentials/list", nlohmann::json::object(), access);
  ASSERT_EQ(list["credentialIDs"].size(), 1u) << list;
  const std::string credential = list["credentialIDs"][0];
  int status = 0;
  auto other = Csc("credentials/list", {{"userID", "someone-else"}}, access, &status);
  EXPECT_EQ(status, 400);
  EXPECT_THAT(other.dump(), HasSubstr("userID"));

  // Client credentials only where the operator allowed them.
  httplib::Client gw("127.0.0.1", gateway_port_);
  auto refused =
      gw.Post("/csc/v2/oauth2/token",
              Cat("grant_type=client_credentials&client_id=e-uprava&client_secret=", kRpSecret),
              "application/x-www-form-urlencoded");
  EXPECT_EQ(refused->status, 400);
  EXPECT_THAT(refused->body, HasSubstr("unauthorized_client"));
  auto legacy =
      gw.Post("/csc/v2/oauth2/token",
              Cat("grant_type=client_credentials&client_id=legacy&client_secret=", kRpSecret),
              "application/x-www-form-urlencoded");
  EXPECT_EQ(legacy->status, 200);
  // An unregistered redirect URI gets an error page, never a redirect.
  auto evil =
      gw.Get(Cat("/csc/v2/oauth2/authorize?response_type=code&client_id=e-uprava",
                 "&redirect_uri=https://evil.example/cb&code_challenge=", std::string(43, 'A'),
                 "&code_challenge_method=S256"));
  EXPECT_EQ(evil->status, 400);
  EXPECT_FALSE(evil->has_header("Location"));
  // Without PKCE: back to the e-service with an error.
  auto no_pkce = gw.Get(Cat("/csc/v2/oauth2/authorize?response_type=code&client_id=e-uprava",
                            "&redirect_uri=", kRedirect, "&state=s1"));
  EXPECT_EQ(no_pkce->status, 302);
  EXPECT_THAT(no_pkce->get_header_value("Location"), HasSubstr("error=invalid_request"));
  // A `lang` that is not a language tag: back to the e-service, naming it.
  auto bad_lang = gw.Get(Cat("/csc/v2/oauth2/authorize?response_type=code&client_id=e-uprava",
                             "&redirect_uri=", kRedirect, "&code_challenge=", std::string(43, 'A'),
                             "&code_challenge_method=S256&state=s2&lang=en_US"));
  EXPECT_EQ(bad_lang->status, 302);
  EXPECT_THAT(bad_lang->get_header_value("Location"), HasSubstr("error=invalid_request"));
  EXPECT_THAT(bad_lang->get_header_value("Location"), HasSubstr("lang"));

  // scope=credential: the approval of exactly these hashes is the authorization; the token
  // carries the SAD and signHash needs nothing else.
  const std::string hash = Sha256("the document");
  auto signing = SignInAtTheGateway(
      *app,
      Cat("&scope=credential&credentialID=", credential,
          "&hashAlgorithmOID=2.16.840.1.101.3.4.2.1&numSignatures=1&description=Ugovor&hashes=",
          absl::WebSafeBase64Escape(hash), "&lang=sr-Latn"),
      "", &redirect, &shown);
  EXPECT_EQ(shown, "Potpiši „Ugovor“ za e-Управа");
  ASSERT_TRUE(signing.contains("access_token")) << signing;
  EXPECT_EQ(signing["scope"], "credential");
  auto signed_hashes = Csc("signatures/signHash",
                           {{"credentialID", credential},
                            {"hashes", {absl::Base64Escape(hash)}},
                            {"signAlgo", "1.2.840.10045.4.3.2"}},
                           signing["access_token"], &status);
  EXPECT_EQ(status, 200) << signed_hashes;
  ASSERT_EQ(signed_hashes["signatures"].size(), 1u);
  // Another hash is not covered by the user's approval.
  auto other_hash = Csc("signatures/signHash",
                        {{"credentialID", credential},
                         {"hashes", {absl::Base64Escape(Sha256("another"))}},
                         {"signAlgo", "1.2.840.10045.4.3.2"}},
                        signing["access_token"], &status);
  EXPECT_EQ(status, 400) << other_hash;
}

// Signing from the portal without a timestamp authority (web.tsa_url empty): the page offers
// B-B only and a B-T upload is refused; a text file gets a detached CAdES .p7s (openssl cms
// verifies it over the file), a PDF a PAdES signature inside it (pdfsig finds it valid); the
// app is shown the file's name, SHA-256 and, for the PDF, its page count.
TEST_F(WebTest, SignAFileFromThePortal) {
  Browser portal(port_);
  auto app = CitizenWithCertificate("sign.web@example.rs", 33, &portal);
  ASSERT_NE(app, nullptr);
  if (HasFatalFailure()) return;
  auto page = portal.Get("/sign");
  ASSERT_TRUE(page && page->status == 200);
  EXPECT_THAT(page->body, HasSubstr(R"(id="level-b-b" value="B-B" checked>)"));
  EXPECT_THAT(page->body, HasSubstr(R"(id="level-b-t" value="B-T" disabled>)"));
  EXPECT_THAT(page->body, HasSubstr(R"(id="level-b-lt" value="B-LT" disabled>)"));
  EXPECT_THAT(page->body, HasSubstr(Esc(T(Lang::kSrCyrl, "sign.no_tsa"))));
  for (const std::string level : {"B-T", "B-X"}) {
    auto refused = portal.Upload("/sign", "a.txt", "a", "text/plain", level);
    ASSERT_TRUE(refused && refused->status == 303);
    EXPECT_EQ(refused->get_header_value("Location"), "/sign");
    auto again = portal.Get("/sign");
    EXPECT_THAT(
        again->body,
        HasSubstr(Esc(T(Lang::kSrCyrl, level == "B-T" ? "sign.no_tsa" : "sign.bad_level"))));
  }
  EXPECT_FALSE(app->NextRequest(absl::Milliseconds(300)).ok());  // Nothing was asked.

  auto sign = [&](const std::string& name, const std::string& content, const std::string& type,
                  uint32_t pages) {
    return SignThroughThePortal(portal, *app, name, content, type, pages);
  };

  const std::string dir = token().dir();
  const std::string text = "Уговор о раду / Ugovor o radu\n";
  const std::string p7s = sign("ugovor-уговор.txt", text, "text/plain", 0);
  ASSERT_FALSE(p7s.empty());
  std::ofstream(dir + "/ugovor.txt", std::ios::binary) << text;
  std::ofstream(dir + "/ugovor.txt.p7s", std::ios::binary) << p7s;
  std::string out;
  EXPECT_EQ(testing::RunCommand(Cat("openssl cms -verify -binary -inform DER -noverify -in ", dir,
                                    "/ugovor.txt.p7s -content ", dir, "/ugovor.txt -out /dev/null"),
                                &out),
            0)
      << out;

  const std::string pdf = pades::testing::SimplePdf(2, "Ugovor o radu");
  const std::string signed_pdf = sign("ugovor.pdf", pdf, "application/pdf", 2);
  ASSERT_FALSE(signed_pdf.empty());
  EXPECT_EQ(signed_pdf.substr(0, pdf.size()), pdf);  // An incremental update.
  std::ofstream(dir + "/ugovor-signed.pdf", std::ios::binary) << signed_pdf;
  EXPECT_EQ(testing::RunCommand(Cat("pdfsig ", dir, "/ugovor-signed.pdf"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("Signature is Valid."));
}

// The portal with qsign's own TSA (web.tsa_url = the tsa service's HTTP listener).
class WebTsaTest : public WebTest {
 protected:
  WebTsaTest() { with_tsa_ = true; }
  void Configure(config::v1::ServerConfig& c) override {
    tsa_port_ = testing::FreeLoopbackPort();
    c.mutable_tsa()->set_http_listen(Cat("127.0.0.1:", tsa_port_));
    // The OCSP URL in the certificates is lifecycle's listener's (B-LT fetches it).
    const int lifecycle_port = testing::FreeLoopbackPort();
    c.mutable_lifecycle()->set_http_listen(Cat("127.0.0.1:", lifecycle_port));
    c.mutable_web()->set_tsa_url(Cat("http://127.0.0.1:", tsa_port_, "/tsa"));
  }

  void SetUp() override {
    WebTest::SetUp();
    if (HasFatalFailure()) return;
    // The TSA grants once lifecycle certified its key (in the background at start).
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (!cades::RequestTimestamp(Sha256("ready"), signdoc::HttpTimestamp(Cat(
                                                         "http://127.0.0.1:", tsa_port_, "/tsa")))
                .ok()) {
      ASSERT_LT(absl::Now(), give_up) << "the TSA never granted a timestamp";
      absl::SleepFor(absl::Milliseconds(200));
    }
    // The root of qsign's PKI (the citizen's and the TSA's), for openssl.
    httplib::Client ca("127.0.0.1", lifecycle::HttpPort(stacks_->server().stack("lifecycle")));
    auto root = ca.Get("/ca/root.crt");
    ASSERT_TRUE(root && root->status == 200);
    dir_ = token().dir();
    std::ofstream(dir_ + "/root.der", std::ios::binary) << root->body;
    std::string out;
    ASSERT_EQ(
        testing::RunCommand(
            Cat("openssl x509 -inform DER -in ", dir_, "/root.der -out ", dir_, "/root.pem"), &out),
        0)
        << out;
  }

  // The single signature timestamp of `cms_der`, verified by `openssl ts -verify` over the
  // signature value it stamps, against qsign's root; its time.
  absl::Time ExpectOneTimestampOpensslVerifies(const std::string& cms_der,
                                               const std::string& name) {
    auto tokens = cades::SignatureTimestampTokens(cms_der);
    EXPECT_TRUE(tokens.ok() && tokens->size() == 1u);
    if (!tokens.ok() || tokens->size() != 1u) return absl::InfinitePast();
    auto token = cades::ReadTimestampToken((*tokens)[0]);
    EXPECT_TRUE(token.ok());
    if (!token.ok()) return absl::InfinitePast();
    // The stamped data: the SignerInfo's signature value (read with plain OpenSSL).
    std::ofstream(Cat(dir_, "/", name, ".tst"), std::ios::binary) << token->der;
    std::ofstream(Cat(dir_, "/", name, ".sig"), std::ios::binary)
        << testing::SignatureValue(cms_der);
    std::string out;
    const int status =
        testing::RunCommand(Cat("openssl ts -verify -token_in -in ", dir_, "/", name, ".tst -data ",
                                dir_, "/", name, ".sig -CAfile ", dir_, "/root.pem 2>&1"),
                            &out);
    EXPECT_EQ(status, 0) << out;
    EXPECT_THAT(out, HasSubstr("Verification: OK"));
    return token->gen_time;
  }

  int tsa_port_ = 0;
  std::string dir_;
};

// The level is the user's choice, B-T by default: a PDF at B-T (pdfsig: valid; its timestamp
// from qsign's TSA, openssl ts verifies it), a text file at B-T (openssl cms and ts), a PDF at
// B-LT (the DSS holds the chains and the OCSP answers) and at B-B (no timestamp).
TEST_F(WebTsaTest, ThePortalSignsAtTheLevelTheUserChoosesBTByDefault) {
  Browser portal(port_);
  auto app = CitizenWithCertificate("level.web@example.rs", 34, &portal);
  ASSERT_NE(app, nullptr);
  if (HasFatalFailure()) return;
  for (Lang lang : AllLangs()) {
    portal.SetLang(std::string(LangTag(lang)));
    auto page = portal.Get("/sign");
    ASSERT_TRUE(page && page->status == 200);
    EXPECT_THAT(page->body, HasSubstr(R"(id="level-b-t" value="B-T" checked>)"));
    EXPECT_THAT(page->body, HasSubstr(R"(id="level-b-lt" value="B-LT">)"));
    EXPECT_THAT(page->body, HasSubstr(R"(id="level-b-b" value="B-B">)"));
    for (const char* key : {"sign.level", "sign.level.b-t", "sign.level.b-lt", "sign.level.b-b"}) {
      EXPECT_THAT(page->body, HasSubstr(Esc(T(lang, key)))) << key;
    }
    EXPECT_THAT(page->body, Not(HasSubstr("no-tsa")));
  }
  portal.SetLang("sr-Cyrl");
  const absl::Time before = absl::Now() - absl::Seconds(2);

  // The form's default (no level field from an old form): B-T as well. The user takes a while
  // to approve: the PDF signed is the one prepared at the upload, not one written later.
  const std::string pdf = pades::testing::SimplePdf(2, "Ugovor o radu");
  reading_time_ = absl::Milliseconds(1100);
  const std::string bt_pdf =
      SignThroughThePortal(portal, *app, "ugovor.pdf", pdf, "application/pdf", 2);
  reading_time_ = absl::ZeroDuration();
  ASSERT_FALSE(bt_pdf.empty());
  std::ofstream(dir_ + "/bt.pdf", std::ios::binary) << bt_pdf;
  std::string out;
  EXPECT_EQ(testing::RunCommand(Cat("pdfsig ", dir_, "/bt.pdf"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("Signature is Valid."));
  auto facts = pades::ReadPdf(bt_pdf);
  ASSERT_TRUE(facts.ok()) << facts.status();
  ASSERT_EQ(facts->signatures.size(), 1u);
  const absl::Time stamped = ExpectOneTimestampOpensslVerifies(facts->signatures[0].cms_der, "bt");
  EXPECT_GE(stamped, before);
  EXPECT_LE(stamped, absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(facts->dss.ocsp_responses_der.empty());  // B-T: no validation data.

  const std::string text = "Изјава са временским жигом.\n";
  const std::string p7s =
      SignThroughThePortal(portal, *app, "izjava.txt", text, "text/plain", 0, "B-T");
  ASSERT_FALSE(p7s.empty());
  std::ofstream(dir_ + "/izjava.txt", std::ios::binary) << text;
  std::ofstream(dir_ + "/izjava.txt.p7s", std::ios::binary) << p7s;
  EXPECT_EQ(testing::RunCommand(Cat("openssl cms -verify -binary -inform DER -in ", dir_,
                                    "/izjava.txt.p7s -content ", dir_, "/izjava.txt -CAfile ", dir_,
                                    "/root.pem -purpose any -out /dev/null"),
                                &out),
            0)
      << out;
  ExpectOneTimestampOpensslVerifies(p7s, "izjava");

  // B-LT: the DSS carries the certificates and an OCSP answer from lifecycle's responder.
  const std::string blt_pdf =
      SignThroughThePortal(portal, *app, "ugovor-lt.pdf", pdf, "application/pdf", 2, "B-LT");
  ASSERT_FALSE(blt_pdf.empty());
  std::ofstream(dir_ + "/blt.pdf", std::ios::binary) << blt_pdf;
  EXPECT_EQ(testing::RunCommand(Cat("pdfsig ", dir_, "/blt.pdf"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("Signature is Valid."));
  auto lt = pades::ReadPdf(blt_pdf);
  ASSERT_TRUE(lt.ok()) << lt.status();
  EXPECT_FALSE(lt->dss.certificates_der.empty());
  EXPECT_FALSE(lt->dss.ocsp_responses_der.empty());
  ASSERT_EQ(lt->signatures.size(), 1u);
  ExpectOneTimestampOpensslVerifies(lt->signatures[0].cms_der, "blt");

  // B-B: no timestamp.
  const std::string bb_pdf =
      SignThroughThePortal(portal, *app, "ugovor-b.pdf", pdf, "application/pdf", 2, "B-B");
  auto bb = pades::ReadPdf(bb_pdf);
  ASSERT_TRUE(bb.ok()) << bb.status();
  ASSERT_EQ(bb->signatures.size(), 1u);
  auto none = cades::SignatureTimestampTokens(bb->signatures[0].cms_der);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// The TSA does not answer (web.tsa_url names a port nobody listens on): after the approval the
// page says, in the user's language, that the timestamp authority failed (503, like signDoc),
// and no file can be downloaded.
class WebTsaDownTest : public WebTest {
 protected:
  void Configure(config::v1::ServerConfig& c) override {
    c.mutable_web()->set_tsa_url(Cat("http://127.0.0.1:", testing::FreeLoopbackPort(), "/tsa"));
  }
};

TEST_F(WebTsaDownTest, AfterTheApprovalTheErrorPageNamesTheTimestampAuthority) {
  Browser portal(port_);
  auto app = CitizenWithCertificate("tsa.down.web@example.rs", 35, &portal);
  ASSERT_NE(app, nullptr);
  if (HasFatalFailure()) return;
  const std::string job = ExpectFailurePage(portal, *app, "B-T", "tsa_failed");
  EXPECT_THAT(T(Lang::kEn, "sign.tsa_failed"), HasSubstr("timestamp authority (TSA)"));
  auto download = portal.Get("/sign/download?job=" + job);
  ASSERT_TRUE(download);
  EXPECT_EQ(download->status, 404);
  // Polling again says the same.
  auto again = portal.PostJson("/sign/poll?job=" + job, "");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, R"({"state":"tsa_failed"})");
}

// B-LT with no OCSP answer (the certificates name a responder nobody listens on): after the
// approval the page names the certificate status service (OCSP), 503; nothing to download.
class WebOcspDownTest : public WebTsaTest {
 protected:
  void Configure(config::v1::ServerConfig& c) override {
    WebTsaTest::Configure(c);
    c.mutable_lifecycle()->set_public_base_url(
        Cat("http://127.0.0.1:", testing::FreeLoopbackPort()));
  }
};

TEST_F(WebOcspDownTest, BLTWithoutOcspAnswersIsAnErrorPageNamingOcsp) {
  Browser portal(port_);
  auto app = CitizenWithCertificate("ocsp.down.web@example.rs", 37, &portal);
  ASSERT_NE(app, nullptr);
  if (HasFatalFailure()) return;
  const std::string job = ExpectFailurePage(portal, *app, "B-LT", "ocsp_failed");
  EXPECT_THAT(T(Lang::kEn, "sign.ocsp_failed"), HasSubstr("certificate status service (OCSP)"));
  auto download = portal.Get("/sign/download?job=" + job);
  ASSERT_TRUE(download);
  EXPECT_EQ(download->status, 404);
}

// Two web replicas on one database behind a plain round-robin balancer: a browser's requests
// land on either. The session is PostgreSQL's (web.sessions): log in through one, use it (pages,
// CSRF-checked posts, a signing job) through the other, log out through the other; the row
// names no cookie and shows no session token; a stolen cookie after logout, the row's key used
// as a cookie, a made-up cookie and an idle session are refused.
class WebReplicasTest : public WebTest {
 protected:
  void SetUp() override {
    WebTest::SetUp();
    if (HasFatalFailure()) return;
    const std::string services = stacks_->target();
    auto second = testing::Stacks::Start(
        env(), {.services = {"web"}, .configure = [&](config::v1::ServerConfig& c) {
                  c.mutable_peers()->set_identity(services);
                  c.mutable_peers()->set_consent(services);
                  c.mutable_peers()->set_lifecycle(services);
                  c.mutable_peers()->set_signer(services);
                }});
    ASSERT_TRUE(second.ok()) << second.status();
    second_ = *std::move(second);
    second_port_ = HttpPort(second_->server().stack("web"));
    ASSERT_GT(second_port_, 0);
    ASSERT_NE(second_port_, port_);
  }

  // The rows of web.sessions: (id_hash, sealed).
  std::vector<std::pair<std::string, std::string>> Rows() {
    std::vector<std::pair<std::string, std::string>> out;
    auto rows = env().pool().Exec("SELECT id_hash, sealed FROM web.sessions");
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return out;
    for (int i = 0; i < rows->rows(); ++i) {
      out.emplace_back(*rows->GetBytes(i, 0), *rows->GetBytes(i, 1));
    }
    return out;
  }

  std::unique_ptr<testing::Stacks> second_;
  int second_port_ = 0;
};

TEST_F(WebReplicasTest, OneSessionOnEitherReplicaLogoutOnTheOtherForgedAndStolenCookiesRefused) {
  Browser portal(port_);
  const std::string username = "replicas.web@example.rs";
  auto app = CitizenWithCertificate(username, 36, &portal);  // Logged in through replica 1.
  ASSERT_NE(app, nullptr);
  if (HasFatalFailure()) return;
  const std::string cookie = portal.cookie("qsign_sid");
  ASSERT_FALSE(cookie.empty());

  // The table: SHA-256 of the cookie, never the cookie; the sealed fields show neither the
  // username nor a session token.
  bool found = false;
  for (const auto& [id_hash, sealed] : Rows()) {
    EXPECT_NE(id_hash, cookie);
    EXPECT_THAT(sealed, Not(HasSubstr(username)));
    EXPECT_THAT(sealed, Not(HasSubstr("Bearer")));
    found = found || id_hash == Sha256(cookie);
  }
  EXPECT_TRUE(found);

  // Replica 2 knows the session: the account page, and a post with the CSRF token of a page
  // replica 1 rendered.
  portal.Get("/sign");  // Replica 1's page (its CSRF token).
  portal.Use(second_port_);
  auto account = portal.Get("/account");
  ASSERT_TRUE(account);
  EXPECT_EQ(account->status, 200);
  EXPECT_THAT(account->body, HasSubstr(username));
  // A signing job across the two: upload on 2, the poll on 1, the download on 2.
  auto up = portal.Upload("/sign", "izjava.txt", "Изјава.\n", "text/plain", "B-B");
  ASSERT_TRUE(up && up->status == 303) << (up ? up->body : "");
  const std::string wait_url = up->get_header_value("Location");
  ASSERT_THAT(wait_url, HasSubstr("/sign/wait?job="));
  auto request = app->NextRequest(absl::Seconds(10));
  ASSERT_TRUE(request.ok()) << request.status();
  ASSERT_TRUE(app->Approve(*request, testing::kPin).ok());
  const std::string job = wait_url.substr(wait_url.find("job=") + 4);
  portal.Use(port_);
  auto polled = portal.PostJson("/sign/poll?job=" + job, "");
  ASSERT_TRUE(polled);
  EXPECT_EQ(polled->body, Cat(R"({"state":"done","download":"/sign/download?job=)", job, "\"}"));
  portal.Use(second_port_);
  auto download = portal.Get("/sign/download?job=" + job);
  ASSERT_TRUE(download);
  EXPECT_EQ(download->status, 200);
  EXPECT_GT(download->body.size(), 500u);  // The .p7s.

  // A cookie nobody was given, and the table's key used as a cookie: no session (the login page).
  for (const std::string& forged : std::vector<std::string>{
           SessionStore::RandomToken(), absl::WebSafeBase64Escape(Sha256(cookie))}) {
    Browser other(second_port_);
    other.SetCookie("qsign_sid", forged);
    auto page = other.Get("/account");
    ASSERT_TRUE(page);
    EXPECT_EQ(page->status, 303);
    EXPECT_EQ(page->get_header_value("Location"), "/login");
  }

  // Logout through replica 2 (the CSRF token of its page); replica 1 no longer knows the cookie.
  portal.Get("/account");
  auto out = portal.Post("/logout", {});
  ASSERT_TRUE(out && out->status == 303);
  for (int port : {port_, second_port_}) {
    Browser thief(port);
    thief.SetCookie("qsign_sid", cookie);
    auto page = thief.Get("/account");
    ASSERT_TRUE(page);
    EXPECT_EQ(page->status, 303) << port;
    EXPECT_EQ(page->get_header_value("Location"), "/login");
  }
  for (const auto& row : Rows()) EXPECT_NE(row.first, Sha256(cookie));

  // Idle for longer than web.session_idle_minutes: refused on either replica, and deleted.
  Browser idle(port_);
  LogIn(idle, *app, username);
  const std::string idle_cookie = idle.cookie("qsign_sid");
  ASSERT_TRUE(env()
                  .pool()
                  .Exec("UPDATE web.sessions SET last_seen = now() - interval '31 minutes' "
                        "WHERE id_hash = $1",
                        {db::Param::Bytes(Sha256(idle_cookie))})
                  .ok());
  idle.Use(second_port_);
  auto expired = idle.Get("/account");
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->status, 303);
  for (const auto& row : Rows()) EXPECT_NE(row.first, Sha256(idle_cookie));
}

}  // namespace
}  // namespace qsign::web

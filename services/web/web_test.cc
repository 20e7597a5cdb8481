// The web front ends against the real services (tests/testing Stacks: identity, consent,
// lifecycle and signer on PostgreSQL and SoftHSM2, the web stack on 127.0.0.1 port 0), driven
// over HTTP the way a browser would: cookies, CSRF tokens from the page, form posts. The
// consent app is the simulator here; the browser app is exercised by tests/web (Chromium).
#include <httplib.h>

#include <map>
#include <memory>
#include <regex>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "consent/app_simulator.h"
#include "consent/statement.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "services/web/html.h"
#include "services/web/i18n.h"
#include "services/web/stack.h"
#include "tests/testing/service_test.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"

namespace qsign::web {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A browser's share of HTTP: a cookie jar, the page's CSRF token, form posts.
class Browser {
 public:
  explicit Browser(int port) : client_("127.0.0.1", port) { client_.set_read_timeout(60, 0); }

  httplib::Result Get(const std::string& path) {
    auto res = client_.Get(path, Headers());
    Keep(res);
    return res;
  }

  // A form post with the CSRF token of the last page seen.
  httplib::Result Post(const std::string& path, httplib::Params params, bool with_csrf = true,
                       std::string origin = "") {
    if (with_csrf) params.emplace("csrf", csrf_);
    httplib::Headers headers = Headers();
    if (!origin.empty()) headers.emplace("Origin", origin);
    auto res = client_.Post(path, headers, params);
    Keep(res);
    return res;
  }

  // A script's POST: the token in X-CSRF-Token.
  httplib::Result PostJson(const std::string& path, const std::string& body) {
    httplib::Headers headers = Headers();
    headers.emplace("X-CSRF-Token", csrf_);
    auto res = client_.Post(path, headers, body, "application/json");
    Keep(res);
    return res;
  }

  void SetLang(const std::string& tag) { cookies_["qsign_lang"] = tag; }
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
    return {{"Cookie", jar}, {"User-Agent", "web_test"}};
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

  httplib::Client client_;
  std::map<std::string, std::string> cookies_;
  std::string csrf_;
  std::vector<std::string> set_cookie_lines_;
};

class WebTest : public testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    auto stacks = testing::Stacks::Start(
        env(), {.services = {"signer", "consent", "identity", "lifecycle", "web"},
                .configure = [](config::v1::ServerConfig& c) {
                  c.mutable_consent()->set_enrollments_per_address_per_minute(0);
                }});
    ASSERT_TRUE(stacks.ok()) << stacks.status();
    stacks_ = *std::move(stacks);
    port_ = HttpPort(stacks_->server().stack("web"));
    ASSERT_GT(port_, 0);
    WaitForSessionFeeds();
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

  // Registers through the portal and proofs through the office console; answers the
  // activation code shown to the officer.
  std::string RegisterAndProof(const std::string& username, int n) {
    Browser portal(port_);
    portal.Get("/register");
    auto reg = portal.Post("/register", {{"username", username},
                                         {"given_name", "Ана"},
                                         {"surname", "Петровић"},
                                         {"national_id", testing::NationalId(n)}});
    EXPECT_TRUE(reg && reg->status == 200);
    if (!reg) return "";
    EXPECT_THAT(reg->body, HasSubstr("id=\"registered\""));

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

  std::unique_ptr<testing::Stacks> stacks_;
  int port_ = 0;
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
    const std::pair<const char*, const char*> pages[] = {{"/login", "login.intro"},
                                                         {"/register", "register.intro"},
                                                         {"/app", "app.enrol.intro"},
                                                         {"/office/login", "office.login.intro"}};
    for (const auto& [path, key] : pages) {
      auto res = b.Get(path);
      ASSERT_TRUE(res) << path;
      EXPECT_EQ(res->status, 200) << path;
      EXPECT_TRUE(absl::StrContains(res->body, Cat("<html lang=\"", LangTag(lang), "\">"))) << path;
      EXPECT_TRUE(absl::StrContains(res->body, Esc(T(lang, key)))) << path << " " << key;
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

}  // namespace
}  // namespace qsign::web

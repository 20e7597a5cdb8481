// oauth2/authorize: the authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636, CSC v2
// §8.3.2) and its sign-in pages. The citizen signs in the way the portal does, by push: the page
// shows which e-service asks, the user approves on the consent app with the PIN, and the browser
// returns to the e-service's registered redirect URI with a code. scope=service: the code (and
// the token it becomes) is bound to the citizen who approved the LOGIN; scope=credential: the
// approval of the SIGN request for exactly the given hashes is the SCAL2 authorization, and the
// token carries its SAD. The gateway keeps no state: what the pages need travels in encrypted
// tickets (tokens.h).
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/http/html.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/strings.h"
#include "services/gateway/errors.h"
#include "services/gateway/gateway.h"
#include "services/gateway/params.h"
#include "services/gateway/result.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

namespace pb = ::qsign::v1;

constexpr char kPollPath[] = "/csc/v2/oauth2/authorize/poll";
constexpr char kStartPath[] = "/csc/v2/oauth2/authorize";
// Codes are redeemed by the e-service's back end at once.
constexpr absl::Duration kCodeLifetime = absl::Seconds(60);
constexpr absl::Duration kPollWait = absl::Seconds(20);

enum Lang { kCyrl = 0, kLatn = 1, kEn = 2 };

// The pages' texts: Serbian Cyrillic, Serbian Latin, English.
struct Text {
  const char* key;
  const char* text[3];
};
constexpr Text kTexts[] = {
    {"title", {"Пријава у qsign", "Prijava u qsign", "Sign in with qsign"}},
    {"asks.service",
     {"тражи да се пријавите својим квалификованим сертификатом у облаку.",
      "traži da se prijavite svojim kvalifikovanim sertifikatom u oblaku.",
      "asks you to sign in with your qualified certificate in the cloud."}},
    {"asks.credential",
     {"тражи ваш квалификовани електронски потпис.", "traži vaš kvalifikovani elektronski potpis.",
      "asks for your qualified electronic signature."}},
    {"documents", {"Докумената за потпис:", "Dokumenata za potpis:", "Documents to sign:"}},
    {"username", {"Корисничко име (е-пошта)", "Korisničko ime (e-pošta)", "Username (e-mail)"}},
    {"continue", {"Настави", "Nastavi", "Continue"}},
    {"code",
     {"Проверите да апликација приказује исти верификациони код, па одобрите ПИН-ом:",
      "Proverite da aplikacija prikazuje isti verifikacioni kod, pa odobrite PIN-om:",
      "Check that the app shows the same verification code, then approve with your PIN:"}},
    {"approve.sign",
     {"Одобрите потписивање у апликацији за сагласност.",
      "Odobrite potpisivanje u aplikaciji za saglasnost.",
      "Approve the signature in your consent app."}},
    {"waiting",
     {"Чекамо потврду из апликације…", "Čekamo potvrdu iz aplikacije…", "Waiting for the app…"}},
    {"done",
     {"Одобрено; враћамо вас на е-услугу…", "Odobreno; vraćamo vas na e-uslugu…",
      "Approved; taking you back to the e-service…"}},
    {"denied", {"Одбијено у апликацији.", "Odbijeno u aplikaciji.", "Refused in the app."}},
    {"expired", {"Није одобрено на време.", "Nije odobreno na vreme.", "Not approved in time."}},
    {"error",
     {"Услуга тренутно није доступна.", "Usluga trenutno nije dostupna.",
      "The service is unavailable right now."}},
    {"back", {"Назад на е-услугу", "Nazad na e-uslugu", "Back to the e-service"}},
    {"refused",
     {"Захтев е-услуге је одбијен:", "Zahtev e-usluge je odbijen:",
      "The e-service's request was refused:"}},
};

const char* Tr(Lang lang, std::string_view key) {
  for (const Text& t : kTexts) {
    if (key == t.key) return t.text[lang];
  }
  return "";
}

// The sign-in page's language, which is also the language of the request's text in the app:
// CSC's `lang` (ConsentLanguage; a malformed one is refused before this matters), else the
// browser's first Accept-Language, else Serbian Cyrillic.
Lang LangOf(std::string_view tag, std::string_view accept_language) {
  if (tag.empty()) {
    tag = Sv(absl::StripAsciiWhitespace(
        Av(accept_language.substr(0, accept_language.find_first_of(",;")))));
  }
  const std::string_view language = ConsentLanguage(tag).value_or("sr-Cyrl");
  return language == "sr-Latn" ? kLatn : language == "en" ? kEn : kCyrl;
}

std::string_view TagOf(Lang lang) {
  return lang == kLatn ? "sr-Latn" : lang == kEn ? "en" : "sr-Cyrl";
}

std::string Esc(std::string_view text) { return http::HtmlEscape(text); }

std::string_view Param(const SignInRequest& r, std::string_view name) {
  for (const auto& [n, v] : r.params) {
    if (n == name) return v;
  }
  return {};
}

CscReply Html(int status, Lang lang, std::string_view body, const Json& texts = Json::object()) {
  std::string page = absl::StrCat(
      "<!doctype html>\n<html lang=\"", Av(TagOf(lang)), "\"><head><meta charset=\"utf-8\">",
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
      "<link rel=\"icon\" href=\"data:,\"><title>", Esc(Tr(lang, "title")), "</title>");
  if (!texts.empty()) {
    // Safe inside <script>: no '<' is left unescaped by the JSON below.
    std::string json = texts.dump(-1, ' ', false, Json::error_handler_t::replace);
    absl::StrReplaceAll({{"<", "\\u003c"}}, &json);
    absl::StrAppend(&page, "<script type=\"application/json\" id=\"texts\">", json,
                    "</script><script src=\"/csc/v2/oauth2/signin.js\" defer></script>");
  }
  absl::StrAppend(&page, "</head><body><main><h1>", Esc(Tr(lang, "title")), "</h1>", Av(body),
                  "</main></body></html>\n");
  return CscReply{
      .http_status = status,
      .body = std::move(page),
      .headers = {{"Content-Security-Policy",
                   "default-src 'none'; script-src 'self'; connect-src 'self'; img-src data:; "
                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"},
                  {"X-Content-Type-Options", "nosniff"},
                  {"X-Frame-Options", "DENY"},
                  {"Referrer-Policy", "no-referrer"},
                  {"Cache-Control", "no-store"}},
      .content_type = "text/html; charset=utf-8"};
}

CscReply ErrorPage(Lang lang, std::string_view why) {
  return Html(400, lang,
              absl::StrCat("<p id=\"error\">", Esc(Tr(lang, "refused")), " ", Esc(why), "</p>"));
}

// redirect_uri with the parameters added (RFC 6749 §4.1.2).
std::string WithQuery(std::string_view uri,
                      std::vector<std::pair<std::string_view, std::string_view>> params) {
  std::string out(uri);
  char sep = absl::StrContains(Av(uri), "?") ? '&' : '?';
  for (const auto& [name, value] : params) {
    if (value.empty()) continue;
    absl::StrAppend(&out, std::string(1, sep), Av(name), "=", PercentEncode(value));
    sep = '&';
  }
  return out;
}

CscReply RedirectTo(std::string location) {
  return CscReply{.http_status = 302,
                  .headers = {{"Location", std::move(location)}, {"Cache-Control", "no-store"}},
                  .content_type = "text/plain; charset=utf-8"};
}

// The authorization request as the tickets carry it.
struct AuthRequest {
  std::string client_id, redirect_uri, challenge, state, scope = "service";
  std::string credential_id, hash_oid, description;
  std::vector<std::string> hashes;  // Raw.
  Lang lang = kCyrl;

  Json ToJson() const {
    Json h = Json::array();
    for (const std::string& hash : hashes) h.push_back(EncodeBase64Url(hash));
    return {
        {"c", client_id},    {"r", redirect_uri},          {"pk", challenge}, {"st", state},
        {"s", scope},        {"cr", credential_id},        {"ha", hash_oid},  {"d", description},
        {"h", std::move(h)}, {"l", static_cast<int>(lang)}};
  }
  static std::optional<AuthRequest> FromJson(const Json& j) {
    if (!j.is_object()) return std::nullopt;
    AuthRequest a;
    try {
      a.client_id = j.at("c").get<std::string>();
      a.redirect_uri = j.at("r").get<std::string>();
      a.challenge = j.at("pk").get<std::string>();
      a.state = j.at("st").get<std::string>();
      a.scope = j.at("s").get<std::string>();
      a.credential_id = j.at("cr").get<std::string>();
      a.hash_oid = j.at("ha").get<std::string>();
      a.description = j.at("d").get<std::string>();
      for (const Json& h : j.at("h")) a.hashes.push_back(*DecodeBase64Url(h.get<std::string>()));
      a.lang = static_cast<Lang>(j.at("l").get<int>() % 3);
    } catch (...) {  // Our own JSON (the ticket is authenticated): cannot happen.
      return std::nullopt;
    }
    return a;
  }
};

}  // namespace

CscReply Gateway::SignInPage(const SignInRequest& request) const {
  const Lang lang = LangOf(Param(request, "lang"), request.accept_language);
  const std::string_view client_id = Param(request, "client_id");
  const std::string_view redirect_uri = Param(request, "redirect_uri");
  auto client = relying_parties_.Find(client_id);
  if (!client) return ErrorPage(lang, "client_id: not a registered client");
  // Never send the browser to a URI the operator did not register for this client.
  if (!relying_parties_.IsRedirectUri(client_id, redirect_uri)) {
    return ErrorPage(lang, "redirect_uri: not registered for this client");
  }
  const std::string_view state = Param(request, "state");
  auto fail = [&](std::string_view error, std::string_view description) {
    return RedirectTo(WithQuery(
        redirect_uri,
        {{"error", error}, {"error_description", description}, {"state", state.substr(0, 500)}}));
  };
  if (Param(request, "response_type") != "code") {
    return fail("unsupported_response_type", "response_type must be code");
  }
  if (!ConsentLanguage(Param(request, "lang")).has_value()) {
    return fail("invalid_request", "lang: not an RFC 5646 language tag (e.g. sr-Latn, en)");
  }
  AuthRequest a{.client_id = std::string(client_id),
                .redirect_uri = std::string(redirect_uri),
                .challenge = std::string(Param(request, "code_challenge")),
                .state = std::string(state),
                .lang = lang};
  if (state.size() > 500) return fail("invalid_request", "state: at most 500 characters");
  if (!IsPkceChallenge(a.challenge) || Param(request, "code_challenge_method") != "S256") {
    return fail("invalid_request",
                "PKCE is required: code_challenge (43 characters, base64url of SHA-256) with "
                "code_challenge_method=S256");
  }
  const std::string_view scope = Param(request, "scope");
  if (scope == "credential") {
    a.scope = "credential";
    a.credential_id = std::string(Param(request, "credentialID"));
    if (a.credential_id.empty() || a.credential_id.size() > kMaxIdBytes) {
      return fail("invalid_request", "credentialID is required with scope=credential");
    }
    const HashOid* hash = FindHashOid(Param(request, "hashAlgorithmOID"));
    if (hash == nullptr) {
      return fail("invalid_request", "hashAlgorithmOID: SHA-256, SHA-384 or SHA-512");
    }
    a.hash_oid = hash->oid;
    std::vector<std::string> encoded =
        absl::StrSplit(Av(Param(request, "hashes")), ',', absl::SkipEmpty());
    if (encoded.empty() || encoded.size() > static_cast<size_t>(config_.max_hashes)) {
      return fail("invalid_request", "hashes: one or more, comma-separated, base64url");
    }
    auto hashes = DecodeHashes(encoded, *hash);
    if (!hashes.ok()) return fail("invalid_request", Sv(hashes.status().message()));
    a.hashes = *std::move(hashes);
    const std::string_view num = Param(request, "numSignatures");
    if (!num.empty() && num != std::to_string(a.hashes.size())) {
      return fail("invalid_request", "numSignatures must equal the number of hashes");
    }
    a.description = std::string(Param(request, "description"));
    if (!a.description.empty() && !IsDisplayText(a.description, 1, kMaxDescriptionChars)) {
      return fail("invalid_request", "description: 1 to 200 characters of text");
    }
  } else if (!scope.empty() && scope != "service") {
    return fail("invalid_scope", "scope: service or credential");
  }

  const std::string ticket = tokens_->SealTicket(a.ToJson().dump());
  std::string body = absl::StrCat(
      "<p id=\"asks\"><strong id=\"relying-party\">", Esc(client->name), "</strong> ",
      Esc(Tr(lang, a.scope == "service" ? "asks.service" : "asks.credential")), "</p>");
  std::string fields;
  if (a.scope == "service") {
    fields = absl::StrCat("<label>", Esc(Tr(lang, "username")),
                          "<input name=\"username\" id=\"username\" type=\"email\" required "
                          "autocomplete=\"username\"></label>");
  } else {
    absl::StrAppend(&body, "<p>", Esc(Tr(lang, "documents")), " <span id=\"count\">",
                    a.hashes.size(), "</span></p>");
    if (!a.description.empty()) {
      absl::StrAppend(&body, "<p id=\"description\">", Esc(a.description), "</p>");
    }
  }
  absl::StrAppend(&body, "<form method=\"post\" action=\"", kStartPath, "\">",
                  "<input type=\"hidden\" name=\"ticket\" value=\"", Esc(ticket), "\">", fields,
                  "<button type=\"submit\" id=\"continue\">", Esc(Tr(lang, "continue")),
                  "</button></form>");
  return Html(200, lang, body);
}

CscReply Gateway::SignInStart(const SignInRequest& request) const {
  auto plain = tokens_->OpenTicket(Param(request, "ticket"));
  auto a = plain.ok() ? AuthRequest::FromJson(Json::parse(*plain, nullptr, false)) : std::nullopt;
  if (!a) return ErrorPage(kCyrl, "the sign-in page is stale; start again at the e-service");
  auto client = relying_parties_.Find(a->client_id);
  if (!client) return ErrorPage(a->lang, "client_id: not a registered client");
  const Lang lang = a->lang;
  Json wait = {{"a", a->ToJson()}};
  std::string shown;
  if (a->scope == "service") {
    const std::string_view username = Param(request, "username");
    if (username.empty() || username.size() > 254) return ErrorPage(lang, "username: required");
    pb::StartLoginRequest req;
    req.set_username(std::string(username));
    req.set_language(std::string(TagOf(lang)));
    req.mutable_client()->set_client_address(request.remote_address);
    // Shown in the app next to the request: which e-service asks.
    req.mutable_client()->set_user_agent(absl::StrCat("e-service: ", client->name));
    auto started = backend_->StartLogin(req);
    if (!started.ok()) {
      Log(LogLevel::kWarning, "gateway", "sign-in: StartLogin failed",
          {{"status", started.status().ToString()}});
      return Html(503, lang, absl::StrCat("<p id=\"error\">", Esc(Tr(lang, "error")), "</p>"));
    }
    wait["login"] = started->login_id();
    shown = absl::StrCat("<p>", Esc(Tr(lang, "code")), "</p><p id=\"code\" class=\"code\">",
                         Esc(started->verification_code()), "</p>");
  } else {
    pb::AuthorizeRequest req;
    req.set_language(std::string(TagOf(lang)));
    req.set_credential_id(a->credential_id);
    req.set_hash_algorithm_oid(a->hash_oid);
    for (const std::string& h : a->hashes) {
      req.add_hashes(h);
      req.add_documents()->set_label(a->description.empty() ? client->name : a->description);
    }
    req.set_num_signatures(static_cast<uint32_t>(a->hashes.size()));
    req.set_relying_party_name(client->name);
    req.mutable_client()->set_client_address(request.remote_address);
    req.mutable_client()->set_user_agent(absl::StrCat("e-service: ", client->name));
    auto authorized = backend_->Authorize(req);
    if (!authorized.ok()) {
      const CscError e = ToCscError(FromService("consent", authorized.status()));
      return RedirectTo(WithQuery(
          a->redirect_uri,
          {{"error", e.error}, {"error_description", e.description}, {"state", a->state}}));
    }
    wait["req"] = authorized->request_id();
    shown = absl::StrCat("<p id=\"approve\">", Esc(Tr(lang, "approve.sign")), "</p>");
  }
  Json texts = Json::object();
  for (const char* key : {"done", "denied", "expired", "error"}) texts[key] = Tr(lang, key);
  return Html(200, lang,
              absl::StrCat("<p><strong id=\"relying-party\">", Esc(client->name), "</strong></p>",
                           shown, "<p id=\"status\" data-poll=\"", kPollPath, "\" data-ticket=\"",
                           Esc(tokens_->SealTicket(wait.dump())), "\">", Esc(Tr(lang, "waiting")),
                           "</p><p><a id=\"back\" hidden>", Esc(Tr(lang, "back")), "</a></p>"),
              texts);
}

CscReply Gateway::SignInPoll(const SignInRequest& request) const {
  auto json = [](Json j) {
    return CscReply{.body = j.dump(-1, ' ', false, Json::error_handler_t::replace),
                    .headers = {{"Cache-Control", "no-store"}}};
  };
  const Json body = Json::parse(request.body, nullptr, false);
  const std::string ticket =
      body.is_object() && body.contains("ticket") && body["ticket"].is_string()
          ? body["ticket"].get<std::string>()
          : "";
  auto plain = tokens_->OpenTicket(ticket);
  const Json wait = plain.ok() ? Json::parse(*plain, nullptr, false) : Json();
  auto a = wait.is_object() && wait.contains("a") ? AuthRequest::FromJson(wait["a"]) : std::nullopt;
  if (!a) return json({{"state", "error"}});
  auto refused = [&](const char* state) {
    return json(
        {{"state", state},
         {"redirect", WithQuery(a->redirect_uri,
                                {{"error", "access_denied"},
                                 {"error_description", std::string("the user's answer: ") + state},
                                 {"state", a->state}})}});
  };
  CodeClaims code{.token = {.client_id = a->client_id,
                            .expires_at = clock_->Now() + kCodeLifetime,
                            .scope = a->scope},
                  .redirect_uri = a->redirect_uri,
                  .code_challenge = a->challenge};
  if (wait.contains("login") && wait["login"].is_string()) {
    pb::AwaitLoginRequest req;
    req.set_login_id(wait["login"].get<std::string>());
    req.mutable_max_wait()->set_seconds(absl::ToInt64Seconds(kPollWait));
    auto outcome = backend_->AwaitLogin(req);
    if (!outcome.ok()) {
      // Handed out already, or unknown: this sign-in is over.
      if (outcome.status().code() == absl::StatusCode::kFailedPrecondition ||
          outcome.status().code() == absl::StatusCode::kNotFound) {
        return refused("expired");
      }
      return json({{"state", "error"}});
    }
    switch (outcome->state()) {
      case pb::LOGIN_STATE_PENDING:
        return json({{"state", "pending"}});
      case pb::LOGIN_STATE_APPROVED:
        break;
      case pb::LOGIN_STATE_DENIED:
        return refused("denied");
      default:
        return refused("expired");
    }
    // The gateway needs the account, not the session: end it at once.
    if (auto s = backend_->Logout(outcome->session_token()); !s.ok()) {
      Log(LogLevel::kWarning, "gateway", "sign-in: Logout failed", {{"status", s.ToString()}});
    }
    code.token.account_id = outcome->account_id();
  } else if (wait.contains("req") && wait["req"].is_string()) {
    pb::AwaitAuthorizationRequest req;
    req.set_request_id(wait["req"].get<std::string>());
    req.mutable_max_wait()->set_seconds(absl::ToInt64Seconds(kPollWait));
    auto outcome = backend_->AwaitAuthorization(req);
    if (!outcome.ok()) return json({{"state", "error"}});
    switch (outcome->state()) {
      case pb::CONSENT_REQUEST_STATE_PENDING:
        return json({{"state", "pending"}});
      case pb::CONSENT_REQUEST_STATE_APPROVED:
        break;
      case pb::CONSENT_REQUEST_STATE_DENIED:
        return refused("denied");
      default:
        return refused("expired");
    }
    if (outcome->sad().empty()) return refused("expired");
    pb::GetCredentialInfoRequest info_req;
    info_req.set_credential_id(a->credential_id);
    auto info = backend_->GetCredentialInfo(info_req);
    if (!info.ok()) return json({{"state", "error"}});
    code.token.account_id = info->account_id();
    code.token.credential_id = a->credential_id;
    code.token.sad = outcome->sad();
  } else {
    return json({{"state", "error"}});
  }
  return json({{"state", "done"},
               {"redirect", WithQuery(a->redirect_uri,
                                      {{"code", tokens_->SealCode(code)}, {"state", a->state}})}});
}

std::string_view Gateway::SignInScript() {
  return R"JS('use strict';
// The sign-in page of oauth2/authorize: waits for the approval on the consent app, then returns
// to the e-service. Texts come from the page (#texts); no inline script.
(function () {
  const status = document.getElementById('status');
  if (!status) return;
  const texts = JSON.parse(document.getElementById('texts').textContent);
  async function poll() {
    let answer;
    try {
      const res = await fetch(status.dataset.poll, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ ticket: status.dataset.ticket }),
      });
      answer = await res.json();
    } catch (e) {
      status.textContent = texts.error;
      setTimeout(poll, 2000);
      return;
    }
    if (answer.state === 'pending') { poll(); return; }
    if (answer.state === 'done') {
      status.textContent = texts.done;
      window.location.assign(answer.redirect);
      return;
    }
    status.textContent = texts[answer.state] || texts.error;
    if (answer.redirect) {
      const back = document.getElementById('back');
      back.href = answer.redirect;
      back.hidden = false;
    }
  }
  poll();
})();
)JS";
}

}  // namespace qsign::gateway

#include "services/web/web.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/secret.h"
#include "common/strings.h"
#include "services/web/static_assets.h"
#include "services/web/web_internal.h"

namespace qsign::web {

namespace {

constexpr std::string_view kSessionCookie = "qsign_sid";
constexpr std::string_view kLangCookie = "qsign_lang";

// The value of cookie `name` in the request's Cookie headers; empty when absent.
std::string_view CookieValue(const http::Request& req, std::string_view name) {
  for (const auto& [header, value] : req.headers) {
    if (!absl::EqualsIgnoreCase(Av(header), "cookie")) continue;
    for (absl::string_view piece : absl::StrSplit(Av(value), ';')) {
      const std::string_view part = Sv(absl::StripAsciiWhitespace(piece));
      if (part.size() > name.size() && part.substr(0, name.size()) == name &&
          part[name.size()] == '=') {
        return part.substr(name.size() + 1);
      }
    }
  }
  return {};
}

void SetCookie(http::Response& res, std::string_view name, std::string_view value,
               std::string_view extra = "") {
  res.headers.emplace_back(
      "Set-Cookie",
      Cat(Av(name), "=", Av(value), "; Path=/; HttpOnly; Secure; SameSite=Lax", Av(extra)));
}

// A local path to go back to (never another origin: no "//host" or "/\host").
std::string LocalPath(std::string_view next) {
  if (next.empty() || next[0] != '/' || (next.size() > 1 && (next[1] == '/' || next[1] == '\\'))) {
    return "/";
  }
  for (char ch : next) {
    if (static_cast<unsigned char>(ch) < 0x20) return "/";
  }
  return std::string(next);
}

std::string_view ContentTypeOf(std::string_view name) {
  if (absl::EndsWith(Av(name), ".js")) return "text/javascript; charset=utf-8";
  if (absl::EndsWith(Av(name), ".css")) return "text/css; charset=utf-8";
  if (absl::EndsWith(Av(name), ".svg")) return "image/svg+xml";
  if (absl::EndsWith(Av(name), ".html")) return "text/html; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace

void SetSessionCookie(http::Response& res, Session& session) {
  absl::MutexLock lock(&session.mu);
  SetCookie(res, kSessionCookie, session.id);
}

void ClearSessionCookie(http::Response& res) { SetCookie(res, kSessionCookie, "", "; Max-Age=0"); }

std::string DateOf(Lang lang, const google::protobuf::Timestamp& t) {
  const absl::Time time = absl::FromUnixSeconds(t.seconds());
  return absl::FormatTime(lang == Lang::kEn ? "%Y-%m-%d %H:%M UTC" : "%d.%m.%Y. %H:%M UTC", time,
                          absl::UTCTimeZone());
}

std::string Field(Lang lang, std::string_view name, std::string_view key, std::string_view type,
                  std::string_view extra) {
  return Cat("<label>", Esc(T(lang, key)), "<input name=\"", name, "\" id=\"", name, "\" type=\"",
             type, "\" ", extra, "></label>");
}

std::string Button(Lang lang, std::string_view id, std::string_view key, std::string_view cls) {
  return Cat("<button type=\"submit\" id=\"", id, "\"",
             cls.empty() ? "" : Cat(" class=\"", cls, "\""), ">", Esc(T(lang, key)), "</button>");
}

qsign::v1::ClientContext ClientOf(const http::Request& req, std::string_view address) {
  qsign::v1::ClientContext client;
  client.set_client_address(std::string(address));
  client.set_user_agent(std::string(req.Header("User-Agent").substr(0, 200)));
  return client;
}

Web::Web(Backend* backend, const Clock* clock, WebOptions options)
    : backend_(backend),
      clock_(clock),
      options_(options),
      sessions_(options.session_db, clock, options.session_idle, options.max_sessions) {}

void Web::SecurityHeaders(http::Response& res, bool https) {
  // Nothing but this origin: no inline script or style, no frames, forms post here only.
  res.SetHeader("Content-Security-Policy",
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  res.SetHeader("X-Content-Type-Options", "nosniff");
  res.SetHeader("X-Frame-Options", "DENY");
  res.SetHeader("Referrer-Policy", "no-referrer");
  res.SetHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.SetHeader("Cross-Origin-Resource-Policy", "same-origin");
  res.SetHeader("Permissions-Policy", "camera=(), microphone=(), geolocation=()");
  if (https) res.SetHeader("Strict-Transport-Security", "max-age=31536000");
}

void Web::Begin(Call& c) {
  SecurityHeaders(c.res, options_.https);
  c.res.SetHeader("Cache-Control", "no-store");
  c.lang = ParseLang(CookieValue(c.req, kLangCookie));
  // A browser's own X-Forwarded-For counts only when the socket's peer is a trusted proxy.
  std::vector<std::string_view> forwarded;
  if (!options_.client_address.header().empty()) {
    for (const auto& [name, value] : c.req.headers) {
      if (absl::EqualsIgnoreCase(Av(name), options_.client_address.header())) {
        forwarded.push_back(value);
      }
    }
  }
  c.address = options_.client_address.Resolve(c.req.remote_address, forwarded);
  c.session = sessions_.Find(CookieValue(c.req, kSessionCookie));
}

http::Handler Web::Page(Area area, Body body) {
  return [this, area, body](const http::Request& req, http::Response& res) {
    Call c{.req = req, .res = res, .area = area};
    Begin(c);
    if (c.session == nullptr) {
      c.session = sessions_.Create();
      SetSessionCookie(res, *c.session);
    }
    {
      absl::MutexLock lock(&c.session->mu);
      c.csrf = c.session->csrf;
    }
    (this->*body)(c);
    sessions_.Save(c.session);
  };
}

std::string_view FormField(const http::Request& req, std::string_view name) {
  std::string_view value = req.Param(name);
  if (const http::Request::FilePart* part = req.File(name); value.empty() && part != nullptr) {
    value = part->content;
  }
  return value;
}

http::Handler Web::Action(Area area, Body body) {
  return [this, area, body](const http::Request& req, http::Response& res) {
    Call c{.req = req, .res = res, .area = area};
    Begin(c);
    std::string_view token = FormField(req, "csrf");
    if (token.empty()) token = req.Header("X-CSRF-Token");
    bool ok = c.session != nullptr && !token.empty();
    if (ok) {
      absl::MutexLock lock(&c.session->mu);
      ok = ConstantTimeEquals(token, c.session->csrf);
      c.csrf = c.session->csrf;
    }
    // A browser names the page's origin on every POST; it must be this one.
    const std::string_view origin = req.Header("Origin");
    if (ok && !origin.empty() && origin != "null") {
      const std::string_view host = req.Header("Host");
      ok = origin == Cat("http://", Av(host)) || origin == Cat("https://", Av(host));
    }
    if (!ok) {
      res.status = 403;
      res.SetContent(Cat(T(c.lang, "err.csrf"), "\n"), "text/plain; charset=utf-8");
      return;
    }
    (this->*body)(c);
    sessions_.Save(c.session);
  };
}

Frame Web::FrameOf(Call& c) {
  Frame f;
  f.lang = c.lang;
  f.area = c.area;
  f.path = std::string(c.req.path);
  f.csrf = c.csrf;
  absl::MutexLock lock(&c.session->mu);
  if (c.area == Area::kPortal) {
    f.signed_in = !c.session->bearer.empty();
    f.who = c.session->username;
  } else if (c.area == Area::kOffice) {
    f.signed_in = !c.session->officer.empty();
    f.who = c.session->officer_id;
  }
  if (!c.flash_taken) {
    c.flash_taken = true;
    c.flash = std::exchange(c.session->flash, "");
    c.flash_error = c.session->flash_error;
  }
  if (!c.flash.empty()) {
    f.flash = absl::StartsWith(c.flash, "@") ? T(c.lang, c.flash.substr(1)) : c.flash;
    f.flash_error = c.flash_error;
  }
  return f;
}

void Web::Html(Call& c, std::string_view title, std::string_view body, std::string script,
               std::vector<std::string_view> js_texts) {
  Frame f = FrameOf(c);
  f.script = std::move(script);
  f.js_texts = std::move(js_texts);
  c.res.status = 200;
  c.res.SetContent(web::Page(f, title, body), "text/html; charset=utf-8");
}

void Web::Redirect(Call& c, std::string_view location) {
  c.res.status = 303;
  c.res.SetHeader("Location", location);
}

void Web::Json(Call& c, int status, std::string body) {
  c.res.status = status;
  c.res.SetContent(std::move(body), "application/json");
}

bool Web::Credential(Call& c, SecretString Session::*field, std::string_view sign_in,
                     std::string* credential) {
  {
    absl::MutexLock lock(&c.session->mu);
    *credential = std::string(((*c.session).*field).value());
  }
  if (credential->empty()) {
    Redirect(c, sign_in);
    return false;
  }
  return true;
}

void Web::Done(Call& c, const absl::Status& status, std::string_view done_key,
               std::string_view next) {
  if (status.ok()) {
    Flash(c, Cat("@", done_key));
  } else {
    Flash(c, ErrorText(c.lang, status), true);
  }
  Redirect(c, next);
}

void Web::Flash(Call& c, std::string text, bool error) {
  absl::MutexLock lock(&c.session->mu);
  c.session->flash = std::move(text);
  c.session->flash_error = error;
}

std::string Web::ErrorText(Lang lang, const absl::Status& status) const {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
      return T(lang, "err.unavailable");
    case absl::StatusCode::kResourceExhausted:
      return T(lang, "err.too_many");
    case absl::StatusCode::kUnauthenticated:
      return T(lang, "err.session");
    case absl::StatusCode::kPermissionDenied:
      return T(lang, "err.denied");
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnimplemented:
      return T(lang, "err.internal");
    default: {
      // The service's own words (written for the user, as the CLI shows them), bounded.
      std::string_view message = Sv(status.message());
      if (message.size() > 300) message = message.substr(0, 300);
      return Cat(T(lang, "err.refused"), " ", message);
    }
  }
}

void Web::LangSwitch(Call& c) {
  const Lang lang = ParseLang(c.req.Param("to"));
  SetCookie(c.res, kLangCookie, LangTag(lang), "; Max-Age=31536000");
  Redirect(c, LocalPath(c.req.Param("next")));
}

void Web::Static(Call& c) {
  const std::string_view name = c.req.matches.size() > 1 ? c.req.matches[1] : "";
  for (const auto& [file, content] : StaticFiles()) {
    if (file == name) {
      c.res.status = 200;
      c.res.SetHeader("Cache-Control", "no-cache");
      c.res.SetContent(std::string(content), std::string(ContentTypeOf(file)));
      return;
    }
  }
  c.res.status = 404;
  c.res.SetContent("not found\n", "text/plain; charset=utf-8");
}

std::vector<http::Route> Web::Routes() {
  std::vector<http::Route> r;
  auto get = [&](std::string pattern, Area area, Body body) {
    r.push_back({"GET", std::move(pattern), Page(area, body)});
  };
  auto post = [&](std::string pattern, Area area, Body body) {
    r.push_back({"POST", std::move(pattern), Action(area, body)});
  };
  r.push_back(
      {"GET", "/static/([a-z0-9._-]+)", [this](const http::Request& req, http::Response& res) {
         Call c{.req = req, .res = res, .area = Area::kPortal};
         SecurityHeaders(res, options_.https);
         Static(c);
       }});
  r.push_back({"GET", "/healthz", [](const http::Request&, http::Response& res) {
                 res.SetContent("ok\n", "text/plain");
               }});
  get("/lang", Area::kPortal, &Web::LangSwitch);

  get("/", Area::kPortal, &Web::Home);
  get("/register", Area::kPortal, &Web::RegisterPage);
  post("/register", Area::kPortal, &Web::RegisterPost);
  get("/register/confirm", Area::kPortal, &Web::ConfirmRegistrationPage);
  post("/register/confirm", Area::kPortal, &Web::ConfirmRegistrationPost);
  get("/login", Area::kPortal, &Web::LoginPage);
  post("/login", Area::kPortal, &Web::LoginPost);
  get("/login/wait", Area::kPortal, &Web::LoginWait);
  post("/login/poll", Area::kPortal, &Web::LoginPoll);
  post("/logout", Area::kPortal, &Web::Logout);
  get("/account", Area::kPortal, &Web::AccountPage);
  get("/contract", Area::kPortal, &Web::ContractPage);
  post("/contract/accept", Area::kPortal, &Web::ContractAccept);
  get("/cert/(issue|renew|revoke|revoke-all)", Area::kPortal, &Web::CertConfirm);
  post("/cert/(issue|renew|revoke|revoke-all)", Area::kPortal, &Web::CertAction);
  get("/sign", Area::kPortal, &Web::SignPage);
  post("/sign", Area::kPortal, &Web::SignUpload);
  get("/sign/wait", Area::kPortal, &Web::SignWait);
  post("/sign/poll", Area::kPortal, &Web::SignPoll);
  get("/sign/download", Area::kPortal, &Web::SignDownload);

  get("/app", Area::kApp, &Web::AppPage);
  post("/app/api/enroll", Area::kApp, &Web::AppEnroll);
  post("/app/api/challenge", Area::kApp, &Web::AppChallenge);
  post("/app/api/watch", Area::kApp, &Web::AppWatch);
  post("/app/api/approval-challenge", Area::kApp, &Web::AppApprovalChallenge);
  post("/app/api/decide", Area::kApp, &Web::AppDecide);
  post("/app/api/change-pin", Area::kApp, &Web::AppChangePin);
  post("/app/api/reset-pin", Area::kApp, &Web::AppResetPin);

  get("/office/login", Area::kOffice, &Web::OfficeLoginPage);
  post("/office/login", Area::kOffice, &Web::OfficeLoginPost);
  post("/office/logout", Area::kOffice, &Web::OfficeLogout);
  get("/office", Area::kOffice, &Web::OfficeHome);
  post("/office/proof", Area::kOffice, &Web::OfficeProof);
  post("/office/legal", Area::kOffice, &Web::OfficeLegal);
  post("/office/unblock", Area::kOffice, &Web::OfficeUnblock);
  post("/office/revoke", Area::kOffice, &Web::OfficeRevoke);
  post("/office/revoke-all", Area::kOffice, &Web::OfficeRevokeAll);
  post("/office/correct", Area::kOffice, &Web::OfficeCorrect);
  get("/office/audit", Area::kOffice, &Web::OfficeAudit);
  return r;
}

}  // namespace qsign::web

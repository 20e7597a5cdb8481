// The portal: registration, push login, the account and its certificate, the contract,
// issue / renew / revoke / revoke all, log out.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/secret.h"
#include "common/strings.h"
#include "services/web/web_internal.h"

namespace qsign::web {

namespace {

std::string StateKey(pb::AccountCertificateState state) {
  switch (state) {
    case pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE:
      return "cert.state.active";
    case pb::ACCOUNT_CERTIFICATE_STATE_REVOKED:
      return "cert.state.revoked";
    case pb::ACCOUNT_CERTIFICATE_STATE_EXPIRED:
      return "cert.state.expired";
    default:
      return "cert.state.none";
  }
}

}  // namespace

bool Web::Bearer(Call& c, std::string* bearer) {
  return Credential(c, &Session::bearer, "/login", bearer);
}

void Web::SessionEnded(Call& c) {
  {
    absl::MutexLock lock(&c.session->mu);
    c.session->bearer = SecretString();
    c.session->account_id.clear();
    c.session->username.clear();
  }
  Flash(c, "@err.session", true);
  Redirect(c, "/login");
}

void Web::Home(Call& c) {
  bool signed_in;
  {
    absl::MutexLock lock(&c.session->mu);
    signed_in = !c.session->bearer.empty();
  }
  Redirect(c, signed_in ? "/account" : "/login");
}

void Web::RegisterPage(Call& c) {
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  const std::string form = Form(
      f, "/register",
      Cat(Field(l, "username", "register.username", "email", "required"),
          Field(l, "given_name", "register.given_name", "text", "required"),
          Field(l, "surname", "register.surname", "text", "required"),
          Field(l, "national_id", "register.national_id", "text",
                "required inputmode=\"numeric\" pattern=\"[0-9]{13}\""),
          Field(l, "email", "register.email", "email"), Button(l, "register", "register.submit")));
  Html(c, T(l, "register.title"), Cat("<p>", Esc(T(l, "register.intro")), "</p>", form));
}

void Web::RegisterPost(Call& c) {
  pb::RegisterAccountRequest req;
  req.set_username(std::string(c.req.Param("username")));
  req.set_given_name(std::string(c.req.Param("given_name")));
  req.set_surname(std::string(c.req.Param("surname")));
  req.set_national_id(std::string(c.req.Param("national_id")));
  req.set_certificate_email(std::string(c.req.Param("email")));
  *req.mutable_client() = ClientOf(c.req, c.address);
  // One answer whether or not the username is registered (identity says nothing either way).
  auto answer = backend_->RegisterAccount({.address = c.address}, req);
  if (!answer.ok()) {
    Flash(c, ErrorText(c.lang, answer.status()), true);
    Redirect(c, "/register");
    return;
  }
  Html(c, T(c.lang, "register.done.title"),
       Cat("<p id=\"registered\">", Esc(T(c.lang, "register.done")), "</p>"));
}

// The page the e-mailed link opens (identity.registration_url): a button, so that a mail
// scanner fetching the link confirms nothing.
void Web::ConfirmRegistrationPage(Call& c) {
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  Html(c, T(l, "register.confirm.title"),
       Cat("<p>", Esc(T(l, "register.confirm.intro")), "</p>",
           Form(f, "/register/confirm",
                Cat(Hidden("token", c.req.Param("token")),
                    Button(l, "confirm", "register.confirm.submit")))));
}

void Web::ConfirmRegistrationPost(Call& c) {
  pb::ConfirmRegistrationRequest req;
  req.set_token(std::string(c.req.Param("token")));
  auto account = backend_->ConfirmRegistration({.address = c.address}, req);
  if (!account.ok()) {
    Flash(c, ErrorText(c.lang, account.status()), true);
    Redirect(c, "/register");
    return;
  }
  Html(c, T(c.lang, "register.confirmed.title"),
       Cat("<p id=\"confirmed\">", Esc(T(c.lang, "register.confirmed")), "</p>",
           "<p><a href=\"/login\">", Esc(T(c.lang, "nav.login")), "</a></p>"));
}

void Web::LoginPage(Call& c) {
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  Html(c, T(l, "login.title"),
       Cat("<p>", Esc(T(l, "login.intro")), "</p>",
           Form(f, "/login",
                Cat(Field(l, "username", "login.username", "email",
                          "required autocomplete=\"username\""),
                    Button(l, "login", "login.submit")))));
}

void Web::LoginPost(Call& c) {
  pb::StartLoginRequest req;
  req.set_username(std::string(c.req.Param("username")));
  // The app shows the request in the language of the page that asked.
  req.set_language(std::string(LangTag(c.lang)));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto started = backend_->StartLogin({.address = c.address}, req);
  if (!started.ok()) {
    Flash(c, ErrorText(c.lang, started.status()), true);
    Redirect(c, "/login");
    return;
  }
  {
    absl::MutexLock lock(&c.session->mu);
    c.session->login_id = started->login_id();
    c.session->verification_code = started->verification_code();
    c.session->login_username = req.username();
  }
  Redirect(c, "/login/wait");
}

void Web::LoginWait(Call& c) {
  std::string code;
  {
    absl::MutexLock lock(&c.session->mu);
    if (c.session->login_id.empty()) {
      Redirect(c, "/login");
      return;
    }
    code = c.session->verification_code;
  }
  const Lang l = c.lang;
  Html(c, T(l, "login.wait.title"),
       Cat("<p>", Esc(T(l, "login.code")), "</p><p class=\"code\" id=\"code\">", Esc(code),
           "</p><p id=\"login-status\" data-poll=\"/login/poll\" "
           "data-next=\"/account\">",
           Esc(T(l, "login.waiting")), "</p><p><a href=\"/login\">", Esc(T(l, "login.again")),
           "</a></p>"),
       "portal.js", {"login.denied", "login.expired", "err.unavailable", "login.done"});
}

void Web::LoginPoll(Call& c) {
  std::string login_id, username;
  {
    absl::MutexLock lock(&c.session->mu);
    login_id = c.session->login_id;
    username = c.session->login_username;
  }
  if (login_id.empty()) {
    Json(c, 200, R"({"state":"expired"})");
    return;
  }
  pb::AwaitLoginRequest req;
  req.set_login_id(login_id);
  req.mutable_max_wait()->set_seconds(absl::ToInt64Seconds(options_.poll_wait));
  auto resp = backend_->AwaitLogin({.address = c.address}, req);
  if (!resp.ok()) {
    // A login handed out or forgotten by identity is over; anything else may pass.
    Json(c, 200,
         resp.status().code() == absl::StatusCode::kFailedPrecondition ||
                 resp.status().code() == absl::StatusCode::kNotFound
             ? R"({"state":"expired"})"
             : R"({"state":"error"})");
    return;
  }
  switch (resp->state()) {
    case pb::LOGIN_STATE_APPROVED: {
      {
        absl::MutexLock lock(&c.session->mu);
        c.session->bearer = SecretString(Cat("Bearer ", resp->session_token()));
        c.session->account_id = resp->account_id();
        c.session->username = username;
        c.session->login_id.clear();
        c.session->verification_code.clear();
      }
      // A new session id once signed in: a planted cookie gains nothing.
      sessions_.Rotate(c.session);
      SetSessionCookie(c.res, *c.session);
      Json(c, 200, R"({"state":"approved"})");
      return;
    }
    case pb::LOGIN_STATE_PENDING:
      Json(c, 200, R"({"state":"pending"})");
      return;
    case pb::LOGIN_STATE_DENIED:
    case pb::LOGIN_STATE_EXPIRED:
    default: {
      absl::MutexLock lock(&c.session->mu);
      c.session->login_id.clear();
      Json(c, 200,
           resp->state() == pb::LOGIN_STATE_DENIED ? R"({"state":"denied"})"
                                                   : R"({"state":"expired"})");
      return;
    }
  }
}

void Web::Logout(Call& c) {
  std::string bearer;
  {
    absl::MutexLock lock(&c.session->mu);
    bearer = std::string(c.session->bearer.value());
  }
  if (!bearer.empty()) (void)backend_->Logout({bearer, c.address});  // Ends it at every service.
  sessions_.Remove(c.session);
  ClearSessionCookie(c.res);
  Redirect(c, "/login");
}

void Web::AccountPage(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  auto account = backend_->GetAccount({bearer, c.address}, pb::GetAccountRequest());
  if (!account.ok() && account.status().code() == absl::StatusCode::kUnauthenticated) {
    SessionEnded(c);
    return;
  }
  auto status = backend_->GetStatus({bearer, c.address}, pb::GetStatusRequest());
  if (!status.ok() && status.status().code() == absl::StatusCode::kUnauthenticated) {
    SessionEnded(c);
    return;
  }
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  std::string body;
  if (account.ok()) {
    Append(
        &body, "<section class=\"card\"><h2>", Esc(T(l, "account.person")), "</h2><dl><dt>",
        Esc(T(l, "account.name")), "</dt><dd id=\"name\">", Esc(account->given_name()), " ",
        Esc(account->surname()), "</dd><dt>", Esc(T(l, "register.username")), "</dt><dd>",
        Esc(account->username()), "</dd><dt>", Esc(T(l, "account.assurance")),
        "</dt><dd id=\"assurance\">",
        Esc(T(l, account->assurance_level() == pb::ASSURANCE_LEVEL_HIGH ? "account.proofed"
                                                                        : "account.not_proofed")),
        "</dd></dl></section>");
  } else {
    Append(&body, "<p class=\"flash error\">", Esc(ErrorText(l, account.status())), "</p>");
  }
  if (!status.ok()) {
    Append(&body, "<p class=\"flash error\">", Esc(ErrorText(l, status.status())), "</p>");
    Html(c, T(l, "account.title"), body);
    return;
  }
  const bool active = status->state() == pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE;
  Append(&body, "<section class=\"card\"><h2>", Esc(T(l, "cert.title")), "</h2><dl><dt>",
         Esc(T(l, "cert.state")), "</dt><dd id=\"cert-state\" class=\"", active ? "ok" : "muted",
         "\">", Esc(T(l, StateKey(status->state()))), "</dd>");
  if (status->has_certificate()) {
    const pb::Certificate& cert = status->certificate();
    Append(&body, "<dt>", Esc(T(l, "cert.subject")), "</dt><dd>", Esc(cert.subject_dn()),
           "</dd><dt>", Esc(T(l, "cert.serial")), "</dt><dd class=\"mono\">",
           Esc(cert.serial_hex()), "</dd><dt>", Esc(T(l, "cert.valid")),
           "</dt><dd id=\"cert-valid\">", Esc(DateOf(l, cert.not_before())), " – ",
           Esc(DateOf(l, cert.not_after())), "</dd>");
  }
  if (active) {
    Append(&body, "<dt>", Esc(T(l, "cert.renew_opens")), "</dt><dd id=\"renew-opens\">",
           Esc(DateOf(l, status->renew_opens_at())), "</dd>");
  }
  Append(&body, "<dt>", Esc(T(l, "contract.accepted")), "</dt><dd id=\"contract\">",
         Esc(status->accepted_contract_version().empty() ? T(l, "contract.none")
                                                         : status->accepted_contract_version()),
         "</dd></dl><div class=\"actions\">");
  const bool contract_ok =
      !status->accepted_contract_version().empty() &&
      status->accepted_contract_version() == status->current_contract_version();
  if (!contract_ok) {
    Append(&body, "<a class=\"button\" id=\"go-contract\" href=\"/contract\">",
           Esc(T(l, "contract.read")), "</a>");
  }
  if (!active) {
    Append(&body, "<a class=\"button\" id=\"go-issue\" href=\"/cert/issue\">",
           Esc(T(l, "cert.issue")), "</a>");
  } else {
    if (status->renewal_open()) {
      Append(&body, "<a class=\"button\" id=\"go-renew\" href=\"/cert/renew\">",
             Esc(T(l, "cert.renew")), "</a>");
    } else {
      Append(&body, "<span class=\"button disabled\" id=\"go-renew\" title=\"",
             Esc(T(l, "cert.renew_closed")), "\">", Esc(T(l, "cert.renew")), "</span>");
    }
    Append(&body, "<a class=\"button\" id=\"go-sign\" href=\"/sign\">", Esc(T(l, "nav.sign")),
           "</a><a class=\"button danger\" id=\"go-revoke\" "
           "href=\"/cert/revoke\">",
           Esc(T(l, "cert.revoke")), "</a>");
  }
  Append(&body, "<a class=\"button danger\" id=\"go-revoke-all\" href=\"/cert/revoke-all\">",
         Esc(T(l, "cert.revoke-all")), "</a></div></section>");
  Html(c, T(l, "account.title"), body);
}

void Web::ContractPage(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  auto contract = backend_->GetContract({bearer, c.address}, pb::GetContractRequest());
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  if (!contract.ok()) {
    Html(c, T(l, "contract.title"),
         Cat("<p class=\"flash error\">", Esc(ErrorText(l, contract.status())), "</p>"));
    return;
  }
  Html(c, T(l, "contract.title"),
       Cat("<p>", Esc(T(l, "contract.version")), " ", Esc(contract->version()),
           "</p><pre class=\"contract\" id=\"contract-text\">", Esc(contract->text()), "</pre>",
           Form(f, "/contract/accept",
                Cat("<input type=\"hidden\" name=\"version\" value=\"", Esc(contract->version()),
                    "\">", Button(l, "accept-contract", "contract.accept")))));
}

void Web::ContractAccept(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  pb::GetContractRequest get;
  get.set_version(std::string(c.req.Param("version")));
  auto contract = backend_->GetContract({bearer, c.address}, get);
  if (!contract.ok()) {
    Flash(c, ErrorText(c.lang, contract.status()), true);
    Redirect(c, "/account");
    return;
  }
  pb::AcceptContractRequest req;
  req.set_version(contract->version());
  req.set_text_sha256(Sha256(contract->text()));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto accepted = backend_->AcceptContract({bearer, c.address}, req);
  if (!accepted.ok() && accepted.status().code() == absl::StatusCode::kUnauthenticated) {
    SessionEnded(c);
    return;
  }
  Done(c, accepted.status(), "contract.done", "/account");
}

void Web::CertConfirm(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  const std::string action(c.req.matches.size() > 1 ? c.req.matches[1] : "");
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  std::string fields;
  if (action == "revoke" || action == "revoke-all") {
    Append(&fields, "<label>", Esc(T(l, "cert.reason")),
           "<select name=\"reason\" id=\"reason\"><option value=\"cessation\">",
           Esc(T(l, "cert.reason.cessation")), "</option><option value=\"key-compromise\">",
           Esc(T(l, "cert.reason.compromise")), "</option></select></label>");
  }
  Html(c, T(l, Cat("cert.", action)),
       Cat("<p class=\"confirm\" id=\"confirm-text\">", Esc(T(l, Cat("cert.", action, ".confirm"))),
           "</p>",
           Form(f, Cat("/cert/", action),
                Cat(fields,
                    Button(l, "confirm", Cat("cert.", action, ".button"),
                           action == "issue" || action == "renew" ? "" : "danger"),
                    " <a href=\"/account\" id=\"cancel\">", Esc(T(l, "action.cancel")), "</a>"))));
}

void Web::CertAction(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  const std::string action(c.req.matches.size() > 1 ? c.req.matches[1] : "");
  const pb::RevocationReason reason = c.req.Param("reason") == "key-compromise"
                                          ? pb::REVOCATION_REASON_KEY_COMPROMISE
                                          : pb::REVOCATION_REASON_CESSATION_OF_OPERATION;
  absl::Status result;
  if (action == "issue") {
    pb::IssueRequest req;
    req.set_client_request_id(SessionStore::RandomToken().substr(0, 32));
    *req.mutable_client() = ClientOf(c.req, c.address);
    result = backend_->Issue({bearer, c.address}, req).status();
  } else if (action == "revoke-all") {
    pb::RevokeAllRequest req;
    req.set_reason(reason);
    *req.mutable_client() = ClientOf(c.req, c.address);
    auto done = backend_->RevokeAll({bearer, c.address}, req);
    if (done.ok()) {
      // Every session ended with it, this one too.
      {
        absl::MutexLock lock(&c.session->mu);
        c.session->bearer = SecretString();
        c.session->username.clear();
        c.session->account_id.clear();
      }
      const Lang l = c.lang;
      Html(c, T(l, "cert.revoke-all.done.title"),
           Cat("<p id=\"revoked-all\">", Esc(T(l, "cert.revoke-all.done")), "</p><ul><li>",
               Esc(T(l, "cert.revoked_count")), " ", done->revoked_certificates_size(), "</li><li>",
               Esc(T(l, "cert.devices_count")), " ", done->devices_deactivated(), "</li></ul>"));
      return;
    }
    result = done.status();
  } else {
    auto status = backend_->GetStatus({bearer, c.address}, pb::GetStatusRequest());
    if (!status.ok()) {
      result = status.status();
    } else if (status->state() != pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE) {
      result = absl::FailedPreconditionError(T(c.lang, "cert.state.none"));
    } else if (action == "renew") {
      pb::RenewRequest req;
      req.set_client_request_id(SessionStore::RandomToken().substr(0, 32));
      req.set_certificate_id(status->certificate().certificate_id());
      *req.mutable_client() = ClientOf(c.req, c.address);
      result = backend_->Renew({bearer, c.address}, req).status();
    } else {
      pb::RevokeRequest req;
      req.set_certificate_id(status->certificate().certificate_id());
      req.set_reason(reason);
      *req.mutable_client() = ClientOf(c.req, c.address);
      result = backend_->Revoke({bearer, c.address}, req).status();
    }
  }
  if (result.code() == absl::StatusCode::kUnauthenticated) {
    SessionEnded(c);
    return;
  }
  Done(c, result, Cat("cert.", action, ".done"), "/account");
}
}  // namespace qsign::web

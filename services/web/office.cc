// The registration office's console. The officer signs in with the officer's own credential
// (an operator id and secret from the operators file, never a portal session); each act is one
// operator call to identity, lifecycle or consent, which check and audit it under that id.
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/secret.h"
#include "common/strings.h"
#include "services/web/web_internal.h"

namespace qsign::web {
namespace {

// A username that cannot exist: identity answers NOT_FOUND to a valid credential.
constexpr char kProbeUsername[] = "officer-sign-in@invalid.invalid";

// An audit record's time: to the second on screen (acts on one account come seconds apart), to
// the microsecond in the datetime attribute, which sorts as text.
std::string AuditTime(Lang l, const google::protobuf::Timestamp& t) {
  const absl::Time time = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return Cat(
      "<time datetime=\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone()),
      "\">",
      Esc(absl::FormatTime(l == Lang::kEn ? "%Y-%m-%d %H:%M:%S UTC" : "%d.%m.%Y. %H:%M:%S UTC",
                           time, absl::UTCTimeZone())),
      "</time>");
}

}  // namespace

bool Web::Officer(Call& c, std::string* auth) {
  return Credential(c, &Session::officer, "/office/login", auth);
}

void Web::OfficeLoginPage(Call& c) {
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  Html(c, T(l, "office.login.title"),
       Cat("<p>", Esc(T(l, "office.login.intro")), "</p>",
           Form(f, "/office/login",
                Cat(Field(l, "operator_id", "office.operator_id", "text",
                          "required autocomplete=\"username\""),
                    Field(l, "secret", "office.secret", "password",
                          "required autocomplete=\"current-password\""),
                    Button(l, "office-login", "office.login")))));
}

void Web::OfficeLoginPost(Call& c) {
  const std::string id(c.req.Param("operator_id"));
  SecretString auth(Cat("Operator ", id, ".", c.req.Param("secret")));
  pb::GetAccountRequest probe;
  probe.set_username(kProbeUsername);
  auto answer = backend_->GetAccount({auth.value(), c.address}, probe);
  const absl::StatusCode code = answer.status().code();
  if (id.empty() || code == absl::StatusCode::kUnauthenticated ||
      code == absl::StatusCode::kPermissionDenied) {
    Flash(c, "@office.login.refused", true);
    Redirect(c, "/office/login");
    return;
  }
  if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded) {
    Flash(c, ErrorText(c.lang, answer.status()), true);
    Redirect(c, "/office/login");
    return;
  }
  sessions_.Rotate(c.session);
  {
    absl::MutexLock lock(&c.session->mu);
    c.session->officer = std::move(auth);
    c.session->officer_id = id;
  }
  SetSessionCookie(c.res, *c.session);
  Redirect(c, "/office");
}

void Web::OfficeLogout(Call& c) {
  sessions_.Remove(c.session);
  ClearSessionCookie(c.res);
  Redirect(c, "/office/login");
}

namespace {

// A query parameter's value, percent-encoded.
std::string UrlEncode(std::string_view value) {
  std::string out;
  for (unsigned char ch : value) {
    if (absl::ascii_isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += Cat("%", absl::Hex(ch, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace

void Web::OfficeHome(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  const std::string q(c.req.Param("q"));
  std::string body =
      Cat("<form method=\"get\" action=\"/office\" class=\"search\">",
          Field(l, "q", "office.query", "text", Cat("required value=\"", Esc(q), "\"")),
          Button(l, "find", "office.find"), "</form>");
  if (q.empty()) {
    Html(c, T(l, "office.title"), body);
    return;
  }
  pb::GetAccountRequest get;
  if (absl::StrContains(q, "@")) {
    get.set_username(q);
  } else {
    get.set_account_id(q);
  }
  auto account = backend_->GetAccount({auth, c.address}, get);
  if (!account.ok()) {
    Append(&body, "<p class=\"flash error\" id=\"not-found\">",
           Esc(account.status().code() == absl::StatusCode::kNotFound
                   ? T(l, "office.not_found")
                   : ErrorText(l, account.status())),
           "</p>");
    Html(c, T(l, "office.title"), body);
    return;
  }
  const std::string& id = account->account_id();
  const std::string back = Hidden("q", q);
  Append(&body, "<section class=\"card\"><h2 id=\"account-name\">", Esc(account->given_name()), " ",
         Esc(account->surname()), "</h2><dl><dt>", Esc(T(l, "register.username")), "</dt><dd>",
         Esc(account->username()), "</dd><dt>", Esc(T(l, "register.national_id")),
         "</dt><dd class=\"mono\">", Esc(account->national_id()), "</dd><dt>",
         Esc(T(l, "office.account_id")), "</dt><dd class=\"mono\">", Esc(id), "</dd><dt>",
         Esc(T(l, "account.assurance")), "</dt><dd id=\"office-assurance\">",
         Esc(T(l, account->assurance_level() == pb::ASSURANCE_LEVEL_HIGH ? "account.proofed"
                                                                         : "account.not_proofed")),
         "</dd></dl></section>");

  pb::GetStatusRequest status_req;
  status_req.set_account_id(id);
  auto status = backend_->GetStatus({auth, c.address}, status_req);
  if (status.ok() && status->has_certificate()) {
    Append(
        &body, "<p>", Esc(T(l, "cert.state")), ": <span id=\"office-cert\">",
        Esc(T(l, status->state() == pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE ? "cert.state.active"
                                                                         : "cert.state.revoked")),
        "</span> <span class=\"mono\">", Esc(status->certificate().serial_hex()), "</span></p>");
  }

  Append(&body, "<p><a href=\"",
         Esc(Cat("/office/audit?account_id=", UrlEncode(id), "&q=", UrlEncode(q))),
         "\" id=\"go-audit\">", Esc(T(l, "office.audit")), "</a></p>");

  // Before proofing, a typo in what the person typed at registration can be corrected.
  if (!account->has_proofed_at()) {
    Append(&body, "<section class=\"card\"><h2>", Esc(T(l, "office.correct")), "</h2><p>",
           Esc(T(l, "office.correct.intro")), "</p>",
           Form(f, "/office/correct",
                Cat(Hidden("account_id", id), back,
                    Field(l, "given_name", "register.given_name", "text",
                          Cat("required value=\"", Esc(account->given_name()), "\"")),
                    Field(l, "surname", "register.surname", "text",
                          Cat("required value=\"", Esc(account->surname()), "\"")),
                    Field(l, "national_id", "register.national_id", "text",
                          Cat("required inputmode=\"numeric\" pattern=\"[0-9]{13}\" value=\"",
                              Esc(account->national_id()), "\"")),
                    Field(l, "correct_note", "office.note", "text"),
                    Button(l, "correct", "office.correct.submit"))),
           "</section>");
  }

  // Proofing: what the officer checked goes into the audit record.
  Append(&body, "<section class=\"card\"><h2>", Esc(T(l, "office.proof")), "</h2>",
         Form(f, "/office/proof",
              Cat(Hidden("account_id", id), back, "<label>", Esc(T(l, "office.doc_type")),
                  "<select name=\"document_type\" id=\"document_type\"><option value=\"id_card\">",
                  Esc(T(l, "office.doc.id_card")), "</option><option value=\"passport\">",
                  Esc(T(l, "office.doc.passport")), "</option></select></label>",
                  Field(l, "document_number", "office.doc_number", "text", "required"),
                  Field(l, "document_expiry", "office.doc_expiry", "date", "required"),
                  Field(l, "place", "office.place", "text", "required"),
                  Button(l, "proof", "office.proof.submit"))),
         "</section>");
  Append(&body, "<section class=\"card\"><h2>", Esc(T(l, "office.legal")), "</h2>",
         Form(f, "/office/legal",
              Cat(Hidden("account_id", id), back,
                  Field(l, "organization_name", "office.org_name", "text", "required"),
                  Field(l, "pib", "office.pib", "text", "required pattern=\"[0-9]{9}\""),
                  Field(l, "mb", "office.mb", "text", "required pattern=\"[0-9]{8}\""),
                  Field(l, "document_ref", "office.auth_doc", "text", "required"),
                  Button(l, "legal", "office.legal.submit"))),
         "</section>");
  Append(
      &body, "<section class=\"card\"><h2>", Esc(T(l, "office.unblock")), "</h2><p>",
      Esc(T(l, "office.unblock.intro")), "</p>",
      Form(f, "/office/unblock",
           Cat(Hidden("account_id", id), back, Field(l, "note", "office.note", "text", "required"),
               Button(l, "unblock", "office.unblock.submit"))),
      "</section>");
  std::string revoke_fields = Cat(Hidden("account_id", id), back);
  if (status.ok() && status->state() == pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE) {
    Append(&body, "<section class=\"card\"><h2>", Esc(T(l, "office.revoke")), "</h2>",
           Form(f, "/office/revoke",
                Cat(revoke_fields, Hidden("certificate_id", status->certificate().certificate_id()),
                    "<p>", Esc(T(l, "cert.revoke.confirm")), "</p>",
                    Button(l, "office-revoke", "cert.revoke.button", "danger"))),
           "</section>");
  }
  Append(&body, "<section class=\"card\"><h2>", Esc(T(l, "cert.revoke-all")), "</h2>",
         Form(f, "/office/revoke-all",
              Cat(revoke_fields, "<p>", Esc(T(l, "cert.revoke-all.confirm")), "</p>",
                  Button(l, "office-revoke-all", "cert.revoke-all.button", "danger"))),
         "</section>");
  Html(c, T(l, "office.title"), body);
}

namespace {

std::string BackTo(const http::Request& req) {
  return Cat("/office?q=", UrlEncode(req.Param("q").substr(0, 200)));
}

}  // namespace

void Web::OfficeProof(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  std::string officer;
  {
    absl::MutexLock lock(&c.session->mu);
    officer = c.session->officer_id;
  }
  pb::ProofIdentityRequest req;
  req.set_account_id(std::string(c.req.Param("account_id")));
  req.set_assurance_level(pb::ASSURANCE_LEVEL_HIGH);
  pb::IdentityEvidence* evidence = req.mutable_evidence();
  evidence->set_document_type(c.req.Param("document_type") == "passport"
                                  ? pb::IDENTITY_DOCUMENT_TYPE_PASSPORT
                                  : pb::IDENTITY_DOCUMENT_TYPE_NATIONAL_ID_CARD);
  evidence->set_document_number(std::string(c.req.Param("document_number")));
  evidence->set_note(Cat("expires ", c.req.Param("document_expiry").substr(0, 10), "; place ",
                         c.req.Param("place").substr(0, 100), "; officer ", officer,
                         "; web console"));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->ProofIdentity({auth, c.address}, req);
  if (!resp.ok()) {
    Flash(c, ErrorText(c.lang, resp.status()), true);
    Redirect(c, BackTo(c.req));
    return;
  }
  // The code is shown once, here, to be handed to the person; it is not kept.
  const Lang l = c.lang;
  Html(c, T(l, "office.proofed.title"),
       Cat("<p>", Esc(T(l, "office.proofed")),
           "</p><p class=\"code\" "
           "id=\"activation-code\">",
           Esc(resp->activation_code()), "</p><p>", Esc(T(l, "office.code_expires")), " ",
           Esc(DateOf(l, resp->activation_code_expires_at())), "</p><p><a href=\"",
           Esc(BackTo(c.req)), "\" id=\"back-to-account\">", Esc(T(l, "office.back")), "</a></p>"));
}

void Web::OfficeCorrect(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  pb::CorrectIdentityRequest req;
  req.set_account_id(std::string(c.req.Param("account_id")));
  req.set_given_name(std::string(c.req.Param("given_name")));
  req.set_surname(std::string(c.req.Param("surname")));
  req.set_national_id(std::string(c.req.Param("national_id")));
  req.set_note(Cat(c.req.Param("correct_note").substr(0, 200), "; web console"));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->CorrectIdentity({auth, c.address}, req);
  Done(c, resp.status(), "office.correct.done", BackTo(c.req));
}

// The account's audit trail as identity, lifecycle and consent keep it, merged newest first, a
// page at a time.
void Web::OfficeAudit(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  const Lang l = c.lang;
  const std::string id(c.req.Param("account_id"));
  auto page = MergedAuditTrail(id, c.req.Param("page"), options_.audit_page_size,
                               [&](AuditSource source, const pb::ListAccountAuditRequest& req) {
                                 return backend_->ListAccountAudit(source, {auth, c.address}, req);
                               });
  std::string body =
      Cat("<p class=\"mono\">", Esc(T(l, "office.account_id")), ": ", Esc(id), "</p><p><a href=\"",
          Esc(BackTo(c.req)), "\" id=\"back-to-account\">", Esc(T(l, "office.back")), "</a></p>");
  if (!page.ok()) {
    Append(&body, "<p class=\"flash error\" id=\"audit-error\">",
           Esc(page.status().code() == absl::StatusCode::kNotFound ? T(l, "office.not_found")
                                                                   : ErrorText(l, page.status())),
           "</p>");
    Html(c, T(l, "office.audit"), body);
    return;
  }
  for (const auto& [source, status] : page->failures) {
    Append(&body, "<p class=\"flash error\" data-source=\"", AuditSourceName(source), "\">",
           Esc(T(l, "audit.unavailable")), " (", AuditSourceName(source),
           "): ", Esc(ErrorText(l, status)), "</p>");
  }
  Append(&body, "<table id=\"audit\"><thead><tr><th>", Esc(T(l, "audit.at")), "</th><th>",
         Esc(T(l, "audit.action")), "</th><th>", Esc(T(l, "audit.actor")), "</th><th>",
         Esc(T(l, "audit.outcome")), "</th><th>", Esc(T(l, "audit.address")), "</th><th>",
         Esc(T(l, "audit.details")), "</th><th>", Esc(T(l, "audit.source")),
         "</th></tr></thead><tbody>");
  for (const pb::AuditRecord& r : page->records) {
    // A known event by its name in the page's language; any other by its code.
    const std::string key = Cat("audit.", r.action());
    std::string what = T(l, key);
    if (what == key) what = r.action();
    Append(&body, "<tr class=\"audit-record\" data-action=\"", Esc(r.action()), "\" data-source=\"",
           Esc(r.source()), "\" data-seq=\"", r.seq(), "\"><td>", AuditTime(l, r.at()), "</td><td>",
           Esc(what), "</td><td class=\"mono\">", Esc(r.actor()), "</td><td>", Esc(r.outcome()),
           "</td><td class=\"mono\">", Esc(r.client_address()), "</td><td>", Esc(r.details()),
           "</td><td class=\"mono\">", Esc(r.source()), " #", r.seq(), "</td></tr>");
  }
  Append(&body, "</tbody></table>");
  if (page->records.empty()) Append(&body, "<p>", Esc(T(l, "audit.none")), "</p>");
  if (!page->next_page.empty()) {
    Append(&body, "<p><a id=\"audit-older\" href=\"",
           Esc(Cat("/office/audit?account_id=", UrlEncode(id),
                   "&q=", UrlEncode(c.req.Param("q").substr(0, 200)),
                   "&page=", UrlEncode(page->next_page))),
           "\">", Esc(T(l, "audit.older")), "</a></p>");
  }
  Html(c, T(l, "office.audit"), body);
}

void Web::OfficeLegal(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  pb::ApproveLegalPersonRequest req;
  req.set_account_id(std::string(c.req.Param("account_id")));
  req.mutable_legal_person()->set_organization_name(std::string(c.req.Param("organization_name")));
  req.mutable_legal_person()->set_pib(std::string(c.req.Param("pib")));
  req.set_note(Cat("MB ", c.req.Param("mb").substr(0, 8), "; authorization ",
                   c.req.Param("document_ref").substr(0, 200), "; web console"));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->ApproveLegalPerson({auth, c.address}, req);
  Done(c, resp.status(), "office.legal.done", BackTo(c.req));
}

void Web::OfficeUnblock(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  pb::UnblockPinRequest req;
  req.set_account_id(std::string(c.req.Param("account_id")));
  req.set_note(std::string(c.req.Param("note").substr(0, 200)));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->UnblockPin({auth, c.address}, req);
  Done(c, resp.status(), "office.unblock.done", BackTo(c.req));
}

void Web::OfficeRevoke(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  pb::RevokeRequest req;
  req.set_certificate_id(std::string(c.req.Param("certificate_id")));
  req.set_reason(pb::REVOCATION_REASON_CESSATION_OF_OPERATION);
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->Revoke({auth, c.address}, req);
  Done(c, resp.status(), "cert.revoke.done", BackTo(c.req));
}

void Web::OfficeRevokeAll(Call& c) {
  std::string auth;
  if (!Officer(c, &auth)) return;
  pb::RevokeAllRequest req;
  req.set_account_id(std::string(c.req.Param("account_id")));
  req.set_reason(pb::REVOCATION_REASON_CESSATION_OF_OPERATION);
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->RevokeAll({auth, c.address}, req);
  Done(c, resp.status(), "cert.revoke-all.done", BackTo(c.req));
}

}  // namespace qsign::web

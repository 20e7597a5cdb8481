// The web front ends of qsign on one HTTP listener (docs/web.md):
// - the portal (/): register, push login with the verification code, the account and its
//   certificate, the contract, issue / renew / revoke / revoke all, sign a file, log out;
// - the consent app in the browser (/app): enrolment, the device key a non-extractable WebCrypto
//   P-256 key kept in IndexedDB, pending requests, approve or deny with the PIN;
// - the registration office's console (/office): officer sign-in with the officer's own
//   credential, find an account, proof an identity, approve a legal person, unblock a PIN,
//   revoke.
// Pages are rendered here (no client framework); a little vanilla JavaScript does the live
// parts. Every change is a POST with the session's CSRF token; cookies are HttpOnly, Secure,
// SameSite=Lax; the Content-Security-Policy allows nothing but this origin. Every action is one
// call to a service with the user's own credential (backend.h): the web holds no power itself.
#ifndef QSIGN_SERVICES_WEB_WEB_H_
#define QSIGN_SERVICES_WEB_WEB_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/client_address.h"
#include "common/clock.h"
#include "common/http/server.h"
#include "common/secret.h"
#include "services/web/backend.h"
#include "services/web/html.h"
#include "services/web/i18n.h"
#include "services/web/sessions.h"

namespace qsign::web {

struct WebOptions {
  absl::Duration session_idle = absl::Minutes(30);
  size_t max_sessions = 10000;
  // Records per page of the console's audit trail.
  int audit_page_size = 50;
  size_t max_upload_bytes = 20 << 20;
  // The RFC 3161 timestamp authority over HTTP for B-T and B-LT; empty: the portal signs at B-B.
  std::string tsa_url;
  // The listener is HTTPS (adds Strict-Transport-Security).
  bool https = false;
  // How long one poll of a waiting page (login, signing, the app's stream) may wait.
  absl::Duration poll_wait = absl::Seconds(20);
  // The database the replicas share the browser sessions through (web/sessions.h); nullptr:
  // sessions in this process (one replica). Not owned.
  db::Pool* session_db = nullptr;
  // Whose X-Forwarded-For (or other header) names the browser (web.client_address); default:
  // nobody's, the socket's peer is the browser.
  ClientAddressResolver client_address;
};

class Web {
 public:
  // `backend` and `clock` are not owned and outlive the Web.
  Web(Backend* backend, const Clock* clock, WebOptions options);

  std::vector<http::Route> Routes();

  // Exposed for tests: the headers every answer carries.
  static void SecurityHeaders(http::Response& res, bool https);

 private:
  struct Call;
  using Body = void (Web::*)(Call&);

  // Headers every page and action answers with; the language and the session of the request.
  void Begin(Call& c);
  http::Handler Page(Area area, Body body);
  http::Handler Action(Area area, Body body);

  // Answers.
  void Html(Call& c, std::string_view title, std::string_view body, std::string script = "",
            std::vector<std::string_view> js_texts = {});
  void Redirect(Call& c, std::string_view location);
  void Json(Call& c, int status, std::string body);
  void Flash(Call& c, std::string text, bool error = false);
  // The session's credential in `field` (the portal's bearer, the officer's), or a redirect to
  // `sign_in` (false).
  bool Credential(Call& c, SecretString Session::*field, std::string_view sign_in,
                  std::string* credential);
  // After an action: its message (the `done_key` text, or the refusal) on the `next` page.
  void Done(Call& c, const absl::Status& status, std::string_view done_key, std::string_view next);
  // A refusal or failure of a service, as the user should read it.
  std::string ErrorText(Lang lang, const absl::Status& status) const;
  Frame FrameOf(Call& c);

  // Portal.
  void Home(Call& c);
  void RegisterPage(Call& c);
  void RegisterPost(Call& c);
  void ConfirmRegistrationPage(Call& c);
  void ConfirmRegistrationPost(Call& c);
  void LoginPage(Call& c);
  void LoginPost(Call& c);
  void LoginWait(Call& c);
  void LoginPoll(Call& c);
  void Logout(Call& c);
  void AccountPage(Call& c);
  void ContractPage(Call& c);
  void ContractAccept(Call& c);
  void CertConfirm(Call& c);
  void CertAction(Call& c);
  // sign.cc
  void SignPage(Call& c);
  void SignUpload(Call& c);
  void SignWait(Call& c);
  void SignPoll(Call& c);
  void SignDownload(Call& c);
  // Signed-in portal pages: the bearer, or a redirect to the login page (false).
  bool Bearer(Call& c, std::string* bearer);
  // A service answered UNAUTHENTICATED: the session ended.
  void SessionEnded(Call& c);

  // Consent app.
  void AppPage(Call& c);
  void AppEnroll(Call& c);
  void AppChallenge(Call& c);
  void AppWatch(Call& c);
  void AppApprovalChallenge(Call& c);
  void AppDecide(Call& c);
  void AppChangePin(Call& c);
  void AppResetPin(Call& c);

  // Registration office.
  void OfficeLoginPage(Call& c);
  void OfficeLoginPost(Call& c);
  void OfficeLogout(Call& c);
  void OfficeHome(Call& c);
  void OfficeProof(Call& c);
  void OfficeLegal(Call& c);
  void OfficeUnblock(Call& c);
  void OfficeRevoke(Call& c);
  void OfficeRevokeAll(Call& c);
  void OfficeCorrect(Call& c);
  void OfficeAudit(Call& c);
  bool Officer(Call& c, std::string* auth);

  void LangSwitch(Call& c);
  void Static(Call& c);

  Backend* const backend_;
  const Clock* const clock_;
  const WebOptions options_;
  SessionStore sessions_;
};

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_WEB_H_

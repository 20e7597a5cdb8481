// Shared by web.cc, portal.cc, app.cc and office.cc only: one request being answered, and the
// small builders of their pages.
#ifndef QSIGN_SERVICES_WEB_WEB_INTERNAL_H_
#define QSIGN_SERVICES_WEB_WEB_INTERNAL_H_

#include <memory>
#include <string>
#include <string_view>

#include "common/http/server.h"
#include "common/ossl.h"
#include "google/protobuf/timestamp.pb.h"
#include "qsign/v1/common.pb.h"
#include "services/web/html.h"
#include "services/web/i18n.h"
#include "services/web/sessions.h"
#include "services/web/web.h"

namespace qsign::web {

struct Web::Call {
  const http::Request& req;
  http::Response& res;
  Area area;
  Lang lang = Lang::kSrCyrl;
  std::shared_ptr<Session> session;
  std::string csrf;  // The session's token when the request began.
  // The browser's address: the socket's peer, or what a trusted proxy in front of the web wrote
  // (web.client_address). Sent to the services with every call (Caller.address).
  std::string address;
  // The session's one-shot message, taken by the first FrameOf of this request.
  bool flash_taken = false;
  std::string flash;
  bool flash_error = false;
};

// Sets the session cookie to the session's current id (after Create or Rotate). Locks it.
void SetSessionCookie(http::Response& res, Session& session);
// Deletes the session cookie.
void ClearSessionCookie(http::Response& res);

using ::qsign::Sha256;  // common/ossl.h
// A form field of a urlencoded or a multipart/form-data body.
std::string_view FormField(const http::Request& req, std::string_view name);
// A time as the page shows it in `lang`.
std::string DateOf(Lang lang, const google::protobuf::Timestamp& t);
// <label>text<input name=...></label>; the input's id is its name.
std::string Field(Lang lang, std::string_view name, std::string_view key, std::string_view type,
                  std::string_view extra = "");
std::string Button(Lang lang, std::string_view id, std::string_view key, std::string_view cls = "");
// The end user's address (Call.address) and browser, for the services' audit records.
qsign::v1::ClientContext ClientOf(const http::Request& req, std::string_view address);

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_WEB_INTERNAL_H_

// HTML of the web front ends: escaping and the page frame (language switch, CSRF token, the
// area's navigation). Pages carry no inline script or style, so the Content-Security-Policy can
// forbid both; scripts read what they need from data-* attributes and a JSON block.
#ifndef QSIGN_SERVICES_WEB_HTML_H_
#define QSIGN_SERVICES_WEB_HTML_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "services/web/i18n.h"

namespace qsign::web {

// absl::StrCat / StrAppend that also take std::string_view (this Abseil's string_view is its own).
inline absl::AlphaNum Piece(std::string_view s) { return absl::AlphaNum(Av(s)); }
template <typename T>
const T& Piece(const T& value) {
  return value;
}
template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(Piece(args)...);
}
template <typename... Args>
void Append(std::string* out, const Args&... args) {
  absl::StrAppend(out, Piece(args)...);
}

// Text for an HTML element or a quoted attribute value.
std::string Esc(std::string_view text);

// A JSON string literal (with quotes), safe inside <script type="application/json">.
std::string JsonString(std::string_view text);

enum class Area { kPortal, kApp, kOffice };

struct Frame {
  Lang lang = Lang::kSrCyrl;
  Area area = Area::kPortal;
  std::string path;  // This page, for the language switch to come back to.
  std::string csrf;
  bool signed_in = false;  // Shows the area's sign-out button.
  std::string who;         // Shown next to it (username, officer id).
  std::string flash;       // Already translated.
  bool flash_error = false;
  std::string script;                      // "portal.js", "app.js"; empty: none.
  std::vector<std::string_view> js_texts;  // Message keys the script needs, in its language.
};

// The whole page: <!doctype html> ... with `body` inside <main>.
std::string Page(const Frame& frame, std::string_view title, std::string_view body);

// <input type="hidden"> with the value escaped.
std::string Hidden(std::string_view name, std::string_view value);

// A POST form with the CSRF token; `inner` holds the fields and buttons.
std::string Form(const Frame& frame, std::string_view action, std::string_view inner,
                 std::string_view extra_attributes = "");

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_HTML_H_

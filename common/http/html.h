// Text for HTML pages served over common/http (the web front ends, the gateway's sign-in page).
#ifndef QSIGN_COMMON_HTTP_HTML_H_
#define QSIGN_COMMON_HTTP_HTML_H_

#include <string>
#include <string_view>

namespace qsign::http {

// `text` safe in HTML text and in a double- or single-quoted attribute value (& < > " ').
std::string HtmlEscape(std::string_view text);

}  // namespace qsign::http

#endif  // QSIGN_COMMON_HTTP_HTML_H_

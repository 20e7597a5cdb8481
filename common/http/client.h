// A small blocking HTTP client (libcurl) for what qsign fetches from public PKI endpoints: RFC
// 3161 timestamps (application/timestamp-query) and OCSP responses (application/ocsp-request)
// for CAdES/PAdES B-T and B-LT. Plain HTTP and HTTPS; no cookies, no redirects followed.
#ifndef QSIGN_COMMON_HTTP_CLIENT_H_
#define QSIGN_COMMON_HTTP_CLIENT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::http {

// POSTs `body` with `content_type` to `url`; the response body of a 200 answer. UNAVAILABLE
// when the server cannot be reached or times out, FAILED_PRECONDITION for another status;
// answers over `max_response_bytes` are cut off with RESOURCE_EXHAUSTED.
absl::StatusOr<std::string> Post(const std::string& url, std::string_view content_type,
                                 std::string_view body, absl::Duration timeout = absl::Seconds(15),
                                 size_t max_response_bytes = 1 << 20);

// GETs `url` (a CRL, a CA certificate); as Post otherwise.
absl::StatusOr<std::string> Get(const std::string& url, absl::Duration timeout = absl::Seconds(15),
                                size_t max_response_bytes = 16 << 20);

}  // namespace qsign::http

#endif  // QSIGN_COMMON_HTTP_CLIENT_H_

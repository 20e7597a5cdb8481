// The TSA's public HTTP listener (RFC 3161 3.4) over common/http: `POST /tsa` with
// Content-Type application/timestamp-query answers 200 application/timestamp-reply, granted or
// rejected; a body over 16 KiB gets 413 with a rejection reply; nothing else is served.
#ifndef QSIGN_SERVICES_TSA_TSA_HTTP_H_
#define QSIGN_SERVICES_TSA_TSA_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/server.h"
#include "services/tsa/tsa.h"

namespace qsign::tsa {

struct TsaHttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int threads = 16;
  http::ConnectionLimits limits;
};

// Serves `authority` (not owned, outlives the server) until the server is destroyed.
absl::StatusOr<std::unique_ptr<http::Server>> StartTsaHttp(const TsaHttpOptions& options,
                                                           TimestampAuthority* authority);

}  // namespace qsign::tsa

#endif  // QSIGN_SERVICES_TSA_TSA_HTTP_H_

// The gateway's errors: the one mapping from a status to what a CSC client sees (ToCscError),
// statuses that name the CSC error code (CscStatus), errors about request parameters in the
// CSC's words, and the turning of a service's answer into the gateway's own status (by its code
// and typed refusal, common/refusal.h; never by its message text). docs/csc.md has the table.
#ifndef QSIGN_SERVICES_GATEWAY_ERRORS_H_
#define QSIGN_SERVICES_GATEWAY_ERRORS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace qsign::gateway {

// What a client sees of an error: HTTP status, CSC/OAuth error code, description.
struct CscError {
  int http_status = 500;
  std::string error;
  std::string description;
};

// The one mapping from a status to the error a client sees (docs/csc.md has the table):
// INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, OUT_OF_RANGE -> 400
// invalid_request; UNAUTHENTICATED -> 401 invalid_token; PERMISSION_DENIED -> 403 access_denied;
// RESOURCE_EXHAUSTED -> 429; UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED -> 503
// temporarily_unavailable; UNIMPLEMENTED -> 501; anything else -> 500 server_error with a generic
// description (the detail is logged). A status made by CscStatus overrides the error code and,
// when given, the HTTP status.
CscError ToCscError(const absl::Status& status);

// A status carrying the CSC/OAuth error code (expired_token, invalid_client,
// invalid_authentication_data, ...) where the canonical code is too coarse, and optionally the
// HTTP status (413, 404, 405).
absl::Status CscStatus(absl::StatusCode code, std::string_view error, std::string_view description,
                       int http_status = 0);

// INVALID_ARGUMENT "Invalid parameter <name>[: <why>]" (the CSC's wording).
absl::Status InvalidParameter(std::string_view name, std::string_view why = "");

// INVALID_ARGUMENT "Missing (or invalid type) <type> parameter <name>".
absl::Status MissingParameter(std::string_view type, std::string_view name);

// A service's answer, as the gateway's own status: a refusal of the gateway's credential is the
// gateway's fault (500, logged), not the relying party's; outages are 503; request errors keep
// their code, a refused request field (Refusal.field) named as the CSC names it.
absl::Status FromService(std::string_view service, const absl::Status& status);

// The signer's answer to signHash: a SAD that does not cover the request (Refusal SAD_*) is the
// relying party's wrong request (400), with "Hash is not authorized by the SAD" and "SAD expired"
// for other hashes and expiry; anything else as FromService("signer", status).
absl::Status FromSignHash(const absl::Status& status);

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_ERRORS_H_

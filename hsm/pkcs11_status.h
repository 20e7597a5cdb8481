// The one place a PKCS#11 return value becomes an absl::Status. Internal to hsm/.
#ifndef QSIGN_HSM_PKCS11_STATUS_H_
#define QSIGN_HSM_PKCS11_STATUS_H_

#include <p11-kit/pkcs11.h>

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace qsign::hsm {

// "CKR_PIN_INCORRECT" for a known value, "CKR_VENDOR_DEFINED+0x12" for vendor codes,
// "CKR_UNKNOWN" otherwise.
std::string CkrName(CK_RV rv);

// OK for CKR_OK; otherwise a status whose message is e.g.
// "C_Sign failed: CKR_KEY_HANDLE_INVALID (0x60)" and whose canonical code is:
//   wrong / missing / locked PIN, not logged in  -> UNAUTHENTICATED / PERMISSION_DENIED
//   device, token or session gone                -> UNAVAILABLE
//   host or token memory, session count           -> RESOURCE_EXHAUSTED
//   bad arguments, templates, mechanisms, data   -> INVALID_ARGUMENT
//   key or object handle invalid                 -> NOT_FOUND
//   wrong library / session / operation state    -> FAILED_PRECONDITION
//   function not supported                       -> UNIMPLEMENTED
//   anything else                                -> INTERNAL
// The CK_RV is attached as a payload, so callers can still branch on it (CkrFromStatus).
absl::Status CkrToStatus(std::string_view function, CK_RV rv);

// The CK_RV a status was made from by CkrToStatus (also after AnnotateStatus), if any.
std::optional<CK_RV> CkrFromStatus(const absl::Status& status);

// The same status (code and payloads) with "<context>: " in front of its message.
absl::Status AnnotateStatus(const absl::Status& status, std::string_view context);

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_PKCS11_STATUS_H_

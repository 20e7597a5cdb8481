#include "hsm/pkcs11_status.h"

#include <charconv>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "common/strings.h"

namespace qsign::hsm {
namespace {

constexpr std::string_view kCkrPayloadUrl = "type.qsign.dev/qsign.hsm.CK_RV";

struct CkrEntry {
  CK_RV rv;
  std::string_view name;
};

#define QSIGN_CKR(name) \
  { name, #name }
constexpr CkrEntry kCkrNames[] = {
    QSIGN_CKR(CKR_OK),
    QSIGN_CKR(CKR_CANCEL),
    QSIGN_CKR(CKR_HOST_MEMORY),
    QSIGN_CKR(CKR_SLOT_ID_INVALID),
    QSIGN_CKR(CKR_GENERAL_ERROR),
    QSIGN_CKR(CKR_FUNCTION_FAILED),
    QSIGN_CKR(CKR_ARGUMENTS_BAD),
    QSIGN_CKR(CKR_NO_EVENT),
    QSIGN_CKR(CKR_NEED_TO_CREATE_THREADS),
    QSIGN_CKR(CKR_CANT_LOCK),
    QSIGN_CKR(CKR_ATTRIBUTE_READ_ONLY),
    QSIGN_CKR(CKR_ATTRIBUTE_SENSITIVE),
    QSIGN_CKR(CKR_ATTRIBUTE_TYPE_INVALID),
    QSIGN_CKR(CKR_ATTRIBUTE_VALUE_INVALID),
    QSIGN_CKR(CKR_ACTION_PROHIBITED),
    QSIGN_CKR(CKR_DATA_INVALID),
    QSIGN_CKR(CKR_DATA_LEN_RANGE),
    QSIGN_CKR(CKR_DEVICE_ERROR),
    QSIGN_CKR(CKR_DEVICE_MEMORY),
    QSIGN_CKR(CKR_DEVICE_REMOVED),
    QSIGN_CKR(CKR_ENCRYPTED_DATA_INVALID),
    QSIGN_CKR(CKR_ENCRYPTED_DATA_LEN_RANGE),
    QSIGN_CKR(CKR_FUNCTION_CANCELED),
    QSIGN_CKR(CKR_FUNCTION_NOT_PARALLEL),
    QSIGN_CKR(CKR_FUNCTION_NOT_SUPPORTED),
    QSIGN_CKR(CKR_KEY_HANDLE_INVALID),
    QSIGN_CKR(CKR_KEY_SIZE_RANGE),
    QSIGN_CKR(CKR_KEY_TYPE_INCONSISTENT),
    QSIGN_CKR(CKR_KEY_NOT_NEEDED),
    QSIGN_CKR(CKR_KEY_CHANGED),
    QSIGN_CKR(CKR_KEY_NEEDED),
    QSIGN_CKR(CKR_KEY_INDIGESTIBLE),
    QSIGN_CKR(CKR_KEY_FUNCTION_NOT_PERMITTED),
    QSIGN_CKR(CKR_KEY_NOT_WRAPPABLE),
    QSIGN_CKR(CKR_KEY_UNEXTRACTABLE),
    QSIGN_CKR(CKR_MECHANISM_INVALID),
    QSIGN_CKR(CKR_MECHANISM_PARAM_INVALID),
    QSIGN_CKR(CKR_OBJECT_HANDLE_INVALID),
    QSIGN_CKR(CKR_OPERATION_ACTIVE),
    QSIGN_CKR(CKR_OPERATION_NOT_INITIALIZED),
    QSIGN_CKR(CKR_PIN_INCORRECT),
    QSIGN_CKR(CKR_PIN_INVALID),
    QSIGN_CKR(CKR_PIN_LEN_RANGE),
    QSIGN_CKR(CKR_PIN_EXPIRED),
    QSIGN_CKR(CKR_PIN_LOCKED),
    QSIGN_CKR(CKR_SESSION_CLOSED),
    QSIGN_CKR(CKR_SESSION_COUNT),
    QSIGN_CKR(CKR_SESSION_HANDLE_INVALID),
    QSIGN_CKR(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    QSIGN_CKR(CKR_SESSION_READ_ONLY),
    QSIGN_CKR(CKR_SESSION_EXISTS),
    QSIGN_CKR(CKR_SESSION_READ_ONLY_EXISTS),
    QSIGN_CKR(CKR_SESSION_READ_WRITE_SO_EXISTS),
    QSIGN_CKR(CKR_SIGNATURE_INVALID),
    QSIGN_CKR(CKR_SIGNATURE_LEN_RANGE),
    QSIGN_CKR(CKR_TEMPLATE_INCOMPLETE),
    QSIGN_CKR(CKR_TEMPLATE_INCONSISTENT),
    QSIGN_CKR(CKR_TOKEN_NOT_PRESENT),
    QSIGN_CKR(CKR_TOKEN_NOT_RECOGNIZED),
    QSIGN_CKR(CKR_TOKEN_WRITE_PROTECTED),
    QSIGN_CKR(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    QSIGN_CKR(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    QSIGN_CKR(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    QSIGN_CKR(CKR_USER_ALREADY_LOGGED_IN),
    QSIGN_CKR(CKR_USER_NOT_LOGGED_IN),
    QSIGN_CKR(CKR_USER_PIN_NOT_INITIALIZED),
    QSIGN_CKR(CKR_USER_TYPE_INVALID),
    QSIGN_CKR(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    QSIGN_CKR(CKR_USER_TOO_MANY_TYPES),
    QSIGN_CKR(CKR_WRAPPED_KEY_INVALID),
    QSIGN_CKR(CKR_WRAPPED_KEY_LEN_RANGE),
    QSIGN_CKR(CKR_WRAPPING_KEY_HANDLE_INVALID),
    QSIGN_CKR(CKR_WRAPPING_KEY_SIZE_RANGE),
    QSIGN_CKR(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    QSIGN_CKR(CKR_RANDOM_SEED_NOT_SUPPORTED),
    QSIGN_CKR(CKR_RANDOM_NO_RNG),
    QSIGN_CKR(CKR_DOMAIN_PARAMS_INVALID),
    QSIGN_CKR(CKR_CURVE_NOT_SUPPORTED),
    QSIGN_CKR(CKR_BUFFER_TOO_SMALL),
    QSIGN_CKR(CKR_SAVED_STATE_INVALID),
    QSIGN_CKR(CKR_INFORMATION_SENSITIVE),
    QSIGN_CKR(CKR_STATE_UNSAVEABLE),
    QSIGN_CKR(CKR_CRYPTOKI_NOT_INITIALIZED),
    QSIGN_CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    QSIGN_CKR(CKR_MUTEX_BAD),
    QSIGN_CKR(CKR_MUTEX_NOT_LOCKED),
    QSIGN_CKR(CKR_NEW_PIN_MODE),
    QSIGN_CKR(CKR_NEXT_OTP),
    QSIGN_CKR(CKR_EXCEEDED_MAX_ITERATIONS),
    QSIGN_CKR(CKR_FIPS_SELF_TEST_FAILED),
    QSIGN_CKR(CKR_LIBRARY_LOAD_FAILED),
    QSIGN_CKR(CKR_PIN_TOO_WEAK),
    QSIGN_CKR(CKR_PUBLIC_KEY_INVALID),
    QSIGN_CKR(CKR_FUNCTION_REJECTED),
};
#undef QSIGN_CKR

absl::StatusCode CkrCode(CK_RV rv) {
  switch (rv) {
    case CKR_OK:
      return absl::StatusCode::kOk;

    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
      return absl::StatusCode::kUnauthenticated;

    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_PIN_TOO_WEAK:
    case CKR_ACTION_PROHIBITED:
    case CKR_ATTRIBUTE_SENSITIVE:
    case CKR_INFORMATION_SENSITIVE:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_KEY_UNEXTRACTABLE:
    case CKR_KEY_NOT_WRAPPABLE:
    case CKR_TOKEN_WRITE_PROTECTED:
    case CKR_SESSION_READ_ONLY:
    case CKR_FUNCTION_REJECTED:
      return absl::StatusCode::kPermissionDenied;

    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_REMOVED:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_CANT_LOCK:
      return absl::StatusCode::kUnavailable;

    // Full token or too many sessions: retrying soon will not help, unlike UNAVAILABLE.
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
    case CKR_SESSION_COUNT:
      return absl::StatusCode::kResourceExhausted;

    case CKR_SLOT_ID_INVALID:
    case CKR_ARGUMENTS_BAD:
    case CKR_ATTRIBUTE_READ_ONLY:
    case CKR_ATTRIBUTE_TYPE_INVALID:
    case CKR_ATTRIBUTE_VALUE_INVALID:
    case CKR_DATA_INVALID:
    case CKR_DATA_LEN_RANGE:
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
    case CKR_KEY_SIZE_RANGE:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_NOT_NEEDED:
    case CKR_KEY_NEEDED:
    case CKR_KEY_INDIGESTIBLE:
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_SIGNATURE_INVALID:
    case CKR_SIGNATURE_LEN_RANGE:
    case CKR_TEMPLATE_INCOMPLETE:
    case CKR_TEMPLATE_INCONSISTENT:
    case CKR_USER_TYPE_INVALID:
    case CKR_WRAPPED_KEY_INVALID:
    case CKR_WRAPPED_KEY_LEN_RANGE:
    case CKR_DOMAIN_PARAMS_INVALID:
    case CKR_CURVE_NOT_SUPPORTED:
    case CKR_PUBLIC_KEY_INVALID:
    case CKR_SAVED_STATE_INVALID:
      return absl::StatusCode::kInvalidArgument;

    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
    case CKR_WRAPPING_KEY_HANDLE_INVALID:
      return absl::StatusCode::kNotFound;

    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_CRYPTOKI_ALREADY_INITIALIZED:
    case CKR_OPERATION_ACTIVE:
    case CKR_OPERATION_NOT_INITIALIZED:
    case CKR_SESSION_EXISTS:
    case CKR_SESSION_READ_ONLY_EXISTS:
    case CKR_SESSION_READ_WRITE_SO_EXISTS:
    case CKR_USER_ALREADY_LOGGED_IN:
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
    case CKR_USER_TOO_MANY_TYPES:
    case CKR_KEY_CHANGED:
      return absl::StatusCode::kFailedPrecondition;

    case CKR_FUNCTION_NOT_SUPPORTED:
    case CKR_FUNCTION_NOT_PARALLEL:
    case CKR_SESSION_PARALLEL_NOT_SUPPORTED:
    case CKR_RANDOM_SEED_NOT_SUPPORTED:
    case CKR_STATE_UNSAVEABLE:
      return absl::StatusCode::kUnimplemented;

    case CKR_CANCEL:
    case CKR_FUNCTION_CANCELED:
      return absl::StatusCode::kCancelled;

    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

std::string CkrName(CK_RV rv) {
  for (const CkrEntry& entry : kCkrNames) {
    if (entry.rv == rv) return std::string(entry.name);
  }
  if (rv & CKR_VENDOR_DEFINED) {
    return absl::StrCat("CKR_VENDOR_DEFINED+0x", absl::Hex(rv & ~CKR_VENDOR_DEFINED));
  }
  return "CKR_UNKNOWN";
}

absl::Status CkrToStatus(std::string_view function, CK_RV rv) {
  if (rv == CKR_OK) return absl::OkStatus();
  absl::Status status(CkrCode(rv), absl::StrCat(Av(function), " failed: ", CkrName(rv), " (0x",
                                                absl::Hex(rv), ")"));
  status.SetPayload(Av(kCkrPayloadUrl), absl::Cord(absl::StrCat(rv)));
  return status;
}

std::optional<CK_RV> CkrFromStatus(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(Av(kCkrPayloadUrl));
  if (!payload.has_value()) return std::nullopt;
  std::string text(*payload);
  CK_RV rv = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rv);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return rv;
}

absl::Status AnnotateStatus(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  absl::Status annotated(status.code(), absl::StrCat(Av(context), ": ", status.message()));
  status.ForEachPayload([&annotated](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

}  // namespace qsign::hsm

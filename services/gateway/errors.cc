#include "services/gateway/errors.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/refusal.h"
#include "common/strings.h"
#include "qsign/v1/refusal.pb.h"

namespace qsign::gateway {
namespace {

namespace pb = ::qsign::v1;

constexpr char kErrorPayload[] = "type.qsign.dev/gateway/csc-error";
constexpr char kHttpPayload[] = "type.qsign.dev/gateway/http-status";

// The CSC spelling of a request field a service's refusal names (Refusal.field); nullopt for
// fields the CSC request does not have under that name.
std::optional<std::string_view> CscFieldName(std::string_view proto_field) {
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"credential_id", "credentialID"},
      {"hash_algorithm_oid", "hashAlgorithmOID"},
      {"sign_algorithm_oid", "signAlgo"},
      {"num_signatures", "numSignatures"},
      {"account_id", "userID"},
      {"hashes", "hashes"},
      {"sad", "SAD"},
  };
  for (const auto& [proto, csc] : kNames) {
    if (proto_field == proto) return csc;
  }
  return std::nullopt;
}

// A service's refusal of a request field, in CSC words: "Invalid parameter <CSC name>: <why>";
// other messages as they are.
std::string CscMessage(const absl::Status& status) {
  auto refusal = GetRefusal(status);
  if (refusal.has_value()) {
    if (auto csc = CscFieldName(refusal->field())) {
      return absl::StrCat("Invalid parameter ", Av(*csc), ": ", Av(RefusalDetail(status)));
    }
  }
  return std::string(status.message());
}

}  // namespace

absl::Status CscStatus(absl::StatusCode code, std::string_view error, std::string_view description,
                       int http_status) {
  absl::Status status(code, Av(description));
  status.SetPayload(kErrorPayload, absl::Cord(Av(error)));
  if (http_status != 0) status.SetPayload(kHttpPayload, absl::Cord(absl::StrCat(http_status)));
  return status;
}

CscError ToCscError(const absl::Status& status) {
  CscError out;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      out = {400, "invalid_request", std::string(status.message())};
      break;
    case absl::StatusCode::kUnauthenticated:
      out = {401, "invalid_token", std::string(status.message())};
      break;
    case absl::StatusCode::kPermissionDenied:
      out = {403, "access_denied", std::string(status.message())};
      break;
    case absl::StatusCode::kResourceExhausted:
      out = {429, "temporarily_unavailable", std::string(status.message())};
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
      out = {503, "temporarily_unavailable", std::string(status.message())};
      break;
    case absl::StatusCode::kUnimplemented:
      out = {501, "invalid_request", std::string(status.message())};
      break;
    default:
      out = {500, "server_error", "internal error; the gateway log has the details"};
      break;
  }
  if (auto error = status.GetPayload(kErrorPayload)) out.error = std::string(*error);
  if (auto http = status.GetPayload(kHttpPayload)) {
    int code = 0;
    if (absl::SimpleAtoi(std::string(*http), &code)) out.http_status = code;
  }
  return out;
}

absl::Status InvalidParameter(std::string_view name, std::string_view why) {
  return absl::InvalidArgumentError(
      why.empty() ? absl::StrCat("Invalid parameter ", Av(name))
                  : absl::StrCat("Invalid parameter ", Av(name), ": ", Av(why)));
}

absl::Status MissingParameter(std::string_view type, std::string_view name) {
  return absl::InvalidArgumentError(
      absl::StrCat("Missing (or invalid type) ", Av(type), " parameter ", Av(name)));
}

absl::Status FromService(std::string_view service, const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return status;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return absl::InternalError(absl::StrCat(
          Av(service), " refused the gateway's service credential: ", status.message()));
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      // Addresses and transport details stay in the log.
      Log(LogLevel::kWarning, "gateway", "service unavailable",
          {{"service", service}, {"status", status.ToString()}});
      return absl::UnavailableError(absl::StrCat(Av(service), " is unavailable; retry later"));
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kResourceExhausted:
      return absl::Status(status.code(), CscMessage(status));
    default:
      return absl::InternalError(absl::StrCat(Av(service), ": ", status.ToString()));
  }
}

absl::Status FromSignHash(const absl::Status& s) {
  // A SAD that does not cover this request (expired, another credential, other hashes, bad
  // signature, used) means the relying party's request is wrong, not its access.
  const std::string_view why = RefusalDetail(s);
  switch (RefusalReason(s)) {
    case pb::Refusal::SAD_OTHER_HASHES:
      return absl::InvalidArgumentError(
          absl::StrCat("Hash is not authorized by the SAD (", Av(why), ")"));
    case pb::Refusal::SAD_EXPIRED:
      return absl::InvalidArgumentError(absl::StrCat("SAD expired (", Av(why), ")"));
    case pb::Refusal::SAD_MISSING:
    case pb::Refusal::SAD_MALFORMED:
    case pb::Refusal::SAD_UNKNOWN_KEY:
    case pb::Refusal::SAD_BAD_SIGNATURE:
    case pb::Refusal::SAD_NOT_YET_VALID:
    case pb::Refusal::SAD_OTHER_CREDENTIAL:
    case pb::Refusal::SAD_OTHER_ACCOUNT:
    case pb::Refusal::SAD_OTHER_HASH_ALGORITHM:
    case pb::Refusal::SAD_TOO_MANY_SIGNATURES:
    case pb::Refusal::SAD_USED: {
      const absl::StatusCode code = s.code() == absl::StatusCode::kPermissionDenied
                                        ? absl::StatusCode::kInvalidArgument
                                        : s.code();
      return absl::Status(code, absl::StrCat("Invalid parameter SAD: ", Av(why)));
    }
    default:
      break;
  }
  return FromService("signer", s);
}

}  // namespace qsign::gateway

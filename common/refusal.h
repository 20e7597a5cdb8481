// Typed refusal reasons: why a service refused a request, attached to the absl::Status as a
// payload (qsign.v1.Refusal) and carried across gRPC by common/grpc_status.h. A caller in another
// service decides on GetRefusal(status), never on the message text, which is for people.
#ifndef QSIGN_COMMON_REFUSAL_H_
#define QSIGN_COMMON_REFUSAL_H_

#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "qsign/v1/refusal.pb.h"

namespace qsign {

// The payload type URL of a Refusal (an Any type URL, so it travels as one).
inline constexpr char kRefusalTypeUrl[] = "type.googleapis.com/qsign.v1.Refusal";

// A status with message "<field>: <why>" (or just "<why>" when `field` is empty) carrying
// Refusal{reason, field}.
absl::Status Refuse(absl::StatusCode code, v1::Refusal::Reason reason, std::string_view field,
                    std::string_view why);

// Refuse(code, INVALID_FIELD, field, why): a request field that breaks a rule.
absl::Status FieldError(absl::StatusCode code, std::string_view field, std::string_view why);
inline absl::Status InvalidField(std::string_view field, std::string_view why) {
  return FieldError(absl::StatusCode::kInvalidArgument, field, why);
}

// `status` (not OK) with Refusal{reason, field} attached; its message is kept.
absl::Status WithRefusal(absl::Status status, v1::Refusal::Reason reason,
                         std::string_view field = "");

// The refusal attached to `status`, if any (and if it parses).
std::optional<v1::Refusal> GetRefusal(const absl::Status& status);

// The reason attached to `status`; REASON_UNSPECIFIED when none.
v1::Refusal::Reason RefusalReason(const absl::Status& status);

// The message without the "<field>: " that Refuse put in front of it.
std::string_view RefusalDetail(const absl::Status& status);

}  // namespace qsign

#endif  // QSIGN_COMMON_REFUSAL_H_

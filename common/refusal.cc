#include "common/refusal.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign {

absl::Status Refuse(absl::StatusCode code, v1::Refusal::Reason reason, std::string_view field,
                    std::string_view why) {
  absl::Status status(code, field.empty() ? Av(why) : absl::StrCat(Av(field), ": ", Av(why)));
  return WithRefusal(std::move(status), reason, field);
}

absl::Status FieldError(absl::StatusCode code, std::string_view field, std::string_view why) {
  return Refuse(code, v1::Refusal::INVALID_FIELD, field, why);
}

absl::Status WithRefusal(absl::Status status, v1::Refusal::Reason reason, std::string_view field) {
  if (status.ok()) return status;  // An OK status carries no payload.
  v1::Refusal refusal;
  refusal.set_reason(reason);
  refusal.set_field(std::string(field));
  status.SetPayload(kRefusalTypeUrl, absl::Cord(refusal.SerializeAsString()));
  return status;
}

std::optional<v1::Refusal> GetRefusal(const absl::Status& status) {
  auto payload = status.GetPayload(kRefusalTypeUrl);  // An absl::optional.
  if (!payload.has_value()) return std::nullopt;
  v1::Refusal refusal;
  if (!refusal.ParseFromString(std::string(*payload))) return std::nullopt;
  return refusal;
}

v1::Refusal::Reason RefusalReason(const absl::Status& status) {
  auto refusal = GetRefusal(status);
  return refusal.has_value() ? refusal->reason() : v1::Refusal::REASON_UNSPECIFIED;
}

std::string_view RefusalDetail(const absl::Status& status) {
  std::string_view message = Sv(status.message());
  auto refusal = GetRefusal(status);
  if (!refusal.has_value() || refusal->field().empty()) return message;
  const std::string& field = refusal->field();
  if (message.size() > field.size() + 1 && message.substr(0, field.size()) == field &&
      message.substr(field.size(), 2) == ": ") {
    message.remove_prefix(field.size() + 2);
  }
  return message;
}

}  // namespace qsign

#include "common/grpc_status.h"

#include <string>

#include "common/echo.h"
#include "common/log.h"
#include "common/rate_limit.h"
#include "common/refusal.h"
#include "common/strings.h"
#include "qsign/v1/refusal.pb.h"

namespace qsign {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  auto code = static_cast<grpc::StatusCode>(status.code());
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    return grpc::Status(code, "internal error; the server log has the details");
  }
  // Bounded: grpc-message is a header, and a message may repeat a request's input.
  std::string message = BoundMessage(Sv(status.message()));
  // Only the refusal and the retry delay cross: other payloads are a service's internals.
  v1::StatusDetails details;
  for (const char* type_url : {kRefusalTypeUrl, kRetryInfoTypeUrl}) {
    auto payload = status.GetPayload(type_url);  // An absl::optional.
    if (!payload.has_value()) continue;
    google::protobuf::Any* any = details.add_details();
    any->set_type_url(type_url);
    any->set_value(std::string(*payload));
  }
  if (details.details().empty()) return grpc::Status(code, message);
  details.set_code(static_cast<int32_t>(status.code()));
  details.set_message(message);
  return grpc::Status(code, message, details.SerializeAsString());
}

grpc::Status LoggedReply(std::string_view component, std::string_view rpc,
                         const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDataLoss:
      Log(LogLevel::kError, component, "rpc failed", {{"rpc", rpc}, {"status", status.ToString()}});
      break;
    default:
      break;
  }
  return ToGrpcStatus(status);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  if (status.error_details().empty()) return out;
  v1::StatusDetails details;
  if (!details.ParseFromString(status.error_details())) return out;  // Not ours: ignored.
  for (const google::protobuf::Any& any : details.details()) {
    if (any.type_url() == kRefusalTypeUrl || any.type_url() == kRetryInfoTypeUrl) {
      out.SetPayload(any.type_url(), absl::Cord(any.value()));
    }
  }
  return out;
}

}  // namespace qsign

#include "tools/cli/context.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/strings.h"

namespace qsign::cli {

std::unique_ptr<grpc::ClientContext> Context::Call(const std::string& authorization,
                                                   absl::Duration timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
  return ctx;
}

Result Context::LoadBearer(std::string* bearer, std::string* account_id) const {
  absl::StatusOr<StateDir::Session> session = state.LoadSession();
  if (!session.ok()) {
    return Failure{kUsage, absl::StrCat("not logged in (no ", state.SessionPath(),
                                        "): run qsign login --username=EMAIL first")};
  }
  if (session->token.empty()) {
    return Failure{kUsage, "the stored session is empty: run qsign login --username=EMAIL"};
  }
  *bearer = absl::StrCat("Bearer ", session->token);
  *account_id = session->account_id;
  return std::nullopt;
}

Result Required(std::string_view flag, const std::string& value) {
  if (value.empty() || value == "true") return Usage(absl::StrCat("--", Av(flag), " is required"));
  return std::nullopt;
}

bool ParseSeconds(const std::string& text, int min, int* seconds) {
  return absl::SimpleAtoi(text, seconds) && *seconds >= min;
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

}  // namespace qsign::cli

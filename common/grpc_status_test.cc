#include "common/grpc_status.h"

#include <string>

#include "gtest/gtest.h"

namespace qsign {
namespace {

TEST(ToGrpcStatusTest, KeepsCodeAndMessageButHidesInternals) {
  grpc::Status refused = ToGrpcStatus(absl::InvalidArgumentError("pin: must be 6 digits"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused.error_message(), "pin: must be 6 digits");
  grpc::Status internal = ToGrpcStatus(absl::InternalError("pq: relation missing"));
  EXPECT_EQ(internal.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(internal.error_message().find("pq"), std::string::npos);
}

TEST(LoggedReplyTest, LogsServerFaultsOnly) {
  ::testing::internal::CaptureStderr();
  grpc::Status refused = LoggedReply("signer", "SignHash", absl::NotFoundError("no credential"));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(refused.error_message(), "no credential");

  ::testing::internal::CaptureStderr();
  grpc::Status failed = LoggedReply("signer", "SignHash", absl::UnavailableError("hsm: gone"));
  std::string line = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(line.find("\"component\":\"signer\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"rpc\":\"SignHash\""), std::string::npos) << line;
  EXPECT_NE(line.find("hsm: gone"), std::string::npos) << line;
  EXPECT_EQ(failed.error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace qsign

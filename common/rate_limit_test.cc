#include "common/rate_limit.h"

#include "common/grpc_status.h"
#include "common/refusal.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "gtest/gtest.h"
#include "qsign/v1/refusal.pb.h"

namespace qsign {
namespace {

using ::testing::HasSubstr;

TEST(RateLimiterTest, RefusesPastTheLimitUntilTheWindowEnds) {
  RateLimiter limiter(3, absl::Minutes(1));
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("a", t0, "too many").ok());
  absl::Status refused = limiter.Acquire("a", t0 + absl::Seconds(20), "too many logins");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("too many logins; retry in 40 s"));
  EXPECT_EQ(RefusalReason(refused), v1::Refusal::RATE_LIMITED);
  EXPECT_EQ(RetryDelay(refused), absl::Seconds(40));
  // Other keys are not affected; a refused call is not counted.
  EXPECT_TRUE(limiter.Acquire("b", t0, "").ok());
  EXPECT_TRUE(limiter.Acquire("a", t0 + absl::Minutes(1), "").ok());
}

TEST(RateLimiterTest, ZeroAllowsEverything) {
  RateLimiter limiter(0, absl::Minutes(1));
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter.Allow("a", absl::UnixEpoch()));
}

TEST(RateLimitedTest, CrossesGrpcAsRetryInfo) {
  grpc::Status wire = ToGrpcStatus(RateLimited("too many", absl::Milliseconds(1500)));
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // What any gRPC client sees: google.rpc.Status with a google.rpc.RetryInfo among the details.
  v1::StatusDetails details;
  ASSERT_TRUE(details.ParseFromString(wire.error_details()));
  bool found = false;
  for (const auto& any : details.details()) {
    if (any.type_url() != "type.googleapis.com/google.rpc.RetryInfo") continue;
    google::rpc::RetryInfo info;
    ASSERT_TRUE(info.ParseFromString(any.value()));
    EXPECT_EQ(info.retry_delay().seconds(), 2);  // Rounded up.
    found = true;
  }
  EXPECT_TRUE(found);
  absl::Status back = FromGrpcStatus(wire);
  EXPECT_EQ(RetryDelay(back), absl::Seconds(2));
  EXPECT_EQ(RefusalReason(back), v1::Refusal::RATE_LIMITED);
}

}  // namespace
}  // namespace qsign

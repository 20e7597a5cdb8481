#include "common/refusal.h"

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/status.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

namespace qsign {
namespace {

using v1::Refusal;

TEST(RefusalTest, RefuseWritesFieldAndReason) {
  absl::Status s = Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_EXPIRED, "sad",
                          "expired at 2026-01-01");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "sad: expired at 2026-01-01");
  EXPECT_EQ(RefusalReason(s), Refusal::SAD_EXPIRED);
  ASSERT_TRUE(GetRefusal(s).has_value());
  EXPECT_EQ(GetRefusal(s)->field(), "sad");
  EXPECT_EQ(RefusalDetail(s), "expired at 2026-01-01");

  absl::Status field = InvalidField("hashes[2]", "duplicate");
  EXPECT_EQ(field.message(), "hashes[2]: duplicate");
  EXPECT_EQ(RefusalReason(field), Refusal::INVALID_FIELD);
  EXPECT_EQ(RefusalDetail(field), "duplicate");
}

TEST(RefusalTest, PlainStatusHasNoRefusal) {
  absl::Status s = absl::InvalidArgumentError("sad: looks like one");
  EXPECT_FALSE(GetRefusal(s).has_value());
  EXPECT_EQ(RefusalReason(s), Refusal::REASON_UNSPECIFIED);
  EXPECT_EQ(RefusalDetail(s), "sad: looks like one");
  EXPECT_TRUE(WithRefusal(absl::OkStatus(), Refusal::SAD_USED).ok());
}

TEST(RefusalTest, WithRefusalKeepsTheMessage) {
  absl::Status s = WithRefusal(absl::FailedPreconditionError("credential is disabled"),
                               Refusal::CREDENTIAL_INACTIVE, "credential_id");
  EXPECT_EQ(s.message(), "credential is disabled");
  EXPECT_EQ(RefusalReason(s), Refusal::CREDENTIAL_INACTIVE);
  EXPECT_EQ(RefusalDetail(s), "credential is disabled");
}

TEST(RefusalTest, ConversionKeepsTheRefusalAndDropsOtherPayloads) {
  absl::Status s =
      Refuse(absl::StatusCode::kFailedPrecondition, Refusal::SAD_USED, "sad", "already used");
  s.SetPayload("type.qsign.dev/internal", absl::Cord("secret detail"));
  absl::Status back = FromGrpcStatus(ToGrpcStatus(s));
  EXPECT_EQ(back.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(back.message(), "sad: already used");
  EXPECT_EQ(RefusalReason(back), Refusal::SAD_USED);
  EXPECT_FALSE(back.GetPayload("type.qsign.dev/internal").has_value());

  // Internal errors keep nothing but their code.
  absl::Status internal = WithRefusal(absl::InternalError("db down"), Refusal::SAD_USED);
  grpc::Status g = ToGrpcStatus(internal);
  EXPECT_EQ(g.error_details(), "");
  EXPECT_FALSE(GetRefusal(FromGrpcStatus(g)).has_value());

  // Details that are not ours are ignored.
  grpc::Status foreign(grpc::StatusCode::INVALID_ARGUMENT, "x", "\xff\xff not a proto");
  EXPECT_EQ(FromGrpcStatus(foreign).message(), "x");
  EXPECT_FALSE(GetRefusal(FromGrpcStatus(foreign)).has_value());
}

// A health service that refuses every check with a typed refusal.
class RefusingHealth final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse*) override {
    return ToGrpcStatus(Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_HASHES,
                               "sad", "hashes[0] is not one the user approved"));
  }
};

TEST(RefusalTest, SurvivesARealGrpcRoundTrip) {
  RefusingHealth service;
  auto server = GrpcServer::Start({}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel((*server)->local_target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  absl::Status s = FromGrpcStatus(stub->Check(&ctx, req, &resp));
  (*server)->Shutdown(absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "sad: hashes[0] is not one the user approved");
  auto refusal = GetRefusal(s);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->reason(), Refusal::SAD_OTHER_HASHES);
  EXPECT_EQ(refusal->field(), "sad");
  EXPECT_EQ(RefusalDetail(s), "hashes[0] is not one the user approved");
}

}  // namespace
}  // namespace qsign

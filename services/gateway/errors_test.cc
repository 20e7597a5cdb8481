#include "services/gateway/errors.h"

#include <string>

#include "absl/status/status.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsign::gateway {
namespace {

using ::testing::HasSubstr;
using v1::Refusal;

// What a relying party sees of the signer's refusal, after it crossed gRPC.
CscError SeenBy(const absl::Status& signer_status) {
  return ToCscError(FromSignHash(FromGrpcStatus(ToGrpcStatus(signer_status))));
}

TEST(FromSignHashTest, EverySadRefusalIsTheRelyingPartysBadRequest) {
  struct Case {
    absl::StatusCode code;
    Refusal::Reason reason;
    std::string why;
    std::string description;
  };
  const Case cases[] = {
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_HASHES,
       "hashes[0] is not one the user approved",
       "Hash is not authorized by the SAD (hashes[0] is not one the user approved)"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_EXPIRED, "expired at 2026-12-04T23:00:00Z",
       "SAD expired (expired at 2026-12-04T23:00:00Z)"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_CREDENTIAL,
       "issued for another credential", "Invalid parameter SAD: issued for another credential"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_ACCOUNT,
       "issued for another account", "Invalid parameter SAD: issued for another account"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_HASH_ALGORITHM,
       "issued for hash algorithm 2.16.840.1.101.3.4.2.1, not 2.16.840.1.101.3.4.2.2",
       "Invalid parameter SAD: issued for hash algorithm"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_TOO_MANY_SIGNATURES,
       "authorizes 1 signatures, 2 requested", "Invalid parameter SAD: authorizes 1 signatures"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_BAD_SIGNATURE, "signature does not verify",
       "Invalid parameter SAD: signature does not verify"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_UNKNOWN_KEY, "signed by an unknown key",
       "Invalid parameter SAD: signed by an unknown key"},
      {absl::StatusCode::kPermissionDenied, Refusal::SAD_NOT_YET_VALID, "issued in the future",
       "Invalid parameter SAD: issued in the future"},
      {absl::StatusCode::kInvalidArgument, Refusal::SAD_MALFORMED,
       "not a SAD issued by this service",
       "Invalid parameter SAD: not a SAD issued by this service"},
      {absl::StatusCode::kInvalidArgument, Refusal::SAD_MISSING, "required",
       "Invalid parameter SAD: required"},
      {absl::StatusCode::kFailedPrecondition, Refusal::SAD_USED, "already used",
       "Invalid parameter SAD: already used"},
  };
  for (const Case& c : cases) {
    const CscError e = SeenBy(Refuse(c.code, c.reason, "sad", c.why));
    EXPECT_EQ(e.http_status, 400) << Refusal::Reason_Name(c.reason);
    EXPECT_EQ(e.error, "invalid_request") << Refusal::Reason_Name(c.reason);
    EXPECT_THAT(e.description, HasSubstr(c.description)) << Refusal::Reason_Name(c.reason);
  }
}

TEST(FromSignHashTest, MessageTextAloneMeansNothing) {
  // A PERMISSION_DENIED that reads like a SAD refusal but carries no reason is a refusal of the
  // gateway's own credential: the gateway's fault, not the relying party's.
  const CscError e =
      SeenBy(absl::PermissionDeniedError("sad: hashes[0] is not one the user approved"));
  EXPECT_EQ(e.http_status, 500);
  EXPECT_EQ(e.error, "server_error");
}

TEST(FromServiceTest, RefusedFieldsGetTheirCscNames) {
  const CscError nobody = ToCscError(FromService(
      "signer",
      FromGrpcStatus(ToGrpcStatus(Refuse(absl::StatusCode::kNotFound, Refusal::CREDENTIAL_NOT_FOUND,
                                         "credential_id", "no credential cred-nobody")))));
  EXPECT_EQ(nobody.http_status, 400);
  EXPECT_EQ(nobody.description, "Invalid parameter credentialID: no credential cred-nobody");
  const CscError algo = ToCscError(FromService(
      "signer", InvalidField("sign_algorithm_oid", "does not fit the credential's EC_P256 key")));
  EXPECT_EQ(algo.description,
            "Invalid parameter signAlgo: does not fit the credential's EC_P256 key");
  // A field the CSC request does not have, or no field: the message as it is.
  EXPECT_EQ(ToCscError(FromService("consent", InvalidField("documents[0].label", "too long")))
                .description,
            "documents[0].label: too long");
  EXPECT_EQ(ToCscError(FromService("consent", absl::FailedPreconditionError(
                                                  "credential_id: looks like a field")))
                .description,
            "credential_id: looks like a field");
}

}  // namespace
}  // namespace qsign::gateway

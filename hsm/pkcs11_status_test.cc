#include "hsm/pkcs11_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace qsign::hsm {
namespace {

using ::testing::HasSubstr;

TEST(CkrToStatusTest, OkIsOk) { EXPECT_TRUE(CkrToStatus("C_Sign", CKR_OK).ok()); }

TEST(CkrToStatusTest, MessageNamesFunctionConstantAndValue) {
  absl::Status status = CkrToStatus("C_Sign", CKR_KEY_HANDLE_INVALID);
  EXPECT_EQ(status.message(), "C_Sign failed: CKR_KEY_HANDLE_INVALID (0x60)");
}

TEST(CkrToStatusTest, MapsToCanonicalCodes) {
  struct Case {
    CK_RV rv;
    absl::StatusCode code;
  };
  for (const Case& c : {
           Case{CKR_PIN_INCORRECT, absl::StatusCode::kUnauthenticated},
           Case{CKR_USER_NOT_LOGGED_IN, absl::StatusCode::kUnauthenticated},
           Case{CKR_PIN_LOCKED, absl::StatusCode::kPermissionDenied},
           Case{CKR_PIN_EXPIRED, absl::StatusCode::kPermissionDenied},
           Case{CKR_ATTRIBUTE_SENSITIVE, absl::StatusCode::kPermissionDenied},
           Case{CKR_KEY_FUNCTION_NOT_PERMITTED, absl::StatusCode::kPermissionDenied},
           Case{CKR_DEVICE_ERROR, absl::StatusCode::kUnavailable},
           Case{CKR_DEVICE_REMOVED, absl::StatusCode::kUnavailable},
           Case{CKR_SESSION_HANDLE_INVALID, absl::StatusCode::kUnavailable},
           Case{CKR_SESSION_CLOSED, absl::StatusCode::kUnavailable},
           Case{CKR_TOKEN_NOT_PRESENT, absl::StatusCode::kUnavailable},
           Case{CKR_DEVICE_MEMORY, absl::StatusCode::kResourceExhausted},
           Case{CKR_SESSION_COUNT, absl::StatusCode::kResourceExhausted},
           Case{CKR_ARGUMENTS_BAD, absl::StatusCode::kInvalidArgument},
           Case{CKR_TEMPLATE_INCONSISTENT, absl::StatusCode::kInvalidArgument},
           Case{CKR_MECHANISM_INVALID, absl::StatusCode::kInvalidArgument},
           Case{CKR_DATA_LEN_RANGE, absl::StatusCode::kInvalidArgument},
           Case{CKR_KEY_HANDLE_INVALID, absl::StatusCode::kNotFound},
           Case{CKR_OBJECT_HANDLE_INVALID, absl::StatusCode::kNotFound},
           Case{CKR_CRYPTOKI_NOT_INITIALIZED, absl::StatusCode::kFailedPrecondition},
           Case{CKR_OPERATION_ACTIVE, absl::StatusCode::kFailedPrecondition},
           Case{CKR_FUNCTION_NOT_SUPPORTED, absl::StatusCode::kUnimplemented},
           Case{CKR_FUNCTION_CANCELED, absl::StatusCode::kCancelled},
           Case{CKR_GENERAL_ERROR, absl::StatusCode::kInternal},
           Case{CKR_FUNCTION_FAILED, absl::StatusCode::kInternal},
           Case{CKR_VENDOR_DEFINED + 7, absl::StatusCode::kInternal},
       }) {
    EXPECT_EQ(CkrToStatus("C_X", c.rv).code(), c.code) << CkrName(c.rv);
  }
}

TEST(CkrNameTest, NamesKnownVendorAndUnknownValues) {
  EXPECT_EQ(CkrName(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
  EXPECT_EQ(CkrName(CKR_CRYPTOKI_ALREADY_INITIALIZED), "CKR_CRYPTOKI_ALREADY_INITIALIZED");
  EXPECT_EQ(CkrName(CKR_VENDOR_DEFINED + 0x12), "CKR_VENDOR_DEFINED+0x12");
  EXPECT_EQ(CkrName(0x7777), "CKR_UNKNOWN");
  EXPECT_THAT(CkrToStatus("C_Login", 0x7777).message(), HasSubstr("CKR_UNKNOWN (0x7777)"));
}

TEST(CkrFromStatusTest, SurvivesAnnotation) {
  absl::Status status = AnnotateStatus(CkrToStatus("C_Sign", CKR_SESSION_CLOSED), "signing");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "signing: C_Sign failed: CKR_SESSION_CLOSED (0xb0)");
  EXPECT_EQ(CkrFromStatus(status), CKR_SESSION_CLOSED);
  EXPECT_EQ(CkrFromStatus(absl::InternalError("x")), std::nullopt);
}

}  // namespace
}  // namespace qsign::hsm

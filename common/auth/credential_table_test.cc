#include "common/auth/credential_table.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsign::auth {
namespace {

using ::testing::HasSubstr;

TEST(CredentialTableTest, ChecksSecretsByHash) {
  auto table = CredentialTable::Parse(
      absl::StrCat("# operators\n\nra-ana ", absl::BytesToHexString(Sha256("s3cret-ana")), "\n"));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_TRUE(table->Check("ra-ana", "s3cret-ana"));
  EXPECT_FALSE(table->Check("ra-ana", "s3cret-anA"));
  EXPECT_FALSE(table->Check("ra-bob", "s3cret-ana"));
  EXPECT_FALSE(table->Check("ra-ana", ""));
}

TEST(CredentialTableTest, RefusesMalformedTables) {
  EXPECT_THAT(CredentialTable::Parse("ra-ana abc\n").status().message(),
              HasSubstr("line 1: expected"));
  const std::string h = absl::BytesToHexString(Sha256("x"));
  EXPECT_THAT(CredentialTable::Parse(absl::StrCat("a ", h, "\na ", h)).status().message(),
              HasSubstr("line 2: credential id a listed twice"));
  EXPECT_THAT(CredentialTable::Parse(absl::StrCat("a.b ", h)).status().message(),
              HasSubstr("letters, digits"));
}

TEST(CredentialTableTest, ParsesAuthorizationHeaders) {
  auto none = ParseAuthorization("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->scheme, PresentedCredential::Scheme::kNone);
  auto op = ParseAuthorization("Operator ra-ana.se.cr.et");
  ASSERT_TRUE(op.ok());
  EXPECT_EQ(op->scheme, PresentedCredential::Scheme::kOperator);
  EXPECT_EQ(op->id, "ra-ana");
  EXPECT_EQ(op->secret.value(), "se.cr.et");
  auto svc = ParseAuthorization("Service consent.x");
  ASSERT_TRUE(svc.ok());
  EXPECT_EQ(svc->scheme, PresentedCredential::Scheme::kService);
  auto bearer = ParseAuthorization("Bearer t.s");
  ASSERT_TRUE(bearer.ok());
  EXPECT_EQ(bearer->scheme, PresentedCredential::Scheme::kBearer);
  EXPECT_EQ(bearer->secret.value(), "t.s");
  for (const char* bad : {"Basic dXNlcjpwYXNz", "Operator ra-ana", "Operator .secret",
                          "Operator ra-ana.", "Service", "Bearer", "Operator ra ana.secret"}) {
    auto s = ParseAuthorization(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kUnauthenticated) << bad;
  }
  // The presented value is never echoed.
  EXPECT_THAT(ParseAuthorization("Basic dXNlcjpwYXNz").status().message(),
              ::testing::Not(HasSubstr("dXNlcjpwYXNz")));
}

}  // namespace
}  // namespace qsign::auth

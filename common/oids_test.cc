#include "common/oids.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace qsign::oid {
namespace {

TEST(OidsTest, HashLengths) {
  ASSERT_NE(FindHashOid(kSha256), nullptr);
  EXPECT_EQ(FindHashOid(kSha256)->length, 32u);
  EXPECT_EQ(FindHashOid(kSha384)->length, 48u);
  EXPECT_EQ(FindHashOid(kSha512)->length, 64u);
  EXPECT_EQ(FindHashOid("1.3.14.3.2.26"), nullptr);  // SHA-1 is not accepted.
}

TEST(OidsTest, EverySignOidIsUniqueAndItsImpliedHashIsAccepted) {
  std::set<std::string> seen;
  for (const SignOid& s : SignOids()) {
    EXPECT_TRUE(seen.insert(s.oid).second) << s.oid;
    EXPECT_EQ(FindSignOid(s.oid), &s);
    if (s.implied_hash != nullptr) {
      EXPECT_NE(FindHashOid(s.implied_hash), nullptr) << s.oid;
    }
  }
  EXPECT_EQ(FindSignOid(kEcdsaWithSha384)->implied_hash, std::string(kSha384));
  EXPECT_EQ(FindSignOid(kRsassaPss)->family, SignFamily::kRsaPss);
  EXPECT_EQ(FindSignOid(kRsassaPss)->implied_hash, nullptr);
  EXPECT_EQ(FindSignOid(""), nullptr);
}

}  // namespace
}  // namespace qsign::oid

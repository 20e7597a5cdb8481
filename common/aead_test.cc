#include "common/aead.h"

#include <string>

#include "gtest/gtest.h"

namespace qsign {
namespace {

const std::string kKey(32, 'k');

TEST(AeadTest, OpensWhatItSealedOnlyWithTheSameKeyAndAad) {
  auto sealed = SealAes256Gcm(kKey, "Bearer s3cr3t", "session\nid");
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(sealed->size(), 12 + 13 + 16u);
  EXPECT_EQ(sealed->find("s3cr3t"), std::string::npos);
  auto opened = OpenAes256Gcm(kKey, *sealed, "session\nid");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "Bearer s3cr3t");
  // Another key, another aad (the record moved to another row), a changed byte, a cut: refused.
  EXPECT_FALSE(OpenAes256Gcm(std::string(32, 'x'), *sealed, "session\nid").ok());
  EXPECT_FALSE(OpenAes256Gcm(kKey, *sealed, "session\nother").ok());
  std::string changed = *sealed;
  changed[14] ^= 1;
  EXPECT_FALSE(OpenAes256Gcm(kKey, changed, "session\nid").ok());
  EXPECT_FALSE(OpenAes256Gcm(kKey, sealed->substr(0, 20), "session\nid").ok());
  // A fresh IV each time.
  EXPECT_NE(*SealAes256Gcm(kKey, "x"), *SealAes256Gcm(kKey, "x"));
  EXPECT_FALSE(SealAes256Gcm("short", "x").ok());
}

}  // namespace
}  // namespace qsign

#include "common/secret.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace qsign {
namespace {

std::string WriteTemp(const std::string& content) {
  char path[] = "/tmp/qsign_secret_XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  close(fd);
  return path;
}

TEST(ReadSecretFileTest, DropsOneTrailingNewline) {
  std::string path = WriteTemp("123456\n");
  auto secret = ReadSecretFile(path);
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(secret->value(), "123456");
  unlink(path.c_str());
}

TEST(ReadSecretFileTest, MissingFileNamesThePathNotTheContent) {
  auto secret = ReadSecretFile("/nonexistent/qsign/pin");
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(secret.status().message().find("/nonexistent/qsign/pin"), std::string::npos);
}

TEST(ReadSecretFileTest, EmptyFileIsRefused) {
  std::string path = WriteTemp("\n");
  EXPECT_EQ(ReadSecretFile(path).status().code(), absl::StatusCode::kInvalidArgument);
  unlink(path.c_str());
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("1234", "1234"));
  EXPECT_FALSE(ConstantTimeEquals("1234", "1235"));
  EXPECT_FALSE(ConstantTimeEquals("1234", "12345"));
}

}  // namespace
}  // namespace qsign

#include "common/log.h"

#include <string>

#include "gtest/gtest.h"

namespace qsign {
namespace {

TEST(AppendJsonStringTest, EscapesQuotesControlAndBackslash) {
  std::string out;
  AppendJsonString("a\"b\\c\nd\x01", &out);
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\u0001\"");
}

TEST(AppendJsonStringTest, PassesUtf8Through) {
  std::string out;
  AppendJsonString("Petrović-O'Neil", &out);
  EXPECT_EQ(out, "\"Petrović-O'Neil\"");
}

TEST(LogTest, WritesOneJsonLine) {
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kWarning, "test", "hello \"x\"", {{"rpc", "SignHash"}});
  std::string line = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_NE(line.find("\"level\":\"warning\""), std::string::npos);
  EXPECT_NE(line.find("\"msg\":\"hello \\\"x\\\"\""), std::string::npos);
  EXPECT_NE(line.find("\"rpc\":\"SignHash\""), std::string::npos);
}

TEST(LogTest, DropsLinesBelowTheMinimumLevel) {
  SetMinLogLevel(LogLevel::kWarning);
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kInfo, "test", "quiet");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  SetMinLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace qsign

#include "common/echo.h"

#include <string>

#include "common/grpc_status.h"
#include "gtest/gtest.h"

namespace qsign {
namespace {

TEST(EchoTest, ShortInputIsShownAsIs) {
  EXPECT_EQ(Echo("2025-01"), "2025-01");
  EXPECT_EQ(Echo("Petrović"), "Petrović");
}

TEST(EchoTest, LongInputShowsAPrefixAndItsLength) {
  const std::string echoed = Echo(std::string(20000, 'x'));
  EXPECT_EQ(echoed, std::string(kMaxEcho, 'x') + "…(20000 bytes)");
}

TEST(EchoTest, NeverSplitsACharacterNorPassesControls) {
  std::string cyrillic;
  for (int i = 0; i < 30; ++i) cyrillic += "ж";  // 2 bytes each.
  const std::string echoed = Echo(cyrillic);
  EXPECT_EQ(echoed.substr(0, kMaxEcho), cyrillic.substr(0, kMaxEcho));
  EXPECT_EQ(Echo("a\nb\x1b[31m\xff"), "a?b?[31m?");
}

TEST(EchoTest, GrpcEdgeBoundsEveryMessage) {
  grpc::Status s = ToGrpcStatus(absl::NotFoundError("version: " + std::string(20000, 'v')));
  EXPECT_LE(s.error_message().size(), kMaxStatusMessage + 3);
  EXPECT_EQ(s.error_message().substr(0, 12), "version: vvv");
}

}  // namespace
}  // namespace qsign

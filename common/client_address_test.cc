#include "common/client_address.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsign {
namespace {

using ::testing::HasSubstr;

TEST(ClientAddressTest, PeerAddresses) {
  EXPECT_EQ(PeerAddress("ipv4:203.0.113.7:51234"), "203.0.113.7");
  EXPECT_EQ(PeerAddress("ipv6:[2001:db8::1]:443"), "2001:db8::1");
  EXPECT_EQ(PeerAddress("unix:/tmp/sock"), "unix:/tmp/sock");
}

TEST(ClientAddressTest, WithoutTrustedProxiesThePeerIsTheClient) {
  ClientAddressResolver r;
  EXPECT_EQ(r.Resolve("ipv4:10.0.0.5:4000", {"198.51.100.9"}), "10.0.0.5");
}

TEST(ClientAddressTest, TrustedProxyHeaderNamesTheClient) {
  auto r = ClientAddressResolver::New("x-forwarded-for", {"10.0.0.0/8", "2001:db8::1"});
  ASSERT_TRUE(r.ok()) << r.status();
  // Through the ingress: its header names the client.
  EXPECT_EQ(r->Resolve("ipv4:10.0.0.5:4000", {"198.51.100.9"}), "198.51.100.9");
  EXPECT_EQ(r->Resolve("ipv6:[2001:db8::1]:443", {"198.51.100.9:5555"}), "198.51.100.9");
  // What the client wrote itself (left of the last untrusted entry) proves nothing.
  EXPECT_EQ(r->Resolve("ipv4:10.0.0.5:4000", {"1.2.3.4, 198.51.100.9"}), "198.51.100.9");
  // Trusted hops are skipped; several header values are one list.
  EXPECT_EQ(r->Resolve("ipv4:10.0.0.5:4000", {"198.51.100.9, 10.1.1.1", "10.2.2.2"}),
            "198.51.100.9");
  EXPECT_EQ(r->Resolve("ipv4:10.0.0.5:4000", {"[2001:DB8:0::7]"}), "2001:db8::7");
  // Garbage stops the walk at the last trusted hop.
  EXPECT_EQ(r->Resolve("ipv4:10.0.0.5:4000", {"not-an-ip"}), "10.0.0.5");
  // An untrusted peer's header is ignored.
  EXPECT_EQ(r->Resolve("ipv4:192.0.2.1:4000", {"198.51.100.9"}), "192.0.2.1");
  // No header: the proxy itself.
  EXPECT_EQ(r->Resolve("ipv4:10.0.0.5:4000", {}), "10.0.0.5");
}

TEST(ClientAddressTest, ConfigErrorsNameTheField) {
  EXPECT_THAT(ClientAddressResolver::New("X-Forwarded-For", {"10.0.0.0/8"}).status().message(),
              HasSubstr("client_address.header"));
  EXPECT_THAT(ClientAddressResolver::New("x-forwarded-for", {}).status().message(),
              HasSubstr("client_address.trusted_proxies"));
  EXPECT_THAT(ClientAddressResolver::New("x-forwarded-for", {"10.0.0.0/33"}).status().message(),
              HasSubstr("client_address.trusted_proxies[0]"));
  EXPECT_THAT(ClientAddressResolver::New("", {"10.0.0.1"}).status().message(),
              HasSubstr("client_address.header"));
  EXPECT_TRUE(ClientAddressResolver::New("", {}).ok());
}

}  // namespace
}  // namespace qsign

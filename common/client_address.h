// The end user's network address, for per-address rate limits: the gRPC peer's address, or —
// when the peer is a configured trusted proxy (the ingress) — the address that proxy wrote into
// a configured header (e.g. x-forwarded-for). Without this every call through an ingress has the
// ingress's address, and one address's limit would block every citizen.
#ifndef QSIGN_COMMON_CLIENT_ADDRESS_H_
#define QSIGN_COMMON_CLIENT_ADDRESS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace grpc {
class ServerContext;
}  // namespace grpc

namespace qsign {

// The address part of a gRPC peer ("ipv4:203.0.113.7:51234" -> "203.0.113.7",
// "ipv6:[2001:db8::1]:443" -> "2001:db8::1"); other forms are returned unchanged.
std::string PeerAddress(std::string_view peer);

class ClientAddressResolver {
 public:
  // No trusted proxy: the peer's address is the client's.
  ClientAddressResolver() = default;

  // `header`: a gRPC metadata key (lower case, e.g. "x-forwarded-for"); `trusted_proxies`: IP
  // addresses or CIDR blocks ("10.0.0.0/8", "2001:db8::/32") of the peers allowed to set it.
  // INVALID_ARGUMENT naming `field_prefix`.header / .trusted_proxies[i] when malformed; both
  // empty is the default resolver.
  static absl::StatusOr<ClientAddressResolver> New(
      std::string_view header, const std::vector<std::string>& trusted_proxies,
      std::string_view field_prefix = "client_address");

  // The client's address: the peer's address unless the peer is a trusted proxy and
  // `header_values` (every value of the header, in order) is not empty; then the rightmost
  // comma-separated entry that is not itself a trusted proxy (entries to its left were written by
  // the client and prove nothing). A header entry that is not an IP address stops the walk: the
  // last trusted hop's address is answered instead.
  std::string Resolve(std::string_view peer,
                      const std::vector<std::string_view>& header_values) const;

  // Resolve for a call: its peer and its metadata under header().
  std::string Resolve(const grpc::ServerContext& context) const;

  const std::string& header() const { return header_; }

 private:
  struct Block {
    int family = 0;  // AF_INET or AF_INET6.
    std::array<uint8_t, 16> bytes{};
    int prefix_bits = 0;
  };
  bool Trusted(std::string_view address) const;

  std::string header_;
  std::vector<Block> trusted_;
};

}  // namespace qsign

#endif  // QSIGN_COMMON_CLIENT_ADDRESS_H_

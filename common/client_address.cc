#include "common/client_address.h"

#include <arpa/inet.h>
#include <grpcpp/server_context.h>

#include <cstring>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"

namespace qsign {
namespace {

struct Parsed {
  int family = 0;
  std::array<uint8_t, 16> bytes{};
};

std::optional<Parsed> ParseIp(std::string_view text) {
  if (text.size() > 45) return std::nullopt;
  std::string s(text);
  Parsed p;
  if (inet_pton(AF_INET, s.c_str(), p.bytes.data()) == 1) {
    p.family = AF_INET;
    return p;
  }
  if (inet_pton(AF_INET6, s.c_str(), p.bytes.data()) == 1) {
    p.family = AF_INET6;
    return p;
  }
  return std::nullopt;
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int bits) {
  const int whole = bits / 8;
  if (std::memcmp(a.data(), b.data(), whole) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

// "203.0.113.7", "[2001:db8::1]", "203.0.113.7:443", "[2001:db8::1]:443" -> the address.
std::string_view StripPort(std::string_view entry) {
  if (entry.starts_with('[')) {
    const size_t close = entry.find(']');
    return close == std::string_view::npos ? entry : entry.substr(1, close - 1);
  }
  if (std::count(entry.begin(), entry.end(), ':') == 1) return entry.substr(0, entry.find(':'));
  return entry;
}

}  // namespace

std::string PeerAddress(std::string_view peer) {
  if (peer.starts_with("ipv4:")) {
    peer.remove_prefix(5);
    const size_t colon = peer.rfind(':');
    return std::string(colon == std::string_view::npos ? peer : peer.substr(0, colon));
  }
  if (peer.starts_with("ipv6:")) {
    peer.remove_prefix(5);
    if (peer.starts_with('[')) {
      const size_t close = peer.find(']');
      if (close != std::string_view::npos) return std::string(peer.substr(1, close - 1));
    }
    return std::string(peer);
  }
  return std::string(peer);
}

absl::StatusOr<ClientAddressResolver> ClientAddressResolver::New(
    std::string_view header, const std::vector<std::string>& trusted_proxies,
    std::string_view field_prefix) {
  ClientAddressResolver r;
  if (header.empty() && trusted_proxies.empty()) return r;
  if (header.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(field_prefix), ".header: required with trusted_proxies"));
  }
  for (char c : header) {
    if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
          absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ||
        header.starts_with("grpc-") || header.ends_with("-bin")) {
      return absl::InvalidArgumentError(absl::StrCat(
          Av(field_prefix), ".header: a lower-case gRPC metadata key such as x-forwarded-for"));
    }
  }
  if (trusted_proxies.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Av(field_prefix), ".trusted_proxies: required with header (the ingress's addresses)"));
  }
  r.header_ = std::string(header);
  for (size_t i = 0; i < trusted_proxies.size(); ++i) {
    std::string_view entry = trusted_proxies[i];
    std::string_view address = entry;
    std::optional<int> bits;
    if (const size_t slash = entry.find('/'); slash != std::string_view::npos) {
      address = entry.substr(0, slash);
      int n = 0;
      if (!absl::SimpleAtoi(Av(entry.substr(slash + 1)), &n)) n = -1;
      bits = n;
    }
    auto ip = ParseIp(address);
    const int max_bits = ip && ip->family == AF_INET ? 32 : 128;
    if (!ip || (bits && (*bits < 0 || *bits > max_bits))) {
      return absl::InvalidArgumentError(
          absl::StrCat(Av(field_prefix), ".trusted_proxies[", i,
                       "]: an IP address or CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32)"));
    }
    r.trusted_.push_back(
        {.family = ip->family, .bytes = ip->bytes, .prefix_bits = bits.value_or(max_bits)});
  }
  return r;
}

bool ClientAddressResolver::Trusted(std::string_view address) const {
  auto ip = ParseIp(address);
  if (!ip) return false;
  for (const Block& b : trusted_) {
    if (b.family == ip->family && PrefixMatches(b.bytes, ip->bytes, b.prefix_bits)) return true;
  }
  return false;
}

std::string ClientAddressResolver::Resolve(
    std::string_view peer, const std::vector<std::string_view>& header_values) const {
  std::string address = PeerAddress(peer);
  if (header_.empty() || header_values.empty() || !Trusted(address)) return address;
  std::vector<std::string_view> entries;
  for (std::string_view value : header_values) {
    for (absl::string_view e : absl::StrSplit(Av(value), ',')) {
      entries.push_back(Sv(absl::StripAsciiWhitespace(e)));
    }
  }
  // Right to left: each trusted hop vouches for the entry to its left.
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    std::string_view candidate = StripPort(*it);
    auto ip = ParseIp(candidate);
    if (!ip) return address;
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(ip->family, ip->bytes.data(), text, sizeof(text));
    address = text;  // Canonical form, so that one client has one key.
    if (!Trusted(address)) return address;
  }
  return address;
}

std::string ClientAddressResolver::Resolve(const grpc::ServerContext& context) const {
  std::vector<std::string_view> values;
  if (!header_.empty()) {
    auto range = context.client_metadata().equal_range(header_);
    for (auto it = range.first; it != range.second; ++it) {
      values.emplace_back(it->second.data(), it->second.size());
    }
  }
  return Resolve(context.peer(), values);
}

}  // namespace qsign

#include "tests/testing/test_data.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace qsign::testing {
namespace {

// The check digit of a national ID's first 12 digits, computed here from the rule (not with the
// identity service's code, which the tests check): weights 7 6 5 4 3 2 7 6 5 4 3 2, then
// 11 - sum mod 11, where 11 means 0 and 10 means no valid number.
int CheckDigit(const std::string& first12) {
  static constexpr int kWeights[12] = {7, 6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2};
  int sum = 0;
  for (int i = 0; i < 12; ++i) sum += kWeights[i] * (first12[i] - '0');
  const int k = 11 - sum % 11;
  return k == 11 ? 0 : k == 10 ? -1 : k;
}

}  // namespace

std::string NationalId(int n) {
  // Region 71..90 and serial 000..999 (ddmmyyy rr bbb); serials whose check would be 10 move on
  // by 1000, i.e. to the next region.
  for (int serial = n;; serial += 1000) {
    const std::string first12 =
        absl::StrFormat("0101990%02d%03d", 71 + serial / 1000 % 20, serial % 1000);
    const int check = CheckDigit(first12);
    if (check >= 0) return absl::StrCat(first12, check);
  }
}

std::string ManyNationalId(int n) {
  const int day = 1 + n / 1000 % 28;
  const int month = 1 + n / 28000 % 12;
  // A region whose check digit is not 10 (the sum changes with the region).
  for (int region = 71;; ++region) {
    const std::string first12 =
        absl::StrFormat("%02d%02d985%02d%03d", day, month, region, n % 1000);
    const int check = CheckDigit(first12);
    if (check >= 0) return absl::StrCat(first12, check);
  }
}

std::string ServiceSecret(std::string_view service) {
  return absl::StrCat(std::string(service), "-secret");
}

std::string ServiceAuthorization(std::string_view service) {
  return absl::StrCat("Service ", std::string(service), ".", ServiceSecret(service));
}

std::string OperatorAuthorization() {
  return absl::StrCat("Operator ", kOperatorId, ".", kOperatorSecret);
}

std::string PinHashKey() { return std::string(32, 'p'); }

int FreeLoopbackPort() {
  // Not from the kernel's ephemeral range: a port taken there (bind to port 0) is free again once
  // this socket closes, and the next bind to port 0 anywhere on the machine (an HTTP or metrics
  // listener the same child opens first, another test) can be handed the very same port before
  // the child binds it. So: a random port below that range, checked free, never given out twice
  // by this process. Above 10000 to stay clear of well-known services.
  static absl::Mutex mu(absl::kConstInit);
  static auto* const given = new absl::flat_hash_set<int>();
  static auto* const bitgen = new absl::BitGen();
  int below = 32768;  // Linux's default; the machine's own setting when readable.
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> below;
  constexpr int kFirst = 10000;
  if (below - kFirst < 1000) below = 65536;  // No room below: take any unreserved port.
  absl::MutexLock lock(&mu);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = absl::Uniform(*bitgen, kFirst, below);
    if (given->contains(port)) continue;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (free) {
      given->insert(port);
      return port;
    }
  }
  return 0;
}

}  // namespace qsign::testing

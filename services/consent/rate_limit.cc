#include "services/consent/rate_limit.h"

#include "absl/container/flat_hash_map.h"
#include "common/strings.h"

namespace qsign::consent {
namespace {

// Past this many keys, windows that ended are forgotten.
constexpr size_t kPruneAbove = 100'000;

}  // namespace

bool RateLimiter::Allow(std::string_view key, absl::Time now) {
  if (limit_ <= 0) return true;
  absl::MutexLock lock(&mu_);
  if (windows_.size() > kPruneAbove) {
    absl::erase_if(windows_,
                   [&](const auto& entry) { return now - entry.second.start >= window_; });
  }
  Window& w = windows_[Av(key)];
  if (w.count == 0 || now - w.start >= window_) {
    w.start = now;
    w.count = 0;
  }
  if (w.count >= limit_) return false;
  ++w.count;
  return true;
}

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

}  // namespace qsign::consent

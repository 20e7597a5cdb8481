// Per-key fixed-window rate limiting (EnrollDevice per client address). In-process: each
// replica limits on its own, which bounds the total at replicas × limit.
#ifndef QSIGN_SERVICES_CONSENT_RATE_LIMIT_H_
#define QSIGN_SERVICES_CONSENT_RATE_LIMIT_H_

#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsign::consent {

class RateLimiter {
 public:
  // At most `limit` calls per key in each `window`; a limit of 0 allows everything.
  RateLimiter(int limit, absl::Duration window) : limit_(limit), window_(window) {}

  // Counts a call for `key` at `now`; false when the key is over its limit.
  bool Allow(std::string_view key, absl::Time now);

 private:
  struct Window {
    absl::Time start;
    int count = 0;
  };
  const int limit_;
  const absl::Duration window_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
};

// The address part of a gRPC peer ("ipv4:203.0.113.7:51234" -> "203.0.113.7",
// "ipv6:[2001:db8::1]:443" -> "2001:db8::1"); other forms are returned unchanged.
std::string PeerAddress(std::string_view peer);

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_RATE_LIMIT_H_

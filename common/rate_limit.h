// Per-key fixed-window rate limits and the RESOURCE_EXHAUSTED answer that tells the client when
// to come back. One limiter for every service (accounts on StartLogin and Authorize, devices on
// Approve, client addresses on enrolment and registration). In-process: each replica limits on
// its own, which bounds the total at replicas × limit.
#ifndef QSIGN_COMMON_RATE_LIMIT_H_
#define QSIGN_COMMON_RATE_LIMIT_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsign {

// The status payload type URL of the retry delay; ToGrpcStatus sends it as google.rpc.RetryInfo
// in the status details, FromGrpcStatus reads it back.
inline constexpr char kRetryInfoTypeUrl[] = "type.googleapis.com/google.rpc.RetryInfo";

// RESOURCE_EXHAUSTED "<message>; retry in <n> s" with Refusal{RATE_LIMITED} and the retry delay
// (rounded up to whole seconds, at least 1 s) attached.
absl::Status RateLimited(std::string_view message, absl::Duration retry_after);

// The retry delay attached to `status` by RateLimited (or received from a peer), if any.
std::optional<absl::Duration> RetryDelay(const absl::Status& status);

class RateLimiter {
 public:
  // At most `limit` calls per key in each `window`; a limit of 0 (or less) allows everything.
  RateLimiter(int limit, absl::Duration window) : limit_(limit), window_(window) {}

  // Counts a call for `key` at `now`: OK, or RateLimited("<what>", until the key's window ends)
  // when the key has used its `limit` calls in the current window (a refused call is not
  // counted). `what` is for people, e.g. "too many login attempts for this account".
  absl::Status Acquire(std::string_view key, absl::Time now, std::string_view what);

  // Acquire without the status: false when over the limit.
  bool Allow(std::string_view key, absl::Time now) { return Acquire(key, now, "").ok(); }

  int limit() const { return limit_; }
  absl::Duration window() const { return window_; }

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

}  // namespace qsign

#endif  // QSIGN_COMMON_RATE_LIMIT_H_

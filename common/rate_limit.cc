#include "common/rate_limit.h"

#include <cmath>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/refusal.h"
#include "common/strings.h"
#include "google/rpc/error_details.pb.h"

namespace qsign {
namespace {

// Past this many keys, windows that ended are forgotten.
constexpr size_t kPruneAbove = 100'000;

}  // namespace

absl::Status RateLimited(std::string_view message, absl::Duration retry_after) {
  const int64_t seconds =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(retry_after))));
  absl::Status status = WithRefusal(
      absl::ResourceExhaustedError(absl::StrCat(Av(message), "; retry in ", seconds, " s")),
      v1::Refusal::RATE_LIMITED);
  google::rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(seconds);
  status.SetPayload(kRetryInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

std::optional<absl::Duration> RetryDelay(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryInfoTypeUrl);  // An absl::optional.
  if (!payload.has_value()) return std::nullopt;
  google::rpc::RetryInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return absl::Seconds(info.retry_delay().seconds()) +
         absl::Nanoseconds(info.retry_delay().nanos());
}

absl::Status RateLimiter::Acquire(std::string_view key, absl::Time now, std::string_view what) {
  if (limit_ <= 0) return absl::OkStatus();
  absl::Duration retry_after;
  {
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
    if (w.count < limit_) {
      ++w.count;
      return absl::OkStatus();
    }
    retry_after = w.start + window_ - now;
  }
  return RateLimited(what, retry_after);
}

}  // namespace qsign

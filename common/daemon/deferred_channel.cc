#include "common/daemon/deferred_channel.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsign::daemon {

DeferredChannel::DeferredChannel(std::string peer, std::shared_ptr<grpc::ChannelInterface> channel)
    : peer_(std::move(peer)), channel_(std::move(channel)) {}

void DeferredChannel::Set(std::shared_ptr<grpc::ChannelInterface> channel) {
  absl::MutexLock lock(&mu_);
  if (channel_ != nullptr) std::abort();
  channel_ = std::move(channel);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelInterface>> DeferredChannel::Get() const {
  absl::MutexLock lock(&mu_);
  if (channel_ == nullptr)
    return absl::UnavailableError(absl::StrCat(peer_, ": not connected yet"));
  return channel_;
}

}  // namespace qsign::daemon

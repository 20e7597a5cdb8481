// A gRPC channel to one service that may not exist yet. A service in this process is called on
// the process's own listener, whose port is known only once it listens (port 0 in tests), after
// the services are built: every client of a peer holds one of these, set once; before that each
// call answers UNAVAILABLE "<peer>: not connected yet". A service at peers.<name> is set at once.
#ifndef QSIGN_COMMON_DAEMON_DEFERRED_CHANNEL_H_
#define QSIGN_COMMON_DAEMON_DEFERRED_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace qsign::daemon {

class DeferredChannel {
 public:
  // Not set yet; `peer` names the service in the UNAVAILABLE answer ("identity").
  explicit DeferredChannel(std::string peer) : peer_(std::move(peer)) {}
  // Set already: a channel to a peer, or in a test.
  DeferredChannel(std::string peer, std::shared_ptr<grpc::ChannelInterface> channel);
  static std::shared_ptr<const DeferredChannel> Connected(
      std::string peer, std::shared_ptr<grpc::ChannelInterface> channel) {
    return std::make_shared<const DeferredChannel>(std::move(peer), std::move(channel));
  }
  DeferredChannel(const DeferredChannel&) = delete;
  DeferredChannel& operator=(const DeferredChannel&) = delete;

  // Once; a second Set aborts (callers may hold the first channel).
  void Set(std::shared_ptr<grpc::ChannelInterface> channel);
  // The channel, or UNAVAILABLE before Set.
  absl::StatusOr<std::shared_ptr<grpc::ChannelInterface>> Get() const;
  const std::string& peer() const { return peer_; }

 private:
  const std::string peer_;
  mutable absl::Mutex mu_;
  std::shared_ptr<grpc::ChannelInterface> channel_ ABSL_GUARDED_BY(mu_);
};

// A `Service::Stub` (Service: a generated service such as qsign::v1::Signer) made once, the first
// time a call finds the channel set; afterwards a call costs one atomic load.
template <typename Service>
class DeferredStub {
 public:
  using Stub = typename Service::Stub;

  explicit DeferredStub(std::shared_ptr<const DeferredChannel> channel)
      : channel_(std::move(channel)) {}

  // The stub, or UNAVAILABLE "<peer>: not connected yet".
  absl::StatusOr<Stub*> get() const {
    if (Stub* stub = stub_.load(std::memory_order_acquire)) return stub;
    auto channel = channel_->Get();
    if (!channel.ok()) return channel.status();
    absl::MutexLock lock(&mu_);
    if (owned_ == nullptr) {
      owned_ = Service::NewStub(*std::move(channel));
      stub_.store(owned_.get(), std::memory_order_release);
    }
    return owned_.get();
  }

 private:
  const std::shared_ptr<const DeferredChannel> channel_;
  mutable absl::Mutex mu_;
  mutable std::unique_ptr<Stub> owned_ ABSL_GUARDED_BY(mu_);
  mutable std::atomic<Stub*> stub_{nullptr};  // owned_, once made.
};

}  // namespace qsign::daemon

#endif  // QSIGN_COMMON_DAEMON_DEFERRED_CHANNEL_H_

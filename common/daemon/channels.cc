#include <utility>

#include "common/daemon/config.h"
#include "common/daemon/stack.h"

namespace qsign::daemon {

Channels::Channels(const config::v1::ServerConfig& config,
                   std::shared_ptr<grpc::ChannelCredentials> credentials, std::string own_name)
    : config_(config),
      credentials_(credentials != nullptr ? std::move(credentials)
                                          : grpc::InsecureChannelCredentials()),
      own_name_(std::move(own_name)) {}

std::shared_ptr<const DeferredChannel> Channels::To(std::string_view service) {
  if (RunsHere(config_, service)) {
    auto it = self_.find(service);
    if (it == self_.end()) {
      auto channel = std::make_shared<DeferredChannel>(std::string(service));
      if (self_channel_ != nullptr) channel->Set(self_channel_);
      it = self_.emplace(std::string(service), std::move(channel)).first;
    }
    return it->second;
  }
  // A peer's certificate must name the target's host.
  const std::string target = PeerTarget(config_, service);
  auto& channel = peers_[target];
  if (channel == nullptr) {
    grpc::ChannelArguments args;
    // Every call to the next ready replica of the target (peers.load_balancing).
    args.SetLoadBalancingPolicyName(config_.peers().load_balancing().empty()
                                        ? "round_robin"
                                        : config_.peers().load_balancing());
    channel = grpc::CreateCustomChannel(target, credentials_, args);
  }
  return DeferredChannel::Connected(std::string(service), channel);
}

void Channels::ConnectSelf(const std::string& loopback_target) {
  grpc::ChannelArguments args;
  // This process's certificate names this process, not 127.0.0.1.
  if (!own_name_.empty()) args.SetSslTargetNameOverride(own_name_);
  self_channel_ = grpc::CreateCustomChannel(loopback_target, credentials_, args);
  for (auto& [service, deferred] : self_) deferred->Set(self_channel_);
}

}  // namespace qsign::daemon

#include "common/daemon/stack_server.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/daemon/config.h"
#include "common/daemon/stack_helpers.h"
#include "common/daemon/token_roles.h"
#include "common/log.h"

namespace qsign::daemon {

StackServer::StackServer(const Options& options)
    : component_(options.component),
      channels_(*options.config, options.channel_credentials, options.own_name) {}

StackServer::~StackServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<StackServer>> StackServer::Start(
    const Options& options, absl::Span<const StackFactory> factories) {
  const config::v1::ServerConfig& config = *options.config;
  auto fail = [&](std::string_view what, const absl::Status& status) {
    Log(LogLevel::kError, options.component, what, {{"status", status.ToString()}});
    return status;
  };
  std::unique_ptr<StackServer> s(new StackServer(options));
  const StackEnv env{.config = config,
                     .tokens = options.tokens,
                     .pool = options.pool,
                     .clock = options.clock,
                     .channels = &s->channels_,
                     .component = s->component_};
  const std::vector<std::string> present = ConfiguredServices(config);
  std::vector<grpc::Service*> services;
  for (const StackFactory& factory : factories) {
    if (std::find(present.begin(), present.end(), factory.section) == present.end()) continue;
    auto stack = factory.build(env);
    if (!stack.ok()) return fail(factory.section, stack.status());
    for (const Stack::Served& served : (*stack)->services()) {
      services.push_back(served.service);
      s->service_names_.emplace_back(served.name);
    }
    s->stacks_.emplace_back(factory.section, *std::move(stack));
  }
  if (!services.empty()) {
    GrpcServerOptions server_options;
    server_options.listen_address = config.listen();
    server_options.reflection = config.observability().reflection();
    server_options.credentials = options.server_credentials;
    auto server = GrpcServer::Start(server_options, services);
    if (!server.ok()) return fail("listen", Field("listen", server.status()));
    s->server_ = *std::move(server);
    // Services in this process call each other through gRPC on this very listener.
    s->channels_.ConnectSelf(s->server_->local_target());
  }
  for (auto& [section, stack] : s->stacks_) stack->Start();
  return s;
}

int StackServer::port() const { return server_ ? server_->port() : 0; }

std::string StackServer::target() const { return server_ ? server_->local_target() : ""; }

Stack* StackServer::stack(std::string_view section) {
  for (auto& [name, stack] : stacks_) {
    if (name == section) return stack.get();
  }
  return nullptr;
}

std::string StackServer::hsm_probe_key(std::string_view role) const {
  for (const TokenRole& r : kTokenRoles) {
    if (r.role != role) continue;
    for (const auto& [section, stack] : stacks_) {
      if (section == r.section) return stack->hsm_probe_key();
    }
  }
  return "";
}

void StackServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  for (auto it = stacks_.rbegin(); it != stacks_.rend(); ++it) it->second->Stop();
  if (server_) server_->Shutdown(grace);
}

}  // namespace qsign::daemon

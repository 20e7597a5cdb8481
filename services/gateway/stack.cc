#include "services/gateway/stack.h"

#include <openssl/rand.h>

#include <memory>
#include <string>
#include <utility>

#include "common/daemon/config.h"
#include "common/daemon/stack_helpers.h"
#include "common/log.h"
#include "common/secret.h"
#include "services/gateway/backend_grpc.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_http.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/tokens.h"

namespace qsign::gateway {
namespace {

using daemon::Field;

// The key that seals tokens and handles: gateway.token_key_file, or a random one good for this
// process only.
absl::StatusOr<SecretString> TokenKey(const std::string& path) {
  if (!path.empty()) {
    auto read = ReadSecretFile(path);
    if (!read.ok()) return Field("gateway.token_key_file", read.status());
    return read;
  }
  std::string random(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()), 32) != 1) {
    return absl::InternalError("gateway: RAND_bytes failed");
  }
  Log(LogLevel::kWarning, "gateway",
      "no gateway.token_key_file: tokens and handles are good for this process only");
  return SecretString(std::move(random));
}

class GatewayStack final : public daemon::Stack {
 public:
  static absl::StatusOr<std::unique_ptr<daemon::Stack>> New(const daemon::StackEnv& env);

  void Stop() override { http_.reset(); }  // Its calls into this process finish first.
  int port() const { return http_ == nullptr ? 0 : http_->port(); }

 private:
  std::unique_ptr<GrpcBackend> backend_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<GatewayHttpServer> http_;
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> GatewayStack::New(const daemon::StackEnv& env) {
  const auto& c = env.config.gateway();
  auto stack = std::make_unique<GatewayStack>();
  // signatures/timestamp when a TSA runs here or at peers.tsa.
  const bool timestamps = RunsHere(env.config, "tsa") || !env.config.peers().tsa().empty();
  auto host_port = ParseHostPort(c.http_listen());
  if (!host_port.ok()) return Field("gateway.http_listen", host_port.status());
  auto secret = ReadSecretFile(c.client_secret_file());
  if (!secret.ok()) return Field("gateway.client_secret_file", secret.status());
  auto parties = RelyingPartyTable::FromFile(c.relying_parties_file());
  if (!parties.ok()) return Field("gateway.relying_parties_file", parties.status());
  auto key = TokenKey(c.token_key_file());
  if (!key.ok()) return key.status();
  auto tokens = TokenSealer::New(*key);
  if (!tokens.ok()) return Field("gateway.token_key_file", tokens.status());
  stack->backend_ = std::make_unique<GrpcBackend>(
      env.channels->To("signer"), env.channels->To("consent"), c.client_id(), *secret,
      absl::Seconds(c.rpc_timeout_seconds()), timestamps ? env.channels->To("tsa") : nullptr,
      // The sign-in of oauth2/authorize (scope=service) logs users in at identity, when it is
      // reachable.
      RunsHere(env.config, "identity") || !PeerTarget(env.config, "identity").empty()
          ? env.channels->To("identity")
          : nullptr);
  auto gw = Gateway::New(
      stack->backend_.get(), *std::move(parties), *std::move(tokens), env.clock,
      GatewayConfig{
          .name = c.name(),
          .logo = c.logo(),
          .region = c.region(),
          .token_lifetime = absl::Seconds(c.token_lifetime_seconds()),
          .authorize_wait = absl::Seconds(c.authorize_wait_seconds()),
          .authorize_check_wait = absl::Seconds(c.authorize_check_wait_seconds()),
          .timestamps = timestamps,
          .tsa_url = c.tsa_url(),
          .signdoc_wait = absl::Seconds(c.signdoc_wait_seconds()),
          .signdoc_max_document_bytes = static_cast<size_t>(c.signdoc_max_document_bytes()),
          .signdoc_max_documents = c.signdoc_max_documents()});
  if (!gw.ok()) return Field("gateway", gw.status());
  stack->gateway_ = *std::move(gw);
  auto http = GatewayHttpServer::Start({.host = host_port->first,
                                        .port = host_port->second,
                                        .threads = c.http_threads(),
                                        .max_body_bytes = static_cast<size_t>(c.max_body_bytes()),
                                        .public_url = c.public_url(),
                                        .cert_file = c.http_cert_file(),
                                        .key_file = c.http_key_file(),
                                        .limits = daemon::HttpLimitsOf(env.config)},
                                       stack->gateway_.get());
  if (!http.ok()) return Field("gateway.http_listen", http.status());
  stack->http_ = *std::move(http);
  Log(LogLevel::kInfo, env.component, "CSC gateway listener",
      {{"http", stack->http_->base_url()}, {"http_port", std::to_string(stack->http_->port())}});
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "gateway", .build = &GatewayStack::New};

int HttpPort(daemon::Stack* stack) {
  auto* gateway = dynamic_cast<GatewayStack*>(stack);
  return gateway == nullptr ? 0 : gateway->port();
}

}  // namespace qsign::gateway

#include "tests/testing/stacks.h"

#include <fstream>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/auth/credential_table.h"
#include "common/daemon/config.h"
#include "services/consent/stack.h"
#include "services/gateway/stack.h"
#include "services/identity/stack.h"
#include "services/lifecycle/stack.h"
#include "services/signer/stack.h"
#include "services/tsa/stack.h"
#include "services/web/stack.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/test_data.h"

namespace qsign::testing {
namespace {

namespace cfg = ::qsign::config::v1;

// The daemon's build order (services/qsignd/main.cc).
const daemon::StackFactory* const kFactories[] = {
    &consent::kStack, &signer::kStack,  &identity::kStack, &lifecycle::kStack,
    &tsa::kStack,     &gateway::kStack, &web::kStack};
constexpr std::string_view kPeerServices[] = {"signer", "consent", "identity", "lifecycle"};
// Nothing listens there: a call to a service that is not started fails UNAVAILABLE.
constexpr char kNowhere[] = "127.0.0.1:1";

absl::Status WriteFile(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

// A credential file line: "<id> <hex SHA-256 of secret>".
std::string CredentialLine(std::string_view id, std::string_view secret) {
  return absl::StrCat(std::string(id), " ", absl::BytesToHexString(auth::Sha256(secret)), "\n");
}

absl::StatusOr<cfg::ServerConfig> TestConfig(ServiceEnv& env, const StacksOptions& options) {
  const std::string& dir = env.token().dir();
  for (const std::string& svc : options.services) {
    if (svc != "signer" && svc != "consent" && svc != "identity" && svc != "lifecycle" &&
        svc != "tsa" && svc != "gateway" && svc != "web") {
      return absl::InvalidArgumentError(absl::StrCat("Stacks: no service \"", svc, "\""));
    }
  }
  cfg::ServerConfig c = LaptopConfig(env.conninfo(), env.TokensConfig(), options.services, dir);
  if (RunsHere(c, "signer")) {
    // The SAD key in consent's token, its public key pinned for the signer (as an operator does).
    if (absl::StatusOr<std::string> pinned = env.SadPublicKeyFile(); !pinned.ok()) {
      return pinned.status();
    }
  }
  std::string services;
  for (std::string_view svc : {"signer", "consent", "identity", "lifecycle", "gateway", "tsa"}) {
    services += CredentialLine(svc, ServiceSecret(svc));
    if (absl::Status s =
            WriteFile(absl::StrCat(dir, "/", std::string(svc), ".secret"), ServiceSecret(svc));
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = WriteFile(dir + "/services", services); !s.ok()) return s;
  if (absl::Status s = WriteFile(dir + "/operators", CredentialLine(kOperatorId, kOperatorSecret));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFile(dir + "/pin-pepper", PinHashKey()); !s.ok()) return s;
  c.set_operators_file(dir + "/operators");
  c.set_services_file(dir + "/services");

  for (const std::string& svc : options.services) {
    if (svc == "consent") {
      cfg::ConsentService* consent = c.mutable_consent();
      consent->set_pin_pepper_file(dir + "/pin-pepper");
      consent->set_client_secret_file(dir + "/consent.secret");
      consent->set_device_ca_cert_file(dir + "/device-ca.der");
      // Cheap PIN hashing keeps tests fast; docs/consent.md has the real parameters.
      consent->set_pin_argon2_t(1);
      consent->set_pin_argon2_m_kib(256);
    } else if (svc == "identity") {
      c.mutable_identity()->set_client_secret_file(dir + "/identity.secret");
    } else if (svc == "lifecycle") {
      c.mutable_lifecycle()->set_client_secret_file(dir + "/lifecycle.secret");
      c.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
    } else if (svc == "tsa") {
      c.mutable_tsa()->set_client_secret_file(dir + "/tsa.secret");
      c.mutable_tsa()->set_http_listen("127.0.0.1:0");
    } else if (svc == "gateway") {
      // Relying parties: the test writes <token dir>/relying-parties (configure may move it).
      cfg::GatewayService* gateway = c.mutable_gateway();
      gateway->set_http_listen("127.0.0.1:0");
      gateway->set_client_secret_file(dir + "/gateway.secret");
      gateway->set_relying_parties_file(dir + "/relying-parties");
      if (!std::ifstream(dir + "/relying-parties")) {
        if (absl::Status s = WriteFile(dir + "/relying-parties", "# none\n"); !s.ok()) return s;
      }
    } else if (svc == "web") {
      c.mutable_web()->set_http_listen("127.0.0.1:0");
    }
  }
  // Peers of the services not started, except lifecycle: without one, consent runs its own
  // device CA.
  for (std::string_view svc : {"signer", "consent", "identity"}) {
    if (RunsHere(c, svc)) continue;
    cfg::Peers* peers = c.mutable_peers();
    if (svc == "signer") peers->set_signer(kNowhere);
    if (svc == "consent") peers->set_consent(kNowhere);
    if (svc == "identity") peers->set_identity(kNowhere);
  }
  if (options.configure) options.configure(c);
  SetTokens(c, env.TokensConfig());
  ApplyConfigDefaults(c);
  if (absl::Status s = ValidateConfig(c); !s.ok()) return s;
  return c;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Stacks>> Stacks::Start(ServiceEnv& env, StacksOptions options) {
  std::unique_ptr<Stacks> stacks(new Stacks());
  absl::StatusOr<cfg::ServerConfig> config = TestConfig(env, options);
  if (!config.ok()) return config.status();
  stacks->config_ = *std::move(config);
  std::vector<daemon::StackFactory> factories;
  for (const daemon::StackFactory* factory : kFactories) factories.push_back(*factory);
  absl::StatusOr<std::unique_ptr<daemon::StackServer>> server =
      daemon::StackServer::Start({.config = &stacks->config_,
                                  .tokens = &env.tokens(),
                                  .pool = &env.pool(),
                                  .clock = options.clock,
                                  .component = "test"},
                                 factories);
  if (!server.ok()) return server.status();
  stacks->server_ = *std::move(server);
  stacks->channel_ =
      grpc::CreateChannel(stacks->server_->target(), grpc::InsecureChannelCredentials());
  return stacks;
}

Stacks::~Stacks() { Shutdown(absl::ZeroDuration()); }

std::shared_ptr<grpc::Channel> Stacks::NewChannel() const {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(server_->target(), grpc::InsecureChannelCredentials(), args);
}

void Stacks::Shutdown(absl::Duration grace) {
  if (server_ != nullptr) server_->Shutdown(grace);
}

}  // namespace qsign::testing

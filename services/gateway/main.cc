// qsign-gateway: CSC API v2 over HTTP/JSON in front of qsignd's signer and consent services.
#include <openssl/rand.h>
#include <pthread.h>

#include <csignal>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/secret.h"
#include "services/gateway/backend_grpc.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_http.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/tokens.h"

ABSL_FLAG(std::string, listen_http, "127.0.0.1:8480", "HTTP listen address (host:port)");
ABSL_FLAG(std::string, public_url, "",
          "base URL clients use, e.g. https://csc.example.rs (info.oauth2); empty: from Host");
ABSL_FLAG(std::string, qsignd, "127.0.0.1:7443", "gRPC target of the signer and consent services");
ABSL_FLAG(std::string, consent_target, "",
          "gRPC target of the consent service when it is not --qsignd");
ABSL_FLAG(std::string, client_id, "gateway", "the gateway's own service client id at qsignd");
ABSL_FLAG(std::string, client_secret_file, "", "file holding the gateway's own service secret");
ABSL_FLAG(std::string, relying_parties_file, "",
          "registered relying parties: lines \"<client id> <hex SHA-256 of secret> <name>\"");
ABSL_FLAG(std::string, token_key_file, "",
          "file holding the key (32+ random bytes) that seals access tokens and handles; share it "
          "between replicas; empty: a random key per process (tokens die with it)");
ABSL_FLAG(int, token_lifetime_seconds, 600, "lifetime of access tokens");
ABSL_FLAG(int, authorize_wait_seconds, 25,
          "how long credentials/authorize waits for the user before answering 202 + handle");
ABSL_FLAG(int, authorize_check_wait_seconds, 10,
          "how long credentials/authorizeCheck waits for the user before answering 202 again");
ABSL_FLAG(int, rpc_timeout_seconds, 10, "deadline of each call to the qsign services");
ABSL_FLAG(int, max_body_bytes, 256 * 1024, "largest request body (larger: 413)");
ABSL_FLAG(int, http_threads, 64, "HTTP worker threads (authorize holds one while it waits)");
ABSL_FLAG(std::string, name, "qsign", "info.name");
ABSL_FLAG(std::string, logo, "", "info.logo (URI of a PNG or JPEG)");
ABSL_FLAG(std::string, region, "RS", "info.region (ISO 3166-1 alpha-2)");

namespace qsign::gateway {
namespace {

const sigset_t& StopSignals() {
  static const sigset_t set = [] {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    return s;
  }();
  return set;
}

absl::Status Fail(std::string_view what, const absl::Status& status) {
  Log(LogLevel::kError, "gateway", what, {{"status", status.ToString()}});
  return status;
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_client_secret_file).empty()) {
    return Fail("config", absl::InvalidArgumentError("--client_secret_file: required"));
  }
  if (absl::GetFlag(FLAGS_relying_parties_file).empty()) {
    return Fail("config", absl::InvalidArgumentError("--relying_parties_file: required"));
  }
  const std::string listen = absl::GetFlag(FLAGS_listen_http);
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return Fail("config", absl::InvalidArgumentError("--listen_http: host:port"));
  }
  auto secret = ReadSecretFile(absl::GetFlag(FLAGS_client_secret_file));
  if (!secret.ok()) return Fail("client secret", secret.status());
  auto parties = RelyingPartyTable::FromFile(absl::GetFlag(FLAGS_relying_parties_file));
  if (!parties.ok()) return Fail("relying parties", parties.status());
  SecretString key;
  if (absl::GetFlag(FLAGS_token_key_file).empty()) {
    std::string random(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()), 32) != 1) {
      return Fail("token key", absl::InternalError("RAND_bytes failed"));
    }
    key = SecretString(std::move(random));
    Log(LogLevel::kWarning, "gateway",
        "no --token_key_file: tokens and handles are good for this process only");
  } else {
    auto read = ReadSecretFile(absl::GetFlag(FLAGS_token_key_file));
    if (!read.ok()) return Fail("token key", read.status());
    key = *std::move(read);
  }
  auto tokens = TokenSealer::New(key);
  if (!tokens.ok()) return Fail("token key", tokens.status());

  auto signer_channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_qsignd), grpc::InsecureChannelCredentials());
  auto consent_channel = absl::GetFlag(FLAGS_consent_target).empty()
                             ? signer_channel
                             : grpc::CreateChannel(absl::GetFlag(FLAGS_consent_target),
                                                   grpc::InsecureChannelCredentials());
  GrpcBackend backend(signer_channel, consent_channel, absl::GetFlag(FLAGS_client_id), *secret,
                      absl::Seconds(absl::GetFlag(FLAGS_rpc_timeout_seconds)));
  auto gateway = Gateway::New(
      &backend, *std::move(parties), *std::move(tokens), &RealClock::Get(),
      GatewayConfig{.name = absl::GetFlag(FLAGS_name),
                    .logo = absl::GetFlag(FLAGS_logo),
                    .region = absl::GetFlag(FLAGS_region),
                    .token_lifetime = absl::Seconds(absl::GetFlag(FLAGS_token_lifetime_seconds)),
                    .authorize_wait = absl::Seconds(absl::GetFlag(FLAGS_authorize_wait_seconds)),
                    .authorize_check_wait =
                        absl::Seconds(absl::GetFlag(FLAGS_authorize_check_wait_seconds))});
  if (!gateway.ok()) return Fail("config", gateway.status());

  auto server = GatewayHttpServer::Start(
      {.host = listen.substr(0, colon),
       .port = port,
       .threads = absl::GetFlag(FLAGS_http_threads),
       .max_body_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes)),
       .public_url = absl::GetFlag(FLAGS_public_url)},
      gateway->get());
  if (!server.ok()) return Fail("listen", server.status());
  const std::string bound_port = absl::StrCat((*server)->port());
  Log(LogLevel::kInfo, "gateway", "ready",
      {{"listen_http", listen}, {"port", bound_port}, {"qsignd", absl::GetFlag(FLAGS_qsignd)}});
  // SIGINT/SIGTERM are blocked in every thread (see main) and taken here synchronously.
  int sig = 0;
  sigwait(&StopSignals(), &sig);
  Log(LogLevel::kInfo, "gateway", "stopping");
  server->reset();
  Log(LogLevel::kInfo, "gateway", "stopped");
  return absl::OkStatus();
}

}  // namespace
}  // namespace qsign::gateway

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask.
  pthread_sigmask(SIG_BLOCK, &qsign::gateway::StopSignals(), nullptr);
  absl::ParseCommandLine(argc, argv);
  return qsign::gateway::Run().ok() ? 0 : 1;
}

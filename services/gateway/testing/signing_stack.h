// The signer and the consent service on real gRPC, built by their stacks as qsignd builds them
// (tests/testing/stacks.h), on a test's SoftHSM2 token and PostgreSQL database: what the CSC
// gateway (or any client of Authorize and SignHash) talks to in tests. The gateway's credential
// is test_data.h's ("Service gateway.gateway-secret"). Identity is faked
// (tests/testing/fake_identity_server.h): activation codes for enrolling consent-app simulators
// come from NewActivationCode, for account ids the test picks. Credentials are made through the
// signer's own API as lifecycle would (CreateKey, SetCertificate with a throwaway CA's
// certificate, lifecycle's service credential).
#ifndef QSIGN_SERVICES_GATEWAY_TESTING_SIGNING_STACK_H_
#define QSIGN_SERVICES_GATEWAY_TESTING_SIGNING_STACK_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "consent/app_simulator.h"
#include "qsign/v1/common.pb.h"
#include "qsign/v1/signer.pb.h"
#include "services/gateway/backend_grpc.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_http.h"
#include "tests/testing/service_env.h"

namespace qsign::gateway::testing {

struct SigningStackOptions {
  // The signer's multisign and batch limits.
  int max_hashes_per_authorization = 10;
  int max_batch = 10;
  // consent.approvals_per_device_per_minute; unset: consent's default (20). 0 turns it off
  // (benchmarks, where one simulated app approves far faster than a person).
  std::optional<int> approvals_per_device_per_minute;
};

class SigningStack {
 public:
  // On `env`'s Hsm and database (not owned; must outlive the stack).
  static absl::StatusOr<std::unique_ptr<SigningStack>> Start(qsign::testing::ServiceEnv* env,
                                                             SigningStackOptions options = {});
  ~SigningStack();
  SigningStack(const SigningStack&) = delete;
  SigningStack& operator=(const SigningStack&) = delete;

  std::shared_ptr<grpc::Channel> signer_channel() const;
  std::shared_ptr<grpc::Channel> consent_channel() const;

  // A one-time activation code for `account_id`, as Identity.ProofIdentity would hand out.
  std::string NewActivationCode(const std::string& account_id);
  // A consent app enrolled for `account_id` with `pin`, its stream open.
  absl::StatusOr<std::unique_ptr<consent::ConsentAppSimulator>> EnrolledApp(
      const std::string& account_id, const std::string& pin);
  // An ACTIVE credential of `account_id`: key in the HSM, certificate attached.
  absl::StatusOr<qsign::v1::CredentialInfo> ActiveCredential(
      const std::string& credential_id, const std::string& account_id,
      qsign::v1::KeyAlgorithm algorithm = qsign::v1::KEY_ALGORITHM_EC_P256);
  // The same with the certificate chain (leaf first) `chain_for` makes for the key's
  // SubjectPublicKeyInfo, e.g. one issued by a test CA whose OCSP responder the test runs.
  absl::StatusOr<qsign::v1::CredentialInfo> ActiveCredential(
      const std::string& credential_id, const std::string& account_id,
      const std::function<absl::StatusOr<std::vector<std::string>>(const std::string& spki_der)>&
          chain_for);

 private:
  struct Impl;
  explicit SigningStack(std::unique_ptr<Impl> impl);
  absl::StatusOr<qsign::v1::CredentialInfo> Activate(
      const std::string& credential_id, const std::string& account_id,
      qsign::v1::KeyAlgorithm algorithm,
      const std::function<absl::StatusOr<std::vector<std::string>>(const std::string& spki_der)>&
          chain_for);
  std::unique_ptr<Impl> impl_;
};

// The CSC gateway over a SigningStack's signer and consent, wired as gateway::kStack wires it
// (gRPC backend with the gateway's service credential), with one relying party `client_id` /
// `client_secret` allowed client credentials, and its HTTP listener (`http_options`) on loopback.
class GatewayOverStack {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayOverStack>> Start(
      const SigningStack& stack, GatewayConfig config, const GatewayHttpOptions& http_options,
      const std::string& client_id, const std::string& client_secret);
  int port() const { return http_->port(); }

 private:
  GatewayOverStack() = default;
  std::unique_ptr<GrpcBackend> backend_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<GatewayHttpServer> http_;  // Declared last: stops first.
};

}  // namespace qsign::gateway::testing

#endif  // QSIGN_SERVICES_GATEWAY_TESTING_SIGNING_STACK_H_

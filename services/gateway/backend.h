// What the CSC gateway asks of the qsign services: the signer's credentials and signatures, the
// consent service's authorizations. The gRPC implementation (backend_grpc.h) calls them as the
// gateway's own service client (`authorization: Service <client id>.<secret>`); tests inject
// faults with a decorator. Messages are the API's protos; no gRPC types.
#ifndef QSIGN_SERVICES_GATEWAY_BACKEND_H_
#define QSIGN_SERVICES_GATEWAY_BACKEND_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "qsign/v1/consent.pb.h"
#include "qsign/v1/identity.pb.h"
#include "qsign/v1/signer.pb.h"
#include "qsign/v1/tsa.pb.h"

namespace qsign::gateway {

class Backend {
 public:
  virtual ~Backend() = default;

  // Signer. Statuses are the services' own (FromGrpcStatus).
  virtual absl::StatusOr<qsign::v1::ListCredentialsResponse> ListCredentials(
      const qsign::v1::ListCredentialsRequest& request) = 0;
  virtual absl::StatusOr<qsign::v1::CredentialInfo> GetCredentialInfo(
      const qsign::v1::GetCredentialInfoRequest& request) = 0;
  virtual absl::StatusOr<qsign::v1::SignHashResponse> SignHash(
      const qsign::v1::SignHashRequest& request) = 0;

  // Consent.
  virtual absl::StatusOr<qsign::v1::AuthorizeResponse> Authorize(
      const qsign::v1::AuthorizeRequest& request) = 0;
  // The call may take request.max_wait; implementations allow for it in their deadline.
  virtual absl::StatusOr<qsign::v1::AwaitAuthorizationResponse> AwaitAuthorization(
      const qsign::v1::AwaitAuthorizationRequest& request) = 0;

  // The timestamp authority: UNIMPLEMENTED when the gateway has none (no tsa section here and
  // no peers.tsa).
  virtual absl::StatusOr<qsign::v1::TimestampResponse> Timestamp(
      const qsign::v1::TimestampRequest& request) {
    return absl::UnimplementedError("no timestamp authority");
  }
  // Identity: the push login of oauth2/authorize's sign-in page. AwaitLogin may take
  // request.max_wait. Logout ends the session the login made (the gateway needs only its
  // account id), with that session's token.
  virtual absl::StatusOr<qsign::v1::StartLoginResponse> StartLogin(
      const qsign::v1::StartLoginRequest& request) {
    return absl::UnavailableError("identity: not configured");
  }
  virtual absl::StatusOr<qsign::v1::AwaitLoginResponse> AwaitLogin(
      const qsign::v1::AwaitLoginRequest& request) {
    return absl::UnavailableError("identity: not configured");
  }
  virtual absl::Status Logout(std::string_view session_token) { return absl::OkStatus(); }
};

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_BACKEND_H_

// The gateway's Backend over gRPC: Signer and Consent stubs on one channel (qsignd serves both on
// one port; a split deployment passes two channels), every call carrying the gateway's service
// credential and a deadline.
#ifndef QSIGN_SERVICES_GATEWAY_BACKEND_GRPC_H_
#define QSIGN_SERVICES_GATEWAY_BACKEND_GRPC_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string_view>

#include "absl/time/time.h"
#include "common/daemon/deferred_channel.h"
#include "common/secret.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "qsign/v1/tsa.grpc.pb.h"
#include "services/gateway/backend.h"

namespace qsign::gateway {

class GrpcBackend final : public Backend {
 public:
  // `call_timeout` bounds every call; AwaitAuthorization gets its max_wait on top.
  // UNAVAILABLE until the channels are connected.
  GrpcBackend(std::shared_ptr<const daemon::DeferredChannel> signer,
              std::shared_ptr<const daemon::DeferredChannel> consent, std::string_view client_id,
              const SecretString& client_secret, absl::Duration call_timeout,
              std::shared_ptr<const daemon::DeferredChannel> tsa = nullptr,
              std::shared_ptr<const daemon::DeferredChannel> identity = nullptr);

  absl::StatusOr<qsign::v1::ListCredentialsResponse> ListCredentials(
      const qsign::v1::ListCredentialsRequest& request) override;
  absl::StatusOr<qsign::v1::CredentialInfo> GetCredentialInfo(
      const qsign::v1::GetCredentialInfoRequest& request) override;
  absl::StatusOr<qsign::v1::SignHashResponse> SignHash(
      const qsign::v1::SignHashRequest& request) override;
  absl::StatusOr<qsign::v1::AuthorizeResponse> Authorize(
      const qsign::v1::AuthorizeRequest& request) override;
  absl::StatusOr<qsign::v1::AwaitAuthorizationResponse> AwaitAuthorization(
      const qsign::v1::AwaitAuthorizationRequest& request) override;
  absl::StatusOr<qsign::v1::TimestampResponse> Timestamp(
      const qsign::v1::TimestampRequest& request) override;
  absl::StatusOr<qsign::v1::StartLoginResponse> StartLogin(
      const qsign::v1::StartLoginRequest& request) override;
  absl::StatusOr<qsign::v1::AwaitLoginResponse> AwaitLogin(
      const qsign::v1::AwaitLoginRequest& request) override;
  absl::Status Logout(std::string_view session_token) override;

 private:
  void Prepare(grpc::ClientContext* ctx, absl::Duration extra = absl::ZeroDuration()) const;

  daemon::DeferredStub<qsign::v1::Signer> signer_;
  daemon::DeferredStub<qsign::v1::Consent> consent_;
  std::unique_ptr<daemon::DeferredStub<qsign::v1::Tsa>> tsa_;  // nullptr: none.
  // nullptr: no identity (the sign-in page answers UNAVAILABLE).
  std::unique_ptr<daemon::DeferredStub<qsign::v1::Identity>> identity_;
  SecretString authorization_;  // "Service <id>.<secret>".
  const absl::Duration call_timeout_;
};

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_BACKEND_GRPC_H_

// ConsentClient over gRPC: identity's calls to Consent.CreateRequest and Consent.AwaitRequest,
// authenticated as a service (`authorization: Service <client id>.<secret>`).
#ifndef QSIGN_SERVICES_IDENTITY_CONSENT_CLIENT_GRPC_H_
#define QSIGN_SERVICES_IDENTITY_CONSENT_CLIENT_GRPC_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/daemon/deferred_channel.h"
#include "common/secret.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "services/identity/identity.h"

namespace qsign::identity {

class GrpcConsentClient final : public ConsentClient {
 public:
  // `client_id` and `secret` are identity's service credentials at the consent service;
  // UNAVAILABLE until `channel` is connected.
  GrpcConsentClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                    std::string_view client_id, const SecretString& secret);

  absl::StatusOr<ConsentRequestStatus> CreateLoginRequest(
      const LoginRequestParams& params) override;
  absl::StatusOr<ConsentRequestStatus> AwaitRequest(std::string_view request_id,
                                                    absl::Duration max_wait) override;
  // On gRPC's callback client API: no thread waits for the answer.
  absl::AnyInvocable<void()> StartAwaitRequest(std::string_view request_id, absl::Duration max_wait,
                                               ConsentStatusDone done) override;

 private:
  struct AwaitCall;
  std::shared_ptr<AwaitCall> NewAwaitCall(std::string_view request_id,
                                          absl::Duration max_wait) const;

  daemon::DeferredStub<qsign::v1::Consent> stub_;
  SecretString authorization_;  // "Service <id>.<secret>".
};

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_CONSENT_CLIENT_GRPC_H_

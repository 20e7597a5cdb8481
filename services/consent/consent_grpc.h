// gRPC edge of the consent service: metadata -> Caller, proto <-> Consent, absl::Status ->
// grpc::Status, nothing else.
#ifndef QSIGN_SERVICES_CONSENT_CONSENT_GRPC_H_
#define QSIGN_SERVICES_CONSENT_CONSENT_GRPC_H_

#include <utility>

#include "common/client_address.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "services/consent/consent.h"

namespace qsign::consent {

// WatchRequests, AwaitRequest and AwaitAuthorization wait (for the app's next request, for a
// decision) holding no thread: they use gRPC's callback API and Consent's runner; every other
// method stays synchronous (docs/decisions/callback-long-waits.md).
using ConsentService = qsign::v1::Consent::WithCallbackMethod_WatchRequests<
    qsign::v1::Consent::WithCallbackMethod_AwaitRequest<
        qsign::v1::Consent::WithCallbackMethod_AwaitAuthorization<qsign::v1::Consent::Service>>>;

class ConsentGrpc final : public ConsentService {
 public:
  // `consent` is not owned and must outlive this service. `client_address` resolves the end
  // user's address for per-address limits.
  explicit ConsentGrpc(Consent* consent, ClientAddressResolver client_address = {})
      : consent_(consent), client_address_(std::move(client_address)) {}

  grpc::Status EnrollDevice(grpc::ServerContext* ctx, const qsign::v1::EnrollDeviceRequest* req,
                            qsign::v1::EnrollDeviceResponse* resp) override;
  grpc::Status GetChallenge(grpc::ServerContext* ctx, const qsign::v1::GetChallengeRequest* req,
                            qsign::v1::GetChallengeResponse* resp) override;
  grpc::ServerWriteReactor<qsign::v1::ConsentRequest>* WatchRequests(
      grpc::CallbackServerContext* ctx, const qsign::v1::WatchRequestsRequest* req) override;
  grpc::Status Approve(grpc::ServerContext* ctx, const qsign::v1::ApproveRequest* req,
                       qsign::v1::ApproveResponse* resp) override;
  grpc::Status CreateRequest(grpc::ServerContext* ctx, const qsign::v1::CreateRequestRequest* req,
                             qsign::v1::ConsentRequestStatus* resp) override;
  grpc::Status GetRequest(grpc::ServerContext* ctx, const qsign::v1::GetRequestRequest* req,
                          qsign::v1::ConsentRequestStatus* resp) override;
  grpc::ServerUnaryReactor* AwaitRequest(grpc::CallbackServerContext* ctx,
                                         const qsign::v1::AwaitRequestRequest* req,
                                         qsign::v1::ConsentRequestStatus* resp) override;
  grpc::Status Authorize(grpc::ServerContext* ctx, const qsign::v1::AuthorizeRequest* req,
                         qsign::v1::AuthorizeResponse* resp) override;
  grpc::ServerUnaryReactor* AwaitAuthorization(
      grpc::CallbackServerContext* ctx, const qsign::v1::AwaitAuthorizationRequest* req,
      qsign::v1::AwaitAuthorizationResponse* resp) override;
  grpc::Status GetApprovalChallenge(grpc::ServerContext* ctx,
                                    const qsign::v1::GetApprovalChallengeRequest* req,
                                    qsign::v1::GetApprovalChallengeResponse* resp) override;
  grpc::Status ChangePin(grpc::ServerContext* ctx, const qsign::v1::ChangePinRequest* req,
                         qsign::v1::ChangePinResponse* resp) override;
  grpc::Status ResetPin(grpc::ServerContext* ctx, const qsign::v1::ResetPinRequest* req,
                        qsign::v1::ResetPinResponse* resp) override;
  grpc::Status UnblockPin(grpc::ServerContext* ctx, const qsign::v1::UnblockPinRequest* req,
                          qsign::v1::UnblockPinResponse* resp) override;
  grpc::Status DeactivateDevices(grpc::ServerContext* ctx,
                                 const qsign::v1::DeactivateDevicesRequest* req,
                                 qsign::v1::DeactivateDevicesResponse* resp) override;
  grpc::Status ListAccountAudit(grpc::ServerContext* ctx,
                                const qsign::v1::ListAccountAuditRequest* req,
                                qsign::v1::ListAccountAuditResponse* resp) override;

 private:
  Consent* consent_;  // Not owned.
  const ClientAddressResolver client_address_;
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_CONSENT_GRPC_H_

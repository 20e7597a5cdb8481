// gRPC edge of the identity service: reads the `authorization` metadata and the peer, converts
// proto <-> Identity, absl::Status -> grpc::Status. No rules live here.
#ifndef QSIGN_SERVICES_IDENTITY_IDENTITY_GRPC_H_
#define QSIGN_SERVICES_IDENTITY_IDENTITY_GRPC_H_

#include <utility>

#include "common/client_address.h"
#include "common/task_runner.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "services/identity/identity.h"

namespace qsign::identity {

inline constexpr int kAwaitLoginThreads = 4;

// AwaitLogin waits for the user's decision holding no thread: it uses gRPC's callback API and a
// runner of this service's own; every other method stays synchronous
// (docs/decisions/callback-long-waits.md).
using IdentityService =
    qsign::v1::Identity::WithCallbackMethod_AwaitLogin<qsign::v1::Identity::Service>;

class IdentityGrpc final : public IdentityService {
 public:
  // `identity` is not owned and must outlive this service. `client_address` resolves the end
  // user's address for per-address limits. Destroy it only after the server serving it has shut
  // down (its runner finishes AwaitLogin calls).
  explicit IdentityGrpc(Identity* identity, ClientAddressResolver client_address = {})
      : identity_(identity), client_address_(std::move(client_address)) {}

  grpc::Status RegisterAccount(grpc::ServerContext* ctx,
                               const qsign::v1::RegisterAccountRequest* req,
                               qsign::v1::RegisterAccountResponse* resp) override;
  grpc::Status ConfirmRegistration(grpc::ServerContext* ctx,
                                   const qsign::v1::ConfirmRegistrationRequest* req,
                                   qsign::v1::Account* resp) override;
  grpc::Status ProofIdentity(grpc::ServerContext* ctx, const qsign::v1::ProofIdentityRequest* req,
                             qsign::v1::ProofIdentityResponse* resp) override;
  grpc::Status CorrectIdentity(grpc::ServerContext* ctx,
                               const qsign::v1::CorrectIdentityRequest* req,
                               qsign::v1::Account* resp) override;
  grpc::Status ListAccountAudit(grpc::ServerContext* ctx,
                                const qsign::v1::ListAccountAuditRequest* req,
                                qsign::v1::ListAccountAuditResponse* resp) override;
  grpc::Status GetAccount(grpc::ServerContext* ctx, const qsign::v1::GetAccountRequest* req,
                          qsign::v1::Account* resp) override;
  grpc::Status StartLogin(grpc::ServerContext* ctx, const qsign::v1::StartLoginRequest* req,
                          qsign::v1::StartLoginResponse* resp) override;
  grpc::ServerUnaryReactor* AwaitLogin(grpc::CallbackServerContext* ctx,
                                       const qsign::v1::AwaitLoginRequest* req,
                                       qsign::v1::AwaitLoginResponse* resp) override;
  grpc::Status Logout(grpc::ServerContext* ctx, const qsign::v1::LogoutRequest* req,
                      qsign::v1::LogoutResponse* resp) override;
  grpc::Status ValidateSession(grpc::ServerContext* ctx,
                               const qsign::v1::ValidateSessionRequest* req,
                               qsign::v1::SessionInfo* resp) override;
  grpc::Status RevokeSessions(grpc::ServerContext* ctx, const qsign::v1::RevokeSessionsRequest* req,
                              qsign::v1::RevokeSessionsResponse* resp) override;
  grpc::Status GetSessionKeys(grpc::ServerContext* ctx, const qsign::v1::GetSessionKeysRequest* req,
                              qsign::v1::GetSessionKeysResponse* resp) override;
  grpc::Status ListSessionRevocations(grpc::ServerContext* ctx,
                                      const qsign::v1::ListSessionRevocationsRequest* req,
                                      qsign::v1::ListSessionRevocationsResponse* resp) override;
  grpc::Status RedeemActivationCode(grpc::ServerContext* ctx,
                                    const qsign::v1::RedeemActivationCodeRequest* req,
                                    qsign::v1::RedeemActivationCodeResponse* resp) override;

 private:
  Identity* identity_;  // Not owned.
  const ClientAddressResolver client_address_;
  // AwaitLogin's checks and database work; a few workers serve every waiting portal.
  TaskRunner runner_{kAwaitLoginThreads, "identity-wait"};
};

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_IDENTITY_GRPC_H_

// gRPC edge of the lifecycle service: authentication of the caller, proto <-> Lifecycle,
// absl::Status -> grpc::Status, nothing else.
#ifndef QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_GRPC_H_
#define QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_GRPC_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/auth/authenticator.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "services/lifecycle/lifecycle.h"

namespace qsign::lifecycle {

class LifecycleGrpc final : public qsign::v1::Lifecycle::Service {
 public:
  // Neither pointer is owned; both must outlive this service. Every method needs credentials:
  // a call without them is UNAUTHENTICATED.
  LifecycleGrpc(Lifecycle* lifecycle, const auth::Authenticator* authenticator)
      : lifecycle_(lifecycle), authenticator_(authenticator) {}

  grpc::Status GetContract(grpc::ServerContext* ctx, const qsign::v1::GetContractRequest* req,
                           qsign::v1::Contract* resp) override;
  grpc::Status AcceptContract(grpc::ServerContext* ctx, const qsign::v1::AcceptContractRequest* req,
                              qsign::v1::ContractAcceptance* resp) override;
  grpc::Status Issue(grpc::ServerContext* ctx, const qsign::v1::IssueRequest* req,
                     qsign::v1::Certificate* resp) override;
  grpc::Status Renew(grpc::ServerContext* ctx, const qsign::v1::RenewRequest* req,
                     qsign::v1::Certificate* resp) override;
  grpc::Status Revoke(grpc::ServerContext* ctx, const qsign::v1::RevokeRequest* req,
                      qsign::v1::Certificate* resp) override;
  grpc::Status RevokeAll(grpc::ServerContext* ctx, const qsign::v1::RevokeAllRequest* req,
                         qsign::v1::RevokeAllResponse* resp) override;
  grpc::Status GetStatus(grpc::ServerContext* ctx, const qsign::v1::GetStatusRequest* req,
                         qsign::v1::GetStatusResponse* resp) override;
  grpc::Status ListCertificates(grpc::ServerContext* ctx,
                                const qsign::v1::ListCertificatesRequest* req,
                                qsign::v1::ListCertificatesResponse* resp) override;
  grpc::Status ApproveLegalPerson(grpc::ServerContext* ctx,
                                  const qsign::v1::ApproveLegalPersonRequest* req,
                                  qsign::v1::LegalPersonApproval* resp) override;
  grpc::Status IssueDeviceCertificate(grpc::ServerContext* ctx,
                                      const qsign::v1::IssueDeviceCertificateRequest* req,
                                      qsign::v1::Certificate* resp) override;
  grpc::Status IssueTsaCertificate(grpc::ServerContext* ctx,
                                   const qsign::v1::IssueTsaCertificateRequest* req,
                                   qsign::v1::Certificate* resp) override;
  grpc::Status ListAccountAudit(grpc::ServerContext* ctx,
                                const qsign::v1::ListAccountAuditRequest* req,
                                qsign::v1::ListAccountAuditResponse* resp) override;

 private:
  absl::StatusOr<Caller> CallerOf(const grpc::ServerContext* ctx);

  Lifecycle* lifecycle_;                      // Not owned.
  const auth::Authenticator* authenticator_;  // Not owned.
};

// Conversions, shared with the tests.
void ToProto(const CertView& view, qsign::v1::Certificate* out);
google::protobuf::Timestamp ToProtoTime(absl::Time t);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_GRPC_H_

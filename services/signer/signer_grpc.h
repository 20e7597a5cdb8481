// gRPC edge of the signer: proto <-> Signer, absl::Status -> grpc::Status, nothing else.
#ifndef QSIGN_SERVICES_SIGNER_SIGNER_GRPC_H_
#define QSIGN_SERVICES_SIGNER_SIGNER_GRPC_H_

#include <string>

#include "common/auth/credential_table.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/signer/signer.h"

namespace qsign::signer {

// Who may call the administrative RPCs (CreateKey, SetCertificate, DisableCredential,
// DestroyKey).
struct SignerAccess {
  // Service credentials ("authorization: Service <id>.<secret>"). nullptr or empty: the
  // administrative RPCs refuse every call (FAILED_PRECONDITION): never open to anyone.
  const auth::CredentialTable* services = nullptr;  // Not owned.
  // The one client id allowed to create, certify and destroy keys.
  std::string admin_client_id = "lifecycle";
};

class SignerGrpc final : public qsign::v1::Signer::Service {
 public:
  // `signer` (and access.services) are not owned and must outlive this service.
  explicit SignerGrpc(Signer* signer, SignerAccess access = {})
      : signer_(signer), access_(std::move(access)) {}

  grpc::Status ListCredentials(grpc::ServerContext* ctx,
                               const qsign::v1::ListCredentialsRequest* req,
                               qsign::v1::ListCredentialsResponse* resp) override;
  grpc::Status GetCredentialInfo(grpc::ServerContext* ctx,
                                 const qsign::v1::GetCredentialInfoRequest* req,
                                 qsign::v1::CredentialInfo* resp) override;
  grpc::Status SignHash(grpc::ServerContext* ctx, const qsign::v1::SignHashRequest* req,
                        qsign::v1::SignHashResponse* resp) override;
  grpc::Status CreateKey(grpc::ServerContext* ctx, const qsign::v1::CreateKeyRequest* req,
                         qsign::v1::CredentialInfo* resp) override;
  grpc::Status SetCertificate(grpc::ServerContext* ctx, const qsign::v1::SetCertificateRequest* req,
                              qsign::v1::CredentialInfo* resp) override;
  grpc::Status DisableCredential(grpc::ServerContext* ctx,
                                 const qsign::v1::DisableCredentialRequest* req,
                                 qsign::v1::CredentialInfo* resp) override;
  grpc::Status DestroyKey(grpc::ServerContext* ctx, const qsign::v1::DestroyKeyRequest* req,
                          qsign::v1::CredentialInfo* resp) override;

 private:
  // The caller of an administrative RPC, or UNAUTHENTICATED / PERMISSION_DENIED.
  absl::StatusOr<Actor> Admin(const grpc::ServerContext* ctx, std::string_view rpc) const;

  Signer* signer_;  // Not owned.
  const SignerAccess access_;
};

}  // namespace qsign::signer

#endif  // QSIGN_SERVICES_SIGNER_SIGNER_GRPC_H_

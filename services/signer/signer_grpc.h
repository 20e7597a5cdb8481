// gRPC edge of the signer: proto <-> Signer, absl::Status -> grpc::Status, nothing else.
#ifndef QSIGN_SERVICES_SIGNER_SIGNER_GRPC_H_
#define QSIGN_SERVICES_SIGNER_SIGNER_GRPC_H_

#include "qsign/v1/signer.grpc.pb.h"
#include "services/signer/signer.h"

namespace qsign::signer {

class SignerGrpc final : public qsign::v1::Signer::Service {
 public:
  // `signer` is not owned and must outlive this service.
  explicit SignerGrpc(Signer* signer) : signer_(signer) {}

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
  grpc::Status SetCertificate(grpc::ServerContext* ctx,
                              const qsign::v1::SetCertificateRequest* req,
                              qsign::v1::CredentialInfo* resp) override;
  grpc::Status DestroyKey(grpc::ServerContext* ctx, const qsign::v1::DestroyKeyRequest* req,
                          qsign::v1::CredentialInfo* resp) override;

 private:
  Signer* signer_;  // Not owned.
};

}  // namespace qsign::signer

#endif  // QSIGN_SERVICES_SIGNER_SIGNER_GRPC_H_

// gRPC edge of the lifecycle service: authentication of the caller, proto <-> Lifecycle,
// absl::Status -> grpc::Status, nothing else.
#ifndef QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_GRPC_H_
#define QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_GRPC_H_

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "services/lifecycle/lifecycle.h"

namespace qsign::lifecycle {

// Turns the `authorization` metadata into a Caller (identity.proto states the convention).
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // UNAUTHENTICATED when absent, malformed or not valid; never echoes the credential.
  virtual absl::StatusOr<Caller> Authenticate(std::string_view authorization,
                                              std::string_view peer) = 0;
};

// Operator or service ids and the SHA-256 of their secrets.
class CredentialHashes {
 public:
  // Lines "<id> <64 hex digits of SHA-256(secret)>"; blank lines and '#' comments skipped.
  static absl::StatusOr<CredentialHashes> Parse(std::string_view text);
  void Add(std::string_view id, std::string_view secret);
  // Constant time in the secret; an unknown id costs the same.
  bool Check(std::string_view id, std::string_view secret) const;

 private:
  absl::flat_hash_map<std::string, std::string> hashes_;
};

// Bearer session tokens validated by the identity service; operator and service secrets checked
// against their hashes. (To be replaced by common/auth once it exists.)
class IdentityAuthenticator final : public Authenticator {
 public:
  // `identity` is not owned and must outlive this.
  IdentityAuthenticator(IdentityClient* identity, CredentialHashes operators,
                        CredentialHashes services)
      : identity_(identity), operators_(std::move(operators)), services_(std::move(services)) {}
  absl::StatusOr<Caller> Authenticate(std::string_view authorization,
                                      std::string_view peer) override;

 private:
  IdentityClient* identity_;  // Not owned.
  CredentialHashes operators_;
  CredentialHashes services_;
};

class LifecycleGrpc final : public qsign::v1::Lifecycle::Service {
 public:
  // Neither pointer is owned; both must outlive this service.
  LifecycleGrpc(Lifecycle* lifecycle, Authenticator* authenticator)
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

 private:
  absl::StatusOr<Caller> CallerOf(const grpc::ServerContext* ctx);

  Lifecycle* lifecycle_;          // Not owned.
  Authenticator* authenticator_;  // Not owned.
};

// Conversions, shared with the tests.
void ToProto(const CertView& view, qsign::v1::Certificate* out);
google::protobuf::Timestamp ToProtoTime(absl::Time t);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_LIFECYCLE_GRPC_H_

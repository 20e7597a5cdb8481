// The consent service's view of identity, signer and lifecycle, over their gRPC APIs,
// authenticated as the consent service (`authorization: Service <client id>.<secret>`). Each holds
// a DeferredChannel: UNAVAILABLE until the peer is connected.
#ifndef QSIGN_SERVICES_CONSENT_CLIENTS_H_
#define QSIGN_SERVICES_CONSENT_CLIENTS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/daemon/deferred_channel.h"
#include "common/secret.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/consent/consent.h"

namespace qsign::consent {

// Identity.RedeemActivationCode and Identity.GetAccount.
class GrpcIdentityDirectory final : public IdentityDirectory {
 public:
  GrpcIdentityDirectory(std::shared_ptr<const daemon::DeferredChannel> channel,
                        std::string_view client_id, const SecretString& secret);

  absl::StatusOr<RedeemedCode> RedeemActivationCode(std::string_view activation_code,
                                                    std::string_view device_key_sha256) override;
  absl::StatusOr<std::optional<absl::Time>> LastProofedAt(std::string_view account_id) override;

 private:
  daemon::DeferredStub<qsign::v1::Identity> stub_;
  SecretString authorization_;  // "Service <id>.<secret>".
};

// Signer.GetCredentialInfo.
class GrpcCredentialDirectory final : public CredentialDirectory {
 public:
  GrpcCredentialDirectory(std::shared_ptr<const daemon::DeferredChannel> channel,
                          std::string_view client_id, const SecretString& secret);

  absl::StatusOr<CredentialSummary> Lookup(std::string_view credential_id) override;

 private:
  daemon::DeferredStub<qsign::v1::Signer> stub_;
  SecretString authorization_;
};

// Lifecycle.IssueDeviceCertificate: the device CA run by lifecycle (which also revokes the
// account's earlier device certificates).
class GrpcLifecycleDeviceCertificateIssuer final : public DeviceCertificateIssuer {
 public:
  GrpcLifecycleDeviceCertificateIssuer(std::shared_ptr<const daemon::DeferredChannel> channel,
                                       std::string_view client_id, const SecretString& secret);

  absl::StatusOr<std::vector<std::string>> Issue(const DeviceCertificateRequest& req) override;

 private:
  daemon::DeferredStub<qsign::v1::Lifecycle> stub_;
  SecretString authorization_;
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_CLIENTS_H_

// The lifecycle service's clients of the signer, identity and consent services over gRPC,
// authenticated as a service (`authorization: Service <client id>.<secret>`) when given one.
// Each holds a DeferredChannel: UNAVAILABLE until the peer is connected.
#ifndef QSIGN_SERVICES_LIFECYCLE_CLIENTS_GRPC_H_
#define QSIGN_SERVICES_LIFECYCLE_CLIENTS_GRPC_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/daemon/deferred_channel.h"
#include "common/secret.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/lifecycle/lifecycle.h"

namespace qsign::lifecycle {

// "Service <id>.<secret>", or empty for none.
struct ServiceCredential {
  std::string client_id;
  std::string secret;
};

class GrpcSignerClient final : public SignerClient {
 public:
  GrpcSignerClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                   const ServiceCredential& credential, absl::Duration timeout = absl::Seconds(30));
  absl::StatusOr<std::string> CreateKey(std::string_view credential_id, std::string_view account_id,
                                        hsm::KeyType key_type) override;
  absl::Status SetCertificate(std::string_view credential_id,
                              const std::vector<std::string>& chain_der) override;
  absl::Status DisableCredential(std::string_view credential_id) override;
  absl::Status DestroyKey(std::string_view credential_id, KeyEnd why) override;

 private:
  void Prepare(grpc::ClientContext* ctx) const;
  daemon::DeferredStub<qsign::v1::Signer> stub_;
  SecretString authorization_;
  absl::Duration timeout_;
};

class GrpcIdentityClient final : public IdentityClient {
 public:
  GrpcIdentityClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                     const ServiceCredential& credential,
                     absl::Duration timeout = absl::Seconds(10));
  absl::StatusOr<Account> GetAccount(std::string_view account_id) override;
  absl::StatusOr<int> RevokeSessions(std::string_view account_id,
                                     std::string_view client_address) override;

 private:
  void Prepare(grpc::ClientContext* ctx) const;
  daemon::DeferredStub<qsign::v1::Identity> stub_;
  SecretString authorization_;
  absl::Duration timeout_;
};

class GrpcConsentClient final : public ConsentClient {
 public:
  GrpcConsentClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                    const ServiceCredential& credential,
                    absl::Duration timeout = absl::Seconds(10));
  absl::StatusOr<int> DeactivateDevices(std::string_view account_id,
                                        std::string_view reason) override;

 private:
  void Prepare(grpc::ClientContext* ctx) const;
  daemon::DeferredStub<qsign::v1::Consent> stub_;
  SecretString authorization_;
  absl::Duration timeout_;
};

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CLIENTS_GRPC_H_

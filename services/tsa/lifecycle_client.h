// The tsa's client of lifecycle: asks for the TSA certificate of its HSM key
// (Lifecycle.IssueTsaCertificate), as service `tsa`. Holds a DeferredChannel: UNAVAILABLE until
// lifecycle is connected.
#ifndef QSIGN_SERVICES_TSA_LIFECYCLE_CLIENT_H_
#define QSIGN_SERVICES_TSA_LIFECYCLE_CLIENT_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/daemon/deferred_channel.h"
#include "common/secret.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "services/tsa/tsa_store.h"

namespace qsign::tsa {

class CertificateSource {
 public:
  virtual ~CertificateSource() = default;
  // The TSA certificate for `public_key` (SPKI DER) with CN `name`, and its issuers.
  virtual absl::StatusOr<TsaCertificate> IssueTsaCertificate(std::string_view public_key,
                                                             std::string_view name) = 0;
};

class GrpcLifecycleClient final : public CertificateSource {
 public:
  GrpcLifecycleClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                      std::string_view client_id, const SecretString& secret,
                      absl::Duration timeout = absl::Seconds(10));
  absl::StatusOr<TsaCertificate> IssueTsaCertificate(std::string_view public_key,
                                                     std::string_view name) override;

 private:
  daemon::DeferredStub<qsign::v1::Lifecycle> stub_;
  SecretString authorization_;
  absl::Duration timeout_;
};

}  // namespace qsign::tsa

#endif  // QSIGN_SERVICES_TSA_LIFECYCLE_CLIENT_H_

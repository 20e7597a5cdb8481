// The consent app's X.509 certificate, issued at enrolment by the device CA, whose key lives in
// the HSM. Until lifecycle runs the device CA (and revokes device certificates), the consent
// service issues them itself through HsmDeviceCertificateIssuer.
#ifndef QSIGN_SERVICES_CONSENT_DEVICE_CERTIFICATE_H_
#define QSIGN_SERVICES_CONSENT_DEVICE_CERTIFICATE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsm/hsm.h"

namespace qsign::consent {

struct DeviceCertificateRequest {
  std::string device_id;
  std::string account_id;
  std::string device_name;
  std::string public_key_spki;  // P-256 SubjectPublicKeyInfo, DER; already validated.
  absl::Time now;
};

class DeviceCertificateIssuer {
 public:
  virtual ~DeviceCertificateIssuer() = default;
  // The device certificate (DER), then the device CA certificate(s).
  virtual absl::StatusOr<std::vector<std::string>> Issue(const DeviceCertificateRequest& req) = 0;
};

// Signs with an EC P-256 device-CA key in the HSM: subject CN=<device name>,
// serialNumber=<device id>, UID=<account id>; keyUsage digitalSignature (critical), not a CA;
// valid from 5 minutes before `now` for `validity`.
class HsmDeviceCertificateIssuer final : public DeviceCertificateIssuer {
 public:
  // `hsm` must outlive the issuer; `ca_key_id` an EC P-256 key there whose public key is the one
  // in `ca_certificate_der`.
  static absl::StatusOr<std::unique_ptr<HsmDeviceCertificateIssuer>> New(
      hsm::Hsm* hsm, std::string ca_key_id, std::string ca_certificate_der,
      absl::Duration validity = absl::Hours(24 * 730));

  absl::StatusOr<std::vector<std::string>> Issue(const DeviceCertificateRequest& req) override;

 private:
  HsmDeviceCertificateIssuer(hsm::Hsm* hsm, std::string ca_key_id, std::string ca_cert,
                             absl::Duration validity)
      : hsm_(hsm),
        ca_key_id_(std::move(ca_key_id)),
        ca_cert_der_(std::move(ca_cert)),
        validity_(validity) {}
  hsm::Hsm* hsm_;  // Not owned.
  const std::string ca_key_id_;
  const std::string ca_cert_der_;
  const absl::Duration validity_;
};

// A self-signed device CA certificate (CN=<common_name>, CA, keyCertSign|cRLSign) for the HSM
// key `ca_key_id`, valid 10 years from `now`: for a laptop and the tests, until lifecycle runs
// the CA hierarchy.
absl::StatusOr<std::string> SelfSignedDeviceCaCertificate(hsm::Hsm* hsm, std::string_view ca_key_id,
                                                          std::string_view common_name,
                                                          absl::Time now);

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_DEVICE_CERTIFICATE_H_

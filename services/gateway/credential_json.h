// credentials/list and credentials/info output: a signer credential as the CSC describes it
// (key, certificate with status and optional chain and details, SCAL2 explicit authorization with
// the PIN out of band in the consent app).
#ifndef QSIGN_SERVICES_GATEWAY_CREDENTIAL_JSON_H_
#define QSIGN_SERVICES_GATEWAY_CREDENTIAL_JSON_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "qsign/v1/signer.pb.h"
#include "services/gateway/params.h"

namespace qsign::gateway {

enum class Certificates { kNone, kSingle, kChain };

// What the request asks to see: certificates ("none", "single", "chain"), certInfo, authInfo.
struct InfoOptions {
  Certificates certificates = Certificates::kSingle;
  bool cert_info = false;
  bool auth_info = false;
};

absl::StatusOr<InfoOptions> ParseInfoOptions(const Params& p);

// The CSC credential description (credentials/info output; credentials/list adds credentialID).
// `lang` is the gateway's language; `now` decides "expired".
absl::StatusOr<Json> CredentialJson(const qsign::v1::CredentialInfo& c, const InfoOptions& options,
                                    std::string_view lang, absl::Time now);

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_CREDENTIAL_JSON_H_

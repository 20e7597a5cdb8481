// Long-term validation data (CAdES-B-LT, ETSI EN 319 122-1; PAdES DSS): every certificate from
// the signer and from the signature timestamp's TSA up to the trust anchor, and their revocation
// status at signing — an OCSP response where the certificate names a responder, else the CRL at
// its distribution point. Collected online once, right after signing; verification afterwards
// needs nothing but the signature and the trust anchor.
#ifndef QSIGN_COMMON_CADES_VALIDATION_DATA_H_
#define QSIGN_COMMON_CADES_VALIDATION_DATA_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace qsign::cades {

// id-ri-ocsp-response (RFC 5940): an OCSPResponse as an "other" RevocationInfoChoice.
inline constexpr char kIdRiOcspResponse[] = "1.3.6.1.5.5.7.16.2";

struct ValidationData {
  std::vector<std::string> certificates_der;
  std::vector<std::string> ocsp_responses_der;  // Complete OCSPResponse, status successful.
  std::vector<std::string> crls_der;
};

// How validation data is fetched: an OCSP request POSTed to a responder, a CRL by GET.
struct Fetcher {
  std::function<absl::StatusOr<std::string>(const std::string& url, const std::string& request_der)>
      ocsp;
  std::function<absl::StatusOr<std::string>(const std::string& url)> crl;
};

// The certificates and revocation data a verifier of `cms_der` needs (signer chain and, when
// the signature is timestamped, the TSA's chain), each chain ending at one of
// `trust_anchors_der`. Anchors and OCSP responders' certificates (id-pkix-ocsp-nocheck) need no
// revocation data. FAILED_PRECONDITION naming the certificate when no chain is found or no
// status can be fetched.
absl::StatusOr<ValidationData> CollectValidationData(
    std::string_view cms_der, const std::vector<std::string>& trust_anchors_der,
    const Fetcher& fetch);

// CAdES-B-LT: `data` into the SignedData: certificates into certificates, CRLs and OCSP
// responses into crls (OCSP as RFC 5940 other, id-ri-ocsp-response; SignedData version 5).
// What is there already is kept and not repeated.
absl::StatusOr<std::string> AddValidationData(std::string_view cms_der, const ValidationData& data);

// What a SignedData carries: its certificates and those of its signature timestamp tokens, its
// CRLs and its OCSP responses.
absl::StatusOr<ValidationData> EmbeddedValidationData(std::string_view cms_der);

// The DER TimeStampTokens in the signature-time-stamp unsigned attributes of `cms_der`'s
// (single) SignerInfo.
absl::StatusOr<std::vector<std::string>> SignatureTimestampTokens(std::string_view cms_der);

}  // namespace qsign::cades

#endif  // QSIGN_COMMON_CADES_VALIDATION_DATA_H_

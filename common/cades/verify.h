// Validation of a CAdES signature (ETSI EN 319 102-1 terms, simplified): the signature over the
// signed attributes and the content's hash, the signing certificate binding (ESS), the
// signature timestamp (its imprint, its TSA's signature and chain), the signer's chain to a
// trust anchor at the proven time, and the certificate status at that time from the revocation
// data embedded in the signature (B-LT) or given. Offline: nothing is fetched.
//
// The time a certificate is judged at is the signature timestamp's genTime when the timestamp
// verifies, else `now`. A B-LT signature therefore still validates after the signer's
// certificate has expired or been revoked, as long as the timestamp predates both and the
// embedded OCSP response (produced after the timestamp) says good or "revoked later".
#ifndef QSIGN_COMMON_CADES_VERIFY_H_
#define QSIGN_COMMON_CADES_VERIFY_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cades/validation_data.h"

namespace qsign::cades {

struct VerifyOptions {
  // Self-signed roots; at least one.
  std::vector<std::string> trust_anchors_der;
  // The current time (a controlled clock in tests).
  absl::Time now;
  // More validation data than the signature carries (PAdES: the DSS).
  ValidationData extra;
};

enum class Indication { kTotalPassed, kTotalFailed, kIndeterminate };
std::string_view IndicationName(Indication indication);  // "TOTAL-PASSED", ...

struct CertificateReport {
  std::string subject;
  std::string serial_hex;
  absl::Time not_before;
  absl::Time not_after;
  // "good", "revoked", "unknown" (no usable revocation data), "trust anchor",
  // "not checked (OCSP responder)".
  std::string status;
  std::string status_source;  // "OCSP response produced at ...", "CRL of ...".
  std::optional<absl::Time> revoked_at;
};

struct Report {
  Indication indication = Indication::kIndeterminate;
  // Why not passed (EN 319 102-1 sub-indications): HASH_FAILURE, SIG_CRYPTO_FAILURE,
  // SIG_CONSTRAINTS_FAILURE, REVOKED, NO_CERTIFICATE_CHAIN_FOUND, OUT_OF_BOUNDS_NO_POE,
  // TRY_LATER (no revocation data), TIMESTAMP_FAILURE, FORMAT_FAILURE; empty when passed.
  std::string sub_indication;
  std::string level;                               // "B-B", "B-T", "B-LT".
  bool signature_valid = false;                    // Signature value and messageDigest.
  std::string signer;                              // Subject of the signing certificate.
  std::optional<absl::Time> claimed_signing_time;  // signingTime attribute.
  std::optional<absl::Time> timestamp_time;        // genTime of a valid signature timestamp.
  std::string tsa;                                 // Its TSA's subject.
  bool timestamp_valid = false;
  absl::Time validation_time;  // When the certificates were judged.
  bool chain_valid = false;
  std::vector<CertificateReport> chain;  // Signer first, anchor last.
  std::vector<CertificateReport> tsa_chain;
  std::vector<std::string> problems;  // Plain sentences.
};

// Validates `cms_der` (detached) over content with SHA-256 `content_sha256`. An error only for
// unusable input (not CMS, no anchors); anything wrong with the signature is in the report.
absl::StatusOr<Report> VerifyDetached(std::string_view cms_der, std::string_view content_sha256,
                                      const VerifyOptions& options);

}  // namespace qsign::cades

#endif  // QSIGN_COMMON_CADES_VERIFY_H_

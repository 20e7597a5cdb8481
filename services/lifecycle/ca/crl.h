// RFC 5280 CRLs (v2), signed by a CA key in the HSM.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_CRL_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_CRL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/lifecycle/ca/ca_setup.h"

namespace qsign::lifecycle {

struct RevokedEntry {
  std::string serial;  // Unsigned big-endian.
  absl::Time revoked_at;
  // RFC 5280 CRLReason; 0 (unspecified) means no reasonCode extension (RFC 5280 5.3.1).
  int reason = 0;
};

struct CrlContents {
  int64_t crl_number = 0;  // cRLNumber: strictly increasing per CA.
  absl::Time this_update;
  absl::Time next_update;
  std::vector<RevokedEntry> revoked;
};

// The DER CertificateList: v2, issuer = `ca`'s subject, authorityKeyIdentifier and cRLNumber
// extensions, reasonCode entry extensions; signed with `ca`'s key. Verified before returning.
absl::StatusOr<std::string> BuildCrl(const Ca& ca, const CrlContents& contents);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_CRL_H_

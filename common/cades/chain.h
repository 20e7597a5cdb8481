// Certificate chains for common/cades (not for other callers): building a chain to a trust
// anchor at a given time, and parsing certificate lists.
#ifndef QSIGN_COMMON_CADES_CHAIN_H_
#define QSIGN_COMMON_CADES_CHAIN_H_

#include <openssl/x509.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/ossl.h"

namespace qsign::cades {

// The DER certificates that parse; the others are skipped.
std::vector<OsslPtr<X509>> ParseCertificates(const std::vector<std::string>& ders);

// The chain from `leaf` through `untrusted` to one of `anchors`, leaf first, anchor last,
// validated at `at` (nullopt: validity periods not checked). FAILED_PRECONDITION with
// OpenSSL's reason otherwise. Revocation is not checked here.
absl::StatusOr<std::vector<OsslPtr<X509>>> BuildChain(X509* leaf,
                                                      const std::vector<OsslPtr<X509>>& untrusted,
                                                      const std::vector<OsslPtr<X509>>& anchors,
                                                      std::optional<absl::Time> at);

// A certificate's subject, RFC 2253 style ("CN=...,O=...,C=RS"), for reports.
std::string SubjectText(const X509* cert);
// Upper-case hex serial number.
std::string SerialText(const X509* cert);

}  // namespace qsign::cades

#endif  // QSIGN_COMMON_CADES_CHAIN_H_

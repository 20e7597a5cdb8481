// Small DER and OpenSSL helpers shared by the files of common/cades (not for other callers).
#ifndef QSIGN_COMMON_CADES_DER_H_
#define QSIGN_COMMON_CADES_DER_H_

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/x509.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ossl.h"

namespace qsign::cades {

// INTERNAL "<what> failed (OpenSSL)"; the OpenSSL error queue is cleared.
absl::Status OpenSslError(std::string_view what);

// A DER X.509 certificate; INVALID_ARGUMENT "certificate: not DER X.509" otherwise.
absl::StatusOr<OsslPtr<X509>> CertificateOf(std::string_view der);

// A DER CMS ContentInfo that must consume all of `der`; INVALID_ARGUMENT otherwise.
absl::StatusOr<OsslPtr<CMS_ContentInfo>> CmsOf(std::string_view der);

// The one SignerInfo of a SignedData (owned by `cms`); INVALID_ARGUMENT when there is not
// exactly one.
absl::StatusOr<CMS_SignerInfo*> OnlySignerInfo(CMS_ContentInfo* cms);

// The bytes of an OCTET STRING (or any ASN1_STRING).
std::string StringOf(const ASN1_STRING* s);

// The DER ContentInfo.
absl::StatusOr<std::string> CmsDer(CMS_ContentInfo* cms);

// What a memory BIO holds.
std::string BioContents(BIO* bio);

// The DER SET OF signed attributes of `si`, as signed and as a verifier re-encodes them.
absl::StatusOr<std::string> SignedAttributesDer(CMS_SignerInfo* si);

// DER tag-length-value with a definite length.
std::string Tlv(unsigned char tag, std::string_view value);

// One DER element (single-byte tags only, definite lengths).
struct DerElement {
  unsigned char tag = 0;
  std::string_view value;  // The contents.
  std::string_view whole;  // Tag, length and contents.
};

// The element at the start of `*in`, which then points past it; INVALID_ARGUMENT when `*in`
// does not start with a well-formed one.
absl::StatusOr<DerElement> ReadElement(std::string_view* in);

// The elements inside `constructed` (a SEQUENCE's or SET's contents), in order.
absl::StatusOr<std::vector<DerElement>> ReadElements(std::string_view contents);

}  // namespace qsign::cades

#endif  // QSIGN_COMMON_CADES_DER_H_

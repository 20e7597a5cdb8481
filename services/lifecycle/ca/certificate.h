// Issuing an X.509 v3 certificate with a CA key in the HSM: OpenSSL builds the TBSCertificate
// (name, validity, public key, the extensions as DER values), CaKey signs it.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_CERTIFICATE_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_CERTIFICATE_H_

#include <openssl/x509.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/ossl.h"
#include "services/lifecycle/ca/ca_key.h"

namespace qsign::lifecycle {

// One subject attribute; OpenSSL picks the string type the attribute requires (PrintableString
// for countryName and serialNumber, UTF8String for the rest).
struct NameAttribute {
  int nid = 0;
  std::string value;  // UTF-8.
};

struct Extension {
  std::string oid;  // Dotted.
  bool critical = false;
  std::string value_der;  // The extnValue's content: the DER of the extension's own type.
};

struct CertificateSpec {
  // In order, one attribute per RDN.
  std::vector<NameAttribute> subject;
  std::string public_key_spki;  // DER.
  std::string serial;           // Unsigned big-endian; must be positive.
  absl::Time not_before;        // Whole seconds.
  absl::Time not_after;
  // Subject and authority key identifiers are added by IssueCertificate; these come after.
  std::vector<Extension> extensions;
};

struct IssuedCertificate {
  OsslPtr<X509> cert;
  std::string der;
};

// Issues `spec` signed by `key`. `issuer` is the CA certificate of `key`; nullptr makes a
// self-signed certificate (issuer name = subject name, `spec.public_key_spki` must be key's).
// The result is parsed back and its signature verified against the issuer key before returning.
// A subject attribute OpenSSL refuses (too long, characters its type cannot hold) is
// INVALID_ARGUMENT naming the attribute.
absl::StatusOr<IssuedCertificate> IssueCertificate(const CaKey& key, const X509* issuer,
                                                   const CertificateSpec& spec);

// RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bytes.
absl::StatusOr<std::string> KeyIdentifier(std::string_view spki_der);

// "Upper-case hex, no separators" of a certificate's serial.
std::string SerialHex(const X509* cert);
// RFC 4514 rendering, for display.
std::string NameText(const X509_NAME* name);
absl::Time Asn1TimeToAbsl(const ASN1_TIME* t);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_CERTIFICATE_H_

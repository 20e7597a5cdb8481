// The certificate profiles of the qsign CA (DESIGN.md, "Trust and keys"): CA certificates, the
// delegated OCSP responder, the qualified certificate of a natural person (ETSI EN 319 412-2 and
// -5, optionally on behalf of a legal person) and the consent app's device certificate.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_PROFILE_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_PROFILE_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/oids.h"
#include "services/lifecycle/ca/certificate.h"

namespace qsign::lifecycle {

// Where relying parties find an issuing CA's status and certificate; baked into what it issues.
struct IssuerUrls {
  std::string ocsp;        // AIA id-ad-ocsp.
  std::string ca_issuers;  // AIA id-ad-caIssuers (the issuer's certificate, DER).
  std::string crl;         // CRL distribution point.
};

struct LegalPersonSubject {
  std::string organization_name;  // O.
  std::string pib;                // 9 digits; organizationIdentifier "VATRS-<pib>".
};

// The person a qualified certificate is for, as the identity service proofed them.
struct NaturalPersonSubject {
  std::string given_name;
  std::string surname;
  std::string national_id;  // 13 digits; serialNumber "PNORS-<national_id>".
  std::string email;        // Empty: no subjectAltName.
  std::optional<LegalPersonSubject> legal_person;
};

struct QualifiedProfile {
  IssuerUrls urls;
  // PKI disclosure statement (QcPDS), in English.
  std::string pds_url;
  std::string country = "RS";
};

// The qualified natural-person certificate: subject C, [O, organizationIdentifier], surname,
// givenName, serialNumber PNORS-<id>, CN "<given> <surname>"; keyUsage nonRepudiation
// (critical); certificatePolicies QCP-n-qscd; QCStatements (QcCompliance, QcSSCD, QcType esign,
// QcPDS, semantics identifier natural); AIA OCSP and caIssuers; CRL distribution point;
// subjectAltName rfc822Name when `subject.email` is set. Valid from `not_before` for exactly
// 5 years (AddYears). INVALID_ARGUMENT for a subject that does not fit.
absl::StatusOr<CertificateSpec> QualifiedCertificateSpec(const NaturalPersonSubject& subject,
                                                         std::string public_key_spki,
                                                         std::string serial, absl::Time not_before,
                                                         const QualifiedProfile& profile);

// A CA certificate: basicConstraints CA (critical; pathLenConstraint when set), keyUsage
// keyCertSign and cRLSign (critical), certificatePolicies anyPolicy for subordinate CAs; for a
// subordinate CA also the parent's CRL distribution point and caIssuers.
CertificateSpec CaCertificateSpec(std::string common_name, std::string organization,
                                  std::string country, std::string public_key_spki,
                                  std::string serial, absl::Time not_before, absl::Time not_after,
                                  std::optional<int> path_len,
                                  const std::optional<IssuerUrls>& parent_urls);

// The delegated OCSP responder (RFC 6960 4.2.2.2): extendedKeyUsage id-kp-OCSPSigning,
// id-pkix-ocsp-nocheck, keyUsage digitalSignature (critical).
CertificateSpec OcspResponderSpec(std::string common_name, std::string organization,
                                  std::string country, std::string public_key_spki,
                                  std::string serial, absl::Time not_before, absl::Time not_after);

// The timestamp authority's certificate (RFC 3161 2.3, ETSI EN 319 422): C, O, CN;
// extendedKeyUsage id-kp-timeStamping only (critical); keyUsage digitalSignature and
// nonRepudiation (critical); AIA and CRL distribution point of the issuing CA.
CertificateSpec TsaCertificateSpec(std::string common_name, std::string organization,
                                   std::string country, std::string public_key_spki,
                                   std::string serial, absl::Time not_before, absl::Time not_after,
                                   const IssuerUrls& urls);

// The consent app's certificate: C, CN = device name; subjectAltName URI
// "urn:qsign:device:<device id>"; keyUsage digitalSignature (critical); AIA and CRL distribution
// point of the device CA.
absl::StatusOr<CertificateSpec> DeviceCertificateSpec(std::string device_name,
                                                      std::string device_id, std::string country,
                                                      std::string public_key_spki,
                                                      std::string serial, absl::Time not_before,
                                                      absl::Time not_after, const IssuerUrls& urls);

// The QCStatements extension value of the qualified profile.
std::string QcStatementsDer(std::string_view pds_url);

// The same wall-clock time `years` later; 29 February becomes 28 February (never longer).
absl::Time AddYears(absl::Time t, int years);

// 16 random bytes from the OS CSPRNG with the top bit cleared and the next set: positive, always
// 16 bytes in DER, 126 bits of entropy.
std::string RandomSerial();

// OK when `digits` is all ASCII digits and its last digit is the ISO 7064 MOD 11,10 check digit
// of the others.
bool Iso7064Mod1110Valid(std::string_view digits);
// INVALID_ARGUMENT naming `field` unless `pib` is 9 digits with a valid check digit.
absl::Status ValidatePib(std::string_view pib, std::string_view field = "pib");

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_PROFILE_H_
